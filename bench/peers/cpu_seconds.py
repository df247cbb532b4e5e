"""CPU seconds (user + system) used so far by a process and all its descendants, living
or reaped, from /proc: the basis of an energy estimate that treats every server alike.

    python cpu_seconds.py PID
"""

import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[1] is ppid; utime, stime, cutime, cstime are fields 14-17 of the full line.
    return int(fields[1]), sum(int(v) for v in fields[11:15])


def tree_seconds(root):
    children, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, t = stat(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
            ticks[int(entry)] = t
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / TICKS


if __name__ == "__main__":
    print(f"{tree_seconds(int(sys.argv[1])):.2f}")
