"""iChecker remembering non-clean verdicts (IcheckerKeepVerdicts, off by default: guide 6.3.1 stores
clean files) and scanning through a running aveserver with AVE/1 SCANFD (UseAveserver)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

from tests.support.engine import Server
from tests.support.scanner import BODY_SIG, EICAR, build_tree, report_objects, write


def _tree(root: Path) -> Path:
    write(root / "clean.txt", "just text\n")
    write(root / "eicar.com", EICAR)
    write(root / "cure.com", b"CURE-" + EICAR + b"\r\n")
    write(root / "susp.com", b"SUSP-" + EICAR)
    from tests.support.scanner import zip_bytes

    write(root / "arch.zip", zip_bytes({"dir/eicar.com": EICAR, "ok.txt": b"ok\n"}))
    return root


def _exec_conf(kit, tmp_path: Path, **options: str) -> tuple[Path, Path]:
    """OnInfected/OnSuspicion exec a recorder that appends one JSON line per call (argv)."""
    calls = tmp_path / "calls.jsonl"
    rec = write(tmp_path / "rec.py", "import sys, json\n"
                f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    cmd = f"exec {sys.executable} {rec} %FULLPATH%/%FILENAME% %VIRUSNAME%"
    conf = kit.config(scanner__object={"OnInfected": cmd, "OnSuspicion": cmd},
                      scanner__container={"OnInfected": f"exec {sys.executable} {rec} %FULLPATH%/%FILENAME% %LIST%"},
                      scanner__options=options)
    return conf, calls


def _calls(calls: Path) -> list[list[str]]:
    return [json.loads(ln) for ln in calls.read_text().splitlines()] if calls.exists() else []


def _objects(doc: dict) -> dict[str, tuple]:
    return {o["path"]: (o["status"], o.get("names"), o.get("container"), json.dumps(o.get("objects")))
            for o in doc["objects"]}


def test_remembered_verdicts_report_and_act_again_without_rescanning(kit, tmp_path: Path) -> None:
    area = _tree(tmp_path / "area")
    conf, calls = _exec_conf(kit, tmp_path, IcheckerKeepVerdicts="yes")
    first = kit.scan("--json", "-j4", str(area), conf=conf)
    d1 = json.loads(first.stdout)
    assert first.returncode == 4 and d1["summary"]["files"] == 5 and d1["summary"]["ichecker_remembered"] == 0
    n_calls = len(_calls(calls))
    assert n_calls == 4  # eicar, cure (infected: no cure asked), susp, and the container rule for arch.zip
    second = kit.scan("--json", "-j4", str(area), conf=conf)
    d2 = json.loads(second.stdout)
    s = d2["summary"]
    # nothing read: one clean file skipped, four verdicts replayed, the engine never loaded
    assert s["files"] == 0 and s["ichecker_skipped"] == 1 and s["ichecker_remembered"] == 4
    assert second.returncode == 4 and s["statuses"] == {**d1["summary"]["statuses"], "CLEAN": 0}
    # the same names, statuses, member list and container flag
    assert _objects(d2) == {p: o for p, o in _objects(d1).items() if o[0] != "CLEAN"}
    assert all(o["remembered"] for o in d2["objects"] if o["status"] != "CLEAN")
    again = _calls(calls)[n_calls:]
    assert sorted(a[0] for a in again) == sorted(a[0] for a in _calls(calls)[:n_calls])  # exec run again
    assert [a for a in again if a[0].endswith("eicar.com")] == [[str(area / "eicar.com"), "EICAR-Test-File"]]
    objs = report_objects(kit.report.read_text().split("started, pid")[-1])
    assert objs[str(area / "eicar.com")].startswith("INFECTED EICAR-Test-File")
    assert objs[str(area / "arch.zip") + "/dir/eicar.com"].startswith("INFECTED")  # the 6.8.1 member line
    assert "anti-virus database" not in second.stdout


def test_default_keeps_clean_only_as_the_guide_says(kit, tmp_path: Path) -> None:
    area = _tree(tmp_path / "area")
    kit.scan("-q", str(area))
    s = json.loads(kit.scan("--json", str(area)).stdout)["summary"]
    assert s["files"] == 4 and s["ichecker_skipped"] == 1 and s["ichecker_remembered"] == 0
    # the switch turns it on for one run; the next run remembers
    kit.scan("-q", "--ichecker-keep-verdicts", str(area))
    s = json.loads(kit.scan("--json", "--ichecker-keep-verdicts", str(area)).stdout)["summary"]
    assert s["files"] == 0 and s["ichecker_remembered"] == 4
    # without the key, remembered verdicts are not used: rescanned
    s = json.loads(kit.scan("--json", str(area)).stdout)["summary"]
    assert s["files"] == 4 and s["ichecker_remembered"] == 0


def test_database_change_limits_change_and_touch_invalidate(kit, tmp_path: Path) -> None:
    area = _tree(tmp_path / "area")
    conf = kit.config(scanner__options={"IcheckerKeepVerdicts": "yes"})

    def summary() -> dict:
        return json.loads(kit.scan("--json", str(area), conf=conf).stdout)["summary"]

    summary()
    assert summary()["ichecker_remembered"] == 4
    os.utime(area / "eicar.com")  # touched: mtime and ctime move
    s = summary()
    assert s["files"] == 1 and s["ichecker_remembered"] == 3 and s["statuses"]["INFECTED"] == 3
    (kit.bases / "more.ndb").write_text(BODY_SIG.replace("Test.Body.Sig", "Other.Sig"))
    s = summary()
    assert s["files"] == 5 and s["ichecker_remembered"] == 0 and s["ichecker_skipped"] == 0
    assert summary()["ichecker_remembered"] == 4
    conf = kit.config(scanner__options={"IcheckerKeepVerdicts": "yes"}, aveserver__limits={"MaxFiles": "77"})
    s = summary()
    assert s["files"] == 5 and s["ichecker_remembered"] == 0  # a scan limit changes what a verdict can be


def test_cure_still_rescans_and_a_removed_file_is_forgotten(kit, tmp_path: Path) -> None:
    area = _tree(tmp_path / "area")
    conf = kit.config(scanner__options={"IcheckerKeepVerdicts": "yes"})
    kit.scan("-q", str(area), conf=conf)
    r = kit.scan("--json", "-i2", str(area), conf=conf)
    s = json.loads(r.stdout)["summary"]
    assert s["ichecker_remembered"] == 0 and s["files"] == 4 and s["cured"] == 1
    assert (area / "cure.com").read_bytes() != b"CURE-" + EICAR + b"\r\n"  # disinfected: needed the engine
    s = json.loads(kit.scan("--json", str(area), conf=conf).stdout)["summary"]
    # scanned: the cured (changed) file, and the two whose cure failed (CUREFAILED is never remembered:
    # without -i it would be INFECTED); remembered: the suspicious one
    assert s["files"] == 3 and s["ichecker_remembered"] == 1 and s["statuses"]["CLEAN"] == 1
    rm = kit.config(scanner__options={"IcheckerKeepVerdicts": "yes"}, scanner__object={"OnInfected": "remove"})
    r = kit.scan("--json", str(area), conf=rm)
    assert not (area / "eicar.com").exists() and json.loads(r.stdout)["summary"]["removed"] == 1
    with sqlite3.connect(kit.ichecker) as db:
        paths = {os.fsdecode(p) for (p,) in db.execute("SELECT path FROM objects")}
    assert str(area / "eicar.com") not in paths and str(area / "susp.com") in paths


def _server(tmp_path: Path, kit, **limits: str) -> Server:
    srv = Server(tmp_path / "ave")
    srv.bases.mkdir(parents=True)
    (srv.bases / "test.ndb").write_text(BODY_SIG)
    srv.write_conf(**{"aveserver.options": {"DetachFromTerminal": "no", "Workers": "1", "User": "root", **limits}})
    srv.start()
    return srv


def test_aveserver_backend_gives_the_in_process_results(kit, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "t")
    write(tree.root / "big" / "large.com", EICAR + b"\n" + b"x" * 5000)  # above StreamMaxLength: retried here
    bad = os.fsencode(str(tree.root / "big")) + b"/bad-\xff-name.com"
    with open(bad, "wb") as fh:  # not UTF-8: the request line cannot carry it; scanned in-process
        fh.write(EICAR)
    srv = _server(tmp_path, kit, StreamMaxLength="4000")
    try:
        conf = kit.config(path={"BasesPath": str(srv.bases), "LocalSocketPath": str(srv.sock)})
        here = kit.scan("--json", "--no-ichecker", "--in-process", str(tree.root), conf=conf)
        via = kit.scan("--json", "--no-ichecker", "--aveserver", "-j3", str(tree.root), conf=conf)
        # cure through aveserver: SCANFD answers the disinfected bytes too
        cure = write(tmp_path / "c" / "cure.com", b"CURE-" + EICAR + b"\r\n")
        cured = kit.scan("-q", "--no-ichecker", "-i2", str(cure.parent), conf=conf)
        assert cured.returncode == 5 and b"EICAR" not in cure.read_bytes()
        # -e without archives: aveserver cannot be told, so in-process (and the zip member is not seen)
        noarch = kit.scan("--json", "--no-ichecker", "-ePSBME", str(tree.root / "archives"), conf=conf)
        assert json.loads(noarch.stdout)["summary"]["statuses"]["INFECTED"] == 0
        assert "cannot be told; scanning in-process" in kit.report.read_text()
    finally:
        srv.stop()
    d_here, d_via = json.loads(here.stdout), json.loads(via.stdout)
    assert via.returncode == here.returncode == 4
    assert d_via["summary"]["statuses"] == d_here["summary"]["statuses"]
    assert d_via["summary"]["files"] == d_here["summary"]["files"]
    assert _objects(d_via) == _objects(d_here)  # members and containers too: SCANFD answers the whole verdict
    assert "AVE/1 SCANFD" in kit.report.read_text() and "2 file(s) aveserver did not scan" in kit.report.read_text()
    assert "SCANFD" in srv.log.read_text() or "eicar.com" in srv.log.read_text()


def test_aveserver_backend_falls_back_when_none_answers(kit, tmp_path: Path) -> None:
    area = _tree(tmp_path / "area")
    conf = kit.config(path={"LocalSocketPath": str(tmp_path / "no-such.sock")},
                      scanner__options={"UseAveserver": "yes"})
    r = kit.scan("--json", "--no-ichecker", str(area), conf=conf)
    assert r.returncode == 4 and json.loads(r.stdout)["summary"]["files"] == 5
    assert "no aveserver answers" in kit.report.read_text()
