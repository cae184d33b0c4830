"""EngineRunner: a real engine (scheduler, KV cache, torch executor) behind a small synchronous API."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kairos.engine import EngineCore, KVCacheManager, Request, RequestStatus, SchedulerConfig, StepResult
from kairos.engine.batch_shape import BatchShape
from kairos.engine.policies import make_waiting_queue, policy_predictor
from kairos.errors import KairosError
from kairos.predict import OutputPredictor
from kairos.serve.cpu_tuning import tune_malloc
from kairos.serve.executor import TorchExecutor
from kairos.serve.kv_pool import allocate_kv_pool, default_kv_memory, num_blocks_for_memory
from kairos.serve.loader import LoadedModel
from kairos.serve.native.select import LAYOUT_NAMES, select_attention
from kairos.serve.native.varlen import allocate_native_pool
from kairos.serve.request_class import ServedClass
from kairos.serve.sampler import GREEDY, Sampler, SamplingParams
from kairos.serve.tokenizer import Tokenizer
from kairos.workload.spec import RequestSpec


@dataclass(frozen=True)
class RunnerConfig:
    """Engine limits and KV pool size of one real engine.

    The pool holds `num_blocks` blocks if given, else as many as `kv_cache_memory`
    bytes buy (default: 256 MiB on CPU, most of the free GPU memory). `attention`:
    "native" (the C++ varlen kernels, CPU float32), "sdpa" (padded torch SDPA) or
    "auto" (native where it builds and applies, else SDPA).
    """

    block_size: int = 16
    num_blocks: int | None = None
    kv_cache_memory: int | None = None
    enable_prefix_caching: bool = True
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    policy: str = "fcfs"
    # The policy's and the predictor's knobs as (name, value) pairs: the config stays hashable and picklable.
    policy_options: tuple[tuple[str, Any], ...] = ()
    predictor: str | None = None  # None: histogram for a policy that needs one (as kairos simulate)
    predictor_options: tuple[tuple[str, Any], ...] = ()
    # Run every request to max_tokens even past EOS (benchmarks want fixed lengths).
    ignore_eos: bool = False
    seed: int = 0
    check_invariants: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        # One waiting queue built now makes a bad policy or predictor knob an error before any model loads.
        make_waiting_queue(self.policy, dict(self.policy_options), self.make_predictor())

    def make_predictor(self) -> OutputPredictor | None:
        """The predictor the policy ranks by (the oracle's output length is each request's max_tokens)."""
        return policy_predictor(self.policy, self.predictor, dict(self.predictor_options))


class EngineRunner:
    """Drives one EngineCore with the torch executor; not thread-safe: call it from one thread."""

    def __init__(self, loaded: LoadedModel, config: RunnerConfig = RunnerConfig()) -> None:
        self.loaded = loaded
        self.config = config
        num_blocks = config.num_blocks or num_blocks_for_memory(
            loaded.config, config.block_size,
            config.kv_cache_memory or default_kv_memory(loaded.device), loaded.dtype)
        self.kv = KVCacheManager(num_blocks, config.block_size, config.enable_prefix_caching)
        scheduler = SchedulerConfig(config.max_num_seqs, config.max_num_batched_tokens,
                                    config.enable_chunked_prefill, config.policy,
                                    policy_options=config.policy_options)
        stops = frozenset() if config.ignore_eos else frozenset({loaded.tokenizer.eos_token_id})
        self.engine = EngineCore(scheduler, self.kv, stop_token_ids=stops, check_invariants=config.check_invariants,
                                 predictor=config.make_predictor())
        native = select_attention(config.attention, loaded.device, loaded.dtype)
        if loaded.device.type == "cpu":
            tune_malloc()
        if native is not None:
            pool = allocate_native_pool(loaded.config, num_blocks, config.block_size)
        else:
            pool = allocate_kv_pool(loaded.config, num_blocks, config.block_size, loaded.dtype, loaded.device)
        self.attention = "native" if native is not None else "sdpa"
        self.executor = TorchExecutor(loaded.model, self.kv, pool, Sampler(loaded.device, config.seed), native)
        self._ids = itertools.count()
        self.last_shape = BatchShape()

    @property
    def attention_layout(self) -> str:
        """How attention runs: "varlen" (native kernels, exact contexts) or "padded" (SDPA over padded groups)."""
        return LAYOUT_NAMES[self.attention]

    @property
    def tokenizer(self) -> Tokenizer:
        return self.loaded.tokenizer

    @property
    def max_tokens_per_request(self) -> int:
        """Prompt plus output tokens one request may hold: the whole pool."""
        return self.kv.num_blocks * self.kv.block_size

    def add(self, prompt_ids: Sequence[int], sampling: SamplingParams | None = None, max_tokens: int = 16,
            request_id: str | None = None, priority: int = 0, served: ServedClass | None = None) -> Request:
        """Queue a request; it runs from the next `step`. Raises KairosError for one that can never run.

        `priority` matters under the "priority" policy only: lower values are served first.
        `served` is the rest of its class (tenant, SLO, class name, deadline), for policies that read them.
        """
        prompt = tuple(int(t) for t in prompt_ids)
        vocab = self.loaded.config.vocab_size
        if not prompt:
            raise KairosError("the prompt is empty: give at least one token")
        if max_tokens < 1:
            raise KairosError(f"max_tokens must be at least 1, got {max_tokens}")
        if not all(0 <= t < vocab for t in prompt):
            raise KairosError(f"prompt token ids must be in [0, {vocab})")
        # A request that cannot fit in the whole pool would be preempted forever.
        if len(prompt) + max_tokens > self.max_tokens_per_request:
            raise KairosError(f"prompt ({len(prompt)}) + max_tokens ({max_tokens}) exceeds the KV cache "
                              f"({self.max_tokens_per_request} tokens): shorten it or give the cache more memory")
        budget = self.config.max_num_batched_tokens
        if not self.config.enable_chunked_prefill and len(prompt) + max_tokens > budget:
            # Unchunked, a prompt (or its recompute after preemption) must fit one step's budget.
            raise KairosError(f"prompt ({len(prompt)}) + max_tokens ({max_tokens}) exceeds max_num_batched_tokens "
                              f"({budget}) with chunked prefill disabled")
        now = time.perf_counter()
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        served = served or ServedClass()
        spec = RequestSpec(rid, now, len(prompt), max_tokens, prompt_token_ids=prompt, priority=priority,
                           tenant=served.tenant, slo=served.slo, slo_class=served.slo_class,
                           deadline_s=served.deadline_s)
        req = self.engine.add_request(spec, now)
        self.executor.sampler.add(req.uid, sampling or GREEDY)
        return req

    def has_work(self) -> bool:
        return self.engine.has_work()

    def step(self) -> StepResult:
        """Run one engine step (schedule, forward, sample, update) if anything is queued."""
        if not self.engine.has_work():
            return StepResult()
        out, result = self.engine.step(self.executor, time.perf_counter(), time.perf_counter)
        self.last_shape = out.shape  # what the step computed, for the server's step log
        if out.is_empty and not out.preempted:
            # A step may only preempt (the priority policy can pick the request it was
            # serving); otherwise add() guarantees that an idle pool admits the next request.
            raise RuntimeError("the scheduler found nothing to run although requests are waiting")
        for req in result.finished:
            self.executor.sampler.remove(req.uid)
        return result

    def abort(self, req: Request) -> None:
        """Stop a request wherever it is (waiting or running) and free its KV blocks."""
        self.engine.abort(req, time.perf_counter())
        self.executor.sampler.remove(req.uid)

    @staticmethod
    def output_ids(req: Request) -> list[int]:
        """Tokens generated so far."""
        assert req.token_ids is not None
        return req.token_ids[req.prompt_len:]

    def generate(self, prompts: Sequence[Sequence[int]],
                 sampling: SamplingParams | Sequence[SamplingParams] | None = None,
                 max_tokens: int = 16) -> list[list[int]]:
        """Run `prompts` (token ids) to completion together; returns each one's generated ids."""
        params = sampling if isinstance(sampling, Sequence) else [sampling] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("give one SamplingParams, or one per prompt")
        reqs = [self.add(p, s, max_tokens) for p, s in zip(prompts, params)]
        while any(r.status != RequestStatus.FINISHED for r in reqs):
            self.step()
        return [self.output_ids(r) for r in reqs]
