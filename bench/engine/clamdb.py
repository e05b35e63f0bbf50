"""A database of ClamAV's real shape and size for ``python3 -m bench.engine --scale full``.

ClamAV's main+daily hold several million hash records and well over 100 000 body and logical
signatures.  We cannot ship theirs in a test, so this generator writes one of that shape with a
fixed seed: 4 M hashes across .hdb (MD5), .hsb (SHA1/SHA256, some ``*`` sizes) and .mdb (PE
sections), 60 000 .ndb (every wildcard form, targets 0/1/3/7, some offsets), 40 000 .ldb (2-5
subsignatures, counts, ``i``/``w``/``f`` modifiers, a few PCRE), a .fp and an .ign2 — as plain
files (what clamd/clamscan load) and as one ``main.cvd`` signed with the bench's own key (what
aveserver loads, verifying it).  A few records are taken from corpus files so both engines have
something to find.  Only syntax Debian's ClamAV accepts is generated.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

from tests.support.clamav import build_cvd, make_test_key

from .corpus import CACHE, corpus_files

SCALES = {
    # name: (md5, sha, sections, ndb, ldb)
    "small": (40_000, 20_000, 4_000, 2_000, 1_000),
    "full": (2_600_000, 1_000_000, 400_000, 60_000, 40_000),
}


def _ndb_body(rnd: random.Random) -> str:
    a, b = rnd.randbytes(rnd.randint(6, 14)).hex(), rnd.randbytes(rnd.randint(4, 10)).hex()
    kind = rnd.randrange(10)
    if kind == 0:
        return f"{a}??{b}"
    if kind == 1:
        return f"{a}{{{rnd.randint(1, 8)}-{rnd.randint(9, 64)}}}{b}"
    if kind == 2:
        return f"{a}*{b}"
    if kind == 3:
        return f"{a}({rnd.randbytes(1).hex()}|{rnd.randbytes(1).hex()}|{rnd.randbytes(2).hex()}){b}"
    if kind == 4:
        return f"{a}{rnd.choice('0123456789abcdef')}?{b}"
    if kind == 5:
        return f"{a}{{{rnd.randint(2, 30)}}}{b}"
    return a + b


def _ldb_line(rnd: random.Random, i: int) -> str:
    n = rnd.randint(2, 5)
    subs = []
    for _k in range(n):
        text = rnd.randbytes(rnd.randint(5, 16)).hex()
        mod = rnd.random()
        if mod < 0.08:
            subs.append(bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(8)).hex() + "::i")
        elif mod < 0.12:
            subs.append(bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(8)).hex() + "::w")
        elif mod < 0.15:
            subs.append(bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(6)).hex() + "::f")
        elif mod < 0.25:
            subs.append(_ndb_body(rnd))
        else:
            subs.append(text)
    shape = rnd.randrange(4)
    if shape == 0:
        expr = "&".join(str(k) for k in range(n))
    elif shape == 1:
        expr = "(" + "|".join(str(k) for k in range(n)) + ")"
    elif shape == 2:
        expr = f"0&({'|'.join(str(k) for k in range(1, n))})"
    else:
        expr = f"(0>{rnd.randint(1, 3)})&(" + "|".join(str(k) for k in range(1, n)) + ")"
    if rnd.random() < 0.03:  # a PCRE behind a trigger; ClamAV wants every subsignature in the expression
        subs.append(f"0/{rnd.randbytes(4).hex()}[0-9]{{2,4}}x/")
        expr = f"({expr})&{n}"
    target = rnd.choice((0, 0, 0, 1, 7))
    return f"Gen.Ldb.{i};Engine:51-255,Target:{target};{expr};" + ";".join(subs)


def build(scale: str, corpus: Path) -> tuple[Path, Path, Path]:
    """(plain directory, directory holding main.cvd, public key file) for ``scale``; cached."""
    root = CACHE / f"clamdb-{scale}"
    plain, boxed, keyfile = root / "plain", root / "cvd", root / "bench-key.txt"
    if (root / ".complete").exists():
        return plain, boxed, keyfile
    shutil.rmtree(root, ignore_errors=True)
    plain.mkdir(parents=True)
    boxed.mkdir()
    n_md5, n_sha, n_sect, n_ndb, n_ldb = SCALES[scale]
    rnd = random.Random(1212)
    files = corpus_files(corpus)
    real = rnd.sample([f for f in files if f.parent.name in ("bin", "text")], 60)
    members: dict[str, bytes] = {}

    def emit(name: str, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode()
        (plain / name).write_bytes(data)
        members[name] = data

    lines = [f"{hashlib.md5(f.read_bytes()).hexdigest()}:{f.stat().st_size}:Gen.Hash.Real{i}"
             for i, f in enumerate(real[:30])]
    blob = rnd.randbytes(16 * n_md5).hex()
    lines += [f"{blob[32 * i:32 * i + 32]}:{rnd.randint(100, 9_000_000)}:Gen.Hash.Md5.{i}" for i in range(n_md5)]
    emit("main.hdb", lines)
    del blob
    lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}:{f.stat().st_size}:Gen.Hash.RealSha{i}"
             for i, f in enumerate(real[30:])]
    for i in range(n_sha):
        if i % 3 == 0:
            lines.append(f"{rnd.randbytes(20).hex()}:{rnd.randint(100, 9_000_000)}:Gen.Hash.Sha1.{i}")
        elif i % 50 == 1:
            lines.append(f"{rnd.randbytes(32).hex()}:*:Gen.Hash.ShaAny.{i}:73")
        else:
            lines.append(f"{rnd.randbytes(32).hex()}:{rnd.randint(100, 9_000_000)}:Gen.Hash.Sha256.{i}")
    emit("main.hsb", lines)
    emit("main.mdb", [f"{rnd.choice((512, 1024, 4096, 8192, 20480))}:{rnd.randbytes(16).hex()}:Gen.Sect.{i}"
                      for i in range(n_sect)])
    bins = [f for f in files if f.parent.name == "bin"]
    lines = []
    while len(lines) < 30:  # pieces of real binaries, varied enough to be a signature (no zero runs)
        data = rnd.choice(bins).read_bytes()
        off = rnd.randrange(0, max(1, len(data) - 64))
        if len(set(data[off:off + 24])) >= 12:
            lines.append(f"Gen.Body.Real{len(lines)}:0:*:{data[off:off + 24].hex()}")
    for i in range(n_ndb - len(lines)):
        target = rnd.choice((0, 0, 0, 0, 1, 1, 3, 7))
        offset = rnd.choice(("*",) * 8 + ("0", f"EOF-{rnd.randint(20, 400)}"))
        lines.append(f"Gen.Body.{i}:{target}:{offset}:{_ndb_body(rnd)}")
    emit("main.ndb", lines)
    emit("main.ldb", [_ldb_line(rnd, i) for i in range(n_ldb)])
    emit("main.fp", [f"{rnd.randbytes(16).hex()}:{rnd.randint(100, 100000)}:Gen.Fp.{i}" for i in range(2000)])
    emit("main.ign2", ["Gen.Body.7", "Gen.Ldb.7", "Gen.Hash.Md5.7"])
    key = make_test_key()
    build_cvd(boxed / "main.cvd", members, key, version=1)
    key.write_public(keyfile)
    (root / ".complete").write_text("ok\n")
    return plain, boxed, keyfile
