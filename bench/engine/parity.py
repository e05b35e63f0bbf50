"""``python3 -m bench.engine.parity``: the same plain ClamAV database files, aveserver's engine vs
Debian's ``clamscan --allmatch``, verdict by verdict on planted samples of every signature kind.

Prints one row per file (names each engine reported) and the differences; a difference listed
in ``EXPLAINED`` (and in bench/README.md) is a known, documented divergence; any other makes the
exit status 1.  tests/engine/test_parity_clamscan.py runs this too.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.engine.engine import Engine
from runtime.engine.targets import pe_sections
from tests.support.clamav import make_pe


def _hex(s: bytes) -> str:
    return s.hex()


def _samples() -> dict[str, bytes]:
    """Planted samples (one or more per signature kind) and near misses that must stay clean."""
    pe = make_pe([b"\x55\x8b\xec" + b"section code of the planted PE " * 4, b"data section"])
    elf = b"\x7fELF\x02\x01\x01" + b"\0" * 57 + b"...elf-payload-marker..."
    return {
        "hash-md5.bin": b"planted object for the md5 hash signature\n",
        "hash-sha1.bin": b"planted object for the sha1 hash signature\n",
        "hash-sha256.bin": b"planted object for the sha256 hash signature\n",
        "hash-star.bin": b"any-size sha256 planted object\n",
        "hash-wrong-size.bin": b"planted object for the md5 hash signature\n\n",
        "pe-sections.exe": pe,
        "pe-other.exe": make_pe([b"harmless section"]),
        "ndb-any.bin": b"xx body-any-marker xx",
        "ndb-wild.bin": b"start\x01\x02\x03MIDDLE--------end-marker",
        "ndb-wild-miss.bin": b"start\x01\x02\x03MIDDLE" + b"-" * 300 + b"end-marker",
        "ndb-nibble.bin": b"nib\x4f\xa2ble",
        "ndb-alt.bin": b"<<alt-two>>",
        "ndb-offset.bin": b"OFFSETMARK at zero",
        "ndb-offset-miss.bin": b".OFFSETMARK one byte late",
        "ndb-eof.bin": b"lots of bytes before the TAILMARK",
        "ndb-pe.exe": make_pe([b"pe-only-marker in a PE"]),
        "ndb-pe-miss.bin": b"pe-only-marker outside a PE",
        "ndb-elf.elf": elf,
        "ndb-star.bin": b"AAAA" + b"BBBB" * 5000 + b"CCCC",
        "ndb-star-miss.bin": b"AAAA" + b"BBBB" * 5000,
        "ldb-and.bin": b"first-part ... second-part",
        "ldb-and-miss.bin": b"first-part only",
        "ldb-count.bin": b"tick tick tick tick",
        "ldb-count-miss.bin": b"tick tick",
        "ldb-nocase.bin": b"MiXeD-CaSe-MaRkEr",
        "ldb-wide.bin": "wide-marker".encode("utf-16-le"),
        "ldb-fullword.bin": b"a badword here",
        "ldb-fullword-miss.bin": b"notbadwords",
        "ldb-pcre.bin": b"trigger-word then pcre-777-end",
        "ldb-pcre-miss.bin": b"trigger-word then pcre-77x-end",
        "ldb-size.bin": b"tiny-size-mark",
        "fp-allowed.bin": b"xx body-any-marker but allow-listed by .fp",
        "ign2-dropped.bin": b"dropped-by-ign2-marker",
        "ndb-neg.bin": b"neg-Xmarker",
        "ndb-neg-miss.bin": b"neg-Ymarker",
        "ndb-range.bin": b"rangeleft\x00\x00Z",
        "ndb-upto.bin": b"upto-left....upto-right",
        "ndb-atleast.bin": b"least-left" + b"." * 40 + b"least-right",
        "ndb-atleast-miss.bin": b"least-left..least-right",
        "ndb-shift.bin": b"....SHIFTMARK",
        "ndb-eofshift.bin": b"EOFSHIFT and then a few",
        "ndb-mail.eml": b"From: a@example.org\nTo: b@example.org\nSubject: test\n\nmail-body-marker here\n",
        "ndb-mail-miss.txt": b"mail-body-marker without headers\n",
        "ndb-html.html": b"<html><body>\n<!-- c -->  <B>Html   Marker</B>\n</body></html>\n",
        "ndb-ascii.txt": b"Some ASCII\n\tMARKER   Text here\n",
        "ldb-exact.bin": b"qq1 rr2 qq1",
        "ldb-exact-miss.bin": b"qq1 qq1 qq1",
        "ldb-less.bin": b"few few",
        "ldb-less-miss.bin": b"few few few few",
        "ldb-wide-ascii.bin": b"both-marker",
        "ldb-offset.bin": b"LDBHEAD and more",
        "ldb-pcre-nocase.bin": b"TRIGGER2 then PCRE-ABC-END",
        "ldb-nested.bin": b"nest-a nest-c",
        "ldb-nested-miss.bin": b"nest-a nest-b",
        "sfp-allowed.bin": b"xx body-any-marker allow-listed by .sfp",
        "clean-text.txt": b"An ordinary text file without any marker.\n" * 20,
        "clean-binary.bin": bytes(range(256)) * 16,
    }


def _signatures(samples: dict[str, bytes]) -> dict[str, str]:
    s = samples

    sect = pe_sections(s["pe-sections.exe"])[0]
    return {
        "p.hdb": f"{hashlib.md5(s['hash-md5.bin']).hexdigest()}:{len(s['hash-md5.bin'])}:Par.Hash.Md5\n",
        "p.hsb": (f"{hashlib.sha1(s['hash-sha1.bin']).hexdigest()}:{len(s['hash-sha1.bin'])}:Par.Hash.Sha1\n"
                  f"{hashlib.sha256(s['hash-sha256.bin']).hexdigest()}:{len(s['hash-sha256.bin'])}:Par.Hash.Sha256\n"
                  f"{hashlib.sha256(s['hash-star.bin']).hexdigest()}:*:Par.Hash.Star:73\n"),
        "p.mdb": f"{len(sect)}:{hashlib.md5(sect).hexdigest()}:Par.Sect.Md5\n",
        "p.ndb": "".join([
            f"Par.Ndb.Any:0:*:{_hex(b'body-any-marker')}\n",
            f"Par.Ndb.Wild:0:*:{_hex(b'start')}??{{2}}{_hex(b'MIDDLE')}{{4-20}}{_hex(b'end-marker')}\n",
            f"Par.Ndb.Nibble:0:*:{_hex(b'nib')}4?a2{_hex(b'ble')}\n",
            f"Par.Ndb.Alt:0:*:{_hex(b'<<alt-')}({_hex(b'one')}|{_hex(b'two')}){_hex(b'>>')}\n",
            f"Par.Ndb.Offset:0:0:{_hex(b'OFFSETMARK')}\n",
            f"Par.Ndb.Eof:0:EOF-8:{_hex(b'TAILMARK')}\n",
            f"Par.Ndb.Pe:1:*:{_hex(b'pe-only-marker')}\n",
            f"Par.Ndb.Elf:6:*:{_hex(b'elf-payload-marker')}\n",
            "Par.Ndb.Star:0:*:41414141*42424242*43434343\n",
            f"Par.Ndb.Dropped:0:*:{_hex(b'dropped-by-ign2-marker')}\n",
            f"Par.Ndb.Neg:0:*:{_hex(b'neg-')}!(59|5a){_hex(b'marker')}\n",
            f"Par.Ndb.Range:0:*:{_hex(b'rangeleft')}[1-3]5a\n",
            f"Par.Ndb.Upto:0:*:{_hex(b'upto-left')}{{-6}}{_hex(b'upto-right')}\n",
            f"Par.Ndb.Atleast:0:*:{_hex(b'least-left')}{{10-}}{_hex(b'least-right')}\n",
            f"Par.Ndb.Shift:0:2,4:{_hex(b'SHIFTMARK')}\n",
            f"Par.Ndb.EofShift:0:EOF-25,10:{_hex(b'EOFSHIFT')}\n",
            f"Par.Ndb.Mail:4:*:{_hex(b'mail-body-marker')}\n",
            f"Par.Ndb.Html:3:*:{_hex(b'<b>html marker</b>')}\n",
            f"Par.Ndb.Ascii:7:*:{_hex(b'ascii marker text')}\n",
        ]),
        "p.ldb": "".join([
            f"Par.Ldb.And;Engine:51-255,Target:0;0&1;{_hex(b'first-part')};{_hex(b'second-part')}\n",
            f"Par.Ldb.Count;Target:0;0>3;{_hex(b'tick')}\n",
            f"Par.Ldb.Nocase;Target:0;0;{_hex(b'mixed-case-marker')}::i\n",
            f"Par.Ldb.Wide;Target:0;0;{_hex(b'wide-marker')}::w\n",
            f"Par.Ldb.Fullword;Target:0;0;{_hex(b'badword')}::f\n",
            f"Par.Ldb.Pcre;Target:0;0&1;{_hex(b'trigger-word')};0/pcre-[0-9]{{3}}-end/\n",
            f"Par.Ldb.Size;Engine:51-255,Target:0,FileSize:10-20;0;{_hex(b'size-mark')}\n",
            f"Par.Ldb.Exact;Target:0;(0|1)=3,2;{_hex(b'qq1')};{_hex(b'rr2')}\n",
            f"Par.Ldb.Less;Target:0;0<3;{_hex(b'few')}\n",
            f"Par.Ldb.WideAscii;Target:0;0;{_hex(b'both-marker')}::wa\n",
            f"Par.Ldb.Offset;Target:0;0;0:{_hex(b'LDBHEAD')}\n",
            f"Par.Ldb.PcreNocase;Target:0;0&1;{_hex(b'trigger2')}::i;0/pcre-abc-end/i\n",
            f"Par.Ldb.Nested;Target:0;((0|1)&2)|(3&4);{_hex(b'nest-a')};{_hex(b'nest-x')};{_hex(b'nest-c')};"
            f"{_hex(b'never-1')};{_hex(b'never-2')}\n",
        ]),
        "p.fp": f"{hashlib.md5(s['fp-allowed.bin']).hexdigest()}:{len(s['fp-allowed.bin'])}:Par.Allowed\n",
        "p.ign2": "Par.Ndb.Dropped\n",
        "p.sfp": f"{hashlib.sha256(s['sfp-allowed.bin']).hexdigest()}:{len(s['sfp-allowed.bin'])}:Par.Allowed2\n",
    }


# Known divergences, each explained in bench/README.md ("Parity with clamscan").
EXPLAINED: dict[str, str] = {
    "ndb-neg-miss.bin": "ClamAV 1.4.6 matches a one-byte negated alternative !(59|5a) like ?? (it finds neg-Y and "
                        "neg-Z too); we keep the documented meaning, 'any byte except these'",
}

_FOUND = re.compile(r"^(.*): (.+) FOUND$")


def clamscan_verdicts(db: Path, corpus: Path) -> dict[str, set[str]]:
    out = subprocess.run(["clamscan", f"--database={db}", "--allmatch", "--no-summary", "--recursive",
                          str(corpus)], capture_output=True, text=True, timeout=600)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"clamscan failed ({out.returncode}): {out.stderr.strip()[:500]}")
    found: dict[str, set[str]] = {}
    for line in out.stdout.splitlines():
        m = _FOUND.match(line)
        if m:
            name = m.group(2).removesuffix(".UNOFFICIAL")
            found.setdefault(Path(m.group(1)).name, set()).add(name)
    return found


def engine_verdicts(db: Path, corpus: Path) -> dict[str, set[str]]:
    eng = Engine.load(db)
    found: dict[str, set[str]] = {}
    for path in sorted(corpus.iterdir()):
        names = set(eng.scan(path.read_bytes(), path.name).names)
        if names:
            found[path.name] = names
    return found


def compare(work: Path) -> tuple[list[tuple[str, set[str], set[str]]], list[str]]:
    """Build the set in ``work``; return (rows, unexplained differences)."""
    samples = _samples()
    db, corpus = work / "db", work / "corpus"
    db.mkdir()
    corpus.mkdir()
    for name, text in _signatures(samples).items():
        (db / name).write_text(text)
    for name, data in samples.items():
        (corpus / name).write_bytes(data)
    clam = clamscan_verdicts(db, corpus)
    ours = engine_verdicts(db, corpus)
    rows = [(name, ours.get(name, set()), clam.get(name, set())) for name in sorted(samples)]
    diffs = [f"{n}: aveserver {sorted(a) or 'clean'} vs clamscan {sorted(c) or 'clean'}"
             for n, a, c in rows if a != c and n not in EXPLAINED]
    return rows, diffs


def main() -> int:
    if shutil.which("clamscan") is None:
        print("clamscan is not installed (apt-get install clamav)")
        return 2
    with tempfile.TemporaryDirectory(prefix="kav-parity-") as tmp:
        rows, diffs = compare(Path(tmp))
    print(f"{'file':26} {'aveserver':28} clamscan")
    for name, a, c in rows:
        mark = "" if a == c else ("  (explained)" if name in EXPLAINED else "  <-- DIFFERS")
        print(f"{name:26} {','.join(sorted(a)) or '-':28} {','.join(sorted(c)) or '-'}{mark}")
    print(f"{len(rows)} files, {sum(1 for _, a, c in rows if a != c)} differences, {len(diffs)} unexplained")
    for d in diffs:
        print("DIFF", d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
