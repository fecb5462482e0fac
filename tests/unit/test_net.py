"""The safe outbound fetcher against real HTTP servers on loopback.

Every test runs with a guard on `socket.socket.connect` that records each connection attempt and
refuses anything but loopback, so a bug can never send traffic off this machine. Made-up host
names are answered by a fake `socket.getaddrinfo`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from stillmotion import net
from stillmotion.errors import ImageFetchFailed, PayloadTooLarge, UrlNotAllowed

LOOPBACK = net.parse_networks("127.0.0.0/8")
ONLY_2 = net.parse_networks("127.0.0.2/32")

Respond = Callable[[BaseHTTPRequestHandler], None]


# --- real servers -----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], handler: type, family: socket.AddressFamily):
        self.address_family = family
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up on purpose (size cap, timeout) is not a failure


@contextmanager
def serve(host: str, respond: Respond, *, port: int = 0, tls: ssl.SSLContext | None = None):
    """A real HTTP server on `host`, answering every request with `respond`; records requests."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.server.requests.append((self.command, self.path, headers, body))  # type: ignore[attr-defined]
            respond(self)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = _Server((host, port), Handler, family)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def reply(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Respond:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


@contextmanager
def trap(host: str, port: int = 0) -> Iterator[socket.socket]:
    """A listening socket that is never served: `connections(trap)` counts who reached it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, port))
    sock.listen(16)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def port_of(thing: socket.socket | _Server) -> int:
    if isinstance(thing, _Server):
        return thing.server_address[1]
    return thing.getsockname()[1]


@contextmanager
def pair(respond: Respond) -> Iterator[tuple[_Server, socket.socket, int]]:
    """A server on 127.0.0.2 and a trap on 127.0.0.1, both on the same port."""
    with ExitStack() as stack:
        for _ in range(20):
            server = stack.enter_context(serve("127.0.0.2", respond))
            try:
                sock = stack.enter_context(trap("127.0.0.1", port_of(server)))
            except OSError:
                continue
            yield server, sock, port_of(server)
            return
    pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")


# --- guards and fakes -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address a socket tried to connect to; non-loopback ones are refused."""
    seen: list[str] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: tuple) -> None:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
        seen.append(str(ip))
        if not ip.is_loopback:
            raise OSError("test guard: only loopback may be reached")
        real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


class FakeDNS:
    """Answers made-up names; a name given several answers uses them in turn, then the last."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.calls: list[str] = []

    def add(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def lookup(self, name: str, port: int) -> list:
        self.calls.append(name)
        answers = self.answers[name]
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ips = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in ips
        ]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name in fake.answers:
            return fake.lookup(name, port)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


def fetch(url: str, **kwargs: object) -> net.FetchResult:
    kwargs.setdefault("max_bytes", 1 << 20)
    return asyncio.run(net.fetch(url, **kwargs))  # type: ignore[arg-type]


def post(url: str, **kwargs: object) -> net.FetchResult:
    kwargs.setdefault("content", b"{}")
    kwargs.setdefault("headers", {"Content-Type": "application/json"})
    return asyncio.run(net.post(url, **kwargs))  # type: ignore[arg-type]


def post_sync(url: str, **kwargs: object) -> net.FetchResult:
    kwargs.setdefault("content", b"{}")
    kwargs.setdefault("headers", {"Content-Type": "application/json"})
    return net.post_sync(url, **kwargs)  # type: ignore[arg-type]


def check(url: str, **kwargs: object) -> list[str]:
    return net.check_url(url, **kwargs)  # type: ignore[arg-type]


CALLS = {"check_url": check, "fetch": fetch, "post": post, "post_sync": post_sync}


# --- the SSRF matrix --------------------------------------------------------------------------

MATRIX = [
    "http://127.0.0.1:{p}/",
    "http://localhost:{p}/",
    "http://[::1]:{p6}/",
    "http://0.0.0.0:{p}/",
    "http://[::]:{p6}/",
    "http://10.0.0.1:{p}/",
    "http://172.16.0.1:{p}/",
    "http://192.168.1.1:{p}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1:{p}/",
    "http://198.18.0.1:{p}/",
    "http://224.0.0.1:{p}/",
    "http://255.255.255.255:{p}/",
    "http://[::ffff:127.0.0.1]:{p}/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00::1]:{p}/",
    "http://[fe80::1]:{p}/",
    "http://[64:ff9b::7f00:1]:{p}/",
    "http://[2002:7f00:1::1]:{p}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/",
    "http://2130706433:{p}/",
    "http://0177.0.0.1:{p}/",
    "http://0x7f.0.0.1:{p}/",
    "http://0x7f000001:{p}/",
    "http://127.1:{p}/",
    "http://internal.example:{p}/",
    "http://sneaky.example:{p}/",
    "https://127.0.0.1:{p}/",
    "http://user:secret@127.0.0.1:{p}/",
    "file:///etc/passwd",
    "ftp://127.0.0.1:{p}/",
    "gopher://127.0.0.1:{p}/_GET%20/",
    "data:image/png;base64,AAAA",
    "//127.0.0.1:{p}/",
    "http:///path",
]


@pytest.fixture
def traps(dns: FakeDNS) -> Iterator[tuple[socket.socket, socket.socket | None]]:
    dns.add("internal.example", ["127.0.0.1"])
    dns.add("sneaky.example", ["93.184.216.34", "127.0.0.1"])  # one public answer is not enough
    with ExitStack() as stack:
        v4 = stack.enter_context(trap("127.0.0.1"))
        try:
            v6 = stack.enter_context(trap("::1"))
        except OSError:  # no IPv6 loopback on this machine
            v6 = None
        yield v4, v6


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("template", MATRIX)
def test_refused_and_nothing_is_reached(
    call: str, template: str, traps: tuple[socket.socket, socket.socket | None], attempts: list
) -> None:
    v4, v6 = traps
    url = template.format(p=port_of(v4), p6=port_of(v6) if v6 else 9)
    with pytest.raises(UrlNotAllowed) as caught:
        CALLS[call](url)
    assert caught.value.code == "URL_NOT_ALLOWED"
    assert attempts == []
    assert connections(v4) == 0
    if v6 is not None:
        assert connections(v6) == 0


def test_syntax_check_needs_no_dns(dns: FakeDNS) -> None:
    for url in ("file:///x", "ftp://a.example/", "http://0x7f.1/", "http://u@a.example/"):
        with pytest.raises(UrlNotAllowed):
            net.check_url_syntax(url)
    net.check_url_syntax("https://images.example:8443/a.png?x=1")
    net.check_url_syntax("http://[2606:4700::1]/")
    assert dns.calls == []


def test_public_addresses_pass(dns: FakeDNS) -> None:
    dns.add("cdn.example", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    assert check("https://cdn.example/cat.png") == [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
    ]
    assert check("http://8.8.8.8/") == ["8.8.8.8"]
    assert check("http://[::ffff:8.8.8.8]/") == ["::ffff:808:808"]


def test_unresolvable_host() -> None:
    with pytest.raises(net.DeliveryError, match="does not resolve"):
        check("http://nothing-here.invalid/")


def test_parse_networks() -> None:
    assert net.parse_networks("") == ()
    assert net.parse_networks(" 127.0.0.0/8 , ::1/128,10.1.2.3") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.1.2.3/32"),
    )
    with pytest.raises(ValueError, match="nonsense"):
        net.parse_networks("127.0.0.0/8,nonsense")


# --- the allow-list, redirects and DNS rebinding ----------------------------------------------


def test_allow_list_opens_a_network(dns: FakeDNS) -> None:
    dns.add("images.example", ["127.0.0.2"])
    with serve("127.0.0.2", reply(200, b"PNG", {"Content-Type": "image/png"})) as server:
        url = f"http://images.example:{port_of(server)}/cat.png?size=2"
        result = fetch(url, allow_networks=ONLY_2)
    assert result.status == 200
    assert result.content == b"PNG"
    assert result.headers["content-type"] == "image/png"
    assert result.url == url
    method, path, headers, _ = server.requests[0]
    assert (method, path) == ("GET", "/cat.png?size=2")
    assert headers["host"] == f"images.example:{port_of(server)}"


@pytest.mark.parametrize("where", ["http://127.0.0.1:{p}/x", "http://localhost:{p}/x"])
def test_redirect_to_a_refused_address(where: str, dns: FakeDNS) -> None:
    dns.add("images.example", ["127.0.0.2"])
    box: dict[str, str] = {}

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        reply(302, headers={"Location": box["to"]})(handler)

    with pair(redirect) as (server, sock, port):
        box["to"] = where.format(p=port)
        for url in (f"http://127.0.0.2:{port}/a.png", f"http://images.example:{port}/a.png"):
            with pytest.raises(UrlNotAllowed):
                fetch(url, allow_networks=ONLY_2)
        assert len(server.requests) == 2
        assert connections(sock) == 0


@pytest.mark.parametrize("call", ["fetch", "post", "post_sync"])
def test_dns_rebinding_reaches_the_checked_address(call: str, dns: FakeDNS) -> None:
    """The resolver answers the allowed 127.0.0.2 first and 127.0.0.1 afterwards."""
    dns.add("rebind.example", ["127.0.0.2"], ["127.0.0.1"])
    with pair(reply(200, b"from 127.0.0.2")) as (server, sock, port):
        result = CALLS[call](f"http://rebind.example:{port}/", allow_networks=ONLY_2)
        assert result.content == b"from 127.0.0.2"
        assert len(server.requests) == 1
        assert connections(sock) == 0
    assert dns.calls == ["rebind.example"]


def test_every_answer_must_be_allowed(dns: FakeDNS) -> None:
    dns.add("mixed.example", ["127.0.0.2", "127.0.0.1"])
    with pair(reply(200, b"x")) as (server, sock, port):
        with pytest.raises(UrlNotAllowed):
            fetch(f"http://mixed.example:{port}/", allow_networks=ONLY_2)
        assert server.requests == []
        assert connections(sock) == 0


def test_next_checked_address_when_the_first_refuses(dns: FakeDNS, attempts: list) -> None:
    with serve("127.0.0.2", reply(200, b"second")) as server:
        port = port_of(server)
        dns.add("multi.example", ["127.0.0.3", "127.0.0.2"])  # nothing listens on 127.0.0.3
        result = post_sync(f"http://multi.example:{port}/", allow_networks=LOOPBACK)
    assert result.content == b"second"
    assert attempts == ["127.0.0.3", "127.0.0.2"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("call", ["fetch", "post", "post_sync"])
def test_ipv6_when_allowed(call: str, dns: FakeDNS) -> None:
    dns.add("six.example", ["::1"])
    with serve("::1", reply(200, b"six")) as server:
        port = port_of(server)
        allow = net.parse_networks("::1/128")
        assert CALLS[call](f"http://[::1]:{port}/", allow_networks=allow).content == b"six"
        assert CALLS[call](f"http://six.example:{port}/", allow_networks=allow).content == b"six"
        assert server.requests[0][2]["host"] == f"[::1]:{port}"


def hops(handler: BaseHTTPRequestHandler) -> None:
    """`/hop/N` redirects to `/hop/N-1` (relative), `/hop/0` answers."""
    n = int(handler.path.rsplit("/", 1)[1])
    if n == 0:
        reply(200, b"arrived")(handler)
    else:
        reply(307, headers={"Location": f"/hop/{n - 1}"})(handler)


def test_redirects_are_followed_up_to_the_limit() -> None:
    with serve("127.0.0.1", hops) as server:
        base = f"http://127.0.0.1:{port_of(server)}"
        result = fetch(f"{base}/hop/3", allow_networks=LOOPBACK)
        assert (result.content, result.url) == (b"arrived", f"{base}/hop/0")
        with pytest.raises(ImageFetchFailed, match="redirected more than 3 times"):
            fetch(f"{base}/hop/4", allow_networks=LOOPBACK)
        with pytest.raises(ImageFetchFailed, match="more than 1 times"):
            fetch(f"{base}/hop/2", allow_networks=LOOPBACK, max_redirects=1)


@pytest.mark.parametrize("call", ["post", "post_sync"])
def test_webhook_redirect_is_returned_not_followed(call: str) -> None:
    with serve("127.0.0.1", hops) as server:
        url = f"http://127.0.0.1:{port_of(server)}/hop/1"
        result = CALLS[call](url, allow_networks=LOOPBACK)
        assert result.status == 307
        assert result.headers["location"] == "/hop/0"
        assert [r[1] for r in server.requests] == ["/hop/1"]


# --- webhooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["post", "post_sync"])
def test_post_sends_the_exact_body_and_headers(call: str) -> None:
    body = b'{"id":"gen_1","status":"completed"}'
    with serve("127.0.0.1", reply(500, b"oops", {"Retry-After": "7"})) as server:
        url = f"http://127.0.0.1:{port_of(server)}/hook?x=1"
        headers = {"Content-Type": "application/json", "webhook-id": "msg_1"}
        result = CALLS[call](url, content=body, headers=headers, allow_networks=LOOPBACK)
    assert (result.status, result.content, result.headers["retry-after"]) == (500, b"oops", "7")
    method, path, received, got = server.requests[0]
    assert (method, path, got) == ("POST", "/hook?x=1", body)
    assert received["webhook-id"] == "msg_1"
    assert received["content-type"] == "application/json"
    assert received["host"] == f"127.0.0.1:{port_of(server)}"


@pytest.mark.parametrize("call", ["post", "post_sync"])
def test_webhook_answer_is_cut_at_the_cap(call: str) -> None:
    with serve("127.0.0.1", reply(200, b"x" * 100_000)) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        result = CALLS[call](url, allow_networks=LOOPBACK, max_response_bytes=1000)
    assert (result.status, len(result.content)) == (200, 1000)


@pytest.mark.parametrize("call", ["post", "post_sync"])
def test_webhook_connection_refused(call: str) -> None:
    with trap("127.0.0.1") as sock:
        port = port_of(sock)
    with pytest.raises(net.DeliveryError, match="connection failed"):
        CALLS[call](f"http://127.0.0.1:{port}/", allow_networks=LOOPBACK)


# --- caps and failures ------------------------------------------------------------------------


def endless(handler: BaseHTTPRequestHandler) -> None:
    """An answer without a length that never ends."""
    handler.send_response(200)
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    while not handler.server.release.is_set():  # type: ignore[attr-defined]
        handler.wfile.write(b"z" * 4096)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """One byte every 50 ms, forever: no single read ever times out."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    while not handler.server.release.wait(0.05):  # type: ignore[attr-defined]
        handler.wfile.write(b"d")
        handler.wfile.flush()


def silent(handler: BaseHTTPRequestHandler) -> None:
    handler.server.release.wait(10)  # type: ignore[attr-defined]


def test_size_cap() -> None:
    with serve("127.0.0.1", reply(200, b"x" * 5000)) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        assert len(fetch(url, allow_networks=LOOPBACK, max_bytes=5000).content) == 5000
        with pytest.raises(PayloadTooLarge):
            fetch(url, allow_networks=LOOPBACK, max_bytes=4999)


def test_size_cap_while_streaming() -> None:
    with serve("127.0.0.1", endless) as server:
        started = time.monotonic()
        with pytest.raises(PayloadTooLarge):
            fetch(f"http://127.0.0.1:{port_of(server)}/", allow_networks=LOOPBACK, max_bytes=50_000)
        assert time.monotonic() - started < 5


@pytest.mark.timeout(20)  # without a total deadline the drip would never end
@pytest.mark.parametrize("respond", [drip, silent])
@pytest.mark.parametrize("call", ["fetch", "post", "post_sync"])
def test_total_deadline(call: str, respond: Respond) -> None:
    expected = ImageFetchFailed if call == "fetch" else net.DeliveryError
    with serve("127.0.0.1", respond) as server:
        started = time.monotonic()
        with pytest.raises(expected):
            CALLS[call](
                f"http://127.0.0.1:{port_of(server)}/", allow_networks=LOOPBACK, timeout=0.6
            )
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors(status: int) -> None:
    with (
        serve("127.0.0.1", reply(status, b"nope")) as server,
        pytest.raises(ImageFetchFailed, match=str(status)),
    ):
        fetch(f"http://127.0.0.1:{port_of(server)}/", allow_networks=LOOPBACK)


def test_fetch_failures_say_what_happened(dns: FakeDNS) -> None:
    dns.add("gone.example")
    with pytest.raises(ImageFetchFailed, match="does not resolve"):
        fetch("http://gone.example/cat.png")
    with trap("127.0.0.1") as sock:
        port = port_of(sock)
    with pytest.raises(ImageFetchFailed, match="connection failed"):
        fetch(f"http://127.0.0.1:{port}/", allow_networks=LOOPBACK)


# --- TLS on the pinned address ----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA (ca.pem) and a certificate for images.example (leaf.pem, leaf.key)."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    leaf = ca.issue_cert("images.example")
    leaf.cert_chain_pems[0].write_to_path(folder / "leaf.pem")
    leaf.private_key_pem.write_to_path(folder / "leaf.key")
    return folder


def test_tls_verifies_the_url_host_on_the_pinned_address(
    certificates: Path, dns: FakeDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificates / "leaf.pem", certificates / "leaf.key")
    dns.add("images.example", ["127.0.0.2"])
    dns.add("other.example", ["127.0.0.2"])
    with serve("127.0.0.2", reply(200, b"secure"), tls=tls) as server:
        port = port_of(server)
        result = fetch(f"https://images.example:{port}/a.png", allow_networks=ONLY_2)
        assert result.content == b"secure"
        assert server.requests[0][2]["host"] == f"images.example:{port}"
        with pytest.raises(ImageFetchFailed):  # the certificate is not for this name
            fetch(f"https://other.example:{port}/a.png", allow_networks=ONLY_2)
        with pytest.raises(net.DeliveryError):
            post_sync(f"https://other.example:{port}/hook", allow_networks=ONLY_2)
        assert len(server.requests) == 1
