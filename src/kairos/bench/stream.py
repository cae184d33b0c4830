"""What one streamed completion delivered: token arrival times and usage, from SSE chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StreamError(Exception):
    """The server reported an error inside the stream (an `error` chunk)."""


class SSELines:
    """Splits a byte stream into server-sent-events lines, ended by CR, LF or CRLF only.

    str.splitlines (and so httpx's `aiter_lines`) also splits at U+0085, U+2028 and
    U+2029: characters a server may send unescaped inside a JSON string (vLLM and
    `kairos serve` do), which would cut a data line in two.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        """The lines that `chunk` completes; a line's bytes may span several chunks."""
        data = self._pending + chunk
        lines: list[str] = []
        start = 0
        while True:
            cr, lf = data.find(b"\r", start), data.find(b"\n", start)
            if cr < 0 and lf < 0:
                break
            if lf < 0 or 0 <= cr < lf:
                if cr == len(data) - 1:
                    break  # a CR that ends the chunk may be the first half of a CRLF
                end, start_next = cr, cr + (2 if data[cr + 1:cr + 2] == b"\n" else 1)
            else:
                end, start_next = lf, lf + 1
            lines.append(data[start:end].decode(errors="replace"))
            start = start_next
        self._pending = data[start:]
        return lines

    def close(self) -> list[str]:
        """The last line, where the stream ended without a line break."""
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        return [rest.decode(errors="replace")] if rest else []


def sse_data(line: str) -> str | None:
    """The payload of a server-sent-events `data:` line; None for any other line."""
    if not line.startswith("data:"):
        return None  # blank separators, comments (":"), event:/id:/retry: fields
    return line[5:].strip()


@dataclass(slots=True)
class StreamResult:
    """One request as the client saw it, timestamps on the time.monotonic() clock.

    `token_ts[i]` is when a chunk carrying `token_counts[i]` new tokens arrived.
    With `stream_options.continuous_usage_stats` (vLLM, SGLang) every chunk says
    how many tokens were generated so far, so a chunk with several tokens (or with
    a token whose text is still an incomplete character) is counted exactly;
    otherwise each chunk with text counts as one token. `usage_*` hold the final
    usage the server reported, which is the truth for token counts when present.
    """

    sent_ts: float
    token_ts: list[float] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def received(self) -> int:
        """Tokens counted from the chunks themselves."""
        return sum(self.token_counts)

    @property
    def output_tokens(self) -> int:
        """Tokens generated: the server's usage count when it gave one, else those counted."""
        if self.usage_completion_tokens is None:
            return self.received
        return self.usage_completion_tokens

    @property
    def first_token_ts(self) -> float | None:
        return self.token_ts[0] if self.token_ts else None

    @property
    def last_token_ts(self) -> float | None:
        return self.token_ts[-1] if self.token_ts else None

    def add_chunk(self, chunk: dict[str, Any], ts: float) -> None:
        """Account for one parsed `data:` chunk that arrived at `ts`."""
        if "error" in chunk:
            raise StreamError(_error_message(chunk["error"]))
        choices = chunk.get("choices") or []
        completion = self._read_usage(chunk.get("usage"))
        if not choices:
            return  # the closing usage-only chunk: no token arrives with it
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        if completion is not None:
            new = max(completion - self.received, 0)
        else:
            new = 1 if choice.get("text") else 0
        if new:
            self.token_ts.append(ts)
            self.token_counts.append(new)

    def token_gaps(self) -> list[float]:
        """Inter-token latencies: one per token after the first.

        A chunk carrying k tokens after a gap g stands for k tokens g/k apart, so
        the gaps add up to last - first token time and their count matches TPOT's
        denominator; extra tokens in the first chunk arrived with it (gap 0).
        """
        gaps: list[float] = []
        previous: float | None = None
        for ts, count in zip(self.token_ts, self.token_counts):
            if previous is None:
                gaps.extend([0.0] * (count - 1))
            else:
                gaps.extend([(ts - previous) / count] * count)
            previous = ts
        return gaps

    def _read_usage(self, usage: Any) -> int | None:
        """Record the usage block; return its completion_tokens (None when absent)."""
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.usage_prompt_tokens = prompt
        if isinstance(completion, int):
            self.usage_completion_tokens = completion
            return completion
        return None


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message") or error
    return one_line(str(error))


def one_line(text: str, limit: int = 160) -> str:
    """`text` squeezed to one line of at most `limit` characters, for failure reasons."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
