"""Assembles the ASGI app: REST routers, GraphQL, media, health and metrics; the lifespan runs
the embedded workers."""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from stillmotion import errors, metrics
from stillmotion.accounts.limits import RateLimiter, RateLimitHeaders
from stillmotion.accounts.rest import router as accounts_router
from stillmotion.config import Settings, get_settings
from stillmotion.context import Context, load_catalogue
from stillmotion.db import Database
from stillmotion.generations.rest import router as generations_router
from stillmotion.graphql import router as graphql_router
from stillmotion.jobs.worker import WorkerPool
from stillmotion.runway_api.rest import router as runway_router
from stillmotion.services.catalogue import Catalogue
from stillmotion.services.rest import router as services_router
from stillmotion.storage import LocalStorage
from stillmotion.uploads.rest import router as uploads_router
from stillmotion.webhooks.delivery import DeliveryLoop
from stillmotion.webhooks.rest import router as webhooks_router

log = logging.getLogger("stillmotion.app")


def error_response(exc: errors.StillmotionError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


class BodyLimit:
    """Refuse request bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, *, default: int, uploads: int) -> None:
        self.app, self.default, self.uploads = app, default, uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.uploads if scope["path"].startswith("/v1/uploads") else self.default
        length = dict(scope.get("headers") or ()).get(b"content-length")
        too_large = errors.PayloadTooLarge(f"the request body is over {limit} bytes")
        if length is not None and length.isdigit() and int(length) > limit:
            return await error_response(too_large)(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await error_response(too_large)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class CatchAll:
    """Answer an unexpected error with the §6 500 body and keep the connection usable.

    (A handler for `Exception` would run in Starlette's outermost middleware, which re-raises
    after answering, so the server then drops the keep-alive connection.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc
            )
            if started:
                raise
            await error_response(errors.InternalError())(scope, receive, send)


class WholeFileOnBadRange:
    """Serve the whole file (200) for a `Range` header that is not a valid byte range, as RFC
    9110 §14.2 lets a server do, instead of Starlette's plain-text 400. A valid range is
    left to `FileResponse` (206, or 416 when it starts past the end)."""

    _RANGE = re.compile(r"(\d+)-(\d*)|-(\d+)")
    MAX_RANGES = 100

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @classmethod
    def valid(cls, value: str) -> bool:
        unit, sep, spec = value.partition("=")
        parts = spec.split(",")
        if unit.strip().lower() != "bytes" or not sep or len(parts) > cls.MAX_RANGES:
            return False
        for part in parts:
            match = cls._RANGE.fullmatch(part.strip())
            if match is None:
                return False
            first, last, _ = match.groups()
            if first is not None and last and int(last) < int(first):
                return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or ()
            ranges = [v for k, v in headers if k == b"range"]
            if ranges and not (len(ranges) == 1 and self.valid(ranges[0].decode("latin-1"))):
                scope = {**scope, "headers": [(k, v) for k, v in headers if k != b"range"]}
        await self.app(scope, receive, send)


# CORS (off unless STILLMOTION_CORS_ORIGINS is set): what a browser client sends and reads.
CORS_ALLOW_HEADERS = ("Authorization", "X-API-Key", "Idempotency-Key", "Content-Type")
CORS_EXPOSE_HEADERS = (
    "Location",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Idempotent-Replayed",
    "WWW-Authenticate",
)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(router, scope: Scope) -> str:
    """The `Allow` header for a 405: each method some route would fully match on this path.
    (Asked of the routes rather than read from them: FastAPI nests included routers.)"""
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL for route in router.routes
        )
    ]
    return ", ".join(allowed)


def create_app(
    settings: Settings | None = None,
    *,
    workers: int | None = None,
    catalogue: Catalogue | None = None,
) -> FastAPI:
    """The app. `catalogue`: the services, when the caller loaded them already (`serve` does, to
    stop at start on a bad file); otherwise read here from `STILLMOTION_SERVICES`
    (`CatalogueError` for a bad file)."""
    settings = settings or get_settings()
    catalogue = catalogue or load_catalogue(settings)
    db = Database(settings.resolved_database_url)
    storage = LocalStorage(settings.media_dir, public_url=settings.public_url)
    ctx = Context(db=db, settings=settings, storage=storage, catalogue=catalogue)
    worker_count = settings.workers if workers is None else workers

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = None
        deliveries = None
        if worker_count > 0:
            pool = WorkerPool(ctx, worker_count)
            pool.start()
            app.state.notify_workers = pool.notify
            # Webhooks go out wherever workers run: one delivery loop per process.
            deliveries = DeliveryLoop(db, settings)
            deliveries.start()
        yield
        if pool is not None:
            pool.stop()  # first: a running render goes back to the queue at once
        if deliveries is not None:
            deliveries.stop()
        ctx.providers.close()
        db.dispose()

    app = FastAPI(
        title="stillmotion",
        version="0.1.0",
        summary="Self-hosted image-to-video API (Runway Image-to-Video API compatible)",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.notify_workers = lambda: None
    app.state.limiter = RateLimiter.from_settings(settings)

    @app.exception_handler(errors.StillmotionError)
    async def _domain_error(request: Request, exc: errors.StillmotionError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        return error_response(
            errors.ValidationFailed(f"{field}: {message}" if field else message, field=field)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            allow = allowed_methods(request.app.router, request.scope)
            return error_response(errors.MethodNotAllowed(allow=allow or exc.headers.get("Allow")))
        code = {404: "NOT_FOUND", 401: "UNAUTHENTICATED"}.get(exc.status_code, "BAD_REQUEST")
        err = errors.StillmotionError(str(exc.detail))
        err.status, err.code = exc.status_code, code
        return JSONResponse(err.body(), status_code=exc.status_code)

    app.include_router(generations_router)
    app.include_router(uploads_router)
    app.include_router(accounts_router)
    app.include_router(webhooks_router)
    app.include_router(services_router)
    app.include_router(graphql_router)
    app.include_router(runway_router)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Database and storage are reachable")
    def readyz():
        problems = []
        try:
            with db.session() as session:
                session.connection().exec_driver_sql("SELECT 1")
        except Exception:
            problems.append("database")
        try:
            storage.check()
        except Exception:
            problems.append("storage")
        if problems:
            return JSONResponse({"status": "unavailable", "failing": problems}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    def metrics_endpoint():
        return PlainTextResponse(metrics.render(ctx), media_type=metrics.CONTENT_TYPE)

    (storage.root / "outputs").mkdir(parents=True, exist_ok=True)
    app.mount(
        "/media/outputs",
        WholeFileOnBadRange(StaticFiles(directory=storage.root / "outputs")),
        name="media",
    )
    app.add_middleware(
        BodyLimit, default=settings.max_body_bytes, uploads=settings.max_image_bytes + 1024 * 1024
    )
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(CatchAll)
    if settings.cors_origin_list:
        # Outermost, so that every answer (errors and 500s included) carries the headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            max_age=600,
        )
    return app
