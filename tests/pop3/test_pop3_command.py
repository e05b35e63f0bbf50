"""``kavsetup pop3`` on fixture roots: the file's mode, owner and content, idempotence, removal,
refusals (links, damaged markers, bad names), and — with Debian's fetchmail parsing what was
written — that no password can inject fetchmail syntax."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from kavsetup.cli import main
from kavsetup.pop3 import BEGIN, CRON_FILE

HOSTILE = "p'a\"ss\\word\npoll evil with proto POP3 user \"x\" there with password \"y\" is \"root\" here\n#"
UID = 65534  # nobody: fetchmail must find the account it runs as on this host


def cli(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.sys.stdin
    if stdin is not None:
        os.sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            rc = main(list(argv))
    finally:
        os.sys.stdin = old
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="kav4ms-pop3-", dir="/tmp"))
    os.chmod(base, 0o711)  # noqa: S103 - fetchmail runs as nobody and must reach the file
    r = base / "root"
    (r / "etc").mkdir(parents=True)
    (r / "home" / "bob").mkdir(parents=True)
    os.chown(r / "home" / "bob", UID, UID)
    os.chmod(r / "home" / "bob", 0o700)
    (r / "etc" / "passwd").write_text(f"root:x:0:0:root:/root:/bin/bash\nbob:x:{UID}:{UID}:Bob:/home/bob:/bin/sh\n")
    yield r
    shutil.rmtree(base, ignore_errors=True)


def rc_of(root: Path) -> Path:
    return root / "home" / "bob" / ".fetchmailrc"


@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by another user (needs root)")
def test_add_writes_0600_owned_by_user_with_guide_globals_and_cron(root: Path) -> None:
    rc, out, err = cli("pop3", "add", "pop.example.net", "dan", "secret", "bob", "--root", str(root))
    assert rc == 0, err
    st = rc_of(root).stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, UID, UID)
    text = rc_of(root).read_text()
    for line in ('set postmaster "bob"', "set bouncemail", "set no spambounce", 'set properties ""',
                 'poll "pop.example.net" with proto POP3 user "dan" there with password "secret" is "bob" here'):
        assert line in text.splitlines()
    cron = (root / CRON_FILE.lstrip("/")).read_text()
    assert "*/10 * * * * bob fetchmail --silent" in cron.splitlines()
    # idempotent: the same request changes nothing; a new password replaces the old one
    before = rc_of(root).read_bytes(), cron
    assert cli("pop3", "add", "pop.example.net", "dan", "secret", "bob", "--root", str(root))[0] == 0
    assert (rc_of(root).read_bytes(), (root / CRON_FILE.lstrip("/")).read_text()) == before
    assert cli("pop3", "add", "pop.example.net", "dan", "new", "bob", "--root", str(root))[0] == 0
    assert rc_of(root).read_text().count("poll ") == 1 and 'password "new"' in rc_of(root).read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by another user (needs root)")
def test_remove_leaves_the_users_own_lines_and_drops_cron_with_the_last_entry(root: Path) -> None:
    own = "# my own\npoll mine.example with proto IMAP user \"me\" there is \"bob\" here\n"
    rc_of(root).write_text(own)
    os.chown(rc_of(root), UID, UID)
    os.chmod(rc_of(root), 0o600)
    for host in ("a.example", "b.example"):
        assert cli("pop3", "add", host, "u", "pw", "bob", "--root", str(root))[0] == 0
    assert rc_of(root).read_text().startswith(own) and BEGIN in rc_of(root).read_text()
    assert cli("pop3", "remove", "a.example", "u", "bob", "--root", str(root))[0] == 0
    assert (root / CRON_FILE.lstrip("/")).exists()
    rc, out, _ = cli("pop3", "remove", "b.example", "u", "bob", "--root", str(root))
    assert rc == 0 and "dropped the fetchmail line" in out
    assert rc_of(root).read_text() == own
    assert not (root / CRON_FILE.lstrip("/")).exists()
    rc, out, _ = cli("pop3", "remove", "b.example", "u", "bob", "--root", str(root))
    assert rc == 0 and "nothing to remove" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by another user (needs root)")
def test_last_entry_removed_removes_a_file_that_only_held_ours(root: Path) -> None:
    assert cli("pop3", "add", "a.example", "u", "pw", "bob", "--root", str(root))[0] == 0
    assert cli("pop3", "remove", "a.example", "u", "bob", "--root", str(root))[0] == 0
    assert not rc_of(root).exists()


def test_planted_symlink_is_never_followed(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    rc_of(root).symlink_to(victim)
    rc, _, err = cli("pop3", "add", "a.example", "u", "pw", "bob", "--root", str(root))
    assert rc == 1 and "symbolic link" in err and ".fetchmailrc" in err
    assert victim.read_text() == "root:secret\n"


def test_symlinked_home_is_refused(root: Path, tmp_path: Path) -> None:
    shutil.rmtree(root / "home" / "bob")
    (tmp_path / "elsewhere").mkdir()
    (root / "home" / "bob").symlink_to(tmp_path / "elsewhere")
    rc, _, err = cli("pop3", "add", "a.example", "u", "pw", "bob", "--root", str(root))
    assert rc == 1 and "symbolic link" in err
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize(("argv", "needle"), [
    (("pop3", "add", "bad host;x", "u", "pw", "bob"), "HOST"),
    (("pop3", "add", "a.example", "u", "", "bob"), "PASSWORD: must not be empty"),
    (("pop3", "add", "a.example", "u", "p\0w", "bob"), "NUL"),
    (("pop3", "add", "a.example", "u", "pw", "nosuchuser"), "no user 'nosuchuser'"),
    (("pop3", "add", "a.example", "u", "pw", "bob", "--every", "0"), "--every"),
])
def test_bad_values_are_refused_with_one_line_and_nothing_written(root: Path, argv: tuple[str, ...],
                                                                  needle: str) -> None:
    rc, _, err = cli(*argv, "--root", str(root))
    assert rc == 1 and needle in err and err.count("\n") == 1
    assert not rc_of(root).exists() and not (root / CRON_FILE.lstrip("/")).exists()


def test_damaged_markers_are_refused(root: Path) -> None:
    rc_of(root).write_text(BEGIN + "\npoll x\n")
    rc, _, err = cli("pop3", "add", "a.example", "u", "pw", "bob", "--root", str(root))
    assert rc == 1 and "marker lines are damaged" in err


def test_dry_run_changes_nothing(root: Path) -> None:
    rc, out, _ = cli("pop3", "add", "a.example", "u", "pw", "bob", "--root", str(root), "--dry-run")
    assert rc == 0 and out.startswith("dry run:")
    assert not rc_of(root).exists() and not (root / CRON_FILE.lstrip("/")).exists()


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="Debian's fetchmail is not installed "
                    "(scripts/setup-host.sh installs it)")
@pytest.mark.skipif(os.geteuid() != 0, reason="writes files owned by another user (needs root)")
def test_hostile_password_and_login_cannot_inject_fetchmail_syntax(root: Path) -> None:
    """fetchmail itself parses the file: one poll, the values byte-for-byte as given."""
    rc, _, err = cli("pop3", "add", "pop.example.net", "dan'\"\\\npoll evil", "-", "bob", "--root", str(root),
                     stdin=HOSTILE + "\n")
    assert rc == 0, err
    text = rc_of(root).read_text()
    assert "evil" not in "".join(ln for ln in text.splitlines() if not ln.startswith('poll "pop.example.net"'))
    dump = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                           "fetchmail", "-f", str(rc_of(root)), "--configdump", "--nosyslog"],
                          capture_output=True, env={"HOME": str(root / "home" / "bob"), "PATH": os.environ["PATH"]})
    out = dump.stdout.decode("utf-8", "replace")
    assert dump.returncode == 0, dump.stderr
    assert out.count('"pollname":') == 1 and '"pollname":"pop.example.net"' in out
    # fetchmail's dump escapes with backslashes the way a JSON/Python string would
    assert '"password":"' + HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' in out
    assert '"remote":"dan\'\\"\\\\\\npoll evil"' in out
    assert "'localnames':[\"bob\"]" in out
