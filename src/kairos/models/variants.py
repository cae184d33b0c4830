"""Hugging Face model-name variants: suffixes that keep the architecture, and the precision they imply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# (suffix pattern, weights dtype it implies or None), tried in order at the end of a
# lower-case name: a longer spelling comes before its prefix ("-gptq-int4" before "-int4").
SUFFIXES: tuple[tuple[re.Pattern[str], str | None], ...] = tuple(
    (re.compile(pattern + "$"), dtype)
    for pattern, dtype in (
        (r"-fp8(-dynamic|-static)?", "fp8"),
        (r"-nvfp4", "nvfp4"),
        (r"-mxfp4", "mxfp4"),
        (r"-awq", "int4"),
        (r"-gptq(-int4)?", "int4"),
        (r"-(quantized\.)?w4a16", "int4"),
        (r"-int4", "int4"),
        (r"-instruct", None),
        (r"-chat", None),
        (r"-base", None),
        (r"-it", None),
        (r"-hf", None),
        (r"-thinking", None),
        (r"-\d{4}", None),  # a release date such as -2507 or -0528
        (r"-v\d+(\.\d+)*", None),  # a release version such as -v0.3
    )
)


def normalize(name: str) -> str:
    """The comparable form of a model name: lower case, organisation dropped, Meta-Llama-3 == Llama-3.

    The organisation is ignored because nvidia/, RedHatAI/ or neuralmagic/ republish
    other organisations' models under the same name.
    """
    return re.sub(r"^meta-llama-(?=\d)", "llama-", name.split("/")[-1].lower())


@dataclass(frozen=True, slots=True)
class Variant:
    """A name with `suffix` (as spelled) stripped; `weights_dtype` is what the suffix implies."""

    key: str
    suffix: str
    weights_dtype: str | None


def variants(name: str) -> Iterator[Variant]:
    """The normalized name, then the name with one more known suffix stripped at each step."""
    original = name.split("/")[-1]
    key = normalize(name)
    full_length = len(key)
    implied: str | None = None
    yield Variant(key, "", None)
    while True:
        match = next(((m, dtype) for pattern, dtype in SUFFIXES if (m := pattern.search(key))), None)
        if match is None:
            return
        found, dtype = match
        key = key[: found.start()]
        implied = implied or dtype
        # Normalizing changes only the start of the name, so the suffix keeps its length.
        yield Variant(key, original[len(original) - (full_length - len(key)):], implied)


def implied_weights_dtype(name: str) -> str | None:
    """The weights dtype a quantization suffix of `name` implies (-FP8, -NVFP4, -AWQ...), if any."""
    return next((variant.weights_dtype for variant in variants(name) if variant.weights_dtype), None)
