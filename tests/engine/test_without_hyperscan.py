"""The Debian package runs without the hyperscan wheel (Debian ships no binding): in a process
where ``import hyperscan`` fails the engine must load .ndb signatures and find them, through
Debian's libhs.so.5 (ctypes, runtime/engine/libhs.py) where libhyperscan5 is installed, and
through Debian's Aho-Corasick where it is not (KAV_NO_LIBHS=1 stands for a host without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.engine import libhs

BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'hyperscan':\n"
    "            raise ImportError('hyperscan is not packaged by Debian')\n"
    "sys.meta_path.insert(0, _Block())\n"
)


@pytest.mark.parametrize("with_libhs", [True, False], ids=["libhs", "no-libhs"])
def test_engine_scans_with_debians_libraries_only(tmp_path: Path, with_libhs: bool) -> None:
    if with_libhs and not libhs.available():
        pytest.skip("libhs.so.5 (libhyperscan5) is not installed here")
    bases = tmp_path / "bases"
    bases.mkdir()
    (bases / "t.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\nShort.Sig:0:*:4142\n")
    sample = tmp_path / "sample.bin"
    sample.write_bytes(b"junk kav4test--xx--sign tail AB")
    code = BLOCK + (
        "from pathlib import Path\n"
        "from runtime.engine import matcher\n"
        "from runtime.engine.engine import Engine\n"
        "from runtime.engine.signatures import load_signatures\n"
        f"eng = Engine(load_signatures(Path({str(bases)!r})))\n"
        f"assert (matcher.hyperscan is not None) == {with_libhs}\n"
        f"v = eng.scan(Path({str(sample)!r}).read_bytes(), 'sample.bin')\n"
        "print(matcher.prefilter_name(), v.status.name, sorted(v.names))\n"
    )
    env = dict(os.environ)
    env.pop("KAV_NO_LIBHS", None)
    if not with_libhs:
        env["KAV_NO_LIBHS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2],
                         env=env)
    assert out.returncode == 0, out.stderr
    if with_libhs:
        assert out.stdout.startswith("hyperscan (libhs ")
    else:
        assert out.stdout.split()[0] in ("aho-corasick", "re")
    assert "INFECTED" in out.stdout
    assert "Test.Body.Sig" in out.stdout and "Short.Sig" in out.stdout


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_hint_to_install_hyperscan(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    """Where Debian has libhyperscan5 (amd64) and it is missing, the administrator is told what to
    install; on an architecture without it there is nothing to install, so nothing is said."""
    from runtime.engine import matcher

    monkeypatch.setattr(matcher, "hyperscan", None)
    hint = matcher.prefilter_hint(machine)
    if machine == "x86_64":
        assert hint is not None and "apt-get install libhyperscan5" in hint
        assert matcher.prefilter_name() in hint
    else:
        assert hint is None


def test_no_hint_when_hyperscan_is_in_use() -> None:
    from runtime.engine import matcher

    if matcher.hyperscan is None:
        pytest.skip("neither the hyperscan wheel nor libhs.so.5 is available here")
    assert matcher.prefilter_hint("x86_64") is None


@pytest.mark.parametrize("with_libhs", [True, False], ids=["libhs", "no-libhs"])
def test_aveserver_logs_its_prefilter_and_warns_without_hyperscan(tmp_path: Path, with_libhs: bool) -> None:
    """aveserver's start says which prefilter scans (so a slow start or slow mail can be explained
    from the log), and warns on amd64 when Debian's libhyperscan5 is missing (dpkg -i or
    --no-install-recommends: the package only recommends it)."""
    import platform

    from tests.support.engine import Server

    if with_libhs and not libhs.available():
        pytest.skip("libhs.so.5 (libhyperscan5) is not installed here")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK)  # this process cannot import the wheel
    server = Server(tmp_path / "srv")
    server.bases.mkdir(parents=True)
    (server.bases / "t.ndb").write_text("Test.Body.Sig:0:*:6b61763474657374{2-8}7369676e\n")
    repo = str(Path(__file__).parents[2])
    server.start(env={"PYTHONPATH": f"{tmp_path / 'site'}:{repo}", "KAV_NO_LIBHS": "" if with_libhs else "1",
                      "KAV_ENGINE_CACHE": str(tmp_path / "cache")})
    try:
        log = server.log.read_text()
    finally:
        server.stop()
    loaded = next(line for line in log.splitlines() if "anti-virus database loaded" in line)
    warned = "install libhyperscan5" in log
    if with_libhs:
        assert "; prefilter hyperscan (libhs " in loaded and not warned
    else:
        assert loaded.endswith(("; prefilter aho-corasick", "; prefilter re"))
        assert warned == (platform.machine() in ("x86_64", "amd64"))
