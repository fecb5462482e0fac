"""Every SDK operation, written once as a generator that both clients drive.

An operation yields what it needs done (`Call` an endpoint, `Sleep`, `Download` a file,
`Await` a coroutine returned by a callback) and is sent the result; an API error is thrown
into it. `Client` drives these with httpx.Client and `time.sleep`, `AsyncClient` with
httpx.AsyncClient and `asyncio.sleep`, so the rules (idempotency keys, polling pace, batch
accounting) live in one place.
"""

from __future__ import annotations

import base64
import difflib
import inspect
import math
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Collection, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stillmotion import options as limits
from stillmotion.client._retry import ReadPacer
from stillmotion.client.errors import (
    AlreadyFinished,
    BadRequest,
    DailyLimitExceeded,
    GenerationCancelled,
    GenerationFailed,
    IdempotencyKeyReused,
    InsufficientCredits,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StillmotionError,
    ValidationError,
    WaitTimeout,
    error_from_body,
)
from stillmotion.client.models import Account, Delivery, Generation, LedgerEntry, Upload

Transport = Literal["rest", "graphql"]
ImageInput = str | os.PathLike[str] | bytes
ProgressCallback = Callable[[Generation], Any]

SERVICE = "runway-i2v"
# API.md §4's default prices, for estimates only: the server's configuration decides.
PRICE_PER_SECOND = {"gen-2": 2, "gen-3": 5, "gen-4": 20}
BRUSH_MULTIPLIER = 2.5
DEFAULT_DURATION, DEFAULT_VERSION = limits.DURATION_DEFAULT, "gen-3"
_URL_PREFIXES = ("http://", "https://", "data:", "upload://")


@dataclass(frozen=True)
class Call:
    """One HTTP request; the driver retries it within the policy and sends back the response."""

    method: str
    url: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Await:
    awaitable: Any


@dataclass(frozen=True)
class Download:
    url: str
    path: Path


Op = Generator[Any, Any, Any]

GENERATION_FIELDS = (
    "id status type provider service url posterUrl progress stage queuePosition creditCost "
    "webhookUrl prompt createdAt startedAt completedAt duration metadata error { code message }"
)
ACCOUNT_FIELDS = "id name plan creditBalance limits usage lowCreditThreshold webhookUrl"


def _gql(header: str, call: str, selection: str) -> str:
    return f"{header} {{ {call} {{ {selection} }} }}"


Q_GENERATE = _gql(
    "mutation Generate($input: GenerateInput!)", "generate(input: $input)", GENERATION_FIELDS
)
Q_ANIMATE = _gql(
    "mutation AnimateImage($input: ImageAnimationInput!)",
    "animateImage(input: $input)",
    GENERATION_FIELDS,
)
Q_GET = _gql("query Generation($id: ID!)", "generation(id: $id)", GENERATION_FIELDS)
Q_CANCEL = _gql("mutation Cancel($id: ID!)", "cancelGeneration(id: $id)", GENERATION_FIELDS)
Q_LIST = _gql(
    "query Generations($first: Int, $after: String, $status: String)",
    "generations(first: $first, after: $after, status: $status)",
    f"nodes {{ {GENERATION_FIELDS} }} endCursor hasNextPage",
)
Q_ACCOUNT = _gql("query Account", "account", ACCOUNT_FIELDS)


@dataclass(frozen=True)
class Skipped:
    """An image `batch` did not submit, and why."""

    image: Any
    reason: str
    error: StillmotionError | None = None


@dataclass
class BatchResult:
    """What `batch` did: the generations it created, in order, and the images it skipped."""

    submitted: list[Generation] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def estimate_cost(
    *, version: str | None = None, duration: int | None = None, motion_brush: Any = None
) -> int:
    """Credits a generation will cost at API.md §4's default prices, without asking a server
    (a server's own prices: `Client.price_of`, read from `/v1/services`)."""
    cost = PRICE_PER_SECOND.get(version or DEFAULT_VERSION, 5) * (duration or DEFAULT_DURATION)
    return math.ceil(cost * BRUSH_MULTIPLIER) if motion_brush else cost


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_URL_PREFIXES)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def _first_list(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        for value in data.values():
            if isinstance(value, list):
                return value
        for value in data.values():
            found = _first_list(value) if isinstance(value, Mapping) else []
            if found:
                return found
    return []


def _next_cursor(data: Any) -> str | None:
    """`nextCursor` (or Relay `pageInfo`) anywhere one level inside a list response."""
    if not isinstance(data, Mapping):
        return None
    for key in ("nextCursor", "next_cursor", "cursor"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    if "hasNextPage" in data:
        return data.get("endCursor") if data["hasNextPage"] else None
    info = data.get("pageInfo")
    if isinstance(info, Mapping):
        return info.get("endCursor") if info.get("hasNextPage") else None
    for value in data.values():
        if isinstance(value, Mapping):
            found = _next_cursor(value)
            if found:
                return found
    return None


@dataclass
class Ops:
    """The operations, configured once per client."""

    transport: Transport = "rest"
    local_images: Literal["upload", "data_uri"] = "upload"
    poll_interval: float = 1.0
    max_poll_interval: float = 10.0
    poll_backoff: float = 1.5
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    # --- GraphQL -------------------------------------------------------------------------
    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Op:
        """Run a GraphQL operation; returns (data, response). Raises its first error typed."""
        payload = {"query": query, "variables": dict(variables or {})}
        response = yield Call("POST", "/graphql", json=payload, idempotency_key=idempotency_key)
        body = _json(response)
        data = body.get("data") if isinstance(body, Mapping) else None
        if body.get("errors") and (not data or any(v is None for v in data.values())):
            raise error_from_body(body, status=response.status_code, headers=response.headers)
        return data or {}, response

    # --- sources ---------------------------------------------------------------------------
    def upload(self, source: ImageInput, *, filename: str | None = None) -> Op:
        if isinstance(source, bytes):
            data, name = source, filename or "image"
        else:
            path = Path(source)
            data, name = path.read_bytes(), filename or path.name
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = yield Call("POST", "/v1/uploads", files={"file": (name, data, ctype)})
        return Upload.from_response(_json(response))

    def resolve_image(self, image: ImageInput) -> Op:
        """A URL, data URI or upload:// reference for `image`; local files are uploaded."""
        if _is_reference(image):
            return image
        if isinstance(image, str) and "://" in image:
            raise ValueError(f"unsupported image reference {image!r}")
        if self.local_images == "data_uri":
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            ctype = "image/jpeg"
            if not isinstance(image, bytes):
                ctype = mimetypes.guess_type(str(image))[0] or ctype
            return f"data:{ctype};base64,{base64.b64encode(data).decode()}"
        upload = yield from self.upload(image)
        return upload.uri

    # --- creating --------------------------------------------------------------------------
    def generate(
        self,
        *,
        image: ImageInput | None,
        image_url: str | None,
        prompt: str | None,
        options: Mapping[str, Any],
        webhook_url: str | None,
        service: str,
        idempotency_key: str | None,
        graphql_mutation: Literal["generate", "animateImage"] | None = None,
    ) -> Op:
        if (image is None) == (image_url is None):
            raise ValueError("pass exactly one of image= and image_url=")
        key = idempotency_key or new_idempotency_key()
        source = image_url if image_url is not None else (yield from self.resolve_image(image))
        field_name = "imageUrl" if image_url is not None else "image"
        opts = _compact(options)
        mutation = graphql_mutation or ("generate" if self.transport == "graphql" else None)
        if mutation == "generate":
            variables = {
                "input": _compact(
                    {
                        "type": "VIDEO",
                        "provider": service,
                        "input": _compact({field_name: source, "prompt": prompt}),
                        "options": opts or None,
                        "webhookUrl": webhook_url,
                    }
                )
            }
            data, _ = yield from self.graphql(Q_GENERATE, variables, idempotency_key=key)
            return Generation.from_dict(data["generate"])
        if mutation == "animateImage":
            variables = {
                "input": _compact(
                    {
                        "service": service,
                        "imageUrl": source,
                        "prompt": prompt,
                        **opts,
                        "webhookUrl": webhook_url,
                    }
                )
            }
            data, _ = yield from self.graphql(Q_ANIMATE, variables, idempotency_key=key)
            return Generation.from_dict(data["animateImage"])
        body = _compact(
            {
                "service": service,
                field_name: source,
                "prompt": prompt or "",
                **opts,
                "webhookUrl": webhook_url,
            }
        )
        response = yield Call("POST", "/v1/image_to_video", json=body, idempotency_key=key)
        return Generation.from_response(_json(response))

    # --- reading ---------------------------------------------------------------------------
    def get_with_headers(self, generation_id: str) -> Op:
        if self.transport == "graphql":
            data, response = yield from self.graphql(Q_GET, {"id": generation_id})
            return Generation.from_dict(data["generation"]), response.headers
        response = yield Call("GET", f"/v1/image_to_video/{generation_id}")
        return Generation.from_response(_json(response)), response.headers

    def get(self, generation_id: str) -> Op:
        generation, _ = yield from self.get_with_headers(generation_id)
        return generation

    def list_page(self, *, status: str | None, limit: int, cursor: str | None) -> Op:
        """One page: (generations, next cursor or None)."""
        if self.transport == "graphql":
            variables = _compact({"first": limit, "after": cursor, "status": status})
            data, _ = yield from self.graphql(Q_LIST, variables)
            conn = data["generations"]
            nodes = _first_list(conn)
            return [Generation.from_dict(n) for n in nodes], _next_cursor(conn)
        params = _compact({"status": status, "limit": limit, "cursor": cursor})
        response = yield Call("GET", "/v1/image_to_video", params=params)
        body = _json(response)
        items = _first_list(body.get("data", body))
        return [Generation.from_dict(i) for i in items], _next_cursor(body)

    def cancel(self, generation_id: str) -> Op:
        """Cancel; a job that is already cancelled (a retried cancel) is returned as is."""
        try:
            if self.transport == "graphql":
                data, _ = yield from self.graphql(Q_CANCEL, {"id": generation_id})
                return Generation.from_dict(data["cancelGeneration"])
            response = yield Call("DELETE", f"/v1/image_to_video/{generation_id}")
            return Generation.from_response(_json(response))
        except AlreadyFinished:
            current = yield from self.get(generation_id)
            if current.status == "cancelled":
                return current
            raise

    def account(self) -> Op:
        if self.transport == "graphql":
            data, _ = yield from self.graphql(Q_ACCOUNT)
            return Account.from_dict(data["account"])
        response = yield Call("GET", "/v1/account")
        return Account.from_response(_json(response))

    def services(self) -> Op:
        """The server's service catalogue (`GET /v1/services`): a list of dicts, each with
        `id`, `prices` (credits per second by version), `versions`, `durations`, … ."""
        response = yield Call("GET", "/v1/services")
        return list(_json(response)["data"]["services"])

    def price_of(self, *, service: str, options: Mapping[str, Any]) -> Op:
        """What a generation will cost at the server's prices for `service` (its
        `/v1/services` entry); the default prices when the server does not list them."""
        try:
            services = yield from self.services()
        except (NotFound, MethodNotAllowed):  # an older server: no catalogue to read
            services = []
        spec = next((s for s in services if s.get("id") == service), None)
        version = options.get("version") or DEFAULT_VERSION
        prices = (spec or {}).get("prices") or {}
        if version not in prices:
            return estimate_cost(
                version=version,
                duration=options.get("duration"),
                motion_brush=options.get("motionBrush"),
            )
        cost = prices[version] * (options.get("duration") or DEFAULT_DURATION)
        return math.ceil(cost * BRUSH_MULTIPLIER) if options.get("motionBrush") else cost

    def ledger_page(self, *, limit: int, before: str | None) -> Op:
        """One page of the ledger, newest first: (entries, next cursor or None)."""
        params = _compact({"limit": limit, "before": before})
        response = yield Call("GET", "/v1/account/ledger", params=params)
        body = _json(response)
        entries = [LedgerEntry.from_dict(e) for e in _first_list(body.get("data"))]
        return entries, _next_cursor(body)

    def set_webhook_url(self, url: str | None) -> Op:
        response = yield Call("PUT", "/v1/account/webhook", json={"url": url})
        return Account.from_response(_json(response))

    def deliveries(self, generation_id: str) -> Op:
        response = yield Call("GET", f"/v1/image_to_video/{generation_id}/deliveries")
        return [Delivery.from_dict(d) for d in _first_list(_json(response).get("data"))]

    def redeliver(self, generation_id: str, delivery_id: str) -> Op:
        url = f"/v1/image_to_video/{generation_id}/deliveries/{delivery_id}/redeliver"
        response = yield Call("POST", url, idempotency_key=new_idempotency_key())
        body = _json(response).get("data") or {}
        obj = next((v for v in body.values() if isinstance(v, Mapping)), body)
        return Delivery.from_dict(obj)

    def webhook_secret(self, *, rotate: bool) -> Op:
        method = "POST" if rotate else "GET"
        key = new_idempotency_key() if rotate else None
        response = yield Call(method, "/v1/account/webhook_secret", idempotency_key=key)
        return _json(response)["data"]["webhookSecret"]["secret"]

    def download(self, generation: Generation | str, path: str | os.PathLike[str]) -> Op:
        if isinstance(generation, str):
            generation = yield from self.get(generation)
        if generation.status != "completed" or not generation.url:
            raise ValueError(f"generation {generation.id} has no video yet ({generation.status})")
        result = yield Download(generation.url, Path(path))
        return result

    def ensure_credits(self, amount: int) -> Op:
        account = yield from self.account()
        if account.credit_balance < amount:
            raise InsufficientCredits(
                f"{amount} credits needed, {account.credit_balance} available",
                code="INSUFFICIENT_CREDITS",
                extensions={"creditsRequired": amount, "creditsAvailable": account.credit_balance},
            )
        return account

    # --- waiting ---------------------------------------------------------------------------
    def wait(
        self,
        generation: Generation | str,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> Op:
        """Poll until final. Backoff from `poll_interval` to `max_poll_interval`, never faster
        than the read budget the server announces allows."""
        gid = generation if isinstance(generation, str) else generation.id
        current = None if isinstance(generation, str) else generation
        deadline = None if timeout is None else self.clock() + timeout
        delay, pacer, last_seen = self.poll_interval, ReadPacer(), None
        while True:
            if current is not None:
                seen = (current.status, current.stage, current.progress)
                if on_progress is not None and seen != last_seen:
                    result = on_progress(current)
                    if inspect.isawaitable(result):
                        yield Await(result)
                last_seen = seen
                if current.status == "completed":
                    return current
                if current.status == "failed":
                    raise GenerationFailed(current)
                if current.status == "cancelled":
                    raise GenerationCancelled(current)
                pause = max(delay, pacer.min_interval(now=self.wall()))
                if deadline is not None:
                    left = deadline - self.clock()
                    if left <= 0 or pacer.min_interval(now=self.wall()) > left:
                        raise WaitTimeout(gid, generation=current)
                    pause = min(pause, left)
                yield Sleep(pause)
                delay = min(delay * self.poll_backoff, self.max_poll_interval)
            current, headers = yield from self.get_with_headers(gid)
            pacer.update(headers, now=self.wall())

    # --- batches ---------------------------------------------------------------------------
    def batch(
        self,
        images: Iterable[ImageInput],
        *,
        options: Mapping[str, Any],
        prompt: str | None,
        webhook_url: str | None,
        service: str,
        wait: bool,
    ) -> Op:
        """Submit many images within the plan's concurrency and the credits there are."""
        account = yield from self.account()
        balance, slots = account.credit_balance, account.concurrency
        cost: int | None = None
        result = BatchResult()
        pacer, stop_reason = ReadPacer(), None
        for image in images:
            if stop_reason is not None:
                result.skipped.append(Skipped(image, stop_reason))
                continue
            if cost is None:
                # The server's price, read once for the batch (its catalogue may differ).
                cost = yield from self.price_of(service=service, options=options)
            need = cost
            if need > balance:
                result.skipped.append(
                    Skipped(image, f"insufficient credits: {need} needed, {balance} available")
                )
                continue
            if slots is not None:
                yield from self._wait_for_slot(slots=slots, pacer=pacer)
            try:
                gen = yield from self.generate(
                    image=None if _is_url(image) else image,
                    image_url=image if _is_url(image) else None,
                    prompt=prompt,
                    options=options,
                    webhook_url=webhook_url,
                    service=service,
                    idempotency_key=None,
                )
            except InsufficientCredits as exc:
                balance = exc.available if exc.available is not None else 0
                result.skipped.append(Skipped(image, exc.message, exc))
                continue
            except DailyLimitExceeded as exc:
                stop_reason = f"daily limit reached: {exc.message}"
                result.skipped.append(Skipped(image, stop_reason, exc))
                continue
            except (BadRequest, PayloadTooLarge, IdempotencyKeyReused) as exc:
                result.skipped.append(Skipped(image, f"{exc.code}: {exc.message}", exc))
                continue
            except (OSError, ValueError) as exc:
                result.skipped.append(Skipped(image, f"unreadable image: {exc}"))
                continue
            result.submitted.append(gen)
            cost = gen.credit_cost if gen.credit_cost is not None else need
            balance -= cost
        if wait:
            finals = []
            for gen in result.submitted:
                try:
                    gen = yield from self.wait(gen, timeout=None, on_progress=None)
                except (GenerationFailed, GenerationCancelled) as exc:
                    gen = exc.generation
                finals.append(gen)
            result.submitted = finals
        return result

    def _wait_for_slot(self, *, slots: int, pacer: ReadPacer) -> Op:
        """Sleep until fewer than `slots` of the account's jobs are unfinished."""
        delay = self.poll_interval
        while True:
            response = yield Call(
                "GET",
                "/v1/image_to_video",
                params={"status": "processing", "limit": min(slots, 100)},
            )
            pacer.update(response.headers, now=self.wall())
            if len(_first_list(_json(response).get("data"))) < slots:
                return
            yield Sleep(max(delay, pacer.min_interval(now=self.wall())))
            delay = min(delay * self.poll_backoff, self.max_poll_interval)


def _is_url(image: Any) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://"))


def generation_options(
    *,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    version: str | None = None,
    motion_intensity: str | None = None,
    seed: int | None = None,
    camera: Mapping[str, Any] | None = None,
    motion_brush: list[Any] | None = None,
    loop: bool | None = None,
) -> dict[str, Any]:
    """API.md §2's options in their camelCase wire names, unset ones left out."""
    return _compact(
        {
            "duration": duration,
            "aspectRatio": aspect_ratio,
            "version": version,
            "motionIntensity": motion_intensity,
            "seed": seed,
            "camera": dict(camera) if camera is not None else None,
            "motionBrush": list(motion_brush) if motion_brush is not None else None,
            "loop": loop,
        }
    )


# --- checks made before any request ------------------------------------------------------------
def check_keywords(method: str, given: Iterable[str], valid: Collection[str]) -> None:
    """A TypeError like Python's own for `method`, with the nearest valid name and the rest,
    instead of one raised from an internal helper."""
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    raise TypeError(
        f"{method}() got an unexpected keyword argument {name!r}{hint} "
        f"Valid keywords: {', '.join(valid)}"
    )


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(f"{field} {message}", extensions={"field": field})


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def check_image_url(image_url: str | None) -> None:
    """`image_url` takes what the API's `imageUrl` does; a local path belongs in `image=`."""
    if image_url is not None and not _is_reference(image_url):
        raise _invalid(
            "image_url",
            f"must be an http(s) URL, a data: URI or an upload:// id, got {image_url!r}; "
            "pass a local file as image=",
        )


def check_options(options: Mapping[str, Any], *, prompt: str | None = None) -> None:
    """API.md §2's ranges (`stillmotion.options`), checked before anything is uploaded. The
    message names the parameter as the caller wrote it."""
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > limits.PROMPT_MAX):
        raise _invalid("prompt", f"must be a string of at most {limits.PROMPT_MAX} characters")
    duration = options.get("duration")
    if duration is not None and not (
        _whole(duration) and limits.DURATION_MIN <= duration <= limits.DURATION_MAX
    ):
        raise _invalid(
            "duration",
            f"must be a whole number of seconds from {limits.DURATION_MIN} to "
            f"{limits.DURATION_MAX}, got {duration!r}",
        )
    for name, allowed in (
        ("aspect_ratio", limits.ASPECT_RATIOS),
        ("version", limits.VERSIONS),
        ("motion_intensity", limits.MOTION_INTENSITIES),
    ):
        value = options.get(name)
        if value is not None and value not in allowed:
            raise _invalid(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    seed = options.get("seed")
    if seed is not None and not (_whole(seed) and 0 <= seed <= limits.SEED_MAX):
        raise _invalid("seed", f"must be a whole number from 0 to {limits.SEED_MAX}, got {seed!r}")
    camera = options.get("camera")
    if camera is not None:
        _check_camera(camera)
    brush = options.get("motion_brush")
    if brush is not None and (
        not isinstance(brush, list | tuple) or len(brush) > limits.MOTION_BRUSH_MAX
    ):
        raise _invalid("motion_brush", f"must be a list of at most {limits.MOTION_BRUSH_MAX}")
    loop = options.get("loop")
    if loop is not None and not isinstance(loop, bool):
        raise _invalid("loop", f"must be True or False, got {loop!r}")


def _check_camera(camera: Any) -> None:
    known = (*limits.CAMERA_AXES, "static")
    if not isinstance(camera, Mapping):
        raise _invalid("camera", f"must be a mapping of {', '.join(known)}")
    unknown = sorted(set(camera) - set(known))
    if unknown:
        raise _invalid("camera", f"has unknown axis {unknown[0]!r}; known: {', '.join(known)}")
    for axis in limits.CAMERA_AXES:
        value = camera.get(axis)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not limits.CAMERA_MIN <= value <= limits.CAMERA_MAX
        ):
            raise _invalid(
                "camera",
                f"{axis} must be a number from {limits.CAMERA_MIN} to {limits.CAMERA_MAX}, "
                f"got {value!r}",
            )
    static = camera.get("static")
    if static is not None and not isinstance(static, bool):
        raise _invalid("camera", f"static must be True or False, got {static!r}")
