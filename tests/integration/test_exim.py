"""Exim integration (guide 4.4.4) on every configuration of the corpus and on Debian's real
exim4 (split and unsplit configuration) in roots built by the distro-matrix helper, where the
real ``exim4 -bV`` and ``exim4 -bt`` check what we wrote."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import corpus
from tests.support.integration import (
    CORPUS,
    Overlay,
    cached_root,
    diff_snapshots,
    kav,
    make_root,
    snapshot,
    snapshot_paths,
    step_count,
)

pytestmark = pytest.mark.root

# case -> (directory the files live in, main configuration file name)
CASES = {
    "01-Exim4U__src": ("/etc/exim", "exim.conf"),
    "02-Ivandiaztnd__jack2-network-appliance": ("/etc/exim4", "exim4.conf.template"),
    "05-norm__config-cowpaw": ("/etc/exim", "configure"),
    "07-public__prol.etari.at-documentation": ("/etc/exim4", "exim4.conf"),
    "08-Donearm__configs": ("/etc/exim", "exim.conf"),
    "10-vallittu__mail_configs": ("/etc/exim", "exim.conf"),
    "11-renich__fedora-configs": ("/etc/exim", "exim.conf"),
}


@pytest.mark.corpus
def test_every_corpus_directory_is_covered() -> None:
    corpus.require()
    assert sorted(p.name for p in (CORPUS / "exim").iterdir() if p.is_dir()) == sorted(CASES)


DEBIAN = {"debian-bookworm": "bookworm", "debian-trixie": "trixie"}


def _files(case: str) -> dict[str, Path | bytes | str]:
    if case in DEBIAN:
        # Debian's pristine exim4-config package: the conf.d tree and the unsplit template.
        try:
            from tests.support.debian_pkgs import PackageUnavailable, extract
        except ImportError as exc:  # pragma: no cover
            pytest.skip(f"tests.support.debian_pkgs not importable: {exc}")
        try:
            d = extract("exim4-config", suite=DEBIAN[case]) / "etc" / "exim4"
        except PackageUnavailable as exc:
            pytest.skip(f"exim4-config for {DEBIAN[case]} unavailable: {exc}")
        return {f"/etc/exim4/{f.relative_to(d)}": f for f in d.rglob("*") if f.is_file()}
    d = CORPUS / "exim" / case
    where, _main = CASES[case]
    return {f"{where}/{f.relative_to(d)}": f for f in d.rglob("*") if f.is_file()}


_IN_CORPUS = pytest.mark.skipif(not corpus.available(), reason=corpus.SKIP_REASON)
ALL = [pytest.param(c, marks=[pytest.mark.corpus, _IN_CORPUS]) for c in sorted(CASES)] + sorted(DEBIAN)


def _args(root: Path, case: str, *extra: str) -> list[str]:
    where, main = CASES.get(case, ("/etc/exim4", "exim4.conf.template"))
    return ["install", "--root", str(root), "--mta", "exim", "--mta-config", f"{where}/{main}",
            "--non-interactive", *extra]


@pytest.mark.parametrize("case", ALL)
def test_round_trip(tmp_path: Path, case: str) -> None:
    root = make_root(tmp_path, _files(case))
    original = snapshot(root)
    code, out = kav(*_args(root, case, "--dry-run"))
    assert code == 0, out
    assert "+kav_lmtp_transport:" in out and "+kav_scan:" in out
    assert diff_snapshots(original, snapshot(root)) == []
    code, out = kav(*_args(root, case))
    assert code == 0, out
    where, main = CASES.get(case, ("/etc/exim4", "exim4.conf.template"))
    listen = (root / f"{where.lstrip('/')}/{main}.listen").read_text("utf-8", "surrogateescape").splitlines()
    routers = next(i for i, ln in enumerate(listen) if ln.split() == ["begin", "routers"])
    assert listen[routers + 2] == "kav_scan:"  # first router, whatever the others are called
    assert any(ln.strip() == "spool_directory = /var/spool/exim-kav" for ln in listen)
    assert sum(ln.strip().startswith("spool_directory") for ln in listen) == 1
    assert "nothing to do" in kav(*_args(root, case))[1]
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    assert diff_snapshots(original, snapshot(root)) == []


@pytest.mark.parametrize("case", ALL)
def test_crash_after_every_step_then_recover(tmp_path: Path, case: str) -> None:
    probe = make_root(tmp_path / "probe", _files(case))
    assert kav(*_args(probe, case))[0] == 0
    for k in range(1, step_count(probe) + 1):
        root = make_root(tmp_path / f"k{k}", _files(case))
        original = snapshot(root)
        assert kav(*_args(root, case), fail_after=k)[0] == -9
        code, out = kav("recover", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot(root)) == [], f"crash after step {k}"


WATCH = ["/etc/exim4", "/var/lib/exim4", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/kav",
         "/opt/kav", "/etc/systemd/system", "/var/spool/filter", "/var/spool/exim4-kav", "/var/lib/kav"]


def _exim(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(root), "/usr/sbin/exim4", *argv], capture_output=True, text=True,
                          check=False, timeout=60)


@pytest.mark.parametrize("flavour", ["bookworm-exim4-split", "bookworm-exim4-unsplit",
                                     "trixie-exim4-split", "trixie-exim4-unsplit"])
def test_debian_root_real_exim(tmp_path: Path, flavour: str) -> None:
    lower = cached_root(flavour)
    if lower is None:
        pytest.skip(f"no {flavour} root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    with Overlay(lower, tmp_path) as root:
        original = snapshot_paths(root, WATCH)
        code, out = kav("install", "--root", str(root), "--non-interactive")
        assert code == 0, out
        assert "exim -bV passed" in out
        r = _exim(root, "-C", "/etc/exim4/exim4.conf.listen", "-bt", "someone@remote.example.org", "root@localhost")
        assert r.stdout.count("router = kav_scan, transport = kav_lmtp_transport") == 2, r.stdout + r.stderr
        r = _exim(root, "-bt", "root@localhost")  # the delivering configuration is unchanged
        assert "kav_scan" not in r.stdout
        code, out = kav("uninstall", "--root", str(root))
        assert code == 0, out
        assert diff_snapshots(original, snapshot_paths(root, WATCH)) == []


@pytest.mark.corpus
@pytest.mark.parametrize("case", ["07-public__prol.etari.at-documentation", "08-Donearm__configs",
                                  "11-renich__fedora-configs"])
def test_corpus_listen_config_passes_real_exim_when_original_does(tmp_path: Path, case: str) -> None:
    """Real exim4 (from a Debian root) reads the original and the derived file: what we add
    must not turn a configuration it accepts into one it rejects."""
    corpus.require()
    lower = cached_root("trixie-exim4-split") or cached_root("bookworm-exim4-split")
    if lower is None:
        pytest.skip("no Debian exim4 root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    with Overlay(lower, tmp_path) as root:
        where, main = CASES[case]
        for path, src in _files(case).items():
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        before = _exim(root, "-bV", "-C", f"{where}/{main}")
        watched = snapshot_paths(root, WATCH)
        code, out = kav(*_args(root, case))
        if before.returncode == 0:
            assert code == 0 and "exim -bV passed" in out, out
        else:
            # The original is rejected by this exim build (e.g. spamd in exim4-daemon-light):
            # verification fails, everything is rolled back, and the message says why.
            assert code == 1 and "verification failed: exim -bV" in out and "rolled back" in out, out
            assert diff_snapshots(watched, snapshot_paths(root, WATCH)) == []
        assert kav("uninstall", "--root", str(root))[0] == 0


def test_admin_line_in_trusted_configs_survives_uninstall(tmp_path: Path) -> None:
    lower = cached_root("bookworm-exim4-unsplit") or cached_root("trixie-exim4-unsplit")
    if lower is None:
        pytest.skip("no Debian exim4 root in ~/.cache/kav4ms/roots (built by tests/distro-matrix)")
    with Overlay(lower, tmp_path) as root:
        tc = root / "etc/exim4/trusted_configs"
        before = tc.read_text() if tc.exists() else None
        assert kav("install", "--root", str(root), "--non-interactive")[0] == 0
        tc.write_text(tc.read_text() + "/etc/exim4/admin-own.conf\n")
        code, out = kav("uninstall", "--root", str(root))
        assert code == 0, out
        assert tc.read_text() == (before or "") + "/etc/exim4/admin-own.conf\n"
        assert not (root / "etc/exim4/exim4.conf.listen").exists()


@pytest.mark.corpus
def test_start_scripts_keep_the_reinjection_interface_one_argument(tmp_path: Path) -> None:
    """``-oX '<; 127.0.0.1.10026'`` holds a space and a ``<``: unquoted, systemd splits it in two
    and sh reads ``<`` as a redirection, and the delivering Exim never starts."""
    import shlex

    corpus.require()

    case = "01-Exim4U__src"
    root = make_root(tmp_path, _files(case))
    code, out = kav(*_args(root, case))
    assert code == 0, out
    scripts = list(root.rglob("kavexim.sh"))
    units = list(root.rglob("kav4ms-exim-deliver.service"))
    assert scripts and units
    assert subprocess.run(["sh", "-n", str(scripts[0])], capture_output=True).returncode == 0
    execstart = next(ln for ln in units[0].read_text().splitlines() if ln.startswith("ExecStart="))
    argv = shlex.split(execstart.split("=", 1)[1])
    value = argv[argv.index("-oX") + 1]
    assert value.startswith("<; 127.0.0.1.")
    line = next(ln for ln in scripts[0].read_text().splitlines() if "-oX" in ln)
    words = shlex.split(line)
    assert words[words.index("-oX") + 1] == value


@pytest.mark.parametrize("queued", [False, True])
def test_listen_spool_state_goes_with_uninstall_but_queued_mail_stays(tmp_path: Path, queued: bool) -> None:
    """The listening Exim fills its spool with hint databases and queue directories; uninstall
    removes them with the spool, but never mail that is still waiting to be scanned."""
    case = "debian-bookworm"
    root = make_root(tmp_path, _files(case))
    original = snapshot(root)
    code, out = kav(*_args(root, case))
    assert code == 0, out
    spool = next(p for p in (root / "var/spool").iterdir() if p.name in ("exim4-kav", "exim-kav"))
    for sub in ("db", "input", "msglog"):
        (spool / sub).mkdir()
    (spool / "db/retry").write_bytes(b"\0" * 64)
    (spool / "db/retry.lockfile").write_bytes(b"")
    if queued:
        (spool / "input/1tXyZa-000001-AB-H").write_text("queued message header file\n")
    code, out = kav("uninstall", "--root", str(root))
    assert code == 0, out
    if queued:
        assert spool.is_dir() and "1 queued file(s) not yet scanned; kept" in out
        assert (spool / "input/1tXyZa-000001-AB-H").is_file()
    else:
        assert not spool.exists()
        assert diff_snapshots(original, snapshot(root)) == []
