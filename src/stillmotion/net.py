"""The one way this server reaches out: source image URLs and webhook URLs both go through here.

What it guarantees, for every request and every redirect hop:

- only `http` and `https`, no userinfo, a plain host name or a canonical IP literal; hosts such
  as `2130706433`, `0x7f.0.0.1`, `0177.0.0.1` or `127.1` are refused outright;
- every A/AAAA record of the host is resolved and **all** must be public addresses: loopback,
  private, link-local (cloud metadata at 169.254.169.254), CGNAT, benchmark, documentation,
  multicast, reserved and unspecified ranges are refused, also when embedded in IPv6
  (IPv4-mapped, IPv4-compatible, NAT64, 6to4; Teredo is refused whole). Addresses inside
  `allow_networks` (the `STILLMOTION_ALLOW_NETWORKS` setting) pass;
- the connection goes to an address that was checked, never to a second DNS answer, so DNS
  rebinding has nothing to rebind. The `Host` header, TLS SNI and certificate verification still
  use the URL's host name;
- image fetches follow at most `max_redirects` hops, each one checked again; webhook posts
  follow none (a 3xx is returned like any other answer);
- a total deadline (not only a per-read timeout, so a server dripping one byte a second cannot
  hold a worker) and a size cap enforced while streaming. Bodies are not decompressed
  (`Accept-Encoding: identity`), so the cap is on the bytes that cross the wire.

Why not a library: of the SSRF guards on PyPI, `advocate` wraps `requests` and has had no
release since 2020; the httpx-based ones are young single-author packages, async-only or
GET-only, and none takes a list of allowed networks. So this module is written small on
`httpcore` (already a dependency through httpx): a network backend that ignores the host name
httpcore asks it to connect to and connects to the checked addresses instead. `httpx` itself is
not used for the requests because its environment proxy support (`HTTP_PROXY`) would bypass the
pinning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpcore
import httpx

from stillmotion.errors import ImageFetchFailed, PayloadTooLarge, UrlNotAllowed

__all__ = [
    "DeliveryError",
    "FetchResult",
    "check_url",
    "check_url_syntax",
    "fetch",
    "parse_networks",
    "post",
    "post_sync",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = "stillmotion"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
# A last label like this makes an inet_aton() spelling (`2130706433`, `0x7f.1`), never a name.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

# Refused on top of what `ipaddress` calls non-global (its idea varies between Python versions).
_BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DeliveryError(Exception):
    """The request did not get an answer: the host did not resolve, the connection failed, the
    deadline passed, or the answer was not valid HTTP. The message says which, without
    internal details."""


@dataclass(frozen=True)
class FetchResult:
    """An HTTP answer. `url` is the last URL requested (after redirects); header names are
    lower case, repeated headers joined with `, `."""

    url: str
    status: int
    headers: dict[str, str]
    content: bytes


def parse_networks(text: str) -> tuple[Network, ...]:
    """Parse comma-separated CIDRs (`"127.0.0.0/8, ::1/128"`); empty text gives `()`.

    Raises ValueError naming the first entry that is not a network.
    """
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not a network in CIDR notation: {part!r}") from None
    return tuple(networks)


def check_url_syntax(url: str) -> None:
    """Refuse (UrlNotAllowed) what is not an http(s) URL with a sane host and port, without DNS.

    Use it to validate a request quickly; `check_url` does this and the address checks.
    """
    _parse(url)


def check_url(url: str, *, allow_networks: Sequence[Network] = ()) -> list[str]:
    """Resolve the URL's host and check every address; return them (the ones to connect to).

    Raises UrlNotAllowed when the URL or any address is refused, DeliveryError when the host
    does not resolve. Blocking (DNS): call it from a thread in async code.
    """
    return _checked_addresses(_parse(url), allow_networks)


async def fetch(
    url: str,
    *,
    allow_networks: Sequence[Network] = (),
    max_bytes: int,
    timeout: float = 10.0,
    max_redirects: int = 3,
) -> FetchResult:
    """GET an image URL, checking every redirect hop; `timeout` bounds the whole fetch.

    Raises UrlNotAllowed (refused URL or address, also on a redirect), PayloadTooLarge (over
    `max_bytes`), ImageFetchFailed (no answer, timeout, HTTP status >= 400, too many redirects).
    """
    try:
        with anyio.fail_after(timeout):
            return await _fetch(url, allow_networks, max_bytes, timeout, max_redirects)
    except TimeoutError:
        raise ImageFetchFailed(f"The image URL did not answer within {timeout:g} s.") from None
    except DeliveryError as exc:
        raise ImageFetchFailed(f"The image could not be fetched: {exc}") from None


async def post(
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    allow_networks: Sequence[Network] = (),
    timeout: float = 10.0,
    max_response_bytes: int = 64 * 1024,
) -> FetchResult:
    """POST a webhook. Redirects are not followed: every status comes back as a result.

    The answer's body is cut at `max_response_bytes`. Raises UrlNotAllowed for a refused URL or
    address, DeliveryError when no complete answer arrived within `timeout` seconds.
    """
    target = _parse(url)
    try:
        with anyio.fail_after(timeout):
            addresses = await anyio.to_thread.run_sync(
                _checked_addresses, target, allow_networks, abandon_on_cancel=True
            )
            request = _request("POST", target, headers, content, timeout)
            async with _async_response(request, addresses) as response:
                body = await _read_async(response, max_response_bytes, truncate=True)
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g} s") from None
    return _result(target, response, body)


def post_sync(
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    allow_networks: Sequence[Network] = (),
    timeout: float = 10.0,
    max_response_bytes: int = 64 * 1024,
) -> FetchResult:
    """`post` for worker threads. The deadline covers connecting, sending and reading; DNS is
    left to the system resolver's own timeouts."""
    deadline = time.monotonic() + timeout
    target = _parse(url)
    addresses = _checked_addresses(target, allow_networks)
    request = _request("POST", target, headers, content, timeout)
    backend = _PinnedBackend(addresses, deadline)
    with (
        httpcore.ConnectionPool(ssl_context=_ssl_context(target), network_backend=backend) as pool,
        _mapped_errors(),
    ):
        response = pool.handle_request(request)
        try:
            body = _read_sync(response, max_response_bytes)
        finally:
            response.close()
    return _result(target, response, body)


# --- URLs and addresses ------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UrlNotAllowed("The URL is not a valid http(s) URL.") from None
    if parsed.scheme not in ("http", "https"):
        raise UrlNotAllowed("Only http and https URLs are allowed.")
    if parsed.userinfo:
        raise UrlNotAllowed("URLs with a user name or password are not allowed.")
    port = parsed.port
    if port is not None and not 0 < port < 65536:
        raise UrlNotAllowed("The URL's port is out of range.")
    host = parsed.host
    if not host:
        raise UrlNotAllowed("The URL has no host.")
    if _literal(host) is None:
        name = parsed.raw_host.decode("ascii").lower()
        labels = name.removesuffix(".").split(".")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            raise UrlNotAllowed("IP addresses must be written as four decimal numbers.")
        if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise UrlNotAllowed("The URL's host name is not valid.")
    return parsed


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _checked_addresses(url: httpx.URL, allow_networks: Sequence[Network]) -> list[str]:
    port = url.port or (443 if url.scheme == "https" else 80)
    literal = _literal(url.host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(url.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise DeliveryError("the host name does not resolve") from None
        found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not found:
            raise DeliveryError("the host name does not resolve")
    if not all(_allowed(address, allow_networks) for address in found):
        raise UrlNotAllowed(
            "The URL points to an address this server may not reach: only public addresses "
            "are allowed unless the server's STILLMOTION_ALLOW_NETWORKS setting names the "
            "network (for development)."
        )
    return list(dict.fromkeys(str(address) for address in found))


def _allowed(address: Address, allow_networks: Sequence[Network]) -> bool:
    embedded = _embedded_ipv4(address)
    candidates = [address] if embedded is None else [address, embedded]
    if any(c in network for c in candidates for network in allow_networks):
        return True
    return _public(address if embedded is None else embedded)


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a special IPv6 form delivers to, if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address in _V4_MAPPED or address in _V4_COMPATIBLE or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return False
    bad = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    return address.is_global and not bad and not any(address in n for n in _BLOCKED)


# --- requests ---------------------------------------------------------------------------------


async def _fetch(
    url: str,
    allow_networks: Sequence[Network],
    max_bytes: int,
    timeout: float,
    max_redirects: int,
) -> FetchResult:
    target = _parse(url)
    for _hop in range(max_redirects + 1):
        addresses = await anyio.to_thread.run_sync(
            _checked_addresses, target, allow_networks, abandon_on_cancel=True
        )
        request = _request("GET", target, {"Accept": "image/*,*/*;q=0.8"}, b"", timeout)
        async with _async_response(request, addresses) as response:
            location = _header(response, b"location")
            if response.status in _REDIRECTS and location:
                target = _parse(str(target.join(location)))
                continue
            if response.status >= 400:
                raise ImageFetchFailed(f"The image URL answered HTTP {response.status}.")
            if not 200 <= response.status < 300:
                raise ImageFetchFailed(f"The image URL answered HTTP {response.status}.")
            length = _header(response, b"content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise PayloadTooLarge(f"The image is larger than {max_bytes} bytes.")
            body = await _read_async(response, max_bytes, truncate=False)
        return _result(target, response, body)
    raise ImageFetchFailed(f"The image URL redirected more than {max_redirects} times.")


def _request(
    method: str, url: httpx.URL, headers: dict[str, str], content: bytes, timeout: float
) -> httpcore.Request:
    default_port = 443 if url.scheme == "https" else 80
    sent = {
        "Host": url.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    given = {name.lower() for name in headers}
    sent = {name: value for name, value in sent.items() if name.lower() not in given}
    sent.update(headers)
    if method != "GET" or content:
        sent["Content-Length"] = str(len(content))
    return httpcore.Request(
        method,
        httpcore.URL(
            scheme=url.raw_scheme,
            host=url.raw_host,
            port=url.port or default_port,
            target=url.raw_path,
        ),
        headers=list(sent.items()),
        content=content,
        extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)},
    )


@contextlib.asynccontextmanager
async def _async_response(
    request: httpcore.Request, addresses: list[str]
) -> AsyncIterator[httpcore.Response]:
    """Send `request` to the pinned `addresses`; the response stream is open inside the block."""
    backend = _AsyncPinnedBackend(addresses)
    async with httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(request.url), network_backend=backend
    ) as pool:
        with _mapped_errors():
            response = await pool.handle_async_request(request)
        try:
            yield response
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


async def _read_async(response: httpcore.Response, limit: int, *, truncate: bool) -> bytes:
    body = bytearray()
    with _mapped_errors():
        stream: AsyncIterator[bytes] = response.aiter_stream()
        async for chunk in stream:
            body += chunk
            if truncate and len(body) >= limit:
                return bytes(body[:limit])
            if len(body) > limit:
                raise PayloadTooLarge(f"The image is larger than {limit} bytes.")
    return bytes(body)


def _read_sync(response: httpcore.Response, limit: int) -> bytes:
    body = bytearray()
    stream: Iterator[bytes] = response.iter_stream()
    for chunk in stream:
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])


def _result(url: httpx.URL, response: httpcore.Response, body: bytes) -> FetchResult:
    headers: dict[str, str] = {}
    for name, value in response.headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return FetchResult(url=str(url), status=response.status, headers=headers, content=body)


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _ssl_context(url: httpx.URL | httpcore.URL) -> ssl.SSLContext | None:
    """Certificate checks as httpx does them (certifi, or SSL_CERT_FILE / SSL_CERT_DIR); made
    per request, and only for https, so that a changed environment is honoured."""
    scheme = url.scheme if isinstance(url.scheme, str) else url.scheme.decode()
    return httpx.create_ssl_context() if scheme == "https" else None


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """Turn httpcore's errors into DeliveryError with a short, safe reason."""
    try:
        yield
    except httpcore.TimeoutException:
        raise DeliveryError("the connection timed out") from None
    except httpcore.ConnectError:
        raise DeliveryError("the connection failed") from None
    except (httpcore.NetworkError, httpcore.ProtocolError):
        raise DeliveryError("the connection broke or the answer was not valid HTTP") from None


# --- pinned connections -----------------------------------------------------------------------


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses whatever host httpcore names; enforces the deadline."""

    def __init__(self, addresses: Sequence[str], deadline: float) -> None:
        self._addresses = addresses
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception = httpcore.ConnectError("no address")
        for address in self._addresses:
            left = _time_left(self._deadline, timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(address, port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """Cuts every socket operation's timeout to what is left of the total deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(
            max_bytes, _time_left(self._deadline, timeout, httpcore.ReadTimeout)
        )

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = _time_left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _time_left(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("deadline passed")
    return left if timeout is None else min(timeout, left)


class _AsyncPinnedBackend(httpcore.AsyncNetworkBackend):
    """Async twin of `_PinnedBackend`; the deadline is the caller's `anyio.fail_after`."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self._addresses = addresses
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: Exception = httpcore.ConnectError("no address")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
