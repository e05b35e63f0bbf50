"""The benchmark's inputs: a mixed corpus (>= 300 MB) and a generated signature set.

Both are cached under ``~/.cache/kav4ms/bench-engine/`` keyed by a generator version, because
building them takes longer than scanning them.  The signature set is deterministic (fixed seed)
and uses only syntax both engines accept, so ClamAV loads exactly the same files.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import random
import shutil
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

from runtime.engine.eicar import EICAR

VERSION = "1"
CACHE = Path(os.path.expanduser("~/.cache/kav4ms/bench-engine")) / f"v{VERSION}"
MB = 1_000_000


def _collect(roots: list[str], suffixes: tuple[str, ...] | None, budget: int, max_file: int) -> list[Path]:
    picked, total = [], 0
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for n in sorted(names):
                p = Path(dirpath) / n
                if p.is_symlink() or not p.is_file() or (suffixes and not n.endswith(suffixes)):
                    continue
                size = p.stat().st_size
                if size == 0 or size > max_file:
                    continue
                picked.append(p)
                total += size
                if total >= budget:
                    return picked
    return picked


def _copy(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, dest / f"{i:05d}-{f.name}")


def _mails(dest: Path, sources: list[Path], count: int, rnd: random.Random) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        msg = EmailMessage()
        msg["From"], msg["To"] = f"user{i}@example.org", f"rcpt{i % 50}@example.net"
        msg["Subject"] = f"report {i}"
        msg.set_content("Hello,\n\nplease find the files attached.\n" * rnd.randint(5, 50))
        for _ in range(rnd.randint(1, 3)):
            src = rnd.choice(sources)
            data = src.read_bytes()[: rnd.randint(2_000, 60_000)]
            msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=src.name)
        if i % 97 == 0:
            msg.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="eicar.com")
        (dest / f"mail{i:05d}.eml").write_bytes(msg.as_bytes())


def _archives(dest: Path, bins: list[Path], texts: list[Path], rnd: random.Random) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(12):
        chosen = rnd.sample(bins, 12) + rnd.sample(texts, 30)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in chosen:
                z.write(p, f"dir{k}/{p.name}")
            if k % 4 == 0:
                z.writestr("inner/eicar.com", EICAR)
        inner = buf.getvalue()
        tbuf = io.BytesIO()
        with tarfile.open(fileobj=tbuf, mode="w") as t:
            info = tarfile.TarInfo(f"bundle{k}.zip")
            info.size = len(inner)
            t.addfile(info, io.BytesIO(inner))
            for p in rnd.sample(texts, 20):
                t.add(p, f"docs/{p.name}")
        (dest / f"nested{k:02d}.tar.xz").write_bytes(lzma.compress(tbuf.getvalue(), preset=1))
        (dest / f"plain{k:02d}.zip").write_bytes(inner)


def build_corpus() -> Path:
    root = CACHE / "corpus"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rnd = random.Random(5)
    bins = _collect(["/usr/bin", "/usr/lib/x86_64-linux-gnu"], None, 170 * MB, 40 * MB)
    texts = _collect(["/usr/share/doc", "/usr/lib/python3.11", "/usr/share/common-licenses"],
                     (".py", ".txt", ".html", "copyright", ".md", ".rst", ""), 70 * MB, 5 * MB)
    _copy(bins, root / "bin")
    _copy(texts, root / "text")
    _mails(root / "mail", bins[:400] + texts[:400], 2500, rnd)
    _archives(root / "archives", bins[:600], texts[:2000], rnd)
    (root / "eicar.com").write_bytes(EICAR)
    (root / ".complete").write_text("ok\n")
    return root


def corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".complete")


def _hexrand(rnd: random.Random, n: int) -> str:
    return "".join(f"{rnd.randrange(256):02x}" for _ in range(n))


def _ndb_sig(rnd: random.Random) -> str:
    """A random body signature using every syntax item both engines accept."""
    kind = rnd.randrange(10)
    a, b = _hexrand(rnd, rnd.randint(6, 12)), _hexrand(rnd, rnd.randint(4, 8))
    if kind == 0:
        return f"{a}??{b}"
    if kind == 1:
        return f"{a}{{{rnd.randint(1, 8)}-{rnd.randint(9, 40)}}}{b}"
    if kind == 2:
        return f"{a}*{b}"
    if kind == 3:
        return f"{a}({_hexrand(rnd, 2)}|{_hexrand(rnd, 2)}|{_hexrand(rnd, 2)}){b}"
    if kind == 4:
        return f"{a}{rnd.choice('0123456789abcdef')}?{b}"
    if kind == 5:
        return f"{a}{{{rnd.randint(2, 20)}}}{b}"
    return a + b


def build_signatures(corpus: Path) -> Path:
    """100 000 .hdb + 10 000 .ndb records; a few are taken from corpus files so both engines detect."""
    db = CACHE / "db"
    if (db / ".complete").exists():
        return db
    shutil.rmtree(db, ignore_errors=True)
    db.mkdir(parents=True)
    rnd = random.Random(55)
    files = corpus_files(corpus)
    real = rnd.sample([f for f in files if f.parent.name in ("bin", "text")], 100)
    lines = [f"{hashlib.md5(f.read_bytes()).hexdigest()}:{f.stat().st_size}:Bench.Hash.Real{i}"
             for i, f in enumerate(real)]
    lines += [f"{_hexrand(rnd, 16)}:{rnd.randint(100, 5_000_000)}:Bench.Hash.{i}" for i in range(100_000 - len(lines))]
    (db / "bench.hdb").write_text("\n".join(lines) + "\n")
    nlines = []
    bins = [f for f in files if f.parent.name == "bin"]
    for i in range(50):  # substrings of real binaries: found by both engines
        data = rnd.choice(bins).read_bytes()
        off = rnd.randrange(0, max(1, len(data) - 64))
        nlines.append(f"Bench.Body.Real{i}:0:*:{data[off:off + 24].hex()}")
    nlines += [f"Bench.Body.{i}:0:*:{_ndb_sig(rnd)}" for i in range(10_000 - len(nlines))]
    (db / "bench.ndb").write_text("\n".join(nlines) + "\n")
    (db / ".complete").write_text("ok\n")
    return db
