"""Sending the outbox: the delivery loop that runs wherever workers run (API.md §7).

One loop thread per process claims due rows and hands them to a few sender threads:

- **claim**: `state IN ('pending', 'queued') AND next_attempt_at <= now` and no live lease
  (`queued`: a redelivery asked for through the API, which only queues it); the claim sets
  `lease_expires_at`, which doubles as the fencing token (only the holder of that exact value
  may record the outcome). PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, SQLite inside a
  `BEGIN IMMEDIATE` transaction, so two processes never send the same attempt at once. A
  process that dies mid-attempt leaves the row pending; it is claimed again when its lease runs
  out (the receiver may then see the same `webhook-id` twice: delivery is at least once).
- **send**: `net.post_sync` (no redirects, the resolved address pinned and checked against the
  allow-list again, so a DNS change since submission is refused), signed with the account's
  current secret and, during a rotation's grace period, the previous one.
- **record**: every attempt becomes a `WebhookAttempt`. 2xx: delivered. 410: the URL is
  disabled for the account. Anything else (3xx included, and a refused or unreachable URL):
  retried on `SCHEDULE` × `webhook_backoff_scale` with jitter, never sooner than the receiver's
  `Retry-After`, and `failed` once the schedule is exhausted. A redelivery's attempt is the
  same, except that it goes to a URL disabled by a 410, and its 2xx re-enables that URL.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from stillmotion import net
from stillmotion.accounts.models import Account
from stillmotion.client.webhooks import signature_headers
from stillmotion.config import Settings
from stillmotion.db import Database, utcnow
from stillmotion.errors import UrlNotAllowed
from stillmotion.webhooks.models import (
    SENDABLE,
    DeliveryState,
    DisabledWebhookUrl,
    WebhookAttempt,
    WebhookDelivery,
)

log = logging.getLogger("stillmotion.webhooks")

# Seconds after the 1st, 2nd, … failed attempt (the Standard Webhooks example schedule):
# ten attempts spread over about three days.
SCHEDULE: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS = len(SCHEDULE) + 1
JITTER = 0.1  # each delay is drawn from ±10 % of the scheduled one
MAX_RETRY_AFTER = 86400.0  # a receiver cannot push its next attempt further than a day

try:
    USER_AGENT = f"stillmotion-webhooks/{version('stillmotion')}"
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "stillmotion-webhooks"


@dataclass(frozen=True)
class Claimed:
    """A delivery leased to this process for one attempt."""

    id: str
    account_id: str
    url: str
    payload: bytes
    secrets: list[str]
    token: datetime  # the lease_expires_at this claim wrote; recording requires it unchanged
    manual: bool = False  # a redelivery (the row was `queued`)


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error saying why there was none."""

    started_at: datetime
    duration_ms: int
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_delay(
    attempts: int, *, scale: float, retry_after: float | None = None, rng: random.Random = random
) -> float | None:
    """Seconds to wait after `attempts` failed attempts; None when the schedule is exhausted."""
    if attempts < 1 or attempts > len(SCHEDULE):
        return None
    delay = SCHEDULE[attempts - 1] * scale * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or utcnow())).total_seconds())


def signing_secrets(account: Account, *, now: datetime | None = None) -> list[str]:
    """The current secret, then the previous one while its grace period lasts."""
    now = now or utcnow()
    secrets = [account.webhook_secret]
    expires = account.webhook_secret_previous_expires_at
    if account.webhook_secret_previous and expires is not None and expires > now:
        secrets.append(account.webhook_secret_previous)
    return secrets


def lease_seconds(settings: Settings) -> float:
    """The lease outlasts the longest attempt, so a live sender never loses its claim."""
    return max(settings.webhook_lease_seconds, settings.webhook_timeout_seconds + 5)


def _is_disabled(session: Session, account_id: str, url: str) -> bool:
    return (
        session.scalar(
            select(DisabledWebhookUrl.id).where(
                DisabledWebhookUrl.account_id == account_id, DisabledWebhookUrl.url == url
            )
        )
        is not None
    )


def lease(*, session: Session, row: WebhookDelivery, seconds: float, now: datetime) -> Claimed:
    """Lease `row` for one attempt and gather what sending needs."""
    token = now + timedelta(seconds=seconds)
    manual = row.state == DeliveryState.QUEUED
    row.lease_expires_at = token
    account = session.get(Account, row.account_id)
    assert account is not None
    return Claimed(
        id=row.id,
        account_id=row.account_id,
        url=row.url,
        payload=row.payload.encode(),
        secrets=signing_secrets(account, now=now),
        token=token,
        manual=manual,
    )


def claim(*, session: Session, settings: Settings, limit: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries, redeliveries included.

    Scheduled rows whose URL was disabled meanwhile are closed; a redelivery goes out anyway.
    """
    now = utcnow()
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.state.in_(SENDABLE),
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for row in rows:
        if row.state == DeliveryState.PENDING and _is_disabled(session, row.account_id, row.url):
            row.state = DeliveryState.DISABLED
            row.lease_expires_at = None
            continue
        claimed.append(lease(session=session, row=row, seconds=lease_seconds(settings), now=now))
    session.flush()
    return claimed


def next_due_in(*, session: Session) -> float | None:
    """Seconds until a delivery can be claimed (≤ 0: now); None when none is waiting.

    A leased one counts from its lease's end (its sender may have died), not from its due time.
    """
    now = utcnow()
    pending = WebhookDelivery.state.in_(SENDABLE)
    free = or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now)
    times = [
        session.scalar(select(func.min(WebhookDelivery.next_attempt_at)).where(pending, free)),
        session.scalar(select(func.min(WebhookDelivery.lease_expires_at)).where(pending, ~free)),
    ]
    found = [_aware(t) for t in times if t is not None]
    return (min(found) - now).total_seconds() if found else None


def _aware(value: datetime | str) -> datetime:
    """Aggregates can come back as text or naive datetimes on SQLite; they are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def send(claimed: Claimed, *, settings: Settings) -> Outcome:
    """One signed POST of the stored payload. Never raises: failures are outcomes."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signature_headers(
            secrets=claimed.secrets,
            msg_id=claimed.id,
            timestamp=int(time.time()),
            body=claimed.payload,
        ),
    }
    started_at = utcnow()
    start = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - start) * 1000)

    try:
        result = net.post_sync(
            claimed.url,
            content=claimed.payload,
            headers=headers,
            allow_networks=settings.networks,
            timeout=settings.webhook_timeout_seconds,
        )
    except UrlNotAllowed as exc:
        return Outcome(started_at, took(), error=f"URL_NOT_ALLOWED: {exc.message}")
    except net.DeliveryError as exc:
        return Outcome(started_at, took(), error=str(exc))
    except Exception:
        log.exception("webhook %s: unexpected error while sending", claimed.id)
        return Outcome(started_at, took(), error="internal error while sending")
    retry_after = None
    if not 200 <= result.status < 300:
        retry_after = parse_retry_after(result.headers.get("retry-after"))
    return Outcome(started_at, took(), status=result.status, retry_after=retry_after)


def disable_url(*, session: Session, account_id: str, url: str) -> None:
    """The receiver answered 410 Gone: nothing more goes to this URL for this account."""
    if not _is_disabled(session, account_id, url):
        session.add(DisabledWebhookUrl(account_id=account_id, url=url))
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.account_id == account_id,
            WebhookDelivery.url == url,
            WebhookDelivery.state == DeliveryState.PENDING,
        )
        .values(state=DeliveryState.DISABLED, lease_expires_at=None)
    )


def add_attempt(*, session: Session, delivery_id: str, outcome: Outcome) -> None:
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id,
            attempted_at=outcome.started_at,
            status_code=outcome.status,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )


def record(
    *, session: Session, claimed: Claimed, outcome: Outcome, settings: Settings
) -> WebhookDelivery | None:
    """Log the attempt and move the delivery on, if this process still holds its lease.

    Every attempt, a redelivery's included, counts toward the schedule: a failure is retried
    while attempts are left, then `failed`. A redelivery's 2xx re-enables a URL disabled by an
    earlier 410.
    """
    add_attempt(session=session, delivery_id=claimed.id, outcome=outcome)
    row = session.get(WebhookDelivery, claimed.id, with_for_update=True)
    if row is None or row.lease_expires_at != claimed.token:
        log.warning("webhook %s: lease lost before the outcome was recorded", claimed.id)
        return row
    now = utcnow()
    row.attempts += 1
    row.last_status = outcome.status
    row.last_error = outcome.error
    row.lease_expires_at = None
    if outcome.ok:
        row.state, row.delivered_at = DeliveryState.DELIVERED, now
        if claimed.manual:
            session.execute(
                delete(DisabledWebhookUrl).where(
                    DisabledWebhookUrl.account_id == row.account_id,
                    DisabledWebhookUrl.url == row.url,
                )
            )
    elif outcome.status == 410:
        row.state = DeliveryState.DISABLED
        disable_url(session=session, account_id=row.account_id, url=row.url)
    else:
        delay = retry_delay(
            row.attempts, scale=settings.webhook_backoff_scale, retry_after=outcome.retry_after
        )
        if delay is None:
            row.state = DeliveryState.FAILED
        else:
            row.state = DeliveryState.PENDING
            row.next_attempt_at = now + timedelta(seconds=delay)
    session.flush()
    return row


class DeliveryLoop:
    """The per-process loop: claims due deliveries and sends them on a few threads."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._thread = threading.Thread(target=self.run, name="webhook-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def run(self) -> None:
        concurrency = self.settings.webhook_concurrency
        with ThreadPoolExecutor(concurrency, thread_name_prefix="webhook-send") as pool:
            while not self._stop.is_set():
                try:
                    wait = self._step(pool, concurrency)
                except Exception:
                    log.exception("webhook delivery loop failed; retrying")
                    wait = self.settings.webhook_poll_interval
                if wait > 0:
                    self._wake.wait(wait)
                self._wake.clear()

    def _step(self, pool: ThreadPoolExecutor, concurrency: int) -> float:
        """Claim what is due and fits, start sending it; return how long to wait.

        Looking is a read; only when something is due does a (write) claim follow, so idle
        loops do not take SQLite's write lock every poll.
        """
        poll = self.settings.webhook_poll_interval
        with self._lock:
            free = concurrency - self._in_flight
        if free <= 0:
            return poll  # a finishing send wakes us
        with self.db.session() as session:
            due_in = next_due_in(session=session)
        if due_in is None or due_in > 0:
            return poll if due_in is None else min(poll, due_in)
        with self.db.session(write=True) as session:
            claimed = claim(session=session, settings=self.settings, limit=free)
        for item in claimed:
            with self._lock:
                self._in_flight += 1
            pool.submit(self._deliver, item)
        # More may be due now; if another process took what was due, do not spin on it.
        return 0 if claimed else min(poll, 0.05)

    def _deliver(self, claimed: Claimed) -> None:
        try:
            deliver(db=self.db, settings=self.settings, claimed=claimed)
        except Exception:
            log.exception("webhook %s: recording the attempt failed", claimed.id)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()


def deliver(*, db: Database, settings: Settings, claimed: Claimed) -> WebhookDelivery | None:
    """Send one claimed delivery and record the outcome (its own transaction)."""
    outcome = send(claimed, settings=settings)
    level = logging.INFO if outcome.ok else logging.WARNING
    log.log(
        level,
        "webhook %s to %s: %s",
        claimed.id,
        claimed.url,
        outcome.status if outcome.status is not None else outcome.error,
    )
    with db.session(write=True) as session:
        return record(session=session, claimed=claimed, outcome=outcome, settings=settings)
