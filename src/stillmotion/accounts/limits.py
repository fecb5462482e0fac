"""Rate limits (API.md §8): per-minute creates, reads, the daily cap, and the response headers.

- Creates: a moving window per account (`limits`' MovingWindowRateLimiter) with the plan's
  per-minute number. A moving window is exact, so `Retry-After` on a 429 is the time until the
  oldest request in the window leaves it, i.e. until a slot really frees.
- Reads (every other authenticated request): a sliding-window counter per key with
  `STILLMOTION_READ_LIMIT_PER_MINUTE`. It costs O(1) per request however high the limit is,
  which matters on the polling path; its reset time is an approximation, which is fine there.
- Counters live in process memory by default and in Redis when `STILLMOTION_REDIS_URL` is set,
  so several API processes share one count.
- The daily cap is not a counter: it counts the account's generations created since 00:00 UTC
  inside the transaction that creates the next one (`check_daily`), so it is exact across
  processes and restarts.

What counts: every create request that reaches the handler counts against the per-minute
window, also one that then fails validation (the seed counts "generation requests"; this also
keeps bad requests from fetching images without limit). Replays of an `Idempotency-Key` and
requests answered 409/422 by idempotency do not count: the idempotency check comes first.

Every authenticated response carries `X-RateLimit-Limit/Remaining/Reset` (Reset in UTC epoch
seconds) and the IETF draft's structured `RateLimit-Policy` / `RateLimit` fields for the window
the request was counted in (`"create"` or `"read"`); `RateLimitHeaders` adds them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stillmotion import errors
from stillmotion.accounts.models import Account
from stillmotion.accounts.plans import Limits, limits_for
from stillmotion.config import Settings

STATE_KEY = "rate_limit"
log = logging.getLogger("stillmotion.limits")


@dataclass(frozen=True)
class Decision:
    """The state of one window after a request was counted in it."""

    policy: str  # "create" or "read"
    limit: int
    remaining: int
    reset_at: float  # epoch seconds: when a slot frees (remaining 0) or the window empties
    window: int = 60

    def retry_after(self, now: float | None = None) -> int:
        return max(1, math.ceil(self.reset_at - (now or time.time())))

    def headers(self, now: float | None = None) -> list[tuple[bytes, bytes]]:
        now = now or time.time()
        reset_in = max(0, math.ceil(self.reset_at - now))
        name = f'"{self.policy}"'
        values = (
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(math.ceil(max(self.reset_at, now)))),
            ("ratelimit-policy", f"{name};q={self.limit};w={self.window}"),
            ("ratelimit", f"{name};r={self.remaining};t={reset_in}"),
        )
        return [(k.encode(), v.encode()) for k, v in values]


class RateLimiter:
    """The per-minute windows of one API process, on memory or Redis storage."""

    def __init__(self, *, redis_url: str = "", read_per_minute: int = 600) -> None:
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            self.storage = RedisStorage(uri, implementation="redispy")
        else:
            self.storage = MemoryStorage()
        self.moving = MovingWindowRateLimiter(self.storage)
        self.sliding = SlidingWindowCounterRateLimiter(self.storage)
        self.read_item = RateLimitItemPerMinute(read_per_minute, namespace="sm-read")
        self._create_items: dict[int, RateLimitItemPerMinute] = {}
        self._last_failure_log = -1e9

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(redis_url=settings.redis_url, read_per_minute=settings.read_limit_per_minute)

    def _create_item(self, per_minute: int) -> RateLimitItemPerMinute:
        item = self._create_items.get(per_minute)
        if item is None:
            item = self._create_items[per_minute] = RateLimitItemPerMinute(
                per_minute, namespace="sm-create"
            )
        return item

    def _storage_failed(self, policy: str, limit: int) -> Decision:
        """Fail open: a rate-limit store that is down (Redis restarting) must not take the
        API down with it. Logged at most every 10 s; credits and the daily cap, which live in
        the database, still hold."""
        now = time.monotonic()
        if now - self._last_failure_log > 10:
            self._last_failure_log = now
            log.warning("rate-limit storage failed; not limiting meanwhile", exc_info=True)
        return Decision(policy, limit, limit, time.time() + 60)

    async def hit_create(self, *, account_id: str, per_minute: int) -> Decision:
        """Count one create request, or raise `RateLimited` (the request is not counted)."""
        item = self._create_item(per_minute)
        try:
            allowed = await self.moving.hit(item, account_id)
            stats = await self.moving.get_window_stats(item, account_id)
        except Exception:
            return self._storage_failed("create", per_minute)
        decision = Decision("create", per_minute, max(0, stats.remaining), stats.reset_time)
        if not allowed:
            raise _limited(decision, "create requests")
        return decision

    async def peek_create(self, *, account_id: str, per_minute: int) -> Decision:
        """The create window as it stands, without counting a request."""
        item = self._create_item(per_minute)
        try:
            stats = await self.moving.get_window_stats(item, account_id)
        except Exception:
            return self._storage_failed("create", per_minute)
        reset = stats.reset_time if stats.remaining < per_minute else time.time()
        return Decision("create", per_minute, max(0, stats.remaining), reset)

    async def hit_read(self, *, key_id: str) -> Decision:
        """Count one read request, or raise `RateLimited`."""
        item = self.read_item
        try:
            allowed = await self.sliding.hit(item, key_id)
            stats = await self.sliding.get_window_stats(item, key_id)
        except Exception:
            return self._storage_failed("read", item.amount)
        now = time.time()
        reset = stats.reset_time if stats.reset_time > now else now + item.get_expiry()
        decision = Decision("read", item.amount, max(0, stats.remaining), reset)
        if not allowed:
            raise _limited(decision, "requests")
        return decision


def _limited(decision: Decision, what: str) -> errors.RateLimited:
    exc = errors.RateLimited(
        f"Rate limit exceeded: {decision.limit} {what} per minute; "
        f"retry in {decision.retry_after()} s",
        retry_after=decision.retry_after(),
    )
    exc.decision = decision  # type: ignore[attr-defined]
    return exc


def record(scope: Scope, decision: Decision) -> None:
    """Remember the request's window so `RateLimitHeaders` reports it."""
    scope.setdefault("state", {})[STATE_KEY] = decision


async def check_create(*, limiter: RateLimiter, scope: Scope, principal, limits) -> Decision:
    """Count a create request for the caller's account against its plan's per-minute limit."""
    try:
        decision = await limiter.hit_create(
            account_id=principal.account_id, per_minute=limits.per_minute
        )
    except errors.RateLimited as exc:
        record(scope, exc.decision)  # type: ignore[attr-defined]
        raise
    record(scope, decision)
    return decision


async def peek_create(*, limiter: RateLimiter, scope: Scope, principal, limits) -> None:
    record(
        scope,
        await limiter.peek_create(account_id=principal.account_id, per_minute=limits.per_minute),
    )


def account_limits(*, db, account_id: str) -> Limits:
    """The plan's limits with the account's overrides (one short read)."""
    with db.session() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise errors.NotFound("no such account")
        return limits_for(account)


async def plan_limits(*, state, db, account_id: str, ttl: float = 1.0) -> Limits:
    """`account_limits`, remembered for `ttl` seconds per process (a plan change takes effect
    within a second; the daily cap is always read in the charging transaction)."""
    cache: dict[str, tuple[float, Limits]] = state.__dict__.setdefault("_plan_limits", {})
    now = time.monotonic()
    hit = cache.get(account_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    result = await db.run(account_limits, db=db, account_id=account_id)
    if len(cache) >= 10_000:
        cache.clear()
    cache[account_id] = (now + ttl, result)
    return result


async def check_read(*, limiter: RateLimiter, scope: Scope, principal) -> Decision:
    try:
        decision = await limiter.hit_read(key_id=principal.key_id)
    except errors.RateLimited as exc:
        record(scope, exc.decision)  # type: ignore[attr-defined]
        raise
    record(scope, decision)
    return decision


def start_of_utc_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@cache
def _daily_statements():
    """The account lock and today's count, built once (they run on every create)."""
    from stillmotion.generations.models import Generation

    lock = (
        select(
            Account.plan, Account.limit_per_minute, Account.limit_concurrent, Account.limit_daily
        )
        .where(Account.id == bindparam("account_id"))
        .with_for_update()
    )
    created_since = select(func.count(Generation.id)).where(
        Generation.account_id == bindparam("account_id"),
        Generation.created_at >= bindparam("since"),
    )
    return lock, created_since


def check_daily(*, session: Session, account_id: str) -> Limits:
    """Refuse a create over the account's daily limit (UTC day), or return the account's
    limits. Call it in the transaction that creates the generation: it locks the account row
    first (PostgreSQL; SQLite's write transaction is already exclusive), so concurrent creates
    count each other."""
    lock, created_since = _daily_statements()
    conn = session.connection()
    account = conn.execute(lock, {"account_id": account_id}).first()
    if account is None:
        raise errors.NotFound("no such account")
    plan = limits_for(account)
    if plan.daily is None:
        return plan
    day = start_of_utc_day()
    today = conn.scalar(created_since, {"account_id": account_id, "since": day})
    if today >= plan.daily:
        reset = day + timedelta(days=1)
        raise errors.DailyLimitExceeded(
            f"Daily limit of {plan.daily} generations reached; it resets at 00:00 UTC",
            retry_after=math.ceil((reset - datetime.now(UTC)).total_seconds()),
            limit=plan.daily,
        )
    return plan


def set_overrides(
    *,
    session: Session,
    account_name: str,
    plan: str | None = None,
    per_minute: int | None = None,
    concurrent: int | None = None,
    daily: int | None = None,
    low_credit_threshold: int | None = None,
    reset: bool = False,
) -> Account:
    """An operator's change of an account's plan and per-account limits (enterprise deals).
    `reset` first clears the overrides, so the plan's numbers apply again."""
    from stillmotion.accounts.plans import PLANS

    account = session.scalar(select(Account).where(Account.name == account_name))
    if account is None:
        raise errors.NotFound(f"no account {account_name!r}")
    if plan is not None:
        if plan not in PLANS:
            raise errors.ValidationFailed(
                f"unknown plan {plan!r}; known: {', '.join(PLANS)}", field="plan"
            )
        account.plan = plan
    if reset:
        account.limit_per_minute = account.limit_concurrent = account.limit_daily = None
    for field, value in (
        ("limit_per_minute", per_minute),
        ("limit_concurrent", concurrent),
        ("limit_daily", daily),
        ("low_credit_threshold", low_credit_threshold),
    ):
        if value is not None:
            if value < (0 if field == "low_credit_threshold" else 1):
                raise errors.ValidationFailed(f"{field} must be positive", field=field)
            setattr(account, field, value)
    session.flush()
    return account


class RateLimitHeaders:
    """ASGI middleware: adds the request's rate-limit headers to its response, whatever
    produced it (route, error handler, GraphQL)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get(STATE_KEY)
                if decision is not None:
                    message["headers"] = [*message.get("headers", ()), *decision.headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)
