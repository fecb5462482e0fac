"""Rate limits (API.md §8): per-minute creates, reads, the daily cap, and the response headers.

- Creates: a moving window per account (`limits`' MovingWindowRateLimiter) with the plan's
  per-minute number. A moving window is exact, so `Retry-After` on a 429 is the time until the
  oldest request in the window leaves it, i.e. until a slot really frees.
- Reads (every other authenticated request): a sliding-window counter per key with
  `STILLMOTION_READ_LIMIT_PER_MINUTE`. It costs O(1) per request however high the limit is,
  which matters on the polling path; its reset time is an approximation, which is fine there.
- Counters live in process memory by default (`MemoryWindows`) and in Redis when
  `STILLMOTION_REDIS_URL` is set, so several API processes share one count.
- The daily cap is not a counter: `generations.quota.check_daily` counts the account's
  generations created since 00:00 UTC inside the transaction that creates the next one, so it
  is exact across processes and restarts.

Which requests count against the create window is decided in `generations/admission.py`; the
plans' numbers and the operator's overrides are `accounts/plans.py`.

Every authenticated response carries `X-RateLimit-Limit/Remaining/Reset` (Reset in UTC epoch
seconds) and the IETF draft's structured `RateLimit-Policy` / `RateLimit` fields for the window
the request was counted in (`"create"` or `"read"`); `RateLimitHeaders` adds them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stillmotion import errors
from stillmotion.accounts.plans import Limits
from stillmotion.config import Settings

STATE_KEY = "rate_limit"
# Reads that may start in one turn of the event loop (`TurnShare`): a few ms of a turn on the
# benchmark's machine. 32 was enough while every keep-alive response stalled 40 ms on Nagle's
# algorithm (fixed in server.py); with polls at full speed, 12 keeps creates beside 150
# pollers above a quarter of their rate alone (tests/integration/test_fairness.py: 0.18 at
# 32) and the GET benchmark's 32 connections at the same throughput.
READS_PER_TURN = 12
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


class MemoryWindows:
    """Both windows in this process's memory: plain synchronous code for the event loop, with
    no lock, no task and no thread.

    Not `limits`' asyncio `MemoryStorage`: it takes a per-key `asyncio.Lock`, and after every
    hit (reads too) starts a task that trims the moving windows in a worker thread while
    holding their locks. Concurrent creates of one account then queued on that lock, one per
    turn of the event loop; beside 200 polling connections a turn took ~30 ms, and creates fell
    from ~400/s to ~15/s (docs/benchmarks.md, "Polling beside creates"). Here a hit is a few
    microseconds and cannot interleave with another.

    The arithmetic is `limits`': an exact moving window (a queue of hit times per key) and
    its sliding-window counter (this window's count plus the last one's, weighted by how much
    of it still overlaps the last `window` seconds).
    """

    SWEEP_SECONDS = 60.0

    def __init__(self, *, window: int = 60) -> None:
        self.window = window
        self._moving: dict[str, deque[float]] = {}
        # key -> (index of the current fixed window, its count, the previous window's count)
        self._counters: dict[str, tuple[int, int, int]] = {}
        self._next_sweep = 0.0

    def hit_moving(self, key: str, limit: int, now: float) -> tuple[bool, int, float]:
        """Count a hit unless `limit` hits are in the last `window` seconds; return (allowed,
        remaining, when the oldest hit leaves the window)."""
        self._sweep(now)
        hits = self._hits(key, now)
        allowed = len(hits) < limit
        if allowed:
            hits.append(now)
        return allowed, limit - len(hits), hits[0] + self.window if hits else now

    def peek_moving(self, key: str, limit: int, now: float) -> tuple[int, float]:
        """(remaining, when the oldest hit leaves the window; `now` if none is in it)."""
        hits = self._hits(key, now)
        return limit - len(hits), hits[0] + self.window if hits else now

    def _hits(self, key: str, now: float) -> deque[float]:
        hits = self._moving.get(key)
        if hits is None:
            hits = self._moving[key] = deque()
        cutoff = now - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits

    def hit_counter(self, key: str, limit: int, now: float) -> tuple[bool, int, float]:
        """Count a hit unless the weighted count is at `limit`; return (allowed, remaining,
        when the weighted count next drops)."""
        self._sweep(now)
        index = int(now // self.window)
        current, previous = self._counts(key, index)
        weight = 1 - (now / self.window) % 1  # share of the previous window still inside
        allowed = math.floor(previous * weight + current) + 1 <= limit
        if allowed:
            current += 1
            self._counters[key] = (index, current, previous)
        remaining = max(0, limit - math.floor(previous * weight + current))
        reset_in = math.inf
        if previous:
            reset_in = (weight * self.window) % (self.window / previous)
        if current:
            reset_in = min(reset_in, weight * self.window)
        return allowed, remaining, now + reset_in if reset_in != math.inf else now

    def _counts(self, key: str, index: int) -> tuple[int, int]:
        state = self._counters.get(key)
        if state is None or state[0] < index - 1:
            return 0, 0
        if state[0] == index - 1:
            return 0, state[1]
        return state[1], state[2]

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit in the window, at most once a minute (O(keys))."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        cutoff = now - self.window
        for key in [k for k, hits in self._moving.items() if not hits or hits[-1] <= cutoff]:
            del self._moving[key]
        index = int(now // self.window)
        for key in [k for k, state in self._counters.items() if state[0] < index - 1]:
            del self._counters[key]


class TurnShare:
    """At most `per_turn` reads start in one turn of the event loop; the others wait, in
    order, for the next turns.

    A read is one short step on the loop (auth, the limit, the row and its JSON), so a crowd
    of polling connections makes each turn of the loop long, and everything else waits
    behind all of them at every await: a create needs several turns (its body, the image
    check in a thread, its transaction). Beside 200 polling connections creates fell to a
    fraction of their rate alone. With reads held to a share of each turn, a turn is short
    whatever the number of pollers, and creates keep most of their rate; pollers in excess
    wait a turn or two, which costs them no CPU (docs/benchmarks.md, "Polling beside
    creates"). A lone client, or a few, never waits.
    """

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._started = 0  # reads started in this turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def admit(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests start one per app): start afresh
            self._loop, self._started, self._turn_pending = loop, 0, False
            self._waiting.clear()
        if self._started < self.per_turn and not self._waiting:
            self._started += 1
            self._end_turn_soon()
            return
        waiter = loop.create_future()
        self._waiting.append(waiter)
        self._end_turn_soon()
        await waiter

    def _end_turn_soon(self) -> None:
        # A callback scheduled now runs in the loop's next turn, after everything ready now.
        if not self._turn_pending:
            self._turn_pending = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_pending = False
        self._started = 0
        while self._waiting and self._started < self.per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():  # its request may have gone (cancelled)
                waiter.set_result(None)
                self._started += 1
        if self._started:
            self._end_turn_soon()


class RateLimiter:
    """The per-minute windows of one API process, in memory or on Redis storage, and the
    share of each turn of its event loop that reads may take (`TurnShare`)."""

    def __init__(self, *, redis_url: str = "", read_per_minute: int = 600) -> None:
        self.memory: MemoryWindows | None = None
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            self.storage = RedisStorage(uri, implementation="redispy")
            self.moving = MovingWindowRateLimiter(self.storage)
            self.sliding = SlidingWindowCounterRateLimiter(self.storage)
        else:
            self.memory = MemoryWindows()
        self.read_item = RateLimitItemPerMinute(read_per_minute, namespace="sm-read")
        self.read_turns = TurnShare(READS_PER_TURN)
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
        if self.memory is not None:
            allowed, remaining, reset = self.memory.hit_moving(
                "create/" + account_id, per_minute, time.time()
            )
            decision = Decision("create", per_minute, max(0, remaining), reset)
            if not allowed:
                raise _limited(decision, "create requests")
            return decision
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
        if self.memory is not None:
            remaining, reset = self.memory.peek_moving(
                "create/" + account_id, per_minute, time.time()
            )
            return Decision("create", per_minute, max(0, remaining), reset)
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
        if self.memory is not None:
            now = time.time()
            allowed, remaining, reset = self.memory.hit_counter("read/" + key_id, item.amount, now)
            decision = Decision(
                "read", item.amount, remaining, reset if reset > now else now + item.get_expiry()
            )
            if not allowed:
                raise _limited(decision, "requests")
            return decision
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


async def check_create(*, limiter: RateLimiter, scope: Scope, principal, plan: Limits) -> Decision:
    """Count a create request for the caller's account against its plan's per-minute limit."""
    try:
        decision = await limiter.hit_create(
            account_id=principal.account_id, per_minute=plan.per_minute
        )
    except errors.RateLimited as exc:
        record(scope, exc.decision)  # type: ignore[attr-defined]
        raise
    record(scope, decision)
    return decision


async def peek_create(*, limiter: RateLimiter, scope: Scope, principal, plan: Limits) -> None:
    """Report the create window in the response without counting this request."""
    record(
        scope,
        await limiter.peek_create(account_id=principal.account_id, per_minute=plan.per_minute),
    )


async def check_read(*, limiter: RateLimiter, scope: Scope, principal) -> Decision:
    """Count a read against the key's limit, once the read's turn on the loop has come."""
    await limiter.read_turns.admit()
    try:
        decision = await limiter.hit_read(key_id=principal.key_id)
    except errors.RateLimited as exc:
        record(scope, exc.decision)  # type: ignore[attr-defined]
        raise
    record(scope, decision)
    return decision


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
