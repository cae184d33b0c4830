"""`kairos serve --api-key`: a bearer token on every /v1 route, as vLLM's --api-key asks.

As in vLLM, only paths under /v1 are guarded (and not CORS preflights):
/health, /metrics, /version and /kairos/* stay open for probes and scrapers.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from kairos.serve.openai_errors import OpenAIError


class BearerAuth:
    """ASGI middleware refusing /v1 requests without `Authorization: Bearer KEY` (401, OpenAI's body)."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and _guarded(scope) \
                and not self._authorized(scope):
            error = OpenAIError(401, "Incorrect or missing API key: send Authorization: Bearer KEY",
                                code="invalid_api_key")
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        # Constant time: how long a wrong key takes to refuse must not say how much of it was right.
        return hmac.compare_digest(given, self._expected)


def _guarded(scope: Scope) -> bool:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path.removeprefix(root).startswith("/v1")
