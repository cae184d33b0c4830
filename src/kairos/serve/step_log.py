"""A serving engine's step log: every step's batch shape, loop time, idle time before it and the machine's speed.

`kairos calibrate --url` reads it (GET /kairos/steps) to fit a step-time profile
of the engine as it serves: the time of a step here is the engine loop's, from
the start of one step to the start of the next while the engine stays busy, so
it includes what serving adds around the forward pass (taking in requests,
handing tokens to the HTTP side, contention with it for the interpreter).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from kairos.serve.engine_worker import StepEntry

DEFAULT_CAPACITY = 100_000


class StepLog:
    """A bounded, thread-safe log of (shape, seconds, idle seconds); entries are numbered from 0 forever."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        # Plain tuples of ints and floats: the garbage collector stops tracking them.
        self._entries: deque[StepEntry] = deque(maxlen=capacity)
        self._next = 0  # number of the next entry
        self._lock = threading.Lock()

    def extend(self, entries: list[StepEntry]) -> None:
        with self._lock:
            self._entries.extend(entries)
            self._next += len(entries)

    def since(self, index: int) -> tuple[int, list[dict[str, Any]]]:
        """Entries numbered `index` and later that are still held, and the next number."""
        with self._lock:
            first = self._next - len(self._entries)
            skip = max(0, index - first)
            entries = list(self._entries)[skip:]
            end = self._next
        return end, [{"prefill_new": list(new), "prefill_ctx": list(ctx), "num_decodes": decodes,
                      "decode_kv_sum": kv_sum, "num_sampled": sampled, "decode_kv_max": kv_max, "seconds": seconds,
                      "idle_s": idle, "reference_s": reference, "start_s": start}
                     for new, ctx, decodes, kv_sum, sampled, kv_max, seconds, idle, reference, start in entries]
