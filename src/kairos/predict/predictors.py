"""The output-length predictors: oracle, noisy oracle, online histogram, constant."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from kairos.hashing import MASK64, mix64
from kairos.predict.base import PREDICTORS
from kairos.workload.spec import RequestSpec


@PREDICTORS.register("oracle")
@dataclass
class OraclePredictor:
    """The true output length (the simulator knows it; a server takes the request's max_tokens)."""

    def predict(self, spec: RequestSpec, generated: int = 0) -> int:
        return max(spec.output_len, generated + 1)

    def observe(self, spec: RequestSpec, output_len: int) -> None:
        pass


@PREDICTORS.register("noisy")
@dataclass
class NoisyOraclePredictor:
    """The true length times a lognormal error exp(sigma * z), z ~ N(0, 1) drawn per request.

    The draw depends only on `seed` and the request id, so a request gets the same
    prediction on every replica and in every run (DriftSched's error model).
    """

    sigma: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    def predict(self, spec: RequestSpec, generated: int = 0) -> int:
        noisy = round(spec.output_len * math.exp(self.sigma * _normal(self.seed, spec.request_id)))
        return max(noisy, generated + 1, 1)

    def observe(self, spec: RequestSpec, output_len: int) -> None:
        pass


# Prompt-length buckets and output-length bins are powers of two: a predictor's
# error is relative, and request lengths span four orders of magnitude.
_NUM_BUCKETS = 20
_NUM_BINS = 24
_BIN_EDGES = 2.0 ** np.arange(_NUM_BINS + 1)  # bin b holds lengths in [2^b, 2^(b+1))


@PREDICTORS.register("histogram")
@dataclass
class HistogramPredictor:
    """Past-Future's history: finished output lengths by prompt-length bucket, predicting a quantile.

    Buckets are powers of two of the prompt length; a bucket with fewer than
    `min_samples` finished requests borrows the history of all prompts, and with
    none yet the prediction is `prior`. Given tokens generated so far, it predicts
    from the lengths longer than that (the conditional distribution), so a
    long-running request's prediction grows instead of staying wrong.
    """

    quantile: float = 0.5
    prior: int = 256
    min_samples: int = 16
    _counts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if self.prior < 1:
            raise ValueError(f"prior must be >= 1, got {self.prior}")
        # Row _NUM_BUCKETS is every prompt's history.
        self._counts = np.zeros((_NUM_BUCKETS + 1, _NUM_BINS), dtype=np.int64)

    def predict(self, spec: RequestSpec, generated: int = 0) -> int:
        floor = generated + 1
        first = _bin(floor)
        for row in (self._counts[_bucket(spec.prompt_len)], self._counts[_NUM_BUCKETS]):
            tail = row[first:]
            total = int(tail.sum())
            if total >= self.min_samples:
                b = first + int(np.searchsorted(np.cumsum(tail), self.quantile * total))
                # The bin's geometric middle, clipped to what is known already.
                return max(floor, round(math.sqrt(_BIN_EDGES[b] * _BIN_EDGES[b + 1])))
        return max(floor, self.prior)

    def observe(self, spec: RequestSpec, output_len: int) -> None:
        b = _bin(output_len)
        self._counts[_bucket(spec.prompt_len), b] += 1
        self._counts[_NUM_BUCKETS, b] += 1


@PREDICTORS.register("constant")
@dataclass
class ConstantPredictor:
    """Every request generates `tokens` (a max_tokens limit: what full-output reservation reserves)."""

    tokens: int = 2048

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {self.tokens}")

    def predict(self, spec: RequestSpec, generated: int = 0) -> int:
        return max(self.tokens, generated + 1)

    def observe(self, spec: RequestSpec, output_len: int) -> None:
        pass


def _bucket(prompt_len: int) -> int:
    return min(max(prompt_len, 1).bit_length() - 1, _NUM_BUCKETS - 1)


def _bin(length: int) -> int:
    return min(max(length, 1).bit_length() - 1, _NUM_BINS - 1)


def _normal(seed: int, request_id: str) -> float:
    """A standard normal draw fixed by (seed, request id): Box-Muller over two splitmix64 outputs."""
    h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little")
    a = mix64((h ^ mix64(seed & MASK64)) & MASK64)
    b = mix64(a)
    u1 = ((a >> 11) + 1) / 2.0**53  # (0, 1]: log is finite
    u2 = (b >> 11) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
