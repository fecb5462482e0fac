"""The access log: one JSON line per HTTP request on the `stillmotion.access` logger.

    {"method": "GET", "path": "/v1/account", "status": 200, "ms": 3.1,
     "account": "acc_…", "request_id": "9f…", "client": "127.0.0.1"}

Never logged: headers (so no `Authorization` or `X-API-Key`), the query string, or bodies. The
path is cut to `MAX_PATH` characters, and JSON escapes anything a client could use to forge a line.
`account` is the authenticated caller's account (None before or without authentication).

Each response carries `X-Request-ID`: the caller's own when it is a short token (a proxy's id,
say), otherwise a new one, so a support request can name the log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("stillmotion.access")

MAX_PATH = 256
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class AccessLog:
    """ASGI middleware, outermost: times each request and logs it once it has been answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid = request_id(scope)
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = (scope.get("state") or {}).get("principal")
            client = scope.get("client")
            log.info(
                "%s",
                json.dumps(
                    {
                        "method": scope["method"],
                        "path": scope["path"][:MAX_PATH],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                        "account": getattr(principal, "account_id", None),
                        "request_id": rid,
                        "client": client[0] if client else None,
                    }
                ),
            )
