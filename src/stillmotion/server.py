"""How `stillmotion serve` listens: uvicorn's h11 protocol with two guards, and a quiet log when
the process runs out of file descriptors.

uvicorn 0.54 closes an idle keep-alive connection after `timeout_keep_alive`, but has no timeout
for the request headers and no cap on open connections: its `limit_concurrency` answers 503 only
once a request has arrived, so connections that never finish one count against nothing, and
21,000 half-sent requests held a descriptor each until `accept()` failed. `GuardedH11Protocol`
adds:

* a header timeout (`STILLMOTION_HEADER_TIMEOUT_SECONDS`), from the moment a connection opens or
  starts its next request until its headers are complete. When it passes, a connection that sent
  part of a request gets 408 `REQUEST_TIMEOUT` in the API's error body; one that sent nothing is
  closed.
* a connection cap (`STILLMOTION_MAX_CONNECTIONS`). A connection over it makes room by closing the
  one that has waited longest with no request in progress (idle, between keep-alive requests, or
  half-sent); when every connection has a request in progress, the newcomer gets 503
  `SERVER_BUSY`. The cap is kept under the process's file-descriptor limit (`fit_connections`),
  and asyncio's accept burst small beside it (`accept_burst`).

When the process still runs out of descriptors, asyncio reports each failed `accept()` with a
traceback, and CPython 3.11 retries over the whole backlog on every turn of the loop: megabytes
a second. `_LoopErrors` logs that as one line per interval, with a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from http import HTTPStatus
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol

from stillmotion import errors

try:
    import resource
except ImportError:  # pragma: no cover - not Unix
    resource = None  # type: ignore[assignment]

log = logging.getLogger("stillmotion.server")

LOG_EVERY_SECONDS = 10.0
"""A repeated connection event (timeouts, evictions, failed accepts) is logged once per this."""
BUSY_RETRY_AFTER = 1


class _Tally:
    """Logs an event at once, then at most one line per `every` seconds with how many more
    happened meanwhile (so a flood of them costs a line, not a line each)."""

    def __init__(self, level: int, every: float = LOG_EVERY_SECONDS) -> None:
        self.level, self.every = level, every
        self.count = 0
        self.message = ""
        self.window: asyncio.TimerHandle | None = None

    def add(self, loop: asyncio.AbstractEventLoop, message: str) -> None:
        self.message = message
        if self.window is None:
            log.log(self.level, "%s", message)
            self.window = loop.call_later(self.every, self._end_window, loop)
        else:
            self.count += 1

    def _end_window(self, loop: asyncio.AbstractEventLoop) -> None:
        self.window = None
        if self.count:
            log.log(
                self.level, "%s (%d times in the last %g s)", self.message, self.count, self.every
            )
            self.count = 0
            self.window = loop.call_later(self.every, self._end_window, loop)


def raw_response(error: errors.StillmotionError) -> bytes:
    """`error` as a complete HTTP/1.1 response that closes the connection, for answers written
    outside any request (a header timeout, a refused connection)."""
    body = json.dumps(error.body()).encode()
    head = [
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name.lower()}: {value}" for name, value in error.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Guard:
    """What the connections of one server share: the limits and who is waiting longest."""

    def __init__(self, *, header_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        # Connections with no request in progress, the longest waiting first.
        self.waiting: dict[GuardedH11Protocol, None] = {}
        self.timeouts = _Tally(logging.INFO)
        self.evictions = _Tally(logging.WARNING)
        self.refusals = _Tally(logging.WARNING)

    def make_room(self, newcomer: GuardedH11Protocol) -> bool:
        """Close the connection that has waited longest with no request in progress."""
        for conn in list(self.waiting):
            del self.waiting[conn]
            if conn is not newcomer and not conn.transport.is_closing():
                conn.transport.close()
                return True
        return False


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap (see the module)."""

    guard: ClassVar[_Guard]
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio turns Nagle's algorithm off only for sockets it sees as TCP by `sock.proto`;
        # the listening socket made by `config.bind_socket()` has proto 0, so its connections
        # kept Nagle, and a response's headers and body (two writes) met the client's delayed
        # ACK: 40 ms per keep-alive request, every GET capped at ~720/s.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        guard = self.guard
        if len(self.connections) > guard.max_connections:
            if guard.make_room(self):
                guard.evictions.add(
                    self.loop,
                    f"{guard.max_connections} connections open (STILLMOTION_MAX_CONNECTIONS): "
                    "closed the longest idle one to make room",
                )
            else:
                guard.refusals.add(
                    self.loop,
                    f"{guard.max_connections} connections open (STILLMOTION_MAX_CONNECTIONS), "
                    "all busy: refused a new one with 503",
                )
                transport.write(raw_response(errors.ServerBusy(retry_after=BUSY_RETRY_AFTER)))
                transport.close()
                return
        guard.waiting[self] = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:  # the headers are not complete yet
            self._arm_header_timer()
        else:
            self._cancel_header_timer()
            self.guard.waiting.pop(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            # Idle between requests (uvicorn's keep-alive timer runs): the newest waiter.
            self.guard.waiting.pop(self, None)
            self.guard.waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.guard.waiting.pop(self, None)
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.guard.header_timeout, self._header_timeout
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial, _ = self.conn.trailing_data
        if partial:
            self.transport.write(raw_response(errors.RequestTimeout()))
        self.transport.close()
        self.guard.timeouts.add(
            self.loop,
            f"closed a connection that sent no complete request headers in "
            f"{self.guard.header_timeout:g} s (STILLMOTION_HEADER_TIMEOUT_SECONDS)",
        )


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A protocol class for one server, its connections sharing one `_Guard`."""
    guard = _Guard(header_timeout=header_timeout, max_connections=max_connections)
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


LISTEN_BACKLOG = 2048
"""Connections the kernel queues for `accept()` (they hold no descriptor of ours there)."""


def accept_burst(max_connections: int) -> int:
    """How many connections asyncio accepts in one go, before the guard sees any of them.

    asyncio takes this from `create_server(backlog=…)`, so uvicorn is given this and the socket
    is then put back to `LISTEN_BACKLOG` (`_Server.startup`): a short kernel queue would make
    clients under a flood wait for SYN retries, seconds each."""
    return max(16, min(511, max_connections // 8))


def files_needed(max_connections: int) -> int:
    """Descriptors for `max_connections` clients, the accept bursts of the few turns of the
    loop before the guard sees a new connection, and everything else (the database, media
    being served, renders, logs)."""
    return max_connections + 4 * accept_burst(max_connections) + 64 + max_connections // 8


def fit_connections(configured: int) -> int:
    """`configured`, or less when the process may not open `files_needed(configured)` files.

    The soft file-descriptor limit is first raised towards the hard one as far as `configured`
    needs (as Go's runtime does); a cap that still does not fit is lowered, with a warning."""
    if resource is None:  # pragma: no cover
        return configured
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = files_needed(configured)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return configured
    raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (ValueError, OSError):
        pass
    fitted = configured
    while fitted > 1 and files_needed(fitted) > soft:
        fitted = max(1, min(fitted - 1, fitted * soft // files_needed(fitted)))
    if fitted < configured:
        log.warning(
            "STILLMOTION_MAX_CONNECTIONS=%d lowered to %d: this process may open %d files "
            "(ulimit -n); raise that limit to allow more connections",
            configured,
            fitted,
            soft,
        )
    return fitted


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)


class _LoopErrors:
    """The event loop's exception handler: failed accepts become one line per interval."""

    def __init__(self) -> None:
        self.accepts = _Tally(logging.ERROR)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and context.get("message", "").startswith("socket.accept()"):
            self.accepts.add(
                loop,
                f"accept() failed: {exc.strerror} (errno {exc.errno}); new connections wait "
                "until descriptors are free. Raise the file-descriptor limit (ulimit -n) or "
                "lower STILLMOTION_MAX_CONNECTIONS",
            )
            return
        loop.default_exception_handler(context)


def run(app: Any, *, host: str, port: int, settings: Any) -> None:
    """Serve `app` like `uvicorn.run`, with the guards above and the settings' timeouts."""
    max_connections = fit_connections(settings.max_connections)
    protocol = guarded_protocol(
        header_timeout=settings.header_timeout_seconds, max_connections=max_connections
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        backlog=accept_burst(max_connections),
        log_level="info",
        access_log=False,  # ours is `stillmotion.access` (accesslog.py): no query strings
        timeout_keep_alive=settings.keepalive_seconds,
    )
    server = _Server(config)
    sock = config.bind_socket()

    async def serve() -> None:
        asyncio.get_running_loop().set_exception_handler(_LoopErrors())
        await server.serve(sockets=[sock])

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve())
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles SIGINT itself
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
