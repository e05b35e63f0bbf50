"""What a matrix cell is made of: a Debian suite, an MTA as Debian ships it, and the recipe of its root.

The recipe is data (package lists, debconf answers, shell hooks) so that the cache key of a root is
a hash of exactly what went into it: change a package or a hook and the root is rebuilt, change
nothing and the cached root is reused (testing.md, "Build each root once and cache it by content").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

#: Bump when the way roots are built changes in a way the recipe text does not show.
RECIPE_VERSION = 3

SUITES: tuple[str, ...] = ("bookworm", "trixie")

#: The host name every root answers to. Sendmail insists on a fully qualified one found in /etc/hosts.
HOSTNAME = "mta.test"

#: The local user that receives test mail, and the one that reads the postmaster's mail.
MAIL_USER = "alice"
ADMIN_USER = "kavadmin"

#: Packages every root gets: the product's runtime dependencies as Debian packages (so that
#: `dpkg -i` of our .deb succeeds without a network, which also proves the Depends are satisfiable
#: from the suite), and the tools the scenarios drive (swaks, ps, ip).
COMMON_PACKAGES: tuple[str, ...] = (
    "debconf",
    "adduser",
    "passwd",
    "procps",
    "iproute2",
    "swaks",
    "python3",
    "python3-jinja2",
    "python3-ruamel.yaml",
    # The .deb's Depends (pkg/deb/debian/control), so `dpkg -i` needs nothing from the network.
    "python3-ahocorasick",
    "python3-cryptography",
    "python3-distro",
    "python3-aiosmtpd",
    "python3-prometheus-client",
    # Debian's rpm: the matrix's rpm columns install the built .rpm with `rpm -i --nodeps` (issue 17).
    "rpm",
)


@dataclass(frozen=True)
class MtaFlavour:
    """One MTA as a Debian administrator would have it: the packages, the debconf answers, the tweaks.

    `config_paths` are the trees whose bytes, modes and owners the uninstall scenario compares with
    the snapshot taken before our package was installed.
    """

    name: str
    kind: str  # what `kavsetup install --mta` calls it
    packages: tuple[str, ...]
    preseed: tuple[str, ...] = ()
    customize: tuple[tuple[str, tuple[str, ...]], ...] = ()  # hooks run inside the new root, in order
    config_paths: tuple[str, ...] = ()
    suites: tuple[str, ...] = SUITES
    #: files from elsewhere in the repository the hooks need (name in the hooks dir -> path)
    extra: dict[str, Path] = field(default_factory=dict)


HOOKS = Path(__file__).resolve().parent / "hooks"


def hook(name: str, *args: str) -> tuple[str, tuple[str, ...]]:
    """A hook is a script under hooks/ run inside the root; its text is part of the cache key."""
    return (name, args)


POSTFIX = MtaFlavour(
    name="postfix",
    kind="postfix",
    packages=("postfix",),
    preseed=(
        "postfix postfix/main_mailer_type select Local only",
        f"postfix postfix/mailname string {HOSTNAME}",
        f"postfix postfix/destinations string {HOSTNAME}, localhost",
    ),
    customize=(hook("aliases.sh", ADMIN_USER), hook("postfix.sh")),
    config_paths=("/etc/postfix", "/etc/aliases", "/etc/mailname"),
)

_EXIM_PRESEED = (
    "exim4-config exim4/dc_eximconfig_configtype select local delivery only; not on a network",
    f"exim4-config exim4/mailname string {HOSTNAME}",
    f"exim4-config exim4/dc_other_hostnames string {HOSTNAME}",
    "exim4-config exim4/dc_local_interfaces string 127.0.0.1",
    "exim4-config exim4/dc_minimaldns boolean false",
    "exim4-config exim4/dc_localdelivery select mbox format in /var/mail/",
)

EXIM_SPLIT = MtaFlavour(
    name="exim4-split",
    kind="exim",
    packages=("exim4-daemon-light", "exim4-config"),
    preseed=(*_EXIM_PRESEED, "exim4-config exim4/use_split_config boolean true"),
    customize=(hook("aliases.sh", ADMIN_USER), hook("exim4.sh")),
    config_paths=("/etc/exim4", "/etc/aliases", "/etc/mailname"),
)

EXIM_UNSPLIT = MtaFlavour(
    name="exim4-unsplit",
    kind="exim",
    packages=("exim4-daemon-light", "exim4-config"),
    preseed=(*_EXIM_PRESEED, "exim4-config exim4/use_split_config boolean false"),
    customize=(hook("aliases.sh", ADMIN_USER), hook("exim4.sh")),
    config_paths=("/etc/exim4", "/etc/aliases", "/etc/mailname"),
)

SENDMAIL = MtaFlavour(
    name="sendmail",
    kind="sendmail",
    packages=("sendmail", "sendmail-cf", "m4", "make"),
    preseed=(),
    customize=(hook("aliases.sh", ADMIN_USER), hook("sendmail-nodns.sh")),
    config_paths=("/etc/mail", "/etc/aliases", "/etc/mailname"),
)

#: The qmail-queue(8) stand-in written for the integration tests (issue 4); read in place.
QMAIL_STANDIN = Path(__file__).resolve().parents[2] / "integration/qmail_standin/qmail-queue"
#: Its compiled set-uid front (issue 11 item 4): what makes queue.kav55 set-uid qmailq like the real
#: program when smtpscanner runs it as kluser; compiled inside the root, hence gcc there.
QMAIL_STANDIN_SETUID = QMAIL_STANDIN.with_name("qmail-queue-setuid.c")

QMAIL = MtaFlavour(
    name="qmail-standin",
    kind="qmail",
    packages=("gcc", "libc6-dev"),
    customize=(hook("qmail-standin.sh", ADMIN_USER),),
    config_paths=("/var/qmail/bin", "/var/qmail/control", "/var/qmail/alias"),
    extra={"qmail-queue": QMAIL_STANDIN, "qmail-queue-setuid.c": QMAIL_STANDIN_SETUID},
)

FLAVOURS: dict[str, MtaFlavour] = {
    f.name: f for f in (POSTFIX, EXIM_SPLIT, EXIM_UNSPLIT, SENDMAIL, QMAIL) if all(p.exists() for p in f.extra.values())
}


@dataclass(frozen=True)
class RootSpec:
    """A suite plus an MTA flavour: one cached root."""

    suite: str
    flavour: MtaFlavour

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(sorted({*COMMON_PACKAGES, *self.flavour.packages}))

    def hooks(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Hooks every root gets, then the MTA's own (run after the packages are installed)."""
        return (hook("hosts.sh", HOSTNAME), hook("base.sh", MAIL_USER, ADMIN_USER), *self.flavour.customize)

    def recipe(self) -> dict[str, object]:
        return {
            "version": RECIPE_VERSION,
            "suite": self.suite,
            "packages": list(self.packages),
            "preseed": list(self.flavour.preseed),
            "hooks": [[name, list(args), (HOOKS / name).read_text()] for name, args in self.hooks()],
            "extra": {name: path.read_text() for name, path in sorted(self.flavour.extra.items())},
        }

    @property
    def key(self) -> str:
        blob = json.dumps(self.recipe(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.flavour.name}"


def all_specs(suites: tuple[str, ...] = SUITES, flavours: tuple[str, ...] | None = None) -> list[RootSpec]:
    names = flavours or tuple(FLAVOURS)
    return [RootSpec(s, FLAVOURS[n]) for s in suites for n in names if s in FLAVOURS[n].suites]
