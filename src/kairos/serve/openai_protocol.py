"""OpenAI request bodies (with vLLM's sampling extensions) and the response objects built from a generation.

Types are strict, as OpenAI's API is: "5" is not a max_tokens, true is not a
token id. Unknown fields are ignored, so clients that send newer OpenAI fields
still work. Not implemented, and refused with 400 when set: n > 1, best_of > 1,
echo, suffix, logprobs.

Stopping: `stop` strings end the output before the first match (the match is
not returned). EOS and `stop_token_ids` end it after the stop token, which
counts in usage (EOS decodes to no text). Under `min_tokens`, a stop token
sampled too early does not end the request; vLLM instead masks it out, so
there it is never sampled at all.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StreamOptions(BaseModel):
    """`stream_options`: a closing usage chunk, or (vLLM) usage in every chunk."""

    model_config = ConfigDict(strict=True, extra="ignore")

    include_usage: bool = False
    continuous_usage_stats: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by completions and chat completions; max_tokens None means what the context leaves."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=-1)  # vLLM extension; 0 or -1 turn it off
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None  # vLLM extension
    ignore_eos: bool = False  # vLLM extension
    min_tokens: int = Field(default=0, ge=0)  # vLLM extension: no stop before this many tokens
    priority: int = 0  # vLLM extension: lower runs first under --policy priority
    user: str | None = None  # OpenAI's end-user id: the request's tenant (unless x-tenant says otherwise)
    return_token_ids: bool = False  # vLLM extension: prompt and output token ids in each choice

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # Many clients send `"temperature": null` for "not given".
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @property
    def stop_strings(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return [s for s in stops if s]

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a set field this server does not implement, else None."""
        if self.n != 1:
            return "n", "only n=1 is supported"
        return None


class CompletionRequest(SamplingRequest):
    """POST /v1/completions. `prompt` is text or token ids; a list of several prompts is refused."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's (and vLLM's) completions default
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None

    def unsupported(self) -> tuple[str, str] | None:
        for param, is_set in (("echo", self.echo), ("suffix", self.suffix is not None),
                              ("best_of", self.best_of not in (None, 1)), ("logprobs", self.logprobs is not None)):
            if is_set:
                return param, f"{param} is not supported"
        return super().unsupported()


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are supported."""

    model_config = ConfigDict(strict=True, extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """A chat message: a role and text content (a string or a list of text parts)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content parts of type '{part.type}' are not supported (text only)")
        return "".join(part.text or "" for part in self.content)


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions. `max_completion_tokens` is the newer name of max_tokens."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def unsupported(self) -> tuple[str, str] | None:
        if self.logprobs:
            return "logprobs", "logprobs is not supported"
        return super().unsupported()


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class ResponseBuilder:
    """Builds the response objects of one request: full responses and stream chunks alike."""

    def __init__(self, kind: Literal["completion", "chat"], request_id: str, model: str) -> None:
        self.kind = kind
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {"id": self.request_id, "object": obj, "created": self.created, "model": self.model}

    def full(self, text: str, finish_reason: str | None, prompt_ids: list[int], output_ids: list[int],
             with_token_ids: bool = False) -> dict[str, Any]:
        if self.kind == "completion":
            body = self._envelope("text_completion")
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        else:
            body = self._envelope("chat.completion")
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish_reason}
        if with_token_ids:
            choice["prompt_token_ids"] = prompt_ids
            choice["token_ids"] = output_ids
        body["choices"] = [choice]
        body["usage"] = usage(len(prompt_ids), len(output_ids))
        return body

    def chunk(self, text: str | None, finish_reason: str | None = None, role: bool = False,
              token_ids: list[int] | None = None, usage_so_far: dict[str, int] | None = None) -> dict[str, Any]:
        """A stream chunk with `text` (chat: `role` puts the assistant role in the delta instead)."""
        if self.kind == "completion":
            body = self._envelope("text_completion")
            choice: dict[str, Any] = {"index": 0, "text": text or "", "logprobs": None,
                                      "finish_reason": finish_reason}
        else:
            body = self._envelope("chat.completion.chunk")
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None and not role:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if token_ids is not None:
            choice["token_ids"] = token_ids
        body["choices"] = [choice]
        if usage_so_far is not None:
            body["usage"] = usage_so_far
        return body

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The closing chunk of include_usage: no choices, the request's usage."""
        obj = "text_completion" if self.kind == "completion" else "chat.completion.chunk"
        body = self._envelope(obj)
        body["choices"] = []
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body
