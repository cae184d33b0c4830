"""Disaggregation deciders: whether a request routed to a decode replica prefills on the prefill pool.

As llm-d's disaggregation handler, routing is decode-first: the decode replica is
chosen, then the decider looks at how much of the prompt that replica would have
to compute itself (its prefix cache holds the rest) and sends the prompt to a
prefill replica when that is worth a KV transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kairos.errors import unknown_name_error
from kairos.workload.spec import RequestSpec


class Decider(Protocol):
    """Says whether `spec` prefills remotely, given the prompt tokens its decode replica lacks."""

    name: str

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool: ...


@dataclass(frozen=True)
class Always:
    """Every prompt is prefilled on the prefill pool (vLLM's P/D proxy, DistServe)."""

    name: str = "always"

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return True


@dataclass(frozen=True)
class Never:
    """Every request runs wholly on its decode replica: the pools' split without the transfer."""

    name: str = "never"

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return False


@dataclass(frozen=True)
class PrefixThreshold:
    """Prefill remotely only when the decode replica lacks more than `threshold_tokens` of the prompt
    (llm-d's prefix-based decider): short or mostly cached prompts are cheaper to prefill in place."""

    threshold_tokens: int
    name: str = "prefix_threshold"

    def remote(self, spec: RequestSpec, uncached_tokens: int) -> bool:
        return uncached_tokens > self.threshold_tokens


DECIDERS = ("always", "never", "prefix_threshold")


def make_decider(name: str, threshold_tokens: int) -> Decider:
    """Decider `name` (one of DECIDERS); `threshold_tokens` is prefix_threshold's."""
    key = name.strip().lower().replace("-", "_")
    if key == "always":
        return Always()
    if key == "never":
        return Never()
    if key == "prefix_threshold":
        return PrefixThreshold(threshold_tokens)
    raise unknown_name_error("disaggregation decider", name, DECIDERS)
