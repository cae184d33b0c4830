"""The reference step: the machine's speed, timed on the served model without touching the engine's state."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from kairos.serve import EngineRunner, RunnerConfig, load_model  # noqa: E402
from kairos.serve.engine_worker import Add, EngineOutput, EngineWorker, GenerationRequest, Stop  # noqa: E402
from kairos.serve.reference_step import (BUSY_INTERVAL_FACTOR, ReferenceClock,  # noqa: E402
                                         ReferenceStep)
from kairos.serve.sampler import GREEDY  # noqa: E402

PROMPT = list(range(10, 60))


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


def runner_of(tiny) -> EngineRunner:
    return EngineRunner(tiny, RunnerConfig(num_blocks=64))


def test_reference_step_leaves_the_engine_and_its_outputs_untouched(tiny):
    runner = runner_of(tiny)
    expected = runner.generate([PROMPT], max_tokens=8)
    pool, free = runner.executor.kv_pool.clone(), runner.kv.num_free_blocks
    step = ReferenceStep(runner)
    assert step.measure() > 0
    assert torch.equal(runner.executor.kv_pool, pool) and runner.kv.num_free_blocks == free
    assert runner.generate([PROMPT], max_tokens=8) == expected


class Scripted:
    """A reference step whose readings are given."""

    def __init__(self, readings: list[float]) -> None:
        self.readings = iter(readings)

    def measure(self) -> float:
        return next(self.readings)


def test_clock_measures_when_due_and_keeps_its_latest_reading():
    clock = ReferenceClock(Scripted([5.0, 1.0, 2.0]), interval_s=60.0)
    assert clock.reading_s == 0.0
    clock.maybe_measure(time.perf_counter())
    assert clock.reading_s == 5.0
    clock.maybe_measure(time.perf_counter())
    assert clock.reading_s == 5.0  # not due for a minute: no new reading
    later = time.perf_counter() + 3600.0
    for expected in (1.0, 2.0):
        clock.maybe_measure(later)
        later += 3600.0
        assert clock.reading_s == expected
    with pytest.raises(ValueError, match="interval must be > 0"):
        ReferenceClock(Scripted([]), 0.0)


def test_clock_measures_less_often_inside_a_busy_spell_and_says_how_long_it_took():
    clock = ReferenceClock(Scripted([1.0, 2.0, 3.0]), interval_s=1.0)
    assert clock.busy_interval_s == BUSY_INTERVAL_FACTOR * 1.0 == 2.0
    assert clock.maybe_measure(time.perf_counter()) > 0.0  # the first reading is always due
    soon = time.perf_counter() + 1.5  # past the idle interval, not the busy one
    assert clock.maybe_measure(soon, busy=True) == 0.0 and clock.reading_s == 1.0
    assert clock.maybe_measure(soon) > 0.0 and clock.reading_s == 2.0
    assert clock.maybe_measure(time.perf_counter() + 3.6, busy=True) > 0.0 and clock.reading_s == 3.0


class AfterAWhile:
    """Commands for a worker: one request, released `delay_s` after start, then Stop."""

    def __init__(self, request: GenerationRequest, delay_s: float) -> None:
        self.request, self.release_at = request, time.perf_counter() + delay_s
        self.sent = False

    def get_nowait(self) -> object | None:
        if not self.sent and time.perf_counter() >= self.release_at:
            self.sent = True
            return Add(self.request)
        return None

    def get(self) -> object:
        while (command := self.get_nowait()) is None and not self.sent:
            time.sleep(0.001)
        return command or Stop()


@pytest.mark.parametrize("every_s", [0.0, 0.002])
def test_worker_times_the_reference_while_idle_and_logs_it_with_every_step(tiny, every_s):
    worker = EngineWorker(runner_of(tiny), busy_poll_s=0.05, reference_every_s=every_s)
    outputs: list[EngineOutput] = []
    request = GenerationRequest("r", tuple(PROMPT), GREEDY, max_tokens=6)
    worker.serve(AfterAWhile(request, delay_s=0.03), outputs.append)
    steps = [step for output in outputs for step in output.steps]
    assert sum(step[4] for step in steps) == 6  # every token sampled in a logged step
    readings = [step[8] for step in steps]
    if every_s:  # the engine idled 30 ms before the request: readings from its first step on
        assert all(reading > 0 for reading in readings)
    else:
        assert readings == [0.0] * len(steps)


class Counting:
    """A reference step that takes 4 ms and reads 1 ms more each time it is measured."""

    def __init__(self) -> None:
        self.count = 0

    def measure(self) -> float:
        time.sleep(0.004)
        self.count += 1
        return self.count * 1e-3


def test_worker_reads_the_reference_inside_busy_spells_too_and_keeps_it_out_of_the_steps_times(tiny):
    runner = EngineRunner(tiny, RunnerConfig(num_blocks=64, ignore_eos=True))  # all 120 tokens
    worker = EngineWorker(runner, busy_poll_s=0.02, reference_every_s=0.001)
    worker.reference.step = counting = Counting()
    outputs: list[EngineOutput] = []
    request = GenerationRequest("r", tuple(PROMPT), GREEDY, max_tokens=120)
    worker.serve(AfterAWhile(request, delay_s=0.01), outputs.append)
    steps = [step for output in outputs for step in output.steps]
    assert len(steps) == 120
    starts = [step[9] for step in steps]
    assert all(b > a for a, b in zip(starts, starts[1:]))
    # A reading between two steps is in neither one's logged time: the gaps it leaves are its 4 ms.
    gaps = [after - (start + step[6]) for start, step, after in zip(starts, steps, starts[1:])]
    assert min(gaps) > -1e-9
    busy_readings = sum(gap >= 0.004 for gap in gaps)
    assert busy_readings >= 1 and counting.count > busy_readings  # and the idle engine read it first
    readings = [step[8] for step in steps]
    assert len(set(readings)) > 1
