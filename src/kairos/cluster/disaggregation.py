"""Disaggregation deciders: whether a request routed to a decode replica prefills on the prefill pool.

As llm-d's disaggregation handler, routing is decode-first: the decode replica is
chosen, then the decider looks at how much of the prompt that replica would have
to compute itself (its prefix cache holds the rest) and sends the prompt to a
prefill replica when that is worth a KV transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kairos.registry import Registry
from kairos.workload.spec import RequestSpec

DECIDERS: Registry[type] = Registry("disaggregation decider")


class Decider(Protocol):
    """Says whether `spec` prefills remotely, given the prompt tokens its decode replica lacks."""

    name: str

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool: ...


@DECIDERS.register("always")
@dataclass(frozen=True)
class Always:
    """Every prompt is prefilled on the prefill pool (vLLM's P/D proxy, DistServe)."""

    name: str = field(default="always", init=False)

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return True


@DECIDERS.register("never")
@dataclass(frozen=True)
class Never:
    """Every request runs wholly on its decode replica: the pools' split without the transfer."""

    name: str = field(default="never", init=False)

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return False


@DECIDERS.register("prefix_threshold")
@dataclass(frozen=True)
class PrefixThreshold:
    """Prefill remotely only when the decode replica lacks more than `threshold_tokens` of the prompt
    (llm-d's prefix-based decider): short or mostly cached prompts are cheaper to prefill in place."""

    threshold_tokens: int
    name: str = field(default="prefix_threshold", init=False)

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return uncached_tokens > self.threshold_tokens


def make_decider(name: str, threshold_tokens: int) -> Decider:
    """Decider `name` (one of DECIDERS); `threshold_tokens` is prefix_threshold's."""
    cls = DECIDERS.get(name)
    decider: Decider = cls(threshold_tokens) if "threshold_tokens" in DECIDERS.knobs(name) else cls()
    return decider
