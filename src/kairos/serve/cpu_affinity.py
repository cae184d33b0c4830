"""Which CPUs the engine process may run on: `kairos serve --engine-cpus`.

On a small machine the engine shares its cores with the HTTP front-end and, in
a benchmark, with the load generator. Wherever the scheduler puts them, they
preempt the engine in the middle of steps, and step times then depend on the
HTTP load. On a 2-core VM, with the engine pinned to one core and everything
else to the other, the twin benchmark's mean TPOT had a median of 1.04 ms over
27 runs (0.75-1.58), against 1.11 ms (0.78-2.01) over 11 runs unpinned, and the
twin met its bar in 21 of the 27 against 8 of the 11 (docs/BENCHMARKS.md).
vLLM's CPU backend binds its threads the same way (VLLM_CPU_OMP_THREADS_BIND).
"""

from __future__ import annotations

import os
import re

from kairos.errors import KairosError

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'1', '0,2', '2-3,6' (taskset's list syntax) -> sorted CPU numbers."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise KairosError(f"--engine-cpus: cannot read '{text}' as a CPU list (e.g. 1, 0,2 or 2-3)")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise KairosError(f"--engine-cpus: the range {part} runs backwards")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def pin_to_cpus(cpus: tuple[int, ...]) -> None:
    """Restrict this process (its threads started from now on too) to `cpus`."""
    if not hasattr(os, "sched_setaffinity"):
        raise KairosError("--engine-cpus needs an OS that can pin processes to CPUs (Linux)")
    try:
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError) as exc:
        raise KairosError(f"cannot pin the engine to CPUs {','.join(map(str, cpus))} "
                          f"(this machine has {os.cpu_count()}): {exc}") from None
