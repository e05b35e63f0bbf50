"""``python -m bench.scaleout``: throughput of the scale-out recipe (docs/scale-out.md), one vs two filter hosts.

Needs root (network namespaces, veth, the distro matrix's cached bookworm-postfix root) and
Debian's haproxy. The lab is tests/support/scaleout.py, the same one tests/scaleout runs: a real
Postfix on the MX host hands every message to ``scan:[filters.lan]:10025``; ``filters.lan`` has
one address (one filter host) or two (two filter hosts); each filter host runs smtpscanner (one
process) and aveserver (one worker) from this tree, loaded with the same generated signatures as
bench/filter (20 000 .hdb + 2 000 .ndb). Nothing else changes between the two runs.

Figures per configuration (best of ``--rounds``; each round runs 0, 1 and 2 hosts back to back (1 and 2
in alternating order), so
the per-round ratio compares runs made under the same machine load, and their median is printed too):

* mail: messages/s from the first client connection until the last message arrived at the store
  (``--messages`` ~8 KB mails, 5 % with the EICAR test file, ``--concurrency`` SMTP clients);
* pool: clamd ``INSTREAM`` scans/s of a 256 KiB object through HAProxy's pooled port, from
  ``--pool-concurrency`` clients (the way clamdscan --stream or another host's clamd client uses it).

The same Postfix with no content filter at all (0 filter hosts) is the ceiling: the MX, the load
client and the store share the machine with the filter hosts. Then the two-host / one-host ratio
of each figure. The machine's cores bound the ratio: every host
shares the same CPUs (``nproc`` is printed with the figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from tests.support.scaleout import run_in_namespace, tools_missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--pool-scans", type=int, default=300)
    ap.add_argument("--pool-concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    why = tools_missing()
    if why:
        raise SystemExit(f"bench.scaleout cannot run here: {why}")
    best: dict[int, dict[str, float]] = {}
    ratios: list[tuple[float, float]] = []
    for rnd in range(args.rounds):
        this_round: dict[int, tuple[float, float]] = {}
        for hosts in (0, 1, 2) if rnd % 2 == 0 else (0, 2, 1):  # alternate, so a drifting machine load favours neither
            r = run_in_namespace({"messages": args.messages, "concurrency": args.concurrency, "hosts": hosts,
                                  "kill": False, "bench_signatures": True, "pool_load": args.pool_scans,
                                  "pool_concurrency": args.pool_concurrency, "seed": rnd + 1}, timeout=3600)
            lost = len(r["lost"])
            pool = r.get("pool_load", {"rate": float("nan"), "error_count": 0, "errors": []})
            print(f"round {rnd + 1} hosts={hosts}: mail {r['rate']:6.1f} msg/s ({r['delivered_unique']}/"
                  f"{r['accepted']} in {r['seconds']:.1f} s, lost {lost}, deferred {r['deferred']}, "
                  f"per host {r['per_host']})  pool "
                  f"{pool['rate']:6.1f} scans/s (errors {pool['error_count']})", flush=True)
            if lost or pool["error_count"]:
                print(f"  lost: {r['lost'][:5]} pool errors: {pool['errors']}", file=sys.stderr)
            b = best.setdefault(hosts, {"mail": 0.0, "pool": 0.0})
            b["mail"] = max(b["mail"], r["rate"])
            if hosts:
                b["pool"] = max(b["pool"], pool["rate"])
            this_round[hosts] = (r["rate"], pool["rate"])
        ratios.append((this_round[2][0] / this_round[1][0], this_round[2][1] / this_round[1][1]))
        print(f"round {rnd + 1}: 2 / 1 hosts mail {ratios[-1][0]:.2f}x pool {ratios[-1][1]:.2f}x "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\nscale-out, {args.messages} messages, {args.concurrency} SMTP clients, {os.cpu_count()} cores "
          f"(best of {args.rounds})")
    print(f"{'filter hosts':>12} {'mail msg/s':>11} {'pool scans/s':>13}")
    print(f"{'0 (no filter)':>12} {best[0]['mail']:>11.1f} {'-':>13}")
    for hosts in (1, 2):
        print(f"{hosts:>12} {best[hosts]['mail']:>11.1f} {best[hosts]['pool']:>13.1f}")
    print(f"{'2 / 1 best':>12} {best[2]['mail'] / best[1]['mail']:>10.2f}x {best[2]['pool'] / best[1]['pool']:>12.2f}x")
    print(f"{'2 / 1 median':>12} {statistics.median(m for m, _ in ratios):>10.2f}x "
          f"{statistics.median(p for _, p in ratios):>12.2f}x   (of the per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
