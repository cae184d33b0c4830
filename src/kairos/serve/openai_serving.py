"""The completions and chat completions endpoints: request -> engine request -> OpenAI response or SSE stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kairos.serve.engine_loop import EngineLoop, RequestRejected, RequestStream
from kairos.serve.engine_worker import GenerationRequest
from kairos.serve.openai_chat import ChatTemplate, ChatTemplateError
from kairos.serve.openai_detokenize import IncrementalDetokenizer
from kairos.serve.openai_errors import OpenAIError
from kairos.serve.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ResponseBuilder,
    SamplingRequest,
    usage,
)
from kairos.serve.openai_stop import StopStringMatcher
from kairos.serve.request_class import HeaderError, served_class
from kairos.serve.sampler import SamplingParams
from kairos.serve.tokenizer import Tokenizer

logger = logging.getLogger("kairos.serve")

DONE = "data: [DONE]\n\n"


@dataclass(frozen=True)
class ServedModel:
    """What the endpoints need to know of the model they serve."""

    name: str
    tokenizer: Tokenizer
    vocab_size: int
    # Longest prompt + output one request may have (the context, capped by the KV pool).
    max_model_len: int
    chat_template: ChatTemplate


class TextOutput:
    """One request's output text: incremental detokenization, then stop strings."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]) -> None:
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._stops = StopStringMatcher(stops)
        self.stopped = False  # a stop string ended the output

    @property
    def token_ids(self) -> list[int]:
        return self._detokenizer.ids

    @property
    def num_tokens(self) -> int:
        return len(self._detokenizer.ids)

    def add(self, token_id: int) -> str:
        """Text safe to emit after `token_id` (empty while a character or a possible stop string is incomplete)."""
        text, self.stopped = self._stops.push(self._detokenizer.add(token_id))
        return text

    def finish(self) -> str:
        """The text still held when the engine ended the request."""
        text, self.stopped = self._stops.push(self._detokenizer.flush())
        return text if self.stopped else text + self._stops.flush()


class OpenAIServing:
    """Serves /v1/completions and /v1/chat/completions from an EngineLoop."""

    def __init__(self, engine: EngineLoop, model: ServedModel) -> None:
        self.engine = engine
        self.model = model

    async def completion(self, body: CompletionRequest, raw: Request) -> Response:
        arrival = time.perf_counter()
        self._check_request(body)
        prompt_ids = self._completion_prompt(body)
        return await self._generate("completion", body, prompt_ids, body.max_tokens, raw, arrival)

    async def chat(self, body: ChatCompletionRequest, raw: Request) -> Response:
        arrival = time.perf_counter()
        self._check_request(body)
        try:
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            text = self.model.chat_template.render(messages)
        except (ValueError, ChatTemplateError) as exc:
            raise OpenAIError(400, str(exc), param="messages") from None
        template = self.model.chat_template
        prompt_ids = self.model.tokenizer.encode(text, add_bos=template.add_bos)
        return await self._generate("chat", body, prompt_ids, body.output_limit, raw, arrival)

    # ---- request checks --------------------------------------------------------------
    def _check_request(self, body: SamplingRequest) -> None:
        if body.model is not None and body.model != self.model.name:
            raise OpenAIError(404, f"The model `{body.model}` does not exist (this server serves "
                                   f"`{self.model.name}`).", param="model", code="model_not_found")
        problem = body.unsupported()
        if problem is not None:
            raise OpenAIError(400, problem[1], param=problem[0])

    def _completion_prompt(self, body: CompletionRequest) -> list[int]:
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            # A list of prompts is a batch; a batch of one is just that prompt.
            if len(prompt) != 1:
                raise OpenAIError(400, "batched prompts are not supported: send one prompt per request",
                                  param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = self.model.tokenizer.encode(prompt, add_bos=True)
        else:
            ids = [int(t) for t in prompt]  # type: ignore[arg-type]
        if not ids:
            raise OpenAIError(400, "the prompt is empty", param="prompt")
        vocab = self.model.vocab_size
        if not all(0 <= t < vocab for t in ids):
            raise OpenAIError(400, f"prompt token ids must be in [0, {vocab})", param="prompt")
        return ids

    def _output_limit(self, prompt_len: int, requested: int | None) -> int:
        """max_tokens, or all the context leaves when none was asked; 413 past the context."""
        limit = self.model.max_model_len
        if requested is None:
            if prompt_len >= limit:
                raise OpenAIError(413, f"the prompt ({prompt_len} tokens) fills the context ({limit} tokens)",
                                  param="messages", code="context_length_exceeded")
            return limit - prompt_len
        if prompt_len + requested > limit:
            raise OpenAIError(413, f"prompt ({prompt_len} tokens) + max_tokens ({requested}) exceeds the "
                                   f"context of {limit} tokens", param="max_tokens", code="context_length_exceeded")
        return requested

    # ---- generation ------------------------------------------------------------------
    async def _generate(self, kind: Literal["completion", "chat"], body: SamplingRequest, prompt_ids: list[int],
                        max_tokens: int | None, raw: Request, arrival: float) -> Response:
        limit = self._output_limit(len(prompt_ids), max_tokens)
        if body.min_tokens > limit:
            raise OpenAIError(400, f"min_tokens ({body.min_tokens}) exceeds max_tokens ({limit})",
                              param="min_tokens")
        eos = self.model.tokenizer.eos_token_id
        stop_ids = set(body.stop_token_ids or ())
        if eos is not None and not body.ignore_eos:
            stop_ids.add(eos)
        try:
            served = served_class(body.user, raw.headers)
        except HeaderError as exc:
            raise OpenAIError(400, str(exc), param=exc.header) from None
        request_id = f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}"
        sampling = SamplingParams(body.temperature, body.top_p, max(body.top_k, 0), body.seed)
        request = GenerationRequest(request_id, tuple(prompt_ids), sampling, limit, frozenset(stop_ids),
                                    body.min_tokens, body.priority, served, arrival)
        stream = self.engine.submit(request)
        try:
            await stream.accepted()
        except RequestRejected as exc:
            raise OpenAIError.from_rejection(exc) from None
        except BaseException:
            stream.abort()
            raise
        call = _Call(ResponseBuilder(kind, request_id, self.model.name), prompt_ids,
                     TextOutput(self.model.tokenizer, body.stop_strings), body.return_token_ids,
                     raw.url.path, arrival)
        if body.stream:
            options = body.stream_options
            events = self._events(stream, call, raw, include_usage=bool(options and options.include_usage),
                                  continuous=bool(options and options.continuous_usage_stats))
            return StreamingResponse(events, media_type="text/event-stream")
        return await self._complete(stream, call, raw)

    async def _complete(self, stream: RequestStream, call: _Call, raw: Request) -> Response:
        parts: list[str] = []
        watcher = _watch_disconnect(raw, stream.abort)
        try:
            async for update in stream:
                for _, text, finish in call.texts(update.token_ids, update.finish_reason):
                    parts.append(text)
                    call.finish_reason = finish
                if call.finish_reason is not None:
                    break
        except RequestRejected as exc:
            call.error = str(exc)
            raise OpenAIError.from_rejection(exc) from None
        finally:
            watcher.cancel()
            stream.abort()  # frees the engine's copy when a stop string ended the output early
            call.log()
        if call.finish_reason is None:
            return Response(status_code=499)  # the client is gone; nobody reads this
        text = "".join(parts)
        return JSONResponse(call.builder.full(text, call.finish_reason, call.prompt_ids, call.output.token_ids,
                                              call.with_token_ids))

    async def _events(self, stream: RequestStream, call: _Call, raw: Request, include_usage: bool,
                      continuous: bool) -> AsyncIterator[str]:
        """One SSE event per generated token (its text may be empty), then usage and [DONE]."""
        builder = call.builder
        watcher = _watch_disconnect(raw, stream.abort)
        try:
            if builder.kind == "chat":
                yield _sse(builder.chunk(None, role=True, usage_so_far=usage(call.prompt_tokens, 0)
                                         if continuous else None))
            async for update in stream:
                for token, text, finish in call.texts(update.token_ids, update.finish_reason):
                    so_far = usage(call.prompt_tokens, call.output.num_tokens) if continuous else None
                    ids = [token] if call.with_token_ids else None
                    yield _sse(builder.chunk(text, finish, token_ids=ids, usage_so_far=so_far))
                    call.finish_reason = finish
                if call.finish_reason is not None:
                    break
            if call.finish_reason is None:
                return  # aborted: the client disconnected
            if include_usage:
                yield _sse(builder.usage_chunk(call.prompt_tokens, call.output.num_tokens))
            yield DONE
        except RequestRejected as exc:  # the engine failed or shut down mid-stream: say so in-band
            call.error = str(exc)
            yield _sse(OpenAIError.from_rejection(exc).body())
            yield DONE
        finally:
            watcher.cancel()
            stream.abort()
            call.log()


@dataclass
class _Call:
    """One request in flight on the HTTP side."""

    builder: ResponseBuilder
    prompt_ids: list[int]
    output: TextOutput
    with_token_ids: bool
    path: str
    arrival: float
    finish_reason: str | None = None
    error: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def texts(self, token_ids: list[int], engine_finish: str | None) -> list[tuple[int, str, str | None]]:
        """(token, its text, finish reason or None) per token of an update, cut after a stop string."""
        out: list[tuple[int, str, str | None]] = []
        last = len(token_ids) - 1
        for i, token in enumerate(token_ids):
            text = self.output.add(token)
            if self.output.stopped:
                out.append((token, text, "stop"))
                break
            if i == last and engine_finish is not None:
                text += self.output.finish()
                out.append((token, text, "stop" if self.output.stopped else engine_finish))
                break
            out.append((token, text, None))
        return out

    def log(self) -> None:
        ms = (time.perf_counter() - self.arrival) * 1e3
        outcome = self.finish_reason or (f"failed: {self.error}" if self.error else "aborted (client disconnected)")
        logger.info("%s %s prompt=%d completion=%d finish=%s e2e=%.1fms", self.builder.request_id, self.path,
                    self.prompt_tokens, self.output.num_tokens, outcome, ms)


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _watch_disconnect(raw: Request, on_disconnect: Callable[[], None]) -> asyncio.Task[None]:
    """A task that calls `on_disconnect` when the client goes away.

    The body has been read, so the next ASGI message can only be the disconnect.
    Nothing else watches a non-streaming request, and under ASGI 2.4 servers
    Starlette notices a gone client only when it next writes: a stream still
    waiting for its first token would hold its place (and KV blocks) until then.
    """

    async def watch() -> None:
        while (await raw.receive())["type"] != "http.disconnect":
            pass
        on_disconnect()

    return asyncio.create_task(watch())
