"""EngineWorker on its own: commands in, EngineOutputs out, busy polling before it blocks."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from kairos.serve import EngineRunner, RunnerConfig, load_model  # noqa: E402
from kairos.serve.engine_worker import (  # noqa: E402
    Accepted,
    Add,
    EngineOutput,
    EngineWorker,
    GenerationRequest,
    Stop,
    TokenUpdate,
)
from kairos.serve.sampler import GREEDY  # noqa: E402


class ScriptedCommands:
    """A CommandSource whose next command arrives only while the engine is idle, after `polled` empty polls.

    So each request runs to completion before the next command comes.
    """

    def __init__(self, runner: EngineRunner, commands: list[object], polled: int = 0) -> None:
        self.runner = runner
        self.commands = list(commands)
        self.polled = polled
        self.blocking_gets = 0
        self._misses = 0

    def get(self) -> object:
        self.blocking_gets += 1
        return self.commands.pop(0)

    def get_nowait(self) -> object | None:
        if self.runner.has_work() or not self.commands or self._misses < self.polled:
            self._misses += 1
            return None
        self._misses = 0
        return self.commands.pop(0)


@pytest.fixture(scope="module")
def runner():
    return EngineRunner(load_model("tiny"), RunnerConfig(num_blocks=64, ignore_eos=True))


def run(runner, commands: ScriptedCommands, busy_poll_s: float = 0.0) -> list[EngineOutput]:
    outputs: list[EngineOutput] = []
    EngineWorker(runner, busy_poll_s=busy_poll_s).serve(commands, outputs.append)
    return outputs


def test_a_request_is_accepted_streamed_and_finished(runner):
    request = GenerationRequest("r1", (1, 2, 3, 4), GREEDY, max_tokens=5)
    outputs = run(runner, ScriptedCommands(runner, [Add(request), Stop()]))  # Stop comes once it is idle
    items = [item for out in outputs for rid, item in out.deliveries if rid == "r1"]
    assert isinstance(items[0], Accepted)
    updates = [i for i in items[1:] if isinstance(i, TokenUpdate)]
    assert sum(len(u.token_ids) for u in updates) == 5 and updates[-1].finish_reason == "length"
    assert outputs[-1].closed and outputs[-1].error is None
    assert sum(len(out.steps) for out in outputs) == len(updates)  # every step logged once
    assert not runner.has_work() and runner.kv.num_used_blocks == 0


def test_idle_worker_polls_before_it_blocks(runner):
    # With busy polling the command arriving while polling is taken without a blocking get.
    polling = ScriptedCommands(runner, [Stop()], polled=3)
    run(runner, polling, busy_poll_s=10.0)
    assert polling.blocking_gets == 0
    sleeping = ScriptedCommands(runner, [Stop()], polled=3)
    run(runner, sleeping, busy_poll_s=0.0)
    assert sleeping.blocking_gets == 1


def test_step_log_marks_the_idle_time_before_each_busy_spell(runner):
    # Two requests one after the other: each starts a busy spell after the engine sat idle.
    first = GenerationRequest("a", (1, 2, 3, 4), GREEDY, max_tokens=4)
    second = GenerationRequest("b", (5, 6, 7), GREEDY, max_tokens=3)
    outputs = run(runner, ScriptedCommands(runner, [Add(first), Add(second), Stop()], polled=200),
                  busy_poll_s=10.0)
    steps = [entry for out in outputs for entry in out.steps]
    assert len(steps) == 4 + 3
    idle = [entry[7] for entry in steps]
    assert idle[0] > 0 and idle[4] > 0  # the first step of each request
    assert idle[1:4] == [0.0] * 3 and idle[5:] == [0.0] * 2
    assert all(entry[6] > 0 for entry in steps)
