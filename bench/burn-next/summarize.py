"""Median per shape over the runs of bench/burn-next/run.sh: 0.22.1 against 0.23-pre."""
import csv, statistics, sys, glob
pre = sys.argv[1] if len(sys.argv) > 1 else "run"
def load(v):
    d = {}
    for f in sorted(glob.glob(f"results/{v}_{pre}[0-9].csv")):
        for r in csv.DictReader(open(f)):
            d.setdefault(r["shape"], []).append(float(r["ms"]))
    return d
a, b = load("v022"), load("v023")
print(f"files per version: {len(next(iter(a.values())))}")
print("| shape | 0.22.1 ms | 0.23-pre ms | ratio (0.22/0.23) |")
print("|---|---:|---:|---:|")
for k in a:
    ma, mb = statistics.median(a[k]), statistics.median(b[k])
    print(f"| {k} | {ma:.3f} | {mb:.3f} | {ma/mb:.2f} |")
