"""OpenAI-style error bodies, {"error": {"message", "type", "param", "code"}}, and the app's exception handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kairos.serve.engine_loop import RequestRejected
from kairos.serve.engine_worker import ENGINE_FAILED, QUEUE_FULL, SHUTTING_DOWN, TOO_LARGE

logger = logging.getLogger("kairos.serve")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}
# Engine refusals as HTTP statuses.
_REJECTION_STATUS = {QUEUE_FULL: 429, TOO_LARGE: 413, SHUTTING_DOWN: 503, ENGINE_FAILED: 500}


class OpenAIError(Exception):
    """A request error with its HTTP status, sent to the client as an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @classmethod
    def from_rejection(cls, exc: RequestRejected) -> OpenAIError:
        return cls(_REJECTION_STATUS.get(exc.reason, 500), str(exc), code=exc.reason)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def install_error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own 422 validation errors and 404/405 included, leaves as an OpenAI body."""

    async def openai_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OpenAIError)
        logger.info("%s %s -> %d %s", request.method, request.url.path, exc.status, exc.message)
        return exc.response()

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await openai_error(request, _from_validation(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return await openai_error(request, OpenAIError(exc.status_code, str(exc.detail)))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: the one case that deserves a traceback.
        logger.exception("%s %s failed", request.method, request.url.path)
        return OpenAIError(500, f"internal error: {type(exc).__name__}: {exc}").response()

    app.add_exception_handler(OpenAIError, openai_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _from_validation(exc: RequestValidationError) -> OpenAIError:
    """The first pydantic error as a 400 naming the offending field."""
    errors = list(exc.errors())
    if not errors:
        return OpenAIError(400, "invalid request body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return OpenAIError(400, f"malformed JSON body{': ' + str(detail) if detail else ''}")
    loc = tuple(first.get("loc", ()))[1:]  # drop "body"
    # A union field fails once per branch, each error's loc naming its branch type there:
    # report the types the field accepts rather than the first branch's complaint.
    tag = next((i for i, part in enumerate(loc) if _is_type_tag(part)), None)
    if tag is not None:
        prefix = loc[:tag]
        branches = list(dict.fromkeys(str(e["loc"][1:][tag]) for e in errors
                                      if tuple(e["loc"][1:][:tag]) == prefix and len(e["loc"]) > tag + 1))
        param = ".".join(str(p) for p in prefix) or None
        if len(branches) > 1:
            return OpenAIError(400, f"{param}: expected {' or '.join(branches)}", param=param)
        loc = prefix + loc[tag + 1:]
    param = ".".join(str(p) for p in loc) or None
    message = str(first.get("msg", "invalid value"))
    return OpenAIError(400, f"{param}: {message}" if param else message, param=param)


def _is_type_tag(part: object) -> bool:
    """Whether a loc entry names a union branch (str, list[int], ContentPart) rather than a field."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part or part[:1].isupper())
