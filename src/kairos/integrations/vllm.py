"""vLLM `--scheduler-cls` plug-in: vLLM's v1 scheduler with a Kairos scheduling policy (vLLM 0.32).

    vllm serve MODEL --scheduler-cls kairos.integrations.vllm.KairosScheduler \\
        --additional-config '{"kairos": {"policy": "sjf", "predictor": "oracle"}}'

The policy orders vLLM's waiting queue (`PolicyWaitingQueue` replaces `self.waiting`)
and picks preemption victims. vLLM inlines its victim choice in `schedule()`: under
its FCFS setting it preempts `self.running[-1]`, again and again while blocks run
short. So before each step the running list is reordered (`preemption_order`) to
put the policy's victims last, worst last; that also offers the step's token
budget to running requests best first, where Kairos's own scheduler goes in
admission order (it differs only when chunked prefills run out of budget).
A policy that keeps vLLM's victim (fcfs, laps) leaves the list alone: fcfs is vLLM's FCFS.

Supported: fcfs, priority (request priorities need vLLM's priority policy, which the
plug-in replaces, so all requests rank 0), sjf, srpt, laps, edf, slack, vtc (tenants,
classes and targets from each request's `vllm_xargs`: tenant, slo_class, deadline_s,
ttft_ms, tpot_ms, e2e_ms). Refused at startup: past_future and filler, whose
admission gates and caps on running requests have no hook in vLLM's `schedule()`.
Requests that hold KV blocks while waiting (asynchronous KV loads) stay in vLLM's own
FCFS queue, which vLLM drains first. The predictor learns from every request that
finishes (stop or length). Importing this module without vLLM is an ImportError.
"""

from __future__ import annotations

import os
import time
from typing import Any

try:
    from vllm.logger import init_logger
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.core.sched.request_queue import RequestQueue, SchedulingPolicy
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.request import Request, RequestStatus
except ModuleNotFoundError as e:
    if e.name != "vllm":
        raise
    raise ImportError("kairos.integrations.vllm is a vLLM plug-in: install vLLM to use it "
                      "(the rest of kairos does not need it)") from None

from kairos.errors import KairosError
from kairos.integrations.vllm_queue import PluginConfig, PolicyWaitingQueue, build_queue

RequestQueue.register(PolicyWaitingQueue)

# Under vLLM's logger tree, so that the line lands in the server log with vLLM's format.
logger = init_logger("vllm.kairos")

# Kairos's "stop" and "length": the lengths a predictor may learn from.
_COMPLETED = frozenset({RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH_CAPPED})


class KairosPolicyMixin:
    """The overrides that put a Kairos policy into a vLLM scheduler class."""

    waiting: PolicyWaitingQueue
    running: list[Request]
    requests: dict[str, Request]
    policy: SchedulingPolicy
    vllm_config: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.policy != SchedulingPolicy.FCFS:
            # Under vLLM's priority setting, schedule() picks victims by (priority, arrival) itself.
            raise KairosError("the Kairos vLLM plug-in replaces vLLM's queue policy: "
                              "leave --scheduling-policy at fcfs and pick the Kairos policy in --additional-config")
        config = PluginConfig.load(self.vllm_config.additional_config, os.environ)
        self.waiting = build_queue(config)
        logger.info("Kairos scheduling policy '%s' %s, predictor %s: it orders the waiting queue and picks "
                    "preemption victims", config.policy, config.policy_options, config.predictor)

    def schedule(self, *args: Any, **kwargs: Any) -> SchedulerOutput:
        self.waiting.advance(time.time())
        self.running[:] = self.waiting.preemption_order(self.running)
        return super().schedule(*args, **kwargs)  # type: ignore[misc]

    def _update_after_schedule(self, scheduler_output: SchedulerOutput) -> None:
        super()._update_after_schedule(scheduler_output)  # type: ignore[misc]
        if self.waiting.counts_service:
            for req_id, tokens in scheduler_output.num_scheduled_tokens.items():
                self.waiting.served(self.requests[req_id], tokens)

    def _free_request(self, request: Request, delay_free_blocks: bool = False) -> Any:
        self.waiting.finished(request, completed=request.status in _COMPLETED)
        return super()._free_request(request, delay_free_blocks)  # type: ignore[misc]


class KairosScheduler(KairosPolicyMixin, Scheduler):
    """vLLM's v1 scheduler, its waiting queue and preemption victims chosen by a Kairos policy."""


class KairosAsyncScheduler(KairosPolicyMixin, AsyncScheduler):
    """The same over vLLM's async scheduler (vLLM's default on GPU; the CPU build runs the synchronous one)."""
