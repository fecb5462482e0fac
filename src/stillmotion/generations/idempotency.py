"""`Idempotency-Key` (API.md §9, after Stripe and the IETF draft), for REST and GraphQL.

The record is inserted *before* the request is handled, in its own transaction, and the unique
(account_id, key) index decides between concurrent duplicates: exactly one request inserts
and runs; the others find its record and answer 409 `IDEMPOTENCY_IN_PROGRESS` while it runs,
the stored response (with `Idempotent-Replayed: true`) once it finished, or 422
`IDEMPOTENCY_KEY_REUSED` when their request differs. The fingerprint is the transport plus the
canonical request (REST: method, path and the JSON body with sorted keys; GraphQL: the
normalised query, variables and operationName).

What is stored: the first response's status, body (byte for byte) and its `Content-Type` and
`Location` headers. Not stored, so the same key may be retried: 400 (validation, bad image),
401, 413, 429 and 5xx — these never created anything. 402, 404 and 409 are outcomes of
executing the request and are replayed like a 2xx. Records expire after 24 hours.

The transports branch on what `begin_request` returns: `Fresh` (run the request; its record id,
or None without a key, is passed to `service.submit`), `Replay` (answer the stored response) or
`Recover` (answer from the job an abandoned request created); `settle` then stores the response,
and `abandon` frees the key after a request that ended without one.

A record left `in_progress` by a process that died mid-request is taken over after
`LOCK_SECONDS`. The transaction that creates the job also writes the job's id on the record
(the recovery point, `mark_created`): a record taken over with a job on it is answered from
that job (REST: `202` with its current state; GraphQL: the operation run against it instead
of creating), never by creating a second one. One taken over without a job is run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stillmotion import errors, jsonbody
from stillmotion.db import Database, utcnow
from stillmotion.generations.models import IdempotencyRecord

HEADER = "idempotency-key"
TTL = timedelta(hours=24)
LOCK_SECONDS = 120
REPLAYED_HEADERS = ("content-type", "location", "stillmotion-warning")
NOT_STORED = frozenset({400, 401, 413, 429})
PURGE_EVERY_SECONDS = 3600.0  # expired records are deleted at most this often, per process
_last_purge = -PURGE_EVERY_SECONDS

# Built once: with a key, every create runs the first two, and the job's transaction the third.
_TABLE = IdempotencyRecord.__table__
_INSERT = insert(_TABLE).returning(_TABLE.c.id)
_COMPLETE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("record_id"))
    .values(
        state="completed",
        response_status=bindparam("response_status"),
        response_body=bindparam("response_body"),
        response_headers=bindparam("response_headers"),
    )
)
_MARK = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("record_id"))
    .values(generation_id=bindparam("generation_id"))
)


@dataclass(frozen=True)
class Fresh:
    """Run the request. `record_id`: its record (None when it has no key), to be noted on the
    job in the job's own transaction (`mark_created`)."""

    record_id: int | None


@dataclass(frozen=True)
class Replay:
    """Answer with the response stored for the key."""

    status: int
    body: bytes
    headers: dict[str, str]

    def response(self) -> Response:
        return Response(
            self.body,
            status_code=self.status,
            headers={**self.headers, "Idempotent-Replayed": "true"},
        )


@dataclass(frozen=True)
class Recover:
    """A record taken over from a request that died after creating `generation_id`: answer
    from that job, never create another."""

    record_id: int
    generation_id: str


Outcome = Fresh | Replay | Recover


def mark_created(conn: Connection, *, record_id: int | None, generation_id: str) -> None:
    """Note the job on the request's record; call it in the transaction that creates the job."""
    if record_id is not None:
        conn.execute(_MARK, {"record_id": record_id, "generation_id": generation_id})


def key_from(headers) -> str | None:
    """The request's key, or None; a malformed one is a validation error."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(0x20 <= ord(c) < 0x7F for c in key):
        raise errors.ValidationFailed(
            "Idempotency-Key must be 1 … 255 printable ASCII characters", field="Idempotency-Key"
        )
    return key


def canonical_json(raw: bytes) -> str:
    """The JSON body with sorted keys and no spaces; the raw bytes when it is not JSON."""
    try:
        return json.dumps(jsonbody.loads(raw), sort_keys=True, separators=(",", ":"))
    except errors.BadRequest:
        return raw.decode("utf-8", "replace")


def fingerprint(transport: str, canonical: str) -> str:
    return hashlib.sha256(f"{transport}\n{canonical}".encode()).hexdigest()


def storable(status: int) -> bool:
    return status < 500 and status not in NOT_STORED


def begin(*, db: Database, account_id: str, key: str, request_hash: str) -> Outcome:
    """Insert the in-progress record (`Fresh`), or find the stored response (`Replay`) or the
    job an abandoned request created (`Recover`), or raise `IdempotencyInProgress` /
    `IdempotencyKeyReused`."""
    for _ in range(5):
        now = utcnow()
        try:
            with db.session(write=True) as session:
                record_id = session.connection().scalar(
                    _INSERT,
                    {
                        "account_id": account_id,
                        "key": key,
                        "request_hash": request_hash,
                        "state": "in_progress",
                        "created_at": now,
                        "expires_at": now + TTL,
                    },
                )
            return Fresh(record_id)
        except IntegrityError:
            pass
        with db.session(write=True) as session:
            record = session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
                )
            )
            if record is None:
                continue  # released meanwhile: try to insert again
            abandoned = record.state == "in_progress" and record.created_at < now - timedelta(
                seconds=LOCK_SECONDS
            )
            if record.expires_at <= now or (abandoned and record.generation_id is None):
                session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record.id))
                continue
            if record.request_hash != request_hash:
                raise errors.IdempotencyKeyReused()
            if abandoned:
                # Its job exists; take the record over (others now see it in progress again).
                record.created_at = now
                return Recover(record_id=record.id, generation_id=record.generation_id)
            if record.state != "completed":
                raise errors.IdempotencyInProgress()
            return Replay(
                status=record.response_status or 200,
                body=(record.response_body or "").encode(),
                headers=dict(record.response_headers or {}),
            )
    raise errors.IdempotencyInProgress()


def store_response(*, db: Database, record_id: int, response: Response) -> None:
    """Store the response for replay, or release the key when it is not to be stored."""
    if not storable(response.status_code):
        release(db=db, record_id=record_id)
        return
    with db.session(write=True) as session:
        headers = {k: response.headers[k] for k in REPLAYED_HEADERS if k in response.headers}
        session.connection().execute(
            _COMPLETE,
            {
                "record_id": record_id,
                "response_status": response.status_code,
                "response_body": bytes(response.body).decode(),
                "response_headers": headers,
            },
        )


def abandon(*, db: Database, outcome: Outcome) -> None:
    """Free the key after a request that ended without a response (no-op without a record)."""
    if isinstance(outcome, Fresh | Recover) and outcome.record_id is not None:
        release(db=db, record_id=outcome.record_id)


def release(*, db: Database, record_id: int) -> None:
    """Delete the record, unless its request created its job, in which case the record is
    left to be recovered at once."""
    with db.session(write=True) as session:
        record = session.get(IdempotencyRecord, record_id)
        if record is None:
            return
        if record.generation_id is None:
            session.delete(record)
        else:
            record.created_at = utcnow() - timedelta(seconds=LOCK_SECONDS + 1)


def purge_expired(*, db: Database) -> int:
    """Delete expired records; returns how many."""
    with db.session(write=True) as session:
        result = session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
        )
        return result.rowcount or 0


async def begin_request(
    *,
    request: Request,
    db: Database,
    account_id: str,
    transport: str,
    canonical: Callable[[], str],
) -> Outcome:
    """`begin` for this request: `Fresh(None)` without an `Idempotency-Key`; `canonical`
    makes the request's canonical form (called only when there is a key)."""
    key = key_from(request.headers)
    if key is None:
        return Fresh(None)
    request_hash = fingerprint(transport, canonical())
    global _last_purge
    if time.monotonic() - _last_purge > PURGE_EVERY_SECONDS:
        _last_purge = time.monotonic()
        await db.run(purge_expired, db=db)
    return await db.run(begin, db=db, account_id=account_id, key=key, request_hash=request_hash)


async def settle(*, db: Database, outcome: Outcome, response: Response) -> Response:
    """Store `response` for the outcome's key (if it has one) and return it."""
    if isinstance(outcome, Fresh | Recover) and outcome.record_id is not None:
        await db.run(store_response, db=db, record_id=outcome.record_id, response=response)
    return response


def error_response(exc: errors.StillmotionError) -> Response:
    """The §6 answer for a domain error, as a response that can be stored and replayed."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
