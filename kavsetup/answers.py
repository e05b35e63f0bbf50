"""The setup answers (guide 3.3, 3.4) and their written forms: YAML, ``autoanswers.conf``, debconf.

Guide 3.4: "If additional information becomes necessary during configuration ... the installer
will issue requests for information to the server's console."  Every such request is one
:class:`Answer` here: the console dialogue (kavsetup/conversation.py), the answers files and the
Debian package's debconf questions all use this one table, so a question asked on the console,
a key in ``setup.yaml`` and a line of ``autoanswers.conf`` cannot drift apart.

Forms read by :func:`load` (one parser each):

* YAML (``setup.yaml``, ``--answers``): ``key: value``; read with ruamel.yaml's round-trip loader
  so errors name the line; written back by :func:`save_yaml` with the same loader, so comments an
  administrator added by hand survive a re-save.
* ``autoanswers.conf`` (front-ends of the 5.x era wrote ``KEY=value`` lines): ``#`` comments,
  blank lines, optional single or double quotes around the value.  The guide does not document
  that file's key names, so we accept the upper-case form of every answers key (``FILTER_PORT``)
  plus the spellings in :attr:`Answer.legacy`; anything else is an error naming file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kavsetup.integrate.settings import POSTFIX_MODES, SettingsError

MTA_KINDS = ("postfix", "sendmail", "exim", "qmail")


@dataclass(frozen=True)
class Answer:
    """One question of the setup: its key in every answers form, the command-line flag that
    gives it, the prompt, the guide section the ``?`` help cites, and the help itself."""

    key: str
    kind: str                     # "str", "int", "bool", "choice"
    flag: str                     # command-line flag, "" when only files give it
    prompt: str
    section: str
    help: str
    choices: tuple[str, ...] = ()
    legacy: tuple[str, ...] = ()  # accepted autoanswers.conf spellings besides KEY.upper()


ANSWERS: tuple[Answer, ...] = (
    Answer("mta", "choice", "--mta", "Mail server to integrate with", "3.4",
           "Several mail servers are installed, or none could be recognised: name the one that "
           "receives mail (the program behind /usr/sbin/sendmail).", MTA_KINDS, ("MAILSERVER", "MTA_TYPE")),
    Answer("mta_config", "str", "--mta-config", "Main configuration file of the mail server", "3.4",
           "Guide 3.4: 'Searching for the mail server configuration file, and modify it.'  Give the "
           "file as seen inside the system (Postfix main.cf, sendmail.cf, Exim's configure file, or "
           "qmail's home /var/qmail).", (), ("MTA_CONFIG_PATH", "MAILSERVER_CONFIG")),
    Answer("postfix_mode", "choice", "", "How Postfix runs smtpscanner (daemon/spawn/proxy)", "4.4.3",
           "daemon (default): smtpscanner runs as its own service (started and enabled by kavsetup) "
           "and listens on the filter port; no start-up per connection.  spawn: Postfix starts "
           "smtpscanner per connection as kluser (guide 4.4.3), ~1 s of start-up each time.  proxy: "
           "the same service as Postfix's before-queue filter (smtpd_proxy_filter): mail is scanned "
           "before Postfix queues it, one queue pass instead of two; always SMTP.",
           POSTFIX_MODES),
    Answer("protocol", "choice", "", "Protocol between the MTA and smtpscanner (lmtp/smtp)", "6.6.4",
           "LMTP reports a result per recipient; SMTP passes the client's address with XFORWARD "
           "(Protocol in [smtpscan.general], guide 6.6.4).", ("lmtp", "smtp")),
    Answer("filter_port", "int", "", "Port the MTA hands mail to smtpscanner on", "4.4.3",
           "The default 10025 is already used here; pick a free loopback port (guide 4.4.3).",
           (), ("SMTPSCANNER_PORT",)),
    Answer("reinject_port", "int", "", "Port smtpscanner returns scanned mail on", "4.4.3",
           "The default 10026 is already used here; pick a free loopback port for the MTA's "
           "reinjection listener (guide 4.4.3, ForwardMailer).", (), ("REINJECT_PORT",)),
    Answer("domains", "str", "", "Protected mail domains (POSIX regexes, comma separated)", "5.4.1",
           "LicenseDomains in [smtpscan.license]: mail for these domains is protected; '.*' "
           "protects every domain (guide 5.4.1).", (), ("LICENSE_DOMAINS", "PROTECTED_DOMAINS")),
    Answer("admin_address", "str", "", "Administrator address for notifications", "4.1",
           "AdminAddress in [smtpscan.group:default]: who is told about infected, suspicious and "
           "quarantined mail (guide 4.1, default postmaster@localhost).", (), ("ADMIN_EMAIL",)),
    Answer("import_from", "str", "", "Import the settings of the earlier installation", "3.2",
           "An earlier kav4mailservers (5.0) or AVP (4.x) configuration was found; answer its path "
           "to carry its settings into the new kav4mailservers.conf, or 'no'.", (), ("IMPORT",)),
    Answer("key_file", "str", "", "Product key file to install (empty: later)", "3.3",
           "Guide 3.3 step 2: the key is installed with 'licensemanager -a FILE'.  Without a key "
           "work with the application will be impossible; you can install it later, before "
           "using the application.", (), ("LICENSE_KEY", "KEYFILE")),
    Answer("update_source", "str", "", "Update source for keepup2date (URL or directory; empty: default)",
           "5.1.1", "UpdateServerUrl in [updater.options] (guide 5.1.1): your own mirror or a local "
           "directory; empty keeps the default list of update servers.", (), ("UPDATE_URL",)),
    Answer("proxy", "str", "", "HTTP proxy for updates (http://user:password@host:port; empty: none)",
           "5.1.5", "ProxyAddress in [updater.options] (guide 5.1.5).", (), ("HTTP_PROXY", "PROXY_ADDRESS")),
    Answer("update_now", "bool", "", "Update the anti-virus databases now", "3.3",
           "Guide 3.3 step 4: 'Ensure that the anti-virus databases are updated after application "
           "setup'; runs keepup2date once.", (), ("RUN_UPDATER",)),
    # Answered only in files (no question): the integration details docs/integration.md lists.
    Answer("filter_host", "str", "", "", "4.4.3", "Address smtpscanner listens on."),
    Answer("maxproc", "int", "", "", "4.4.3", "Parallel scans the MTA may start."),
    Answer("chain", "bool", "--chain", "", "4.4.3", "Keep an existing Postfix content_filter after ours."),
    Answer("notify_from", "str", "", "", "6.1.4", "NotifyFromAddress in [smtpscan.general]."),
    Answer("user", "str", "", "", "4.4.3", "Account smtpscanner runs as."),
    Answer("group", "str", "", "", "4.4.3", "Group of that account."),
    Answer("spool", "str", "", "", "4.4.3", "smtpscanner's spool directory."),
)
BY_KEY: dict[str, Answer] = {a.key: a for a in ANSWERS}

_TRUE = ("yes", "y", "true", "on", "1")
_FALSE = ("no", "n", "false", "off", "0")


def parse(key: str, raw: Any) -> Any:
    """The typed value of answer ``key`` from what was typed or written; ValueError says why not."""
    a = BY_KEY[key]
    if a.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not yes or no")
    if a.kind == "int":
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a number")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    text = "" if raw is None else str(raw).strip()
    if a.kind == "choice" and text not in a.choices:
        raise ValueError(f"{text!r} is not one of {', '.join(a.choices)}")
    if any(c in text for c in "\r\n\0"):
        raise ValueError("line breaks are not allowed")
    return text


def format_value(key: str, value: Any) -> str:
    if BY_KEY[key].kind == "bool":
        return "yes" if value else "no"
    return str(value)


# -- reading --------------------------------------------------------------------------------
_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def is_autoanswers(path: Path, text: str) -> bool:
    """``KEY=value`` lines (and comments) only, or a ``.conf`` name: the historical form."""
    if path.suffix in (".yaml", ".yml"):
        return False
    if path.suffix == ".conf":
        return True
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and all(_ASSIGN.match(ln) for ln in lines)


def load(path: Path) -> dict[str, Any]:
    """Answers from ``path`` in either file form: key -> typed value.  Errors are one line naming
    the file, the line and the key (SettingsError, exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from exc
    return load_autoanswers(path, text) if is_autoanswers(path, text) else load_yaml(path, text)


def load_autoanswers(path: Path, text: str) -> dict[str, Any]:
    names: dict[str, str] = {}
    for a in ANSWERS:
        names[a.key.upper()] = a.key
        names.update({n: a.key for n in a.legacy})
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ASSIGN.match(line)
        if not m:
            raise SettingsError(f"{path}:{n}: expected KEY=value")
        name, raw = m.group(1).upper(), m.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw = raw[1:-1]
        key = names.get(name)
        if key is None:
            raise SettingsError(f"{path}:{n}: {m.group(1)}: unknown answer (docs/setup.md lists the keys)")
        try:
            out[key] = parse(key, raw)
        except ValueError as exc:
            raise SettingsError(f"{path}:{n}: {m.group(1)}: {exc}") from None
    return out


def load_yaml(path: Path, text: str) -> dict[str, Any]:
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise SettingsError(f"{path}: {exc}".replace("\n", " ")) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SettingsError(f"{path}: expected a mapping of answers (key: value)")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        where = f"{path}:{doc.lc.key(key)[0] + 1}" if hasattr(doc, "lc") else str(path)
        if key not in BY_KEY:
            known = ", ".join(a.key for a in ANSWERS)
            raise SettingsError(f"{where}: {key}: unknown answer (known: {known})")
        a = BY_KEY[key]
        if a.kind == "int" and not isinstance(value, int):
            raise SettingsError(f"{where}: {key}: expected a number, got {value!r}")
        if a.kind == "bool" and not isinstance(value, bool):
            raise SettingsError(f"{where}: {key}: expected yes/no, got {value!r}")
        try:
            out[key] = parse(key, value)
        except ValueError as exc:
            raise SettingsError(f"{where}: {key}: {exc}") from None
    return out


# -- writing --------------------------------------------------------------------------------
HEADER = ("kav4mailservers setup answers (guide 3.3, 3.4), written by 'kavsetup setup --save-answers'.\n"
          "Replay with: kavsetup setup --answers THIS_FILE  (asks nothing; docs/setup.md lists the keys).\n"
          "Your own comments are kept when the file is saved again.")


def save_yaml(path: Path, answers: dict[str, Any]) -> None:
    """Write ``answers`` to ``path``: an existing file is updated through ruamel.yaml's round trip
    (the administrator's comments and order stay), a new one gets a comment per key."""
    import io

    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.comments import CommentedMap

    from runtime.fsutil import atomic_write

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc: Any = None
    if path.exists():
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"))
        except (OSError, YAMLError) as exc:
            raise SettingsError(f"{path}: cannot update: {exc}".replace("\n", " ")) from exc
    if not isinstance(doc, CommentedMap):
        doc = CommentedMap()
        doc.yaml_set_start_comment(HEADER)
    for a in ANSWERS:
        if a.key not in answers:
            continue
        value = answers[a.key]
        if a.key in doc:
            doc[a.key] = value
            continue
        doc[a.key] = value
        what = a.prompt or a.help.rstrip(".")
        doc.yaml_set_comment_before_after_key(a.key, before=f"{what} (guide {a.section})")
    buf = io.StringIO()
    yaml.dump(doc, buf)
    atomic_write(path, buf.getvalue().encode("utf-8"), mode=0o600)
