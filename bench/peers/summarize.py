"""One line per server and form from the load generator's results.json and the server's CPU
seconds over the run: peak throughput, the best throughput at p99 ≤ 25 ms, and images per
joule estimated at WATTS_PER_CORE for every busy core-second.

    python summarize.py WATTS_PER_CORE NAME=DIR:CPU_SECONDS...
"""

import json
import sys

P99_LIMIT_MS = 25.0


def main():
    watts = float(sys.argv[1])
    print(f"{'server and form':<28}{'peak img/s':>11}{'p99 ms':>8}{'img/s @p99≤25ms':>17}{'img/J (est.)':>14}")
    for arg in sys.argv[2:]:
        name, rest = arg.split("=", 1)
        folder, cpu = rest.rsplit(":", 1)
        levels = json.load(open(f"{folder}/results.json"))
        peak = max(levels, key=lambda l: l["throughput"])
        within = [l["throughput"] for l in levels if l["latency"]["p99_ms"] <= P99_LIMIT_MS and l["measured_errors"] == 0]
        images = sum(l["ok"] for l in levels)
        per_joule = images / (float(cpu) * watts) if float(cpu) > 0 else float("nan")
        print(f"{name:<28}{peak['throughput']:>11.0f}{peak['latency']['p99_ms']:>8.1f}"
              f"{(max(within) if within else 0):>17.0f}{per_joule:>14.1f}")


if __name__ == "__main__":
    main()
