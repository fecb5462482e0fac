"""`Client` and `AsyncClient`: thin drivers of the operations in `_ops` over httpx."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack
from urllib.parse import urlsplit

import httpx

from stillmotion.client._ops import (
    SERVICE,
    Await,
    BatchResult,
    Call,
    Download,
    ImageInput,
    Op,
    Ops,
    ProgressCallback,
    Sleep,
    Transport,
    check_image_url,
    check_keywords,
    check_options,
    generation_options,
)
from stillmotion.client._retry import RetryPolicy
from stillmotion.client.errors import NetworkError, StillmotionError, error_from_body
from stillmotion.client.models import Account, Delivery, Generation, LedgerEntry, Upload

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "stillmotion-python/0.1"


class GenerationOptions(TypedDict, total=False):
    """API.md §2's options; unset ones take the server's defaults."""

    duration: int
    aspect_ratio: str
    version: str
    motion_intensity: str
    seed: int
    camera: Mapping[str, Any]
    motion_brush: list[Any]
    loop: bool


_OPTION_NAMES = tuple(GenerationOptions.__annotations__)
_CREATE_ARGS = ("image", "image_url", "prompt", "webhook_url", "service", "idempotency_key")
_BATCH_ARGS = ("prompt", "webhook_url", "service", "wait")


class _Base:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        transport: Transport = "rest",
        timeout: float = 60.0,
        max_retries: int = 5,
        max_retry_wait: float = 60.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        local_images: Literal["upload", "data_uri"] = "upload",
        http_client: Any = None,
    ) -> None:
        """`base_url` and `api_key` default to `STILLMOTION_URL` / `STILLMOTION_API_KEY`;
        `transport` picks REST (`/v1/…`) or GraphQL for generate/get/list/cancel/account;
        `max_retries` and `max_retry_wait` (seconds slept in all) bound one call's retries;
        `poll_interval` and `max_poll_interval` shape `wait`'s backoff; `local_images`
        says whether local files are uploaded or sent inline as data URIs; `http_client`
        is an httpx client of your own (proxies, certificates, transports)."""
        if transport not in ("rest", "graphql"):
            raise ValueError("transport must be 'rest' or 'graphql'")
        self.base_url = (base_url or os.environ.get("STILLMOTION_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("STILLMOTION_API_KEY")
        self.transport = transport
        self.retry = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._ops = Ops(
            transport=transport,
            local_images=local_images,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
        self._headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = http_client or self._new_http(timeout)
        self._http.base_url = self.base_url
        self._http.headers.update(self._headers)

    @staticmethod
    def _new_http(timeout: float) -> Any:
        raise NotImplementedError

    def _request_args(self, call: Call) -> dict[str, Any]:
        headers = {}
        if call.idempotency_key:
            headers["Idempotency-Key"] = call.idempotency_key
        return {
            "method": call.method,
            "url": call.url,
            "json": call.json,
            "params": call.params,
            "files": call.files,
            "headers": headers,
        }

    def _download_headers(self, url: str) -> dict[str, str]:
        """The key goes only to our own server, never to a CDN or bucket the URL names."""
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        if (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc):
            return dict(self._headers)
        return {"User-Agent": USER_AGENT}

    @staticmethod
    def _error(response: httpx.Response) -> StillmotionError:
        try:
            body = response.json()
        except ValueError:
            body = {"errors": [{"message": response.text[:200] or response.reason_phrase}]}
        return error_from_body(body, status=response.status_code, headers=response.headers)

    def _network_error(self, exc: httpx.TransportError) -> NetworkError:
        if isinstance(exc, httpx.UnsupportedProtocol):
            raise ValueError(str(exc)) from exc
        message = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, httpx.ConnectError):
            message += f" (is a server running at {self.base_url}?)"
        error = NetworkError(message)
        error.__cause__ = exc
        return error

    def _options(
        self, method: str, options: Mapping[str, Any], *, named: tuple[str, ...], **checked: Any
    ) -> dict[str, Any]:
        """`options` checked as API.md §2 says, before anything is sent or uploaded, and
        turned into wire names. A keyword that is no option is a TypeError naming `method`."""
        check_keywords(f"{type(self).__name__}.{method}", options, (*named, *_OPTION_NAMES))
        check_options(options, **checked)
        return generation_options(**options)

    def _create_args(
        self,
        method: str,
        image: ImageInput | None,
        image_url: str | None,
        prompt: str | None,
        webhook_url: str | None,
        service: str,
        idempotency_key: str | None,
        options: GenerationOptions,
    ) -> dict[str, Any]:
        check_image_url(image_url)
        return {
            "image": image,
            "image_url": image_url,
            "prompt": prompt,
            "options": self._options(method, options, named=_CREATE_ARGS, prompt=prompt),
            "webhook_url": webhook_url,
            "service": service,
            "idempotency_key": idempotency_key,
        }


class Client(_Base):
    """A synchronous stillmotion client.

    `base_url` and `api_key` default to `STILLMOTION_URL` and `STILLMOTION_API_KEY`.
    `transport` picks how generate/get/list/cancel/account travel: `"rest"` (`/v1/…`) or
    `"graphql"` (`/graphql`). Every create carries an `Idempotency-Key` made once per call and
    reused on its retries; connection errors, 409 `IDEMPOTENCY_IN_PROGRESS`, 429 and 5xx are
    retried with exponential backoff and full jitter, never sooner than `Retry-After`, up to
    `max_retries` retries and `max_retry_wait` seconds of sleeping per call.

        with Client(base_url="http://localhost:8000", api_key="sm_…") as client:
            gen = client.generate(image="photo.jpg", prompt="slow push in", duration=5)
            gen = client.wait(gen, timeout=300)
            client.download(gen, "clip.mp4")
    """

    _http: httpx.Client
    _sleep = staticmethod(time.sleep)

    @staticmethod
    def _new_http(timeout: float) -> httpx.Client:
        return httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- the driver ------------------------------------------------------------------------
    def _run(self, op: Op) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = op.throw(error) if error is not None else op.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(step, Call):
                    value = self._send(step)
                elif isinstance(step, Sleep):
                    self._sleep(step.seconds)
                elif isinstance(step, Download):
                    value = self._download(step)
                elif isinstance(step, Await):
                    getattr(step.awaitable, "close", lambda: None)()
                    raise TypeError("on_progress returned a coroutine: use AsyncClient")
            except StillmotionError as exc:
                error = exc

    def _send(self, call: Call) -> httpx.Response:
        attempt, waited = 0, 0.0
        while True:
            try:
                response = self._http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                error: StillmotionError = self._network_error(exc)
            else:
                if response.status_code < 400:
                    return response
                error = self._error(response)
            delay = self.retry.delay(attempt=attempt, error=error, waited=waited)
            if delay is None:
                raise error
            self._sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    def _download(self, step: Download) -> Path:
        attempt, waited = 0, 0.0
        step.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd, tmp = tempfile.mkstemp(dir=step.path.parent, prefix=f".{step.path.name}.")
            try:
                with (
                    os.fdopen(fd, "wb") as out,
                    self._http.stream(
                        "GET", step.url, headers=self._download_headers(step.url)
                    ) as response,
                ):
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
                os.replace(tmp, step.path)
                return step.path
            except httpx.TransportError as exc:
                error: StillmotionError = self._network_error(exc)
            except StillmotionError as exc:
                error = exc
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            delay = self.retry.delay(attempt=attempt, error=error, waited=waited)
            if delay is None:
                raise error
            self._sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    # --- the API ---------------------------------------------------------------------------
    def generate(
        self,
        *,
        image: ImageInput | None = None,
        image_url: str | None = None,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Generation:
        """Create a generation. `image` is a URL, data URI, `upload://…` id, local path or
        bytes (local images are uploaded first); `image_url` a URL.

        The options are checked against API.md §2's ranges before anything is uploaded: a
        value out of range raises `ValidationError` naming the parameter, an unknown keyword
        `TypeError`."""
        args = self._create_args(
            "generate", image, image_url, prompt, webhook_url, service, idempotency_key, options
        )
        return self._run(self._ops.generate(**args))

    def animate_image(
        self,
        *,
        image: ImageInput | None = None,
        image_url: str | None = None,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Generation:
        """Create a generation through GraphQL `animateImage` (the seed's second example)."""
        args = self._create_args(
            "animate_image",
            image,
            image_url,
            prompt,
            webhook_url,
            service,
            idempotency_key,
            options,
        )
        return self._run(self._ops.generate(**args, graphql_mutation="animateImage"))

    def get(self, generation: Generation | str) -> Generation:
        return self._run(self._ops.get(_id(generation)))

    def list(self, *, status: str | None = None, limit: int = 50) -> Iterator[Generation]:
        """Every generation, newest first, fetched `limit` per page as the iterator advances."""
        cursor = None
        while True:
            items, cursor = self._run(
                self._ops.list_page(status=status, limit=limit, cursor=cursor)
            )
            yield from items
            if not cursor or not items:
                return

    def cancel(self, generation: Generation | str) -> Generation:
        """Cancel an unfinished generation (its credits are refunded)."""
        return self._run(self._ops.cancel(_id(generation)))

    def upload(self, path: str | os.PathLike[str] | bytes) -> Upload:
        """Upload a source image; pass the result's `.uri` as `image=`."""
        return self._run(self._ops.upload(path))

    def account(self) -> Account:
        return self._run(self._ops.account())

    def services(self) -> list[dict[str, Any]]:
        """The server's service catalogue (`GET /v1/services`), as its JSON dicts."""
        return self._run(self._ops.services())

    def price_of(self, *, service: str = "runway-i2v", **options: Any) -> int:
        """Credits a generation will cost at the server's prices (`/v1/services`); options by
        their API names (`version`, `duration`, `motionBrush`)."""
        return self._run(self._ops.price_of(service=service, options=options))

    def ledger(self, *, limit: int = 100) -> Iterator[LedgerEntry]:
        """Every change of the credit balance, newest first, `limit` per page."""
        cursor = None
        while True:
            entries, cursor = self._run(self._ops.ledger_page(limit=limit, before=cursor))
            yield from entries
            if not cursor or not entries:
                return

    def set_webhook_url(self, url: str | None) -> Account:
        """Set (or with None clear) the account webhook URL, which gets account events."""
        return self._run(self._ops.set_webhook_url(url))

    def deliveries(self, generation: Generation | str) -> list[Delivery]:
        return self._run(self._ops.deliveries(_id(generation)))

    def redeliver(self, generation: Generation | str, delivery_id: str) -> Delivery:
        """Queue a webhook delivery to be sent again (same `webhook-id`); returns it `queued`.

        The server's delivery loop sends it: read `deliveries()` for the attempt. `Conflict`
        while it is already queued or being sent."""
        return self._run(self._ops.redeliver(_id(generation), delivery_id))

    def webhook_secret(self, *, rotate: bool = False) -> str:
        """The account's webhook secret (`whsec_…`); `rotate=True` makes a new one."""
        return self._run(self._ops.webhook_secret(rotate=rotate))

    def download(self, generation: Generation | str, path: str | os.PathLike[str]) -> Path:
        """Stream a completed generation's MP4 to `path` (written atomically)."""
        return self._run(self._ops.download(generation, path))

    def wait(
        self,
        generation: Generation | str,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Generation:
        """Poll until the generation is final and return it when `completed`.

        Raises `GenerationFailed`, `GenerationCancelled`, or `WaitTimeout` (the job keeps
        running; its id is on the exception). `on_progress(generation)` is called whenever
        status, stage or progress change.
        """
        return self._run(self._ops.wait(generation, timeout=timeout, on_progress=on_progress))

    def ensure_credits(self, amount: int) -> Account:
        """Raise `InsufficientCredits` unless the balance covers `amount`."""
        return self._run(self._ops.ensure_credits(amount))

    def batch(
        self,
        images: Iterable[ImageInput],
        *,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        wait: bool = False,
        **options: Unpack[GenerationOptions],
    ) -> BatchResult:
        """Submit one generation per image, never more unfinished at once than the plan's
        concurrency and never more than the credits cover. Images that cannot be submitted
        are in `.skipped` with the reason. `wait=True` also waits for all of them."""
        return self._run(
            self._ops.batch(
                images,
                options=self._options("batch", options, named=_BATCH_ARGS, prompt=prompt),
                prompt=prompt,
                webhook_url=webhook_url,
                service=service,
                wait=wait,
            )
        )


class AsyncClient(_Base):
    """The asyncio twin of `Client`: the same methods, awaited."""

    _http: httpx.AsyncClient
    _sleep = staticmethod(asyncio.sleep)

    @staticmethod
    def _new_http(timeout: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: Op) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = op.throw(error) if error is not None else op.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(step, Call):
                    value = await self._send(step)
                elif isinstance(step, Sleep):
                    await self._sleep(step.seconds)
                elif isinstance(step, Download):
                    value = await self._download(step)
                elif isinstance(step, Await):
                    value = await step.awaitable
            except StillmotionError as exc:
                error = exc

    async def _send(self, call: Call) -> httpx.Response:
        attempt, waited = 0, 0.0
        while True:
            try:
                response = await self._http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                error: StillmotionError = self._network_error(exc)
            else:
                if response.status_code < 400:
                    return response
                error = self._error(response)
            delay = self.retry.delay(attempt=attempt, error=error, waited=waited)
            if delay is None:
                raise error
            await self._sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    async def _download(self, step: Download) -> Path:
        attempt, waited = 0, 0.0
        step.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd, tmp = tempfile.mkstemp(dir=step.path.parent, prefix=f".{step.path.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    async with self._http.stream(
                        "GET", step.url, headers=self._download_headers(step.url)
                    ) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            raise self._error(response)
                        async for chunk in response.aiter_bytes(1 << 16):
                            out.write(chunk)
                os.replace(tmp, step.path)
                return step.path
            except httpx.TransportError as exc:
                error: StillmotionError = self._network_error(exc)
            except StillmotionError as exc:
                error = exc
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            delay = self.retry.delay(attempt=attempt, error=error, waited=waited)
            if delay is None:
                raise error
            await self._sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    async def generate(
        self,
        *,
        image: ImageInput | None = None,
        image_url: str | None = None,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Generation:
        args = self._create_args(
            "generate", image, image_url, prompt, webhook_url, service, idempotency_key, options
        )
        return await self._run(self._ops.generate(**args))

    async def animate_image(
        self,
        *,
        image: ImageInput | None = None,
        image_url: str | None = None,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        idempotency_key: str | None = None,
        **options: Unpack[GenerationOptions],
    ) -> Generation:
        args = self._create_args(
            "animate_image",
            image,
            image_url,
            prompt,
            webhook_url,
            service,
            idempotency_key,
            options,
        )
        return await self._run(self._ops.generate(**args, graphql_mutation="animateImage"))

    async def get(self, generation: Generation | str) -> Generation:
        return await self._run(self._ops.get(_id(generation)))

    async def list(
        self, *, status: str | None = None, limit: int = 50
    ) -> AsyncIterator[Generation]:
        cursor = None
        while True:
            items, cursor = await self._run(
                self._ops.list_page(status=status, limit=limit, cursor=cursor)
            )
            for item in items:
                yield item
            if not cursor or not items:
                return

    async def cancel(self, generation: Generation | str) -> Generation:
        return await self._run(self._ops.cancel(_id(generation)))

    async def upload(self, path: str | os.PathLike[str] | bytes) -> Upload:
        return await self._run(self._ops.upload(path))

    async def account(self) -> Account:
        return await self._run(self._ops.account())

    async def services(self) -> list[dict[str, Any]]:
        """The server's service catalogue (`GET /v1/services`), as its JSON dicts."""
        return await self._run(self._ops.services())

    async def price_of(self, *, service: str = "runway-i2v", **options: Any) -> int:
        """Credits a generation will cost at the server's prices (`/v1/services`)."""
        return await self._run(self._ops.price_of(service=service, options=options))

    async def ledger(self, *, limit: int = 100) -> AsyncIterator[LedgerEntry]:
        cursor = None
        while True:
            entries, cursor = await self._run(self._ops.ledger_page(limit=limit, before=cursor))
            for entry in entries:
                yield entry
            if not cursor or not entries:
                return

    async def set_webhook_url(self, url: str | None) -> Account:
        return await self._run(self._ops.set_webhook_url(url))

    async def deliveries(self, generation: Generation | str) -> list[Delivery]:
        return await self._run(self._ops.deliveries(_id(generation)))

    async def redeliver(self, generation: Generation | str, delivery_id: str) -> Delivery:
        """Queue a webhook delivery to be sent again; see `Client.redeliver`."""
        return await self._run(self._ops.redeliver(_id(generation), delivery_id))

    async def webhook_secret(self, *, rotate: bool = False) -> str:
        return await self._run(self._ops.webhook_secret(rotate=rotate))

    async def download(self, generation: Generation | str, path: str | os.PathLike[str]) -> Path:
        return await self._run(self._ops.download(generation, path))

    async def wait(
        self,
        generation: Generation | str,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
    ) -> Generation:
        """As `Client.wait`; `on_progress` may also be a coroutine function."""
        return await self._run(self._ops.wait(generation, timeout=timeout, on_progress=on_progress))

    async def ensure_credits(self, amount: int) -> Account:
        return await self._run(self._ops.ensure_credits(amount))

    async def batch(
        self,
        images: Iterable[ImageInput],
        *,
        prompt: str | None = None,
        webhook_url: str | None = None,
        service: str = SERVICE,
        wait: bool = False,
        **options: Unpack[GenerationOptions],
    ) -> BatchResult:
        return await self._run(
            self._ops.batch(
                images,
                options=self._options("batch", options, named=_BATCH_ARGS, prompt=prompt),
                prompt=prompt,
                webhook_url=webhook_url,
                service=service,
                wait=wait,
            )
        )


def _id(generation: Generation | str) -> str:
    return generation if isinstance(generation, str) else generation.id
