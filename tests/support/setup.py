"""Helpers for the console-setup tests (tests/setup): real pseudo-terminals through pexpect, roots
built from tests/fixtures/roots, and "answer whatever is asked" loops.

The dialogue asks only what detection could not decide, and the product-key / update questions
appear only where licensemanager / keepup2date are installed; so the tests answer by *prompt*
(each prompt is the one in kavsetup/answers.py), not by position, and assert which keys were
asked.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kavsetup.answers import BY_KEY
from tests.support.integration import REPO

JOURNAL = "var/lib/kav/5.5/kav4mailservers/journal/journal.json"
CONFIRM = r"Apply these changes\? \[(?:yes|no)\]: "


def prompt_re(key: str) -> str:
    return re.escape(BY_KEY[key].prompt) + r" \[[^\]\n]*\]: "


ASKABLE = [a.key for a in BY_KEY.values() if a.prompt]


def tool_questions() -> list[str]:
    """The questions asked only where licensemanager / keepup2date are installed (guide 3.3), in
    the dialogue's order: which of them this checkout has decides what the tests expect."""
    from kavsetup.conversation import tool

    keys = ["key_file"] if tool("licensemanager", "runtime.license") else []
    return keys + (["update_source", "proxy", "update_now"] if tool("keepup2date", "runtime.updater") else [])


def fixture_root(name: str, base: Path) -> Path:
    """tests/fixtures/roots/NAME built under ``base`` (skips with the reason if it cannot be)."""
    from tests.support import fixture_roots

    dest = base / name
    dest.mkdir(parents=True)
    try:
        return fixture_roots.build(name, dest)
    except Exception as exc:  # the Debian package cache may be missing on a bare clone
        pytest.skip(f"fixture root {name} cannot be built here: {exc}")


WATCH = ["/etc/postfix", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/kav",
         "/var/spool/filter", "/var/lib/kav"]


@contextmanager
def debian_postfix_root(base: Path, suite: str = "bookworm") -> Iterator[Path]:
    """A writable overlay of the distro-matrix helper's Debian root with Postfix really installed
    (detection, version and ``postfix check`` all real); skips with the reason when absent."""
    from tests.support.integration import Overlay, cached_root

    lower = cached_root(f"{suite}-postfix")
    if lower is None:
        pytest.skip(f"no {suite} postfix root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    base.mkdir(parents=True, exist_ok=True)
    with Overlay(lower, base) as root:
        yield root


def config_only_root(base: Path) -> Path:
    """Postfix's files without its binaries or package record: detection recognises no MTA, so
    the dialogue must ask for the mail server and its configuration file (guide 3.4)."""
    src = fixture_root("debian-12-postfix", base / "src")
    root = base / "bare"
    for rel in ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/postfix/main.cf",
                "etc/postfix/master.cf", "usr/sbin/nologin"):
        if (src / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, root / rel)
    shutil.rmtree(base / "src")
    return root


def terminal_signals() -> None:
    """In the child, before exec: Ctrl-C and Ctrl-\\ do what they do at a terminal.  A runner that
    starts the suite in the background of a non-interactive shell leaves SIGINT and SIGQUIT
    ignored, an inherited disposition that would make the tests' Ctrl-C (``sendintr``) a no-op."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def spawn(*argv: str) -> Any:
    """``kavsetup ARGV`` on a fresh pseudo-terminal."""
    import pexpect

    env = dict(os.environ, PYTHONPATH=str(REPO), TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "kavsetup.cli", *argv], cwd=str(REPO), env=env,
                          timeout=60, encoding="utf-8", dimensions=(50, 400), preexec_fn=terminal_signals)
    child.logfile_read = io.StringIO()
    return child


def transcript(child: Any) -> str:
    """Everything the command wrote to the terminal so far."""
    return str(child.logfile_read.getvalue())


def answer_all(child: Any, replies: dict[str, Any], *, confirm: str = "yes") -> list[str]:
    """Answer every question the dialogue asks: ``replies[key]`` (a list is used in order, for
    re-asked questions), else Enter (the default).  Returns the keys asked, in order."""
    import pexpect

    keys = list(ASKABLE)
    patterns = [prompt_re(k) for k in keys] + [CONFIRM, pexpect.EOF]
    asked: list[str] = []
    pending = {k: (list(v) if isinstance(v, list) else [v]) for k, v in replies.items()}
    while True:
        i = child.expect(patterns)
        if i == len(keys):
            child.sendline(confirm)
            continue
        if i == len(keys) + 1:
            return asked
        key = keys[i]
        asked.append(key)
        queue = pending.get(key, [])
        child.sendline(str(queue.pop(0)) if queue else "")


def finish(child: Any) -> int:
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0))


def run(*argv: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """``kavsetup ARGV`` with no terminal at all (stdin /dev/null by default)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "kavsetup.cli", *argv], cwd=str(REPO), env=env, stdin=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def journal(root: Path) -> dict[str, Any]:
    """The journal without its time stamp: what must be identical between two runs."""
    doc = json.loads((root / JOURNAL).read_text())
    doc.pop("started", None)
    return doc
