"""Deterministic 64-bit mixing (splitmix64) for content keys and KV block hashes.

Python's hash() of str is salted per process, and a chain of tuple hashes is a
Python loop per block; splitmix64 over numpy arrays gives stable hashes for a
whole request's blocks at once.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection of 64-bit ints that scatters nearby inputs."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def mix64_array(x: np.ndarray) -> np.ndarray:
    """`mix64` over a uint64 array (wrapping arithmetic is the point, so no overflow warnings)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
