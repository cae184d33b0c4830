"""SSE parsing and token accounting of one streamed completion."""

from __future__ import annotations

import pytest

from kairos.bench.stream import SSELines, StreamError, StreamResult, sse_data


def chunk(text: str, completion: int | None = None, finish: str | None = None) -> dict:
    body: dict = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
    if completion is not None:
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": completion}
    return body


def test_sse_data_lines():
    assert sse_data('data: {"a": 1}') == '{"a": 1}'
    assert sse_data('data:{"a": 1}') == '{"a": 1}'
    assert sse_data("data: [DONE]") == "[DONE]"
    for other in ("", ": keep-alive", "event: completion", "id: 3"):
        assert sse_data(other) is None


def test_sse_lines_end_at_cr_lf_or_crlf_only():
    lines = SSELines()
    text = 'data: {"t":"a\u2028b\x85c"}\r\n\r\ndata: é\rdata: x\n\ndata: [DONE]'.encode()
    out: list[str] = []
    for i in range(len(text)):  # one byte at a time: CRLF and UTF-8 sequences split across chunks
        out += lines.feed(text[i:i + 1])
    out += lines.close()
    assert out == ['data: {"t":"a\u2028b\x85c"}', "", "data: é", "data: x", "", "data: [DONE]"]
    assert lines.close() == []


def test_continuous_usage_counts_several_tokens_per_chunk():
    result = StreamResult(sent_ts=0.0)
    result.add_chunk(chunk("ab", 2), 1.0)
    result.add_chunk(chunk("", 3), 1.2)  # a token whose text is not complete yet
    result.add_chunk(chunk("cde", 6, "length"), 1.5)
    result.add_chunk({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 6}}, 1.6)
    assert result.token_ts == [1.0, 1.2, 1.5] and result.token_counts == [2, 1, 3]
    assert result.output_tokens == 6 and result.usage_prompt_tokens == 12
    assert (result.first_token_ts, result.last_token_ts) == (1.0, 1.5)
    assert result.finish_reason == "length"
    gaps = result.token_gaps()
    assert len(gaps) == result.output_tokens - 1
    assert gaps == pytest.approx([0.0, 0.2, 0.1, 0.1, 0.1])
    assert sum(gaps) == pytest.approx(result.last_token_ts - result.first_token_ts)


def test_without_usage_each_chunk_with_text_is_one_token():
    result = StreamResult(sent_ts=0.0)
    for i, text in enumerate(["a", "", "b", "c"]):
        result.add_chunk(chunk(text), 1.0 + i)
    assert result.received == result.output_tokens == 3
    assert result.token_ts == [1.0, 3.0, 4.0]
    # A closing usage-only chunk corrects the count but adds no arrival.
    result.add_chunk({"choices": [], "usage": {"completion_tokens": 4}}, 9.0)
    assert result.output_tokens == 4 and result.last_token_ts == 4.0


def test_error_chunk_raises():
    result = StreamResult(sent_ts=0.0)
    with pytest.raises(StreamError, match="out of memory"):
        result.add_chunk({"error": {"message": "out of\nmemory", "code": 500}}, 1.0)
