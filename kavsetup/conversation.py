"""The console setup (guide 3.3, 3.4) as a conversation that only gathers answers.

Guide 3.4: the installer searches for the mail server, checks its version, finds its
configuration file, and "if additional information becomes necessary ... will issue requests for
information to the server's console.  Entry of invalid answers will terminate the process."
Here a question is asked only when detection could not decide it (which MTA when several or
none are recognised, the configuration file when none was found, a port when the default is
taken) or when it is the administrator's choice (spawn/daemon, LMTP/SMTP, protected domains,
administrator address, product key, update source, importing an earlier installation).  An
invalid answer is re-asked with the reason — we do better than the guide's "terminate" and say
so — and ``?`` prints the help, citing the guide section.

Nothing here writes a file: :func:`converse` returns the MTA and the IntegrationSettings, and the
command (kavsetup/commands/setup.py) shows the dry-run diff, asks for confirmation and applies
through the journaled pipeline.  Ctrl-C or end of input at any question raises
:class:`Cancelled` before anything was touched.  Without a console (``console=None``) a question
takes its default where that is safe; otherwise it is collected into :class:`MissingAnswers`
(exit 2), which names the flag or answers-file key for each — the command never waits on a
terminal that is not there.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kavsetup.answers import BY_KEY, format_value, parse
from kavsetup.detect import check_version
from kavsetup.detect.model import MTAInfo, System
from kavsetup.integrate.files import Root
from kavsetup.integrate.settings import IntegrationSettings, SettingsError, validate
from kavsetup.mta import CompileError, integration

BETTER_THAN_GUIDE = ("(guide 3.4 stops the installer on an invalid answer; here you may answer again, "
                     "'?' for help, Ctrl-C to leave everything unchanged)")


class Cancelled(Exception):
    """Ctrl-C or end of input during the dialogue: nothing has been written."""


class MissingAnswers(SettingsError):
    """No console and no answer where no default is safe; the message is one line (exit 2)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        parts = []
        for k in keys:
            flag = BY_KEY[k].flag
            parts.append(f"{k} ({flag + ' or ' if flag else ''}answers key '{k}')")
        super().__init__("cannot ask (no terminal, or --non-interactive) and no answer for: " + "; ".join(parts)
                         + " (give them, or run 'kavsetup setup' on a terminal)")


class Console:
    """Questions on the terminal: default in brackets, ``?`` for help, re-ask on invalid input."""

    def __init__(self, write: Callable[[str], object] | None = None,
                 read: Callable[[str], str] | None = None) -> None:
        self.write = write or (lambda text: print(text, flush=True))
        self.read = read or read_line

    def _line(self, prompt: str) -> str:
        try:
            return self.read(prompt)
        except (EOFError, KeyboardInterrupt):
            self.write("")
            raise Cancelled() from None

    def ask(self, key: str, default: Any, check: Callable[[Any], str] | None = None,
            prompt: str = "") -> Any:
        a = BY_KEY[key]
        shown = format_value(key, default) if default != "" else ""
        while True:
            raw = self._line(f"{prompt or a.prompt} [{shown}]: ").strip()
            if raw == "?":
                self.write(f"  {a.help} (guide {a.section})")
                if a.choices:
                    self.write(f"  answers: {', '.join(a.choices)}")
                continue
            if raw == "":
                raw = shown
            try:
                value = parse(key, raw)
                why = check(value) if check else ""
            except ValueError as exc:
                why = str(exc)
            if not why:
                return value
            self.write(f"  not accepted: {why} {BETTER_THAN_GUIDE}")

    def confirm(self, prompt: str, default: bool = True) -> bool:
        while True:
            raw = self._line(f"{prompt} [{'yes' if default else 'no'}]: ").strip().lower()
            if raw in ("", "y", "yes", "n", "no"):
                return default if raw == "" else raw.startswith("y")
            if raw == "?":
                self.write("  yes: write the changes shown above (journaled; 'kavsetup uninstall' undoes "
                           "them, guide chapter 7); no: leave everything as it is")
                continue
            self.write(f"  not accepted: answer yes or no {BETTER_THAN_GUIDE}")


def read_line(prompt: str) -> str:
    """One line from the terminal, interruptible at any instant.

    Why not ``input()``: a Ctrl-C that arrives after the prompt is written but before ``read(2)``
    starts is only flagged, and the blocking read then waits for more input — the dialogue
    would hang instead of leaving.  Waiting in short ``select`` slices lets Python run the
    SIGINT handler whenever it arrives.  The terminal stays in canonical mode, so line editing
    (erase, kill) is the kernel's; Ctrl-D on an empty line is end of input."""
    import os
    import select

    sys.stdout.write(prompt)
    sys.stdout.flush()
    fd = sys.stdin.fileno()
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            if data:
                break
            raise EOFError
        data += chunk
    return data.decode("utf-8", "replace").rstrip("\r\n")


@dataclass
class Result:
    mta: MTAInfo
    settings: IntegrationSettings
    answers: dict[str, Any] = field(default_factory=dict)   # every answer decided, for --save-answers
    key_file: str = ""
    update_now: bool = False


def tool(name: str, module: str) -> list[str] | None:
    """How to run one of our own programs (licensemanager, keepup2date), or None when this
    installation does not have it: the command on PATH; else its console-script entry point
    (this distribution's metadata) or ``module``'s ``main``, if importable.  Why both: another
    part of the product may land before or after this one, and a source checkout has the
    module without the script on PATH."""
    path = shutil.which(name)
    if path:
        return [path]
    from importlib.metadata import entry_points

    target = next((f"{ep.module}:{ep.attr}" for ep in entry_points(group="console_scripts", name=name)), "")
    mod, _, func = (target or f"{module}.cli:main").partition(":")
    try:
        found = importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return None
    return [sys.executable, "-c", f"import sys; from {mod} import {func} as m; sys.exit(m())"]


def config_problem(root: Root, kind: str, path: str) -> str:
    """Why ``path`` is not ``kind``'s configuration ("" when it looks like one)."""
    if not path.startswith("/"):
        return f"{path}: give the path as seen inside the system, starting with /"
    img = root.read(path)
    setup = integration(kind).SETUP  # type: ignore[attr-defined]
    if img.kind == "absent":
        return f"{path}: no such file in {root.path}"
    if not setup["config_is"]:
        return "" if img.kind == "dir" else f"{path}: not a directory ({kind}'s home, e.g. {setup['config']})"
    if img.kind != "file":
        return f"{path}: not a regular file"
    text = img.text()
    if not re.search(setup["config_is"], text, re.M) or (
            setup["config_not"] and re.search(setup["config_not"], text, re.M)):
        return f"{path}: does not look like {kind}'s configuration (e.g. {setup['config']})"
    return ""


def _facts(system: System) -> list[str]:
    lines = [f"System: {system.os.pretty or system.os.id}"]
    if system.mtas:
        for m in system.mtas:
            ver = m.version.text if m.version else "version unknown"
            lines.append(f"Mail server: {m.kind.value} {ver}{' (active)' if m.active else ''}"
                         f"{', configuration ' + str(m.config_file) if m.config_file else ''}")
    else:
        lines.append("Mail server: none recognised")
    return lines


def converse(root: Root, system: System, given: dict[str, Any], console: Console | None, *,
             base: IntegrationSettings | None = None, force: bool = False, ask_all: bool = False,
             own_ports: tuple[int, ...] = ()) -> Result:
    """Decide every answer: ``given`` (answers file + flags) first, then detection, then the
    console (or, without one, the safe default).  ``ask_all`` (reconfigure): ask again the
    questions already answered, with those answers as defaults; ``own_ports`` (reconfigure): the
    ports of the integration being replaced, busy only because of it."""
    from kavsetup.integrate.site import choose_mta, default_conf_text, site_settings

    base = base or IntegrationSettings()
    answers: dict[str, Any] = {}
    missing: list[str] = []
    say = console.write if console else (lambda text: None)

    for line in _facts(system):
        say(line)

    # 1. which MTA (guide 3.4: "Searching for an installed mail server")
    installed = [m.kind.value for m in system.mtas]
    kind = given.get("mta", "auto") or "auto"
    if kind == "auto":
        several = len(installed) > 1
        if system.active is not None and not (several and console) and not ask_all:
            kind = system.active.kind.value
        elif console is None:
            if system.active is not None:
                kind = system.active.kind.value
            else:
                missing.append("mta")
        else:
            default = (system.active.kind.value if system.active else installed[0] if installed
                       else next((k for k in BY_KEY["mta"].choices
                                  if root.read(integration(k).SETUP["config"]).exists), "postfix"))  # type: ignore[attr-defined]
            kind = console.ask("mta", default)
    elif ask_all and console:
        kind = console.ask("mta", kind)
    if "mta" not in missing:
        answers["mta"] = kind

    # 2. its configuration file ("Searching for the mail server configuration file"); a file
    # answered for another MTA (reconfigure after switching, say, from Exim to Postfix) is dropped
    config = given.get("mta_config", "") if given.get("mta", "auto") in ("auto", kind) else ""
    detected = system.mta(kind) if "mta" not in missing else None
    if config:
        if console is not None and (why := config_problem(root, kind, config)):
            say(f"  {why}")
            config = console.ask("mta_config", config, lambda v: config_problem(root, kind, v))
    elif "mta" in missing or detected is None or detected.config_file is None and kind != "qmail":
        if console is None:
            missing.append("mta_config")
        else:
            default = integration(kind).SETUP["config"]  # type: ignore[attr-defined]
            config = console.ask("mta_config", default, lambda v: config_problem(root, kind, v))
    if missing:
        raise MissingAnswers(missing)
    if config:
        answers["mta_config"] = config
    mta = choose_mta(system, root, kind, config)

    # 3. version gate ("comparing its version with the software requirements", guide 1.2)
    gate = check_version(mta)
    say(f"Version check: {gate.message}")
    if not gate.ok and not force:
        raise CompileError(gate.message + " (use --force to integrate anyway)")

    known = {k: v for k, v in given.items() if k in IntegrationSettings.__dataclass_fields__}
    s = site_settings(root, mta, validate(base.with_(**known)))
    s = s.with_(taken_ports=tuple(p for p in s.taken_ports if p not in own_ports))
    setup: dict[str, Any] = integration(mta.kind).SETUP  # type: ignore[attr-defined]
    changes: dict[str, Any] = {}

    def pick(key: str, default: Any, check: Callable[[Any], str] | None = None, *, always: bool = True) -> None:
        """Answer ``key``: given wins (re-asked only by reconfigure), else ask on the console
        (when ``always`` or the default is unusable), else the default."""
        if key in given and not (ask_all and console):
            value = given[key]
        elif console is not None and always:
            value = console.ask(key, given.get(key, default), check)
        else:
            value = default
        answers[key] = value
        changes[key] = value

    # 4. the choices this MTA has (Postfix spawn/daemon, LMTP/SMTP)
    for key in setup["choices"]:
        pick(key, getattr(s, key))

    # 5. ports, only when the defaults are taken (guide 4.4.3)
    taken = set(s.taken_ports)
    for key in setup["ports"]:
        default = getattr(s, key)
        busy = default in taken
        if busy and console is None and key not in given:
            # No one to ask: the plan moves both ports up together past the taken ones and says
            # so in a note (kavsetup/mta/common.choose_ports), as a non-interactive install always did.
            continue
        if busy:
            say(f"Port {default} ({key}) is already in use here.")
            others = {getattr(s, k) for k in setup["ports"]} | set(changes.values())
            default = next(p for p in range(default + 1, 65536) if p not in taken and p not in others)

        def port_ok(v: Any, key: str = key) -> str:
            if not 0 < v < 65536:
                return f"{v} is not a TCP port"
            if v in taken:
                return f"port {v} is already in use here"
            other = "reinject_port" if key == "filter_port" else "filter_port"
            return f"port {v} is the {other}" if changes.get(other) == v else ""
        if key in given or busy:
            pick(key, default, port_ok, always=busy)

    # 6. protected domains and the administrator (guide 5.4.1, 4.1)
    def domains_ok(v: Any) -> str:
        try:
            validate(IntegrationSettings(domains=v))
        except SettingsError as exc:
            return str(exc)
        return ""

    def address_ok(v: Any) -> str:
        from runtime.config.values import Address

        try:
            Address().parse(v)
        except ValueError as exc:
            return str(exc)
        return ""
    pick("domains", s.domains or ".*", domains_ok)
    if changes["domains"] == ".*":
        changes["domains"] = ""          # the schema's default: leave LicenseDomains alone
    pick("admin_address", s.admin_address or "postmaster@localhost", address_ok)
    if changes["admin_address"] == "postmaster@localhost" and "admin_address" not in given and console is None:
        changes["admin_address"] = ""

    # 7. an earlier installation's settings (guide 3.2), only when one is there and ours is not
    from kavsetup import importer

    old = next((c for c in (*importer.CANDIDATES_50, *importer.CANDIDATES_4X) if root.read("/" + c).kind == "file"),
               None)
    if "import_from" in given:
        pick("import_from", given["import_from"])
    elif old and not root.read(s.conf_file).exists:
        say(f"Found an earlier installation's configuration: /{old}")
        choice = console.ask("import_from", "/" + old, lambda v: "" if v in ("", "no") or root.read(v).kind == "file"
                             else f"{v}: no such file") if console else ""
        answers["import_from"] = changes["import_from"] = "" if choice == "no" else choice
    if changes.get("import_from") == "no":
        changes["import_from"] = ""

    # 8. product key and updates (guide 3.3 steps 2-4), through our own programs when installed
    key_file, update_now = "", False
    if tool("licensemanager", "runtime.license") is None:
        say("Product key: licensemanager is not installed here; skipped (install the key later with "
            "'licensemanager -a FILE', guide 3.3 step 2).")
        key_file = given.get("key_file", "")
        if key_file:
            answers["key_file"] = key_file
    else:
        def key_ok(v: Any) -> str:
            from pathlib import Path
            return "" if v == "" or Path(v).is_file() else f"{v}: no such file"
        pick("key_file", "", key_ok)
        key_file = answers["key_file"]
        del changes["key_file"]
        if not key_file:
            say("  No product key: 'If the key is not installed, work with the application will be "
                "impossible' (guide 3.3); install it before using the application.")
    if tool("keepup2date", "runtime.updater") is None:
        say("Updates: keepup2date is not installed here; update source and first update skipped "
            "(guide 3.3 steps 3-4).")
        for key in ("update_source", "proxy"):
            if key in given:
                answers[key] = changes[key] = given[key]
    else:
        pick("update_source", s.update_source)
        pick("proxy", s.proxy)
        pick("update_now", given.get("update_now", console is not None))
        update_now = bool(answers["update_now"])
        del changes["update_now"]

    settings = validate(s.with_(**changes, mta_config=config))
    if settings.import_from != s.import_from:   # answered now: the imported settings seed the new file
        settings = settings.with_(conf_default_text=default_conf_text(root, settings))
    return Result(mta, settings, answers, key_file, update_now)


def post_actions(root: Root, result: Result, write: Callable[[str], object]) -> int:
    """After the integration is applied: install the key and run the first update (guide 3.3
    steps 2 and 4).  Only on the live system: our programs act on /, not on a --root tree."""
    import subprocess

    failures = 0
    steps: list[tuple[str, list[str] | None, list[str]]] = []
    if result.key_file:
        steps.append(("licensemanager", tool("licensemanager", "runtime.license"), ["-a", result.key_file]))
    if result.update_now:
        steps.append(("keepup2date", tool("keepup2date", "runtime.updater"), []))
    for name, argv, extra in steps:
        if argv is None:
            continue
        if not root.is_live:
            write(f"{name}: not run for --root {root.path}; run '{name} {' '.join(extra)}' inside that system")
            continue
        rc = subprocess.run([*argv, *extra], check=False).returncode
        if rc != 0:
            failures += 1
            write(f"{name} {' '.join(extra)} exited with status {rc}; the integration stays in place")
    return failures
