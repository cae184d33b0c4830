"""Per-step explanation: a deterministic sample of steps with their time split by operator."""

from __future__ import annotations

from dataclasses import dataclass, field

from kairos.engine.batch_shape import BatchShape


@dataclass(slots=True)
class StepSampler:
    """Keeps an evenly spread sample of at most 2 x `limit` step shapes, whatever the run length.

    Every `stride`-th step offered is kept; when the sample doubles past `limit`,
    every other one is dropped and the stride doubles, so the sample stays spread
    over the whole run and depends only on the order of steps (deterministic).
    """

    limit: int = 8
    stride: int = 1
    offered: int = 0
    samples: list[tuple[float, int, BatchShape]] = field(default_factory=list)

    def offer(self, time_s: float, replica: int, shape: BatchShape) -> None:
        if self.offered % self.stride == 0:
            self.samples.append((time_s, replica, shape))
            if len(self.samples) > 2 * self.limit:
                self.samples = self.samples[::2]
                self.stride *= 2
        self.offered += 1


def explain_steps(sampler: StepSampler, model) -> list[dict]:
    """Report rows: when, what the batch held, and milliseconds per operator."""
    rows = []
    for time_s, replica, shape in sampler.samples:
        parts = model.breakdown(shape)
        rows.append({
            "time_s": time_s,
            "replica": replica,
            "prefill_chunks": len(shape.prefill_new),
            "prefill_tokens": sum(shape.prefill_new),
            "prefill_context_tokens": sum(shape.prefill_ctx),
            "decodes": shape.num_decodes,
            "decode_kv_tokens": shape.decode_kv_sum,
            "total_ms": sum(parts.values()) * 1e3,
            "operators_ms": {name: value * 1e3 for name, value in parts.items()},
        })
    return rows
