"""The request description shared by every workload source and consumer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np


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
    after: str | None = None
    think_s: float = 0.0

    @property
    def shared_len(self) -> int:
        """Number of leading tokens (prompt then output) covered by `shared`."""
        return sum(span.length for span in self.shared)


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit ints that scatters nearby inputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix64_array(x: np.ndarray) -> np.ndarray:
    """`_mix64` over a uint64 array (wrapping arithmetic is the point, so no overflow warnings)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


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
        h = _mix64(h ^ _mix64(i & _MASK64))
    return h >> 1


def content_keys(namespace: str, ids: np.ndarray) -> np.ndarray:
    """`content_key(namespace, i)` for every integer `i` in `ids`, as an int64 array."""
    seed = np.uint64(_namespace_seed(namespace))
    mixed = _mix64_array(_mix64_array(np.asarray(ids).astype(np.uint64)) ^ seed)
    return (mixed >> np.uint64(1)).astype(np.int64)
