"""Server-side SVG plots for the Statistics page (guide 1.1: "statistics of virus activity for a
specified period, and data on the types of viruses detected").

Rendered on the server so the console needs no JavaScript and nothing from a CDN; every bar
carries its numbers as ``data-*`` attributes and a ``<title>`` tooltip, so the picture and the
CSV/JSON export are the same data.
"""

from __future__ import annotations

import time
from html import escape

COLOURS = {"OK": "#4caf50", "INFECTED": "#e53935", "SUSPICIOUS": "#fb8c00", "WARNING": "#fdd835",
           "CURED": "#1e88e5", "CUREFAILED": "#8e24aa", "CORRUPTED": "#6d4c41", "PROTECTED": "#00897b",
           "ERROR": "#546e7a", "FILTERED": "#3949ab", "NOT_CHECKED": "#9e9e9e", "DEFERRED": "#000000"}


def colour(status: str) -> str:
    return COLOURS.get(status, "#757575")


def stacked_bars(starts: list[int], counts: dict[str, list[int]], step: int, width: int = 900,
                 height: int = 260) -> str:
    """Message parts per status per bucket as stacked bars."""
    left, bottom, top = 50, 30, 10
    n = len(starts)
    totals = [sum(c[i] for c in counts.values()) for i in range(n)]
    peak = max(totals + [1])
    bw = (width - left - 10) / max(n, 1)
    fmt = "%m-%d %H:00" if step < 86400 else "%Y-%m-%d"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" id="plot-status" width="{width}" '
           f'height="{height}" role="img" aria-label="messages per status">']
    for frac in (0, 0.5, 1):
        y = top + (height - top - bottom) * (1 - frac)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{round(peak * frac)}</text>')
    scale = (height - top - bottom) / peak
    for i, t in enumerate(starts):
        y = height - bottom
        label = time.strftime(fmt, time.localtime(t))
        for st in sorted(counts):
            c = counts[st][i]
            if not c:
                continue
            h = c * scale
            y -= h
            out.append(f'<rect class="bar" x="{left + i * bw + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" '
                       f'height="{h:.1f}" fill="{colour(st)}" data-status="{escape(st)}" data-bucket="{t}" '
                       f'data-count="{c}"><title>{escape(label)} {escape(st)}: {c}</title></rect>')
        if n <= 31 or i % max(1, n // 12) == 0:
            out.append(f'<text x="{left + i * bw + bw / 2:.1f}" y="{height - bottom + 14}" font-size="9" '
                       f'text-anchor="middle">{escape(label[-5:] if step < 86400 else label[5:])}</text>')
    out.append("</svg>")
    return "".join(out)


def legend(statuses: list[str]) -> str:
    return " ".join(f'<span class="key"><span class="swatch" style="background:{colour(s)}"></span>{escape(s)}</span>'
                    for s in statuses)


def horizontal_bars(items: list[tuple[str, int]], ident: str, width: int = 600) -> str:
    """Top virus names (or the clean/infected ratio) as labelled horizontal bars."""
    row = 22
    height = row * max(len(items), 1) + 10
    peak = max([n for _, n in items] + [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" id="{escape(ident)}" width="{width}" '
           f'height="{height}" role="img">']
    for i, (name, n) in enumerate(items):
        w = (width - 260) * n / peak
        y = 5 + i * row
        out.append(f'<text x="195" y="{y + 14}" font-size="11" text-anchor="end">{escape(name[:40])}</text>'
                   f'<rect class="bar" x="200" y="{y}" width="{max(w, 1):.1f}" height="{row - 6}" '
                   f'fill="{colour(name) if name in COLOURS else "#e53935"}" data-name="{escape(name)}" '
                   f'data-count="{n}"><title>{escape(name)}: {n}</title></rect>'
                   f'<text x="{205 + w:.1f}" y="{y + 14}" font-size="11">{n}</text>')
    out.append("</svg>")
    return "".join(out)
