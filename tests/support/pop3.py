"""The POP3 path of guide 6.5 with real parts, inside a network namespace of its own.

``run_in_namespace(base)`` re-runs this module as ``unshare --net`` (loopback up, nothing else:
the host's network is never touched), where port 110 and 25 are free to take:

    remote mailbox (Debian's dovecot, POP3 on 127.0.0.1:110, a maildir holding an EICAR mail
    and a clean one)  ->  Debian's fetchmail, run as the local user with the .fetchmailrc that
    ``kavsetup pop3 add`` wrote  ->  127.0.0.1:25 = the real smtpscanner (+ aveserver)
    ->  reinjection into an SMTP sink standing for the local delivery.

It prints one JSON object: fetchmail's exit code and output, what the sink received, and what is
left in the remote mailbox.  The test (tests/pop3/test_fetchmail_path.py) asserts on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

NOBODY = 65534
REMOTE_USER = "dan"
#: Quotes and a backslash: a value the guide's script would have broken (dovecot's passwd-file
#: cannot hold a colon or newline; tests/pop3/test_pop3_command.py covers those with fetchmail).
REMOTE_PASSWORD = "pa\"ss'wo\\rd 1"


def dovecot_conf(base: Path) -> str:
    return f"""protocols = pop3
listen = 127.0.0.1
base_dir = {base}/dovecot-run
state_dir = {base}/dovecot-state
log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/dovecot.passwd
}}
userdb {{
  driver = static
  args = uid={NOBODY} gid={NOBODY} home={base}/remote/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = 110
  }}
}}
"""


def _own(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)


def inside(base: Path) -> dict[str, object]:
    from tests.support.filter import Sink, Stack, eicar_mail, mail
    from tests.support.procs import can_connect, wait_for

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # the remote mailbox
    new = base / "remote" / REMOTE_USER / "Maildir" / "new"
    for d in ("cur", "tmp", "new"):
        (new.parent / d).mkdir(parents=True, exist_ok=True)
    (new / "1.eicar").write_bytes(eicar_mail("EICAR", subject="pop3 eicar", to="dan@remote.example"))
    (new / "2.clean").write_bytes(mail("pop3 clean", {"notes.txt": b"nothing here\n"}, to="dan@remote.example"))
    _own(base / "remote")
    (base / "dovecot.passwd").write_text(f"{REMOTE_USER}:{{PLAIN}}{REMOTE_PASSWORD}\n")
    (base / "dovecot.conf").write_text(dovecot_conf(base))
    dove = subprocess.Popen(["dovecot", "-F", "-c", str(base / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=open(base / "dovecot.err", "wb"))
    sink = Sink().start()
    stack = Stack(base / "kav", sink, port=25)
    stack.write({"default": {"Recipients": ".*"}})
    try:
        wait_for(lambda: can_connect(("127.0.0.1", 110)) or dove.poll() is not None, what="dovecot")
        stack.start()
        # the local side: a root whose user bob (uid nobody) receives the mail
        root = base / "root"
        (root / "etc").mkdir(parents=True)
        (root / "home" / "bob").mkdir(parents=True)
        os.chown(root / "home" / "bob", NOBODY, NOBODY)
        (root / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\nbob:x:{NOBODY}:{NOBODY}::/home/bob:/bin/sh\n")
        add = subprocess.run([sys.executable, "-m", "kavsetup.cli", "pop3", "add", "127.0.0.1", REMOTE_USER, "-",
                              "bob", "--root", str(root), "--no-tls"], input=REMOTE_PASSWORD + "\n", text=True,
                             capture_output=True, env=stack.env())
        if add.returncode != 0:
            return {"add": add.returncode, "add_err": add.stderr}
        fm = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                             "fetchmail", "--nosyslog", "-v", "-f", str(root / "home" / "bob" / ".fetchmailrc")],
                            capture_output=True, text=True, timeout=120,
                            env={"HOME": str(root / "home" / "bob"), "PATH": os.environ["PATH"], "LC_ALL": "C"})
        deadline = time.monotonic() + 30
        while len(sink.got) < 3 and time.monotonic() < deadline:  # delivery + notices come shortly after
            time.sleep(0.2)
        time.sleep(1)
        return {
            "add": 0, "fetchmail": fm.returncode, "fetchmail_out": fm.stdout + fm.stderr,
            "got": [{"subject": g.msg.get("Subject", ""), "rcpts": g.rcpts, "notice": g.notice,
                     "x_anti_virus": str(g.msg.get("X-Anti-Virus", "")),
                     "eicar": b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in g.data} for g in sink.got],
            "left_remote": sorted(p.name for d in ("new", "cur") for p in (new.parent / d).iterdir()),
            "scanner_log": stack.log_text(),
        }
    finally:
        stack.stop()
        sink.stop()
        dove.terminate()
        dove.wait(10)


def run_in_namespace(base: Path) -> dict[str, object]:
    """Run :func:`inside` in a fresh network namespace; ``base`` must be traversable by nobody."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "tests.support.pop3", str(base)],
                          capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"namespace run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tools_missing() -> str:
    """Why the real path cannot run here, or ''."""
    if os.geteuid() != 0:
        return "needs root (unshare --net, port 110/25 inside the namespace, setpriv)"
    for tool in ("fetchmail", "dovecot", "unshare", "setpriv", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup-host.sh installs fetchmail and dovecot-pop3d)"
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        return "cannot create a network namespace here"
    return ""


if __name__ == "__main__":
    print(json.dumps(inside(Path(sys.argv[1]))))
