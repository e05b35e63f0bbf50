"""The console's security rules over real HTTP (issue 18 acceptance: a forged POST, ten wrong
passwords and a path outside the quarantine in a release are each refused and audited)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess

from tests.support.console import Client
from tests.support.filter import eicar_mail
from tests.support.procs import wait_for

PW = "correct horse battery"


def _uid(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_console_drops_root_and_keeps_a_private_password_file(make_console) -> None:  # noqa: ANN001
    st = make_console()
    assert st.console is not None
    # started by root, serving as nobody: the port is bound (and connectable, requests wait in the
    # backlog) a moment before the switch, so wait for it rather than race it
    wait_for(lambda: _uid(st.console.pid) == 65534, timeout=30, what="kavconsole running as nobody")
    # `kavconsole passwd` run by root gives a new file to [console] User, who must read it
    fresh = st.root / "fresh.passwd"
    out = subprocess.run([st.python, "-m", "runtime.console.main", "-c", str(st.conf), "passwd", "bob",
                          "--file", str(fresh), "--role", "readonly", "--stdin"], input="another password\n",
                         env=st.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (fresh.stat().st_uid, stat.S_IMODE(fresh.stat().st_mode)) == (65534, 0o600)
    assert fresh.read_text().startswith("bob:readonly:scrypt$")
    out = subprocess.run([st.python, "-m", "runtime.console.main", "-c", str(st.conf), "passwd", "eve",
                          "--file", str(fresh), "--stdin"], input="short\n", env=st.env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "too short" in out.stderr
    mode = st.passwd.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    user, role, digest = st.passwd.read_text().split(":")
    assert (user, role) == ("admin", "admin") and digest.startswith("scrypt$15$8$1$") and PW not in digest


def test_console_refuses_to_serve_as_root(make_console) -> None:  # noqa: ANN001
    st = make_console(console={"User": "root"}, start_console=False)
    out = subprocess.run([st.python, "-m", "runtime.console.main", "-c", str(st.conf)], env=st.env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "never serves as root" in out.stderr


def test_forged_post_wrong_passwords_and_paths_outside_the_quarantine_are_refused_and_audited(
        make_console) -> None:  # noqa: ANN001
    st = make_console(console={"LoginAttempts": 5, "LoginLockout": 300},
                      users={"admin": (PW, "admin"), "viewer": (PW, "readonly")})
    st.send(eicar_mail("EICAR"))
    delivered = len(st.sink.got)  # the recipient's cleaned copy
    [qid] = [p.name[:-5] for p in st.quarantine.iterdir() if p.name.endswith(".kavq")]

    # 1. a login POST without the pre-session token, and a change without the session's token
    c = Client(st.url)
    code, _, _ = c.post("/login", {"user": "admin", "password": PW})
    assert code == 403
    assert c.login("admin", PW) == 303
    code, _, body = c.post("/quarantine/action", {"action": "delete", "id": qid})
    assert code == 403 and "CSRF" in body
    code, _, body = c.post("/quarantine/action", {"action": "delete", "id": qid, "csrf": "guessed"})
    assert code == 403
    assert (st.quarantine / f"{qid}.kavq").exists()

    # 2. a path outside the quarantine in a release (with a valid token: only the path is wrong)
    _, _, page = c.get("/quarantine")
    token = Client.csrf(page)
    for bad in ("../../etc/passwd", "/etc/shadow", f"../quarantine/{qid}", "." + qid[1:]):
        code, _, body = c.post("/quarantine/action", {"action": "release", "id": bad, "csrf": token})
        assert code == 200 and "refused: not a quarantine id" in body
    assert len(st.sink.got) == delivered

    # 3. a read-only account cannot change anything
    v = Client(st.url)
    assert v.login("viewer", PW) == 303
    _, _, page = v.get("/quarantine")
    code, _, _ = v.post("/quarantine/action", {"action": "delete", "id": qid, "csrf": Client.csrf(page)})
    assert code == 403
    assert (st.quarantine / f"{qid}.kavq").exists()

    # 4. ten wrong passwords: all refused; after LoginAttempts even the right one is refused
    g = Client(st.url)
    codes = [g.login("admin", f"wrong{i}") for i in range(10)]
    assert codes == [401] * 5 + [429] * 5
    assert g.login("admin", PW) == 429
    assert Client(st.url).get("/status")[0] == 303  # no session without a login

    audit = st.audit_lines()
    forged = [a for a in audit if "CSRF" in str(a["result"])]
    assert [a["action"] for a in forged] == ["login", "/quarantine/action", "/quarantine/action"]
    outside = [a for a in audit
               if a["action"] == "quarantine.release" and a["result"] == "refused: not a quarantine id"]
    assert [a["id"] for a in outside] == ["../../etc/passwd", "/etc/shadow", f"../quarantine/{qid}",
                                         "." + qid[1:]]
    assert any(a["action"] == "/quarantine/action" and a["result"] == "refused: read-only account"
               and a["user"] == "viewer" for a in audit)
    wrong = [a for a in audit if a["action"] == "login" and a["user"] == "admin" and a["result"] != "ok"
             and "CSRF" not in str(a["result"])]
    assert len(wrong) == 11  # ten wrong passwords and the right one during the lockout
    assert sum(a["result"] == "refused: wrong user name or password" for a in wrong) == 5
    assert sum(a["result"] == "refused: too many failed logins" for a in wrong) == 6
    assert not any(PW in line or "wrong3" in line for line in st.audit.read_text().splitlines())
    assert stat.S_IMODE(os.stat(st.audit).st_mode) == 0o640


def test_no_secret_in_urls_cookies_httponly_and_statistics_export(make_console) -> None:  # noqa: ANN001
    st = make_console()
    for i in range(3):
        st.send(eicar_mail("clean", subject=f"c{i}"))
    st.send(eicar_mail("EICAR"))
    c = Client(st.url)
    code, headers, page = c.get("/login")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert 'method="post"' in page
    code, headers, _ = c.post("/login", {"csrf": Client.csrf(page), "user": "admin", "password": PW})
    assert code == 303 and headers["location"] == "/status"
    session = c.cookies["kavconsole_session"]
    for path in ("/status", "/statistics", "/quarantine", "/config"):
        code, _, body = c.get(path)
        assert code == 200, path
        assert f"?{session}" not in body and f"={session}" not in body

    code, headers, body = c.get("/statistics.json?period=week")
    assert code == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["totals"] == {"OK": 3, "INFECTED": 1} and doc["step"] == 86400
    assert doc["top_viruses"] == [{"name": "EICAR-Test-File", "count": 1}]
    assert sum(b.get("OK", 0) for b in doc["buckets"]) == 3
    code, headers, body = c.get("/statistics.csv")
    assert code == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["bucket_start", "INFECTED", "OK"]
    assert sum(int(r[1]) for r in rows[1:]) == 1 and sum(int(r[2]) for r in rows[1:]) == 3
    assert len(rows) - 1 in (24, 25)  # a day by the hour (the partial first hour included)
