"""Iteration-level scheduler with vLLM v1 semantics.

Each step has one token budget shared by decodes and prefill chunks. Running
requests are served first, in order, each taking what it still needs to compute
(a decode needs one token; a prefill takes as much of its prompt as the budget
leaves: chunked prefill). A running request that cannot get KV blocks preempts
others (by recompute) until it fits or is itself preempted. Only when nothing
was preempted are waiting requests admitted, in policy order, after looking up
their cached prefix, until the budget, max_num_seqs or the KV cache runs out.

Remote prefill (P/D disaggregation, vLLM's NixlConnector pulling KV): a request
with `remote_prefill` is admitted like any other (same checks, its local prefix
hits counted), but gets blocks for its whole prompt, computes nothing, and
waits for its KV aside (WAITING_FOR_REMOTE_KV) while the queue behind it goes
on; `SchedulerOutput.remote_kv` tells the driver to start the transfer, and
`finish_remote_kv` ends it. Like vLLM 0.32's kv_holding_waiting queue, landed
requests are admitted before the waiting queue: one that cannot get blocks
never keeps a landed request, which needs none, from running. A request
waiting for its KV is not running, so it is never preempted.

Not modelled (vLLM 0.32 features off by default, or off on its CPU platform):
long_prefill_token_threshold, the admission watermark, async scheduling's
one-step lag, speculative decoding, and KV connectors other than the remote
prefill above (no failed loads, no offloading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kairos.engine.batch_shape import BatchShape
from kairos.engine.kv_cache import KVCacheManager
from kairos.engine.policies import StepContext, make_waiting_queue
from kairos.engine.request import Request, RequestStatus
from kairos.predict import OutputPredictor


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Engine limits, named as in vLLM."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    policy: str = "fcfs"
    # Admit a request only if its whole prompt fits in the free blocks, though only
    # the first chunk is allocated (vLLM's scheduler_reserve_full_isl, on by default
    # since vLLM 0.1x): fewer admissions that would soon need a preemption.
    reserve_full_prompt: bool = True
    # The policy's knobs, as (name, value) pairs: the config stays hashable.
    policy_options: tuple[tuple[str, Any], ...] = ()


# Why waiting requests were left waiting after a step was scheduled.
BLOCKED_NONE = ""  # nothing was waiting
BLOCKED_SEQS = "max_num_seqs"
BLOCKED_BUDGET = "token_budget"
BLOCKED_KV = "kv_cache"
BLOCKED_CHUNK = "unchunked_prefill"
BLOCKED_PREEMPTION = "preemption"
BLOCKED_POLICY = "policy"  # the policy's admission control refused the head request


@dataclass(slots=True)
class SchedulerOutput:
    """What one step runs: (request, new tokens) pairs, and what the scheduler did."""

    scheduled: list[tuple[Request, int]] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)
    num_admitted: int = 0
    waiting_blocked: str = BLOCKED_NONE
    shape: BatchShape = BatchShape()
    # Remote KV loads to start: (request, prompt tokens to pull); not part of the step's work.
    remote_kv: list[tuple[Request, int]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.scheduled)


class Scheduler:
    """Decides, every step, which requests run and how many tokens each computes."""

    def __init__(self, config: SchedulerConfig, kv: KVCacheManager,
                 predictor: OutputPredictor | None = None) -> None:
        self.config = config
        self.kv = kv
        self.running: list[Request] = []
        options = dict(config.policy_options)
        self.waiting = make_waiting_queue(config.policy, options, predictor)
        # Requests holding blocks while their remote KV arrives, by uid.
        self.loading: dict[int, Request] = {}
        # Requests whose remote KV arrived: admitted before `waiting`, in the policy's order.
        self.landed = make_waiting_queue(config.policy, options, predictor)
        self.num_preemptions = 0

    def add(self, req: Request) -> None:
        req.status = RequestStatus.WAITING
        self.waiting.add(req)

    def schedule(self, now: float) -> SchedulerOutput:
        cfg = self.config
        kv = self.kv
        budget = cfg.max_num_batched_tokens
        scheduled: list[tuple[Request, int]] = []
        preempted: list[Request] = []
        running = self.running
        policy = self.waiting
        policy.advance(now)
        ctx = StepContext(now, running, kv, 0) if policy.gates_admission or policy.caps_running else None

        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            num_new = min(req.num_tokens - req.num_computed, budget)
            if ctx is not None and policy.caps_running:
                ctx.scheduled_tokens = cfg.max_num_batched_tokens - budget
                num_new = policy.cap_running(req, num_new, ctx)
                if num_new <= 0:
                    i += 1  # the policy holds it back this step
                    continue
            if kv.allocate(req, num_new):
                scheduled.append((req, num_new))
                budget -= num_new
                i += 1
                continue
            # Out of blocks: preempt by policy until this request fits or is the victim.
            fits = False
            while not fits:
                victim = self.waiting.pick_victim(running)
                victim_idx = running.index(victim)
                del running[victim_idx]
                if victim_idx < i:
                    # Already scheduled this step: give its tokens back.
                    i -= 1
                    for k, (r, n) in enumerate(scheduled):
                        if r is victim:
                            budget += n
                            del scheduled[k]
                            break
                self._preempt(victim)
                preempted.append(victim)
                if victim is req:
                    break
                fits = kv.allocate(req, num_new)
            if not fits:
                break
            scheduled.append((req, num_new))
            budget -= num_new
            i += 1

        admitted = 0
        blocked = BLOCKED_NONE
        remote_kv: list[tuple[Request, int]] = []
        waiting, landed = self.waiting, self.landed
        if preempted:
            blocked = BLOCKED_PREEMPTION if len(waiting) or len(landed) else BLOCKED_NONE
        else:
            while len(landed) or len(waiting):
                if len(running) >= cfg.max_num_seqs:
                    blocked = BLOCKED_SEQS
                    break
                if budget <= 0:
                    blocked = BLOCKED_BUDGET
                    break
                queue = landed if len(landed) else waiting
                req = queue.peek()
                if queue is landed:
                    # Its blocks and computed tokens came with the load: no lookup.
                    hits, hit_tokens = [], req.num_computed
                else:
                    hits, hit_tokens = kv.lookup(req)
                if req.remote_prefill:
                    # vLLM also holds back the blocks unfinished prefills still need
                    # (reserved_blocks); here an unfinished prefill always used up the
                    # budget, so no load is ever admitted beside one.
                    num_remote = req.num_tokens - hit_tokens
                    if (kv.blocks_short(req, req.num_tokens, hits)
                            or not kv.allocate(req, num_remote, hits, delay_cache=True)):
                        blocked = BLOCKED_KV
                        break
                    queue.pop()
                    self._count_lookup(req, hit_tokens)
                    self._start_remote_kv(req, hit_tokens, num_remote)
                    remote_kv.append((req, num_remote))
                    continue
                num_new = req.num_tokens - hit_tokens
                if num_new > budget:
                    if not cfg.enable_chunked_prefill:
                        blocked = BLOCKED_CHUNK
                        break
                    num_new = budget
                if ctx is not None and policy.gates_admission and queue is waiting:
                    ctx.scheduled_tokens = cfg.max_num_batched_tokens - budget
                    allowed = policy.admit(req, num_new, ctx)
                    if allowed <= 0 or (allowed < req.num_tokens - hit_tokens and not cfg.enable_chunked_prefill):
                        blocked = BLOCKED_POLICY
                        break
                    num_new = allowed
                if cfg.reserve_full_prompt and kv.blocks_short(req, req.num_tokens, hits):
                    blocked = BLOCKED_KV
                    break
                if not kv.allocate(req, num_new, hits):
                    blocked = BLOCKED_KV
                    break
                queue.pop()
                req.num_computed = hit_tokens
                req.status = RequestStatus.RUNNING
                if req.first_scheduled_s is None:
                    req.first_scheduled_s = now
                self._count_lookup(req, hit_tokens)
                running.append(req)
                scheduled.append((req, num_new))
                budget -= num_new
                admitted += 1

        return SchedulerOutput(scheduled, preempted, admitted, blocked, _batch_shape(scheduled), remote_kv)

    def _count_lookup(self, req: Request, hit_tokens: int) -> None:
        """Record the prefix hits of a request's first admission (to run or to load)."""
        if req.cached_tokens >= 0:
            return
        req.cached_tokens = hit_tokens
        # vllm:prefix_cache_queries/hits count a request's first admission only
        # (a resumed one counts apart) and nothing when the cache is off.
        if self.kv.enable_prefix_caching:
            self.kv.stats.queries += req.prompt_len
            self.kv.stats.hits += hit_tokens

    def _start_remote_kv(self, req: Request, hit_tokens: int, num_remote: int) -> None:
        # Only the local hits are in the cache until the load lands: an abort meanwhile
        # must not offer the unwritten blocks to the prefix cache.
        req.num_computed = hit_tokens
        req.num_remote_tokens = num_remote
        req.remote_prefill = False
        req.status = RequestStatus.WAITING_FOR_REMOTE_KV
        self.loading[req.uid] = req

    def load_remote_kv(self, req: Request) -> None:
        """`req` already holds blocks for all its tokens (a migration's reservation): its whole KV
        loads into them now, as an admitted remote prefill's does."""
        self._start_remote_kv(req, 0, req.num_tokens)

    def finish_remote_kv(self, req: Request) -> None:
        """The remote KV of `req` arrived: cache its blocks and queue it to compute its last prompt token.

        As vLLM's _update_waiting_for_remote_kv: every loaded token counts as
        computed except the last one of the sequence, which the next admission
        computes (a one-token prefill chunk) to sample the first output token.
        """
        if self.loading.pop(req.uid, None) is not req:
            raise ValueError(f"request {req.request_id} is not waiting for remote KV")
        computed = req.num_computed + req.num_remote_tokens
        self.kv.cache_blocks(req, computed)
        req.num_computed = min(computed, req.num_tokens - 1)
        req.status = RequestStatus.WAITING
        self.landed.add(req)

    def _preempt(self, req: Request) -> None:
        self.kv.free(req, preempted=True)
        req.num_computed = 0
        req.preemptions += 1
        req.status = RequestStatus.PREEMPTED
        self.num_preemptions += 1
        self.waiting.requeue(req)

    def remove_finished(self, finished: list[Request]) -> None:
        if len(finished) == 1:
            self.running.remove(finished[0])
        elif finished:
            done = {id(r) for r in finished}
            self.running = [r for r in self.running if id(r) not in done]


def _batch_shape(scheduled: list[tuple[Request, int]]) -> BatchShape:
    """Summarise a step for the step-time model (computed before the step advances state)."""
    prefill_new: list[int] = []
    prefill_ctx: list[int] = []
    num_decodes = 0
    kv_sum = 0
    kv_max = 0
    sampled = 0
    for req, n in scheduled:
        computed = req.num_computed
        if n == 1 and computed == req.num_tokens - 1 and req.num_output > 0:
            num_decodes += 1
            kv_sum += computed + 1
            kv_max = max(kv_max, computed + 1)
            sampled += 1
        else:
            prefill_new.append(n)
            prefill_ctx.append(computed)
            if computed + n == req.num_tokens:
                sampled += 1
    return BatchShape(tuple(prefill_new), tuple(prefill_ctx), num_decodes, kv_sum, sampled, kv_max)
