"""Asking the standing smtpscanner to reload its configuration (guide 6.4.1's SIGHUP, for the
filter; issue 18 item 1: "save atomically, reload the daemons").

kavconsole never runs as root.  In the packages it runs as the filter's account, the account the
standing smtpscanner runs as too (the units' and init scripts' User=kluser, docs/security.md), so
it may signal it, and nothing else.  The daemon is found through ``[smtpscan.general] PidFile``,
but a pid read from a file is only a claim: before the signal the process must be one of this
account's, be smtpscanner by its command line, and run with the very configuration file the
console edits.  Otherwise the console refuses (and the caller writes the refusal to the audit
log).  The answer comes back through the daemon's reload state beside the pid file
(:mod:`runtime.filter.reloadstate`): the generation now serving, or the one-line error naming
file, line and key.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.config import CONFIG_FILE, KavConfig
from runtime.filter.reloadstate import ReloadState, read_state
from runtime.fsutil import read_trusted

NAMES = (b"smtpscanner", b"runtime.filter")  # the installed program, or the module as tests run it
WAIT = 30.0  # seconds for the daemon's answer: it re-reads one file and builds its parts


@dataclass
class Outcome:
    """``status``: reloaded | refused (the daemon found the file invalid) | not-signalled (the
    console would not or could not signal) | no-answer | not-needed."""

    status: str
    text: str
    pid: int | None = None
    state: ReloadState | None = None


def _proc_config(pid: int) -> str | None:
    """The configuration file a running smtpscanner was started with: ``-c``/``--config`` on its
    command line, else its KAV_CONFIG, else the default; relative to its working directory."""
    try:
        argv = [a.decode("utf-8", "surrogateescape") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().decode(
            "utf-8", "surrogateescape").split("\0") if "=" in e)
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return None
    found = env.get("KAV_CONFIG", CONFIG_FILE)
    for i, a in enumerate(argv):
        if a in ("-c", "--config") and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith("--config="):
            found = a.split("=", 1)[1]
        elif a.startswith("-c") and len(a) > 2:
            found = a[2:]
    return os.path.join(cwd, found)


def verify(pid: int, config_path: str) -> str:
    """Why ``pid`` must not be signalled as this console's smtpscanner; '' when it may."""
    try:
        st = os.stat(f"/proc/{pid}")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid} is not running"
    if st.st_uid != os.getuid():
        return f"pid {pid} belongs to uid {st.st_uid}, not to this console's account (uid {os.getuid()})"
    if not any(n in cmdline for n in NAMES):
        shown = cmdline.replace(b"\0", b" ")[:80].decode("utf-8", "replace")
        return f"pid {pid} is not smtpscanner ({shown!r})"
    theirs = _proc_config(pid)
    try:
        same = theirs is not None and os.path.samefile(theirs, config_path)
    except OSError:
        same = False
    if not same:
        return f"pid {pid} runs with {theirs}, not with {config_path}"
    return ""


def request(cfg: KavConfig, config_path: str, wait: float = WAIT) -> Outcome:
    """Find, check and signal the standing smtpscanner, then wait for its answer."""
    listen = str(cfg.get("smtpscan.general", "ListenAddress"))
    if listen == "stdio":
        return Outcome("not-needed", "spawned by the MTA (ListenAddress=stdio): every session reads "
                                     f"{config_path} anew, nothing to reload")
    where = str(cfg.get("smtpscan.general", "PidFile") or "")
    if not where:
        return Outcome("not-signalled", "[smtpscan.general] PidFile is empty: the console cannot find the "
                                        "daemon; reload it with systemctl reload kav4mailservers-smtpscanner")
    pid_path = Path(where)
    owners = (os.getuid(),)
    raw = read_trusted(pid_path, owners)
    if raw is None:
        if pid_path.exists() or pid_path.is_symlink():
            return Outcome("not-signalled", f"refused: {pid_path} is not a regular file of this console's "
                                            "account writable by it alone")
        return Outcome("not-running", f"not running as a daemon (no {pid_path}): a spawned smtpscanner "
                                      "reads the file at every session; a daemon reads it when it starts")
    try:
        pid = int(raw.split()[0])
    except (ValueError, IndexError):
        return Outcome("not-signalled", f"refused: {pid_path} holds no pid")
    why = verify(pid, config_path)
    if why:
        return Outcome("not-signalled", f"refused to signal: {why} (pid file {pid_path})", pid)
    before = read_state(pid_path, owners)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        return Outcome("not-signalled", f"cannot signal pid {pid}: {exc.strerror}", pid)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = read_state(pid_path, owners)
        if now is not None and now.pid == pid and (before is None or now.attempts > before.attempts
                                                   or before.pid != pid):
            return _answer(pid, now)
        time.sleep(0.1)
    return Outcome("no-answer", f"pid {pid} signalled (SIGHUP), no answer in {ReloadState.path_for(pid_path)} "
                                f"within {wait:.0f} s: see smtpscanner's event log", pid)


def _answer(pid: int, state: ReloadState) -> Outcome:
    if state.result == "refused":
        return Outcome("refused", f"pid {pid}: reload refused, still serving generation {state.generation} of "
                                  f"the previous configuration: {state.message}", pid, state)
    text = f"pid {pid}: reloaded (generation {state.generation}): new connections use the new configuration"
    if state.restart_needed:
        text += f"; {', '.join(state.restart_needed)} changed: restart it for that to take effect " \
                "(systemctl restart kav4mailservers-smtpscanner)"
    return Outcome("reloaded", text, pid, state)


def daemon_state(cfg: KavConfig) -> ReloadState | None:
    """The standing smtpscanner's published state (None: no pid file configured, or none trusted)."""
    where = str(cfg.get("smtpscan.general", "PidFile") or "")
    return read_state(Path(where), (os.getuid(),)) if where else None
