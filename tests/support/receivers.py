"""Real webhook receivers for tests, and listeners that count who connects to them.

`WebhookReceiver` is an HTTP server on `TEST_HOST` (the one allow-listed address) that answers
from a script, records every request, and can go down (its socket closed: connection refused)
and come back on the same port. `ConnectionCounter` listens on an address the server must never
reach (127.0.0.1, ::1) and counts the connections that arrive anyway.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import TEST_HOST

Answer = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    """One request as it arrived: header names lower case, the raw body, when, what we said."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    answered: int


class WebhookReceiver:
    """Answers POSTs with the next scripted status (then 200), optionally going down after
    `down_after` requests for `down_for` seconds (None: until `up()`)."""

    def __init__(
        self,
        script: Iterable[Answer] = (),
        *,
        down_after: int | None = None,
        down_for: float | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script = list(script)
        self.down_after = down_after
        self.down_for = down_for
        self.delay = delay
        self.requests: list[Received] = []
        self.arrivals = 0  # requests whose headers arrived, answered or not yet
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    # -- control --------------------------------------------------------------------------

    def url(self, path: str = "/hook") -> str:
        return f"http://{TEST_HOST}:{self.port}{path}"

    def up(self) -> None:
        """Listen (again) on the same port."""
        if self._httpd is not None:
            return
        handler = self._handler()
        deadline = time.monotonic() + 10
        while True:
            try:
                httpd = ThreadingHTTPServer((TEST_HOST, self.port), handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()

    def down(self) -> None:
        """Close the listening socket: connections are refused until `up()`."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    close = down

    def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        """Block until `count` requests were answered; return them all."""
        self._wait(lambda: len(self.requests) >= count, f"{count} answered requests", timeout)
        return list(self.requests)

    def wait_for_arrival(self, count: int, timeout: float = 60) -> None:
        """Block until `count` requests arrived (a slow answer may still be pending)."""
        self._wait(lambda: self.arrivals >= count, f"{count} arrivals", timeout)

    def _wait(self, done, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"waited for {what}; got {self.arrivals} arrivals, "
                        f"{len(self.requests)} answered"
                    )
                self._changed.wait(left)

    # -- serving --------------------------------------------------------------------------

    def _answer(self) -> tuple[int, dict[str, str]]:
        answer: Answer = self.script.pop(0) if self.script else 200
        return answer if isinstance(answer, tuple) else (answer, {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._changed:
                    receiver.arrivals += 1
                    receiver._changed.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._changed:
                    status, headers = receiver._answer()
                    receiver.requests.append(
                        Received(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.monotonic(),
                            answered=status,
                        )
                    )
                    count = len(receiver.requests)
                    receiver._changed.notify_all()
                if receiver.down_after is not None and count == receiver.down_after:
                    receiver._outage()  # closed before answering: the retry finds it down
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"ok")
                self.close_connection = True

            def log_message(self, *args):
                pass

        return Handler

    def _outage(self) -> None:
        self.down()
        if self.down_for is not None:
            timer = threading.Timer(self.down_for, self.up)
            timer.daemon = True
            timer.start()


class ConnectionCounter:
    """A TCP listener that accepts, counts and drops every connection."""

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def counters_on_one_port() -> tuple[ConnectionCounter, ConnectionCounter]:
    """Listeners on 127.0.0.1 and [::1] sharing a port number, so one URL port hits either."""
    for _ in range(50):
        v4 = ConnectionCounter("127.0.0.1")
        try:
            v6 = ConnectionCounter("::1", v4.port)
        except OSError:
            v4.close()
            continue
        return v4, v6
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")
