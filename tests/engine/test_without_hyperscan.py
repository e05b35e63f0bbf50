"""The Debian package runs without Hyperscan (Debian ships no binding): a real aveserver started
in a process where ``import hyperscan`` fails must load .ndb signatures and find them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'hyperscan':\n"
    "            raise ImportError('hyperscan is not packaged by Debian')\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def test_engine_scans_with_debians_libraries_only(tmp_path: Path) -> None:
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
        "assert matcher.hyperscan is None\n"
        f"v = eng.scan(Path({str(sample)!r}).read_bytes(), 'sample.bin')\n"
        "print(matcher.prefilter_name(), v.status.name, sorted(v.names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] in ("aho-corasick", "re")
    assert "INFECTED" in out.stdout
    assert "Test.Body.Sig" in out.stdout and "Short.Sig" in out.stdout
