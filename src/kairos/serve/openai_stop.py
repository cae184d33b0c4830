"""Stop strings: cut the output before the first one, holding back text that may be the start of one."""

from __future__ import annotations


class StopStringMatcher:
    """Filters a stream of text deltas; `push` returns (text safe to emit, whether a stop string was hit).

    The last len(longest stop) - 1 characters are held back, since the next delta
    may complete a stop string that begins in them; any match is then found while
    all of it is still unreleased. The stop string itself is not emitted (OpenAI's
    behaviour).
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        buffer = self._pending + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return buffer[:min(hits)], True
        cut = max(len(buffer) - self._hold, 0)
        self._pending = buffer[cut:]
        return buffer[:cut], False

    def flush(self) -> str:
        """The held-back text, once the output ended without a stop string."""
        text, self._pending = self._pending, ""
        return text
