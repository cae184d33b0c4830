"""HTTP side of the benchmark: probe an OpenAI-compatible server, stream and time completions.

On aiohttp, as vLLM's own benchmark client: measured on loopback against
`kairos serve`, httpx added about 1 ms of client time to every request's TTFT
(6.1-6.3 ms against 5.0-5.3 ms for the same requests; a raw socket 4.6 ms), and
on a small machine the load generator's CPU time per token also competes with
the server it measures.
"""

from __future__ import annotations

import asyncio
import errno
import json
import time
from dataclasses import dataclass
from typing import Any, Self

import aiohttp

from kairos.bench.engine_steps import ENGINE_PATH
from kairos.bench.stream import SSELines, StreamError, StreamResult, one_line, sse_data
from kairos.errors import KairosError
from kairos.workload.spec import RequestSpec

PROBE_TIMEOUT_S = 10.0
# Seconds a client keeps an idle connection open (below uvicorn's default keep-alive of 5 s).
KEEPALIVE_S = 4.0


def normalize_url(url: str) -> str:
    """The server's base URL: no trailing slash and no trailing /v1 (endpoints add it)."""
    base = url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise KairosError(f"--url must start with http:// or https://, got '{url}'")
    base = base.removesuffix("/v1")
    return base


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one, where the OS has such limits.

    Each request in flight holds a socket; an open-loop burst can have thousands,
    and the common soft limit of 1024 would fail the rest as connection errors.
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit to lift
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # macOS refuses an infinite soft limit; 65536 sockets is more than any run needs.
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; failures would show as connection errors


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server says about itself: its /v1/models entries, /version and, from
    `kairos serve`, its engine settings (/kairos/engine), where it has them."""

    models: list[dict[str, Any]]
    version: str | None
    engine: dict[str, Any] | None = None

    @property
    def model_ids(self) -> list[str]:
        return [str(m["id"]) for m in self.models if "id" in m]

    def model_entry(self, model: str) -> dict[str, Any]:
        return next((m for m in self.models if m.get("id") == model), {})


class CompletionClient:
    """Streams /v1/completions requests and records when each token arrives.

    Every request runs under one total timeout; whatever goes wrong with a request
    (HTTP error, timeout, disconnect, error chunk) becomes its `error`, never an
    exception, so one bad request cannot end a run.
    """

    def __init__(self, base_url: str, *, timeout_s: float, api_key: str | None = None,
                 max_connections: int | None = None) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # An open-loop benchmark must not queue requests on the client side (aiohttp
        # caps a session at 100 connections by default), so the cap is the user's.
        # Idle connections are dropped before uvicorn's 5-second keep-alive (vLLM's, Kairos')
        # closes them: reusing one the server is closing fails the request ("Server disconnected").
        connector = aiohttp.TCPConnector(limit=self._max_connections or 0, keepalive_timeout=KEEPALIVE_S)
        # Each request's whole time is bounded by asyncio.timeout in stream().
        self._session = aiohttp.ClientSession(headers=self._headers, connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=None))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use CompletionClient as an async context manager")
        return self._session

    async def probe(self) -> ServerInfo:
        """Check the server answers; a KairosError in one line when it does not."""
        url = f"{self.base_url}/v1/models"
        wait_s = min(PROBE_TIMEOUT_S, self.timeout_s)
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=wait_s)) as response:
                status, content = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise KairosError(f"cannot reach {self.base_url}: {_connect_problem(exc)}") from None
        except TimeoutError:
            raise KairosError(f"cannot reach {self.base_url}: no answer within {wait_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise KairosError(f"cannot reach {self.base_url}: {_describe(exc)}") from None
        if status in (401, 403):
            raise KairosError(f"{url} answered HTTP {status}: pass --api-key")
        models: list[dict[str, Any]] = []
        if status == 200:
            data = _json_or_none(content)
            entries = data.get("data") if isinstance(data, dict) else None
            models = [m for m in entries or [] if isinstance(m, dict)]
        return ServerInfo(models, await self._version(), await self.get_json(ENGINE_PATH))

    async def stream(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> StreamResult:
        """POST one streaming completion (with extra `headers`); the result carries its timing or its failure."""
        payload = json.dumps(body).encode()
        result = StreamResult(sent_ts=time.monotonic())
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._stream_into(result, payload, headers or {})
        except TimeoutError:
            result.error = f"timeout after {self.timeout_s:g} s"
        except aiohttp.ClientConnectorError as exc:
            result.error = f"connection failed: {_connect_problem(exc)}"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            result.error = f"disconnected: {_describe(exc)}"
        except aiohttp.ClientError as exc:
            result.error = f"{type(exc).__name__}: {_describe(exc)}"
        except StreamError as exc:
            result.error = f"server error: {exc}"
        except json.JSONDecodeError:
            result.error = "bad stream: a data line is not JSON"
        return result

    async def _stream_into(self, result: StreamResult, payload: bytes, extra: dict[str, str]) -> None:
        url = f"{self.base_url}/v1/completions"
        headers = {"Content-Type": "application/json", **extra}
        async with self._http.post(url, data=payload, headers=headers) as response:
            if response.status >= 400:
                result.error = _http_error(response.status, await response.read())
                return
            lines = SSELines()
            async for raw in response.content.iter_any():
                if self._take_lines(result, lines.feed(raw)):
                    return
            if self._take_lines(result, lines.close()):
                return
        # Some servers close without [DONE]; a finish reason still marks a full answer.
        if result.finish_reason is None:
            result.error = "incomplete stream: ended before [DONE]"

    @staticmethod
    def _take_lines(result: StreamResult, lines: list[str]) -> bool:
        """Adds the lines' chunks to `result`; True once the stream says [DONE]."""
        for line in lines:
            data = sse_data(line)
            if data is None:
                continue
            if data == "[DONE]":
                return True
            chunk = json.loads(data)
            if isinstance(chunk, dict):
                result.add_chunk(chunk, time.monotonic())
        return False

    async def _version(self) -> str | None:
        """vLLM's GET /version ({"version": "0.19.0"}); None where the server has none."""
        data = await self.get_json("/version")
        version = data.get("version") if data is not None else None
        return str(version) if version is not None else None

    async def get_json(self, path: str) -> dict[str, Any] | None:
        """An optional JSON object the server may expose; None where it does not."""
        content = await self._get_content(path)
        data = _json_or_none(content) if content is not None else None
        return data if isinstance(data, dict) else None

    async def get_text(self, path: str) -> str | None:
        """An optional text page the server may expose (/metrics); None where it does not."""
        content = await self._get_content(path)
        return content.decode(errors="replace") if content is not None else None

    async def _get_content(self, path: str) -> bytes | None:
        wait = aiohttp.ClientTimeout(total=min(PROBE_TIMEOUT_S, self.timeout_s))
        try:
            async with self._http.get(f"{self.base_url}{path}", timeout=wait) as response:
                return await response.read() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None


def _http_error(status: int, body: bytes) -> str:
    data = _json_or_none(body)
    message: Any = body.decode(errors="replace")
    if isinstance(data, dict):
        error = data.get("error")
        message = (error.get("message") if isinstance(error, dict) else error) \
            or data.get("detail") or data.get("message") or message
    detail = one_line(str(message))
    return f"HTTP {status}: {detail}" if detail else f"HTTP {status}"


def _connect_problem(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc.os_error, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return _describe(exc) or "connection failed"


def _describe(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def completion_body(spec: RequestSpec, model: str, prompt: list[int] | str,
                    exact_lengths: bool) -> dict[str, Any]:
    """The /v1/completions request of one spec (streaming, with usage in every chunk)."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": spec.output_len,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    if exact_lengths:
        # vLLM and SGLang accept these extra sampling fields; without them a model
        # that emits EOS early would make output lengths differ from the workload's.
        body.update(ignore_eos=True, min_tokens=spec.output_len)
    if spec.tenant is not None:
        body["user"] = spec.tenant
    if spec.priority != 0:
        # vLLM refuses a non-zero priority unless it runs --scheduling-policy priority.
        body["priority"] = spec.priority
    return body


def class_headers(spec: RequestSpec) -> dict[str, str]:
    """The x-slo-* headers that tell `kairos serve` a request's class (other servers ignore them)."""
    headers: dict[str, str] = {}
    if spec.slo_class is not None:
        headers["x-slo-class"] = spec.slo_class
    if spec.slo is not None:
        for name, value in (("ttft", spec.slo.ttft_ms), ("tpot", spec.slo.tpot_ms), ("e2e", spec.slo.e2e_ms)):
            if value is not None:
                headers[f"x-slo-{name}-ms"] = repr(float(value))
    if spec.deadline_s is not None:
        headers["x-deadline-s"] = repr(float(spec.deadline_s))
    return headers
