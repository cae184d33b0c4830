"""The request description shared by every workload source and consumer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np

from kairos.hashing import MASK64, mix64, mix64_array


@dataclass(frozen=True, slots=True)
class Span:
    """A run of shareable tokens: positions [start, start + length) of content stream `key`.

    Two tokens with the same (key, position) are the same token, so their KV can be
    shared. Streams are identified by ints so hashing is deterministic across runs.
    """

    key: int
    start: int
    length: int


@dataclass(frozen=True, slots=True)
class SLO:
    """Per-request latency targets in milliseconds (None: no target)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request as a workload describes it, before any engine sees it.

    The token sequence of a request is its prompt followed by its output. `shared`
    names the content of a prefix of that sequence as spans of content streams
    (a shared system prompt, Mooncake hash blocks, a multi-turn session that
    continues into the output); tokens past the spans are unique to this request.
    When `prompt_token_ids` is given (real serving), the KV cache hashes those ids
    instead and `shared` is ignored.

    `after` makes the request closed-loop (a later turn of a session): it arrives
    `think_s` seconds after request `after` finishes, and `arrival_s` is ignored.
    Lower `priority` values are served first under the priority policy.

    Request classes, which scheduling policies read: `tenant` (who sent it: fair
    share), `slo_class` (a named class such as "interactive" or "batch", whose
    targets are `slo`), and `deadline_s`, seconds after its arrival by which it
    should finish (earliest-deadline-first).
    """

    request_id: str
    arrival_s: float
    prompt_len: int
    output_len: int
    shared: tuple[Span, ...] = ()
    prompt_token_ids: tuple[int, ...] | None = None
    session_id: str | None = None
    tenant: str | None = None
    priority: int = 0
    slo: SLO | None = None
    slo_class: str | None = None
    deadline_s: float | None = None
    after: str | None = None
    think_s: float = 0.0

    @property
    def shared_len(self) -> int:
        """Number of leading tokens (prompt then output) covered by `shared`."""
        return sum(span.length for span in self.shared)


@cache
def _namespace_seed(namespace: str) -> int:
    # blake2b, not hash(): str hashes are salted per process.
    return int.from_bytes(hashlib.blake2b(namespace.encode(), digest_size=8).digest(), "little")


def content_key(namespace: str, *ids: int) -> int:
    """A deterministic 63-bit content-stream key for `ids` within `namespace`.

    Stable across processes and platforms. Each workload source uses its own
    namespace ("mooncake", "sysprompt", "session", ...) so keys from different
    sources do not collide. Ids are taken modulo 2**64. The namespace is hashed
    with blake2b once; ids are folded in with splitmix64 so that `content_keys`
    can compute the same keys for a whole array at numpy speed.
    """
    h = _namespace_seed(namespace)
    for i in ids:
        h = mix64(h ^ mix64(i & MASK64))
    return h >> 1


def content_keys(namespace: str, ids: np.ndarray) -> np.ndarray:
    """`content_key(namespace, i)` for every integer `i` in `ids`, as an int64 array."""
    seed = np.uint64(_namespace_seed(namespace))
    mixed = mix64_array(mix64_array(np.asarray(ids).astype(np.uint64)) ^ seed)
    return (mixed >> np.uint64(1)).astype(np.int64)
