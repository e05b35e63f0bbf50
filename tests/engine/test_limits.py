"""Every limit of [aveserver.limits] stops a hostile object and is reported (status ERROR)."""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

from runtime.engine.eicar import EICAR
from runtime.engine.limits import Limits, MiB
from runtime.engine.verdict import Status
from tests.support.engine import REPO, make_engine


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


def _zeros_zip(size: int, name: str = "zeros.bin") -> bytes:
    """A zip whose one member inflates to ``size`` zero bytes, built without holding them."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * MiB
    body = b"".join(comp.compress(chunk) for _ in range(size // MiB)) + comp.flush()
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    # Built by hand, as a bomb author would: local header + data + central directory.
    nm = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), size, len(nm), 0) + nm
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), size,
                          len(nm), 0, 0, 0, 0, 0, 0) + nm
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


def test_depth_limit(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, limits=Limits(max_depth=5))
    data = EICAR
    for _ in range(8):
        data = gzip.compress(data)
    v = eng.scan(data, "deep.gz")
    assert v.status is Status.ERROR and "depth limit (5)" in v.objects[-1].name
    shallow = EICAR
    for _ in range(4):
        shallow = gzip.compress(shallow)
    assert eng.scan(shallow, "ok.gz").status is Status.INFECTED


def test_quine_like_self_nesting_is_stopped(engine) -> None:  # noqa: ANN001
    # A quine unpacks to itself forever; each round here is one more level of the same archive.
    data = _zip({"r.zip": b"seed"})
    for _ in range(40):
        data = _zip({"r.zip": data})
    v = engine.scan(data, "r.zip")
    assert v.status is Status.ERROR and "nesting depth limit (16)" in v.objects[-1].name


def test_member_count_limit(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, limits=Limits(max_members=50))
    v = eng.scan(_zip({f"f{i}.txt": b"x" for i in range(200)}), "many.zip")
    assert v.status is Status.ERROR and "member count limit (50)" in v.objects[-1].name
    assert eng.scan(_zip({f"f{i}.txt": b"x" for i in range(40)}), "few.zip").status is Status.CLEAN


def test_unpacked_size_limit(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, limits=Limits(max_unpacked=4 * MiB, max_ratio=10_000))
    v = eng.scan(_zip({f"f{i}": bytes(range(256)) * 8192 for i in range(3)}), "big.zip")  # 3 x 2 MiB
    assert v.status is Status.ERROR and "unpacked size limit" in v.objects[-1].name


def test_compression_ratio_limit_zip_bomb(engine) -> None:  # noqa: ANN001
    v = engine.scan(_zeros_zip(64 * MiB), "bomb.zip")
    assert v.status is Status.ERROR and "compression ratio limit (200)" in v.objects[-1].name
    assert v.objects[-1].path == "bomb.zip"


def test_infection_found_before_a_limit_is_kept(engine) -> None:  # noqa: ANN001
    v = engine.scan(_zip({"first.com": EICAR, "bomb.zip": _zeros_zip(64 * MiB)}), "x.zip")
    assert v.status is Status.INFECTED
    assert {o.status for o in v.objects} == {Status.INFECTED, Status.ERROR}


def test_scan_time_limit(tmp_path: Path) -> None:
    eng = make_engine(tmp_path, limits=Limits(max_time=0.2, max_ratio=100_000, max_unpacked=1 << 40))
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    data = b"".join(comp.compress(b"\0" * MiB) for _ in range(400)) + comp.flush()
    v = eng.scan(data, "slow.gz")
    assert v.status is Status.ERROR and "scan time limit" in v.objects[-1].name


def test_bomb_scan_memory_is_bounded(tmp_path: Path) -> None:
    """A 512 MiB zip bomb (8x the limit) in a fresh process: peak RSS (VmHWM) stays far below its size."""
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zeros_zip(512 * MiB))
    code = (
        "import json, sys; from pathlib import Path\n"
        "from runtime.engine.engine import Engine; from runtime.engine.signatures import SignatureSet\n"
        "from runtime.engine.limits import Limits\n"
        "eng = Engine(SignatureSet(), Limits(max_ratio=1_000_000, max_unpacked=64 << 20))\n"
        "v = eng.scan(Path(sys.argv[1]).read_bytes(), 'bomb.zip')\n"
        "print(json.dumps({'status': v.status.value, 'why': v.objects[-1].name,"
        " 'rss_mb': [int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')][0] / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120)
    res = json.loads(out.stdout)
    assert res["status"] == "ERROR" and "unpacked size limit" in res["why"]
    assert res["rss_mb"] < 300, res
