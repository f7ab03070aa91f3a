#!/usr/bin/env python3
"""An SVG chart of smtpsession's ratio to each peer, per workload, from smtpbench JSON lines.

    chart.py RESULTS.jsonl... -o benchmarks.svg

A bar per peer and workload: smtpsession's throughput divided by the peer's (or the peer's
CPU/memory divided by smtpsession's), so every bar right of the 1× line is a row smtpsession
wins.  Standard library only (plain SVG text).
"""
import argparse
import math

from report import ROWS, load, median

PEERS = ["node-smtp-server", "twisted.mail", "aiosmtpd", "go-smtp", "smtp-sink"]
COLORS = {"node-smtp-server": "#3c873a", "twisted.mail": "#5b6ee1", "aiosmtpd": "#e0a526",
          "go-smtp": "#00add8", "smtp-sink": "#999999"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--subject", default="smtpsession")
    a = ap.parse_args()
    data, _ = load(a.files, "smtp")
    peers = [p for p in PEERS if p in data]
    rows = []
    for label, w, field, _nd, higher in ROWS:
        mine = median(data[a.subject].get(w, []), field) if a.subject in data else None
        if not mine:
            continue
        bars = []
        for p in peers:
            theirs = median(data[p].get(w, []), field)
            if theirs:
                bars.append((p, mine / theirs if higher else theirs / mine))
        if bars:
            rows.append((label, bars))
    lo, hi = 0.1, 30.0          # log scale from 0.1× to 30×
    left, width, bar_h, gap = 330, 480, 9, 10

    def x(r):
        r = min(max(r, lo), hi)
        return left + width * (math.log10(r) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    height = 60 + sum(len(b) * bar_h + gap for _, b in rows) + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 40}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{a.subject} relative to each '
           f'peer (log scale; right of 1× = {a.subject} better)</text>']
    y = 40
    for tick in (0.1, 0.25, 0.5, 1, 2, 4, 10, 30):
        svg.append(f'<line x1="{x(tick):.1f}" y1="{y}" x2="{x(tick):.1f}" y2="{height - 30}" '
                   f'stroke="{"#000" if tick == 1 else "#ddd"}" stroke-width="{1.5 if tick == 1 else 1}"/>')
        svg.append(f'<text x="{x(tick):.1f}" y="{height - 15}" text-anchor="middle">{tick:g}×</text>')
    y += 10
    for label, bars in rows:
        svg.append(f'<text x="{left - 8}" y="{y + len(bars) * bar_h / 2 + 4:.1f}" '
                   f'text-anchor="end">{label}</text>')
        for peer, r in bars:
            x0, x1 = sorted((x(1), x(r)))
            svg.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{bar_h - 1}" '
                       f'fill="{COLORS[peer]}"><title>{peer}: {r:.2f}×</title></rect>')
            y += bar_h
        y += gap
    lx = 10
    for peer in peers:
        svg.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{COLORS[peer]}"/>')
        svg.append(f'<text x="{lx + 14}" y="{height - 3}">{peer}</text>')
        lx += 14 + 7 * len(peer) + 16
    svg.append("</svg>")
    with open(a.output, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
