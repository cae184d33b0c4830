"""Block keys of a prompt, as a cache-aware router compares them.

They are the engine's own prefix-cache block hashes (`prompt_prefix_hashes`), so
a key the router matches is a block an engine could hit.
"""

from __future__ import annotations

from collections.abc import Callable

from kairos.engine.block_hash import prompt_prefix_hashes
from kairos.workload.spec import RequestSpec

PrefixBlockKeys = Callable[[RequestSpec], list[int]]

DEFAULT_BLOCK_SIZE = 16


def default_prefix_block_keys(spec: RequestSpec, block_size: int = DEFAULT_BLOCK_SIZE) -> list[int]:
    """Keys of the prompt's leading full blocks that another request could share.

    Blocks past the shared spans hold tokens unique to this request and get no key;
    so does a trailing partial block.
    """
    return prompt_prefix_hashes(spec, block_size)
