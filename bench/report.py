#!/usr/bin/env python3
"""The benchmark table of docs/benchmarks.md, from smtpbench JSON lines.

    report.py RESULTS.jsonl... [--names a,b,c]

One row per workload (as in the performance issue's table), one column per server, each cell
the median over repetitions; then the ratio of smtpsession (pure Python, and with its core
compiled by mypyc) to each peer ("better" is > 1 in every row: for CPU and memory rows the ratio
is inverted).  Standard library only.
"""
import argparse
import json
import statistics
from collections import defaultdict

# (label, workload, field, digits, higher_is_better)
ROWS = [
    ("w1: 1 session, 5000 × 1 KB, msg/s", "w1", "msgs_per_s", 0, True),
    ("w50: 50 sessions, 20000 × 1 KB, msg/s", "w50", "msgs_per_s", 0, True),
    ("server CPU per 1 KB message (w50), ms", "w50", "server_ms_per_msg", 3, False),
    ("mix: 1 KB + 100 KB + 10 MB at once, msg/s", "mix", "msgs_per_s", 0, True),
    ("churn: new connection per message, msg/s", "churn", "msgs_per_s", 0, True),
    ("w100k: 100 KB bodies, MB/s", "w100k", "mb_per_s", 0, True),
    ("w10m: 10 MB bodies, MB/s", "w10m", "mb_per_s", 0, True),
    ("RSS per idle connection, KiB", "idle", "kb_per_conn", 1, False),
    ("tls50: 50 TLS sessions, 20000 × 1 KB, msg/s", "tls50", "msgs_per_s", 0, True),
    ("server CPU per 1 KB message over TLS, ms", "tls50", "server_ms_per_msg", 3, False),
    ("tlschurn: a TLS handshake per message, msg/s", "tlschurn", "msgs_per_s", 0, True),
    ("tls10m: 10 MB bodies over TLS, MB/s", "tls10m", "mb_per_s", 0, True),
]
DEFAULT_NAMES = ("smtpsession-before-nolog,smtpsession-nolog,smtpsession,"
                 "smtpsession-before-mypyc-nolog,smtpsession-mypyc-nolog,smtpsession-mypyc,"
                 "smtp-sink,go-smtp,node-smtp-server,twisted.mail,aiosmtpd")


def load(paths, proto):
    data = defaultdict(lambda: defaultdict(list))   # name -> workload -> [rows]
    meta = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("proto") != proto:
                    continue
                if r["workload"] == "meta":
                    meta.setdefault(r["name"], r)
                    continue
                w = "idle" if r["workload"].startswith("idle") else r["workload"]
                data[r["name"]][w].append(r)
    return data, meta


def median(rows, field):
    vals = [r[field] for r in rows if r.get(field) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd):
    return "—" if v is None else f"{v:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--names", default=DEFAULT_NAMES)
    ap.add_argument("--proto", default="smtp")
    ap.add_argument("--subject", default="smtpsession,smtpsession-mypyc",
                    help="the server(s) compared with the others (comma-separated)")
    a = ap.parse_args()
    data, _ = load(a.files, a.proto)
    names = [n for n in a.names.split(",") if n in data]
    out = ["| workload (medians) | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
    subjects = [n for n in a.subject.split(",") if n in names]
    ratios = {s: [] for s in subjects}
    for label, w, field, nd, higher in ROWS:
        vals = {n: median(data[n].get(w, []), field) for n in names}
        if all(v is None for v in vals.values()):
            continue
        cells = []
        for n in names:
            rs = data[n].get(w, [])
            bad = "" if all(r.get("ok", True) for r in rs) else " ⚠"
            cells.append(fmt(vals[n], nd) + (bad if rs else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
        for subject in subjects:
            mine = vals.get(subject)
            if not mine:
                continue
            row = []
            for n in names:
                if n in subjects or not vals[n]:
                    continue
                r = mine / vals[n] if higher else vals[n] / mine
                row.append(f"{n} {r:.2f}×")
            ratios[subject].append(f"| {label} | " + ", ".join(row) + " |")
    print("\n".join(out))
    for subject, rows in ratios.items():
        if rows:
            print(f"\n{subject} relative to each peer (> 1 means {subject} is better):\n")
            print("| workload | ratios |\n|---|---|")
            print("\n".join(rows))


if __name__ == "__main__":
    main()
