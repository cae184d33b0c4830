"""Next-token sampling: greedy, temperature, top-k and top-p, each request with its own random stream."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How a request picks its tokens; temperature 0 is greedy. top_k <= 0 and top_p >= 1 disable those filters.

    With a `seed`, a request's tokens depend only on its own logits and seed, never
    on which other requests share its batches.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


GREEDY = SamplingParams()


class Sampler:
    """Holds each live request's params and generator and samples a batch of logit rows."""

    def __init__(self, device: torch.device, seed: int = 0) -> None:
        self.device = device
        # Seeds for requests that bring none: a run is reproducible from the engine's seed.
        self._seeds = random.Random(seed)
        self._params: dict[int, SamplingParams] = {}
        self._generators: dict[int, torch.Generator] = {}

    def add(self, uid: int, params: SamplingParams) -> None:
        if params.is_greedy:
            return
        self._params[uid] = params
        gen = torch.Generator(device=self.device)
        gen.manual_seed(params.seed if params.seed is not None else self._seeds.getrandbits(63))
        self._generators[uid] = gen

    def remove(self, uid: int) -> None:
        self._params.pop(uid, None)
        self._generators.pop(uid, None)

    def __len__(self) -> int:
        """Requests holding sampling state (greedy ones hold none)."""
        return len(self._params)

    def sample(self, logits: torch.Tensor, uids: list[int]) -> list[int]:
        """One token per row of float32 `logits` [rows, vocab]; row i belongs to request uids[i]."""
        tokens = logits.argmax(dim=-1)
        rows = [i for i, uid in enumerate(uids) if uid in self._params]
        if not rows:
            return tokens.tolist()
        params = [self._params[uids[i]] for i in rows]
        idx = torch.tensor(rows, device=logits.device)
        vocab = logits.shape[-1]
        temp = torch.tensor([p.temperature for p in params], device=logits.device)
        x = logits[idx] / temp[:, None]
        top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
        top_p = [p.top_p for p in params]
        if min(top_k) < vocab or min(top_p) < 1:
            x = _filter_top_k_top_p(x, top_k, top_p)
        probs = x.softmax(dim=-1)
        # Exponential race (argmax p_i / E_i, E_i ~ Exp(1)) draws from `probs`; each row's
        # noise comes from its own generator, so batch composition cannot change it.
        noise = torch.empty_like(probs)
        for j, i in enumerate(rows):
            noise[j].exponential_(generator=self._generators[uids[i]])
        tokens[idx] = (probs / noise).argmax(dim=-1)
        return tokens.tolist()


def _filter_top_k_top_p(x: torch.Tensor, top_k: list[int], top_p: list[float]) -> torch.Tensor:
    """Set to -inf the logits outside each row's top-k, then outside its top-p nucleus."""
    sorted_x, order = x.sort(dim=-1, descending=True)
    rank = torch.arange(x.shape[-1], device=x.device)
    k = torch.tensor(top_k, device=x.device)
    sorted_x = sorted_x.masked_fill(rank[None, :] >= k[:, None], float("-inf"))
    # Keep the smallest prefix whose mass reaches p: a token goes if the mass before it
    # already does. p = 1 rows are given 2 so rounding in the cumsum never drops a tail.
    p = torch.tensor([v if v < 1 else 2.0 for v in top_p], device=x.device)
    probs = sorted_x.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    sorted_x = sorted_x.masked_fill(mass_before >= p[:, None], float("-inf"))
    return torch.full_like(x, float("-inf")).scatter(-1, order, sorted_x)
