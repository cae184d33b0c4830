"""A fake OpenAI-compatible streaming server for the bench tests, and a check of the fake itself.

Plain asyncio in a background thread (no web framework): it streams exactly
`max_tokens` tokens of /v1/completions with controlled delays, and a `plan`
function can make chosen requests fail (HTTP 500, disconnect, hang, error chunk).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import httpx

MODEL = "fake-model"
MAX_MODEL_LEN = 4096
OK, HTTP_500, DISCONNECT, HANG, ERROR_CHUNK = "ok", "http500", "disconnect", "hang", "error_chunk"


@dataclass(frozen=True)
class Received:
    """A completion request as the fake server got it (monotonic clock, same process)."""

    body: dict
    received_ts: float


class FakeServer:
    """Streams `max_tokens` tokens: the first chunk after `ttft_s`, then one chunk of
    `tokens_per_chunk` tokens every `itl_s * tokens_per_chunk` seconds. Each token's text
    is `token_text`, sent unescaped as vLLM sends non-ASCII text.

    Like vLLM, /metrics reports each request's prefill time, which is here
    `prefill_s_per_token` per prompt token, on top of a front-end time of `ttft_s` +
    `front_end_s_per_token` per prompt token; with `prefix_hit_fraction`, it also counts
    that share of every prompt as prefix-cache hits, and one preemption per request."""

    def __init__(self, *, ttft_s: float = 0.02, itl_s: float = 0.005, tokens_per_chunk: int = 1,
                 usage: bool = True, plan: Callable[[int, dict], str] | None = None,
                 token_text: str = " tok", prefill_s_per_token: float = 0.0,
                 front_end_s_per_token: float = 0.0, prefix_hit_fraction: float | None = None) -> None:
        self.ttft_s, self.itl_s, self.tokens_per_chunk = ttft_s, itl_s, tokens_per_chunk
        self.prefill_s_per_token, self.front_end_s_per_token = prefill_s_per_token, front_end_s_per_token
        self.prefill_sum_s, self.prefill_count = 0.0, 0
        self.prefix_hit_fraction = prefix_hit_fraction
        self.prompt_tokens_total = 0
        self.token_text = token_text
        self.usage = usage
        self.plan = plan or (lambda index, body: OK)
        self.requests: list[Received] = []
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._started.wait(5), "fake server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        async with server:
            await self._stop.wait()
        # asyncio.run cancels handlers still running (hanging requests).

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(self._one_request, reader, writer)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close."""
        request = await read_request(reader)
        if request is None:
            return False
        method, path, body = request
        if method == "GET" and path == "/v1/models":
            await _send_json(writer, 200, {"object": "list", "data": [
                {"id": MODEL, "object": "model", "max_model_len": MAX_MODEL_LEN}]})
            return True
        if method == "GET" and path == "/version":
            await _send_json(writer, 200, {"version": "fake-1.0"})
            return True
        if method == "GET" and path == "/metrics":
            await _send_text(writer, f"vllm:request_prefill_time_seconds_sum{{engine=\"0\"}} {self.prefill_sum_s}\n"
                                     f"vllm:request_prefill_time_seconds_count{{engine=\"0\"}} {self.prefill_count}\n"
                                     f"vllm:request_queue_time_seconds_sum{{engine=\"0\"}} 0.0\n"
                                     + self._counters())
            return True
        if method != "POST" or path != "/v1/completions":
            await _send_json(writer, 404, {"error": {"message": f"no route {path}"}})
            return True
        request = json.loads(body)
        index = len(self.requests)
        self.requests.append(Received(request, time.monotonic()))
        action = self.plan(index, request)
        if action == HTTP_500:
            await _send_json(writer, 500, {"error": {"message": "engine exploded"}})
            return True
        if action == HANG:
            await asyncio.sleep(3600)
        return await self._stream(writer, request, action)

    def _counters(self) -> str:
        if self.prefix_hit_fraction is None:
            return ""
        return (f"vllm:prefix_cache_queries_total{{engine=\"0\"}} {self.prompt_tokens_total}\n"
                f"vllm:prefix_cache_hits_total{{engine=\"0\"}} {self.prefix_hit_fraction * self.prompt_tokens_total}\n"
                f"vllm:num_preemptions_total{{engine=\"0\"}} {self.prefill_count}\n")

    async def _stream(self, writer: asyncio.StreamWriter, request: dict, action: str) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        prompt = request["prompt"]
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        total = request["max_tokens"]
        options = request.get("stream_options") or {}
        continuous = self.usage and options.get("continuous_usage_stats")
        sent = 0
        prefill_s = self.prefill_s_per_token * prompt_tokens
        await asyncio.sleep(self.ttft_s + self.front_end_s_per_token * prompt_tokens + prefill_s)
        self.prefill_sum_s += prefill_s
        self.prefill_count += 1
        self.prompt_tokens_total += prompt_tokens
        while sent < total:
            count = min(self.tokens_per_chunk, total - sent)
            if sent:
                await asyncio.sleep(self.itl_s * count)
            sent += count
            chunk: dict = {"object": "text_completion", "model": MODEL, "choices": [
                {"index": 0, "text": self.token_text * count,
                 "finish_reason": "length" if sent == total else None}]}
            if continuous:
                chunk["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": sent}
            await _send_event(writer, json.dumps(chunk, ensure_ascii=False))
            if action == DISCONNECT and sent >= 2:
                writer.transport.abort()  # mid-stream, no closing chunk
                return False
            if action == ERROR_CHUNK:
                await _send_event(writer, json.dumps({"error": {"message": "out of memory"}}))
                break
        if self.usage and options.get("include_usage"):
            await _send_event(writer, json.dumps({"choices": [], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": sent}}))
        await _send_event(writer, "[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def serve_connection(one_request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve a keep-alive connection with `one_request(reader, writer)` until it returns False."""
    try:
        while await one_request(reader, writer):
            pass
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | None:
    """Method, path and body of the next HTTP/1.1 request on a connection (None: it closed)."""
    start = await reader.readline()
    if not start:
        return None
    method, path, _ = start.decode().split(" ", 2)
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, path, await reader.readexactly(int(headers.get("content-length", 0)))


async def _send_event(writer: asyncio.StreamWriter, data: str) -> None:
    payload = f"data: {data}\n\n".encode()
    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
    await writer.drain()


async def _send_text(writer: asyncio.StreamWriter, text: str) -> None:
    body = text.encode()
    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, obj: dict) -> None:
    body = json.dumps(obj).encode()
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()


def test_fake_server_streams_exactly_max_tokens():
    with FakeServer(ttft_s=0.0, itl_s=0.0) as server, httpx.Client(trust_env=False) as client:
        body = {"model": MODEL, "prompt": [5, 6, 7], "max_tokens": 4, "stream": True,
                "stream_options": {"include_usage": True}}
        with client.stream("POST", f"{server.url}/v1/completions", json=body) as response:
            data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == " tok" * 4
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4}
