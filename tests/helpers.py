"""Shared test fixtures: a linear step-time model and a small simulation builder."""

from __future__ import annotations

import numpy as np

from kairos.cluster import make_router
from kairos.engine import EngineCore, KVCacheManager, SchedulerConfig
from kairos.predict import make_predictor
from kairos.engine.batch_shape import BatchShape
from kairos.metrics.itl import ItlCollector
from kairos.perf.base import StepTimeModel
from kairos.sim.executor import SimExecutor
from kairos.sim.replica import PrefixHasher, SimReplica
from kairos.sim.runner import SimResult, Simulation


class LinearModel(StepTimeModel):
    """Step time linear in tokens and attended KV: enough to exercise the engine."""

    name = "linear"

    def __init__(self, base: float = 0.005, per_token: float = 2e-5, per_kv: float = 1e-8) -> None:
        self.base, self.per_token, self.per_kv = base, per_token, per_kv

    def step_time(self, shape: BatchShape) -> float:
        ctx = sum(c + n for c, n in zip(shape.prefill_ctx, shape.prefill_new))
        return self.base + self.per_token * shape.num_tokens + self.per_kv * (ctx + shape.decode_kv_sum)

    def decode_window(self, num_decodes: int, decode_kv_sum: int, steps: int, decode_kv_max: int = 0
                      ) -> np.ndarray:
        kv = decode_kv_sum + num_decodes * np.arange(steps, dtype=np.int64)
        return self.base + self.per_token * num_decodes + self.per_kv * kv.astype(np.float64)

    def idle_penalty(self, idle_s: float) -> float:
        return 0.0


def simulate(specs, *, num_blocks=2000, block_size=16, replicas=1, router="round_robin",
             config=SchedulerConfig(), prefix=True, fast=True, check=True, model=None,
             max_model_len=1 << 20, request_latency_s=0.0, predictor=None) -> SimResult:
    """`predictor`: a (name, knobs) pair; each run builds its own, since a learning one holds state."""
    itl = ItlCollector()
    hasher = PrefixHasher(block_size)
    shared_predictor = make_predictor(predictor[0], **predictor[1]) if predictor else None
    reps = [
        SimReplica(i, EngineCore(config, KVCacheManager(num_blocks, block_size, prefix), itl=itl,
                                 check_invariants=check, predictor=shared_predictor),
                   SimExecutor(model or LinearModel()), hasher)
        for i in range(replicas)
    ]
    return Simulation(specs, reps, make_router(router, seed=0), max_model_len=max_model_len,
                      itl=itl, fast_decode=fast, request_latency=lambda _: request_latency_s).run()
