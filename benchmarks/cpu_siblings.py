"""Whether this machine's vCPUs slow each other down: a pure-Python loop on one vCPU, alone and beside a busy one.

On a virtual machine two vCPUs may be the two hardware threads of one physical
core. Then whatever runs on one (an HTTP server, a load generator) slows the
engine on the other, and the twin's step times depend on that load too. The
loop counts iterations per 50 ms window on vCPU 0 for `--seconds`, first alone,
then with a second process spinning on vCPU 1 all the time, then half the time
(10 ms on, 10 ms off); it prints the median and 10th percentile of each.

Usage: python benchmarks/cpu_siblings.py [--seconds 10]   (Linux, two vCPUs or more)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

WINDOW_S = 0.05


def count_windows(seconds: float) -> list[int]:
    """Loop iterations per window on vCPU 0."""
    os.sched_setaffinity(0, {0})
    counts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < WINDOW_S:
            for _ in range(200):
                pass
            n += 1
        counts.append(n)
    return counts


def spin(seconds: float, busy_s: float, idle_s: float) -> None:
    """Keep vCPU 1 busy for busy_s out of every busy_s + idle_s."""
    os.sched_setaffinity(0, {1})
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        while time.perf_counter() - start < busy_s:
            pass
        if idle_s:
            time.sleep(idle_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure each case")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two vCPUs")
    for label, busy_s, idle_s in (("vCPU 1 idle", None, None), ("vCPU 1 busy", 1.0, 0.0),
                                  ("vCPU 1 busy half the time", 0.01, 0.01)):
        other = None
        if busy_s is not None:
            other = mp.Process(target=spin, args=(args.seconds + 1.0, busy_s, idle_s))
            other.start()
            time.sleep(0.3)
        counts = sorted(count_windows(args.seconds))
        if other is not None:
            other.join()
        print(f"{label:>26}: median {statistics.median(counts):,.0f} loops per {WINDOW_S * 1e3:.0f} ms, "
              f"10th percentile {counts[len(counts) // 10]:,}")


if __name__ == "__main__":
    main()
