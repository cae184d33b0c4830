"""--engine-cpus: the CPU list syntax and pinning a process to it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kairos.errors import KairosError
from kairos.serve.cpu_affinity import parse_cpu_list, pin_to_cpus


@pytest.mark.parametrize(("text", "cpus"), [("1", (1,)), ("0,2", (0, 2)), ("2-3,6", (2, 3, 6)),
                                            (" 3 , 1-2 ", (1, 2, 3)), ("1,1", (1,))])
def test_cpu_lists_read_as_taskset_reads_them(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize(("text", "message"), [("a", "cannot read"), ("1,", "cannot read"), ("-1", "cannot read"),
                                               ("3-1", "runs backwards")])
def test_bad_cpu_lists_say_why(text, message):
    with pytest.raises(KairosError, match=message):
        parse_cpu_list(text)


needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")


@needs_affinity
def test_pinning_restricts_the_process_and_its_new_threads():
    # In a child process: pinning this one would slow the rest of the suite.
    cpu = min(os.sched_getaffinity(0))
    code = ("import os, threading; from kairos.serve.cpu_affinity import pin_to_cpus; "
            f"pin_to_cpus(({cpu},)); seen = []; "
            "t = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0))); t.start(); t.join(); "
            "print(sorted(os.sched_getaffinity(0)), sorted(seen[0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[{cpu}] [{cpu}]"


@needs_affinity
def test_pinning_to_a_cpu_the_machine_lacks_is_a_clear_error():
    before = os.sched_getaffinity(0)
    with pytest.raises(KairosError, match=r"cannot pin the engine to CPUs 4095 \(this machine has \d+\)"):
        pin_to_cpus((4095,))
    assert os.sched_getaffinity(0) == before
