"""``python3 -m bench.engine.matchers``: the matcher choice, measured on our own signature format.

The 10 000 generated .ndb signatures are compiled by each candidate and run over a sample of the
corpus.  Hyperscan and YARA take the full syntax (wildcards, nibbles, jumps, alternatives);
pyahocorasick only matches literals, so it gets each signature's longest fixed run as a prefilter
(the regex verification it would still need is not even counted in its favour).
"""

from __future__ import annotations

import re
import sys
import time

import ahocorasick
import hyperscan
import yara

from runtime.engine.signatures import load_signatures

from .corpus import build_corpus, build_signatures, corpus_files


def yara_hex(sig: str) -> str:
    out = []
    i = 0
    while i < len(sig):
        c = sig[i]
        if c == "*":
            out.append("[-]")
            i += 1
        elif c == "{":
            j = sig.index("}", i)
            body = sig[i + 1 : j]
            a, _, b = body.partition("-")
            out.append(f"[{a or 0}-{b}]" if "-" in body else f"[{a}]")
            i = j + 1
        elif c == "(":
            j = sig.index(")", i)
            out.append("(" + " | ".join(" ".join(p[k:k + 2] for k in range(0, len(p), 2))
                                        for p in sig[i + 1 : j].split("|")) + ")")
            i = j + 1
        else:
            out.append(sig[i : i + 2])
            i += 2
    return " ".join(out)


def main() -> int:
    corpus = build_corpus()
    db = build_signatures(corpus)
    raw = [ln.split(":")[3] for ln in (db / "bench.ndb").read_text().splitlines()]
    sigs = load_signatures(db).body
    sample = b"".join(p.read_bytes() for p in corpus_files(corpus) if p.parent.name == "bin")[:100_000_000]
    print(f"{len(sigs)} .ndb signatures, sample {len(sample) / 1e6:.0f} MB")
    rows = []

    t = time.monotonic()
    hdb = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    hdb.compile(expressions=[s.hs_regex() for s in sigs], ids=list(range(len(sigs))), elements=len(sigs),
                flags=hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH)
    ct = time.monotonic() - t
    hits: list[int] = []
    t = time.monotonic()
    hdb.scan(sample, match_event_handler=lambda i, *_: hits.append(i))
    rows.append(("hyperscan (full syntax)", ct, time.monotonic() - t, len(set(hits))))

    src = "\n".join(f"rule r{i} {{ strings: $a = {{ {yara_hex(s)} }} condition: $a }}" for i, s in enumerate(raw))
    t = time.monotonic()
    rules = yara.compile(source=src)
    ct = time.monotonic() - t
    t = time.monotonic()
    m = rules.match(data=sample)
    rows.append(("yara-python (full syntax)", ct, time.monotonic() - t, len(m)))

    t = time.monotonic()
    auto = ahocorasick.Automaton()
    for i, s in enumerate(raw):
        runs = re.split(r"\?\?|[0-9a-f]\?|\?[0-9a-f]|\*|\{[^}]*\}|\([^)]*\)", s)
        lit = max(runs, key=len)
        auto.add_word(bytes.fromhex(lit[: len(lit) // 2 * 2]).decode("latin-1"), i)
    auto.make_automaton()
    ct = time.monotonic() - t
    text = sample.decode("latin-1")
    t = time.monotonic()
    found = {v for _end, v in auto.iter(text)}
    rows.append(("pyahocorasick (literals only)", ct, time.monotonic() - t, len(found)))

    print(f"{'matcher':30} {'compile s':>10} {'scan s':>8} {'MB/s':>8} {'sigs hit':>9}")
    for name, c, s, h in rows:
        print(f"{name:30} {c:10.2f} {s:8.2f} {len(sample) / 1e6 / s:8.0f} {h:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())



