"""`make matrix`: run the scenarios for suite x MTA and print the table with timings.

Exit status: 1 if any scenario failed, 0 otherwise; with --strict, also 1 when anything is blocked
or partial (what "the matrix is all pass" means for the acceptance run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .known import known_defect
from .roots import ensure_root, is_cached
from .sandbox import cleanup_stale
from .scenarios import SCENARIOS, Cell
from .spec import FLAVOURS, SUITES, all_specs

REPO = Path(__file__).resolve().parents[3]


def find_deb(explicit: str | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    debs = sorted((REPO / "dist").glob("kav4mailservers_*_all.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def table(cells: list[Cell], scenarios: tuple[str, ...]) -> str:
    head = ["suite", "mta", *scenarios]
    rows = [head]
    notes: dict[str, int] = {}  # reason -> footnote number; one footnote per distinct reason
    for c in cells:
        row = [c.spec.suite, c.spec.flavour.name]
        for s in scenarios:
            o = c.outcomes.get(s)
            if o is None:
                row.append("-")
                continue
            cell = f"{o.status} {o.seconds:.1f}s" if o.status != "blocked" else "blocked"
            if o.status != "pass" and o.detail:
                reason = o.detail.strip().splitlines()[0][:240]
                if o.status == "fail":
                    defect = known_defect(o.detail)
                    reason = f"known defect: {defect}" if defect else f"{c.spec.name} {s}: {reason}"
                cell += f" [{notes.setdefault(reason, len(notes) + 1)}]"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    foot = [f"[{n}] {reason}" for reason, n in notes.items()] + ["(- = does not apply to this MTA)"]
    return "\n".join(lines + ([""] + foot if foot else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="distro-matrix", description=__doc__)
    ap.add_argument("--suite", action="append", choices=SUITES, help="only this suite (repeatable)")
    ap.add_argument("--mta", action="append", choices=sorted(FLAVOURS), help="only this MTA flavour (repeatable)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="only this scenario (and what it needs)")
    ap.add_argument("--deb", help="package to test (default: newest dist/kav4mailservers_*_all.deb)")
    ap.add_argument("--jobs", type=int, default=2, help="cells run in parallel (default 2)")
    ap.add_argument("--json", help="also write the outcomes to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless every scenario passed")
    ap.add_argument("--build-roots", action="store_true", help="only build (or verify cached) roots")
    ap.add_argument("-v", "--verbose", action="store_true", help="print failure details in full")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("distro-matrix: needs root (mmdebstrap, mount, unshare, chroot)", file=sys.stderr)
        return 2
    for stale in cleanup_stale():
        print(f"removed a stale sandbox: {stale}")
    specs = all_specs(tuple(args.suite or SUITES), tuple(args.mta) if args.mta else None)
    t0 = time.monotonic()
    cold = [s.name for s in specs if not is_cached(s)]
    with ThreadPoolExecutor(max(1, args.jobs)) as ex:
        built = list(ex.map(ensure_root, specs))
    t_roots = time.monotonic() - t0
    print(f"roots: {len(specs)} ready in {t_roots:.1f}s ({len(cold)} built: {', '.join(cold) or 'all cached'})")
    for spec, (path, took) in zip(specs, built, strict=True):
        if took:
            print(f"  built {spec.name} in {took:.1f}s -> {path}")
    if args.build_roots:
        return 0

    deb = find_deb(args.deb)
    print(f"package: {deb or 'none (install scenarios will be blocked; run make deb)'}")
    scenarios = tuple(args.scenario or SCENARIOS)
    cells = [Cell(s, deb) for s in specs]

    def run(cell: Cell) -> Cell:
        cell.run(scenarios, log=lambda line: print("  " + line, flush=True))
        return cell

    t1 = time.monotonic()
    with ThreadPoolExecutor(max(1, args.jobs)) as ex:
        done = list(ex.map(run, cells))
    t_cells = time.monotonic() - t1
    shown = tuple(s for s in SCENARIOS if any(s in c.outcomes for c in done))
    print()
    print(table(done, shown))
    print(f"\ntimings: roots {t_roots:.1f}s, scenarios {t_cells:.1f}s, total {time.monotonic() - t0:.1f}s "
          f"(jobs={args.jobs})")
    statuses = [o.status for c in done for o in c.outcomes.values()]
    counts = {s: statuses.count(s) for s in ("pass", "partial", "blocked", "fail")}
    print("result: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.verbose:
        for c in done:
            for s, o in c.outcomes.items():
                if o.status == "fail":
                    print(f"\n=== {c.spec.name} {s}\n{o.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {c.spec.name: {s: vars(o) for s, o in c.outcomes.items()} for c in done}, indent=1))
    if counts["fail"] or (args.strict and (counts["blocked"] or counts["partial"])):
        return 1
    return 0
