"""Block keys of a prompt: chained hashes of its full, shareable blocks.

Two prompts share their first k keys exactly when their first k blocks hold the
same tokens, so a router can match prefixes by comparing keys. The scheme
mirrors the engine's prefix-cache hashing (root constant, hash of (parent,
block content)), with the content of a block named by its token ids when the
spec has them, else by the (key, start, length) pieces of the spans it covers.
Python's hash of ints and tuples of ints is not salted: keys are stable across
processes.
"""

from __future__ import annotations

from collections.abc import Callable

from kairos.workload.spec import RequestSpec

PrefixBlockKeys = Callable[[RequestSpec], list[int]]

DEFAULT_BLOCK_SIZE = 16
_ROOT = 0x6B616972  # parent of the first block, as in the engine's hashing


def default_prefix_block_keys(
    spec: RequestSpec, block_size: int = DEFAULT_BLOCK_SIZE
) -> list[int]:
    """Keys of the prompt's leading full blocks that another request could share.

    Blocks past the shared spans hold tokens unique to this request and get no key;
    so does a trailing partial block.
    """
    keys: list[int] = []
    parent = _ROOT
    if spec.prompt_token_ids is not None:
        ids = spec.prompt_token_ids
        for begin in range(0, len(ids) - block_size + 1, block_size):
            parent = hash((parent, ids[begin:begin + block_size]))
            keys.append(parent)
        return keys
    num_blocks = min(spec.prompt_len, spec.shared_len) // block_size
    pieces: list[int] = []
    filled = 0
    for span in spec.shared:
        offset = 0
        while offset < span.length and len(keys) < num_blocks:
            take = min(block_size - filled, span.length - offset)
            pieces.extend((span.key, span.start + offset, take))
            filled += take
            offset += take
            if filled == block_size:
                parent = hash((parent, tuple(pieces)))
                keys.append(parent)
                pieces.clear()
                filled = 0
    return keys
