"""One line per server and form from the load generator's results.json and the server's CPU
seconds over the run: peak throughput, the best throughput at p99 within the limit, and
images per joule estimated at WATTS_PER_CORE for every busy core-second.

    python summarize.py WATTS_PER_CORE [--p99-limit-ms 25] NAME=DIR:CPU_SECONDS...
"""

import argparse
import json


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("watts_per_core", type=float)
    parser.add_argument("--p99-limit-ms", type=float, default=25.0)
    parser.add_argument("runs", nargs="+", metavar="NAME=DIR:CPU_SECONDS")
    args = parser.parse_args()
    limit = f"img/s @p99≤{args.p99_limit_ms:g}ms"
    print(f"{'server and form':<28}{'peak img/s':>11}{'p99 ms':>8}{limit:>20}{'img/J (est.)':>14}")
    for arg in args.runs:
        name, rest = arg.split("=", 1)
        folder, cpu = rest.rsplit(":", 1)
        levels = json.load(open(f"{folder}/results.json"))
        peak = max(levels, key=lambda l: l["throughput"])
        within = [l["throughput"] for l in levels
                  if l["latency"]["p99_ms"] <= args.p99_limit_ms and l["measured_errors"] == 0]
        images = sum(l["ok"] for l in levels)
        per_joule = images / (float(cpu) * args.watts_per_core) if float(cpu) > 0 else float("nan")
        print(f"{name:<28}{peak['throughput']:>11.1f}{peak['latency']['p99_ms']:>8.1f}"
              f"{(max(within) if within else 0):>20.1f}{per_joule:>14.2f}")


if __name__ == "__main__":
    main()
