"""Typed facts about a system, as found by ``kavsetup.detect`` — the contract for kavsetup/mta.

``compile_plan(System, IntegrationSettings) -> Plan`` (docs/integration.md) reads these values and nothing else, so the
installer never re-parses a file that detection already understood and never passes dicts of
strings around.  Everything here is a frozen dataclass or an enum: a ``System`` is a snapshot
that can be compared, hashed into a plan and printed as JSON (``System.to_dict``/``to_json``,
schema in docs/detect.md).

Paths.  Every path stored in the model is a path *as seen inside the detected system*
(``/etc/postfix/main.cf``), a ``PurePosixPath``, whatever ``--root`` was.  That is the form that
must appear in generated configuration (``-C /etc/mail/sendmail.cf.listen``).  To touch the file
on disk use ``System.host_path(p)``, which joins it under ``System.root``.

Versions follow guide 1.2 ("sendmail 8.x, qmail 1.03, postfix 1.0 or higher, exim 4.0"):
``check_version(mta) -> GateResult`` is the single place that decides whether an MTA is
supported; ``kavsetup detect`` and ``kavsetup install`` both call it (exit 2 on refusal unless
``--force``).

Import from the package, not from this module's neighbours::

    from kavsetup.detect import detect, check_version, EXIT_UNSUPPORTED, System, ...
    system = detect(root)                   # root: Path, "/" for the live system
    mta = system.active                     # or system.mta("exim"); None if none
    if not (gate := check_version(mta)).ok and not args.force:
        print(gate.message, file=sys.stderr); return EXIT_UNSUPPORTED
    main_cf = system.host_path(mta.postfix.main_cf)   # on-disk path under --root

``MTAInfo.postfix/.sendmail/.exim/.qmail`` return the typed details (assert on the wrong kind).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

#: Version of the JSON document produced by ``System.to_dict`` (docs/detect.md).
SCHEMA_VERSION = 1


class OSFamily(StrEnum):
    """Distribution families that differ in how an MTA is packaged and started (guide 1.2)."""

    DEBIAN = "debian"      # Debian, Ubuntu, Devuan ... (dpkg, update-alternatives, exim4 split config)
    RHEL = "rhel"          # Red Hat Linux, RHEL, Fedora, Rocky, Alma, CentOS (rpm, alternatives)
    SUSE = "suse"          # SuSE Linux, SLES, openSUSE (rpm, /etc/sysconfig/mail)
    MANDRAKE = "mandrake"  # Mandrake / Mandriva / Mageia (rpm)
    FREEBSD = "freebsd"    # FreeBSD (mailer.conf, rc.d, pkg)
    OTHER = "other"        # identified, but none of the above (Arch, Alpine, Gentoo ...)
    UNKNOWN = "unknown"    # no identity file at all


class InitSystem(StrEnum):
    SYSTEMD = "systemd"
    SYSVINIT = "sysvinit"
    BSD_RC = "bsd-rc"      # FreeBSD /etc/rc.d + /usr/local/etc/rc.d, rc.conf knobs
    UNKNOWN = "unknown"


class PackageFormat(StrEnum):
    DEB = "deb"
    RPM = "rpm"
    PKG = "pkg"            # FreeBSD pkg(8) (pkgng) or the older pkg_add tools
    UNKNOWN = "unknown"


class MTAKind(StrEnum):
    POSTFIX = "postfix"
    SENDMAIL = "sendmail"
    EXIM = "exim"
    QMAIL = "qmail"


class GateVerdict(StrEnum):
    SUPPORTED = "supported"
    UNSUPPORTED = "unsupported"   # a version outside guide 1.2: refuse unless --force
    UNKNOWN = "unknown"           # version could not be determined: allowed, with a warning


@dataclass(frozen=True, order=True)
class Version:
    """A dotted version as the MTA prints it; ``parts`` is the numeric prefix used for ordering.

    ``text`` keeps the original spelling ("8.17.1.9", "4.96", "3.7.11", "1.03", "19991231-pl13").
    """

    parts: tuple[int, ...]
    text: str = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """First dotted number in ``text`` ("netqmail-1.06" -> 1.06, "Snapshot-20001217" ->
        20001217); None when there is no digit at all."""
        cleaned = text.strip()
        match = re.search(r"\d+(?:\.\d+)*", cleaned)
        if not match:
            return None
        return cls(tuple(int(p) for p in match.group(0).split(".")), cleaned)

    @property
    def major(self) -> int:
        return self.parts[0]

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Problem:
    """Something detection could not read or understand; never raised, always reported.

    ``path`` is the in-system path (or "" when not about a file); ``str()`` is the one-line
    message shown to the administrator, e.g. ``/etc/mail/sendmail.cf: Is a directory``.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class OSInfo:
    """``id`` is os-release style lowercase ("debian", "ubuntu", "rocky", "rhel", "redhat",
    "opensuse-leap", "suse", "freebsd", "mandrake", "unknown"); ``version`` as the vendor writes
    it ("12", "24.04", "9", "15.5", "14.1-RELEASE", "5.3-RELEASE"), "" when unknown.
    ``source`` names the in-system file the answer came from."""

    id: str
    version: str
    family: OSFamily
    init: InitSystem
    pkg_format: PackageFormat
    pretty: str
    codename: str = ""
    like: tuple[str, ...] = ()
    source: str = ""

    @property
    def known(self) -> bool:
        return self.family is not OSFamily.UNKNOWN


@dataclass(frozen=True)
class PostfixInfo:
    """Postfix parameters relevant to integration (guide 4.4.3), as ``postconf`` would print them.

    ``parameters`` holds the explicit (non-default) settings of main.cf as read from the file,
    in file order, for parameters the installer cares about (content_filter, inet_interfaces,
    mynetworks, mail_owner, setgid_group, ... see detect/postfix.py).  ``content_filter`` is
    the value in force ("" when unset).  ``postconf_ran`` tells whether the real ``postconf``
    answered (inside the root) or the values come from files and the package database.
    """

    version: Version | None
    config_directory: PurePosixPath
    daemon_directory: PurePosixPath | None
    command_directory: PurePosixPath | None
    queue_directory: PurePosixPath | None
    main_cf: PurePosixPath
    master_cf: PurePosixPath
    main_cf_exists: bool
    master_cf_exists: bool
    mail_owner: str
    setgid_group: str
    content_filter: str
    parameters: tuple[tuple[str, str], ...] = ()
    postconf_ran: bool = False


@dataclass(frozen=True)
class SendmailInfo:
    """``version`` comes from the ``DZ`` line of sendmail.cf (guide 4.4.1); ``mc`` is the m4
    source the .cf was generated from when one is found (``sendmail.mc``, FreeBSD's
    ``<hostname>.mc``/``freebsd.mc``).  ``submit_cf`` is None before 8.12 or when absent."""

    version: Version | None
    sendmail_cf: PurePosixPath
    sendmail_cf_exists: bool
    submit_cf: PurePosixPath | None
    mc: PurePosixPath | None
    submit_mc: PurePosixPath | None
    mail_dir: PurePosixPath


@dataclass(frozen=True)
class EximInfo:
    """``binary`` is ``exim`` or ``exim4`` (Debian) as a full in-system path; ``config_file`` is the
    file the daemon reads: on Debian the *generated* one (``/var/lib/exim4/config.autogenerated``)
    when update-exim4.conf is used, and ``debian_split`` tells which source layout is in force
    (True: ``/etc/exim4/conf.d/``, False: ``/etc/exim4/exim4.conf.template``, None: not Debian-style,
    or update-exim4.conf.conf unreadable — then ``System.problems`` says so).
    ``debian_sources`` lists the files update-exim4.conf builds from; ``update_conf`` is
    ``/etc/exim4/update-exim4.conf.conf`` when present."""

    binary: PurePosixPath
    version: Version | None
    config_file: PurePosixPath | None
    debian_split: bool | None
    update_conf: PurePosixPath | None
    debian_sources: tuple[PurePosixPath, ...] = ()
    exim_user: str = ""


@dataclass(frozen=True)
class QmailInfo:
    """qmail's fixed layout under ``home`` (normally /var/qmail).  ``already_wrapped`` is True when
    ``bin/queue.kav55`` exists or ``bin/qmail-queue`` carries our marker / is not qmail's own —
    the installer must refuse then (docs/integration.md).  ``original_queue`` is ``bin/queue.kav55`` if
    present.  ``postmaster_alias`` is ``alias/.qmail-postmaster`` when it exists, and
    ``postmaster_targets`` its forward addresses (guide 6.1.1 feeds kavadministrators)."""

    home: PurePosixPath
    qmail_queue: PurePosixPath
    qmail_queue_exists: bool
    already_wrapped: bool
    original_queue: PurePosixPath | None
    control_dir: PurePosixPath
    control_files: tuple[str, ...]
    postmaster_alias: PurePosixPath | None
    postmaster_targets: tuple[str, ...] = ()
    qmail_queue_owner: str = ""
    qmail_queue_group: str = ""
    qmail_queue_mode: int | None = None


MTADetails = PostfixInfo | SendmailInfo | EximInfo | QmailInfo


@dataclass(frozen=True)
class MTAInfo:
    """One mail server found in the system.

    ``installed``: its binaries are present.  ``active``: it is the one behind
    ``/usr/sbin/sendmail`` (the symlink target, Debian alternatives, FreeBSD mailer.conf) or the
    only one installed.  ``config_file`` is the main file the integration edits (main.cf,
    sendmail.cf, the exim configuration; None for qmail, which has no single one).
    ``version_source`` says how the version was learnt: "postconf", "exim -bV", "sendmail.cf DZ",
    "deb"/"rpm"/"pkg" (package database), "<binary> (mail_version string)", "/usr/share/doc";
    "" when unknown.  ``package`` is the owning package when the package database knows it.
    ``details`` carries the per-MTA facts; ``files`` the configuration files found.
    """

    kind: MTAKind
    installed: bool
    active: bool
    version: Version | None
    version_source: str
    binary: PurePosixPath | None
    config_file: PurePosixPath | None
    package: str | None
    details: MTADetails
    files: tuple[PurePosixPath, ...] = ()

    @classmethod
    def configured(cls, details: MTADetails, config_file: PurePosixPath, version: Version | None = None,
                   version_source: str = "") -> MTAInfo:
        """An MTA known only from the configuration file the administrator named
        (``--mta-config``): installed and active by their word, its kind from ``details``."""
        kind = {PostfixInfo: MTAKind.POSTFIX, SendmailInfo: MTAKind.SENDMAIL, EximInfo: MTAKind.EXIM,
                QmailInfo: MTAKind.QMAIL}[type(details)]
        return cls(kind, True, True, version, version_source, None, config_file, None, details)

    @property
    def postfix(self) -> PostfixInfo:
        assert isinstance(self.details, PostfixInfo), self.kind
        return self.details

    @property
    def sendmail(self) -> SendmailInfo:
        assert isinstance(self.details, SendmailInfo), self.kind
        return self.details

    @property
    def exim(self) -> EximInfo:
        assert isinstance(self.details, EximInfo), self.kind
        return self.details

    @property
    def qmail(self) -> QmailInfo:
        assert isinstance(self.details, QmailInfo), self.kind
        return self.details


@dataclass(frozen=True)
class UserEntry:
    """A line of the root's etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class GroupEntry:
    """A line of the root's etc/group."""

    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Users:
    """Accounts that setup creates or relies on (guide 4.4.2, 4.4.3): ``kluser``, the ``filter``
    group, and each MTA's own users/groups (postfix/postdrop, Debian-exim/exim/mail, smmsp,
    qmailq/qmaild/qmail...).  ``users``/``groups`` hold those that exist, by name;
    ``mta_user`` is the active MTA's run-as user when found.  ``uids``/``gids`` are every id
    in use, so the installer can pick free ones without reading the files again."""

    users: tuple[UserEntry, ...]
    groups: tuple[GroupEntry, ...]
    mta_user: UserEntry | None
    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def user(self, name: str) -> UserEntry | None:
        return next((u for u in self.users if u.name == name), None)

    def group(self, name: str) -> GroupEntry | None:
        return next((g for g in self.groups if g.name == name), None)

    @property
    def kluser(self) -> UserEntry | None:
        return self.user("kluser")

    @property
    def filter_group(self) -> GroupEntry | None:
        return self.group("filter")


@dataclass(frozen=True)
class GateResult:
    """Outcome of the guide 1.2 version check.  ``ok`` is False only for a version known to be
    outside the supported range; ``message`` is one line naming what was found and what is
    needed, suitable for ``kavsetup install``'s refusal."""

    ok: bool
    verdict: GateVerdict
    message: str
    kind: MTAKind
    found: str
    required: str


@dataclass(frozen=True)
class System:
    """What ``detect(root)`` returns.  ``mtas`` lists every MTA found installed (possibly
    several); ``active`` is the one mail is handed to, None when none or undecidable (then
    ``problems`` says why).  ``problems`` gathers unreadable files, broken symlinks, unknown OS."""

    root: Path
    os: OSInfo
    mtas: tuple[MTAInfo, ...]
    active: MTAInfo | None
    users: Users
    problems: tuple[Problem, ...] = ()
    active_reason: str = ""                        # how the active MTA was recognised
    package_db: PackageFormat = PackageFormat.UNKNOWN   # the package database that was read
    package_db_note: str = ""                      # why it could not be decoded, if so

    def mta(self, kind: MTAKind | str) -> MTAInfo | None:
        kind = MTAKind(kind)
        return next((m for m in self.mtas if m.kind is kind), None)

    def host_path(self, path: PurePosixPath | str) -> Path:
        """Where an in-system path lives on the host running kavsetup."""
        rel = PurePosixPath(path).relative_to("/") if PurePosixPath(path).is_absolute() else path
        return self.root / rel

    def to_dict(self) -> dict[str, Any]:
        doc = _plain(self)
        doc["active"] = self.active.kind.value if self.active else None
        doc["users"]["uids"] = sorted(self.users.uids)
        doc["users"]["gids"] = sorted(self.users.gids)
        for mta_doc, mta in zip(doc["mtas"], self.mtas, strict=True):
            gate = check_version(mta)
            mta_doc["gate"] = {"ok": gate.ok, "verdict": gate.verdict.value, "message": gate.message,
                               "required": gate.required}
            mta_doc["details"] = {"type": type(mta.details).__name__, **mta_doc["details"]}
        return {"schema": SCHEMA_VERSION, **doc}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _plain(value: Any) -> Any:
    """JSON-ready form: dataclasses -> dicts, enums -> values, paths -> str, Version -> text."""
    if isinstance(value, Version):
        return value.text
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, PurePosixPath | Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    return value


# --- guide 1.2: "sendmail 8.x, qmail 1.03, postfix 1.0 or higher, exim 4.0" -----------------

_REQUIRED: dict[MTAKind, str] = {
    MTAKind.SENDMAIL: "sendmail 8.x",
    MTAKind.QMAIL: "qmail 1.03 (netqmail 1.04-1.06 are 1.03 plus patches)",
    MTAKind.POSTFIX: "postfix 1.0 or higher",
    MTAKind.EXIM: "exim 4.x",
}


def _supported(kind: MTAKind, version: Version) -> bool:
    if kind is MTAKind.SENDMAIL:
        return version.major == 8
    if kind is MTAKind.EXIM:
        return version.major == 4
    if kind is MTAKind.POSTFIX:
        # Before 1.0 Postfix was numbered by date (19991231-pl13, Snapshot-20001217): a
        # "major" of 1999 or 20001217 is a snapshot, i.e. older than 1.0.
        return 1 <= version.major < 1000
    if kind is MTAKind.QMAIL:
        return version.parts[:2] == (1, 3) or (1, 4) <= version.parts[:2] <= (1, 6)
    raise AssertionError(kind)


def check_version(mta: MTAInfo) -> GateResult:
    """Guide 3.4: "comparing its version with the software requirements" (list in 1.2)."""
    required = _REQUIRED[mta.kind]
    if mta.version is None:
        return GateResult(True, GateVerdict.UNKNOWN,
                          f"{mta.kind.value}: version could not be determined; need {required} "
                          "(proceeding unchecked)", mta.kind, "", required)
    where = f" (from {mta.version_source})" if mta.version_source else ""
    if _supported(mta.kind, mta.version):
        return GateResult(True, GateVerdict.SUPPORTED,
                          f"{mta.kind.value} {mta.version.text}{where} meets {required}",
                          mta.kind, mta.version.text, required)
    return GateResult(False, GateVerdict.UNSUPPORTED,
                      f"{mta.kind.value} {mta.version.text}{where} is not supported: need {required} "
                      "(use --force to override)", mta.kind, mta.version.text, required)
