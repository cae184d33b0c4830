"""Measure the real engine's step time over a grid of batch shapes and fit a calibration profile.

Each grid point is built on a live EngineRunner with crafted requests, so the
scheduler itself produces the shape: prefill chunks over a cached prefix are new
requests whose leading blocks hit the prefix cache; decodes are requests that
share a cached prompt prefix (cheap to set up; each still attends to its whole
context) stepped until they decode. What is timed is the wall time of
`EngineCore.step`: schedule, build inputs, forward, sample and update, i.e. all
the time the engine spends per step, host work included.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kairos.calibration.fit import fit_step_time
from kairos.calibration.profile import SCHEMA, MeasuredPoint
from kairos.calibration.terms import TERMS, AttentionLayout
from kairos.engine import Request, RequestStatus
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.serve.loader import LoadedModel
from kairos.serve.runner import EngineRunner, RunnerConfig
from kairos.serve.runtime import runtime_facts, torch_threads

# Untimed steps of each grid point before its timed repeats: the first step of a new
# shape pays for allocator growth and, on GPU, kernel selection.
WARMUP_STEPS = 1


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One grid point: `chunks` prefill chunks of `chunk` new tokens over `prefix` cached ones,
    beside `decodes` requests decoding after prompts of `decode_prompt` tokens.

    A chunk that is not `final` leaves part of its prompt for a later step, so it
    samples nothing; it must fill the step's token budget, the only thing that cuts a chunk.
    """

    chunks: int = 0
    chunk: int = 0
    prefix: int = 0
    final: bool = True
    decodes: int = 0
    decode_prompt: int = 0

    @property
    def kind(self) -> str:
        if self.chunks and self.decodes:
            return "mixed"
        return "prefill" if self.chunks else "decode"


@dataclass(frozen=True, slots=True)
class GridAxes:
    """The values each kind of grid point sweeps."""

    chunks: tuple[int, ...]
    prefixes: tuple[int, ...]
    multi: tuple[tuple[int, int], ...]  # (chunks per step, tokens per chunk)
    decode_batches: tuple[int, ...]
    decode_prompts: tuple[int, ...]
    mixed_decodes: tuple[int, ...]
    mixed_chunks: tuple[int, ...]
    mixed_prefixes: tuple[int, ...]


DEFAULT_AXES = GridAxes(
    chunks=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192), prefixes=(0, 512, 2048),
    multi=((2, 64), (4, 64), (8, 32), (16, 16), (4, 256)),
    decode_batches=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), decode_prompts=(16, 256, 1024, 2048),
    mixed_decodes=(8, 64), mixed_chunks=(64, 512), mixed_prefixes=(0, 1024),
)
QUICK_AXES = GridAxes(
    chunks=(16, 64, 256, 1024), prefixes=(0, 1024), multi=((4, 64),),
    decode_batches=(1, 8, 64), decode_prompts=(16, 512),
    mixed_decodes=(8,), mixed_chunks=(64, 512), mixed_prefixes=(0,),
)
# Prompt of the decodes that share a step with a prefill chunk.
MIXED_DECODE_PROMPT = 256


def calibration_grid(budget: int, max_seqs: int, max_len: int, steps: int,
                     axes: GridAxes = DEFAULT_AXES) -> list[StepSpec]:
    """The grid points that fit a step budget of `budget` tokens, `max_seqs` requests and
    `max_len` tokens per request, each to be stepped `steps` times.

    Axis values past a limit are clamped to it, so the engine's largest batches are measured too.
    """
    specs: list[StepSpec] = []
    chunks = _clamped(axes.chunks, budget)
    for prefix in axes.prefixes:
        specs += [StepSpec(1, c, prefix) for c in chunks if prefix + c + 1 <= max_len]
        # A full-budget chunk of a longer prompt: the same work without sampling.
        if prefix + budget + 2 <= max_len:
            specs.append(StepSpec(1, budget, prefix, final=False))
    specs += [StepSpec(k, c) for k, c in axes.multi if k * c <= budget and k <= max_seqs]
    for prompt in axes.decode_prompts:
        if prompt + steps + 2 <= max_len:
            specs += [StepSpec(decodes=n, decode_prompt=prompt) for n in _clamped(axes.decode_batches, max_seqs)]
    if MIXED_DECODE_PROMPT + steps + 2 <= max_len:
        # A mixed step needs a sequence slot and a token of budget left for its chunk.
        for n in _clamped(axes.mixed_decodes, min(max_seqs, budget) - 1):
            for prefix in axes.mixed_prefixes:
                specs += [StepSpec(1, c, prefix, decodes=n, decode_prompt=MIXED_DECODE_PROMPT)
                          for c in axes.mixed_chunks if n + c <= budget and prefix + c + 1 <= max_len]
            if budget - n + 2 <= max_len:
                specs.append(StepSpec(1, budget - n, 0, final=False, decodes=n,
                                      decode_prompt=MIXED_DECODE_PROMPT))
    return specs


def _clamped(values: tuple[int, ...], limit: int) -> list[int]:
    """`values` capped at `limit`, without duplicates or non-positive entries, ascending."""
    return sorted({min(v, limit) for v in values if min(v, limit) > 0})


class StepProbe:
    """Builds grid points on an EngineRunner with crafted requests and times their steps.

    The runner must ignore EOS (requests run to max_tokens) so that no request
    ends inside a timed step.
    """

    def __init__(self, runner: EngineRunner, repeats: int, seed: int = 0) -> None:
        self.runner = runner
        self.repeats = repeats
        self._rng = np.random.default_rng(seed)
        self._vocab = runner.loaded.config.vocab_size
        # One token sequence per length, reused so that its blocks stay in the prefix cache.
        self._prefixes: dict[int, list[int]] = {}

    def measure(self, spec: StepSpec) -> MeasuredPoint:
        """Median wall time of the point's timed steps, with the shape of the middle one."""
        steps = WARMUP_STEPS + self.repeats
        prefix = self._cached_prefix(spec.prefix)
        decoders = self._start_decodes(spec.decodes, spec.decode_prompt, steps)
        tail = spec.chunk if spec.final else spec.chunk + 1
        shapes: list[BatchShape] = []
        times: list[float] = []
        for i in range(steps):
            # Fresh tails: only the prefix may hit the cache, never an earlier repeat's chunk.
            chunk_reqs = [self._add(prefix + self._tokens(tail), 2) for _ in range(spec.chunks)]
            shape, elapsed = self._timed_step()
            for req in chunk_reqs:
                self.runner.abort(req)
            if i >= WARMUP_STEPS:
                shapes.append(shape)
                times.append(elapsed)
        for req in decoders:
            self.runner.abort(req)
        # Decode steps grow by one KV token per request each step: the middle shape goes with the median.
        return MeasuredPoint(spec.kind, shapes[len(shapes) // 2], statistics.median(times), tuple(times))

    def _timed_step(self) -> tuple[BatchShape, float]:
        runner = self.runner
        start = time.perf_counter()
        out, result = runner.engine.step(runner.executor, start, time.perf_counter)
        elapsed = time.perf_counter() - start
        if result.finished:
            raise RuntimeError("a request finished inside a timed step: max_tokens was sized too small")
        return out.shape, elapsed

    def _start_decodes(self, n: int, prompt: int, steps: int) -> list[Request]:
        """`n` requests that share a prompt's first `prompt - 1` tokens, stepped until all decode."""
        if not n:
            return []
        shared = self._cached_prefix(prompt - 1)
        budget = self.runner.config.max_num_batched_tokens
        # Early requests decode while later ones still prefill: leave room for those steps too.
        setup_steps = -(-n * prompt // budget) + 2
        reqs = [self._add(shared + self._tokens(1), steps + setup_steps) for _ in range(n)]
        while not all(_is_decoding(r) for r in reqs):
            self.runner.step()
        return reqs

    def _cached_prefix(self, length: int) -> list[int]:
        """A token sequence of `length` whose full blocks are in the prefix cache.

        Run as a request every time: one short step (its last block) while its blocks
        are still cached, a recompute when other points evicted them.
        """
        if length <= 0:
            return []
        if length not in self._prefixes:
            self._prefixes[length] = self._tokens(length)
        tokens = self._prefixes[length]
        req = self._add(tokens, 1)
        while req.status != RequestStatus.FINISHED:
            self.runner.step()
        return tokens

    def _add(self, prompt: list[int], max_tokens: int) -> Request:
        return self.runner.add(prompt, max_tokens=max_tokens)

    def _tokens(self, count: int) -> list[int]:
        return self._rng.integers(0, self._vocab, count).tolist()


def _is_decoding(req: Request) -> bool:
    """Prefill done: the only token left to compute is the last one sampled."""
    return req.num_output > 0 and req.num_computed == req.num_tokens - 1


ProgressFn = Callable[[int, int], None]


def calibrate(loaded: LoadedModel, config: RunnerConfig = RunnerConfig(), repeats: int = 3,
              quick: bool = False, threads: int | None = None, progress: ProgressFn | None = None
              ) -> dict[str, Any]:
    """Measure the step-time grid on a fresh engine for `loaded`, fit it, and return the profile.

    `threads` sets torch's CPU threads for the run (default: leave torch's setting).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    started = time.perf_counter()
    config = replace(config, ignore_eos=True)
    runner = EngineRunner(loaded, config)
    with torch_threads(threads) as threads_used:
        probe = StepProbe(runner, repeats)
        max_len = min(loaded.config.max_position_embeddings, runner.max_tokens_per_request)
        grid = calibration_grid(config.max_num_batched_tokens, config.max_num_seqs, max_len,
                                WARMUP_STEPS + repeats, QUICK_AXES if quick else DEFAULT_AXES)
        if len(grid) < len(TERMS):
            raise KairosError(f"these engine limits leave {len(grid)} step shapes to measure, fewer than the "
                              f"{len(TERMS)} terms to fit: raise --max-num-batched-tokens or --max-num-seqs"
                              + (", or drop --quick" if quick else ""))
        # Untimed: the very first steps of each kind pay for lazy initialisation (thread pools, allocator).
        first_of_kind: dict[str, StepSpec] = {}
        for spec in grid:
            first_of_kind.setdefault(spec.kind, spec)
        for spec in first_of_kind.values():
            probe.measure(spec)
        points = []
        for i, spec in enumerate(grid):
            points.append(probe.measure(spec))
            if progress is not None:
                progress(i + 1, len(grid))
    engine = {"block_size": config.block_size, "max_num_batched_tokens": config.max_num_batched_tokens,
              "max_num_seqs": config.max_num_seqs, "num_blocks": runner.kv.num_blocks,
              "attention": runner.attention_layout, "attention_min_split_slots": runner.executor.min_split_slots}
    fit = fit_step_time(points, layout=AttentionLayout.of_engine(engine))
    return {
        "schema": SCHEMA,
        "model": loaded.name,
        "model_config": loaded.config.to_hf(),
        **runtime_facts(loaded),
        "torch_threads": threads_used,
        "engine": engine,
        "measurement": {"timed": "EngineCore.step wall time (schedule, forward, sample, update)",
                        "grid": "quick" if quick else "default", "warmup_steps": WARMUP_STEPS,
                        "repeats": repeats, "statistic": "median",
                        "wall_time_s": time.perf_counter() - started},
        "terms": list(TERMS),
        "coefficients": fit.coefficients,
        "fit": fit.errors(),
        "points": [p.to_dict() for p in points],
    }
