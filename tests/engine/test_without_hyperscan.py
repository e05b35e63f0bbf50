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
