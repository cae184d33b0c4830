"""Deterministic prompts of exact lengths: token ids, or plain words for text-only servers."""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

import numpy as np

from kairos.errors import KairosError
from kairos.hashing import mix64, mix64_array
from kairos.workload.spec import RequestSpec

PromptFormat = Literal["token-ids", "text"]
PROMPT_FORMATS: tuple[str, ...] = get_args(PromptFormat)
DEFAULT_VOCAB_SIZE = 32000
MIN_VOCAB_SIZE = 64
# Many tokenizers keep control, byte and special tokens at the lowest ids; ids
# below vocab_size / 32 (1000 for the default) are never sent.
LOW_IDS_SKIPPED = 32

# Common words that most BPE tokenizers encode as one token each (with the
# leading space), so N words come close to N prompt tokens.
WORDS: tuple[str, ...] = tuple("""
the of and to in is you that it he was for on are as with his they at be this
have from or one had by word but not what all were we when your can said there
use an each which she do how their if will up other about out many then them
these so some her would make like him into time has look two more write go see
number no way could people my than first water been call who oil its now find
long down day did get come made may part over new sound take only little work
know place year live me back give most very after thing our just name good
sentence man think say great where help through much before line right too
mean old any same tell boy follow came want show also around form three small
set put end does another well large must big even such because turn here why
ask went men read need land different home us move try kind hand picture again
change off play spell air away animal house point page letter mother answer
found study still learn should world high every near add food between own
below country plant last school father keep tree never start city earth eye
light thought head under story saw left few while along might close something
seem next hard open example begin life always those both paper together got
group often run important until children side feet car mile night walk white
""".split())  # noqa: SIM905


def random_token_ids(rng: np.random.Generator, vocab_size: int, n: int) -> list[int]:
    """`n` random token ids clear of the low ids where special tokens sit (a probe's or a warm-up's
    prompt: no content shared with any other)."""
    return rng.integers(max(1, vocab_size // LOW_IDS_SKIPPED), vocab_size, n).tolist()


class PromptBuilder:
    """Builds the prompt of each RequestSpec: `prompt_len` token ids (or about as many words).

    The token at position p of content stream k is f(k, p), so requests whose specs
    share a span (a system prompt, a Mooncake block, an earlier turn) send the same
    tokens there and the server's prefix cache sees the sharing the workload
    describes. Tokens past the spans come from (seed, request id, position) and are
    unique to the request. Specs that carry `prompt_token_ids` are sent as given.
    """

    def __init__(self, fmt: PromptFormat = "token-ids", vocab_size: int = DEFAULT_VOCAB_SIZE,
                 seed: int = 0) -> None:
        if fmt not in PROMPT_FORMATS:
            raise KairosError(f"prompt format must be one of {', '.join(PROMPT_FORMATS)},"
                              f" got '{fmt}'")
        if vocab_size < MIN_VOCAB_SIZE:
            raise KairosError(f"vocab size must be >= {MIN_VOCAB_SIZE}, got {vocab_size}")
        self.fmt = fmt
        self.vocab_size = vocab_size
        self.seed = seed
        self._low = vocab_size // LOW_IDS_SKIPPED

    def prompt(self, spec: RequestSpec) -> list[int] | str:
        """What to send as the completion request's `prompt`."""
        ids = self.token_ids(spec)
        if self.fmt == "text":
            return " ".join(WORDS[i % len(WORDS)] for i in ids)
        return ids

    def token_ids(self, spec: RequestSpec) -> list[int]:
        if spec.prompt_token_ids is not None:
            return list(spec.prompt_token_ids)
        parts: list[np.ndarray] = []
        covered = 0
        # Spans cover the prompt then the output (a session turn's answer is part of
        # the next turn's prompt), so stop at prompt_len.
        for span in spec.shared:
            take = min(span.length, spec.prompt_len - covered)
            if take <= 0:
                break
            parts.append(self._stream(span.key, span.start, take))
            covered += take
        if covered < spec.prompt_len:
            parts.append(self._stream(self._unique_key(spec.request_id), covered,
                                      spec.prompt_len - covered))
        if not parts:
            return []
        ids: list[int] = np.concatenate(parts).tolist()
        return ids

    def _stream(self, key: int, start: int, length: int) -> np.ndarray:
        positions = np.arange(start, start + length, dtype=np.uint64)
        hashed = mix64_array(positions + np.uint64(mix64(key)))
        span = np.uint64(self.vocab_size - self._low)
        return (hashed % span).astype(np.int64) + self._low

    def _unique_key(self, request_id: str) -> int:
        # blake2b, not hash(): str hashes are salted per process.
        digest = hashlib.blake2b(f"{self.seed}\0{request_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")
