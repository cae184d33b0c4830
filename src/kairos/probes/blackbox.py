"""Calibrate a served engine that keeps no step log (real vLLM) from probes it runs and its Prometheus metrics.

`kairos.probes.served` fits the steps `kairos serve` logs. vLLM logs
none, and its Prometheus page has no step-duration histogram. But a client can
make the engine run steps whose shape it knows, and time them:

- idle prefills: one request at a time, one output token. Its step (or steps:
  a prompt longer than max_num_batched_tokens is prefilled in chunks of that
  many tokens) is all the engine runs, and vLLM's
  `vllm:request_prefill_time_seconds` (from the scheduler scheduling the request
  to the engine core emitting its first token, observed when the request ends)
  times it: /metrics read before and after each request gives that one request's
  value. A probe whose prompt starts with the previous probe's prompt gives a
  prefill on top of cached context; `vllm:prefix_cache_hits_total` says exactly
  how many tokens were cached.
- steady decodes: B requests whose decode steps all hold all B. The engine starts
  them in one step: they queue behind one or two long prefills ("blockers"),
  each prompt starts with a prefix of its own cached beforehand, and their own
  suffixes fit in one step together. (Their own: decodes over one shared
  prefix read the same KV blocks, which stay in the CPU's caches; on vLLM 0.32
  CPU, 32 decodes over shared 1,024-token prefixes took 10.8 ms a step, over
  their own 25.4 ms, and served requests hold their own.) Then every step
  until they end together decodes all B, and vLLM's
  `vllm:inter_token_latency_seconds` histogram, which observes each
  decoding request's time since its previous token on the engine core's clock,
  sums to B x the run's decode steps: its delta over the probe, over B and the
  steps, is the decode step's period (whatever the engine loop does between
  steps included). `vllm:iteration_tokens_total`'s count (steps that made
  outputs) checks that the run was one: a step per blocker and one per token.
  Only totals are read once everything ended: while the engine turns out a step
  every millisecond or two, vLLM's API server on a busy core serves /metrics,
  and streams tokens, only when its output loop catches up, often after the run;
  the clients' token times are bursts, not steps.
- mixed steps: the same start, a longer run, and while it decodes a few extra
  requests (one output token, a prompt that fits beside the B decodes) one after
  the other. Each is prefilled in one step beside the B decodes, and its prefill
  time delta (/metrics before it and after it ended) times that step: the read
  after may be answered late, but while the B requests still run (their count
  is checked) it holds that one request. Then the B requests are cancelled.
  A prefill time runs from scheduling to output: it leaves out the engine
  loop's work between steps, which a decode period holds.

Chunked long prompts are measured as their total over all chunks. The first
chunk is an idle prefill of max_num_batched_tokens, measured on its own; the
rest of the total is shared among the later chunks in proportion to what a
first fit (of every one-step point) predicts for each. Those later chunks are
prefill-only steps on a growing context that follow a step at once (periods, as
decode points are).

An idle prefill is the first step after the engine sat idle, and costs more
than the same step in a busy spell: vLLM's engine core and worker busy-poll
their queues for a second after the last message, then sleep on a socket, and
the caches cool (measured on vLLM 0.32 CPU, a 200-token prefill took 2-4 ms
more after 5-200 ms idle and 8 ms more after 2 s than beside a decode). Each
idle prefill carries its idle time as the client sees it (the end of the last
response to the send), wake probes wait set gaps first (WAKE_GAPS_S), and
decode and mixed points are busy: the fit splits the idle prefills' time into
their terms and idle_wake, which the simulator adds to a step after a gap.

The grid runs in a few passes, each in its own shuffled order, after an untimed
warm-up; each probe's requests draw their prompt lengths anew (`_Prober.fresh`)
and give one point: the median time at their mean length. The front-end time per
request (HTTP, the hand-over to the engine core, streaming the first token back)
is what the idle probes' client TTFT holds beyond vLLM's own queue and prefill
time (kairos.probes.front_end).

Last, a load phase of Poisson requests (kairos.probes.load_phase) scales every
fitted coefficient by the factor that makes the replayed mean TPOT the measured
one, and refits the front-end time per request to its mean TTFT: served
traffic runs the probed steps slower, and keeps the front end busier, than an
idle server does.

What the server does not publish comes from the caller: the model's config.json
(vLLM exposes no architecture), max_num_seqs and max_num_batched_tokens.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from kairos.bench.client import CompletionClient, completion_body, normalize_url
from kairos.bench.engine_steps import ENGINE_PATH
from kairos.bench.prompts import random_token_ids
from kairos.bench.server_counters import phase_totals
from kairos.bench.stream import StreamResult
from kairos.calibration.fit import StepTimeFit, fit_step_time
from kairos.calibration.profile import SCHEMA, MeasuredPoint
from kairos.calibration.terms import TERMS, VARLEN, AttentionLayout, idle_wake, term_values
from kairos.engine.batch_shape import BatchShape
from kairos.errors import KairosError
from kairos.probes.front_end import FrontEndSample, fit_front_end
from kairos.probes.load_phase import LOAD_REQUESTS, blackbox_load, fit_under_load, poisson_samples
from kairos.workload import RequestSpec

# A designed grid of medians: relative error (kairos.calibration.fit.fit_step_time's default).
FIT_WEIGHT_POWER = 1.0
# Extra requests a mixed steady-decode probe sends while its B requests decode, one after the other, and
# the most tokens its B requests are asked for (they are cancelled once the extras are measured).
MIXED_PER_WINDOW = 3
MIXED_RUN_STEPS = 3000
POLL_S = 0.02  # between /metrics reads while waiting for the engine
BLOCKER_HEAD_START_S = 0.02
# Idle prefills of each length per pass: they are quick, and one slow spell would decide a single one.
IDLE_REPEATS = 3
DECODE_CONTEXTS = (32, 256, 1024)
# Idle gaps (seconds) before the wake probes: idle prefills of one length after the engine sat idle that
# long. vLLM's engine core and workers busy-poll for a while after their last message, then sleep on a
# socket (1 s in vLLM 0.32's shared-memory queue), and the caches cool: the first step after a gap is
# slower than the same step in a busy spell, by more the longer the gap.
WAKE_GAPS_S = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0)
# Shares of the token budget left beside B decodes that the mixed probes' prompts take, in turn.
MIXED_SHARES = (0.125, 0.25, 0.5, 1.0)
SETTLE_S = 10.0  # longest wait for /metrics to count the finished requests
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


# ---- what the server is ---------------------------------------------------------------


def has_step_log(base_url: str) -> bool:
    """Whether the server is `kairos serve` (it answers GET /kairos/engine); False for any other server."""
    try:
        with urllib.request.urlopen(f"{base_url}{ENGINE_PATH}", timeout=30.0) as response:
            json.loads(response.read())
            return True
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, OSError) as exc:
        raise KairosError(f"cannot reach {base_url}: {getattr(exc, 'reason', exc)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """The served engine: what /v1/models and /metrics say, and what the caller adds."""

    model: str
    max_model_len: int
    model_config: dict[str, Any]
    vocab_size: int
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_gpu_blocks: int | None
    enable_prefix_caching: bool
    server: str  # "vLLM 0.32.0"

    def engine(self) -> dict[str, Any]:
        # vLLM's attention kernels work on variable-length sequences: no padding to count.
        return {"attention": VARLEN, "block_size": self.block_size,
                "max_num_batched_tokens": self.max_num_batched_tokens, "max_num_seqs": self.max_num_seqs,
                "num_gpu_blocks": self.num_gpu_blocks, "enable_prefix_caching": self.enable_prefix_caching}


_PREFILL_SERIES = "vllm:request_prefill_time_seconds"
_CACHE_INFO = re.compile(r"^vllm:cache_config_info\{([^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_HITS = re.compile(r"^vllm:prefix_cache_hits_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_GENERATED = re.compile(r"^vllm:generation_tokens_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_ITL_SERIES = "vllm:inter_token_latency_seconds"
_ITL = re.compile(r"^vllm:inter_token_latency_seconds_(sum|count)(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_RUNNING = re.compile(r"^vllm:num_requests_running(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_WAITING = re.compile(r"^vllm:num_requests_waiting(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_ITERATIONS = re.compile(r"^vllm:iteration_tokens_total_count(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
_TTFT = re.compile(r"^vllm:time_to_first_token_seconds_count(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
METRICS_SAMPLES = tuple(f"vllm:{name}" for name in (
    "request_prefill_time_seconds_sum", "request_prefill_time_seconds_count", "request_queue_time_seconds_sum",
    "request_queue_time_seconds_count", "inter_token_latency_seconds_sum", "inter_token_latency_seconds_count",
    "time_to_first_token_seconds_count", "prefix_cache_hits_total", "generation_tokens_total",
    "iteration_tokens_total_count", "num_requests_running", "num_requests_waiting"))
METRICS_QUERY = "/metrics/?" + "&".join(f"name%5B%5D={name}" for name in METRICS_SAMPLES)


def metric_totals(metrics_text: str) -> dict[str, float]:
    """What the probes read off vLLM's /metrics, summed over label sets: the queue and prefill time
    histograms' sums and counts (kairos.bench.server_counters.phase_totals), the inter-token latency
    histogram's (`itl_sum`, `itl_count`), the time-to-first-token histogram's count (`ttft_count`),
    steps that made outputs (`iterations`, vllm:iteration_tokens_total's count), prefix-cache hits
    (`hits`), generated tokens (`gen`) and the requests running and waiting now."""
    totals = phase_totals(metrics_text)
    totals.update(itl_sum=0.0, itl_count=0.0)
    for series, value in _ITL.findall(metrics_text):
        totals[f"itl_{series}"] += float(value)
    totals["hits"] = sum(float(v) for v in _HITS.findall(metrics_text))
    totals["gen"] = sum(float(v) for v in _GENERATED.findall(metrics_text))
    totals["ttft_count"] = sum(float(v) for v in _TTFT.findall(metrics_text))
    totals["iterations"] = sum(float(v) for v in _ITERATIONS.findall(metrics_text))
    totals["running"] = sum(float(v) for v in _RUNNING.findall(metrics_text))
    totals["waiting"] = sum(float(v) for v in _WAITING.findall(metrics_text))
    return totals


def cache_config(metrics_text: str) -> dict[str, str]:
    """The labels of vLLM's `vllm:cache_config_info` gauge (block_size, num_gpu_blocks, ...); {} without it."""
    found = _CACHE_INFO.search(metrics_text)
    return dict(_LABEL.findall(found.group(1))) if found else {}


def read_model_config(path: str | Path | None, base_url: str) -> dict[str, Any]:
    """The served model's config.json; a one-line KairosError when it is not given or not usable."""
    if path is None:
        raise KairosError(f"{base_url} keeps no step log (not `kairos serve`): calibrating it from outside "
                          "needs --model-config PATH/config.json, the served model's config (vLLM does not "
                          "publish the architecture)")
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise KairosError(f"--model-config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KairosError(f"--model-config {path}: cannot read a JSON config: {exc}") from None
    if not isinstance(config, dict):
        raise KairosError(f"--model-config {path}: not a JSON object")
    vocab = config.get("vocab_size", (config.get("text_config") or {}).get("vocab_size"))
    if not isinstance(vocab, int) or vocab < 2:
        raise KairosError(f"--model-config {path}: no vocab_size (is it a Hugging Face config.json?)")
    return config


async def server_facts(client: CompletionClient, base_url: str, model_config: dict[str, Any],
                       max_num_seqs: int | None, max_num_batched_tokens: int | None,
                       block_size: int | None = None) -> ServerFacts:
    """What the calibration needs to know about the server; a one-line KairosError for anything missing."""
    info = await client.probe()
    if not info.model_ids:
        raise KairosError(f"{base_url}/v1/models lists no model: is it an OpenAI-compatible server?")
    model = info.model_ids[0]
    entry = info.model_entry(model)
    max_len = entry.get("max_model_len") or model_config.get("max_position_embeddings")
    if not isinstance(max_len, int) or max_len < 2:
        raise KairosError(f"{base_url}/v1/models gives no max_model_len for '{model}' and the model config "
                          "no max_position_embeddings")
    text = await client.get_text("/metrics")
    if text is None:
        raise KairosError(f"{base_url}/metrics did not answer: calibrating a server without a step log needs "
                          "vLLM's Prometheus metrics (is it vLLM, started without --disable-log-stats?)")
    for series in (_PREFILL_SERIES, _ITL_SERIES):
        if series not in text:
            raise KairosError(f"{base_url}/metrics has no {series}: calibrating a server without a step "
                              "log needs vLLM's engine timings")
    cache = cache_config(text)
    served_block = _int_label(cache, "block_size")
    if served_block is not None and block_size is not None and served_block != block_size:
        raise KairosError(f"--block-size {block_size}, but {base_url} runs blocks of {served_block} tokens")
    block = served_block or block_size
    if block is None:
        raise KairosError(f"{base_url}/metrics has no vllm:cache_config_info block_size: pass --block-size")
    missing = [name for name, value in (("--max-num-seqs", max_num_seqs),
                                        ("--max-num-batched-tokens", max_num_batched_tokens)) if value is None]
    if missing:
        raise KairosError(f"{base_url} does not publish its scheduler limits: pass {' and '.join(missing)} "
                          "as the server was started with")
    assert max_num_seqs is not None and max_num_batched_tokens is not None
    vocab = model_config.get("vocab_size", (model_config.get("text_config") or {}).get("vocab_size"))
    server = f"vLLM {info.version}" if info.version else "an OpenAI-compatible server"
    return ServerFacts(model, int(max_len), model_config, int(vocab), max_num_seqs, max_num_batched_tokens,
                       block, _int_label(cache, "num_gpu_blocks"),
                       cache.get("enable_prefix_caching", "False") == "True", server)


def _int_label(labels: dict[str, str], key: str) -> int | None:
    value = labels.get(key, "")
    return int(value) if value.isdigit() else None


# ---- the grid of probes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdlePrefill:
    """One request of `prompt` tokens alone on an idle engine, one output token; with `cached`,
    a request of `cached` tokens first, whose prompt this one's starts with. With `gap_s`, sent
    once the engine has been idle that long (else as soon as the previous probe is read)."""

    prompt: int
    cached: int = 0
    gap_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SteadyDecode:
    """`batch` requests of `prefix` + `suffix` prompt tokens and `output` tokens that the engine starts in
    one step: they queue behind `blockers` long prefills, each prompt starts with a `prefix` of its own
    that the prefix cache holds (prefilled beforehand) and their suffixes fit in one step together.
    With `extras`, that many requests of `extra` prompt tokens and one output token join while they
    decode, each prefilled beside them."""

    batch: int
    prefix: int
    suffix: int
    output: int
    blockers: int
    extra: int = 0
    extras: int = 0

    @property
    def prompt(self) -> int:
        return self.prefix + self.suffix


Probe = IdlePrefill | SteadyDecode


def calibration_grid(facts: ServerFacts, quick: bool = False) -> list[Probe]:
    """The probes of one pass: idle prefills over prompt lengths (up to the step's token budget, a few
    longer ones prefilled in chunks, a few on cached context) and steady decodes over batch sizes and
    contexts, most with a mixed step."""
    budget, max_len, seqs = facts.max_num_batched_tokens, facts.max_model_len, facts.max_num_seqs
    lens = sorted({n for n in (16, 64, budget // 4, budget // 2, 3 * budget // 4, budget)
                   if 1 <= n <= min(budget, max_len - 1)})
    long = [n for n in (2 * budget, 4 * budget) if n <= min(max_len - 1, 16384)]
    block = facts.block_size
    cached: list[tuple[int, int]] = []
    if facts.enable_prefix_caching:
        for context, new in ((budget, budget // 4), (2 * budget, budget // 2), (budget // 2, budget)):
            context = context // block * block
            if context and 1 <= new <= budget and context + new <= max_len - 1:
                cached.append((context, new))
    batches = sorted({n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if n <= seqs} | {seqs})
    contexts = [p for p in DECODE_CONTEXTS if p < max_len]
    if quick:
        lens = lens[::2] if len(lens) > 3 else lens
        long, cached = long[:1], cached[:1]
        batches = sorted({batches[0], batches[len(batches) // 2], batches[-1]})
        contexts = contexts[:2]
    probes: list[Probe] = [IdlePrefill(n) for n in lens + long] * IDLE_REPEATS
    probes += [IdlePrefill(context + new, context) for context, new in cached] * IDLE_REPEATS
    wake_prompt = max(1, min(budget // 4, max_len - 1))
    probes += [IdlePrefill(wake_prompt, gap_s=gap) for gap in (WAKE_GAPS_S[1::2] if quick else WAKE_GAPS_S)]
    blocker = min(8, (max_len - 1) // budget) * budget
    capacity = (facts.num_gpu_blocks or 1 << 30) * block
    cell = 0
    for batch in batches:
        for context in contexts:
            split = lockstep_prompt(context, batch, budget, block, facts.enable_prefix_caching)
            if split is None or blocker == 0:
                continue
            prefix, suffix = split
            output = decode_steps(batch)
            blockers = 1 if batch < 16 else 2
            # KV tokens each request may hold (its own prefix included) beside the blockers'.
            room_each = min(max_len - 1, (capacity - blockers * blocker) // batch - block)
            if prefix + suffix + output > room_each:
                continue
            probes.append(SteadyDecode(batch, prefix, suffix, output, blockers))
            room = min(budget - batch, max_len - 1)
            # A long run: the extras' /metrics reads may be answered late (see _Prober.mixed).
            long_output = min(room_each - prefix - suffix, MIXED_RUN_STEPS)
            if batch < seqs and room >= 16 and long_output >= output:
                extra = max(16, int(room * MIXED_SHARES[cell % len(MIXED_SHARES)]))
                probes.append(SteadyDecode(batch, prefix, suffix, long_output, blockers, min(extra, room),
                                           MIXED_PER_WINDOW))
            cell += 1
    return probes


def lockstep_prompt(context: int, batch: int, budget: int, block: int, prefix_caching: bool
                    ) -> tuple[int, int] | None:
    """(cached prefix, own suffix) of `batch` prompts of about `context` tokens whose suffixes the engine
    prefills in one step together (batch x suffix <= budget); None where that cannot be."""
    most = budget // batch
    if most < 1:
        return None
    if context <= most:
        return 0, context
    if not prefix_caching:
        return None
    return max(block, context // block * block), min(most, block)


def decode_steps(batch: int) -> int:
    """Output tokens of a steady-decode probe: more where steps are short, so that what the engine does
    around the run weighs little."""
    return max(48, 192 // batch)


# ---- observations ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrefillObs:
    """An idle prefill: `new` tokens on `ctx` cached ones, prefilled in `chunks` steps in `time_s`."""

    new: int
    ctx: int
    chunks: int
    time_s: float
    front_end: FrontEndSample
    idle_s: float = 0.0  # how long the engine had been idle when the request was sent (the client's view)
    gap_s: float = 0.0  # the probe's designed gap (0: sent as soon as the previous probe was read)
    nominal: int = 0  # the probe's uncached length before IdlePrefill's draw (its points' group); 0: `new`


@dataclass(frozen=True, slots=True)
class DecodeObs:
    """A steady-decode run: `steps` decode steps of `batch` requests took `total_s` in all (the sum of
    each request's inter-token latencies over the batch)."""

    batch: int
    prompt: int
    output: int
    total_s: float
    steps: int


@dataclass(frozen=True, slots=True)
class MixedObs:
    """The step that prefilled `new` tokens (on `ctx`) beside `batch` decodes: vLLM's prefill time of the
    request, from scheduling it to its first token, in the engine core."""

    batch: int
    prompt: int
    new: int
    ctx: int
    kv_sum: int
    kv_max: int
    time_s: float
    nominal: int = 0  # the probe's extra length before the draw (its points' group); 0: `new`


@dataclass(slots=True)
class Observations:
    prefills: list[PrefillObs] = field(default_factory=list)
    decodes: list[DecodeObs] = field(default_factory=list)
    mixed: list[MixedObs] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---- calibration ----------------------------------------------------------------------


def calibrate_blackbox(base_url: str, *, model_config: str | Path | None, max_num_seqs: int | None,
                       max_num_batched_tokens: int | None, block_size: int | None = None, quick: bool = False,
                       passes: int = 3, load_requests: int = LOAD_REQUESTS, seed: int = 0, timeout_s: float = 300.0,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Probe a server without a step log (vLLM) and return its calibration profile (kairos.calibration.profile).

    `passes` runs of the grid are timed (one with `quick`, which also skips the warm-up); then a load
    phase of `load_requests` Poisson requests (a third with `quick`; 0: none) scales the probes' fit
    to served traffic (kairos.probes.load_phase).
    """
    if passes < 1:
        raise KairosError(f"calibration passes must be >= 1, got {passes}")
    if load_requests < 0:
        raise KairosError(f"calibration load requests must be >= 0, got {load_requests}")
    base_url = normalize_url(base_url)
    config = read_model_config(model_config, base_url)
    return asyncio.run(_calibrate(base_url, config, max_num_seqs, max_num_batched_tokens, block_size, quick,
                                  1 if quick else passes, load_requests // 3 if quick else load_requests,
                                  seed, timeout_s, progress))


async def _calibrate(base_url: str, config: dict[str, Any], max_num_seqs: int | None,
                     max_num_batched_tokens: int | None, block_size: int | None, quick: bool, passes: int,
                     load_requests: int, seed: int, timeout_s: float,
                     progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    async with _Client(base_url, timeout_s=timeout_s) as client:
        facts = await server_facts(client, base_url, config, max_num_seqs, max_num_batched_tokens, block_size)
        grid = calibration_grid(facts, quick)
        decodes = [p for p in grid if isinstance(p, SteadyDecode)]
        if not decodes:
            raise KairosError(f"no steady-decode probe fits {base_url}'s max_model_len {facts.max_model_len} "
                              f"and KV cache ({facts.num_gpu_blocks} blocks of {facts.block_size})")
        warmup: list[Probe] = [] if quick else [IdlePrefill(facts.max_num_batched_tokens), decodes[0]]
        timed = [grid[i] for _ in range(passes) for i in rng.permutation(len(grid))]
        total = len(warmup) + len(timed) + (1 if load_requests else 0)
        prober = _Prober(client, facts, rng)
        for done, probe in enumerate(warmup):
            await prober.run(probe, Observations())
            if progress is not None:
                progress(done + 1, total)
        seen = Observations()
        for done, probe in enumerate(timed):
            await prober.run(probe, seen)
            if progress is not None:
                progress(len(warmup) + done + 1, total)
        profile = build_profile(base_url, facts, seen, passes=passes, probes=len(timed), warmup=len(warmup),
                                quick=quick, wall_time_s=time.perf_counter() - started)
        if load_requests:
            load, rate = blackbox_load(rng, profile, facts.vocab_size, facts.max_model_len, load_requests)
            samples = await poisson_samples(client, load, prober.body)
            profile = fit_under_load(profile, {**facts.engine(), "max_model_len": facts.max_model_len},
                                     samples, rate)
            if progress is not None:
                progress(total, total)
    profile["measurement"]["wall_time_s"] = time.perf_counter() - started
    return profile


class _Client(CompletionClient):
    """A CompletionClient that sends a request again when the server closed a kept-alive connection
    under it (aiohttp's pool and uvicorn's keep-alive race on a busy machine), and also completes
    without streaming."""

    metrics_path = ""  # where /metrics answers with only the series the probes read ("": not known yet)

    async def stream(self, body: dict[str, Any]) -> StreamResult:
        result = await super().stream(body)
        if result.error is not None and result.error.startswith("disconnected") and not result.token_ts:
            result = await super().stream(body)
        return result

    async def complete(self, body: dict[str, Any]) -> str | None:
        """POST one completion that is not streamed; what went wrong, or None."""
        error = await self._complete(body)
        if error is not None and error.startswith("ServerDisconnectedError"):
            error = await self._complete(body)
        return error

    async def _complete(self, body: dict[str, Any]) -> str | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http.post(f"{self.base_url}/v1/completions", json=body) as response:
                    content = await response.read()
        except TimeoutError:
            return f"timeout after {self.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status >= 400:
            return f"HTTP {response.status}: {content[:200].decode(errors='replace')}"
        return None


class _Prober:
    def __init__(self, client: _Client, facts: ServerFacts, rng: np.random.Generator) -> None:
        self.client, self.facts, self.rng = client, facts, rng
        # When the engine last had work, as the client saw it: the end of the last response.
        self.busy_until = time.monotonic()

    def fresh(self, n: int) -> int:
        """A prompt length of up to an eighth under `n`, drawn anew for each request: served prompt lengths
        rarely repeat, and vLLM on CPU prefills a length it has just run 10-20 % faster than a new one
        (its per-shape kernel state), so a grid of repeated lengths would time a faster engine than the
        one traffic meets. Whole chunks stay whole: every long prompt's chunks are that long."""
        if n >= self.facts.max_num_batched_tokens:
            return n
        return n - int(self.rng.integers(0, n // 8 + 1))

    def tokens(self, n: int) -> list[int]:
        return random_token_ids(self.rng, self.facts.vocab_size, n)

    def body(self, prompt: list[int], output: int, stream: bool = True) -> dict[str, Any]:
        """The request `kairos bench` sends, or the same not streamed (the decode probes': their tokens
        need not reach the client, and streamed they keep vLLM's API server busy on the engine core's CPU)."""
        body = completion_body(RequestSpec("calibration", 0.0, len(prompt), output), self.facts.model, prompt,
                               exact_lengths=True)
        if not stream:
            body["stream"] = False
            del body["stream_options"]
        return body

    async def run(self, probe: Probe, seen: Observations) -> None:
        if isinstance(probe, IdlePrefill):
            await self.idle_prefill(probe, seen)
        else:
            await self.steady_decode(probe, seen)

    async def metrics(self) -> dict[str, float]:
        """The totals the probes read; through prometheus_client's `name[]` filter where the server takes
        it (vLLM does, at /metrics/): a tenth of the whole page's time, on the API server's CPU."""
        if not self.client.metrics_path:
            text = await self.client.get_text(METRICS_QUERY)
            self.client.metrics_path = METRICS_QUERY if text and _ITL_SERIES in text else "/metrics"
        text = await self.client.get_text(self.client.metrics_path)
        if text is None or _PREFILL_SERIES not in text:
            raise KairosError(f"{self.client.base_url}/metrics stopped answering with {_PREFILL_SERIES}")
        return metric_totals(text)

    async def settled(self, before: dict[str, float], finished: int) -> dict[str, float]:
        """/metrics once it counts `finished` more requests than `before` (vLLM observes a request's
        prefill time when it ends), or after SETTLE_S."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            after = await self.metrics()
            if after["prefill_count"] - before["prefill_count"] >= finished or time.monotonic() > deadline:
                return after
            await asyncio.sleep(POLL_S)

    def check(self, result: StreamResult) -> None:
        if result.error is not None or result.first_token_ts is None:
            raise KairosError(f"{self.client.base_url}: a calibration request failed: {result.error or 'no tokens'}")

    async def one_idle(self, prompt: list[int], gap_s: float = 0.0) -> tuple[StreamResult, dict[str, float]]:
        """One request alone, sent once the engine has been idle `gap_s`; the /metrics deltas it caused."""
        before = await self.metrics()
        await asyncio.sleep(max(0.0, self.busy_until + gap_s - time.monotonic()))
        result = await self.client.stream(self.body(prompt, 1))
        self.check(result)
        self.busy_until = result.token_ts[-1]
        after = await self.settled(before, 1)
        if after["prefill_count"] - before["prefill_count"] != 1:
            raise KairosError(f"{self.client.base_url} served other requests during calibration: "
                              "calibrate a server nothing else is using")
        return result, {key: after[key] - before[key] for key in after}

    async def idle_prefill(self, probe: IdlePrefill, seen: Observations) -> None:
        prompt = self.tokens(self.fresh(probe.prompt - probe.cached))
        if probe.cached:
            seed = self.tokens(probe.cached)
            # The seed is an idle prefill of its own.
            idle_since = self.busy_until
            self.record_idle(seed, idle_since, *await self.one_idle(seed), seen, probe.cached)
            prompt = seed + prompt
        idle_since = self.busy_until
        self.record_idle(prompt, idle_since, *await self.one_idle(prompt, probe.gap_s), seen,
                         probe.prompt - probe.cached, probe.gap_s)

    def record_idle(self, prompt: list[int], idle_since: float, result: StreamResult, delta: dict[str, float],
                    seen: Observations, nominal: int, gap_s: float = 0.0) -> None:
        ctx = int(round(delta["hits"]))
        new = len(prompt) - ctx
        chunks = -(-new // self.facts.max_num_batched_tokens)
        engine_s = delta["prefill_sum"] + delta["queue_sum"]
        sample = FrontEndSample(len(prompt), result.first_token_ts - result.sent_ts, engine_s)  # type: ignore[operator]
        if delta["prefill_sum"] <= 0:
            seen.skipped.append(f"idle prefill of {len(prompt)} tokens: no prefill time")
            return
        seen.prefills.append(PrefillObs(new, ctx, chunks, delta["prefill_sum"], sample,
                                        max(0.0, result.sent_ts - idle_since), gap_s, nominal))

    async def steady_decode(self, probe: SteadyDecode, seen: Observations) -> None:
        """The first request's prefix alone (an idle prefill of its own), the others' together (untimed),
        then the blockers, the B requests (not streamed) and the extras; /metrics before the blockers and
        once everything ended.

        Only totals are read, after the run: while the engine turns out a token every millisecond or
        two, vLLM's API server on a busy core answers /metrics (and streams) only when its output loop
        catches up, often after the run. vLLM's per-iteration counts check what the run was: one step
        with outputs per blocker and `output` steps for the B requests together, the extras inside them."""
        batch = probe.batch
        where = f"steady decode of {batch} x {probe.prompt} tokens"
        prefixes = [self.tokens(probe.prefix) for _ in range(batch)]
        if probe.prefix:
            idle_since = self.busy_until
            self.record_idle(prefixes[0], idle_since, *await self.one_idle(prefixes[0]), seen, probe.prefix)
            await self.cache(prefixes[1:])
        start = await self.metrics()
        blocker = min(8, (self.facts.max_model_len - 1) // self.facts.max_num_batched_tokens)
        blockers = [asyncio.ensure_future(self.client.complete(self.body(
            self.tokens(blocker * self.facts.max_num_batched_tokens), 1, stream=False)))
            for _ in range(probe.blockers)]
        await asyncio.sleep(BLOCKER_HEAD_START_S)  # the blockers reach the engine first
        bodies = [self.body(prefix + self.tokens(probe.suffix), probe.output, stream=False) for prefix in prefixes]
        decoders = [asyncio.ensure_future(self.client.complete(body)) for body in bodies]
        if probe.extras:
            await self.mixed(probe, start, blockers, decoders, seen)
            return
        failed = next((e for e in await asyncio.gather(*blockers, *decoders) if e is not None), None)
        self.busy_until = time.monotonic()
        if failed is not None:
            raise KairosError(f"{self.client.base_url}: a calibration request failed: {failed}")
        end = await self.settled(start, probe.blockers + batch)
        delta = {key: end[key] - start[key] for key in end}
        expected = {"iterations": probe.blockers + probe.output, "itl_count": batch * (probe.output - 1),
                    "prefill_count": probe.blockers + batch, "hits": batch * probe.prefix}
        wrong = [f"{key} {delta[key]:g} (not {value})" for key, value in expected.items() if delta[key] != value]
        if wrong:
            seen.skipped.append(f"{where}: not one run ({', '.join(wrong)})")
            return
        seen.decodes.append(DecodeObs(batch, probe.prompt, probe.output, delta["itl_sum"] / batch, probe.output - 1))

    async def cache(self, prompts: Sequence[list[int]]) -> None:
        """Prefill `prompts` (together, untimed) so that the prefix cache holds them, and wait until the
        engine is idle again."""
        if not prompts:
            return
        failed = next((e for e in await asyncio.gather(*(self.client.complete(self.body(prompt, 1, stream=False))
                                                            for prompt in prompts)) if e is not None), None)
        if failed is not None:
            raise KairosError(f"{self.client.base_url}: a calibration request failed: {failed}")
        await self.idle()
        self.busy_until = time.monotonic()

    async def mixed(self, probe: SteadyDecode, start: dict[str, float], blockers: list[asyncio.Future],
                    decoders: list[asyncio.Future], seen: Observations) -> None:
        """The extras, one at a time, once the B requests decode: /metrics before each and after it ended;
        its prefill time delta is the mixed step's (the read after may come late, but while the B requests
        still run it holds that one request). Then the B requests are cancelled (vLLM aborts them)."""
        batch = probe.batch
        where = f"mixed step of {probe.extra} tokens beside {batch} decodes"
        try:
            failed = next((e for e in await asyncio.gather(*blockers) if e is not None), None)
            if failed is not None:
                raise KairosError(f"{self.client.base_url}: a calibration request failed: {failed}")
            before = await self.metrics()
            for _ in range(probe.extras):
                if any(d.done() for d in decoders):
                    break
                new = self.fresh(probe.extra)
                extra = await self.client.stream(self.body(self.tokens(new), 1))
                self.check(extra)
                after = await self.settled(before, 1)
                delta = {key: after[key] - before[key] for key in after}
                # Tokens each B request holds beyond its prompt (the blockers made one each).
                held = ((before["gen"] + after["gen"]) / 2 - start["gen"] - probe.blockers) / batch
                if delta["prefill_count"] != 1:
                    seen.skipped.append(f"{where}: a B request ended before the extra's prefill time was read")
                    break
                # The extra's prompt is random: nothing of it is cached (the hits counter is no help here: the
                # API server may count the B requests' hits late, inside this delta).
                kv = round(probe.prompt + held)
                seen.mixed.append(MixedObs(batch, probe.prompt, new, 0, batch * kv, kv, delta["prefill_sum"],
                                           probe.extra))
                before = after
        finally:
            for request in (*blockers, *decoders):
                request.cancel()
            await asyncio.gather(*blockers, *decoders, return_exceptions=True)
        await self.idle()
        # The aborts land during the wait: the next probe's idle time is counted from its end, a lower bound.
        self.busy_until = time.monotonic()

    async def idle(self) -> None:
        """Wait until the engine runs nothing and /metrics stopped moving (aborted requests are counted
        a little after their connections close)."""
        deadline = time.monotonic() + SETTLE_S
        last = await self.metrics()
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            now = await self.metrics()
            if now["running"] == 0 and now["waiting"] == 0 and now == last:
                return
            last = now


# ---- points and fit -------------------------------------------------------------------


def _point(kind: str, shape: BatchShape, times: Sequence[float], idle_s: Sequence[float] = ()) -> MeasuredPoint:
    return MeasuredPoint(kind, shape, float(np.median(times)), tuple(float(t) for t in times),
                         float(np.median(idle_s)) if idle_s else 0.0)


def _mean(values: Sequence[int]) -> int:
    return round(float(np.mean(values)))


def measured_points(seen: Observations) -> tuple[list[MeasuredPoint], dict[int, list[float]]]:
    """One point per probe (the median over its requests, at their mean length) of the one-step observations, and the chunked idle
    prefills' total times by prompt length. A decode point's KV lengths are those of its run's middle step."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    idle: dict[tuple, list[float]] = defaultdict(list)
    chunked: dict[int, list[float]] = defaultdict(list)
    kv: dict[tuple, list[int]] = defaultdict(list)
    news: dict[tuple, list[int]] = defaultdict(list)  # the drawn lengths behind each group
    for p in seen.prefills:
        if p.chunks > 1:
            if p.ctx == 0:
                chunked[p.new].append(p.time_s)
            continue
        key = ("prefill", p.nominal or p.new, p.ctx, p.gap_s)
        groups[key].append(p.time_s)
        idle[key].append(p.idle_s)
        news[key].append(p.new)
    for d in seen.decodes:
        groups[("decode", d.batch, d.prompt, d.output)].append(d.total_s / d.steps)
    for m in seen.mixed:
        key = ("mixed", m.batch, m.prompt, m.nominal or m.new, m.ctx)
        groups[key].append(m.time_s)
        kv[key].append(m.kv_max)
        news[key].append(m.new)
    points = []
    for key, times in groups.items():
        if key[0] == "prefill":
            shape = BatchShape((_mean(news[key]),), (key[2],), 0, 0, 1)
            points.append(_point("prefill", shape, times, idle[key]))
        elif key[0] == "decode":
            _, batch, prompt, output = key
            longest = prompt + output // 2  # each request's KV length in the run's middle step
            points.append(_point("decode", BatchShape((), (), batch, batch * longest, batch, longest), times))
        else:
            _, batch, prompt, _, ctx = key
            longest = _mean(kv[key])
            points.append(_point("mixed", BatchShape((_mean(news[key]),), (ctx,), batch, batch * longest,
                                                     batch + 1, longest), times))
    return points, dict(chunked)


def chunk_shapes(prompt: int, budget: int) -> list[BatchShape]:
    """The steps that prefill `prompt` uncached tokens alone in chunks of `budget`."""
    shapes = []
    for start in range(0, prompt, budget):
        new = min(budget, prompt - start)
        shapes.append(BatchShape((new,), (start,), 0, 0, 1 if start + new == prompt else 0))
    return shapes


def chunk_points(chunked: dict[int, list[float]], first_s: float, budget: int, coefficients: dict[str, float],
                 layout: AttentionLayout) -> tuple[list[MeasuredPoint], list[str]]:
    """The busy chunk steps of each chunked prefill: its total less the first chunk's `first_s` (an idle
    prefill of `budget` tokens, measured on its own), shared among the others as `coefficients` predict
    them: prefill-only steps that follow a step at once."""
    coef = np.array([coefficients[t] for t in TERMS])
    points: list[MeasuredPoint] = []
    skipped: list[str] = []
    for prompt, totals in sorted(chunked.items()):
        busy = chunk_shapes(prompt, budget)[1:]
        rest = [total - first_s for total in totals]
        if float(np.median(rest)) <= 0:
            skipped.append(f"chunked prefill of {prompt} tokens: took no longer than its first chunk alone")
            continue
        predicted = np.array([float(np.dot(term_values(s, 0.0, layout), coef)) for s in busy])
        shares = predicted / predicted.sum() if predicted.sum() > 0 else np.full(len(busy), 1 / len(busy))
        for shape, share in zip(busy, shares):
            points.append(_point("prefill_chunk", shape, [r * share for r in rest]))
    return points, skipped


def fit_points(points: list[MeasuredPoint], chunked: dict[int, list[float]], budget: int,
               layout: AttentionLayout) -> tuple[StepTimeFit, list[MeasuredPoint], list[str]]:
    """Fit the one-step points, share the chunked prefills' later chunks by that fit, and fit everything."""
    if len(points) < len(TERMS):
        raise KairosError(f"the calibration measured {len(points)} step shapes, fewer than the {len(TERMS)} "
                          "terms to fit: drop --quick, or check the server's limits")
    first = fit_step_time(points, weight_power=FIT_WEIGHT_POWER, layout=layout)
    whole = next((p for p in points if p.kind == "prefill" and p.shape.prefill_new == (budget,)
                  and p.shape.prefill_ctx == (0,)), None)
    if not chunked or whole is None:
        return first, points, [] if not chunked else ["chunked prefills: no idle prefill of one whole chunk"]
    chunks, skipped = chunk_points(chunked, whole.time_s, budget, first.coefficients, layout)
    everything = points + chunks
    return fit_step_time(everything, weight_power=FIT_WEIGHT_POWER, layout=layout), everything, skipped


def errors_by_kind(points: Sequence[MeasuredPoint], fit: StepTimeFit,
                   layout: AttentionLayout) -> dict[str, dict[str, float | int]]:
    """Per kind of point: how many, and the median and worst |error| % of the fit on them."""
    coef = np.array([fit.coefficients[t] for t in TERMS])
    errors: dict[str, list[float]] = defaultdict(list)
    for p in points:
        wake = idle_wake(p.idle_s, fit.idle_time_constant_s)
        predicted = float(np.dot(term_values(p.shape, wake, layout), coef))
        errors[p.kind].append(abs(predicted / p.time_s - 1) * 100)
    return {kind: {"points": len(e), "median_abs_error_pct": float(np.median(e)),
                   "max_abs_error_pct": float(max(e))} for kind, e in sorted(errors.items())}


def build_profile(base_url: str, facts: ServerFacts, seen: Observations, *, passes: int, probes: int, warmup: int,
                  quick: bool, wall_time_s: float) -> dict[str, Any]:
    """The calibration profile of what the probes saw (kairos.calibration.profile's schema)."""
    budget = facts.max_num_batched_tokens
    layout = AttentionLayout.of_engine(facts.engine())
    points, chunked = measured_points(seen)
    fit, points, skipped = fit_points(points, chunked, budget, layout)
    front = [p.front_end for p in seen.prefills]
    request_s, per_token_s = fit_front_end(front) if front else (0.0, 0.0)
    warnings = []
    decode_probes = sum(1 for line in seen.skipped if line.startswith("steady decode"))
    if decode_probes and decode_probes * 3 > len(seen.decodes) + decode_probes:
        warnings.append(f"{decode_probes} steady-decode probes did not run as one batch (the server took "
                        "the requests in more slowly than its blockers kept the engine busy: a busy machine?)")
    dtype = str(facts.model_config.get("torch_dtype") or "")
    profile: dict[str, Any] = {
        "schema": SCHEMA,
        "model": facts.model,
        "model_config": facts.model_config,
        "dtype": dtype or None,
        "dtype_bytes": DTYPE_BYTES.get(dtype, 2),
        "device": base_url,
        "device_name": facts.server,
        "torch_threads": None,
        "engine": facts.engine(),
        "measurement": {
            "method": "black-box",
            "server": facts.server,
            "timed": {
                "prefill": "idle single requests, one output token: the delta of vLLM's "
                           "vllm:request_prefill_time_seconds_sum (scheduled to first token, in the engine core) "
                           "over the request; prefill_ctx from vllm:prefix_cache_hits_total's delta",
                "prefill_chunk": "an idle prompt longer than max_num_batched_tokens: its prefill time less an "
                                 "idle one-chunk prefill's, shared among its later (busy) chunk steps as a fit "
                                 "of the one-step points predicts them",
                "decode": "B requests (not streamed) that the engine starts in one step: they queue behind "
                          "long prefills, each has a cached prompt prefix of its own and their suffixes fit one step; "
                          "the delta of vllm:inter_token_latency_seconds_sum over the run (engine timestamps) "
                          "/ B / (output - 1) steps, checked by vllm:iteration_tokens_total's count "
                          "(one step with outputs per token); KV lengths at the run's middle step",
                "mixed": "extra requests (one output token) sent one at a time while such a run decodes: "
                         "each one's vllm:request_prefill_time_seconds delta, the one step that prefilled it "
                         "beside the B decodes, from scheduling to output (without the engine loop's work "
                         "between steps that a decode period holds)",
            },
            "passes": passes, "probes": probes, "warmup_probes": warmup,
            "grid": "quick" if quick else "default",
            "fit": f"least squares, errors weighted by fitted step time ** -{FIT_WEIGHT_POWER:g}; "
                   f"attention terms: {VARLEN} (exact pairs and KV lengths)",
            "idle": "each idle prefill's idle time is the client's: from the end of the last response to the "
                    "request's send (the front end's time in and out roughly cancel); wake probes wait "
                    f"{', '.join(f'{g:g}' for g in WAKE_GAPS_S)} s first; steady decodes and mixed steps "
                    "are busy (idle 0), so idle_wake is what an idle prefill costs beyond a busy one",
            "front_end": {"request_s": request_s, "per_input_token_s": per_token_s, "samples": len(front),
                          "how": "idle probes' client TTFT less vLLM's queue and prefill time "
                                 "(kairos.probes.front_end.fit_front_end); the simulation "
                                 "adds request_s + per_input_token_s x prompt tokens"},
            "skipped": seen.skipped + skipped,
            "warnings": warnings,
            "wall_time_s": wall_time_s,
        },
        "terms": list(TERMS),
        "coefficients": fit.coefficients,
        "fit": fit.errors(),
        "fit_by_kind": errors_by_kind(points, fit, layout),
        "idle_time_constant_s": fit.idle_time_constant_s,
        "request_latency_s": request_s,
        "request_latency_per_input_token_s": per_token_s,
        "points": [p.to_dict() for p in points],
    }
    return profile
