"""Tokenizers: a built-in byte-level one for random-init models, and HF `tokenizer.json` files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol


class Tokenizer(Protocol):
    """Text to token ids and back, plus the special ids the engine needs."""

    bos_token_id: int | None
    eos_token_id: int | None

    def encode(self, text: str, add_bos: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, directory: Path) -> None:
        """Write `tokenizer.json` into `directory`."""


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255, then BOS (256) and EOS (257); ids past those decode to nothing."""

    bos_token_id = 256
    eos_token_id = 257

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [self.bos_token_id, *ids] if add_bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        """The same tokenizer as a `tokenizers` byte-level BPE with no merges, so HF tooling can load it."""
        chars = _byte_to_unicode()
        vocab = {chars[b]: b for b in range(256)}
        specials = [("<bos>", self.bos_token_id), ("<eos>", self.eos_token_id)]
        spec = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for s, i in specials
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                              "use_regex": False},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<bos>": {"id": "<bos>", "ids": [self.bos_token_id], "tokens": ["<bos>"]}},
            },
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": {**vocab, **{s: i for s, i in specials}}, "merges": []},
        }
        (Path(directory) / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))


class HFTokenizer:
    """A Hugging Face `tokenizer.json` run by the `tokenizers` library; special ids come from the model config."""

    def __init__(self, path: Path, bos_token_id: int | None, eos_token_id: int | None) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self._tok = _Tokenizer.from_file(str(path))
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        # The file's post-processor decides which specials a model expects (BOS for Llama, none for Qwen2).
        return self._tok.encode(text, add_special_tokens=add_bos).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def save(self, directory: Path) -> None:
        self._tok.save(str(Path(directory) / "tokenizer.json"))


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters, the alphabet of byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}
