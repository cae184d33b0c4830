"""The machine's speed while it serves: one fixed decode step of the served model, timed now and then.

A shared virtual machine's speed swings by up to two times over seconds to
minutes (other tenants, the sibling hardware thread), so step times measured at
calibration and in a benchmark a minute later can differ by 20 % with nothing
changed in the engine. The reference step measures that swing on the model the
engine serves: the same weights and kernels, on a small KV pool of its own, so
the engine's requests and cache are untouched. The step log carries its latest
reading with every step; a calibration profile records the reading its steps
ran at, and `kairos validate` scales the profile to the speed a measured run
saw (kairos.calibration.machine_speed).
"""

from __future__ import annotations

import time

import torch

from kairos.serve.attention import build_attention_metadata
from kairos.serve.kv_pool import allocate_kv_pool
from kairos.serve.runner import EngineRunner

# The reference batch: a few decodes of a moderate context, like a busy server's steps.
REFERENCE_DECODES = 4
REFERENCE_CONTEXT = 300
# Inside a busy spell, a reading every this many idle intervals: each holds up the running requests
# by one reference step (two runs, about 1.5 ms on the tiny model: 0.75 % of a busy spell at 100 ms).
BUSY_INTERVAL_FACTOR = 2


class ReferenceStep:
    """Times one fixed decode step (REFERENCE_DECODES decodes at REFERENCE_CONTEXT tokens) of the runner's model.

    `measure` runs it twice and times the second run: the first brings the
    model back into the caches that the engine's last step may have evicted,
    so that the reading is the machine's speed, not what ran before.
    """

    def __init__(self, runner: EngineRunner) -> None:
        executor = runner.executor
        block_size = runner.kv.block_size
        blocks_each = REFERENCE_CONTEXT // block_size + 1
        self._model = executor.model
        self._pool = allocate_kv_pool(runner.loaded.config, REFERENCE_DECODES * blocks_each, block_size,
                                      runner.loaded.dtype, executor.device)
        tables = [list(range(i * blocks_each, (i + 1) * blocks_each)) for i in range(REFERENCE_DECODES)]
        self._metadata_args = ([REFERENCE_CONTEXT] * REFERENCE_DECODES, [1] * REFERENCE_DECODES, tables,
                               block_size, executor.queries_per_kv, executor.device, executor.min_split_slots)
        vocab = runner.loaded.config.vocab_size
        self._input_ids = torch.arange(1, REFERENCE_DECODES + 1, dtype=torch.long).remainder(vocab).to(executor.device)

    def _run(self) -> None:
        # What a decode step does on the engine's side: metadata, forward pass, logits, a token each.
        meta = build_attention_metadata(*self._metadata_args)
        with torch.inference_mode():
            hidden = self._model(self._input_ids, self._pool, meta)
            self._model.logits(hidden).argmax(-1).tolist()

    def measure(self) -> float:
        """Seconds of one warm reference step."""
        self._run()
        start = time.perf_counter()
        self._run()
        return time.perf_counter() - start


class ReferenceClock:
    """Measures the reference step at most every `interval_s` and keeps the latest reading.

    Inside a busy spell it measures too, between two steps, but only every
    BUSY_INTERVAL_FACTOR intervals: the running requests wait for it. Without those
    readings a slow spell, which keeps the engine busy because its queue grows,
    would carry the reading from before it. Each reading stands alone: a median
    of the latest five lagged the machine's swings by a second or more, as long
    as a slow spell itself, so a step's reading could not tell which spell it ran in.
    """

    def __init__(self, step: ReferenceStep, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"the reference step interval must be > 0, got {interval_s}")
        self.step = step
        self.interval_s = interval_s
        self.busy_interval_s = BUSY_INTERVAL_FACTOR * interval_s
        self._last = float("-inf")  # when the latest measurement ended
        self.reading_s = 0.0  # 0 until the first measurement

    def maybe_measure(self, now: float, busy: bool = False) -> float:
        """Measure if due at `now` (time.perf_counter()); the seconds it took (0.0: not due)."""
        if now - self._last < (self.busy_interval_s if busy else self.interval_s):
            return 0.0
        begin = time.perf_counter()
        self.reading_s = self.step.measure()
        self._last = time.perf_counter()
        return self._last - begin
