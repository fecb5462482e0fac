"""`Idempotency-Key` (API.md §9) against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import api
from tests.support.servers import small_gql_input, small_request

GENERATE = """
mutation Generate($input: GenerateInput!) {
  generate(input: $input) { id status creditCost }
}
"""


@pytest.fixture(scope="module")
def srv(idle_server):
    return idle_server


def test_hundred_concurrent_creates_with_one_key_make_one_job_and_one_charge(srv, image_server):
    key = srv.create_key(f"idem-race-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    body = small_request(image_server)
    idem = str(uuid.uuid4())
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with srv.client(key, limits=limits) as client:

        def post(_):
            return client.post("/v1/image_to_video", json=body, headers={"Idempotency-Key": idem})

        with ThreadPoolExecutor(100) as pool:
            responses = list(pool.map(post, range(100)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {202, 409}, statuses
        ok = [r for r in responses if r.status_code == 202]
        ids = {r.json()["data"]["imagevideo"]["id"] for r in ok}
        assert len(ids) == 1, ids
        first = [r for r in ok if r.headers.get("idempotent-replayed") != "true"]
        assert len(first) == 1  # exactly one request ran; every other 2xx is a replay
        for r in responses:
            if r.status_code == 409:
                assert r.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
        # After the race, the key answers with the replay, byte for byte.
        again = post(0)
        assert again.status_code == 202
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first[0].content
        jobs = api.jobs(client)
        assert [j["id"] for j in jobs] == list(ids)
        charges = [e for e in api.ledger(client) if e["kind"] == "charge"]
        assert len(charges) == 1 and charges[0]["generationId"] in ids
        account = client.get("/v1/account").json()["data"]["account"]
        assert account["creditBalance"] == 1000 - jobs[0]["creditCost"]


def test_replay_is_byte_for_byte_and_a_different_body_is_422(srv, image_server):
    key = srv.create_key(f"idem-replay-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    with srv.client(key) as client:
        headers = {"Idempotency-Key": "order-1"}
        first = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert first.status_code == 202, first.text
        assert "idempotent-replayed" not in first.headers
        # The same request with its keys in another order is the same request.
        reordered = dict(reversed(list(small_request(image_server).items())))
        replay = client.post("/v1/image_to_video", json=reordered, headers=headers)
        assert replay.status_code == 202
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        assert replay.headers["location"] == first.headers["location"]
        assert replay.headers["content-type"] == first.headers["content-type"]
        assert "x-ratelimit-limit" in replay.headers
        other = client.post(
            "/v1/image_to_video", json=small_request(image_server, duration=3), headers=headers
        )
        assert other.status_code == 422, other.text
        assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        # Keys are scoped to the account: another account's same key is its own request.
        key2 = srv.create_key(f"idem-other-{uuid.uuid4().hex[:6]}", plan="pro", credits=100)
        with srv.client(key2) as client2:
            theirs = client2.post(
                "/v1/image_to_video", json=small_request(image_server), headers=headers
            )
            assert theirs.status_code == 202
            assert "idempotent-replayed" not in theirs.headers
            assert (
                theirs.json()["data"]["imagevideo"]["id"]
                != first.json()["data"]["imagevideo"]["id"]
            )
        assert len(api.jobs(client)) == 1


def test_validation_errors_are_not_stored(srv, image_server):
    key = srv.create_key(f"idem-valid-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    with srv.client(key) as client:
        headers = {"Idempotency-Key": "fix-and-retry"}
        bad = client.post(
            "/v1/image_to_video", json=small_request(image_server, duration=99), headers=headers
        )
        assert bad.status_code == 400
        good = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert good.status_code == 202, good.text
        assert "idempotent-replayed" not in good.headers
        too_long = client.post(
            "/v1/image_to_video",
            json=small_request(image_server),
            headers={"Idempotency-Key": "k" * 256},
        )
        assert too_long.status_code == 400
        assert too_long.json()["errors"][0]["extensions"]["field"] == "Idempotency-Key"


def test_insufficient_credits_is_stored_and_replayed(srv, image_server):
    """A 402 is the outcome of running the request, so it is replayed (as Stripe does)."""
    key = srv.create_key(f"idem-402-{uuid.uuid4().hex[:6]}", plan="pro", credits=1)
    with srv.client(key) as client:
        headers = {"Idempotency-Key": "poor"}
        first = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert first.status_code == 402
        ext = first.json()["errors"][0]["extensions"]
        assert ext == {"code": "INSUFFICIENT_CREDITS", "creditsRequired": 4, "creditsAvailable": 1}
        again = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert again.status_code == 402
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert api.jobs(client) == []


def test_graphql_mutations_replay_and_refuse_other_variables(srv, image_server):
    key = srv.create_key(f"idem-gql-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    with srv.client(key) as client:
        headers = {"Idempotency-Key": "gql-1"}
        payload = {"query": GENERATE, "variables": {"input": small_gql_input(image_server)}}
        first = client.post("/graphql", json=payload, headers=headers)
        assert first.status_code == 200, first.text
        gen_id = first.json()["data"]["generate"]["id"]
        # Whitespace in the query does not make it another request.
        spaced = {**payload, "query": "  " + GENERATE.replace("\n", "\n   ")}
        replay = client.post("/graphql", json=spaced, headers=headers)
        assert replay.status_code == 200
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        other = client.post(
            "/graphql",
            json={
                "query": GENERATE,
                "variables": {"input": small_gql_input(image_server, duration=3)},
            },
            headers=headers,
        )
        assert other.status_code == 422
        assert other.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        # The same key on REST is a different request (the transport is part of it).
        rest = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert rest.status_code == 422
        # A GraphQL validation error is not stored.
        broken = client.post(
            "/graphql",
            json={"query": GENERATE, "variables": {"input": {"type": "VIDEO"}}},
            headers={"Idempotency-Key": "gql-2"},
        )
        assert broken.status_code == 400
        fixed = client.post("/graphql", json=payload, headers={"Idempotency-Key": "gql-2"})
        assert fixed.status_code == 200 and "idempotent-replayed" not in fixed.headers
        assert {j["id"] for j in api.jobs(client)} == {
            gen_id,
            fixed.json()["data"]["generate"]["id"],
        }


def test_rate_limited_requests_are_not_stored(srv, image_server):
    key = srv.create_key(f"idem-429-{uuid.uuid4().hex[:6]}", plan="free", credits=1000)
    with srv.client(key) as client:
        for _ in range(10):
            assert (
                client.post("/v1/image_to_video", json=small_request(image_server)).status_code
                == 202
            )
        headers = {"Idempotency-Key": "later"}
        limited = client.post(
            "/v1/image_to_video", json=small_request(image_server), headers=headers
        )
        assert limited.status_code == 429
        # Not stored: neither replayed nor "in progress", and another body is not "reused".
        again = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert again.status_code == 429 and "idempotent-replayed" not in again.headers
        other = client.post(
            "/v1/image_to_video", json=small_request(image_server, duration=3), headers=headers
        )
        assert other.status_code == 429


def test_records_expire_after_24_hours(srv, image_server):
    from sqlalchemy import select, update

    from stillmotion.db import Database, utcnow
    from stillmotion.generations.models import IdempotencyRecord

    key = srv.create_key(f"idem-ttl-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    with srv.client(key) as client:
        headers = {"Idempotency-Key": "daily-job"}
        first = client.post("/v1/image_to_video", json=small_request(image_server), headers=headers)
        assert first.status_code == 202
        db = Database(srv.database_url)
        try:
            with db.session(write=True) as session:
                record = session.scalars(
                    select(IdempotencyRecord).where(IdempotencyRecord.key == "daily-job")
                ).one()
                assert record.state == "completed" and record.response_status == 202
                span = record.expires_at - record.created_at
                assert span.total_seconds() == 24 * 3600
                session.execute(
                    update(IdempotencyRecord)
                    .where(IdempotencyRecord.id == record.id)
                    .values(expires_at=utcnow())
                )
        finally:
            db.dispose()
        # Expired: the key is free again, even for another request.
        later = client.post(
            "/v1/image_to_video", json=small_request(image_server, duration=3), headers=headers
        )
        assert later.status_code == 202 and "idempotent-replayed" not in later.headers
        assert later.json()["data"]["imagevideo"]["id"] != first.json()["data"]["imagevideo"]["id"]


def _abandon(srv, idem: str, *, minutes: float = 3) -> str | None:
    """Put the key's record back as a process that died before storing its response leaves it:
    in progress, no response, taken `minutes` ago (over the 2-minute lock). Returns the job the
    request noted on it, if any."""
    from datetime import timedelta

    from sqlalchemy import select

    from stillmotion.db import Database, utcnow
    from stillmotion.generations.models import IdempotencyRecord

    db = Database(srv.database_url)
    try:
        with db.session(write=True) as session:
            record = session.scalars(
                select(IdempotencyRecord).where(IdempotencyRecord.key == idem)
            ).one()
            record.state = "in_progress"
            record.response_status = record.response_body = record.response_headers = None
            record.created_at = utcnow() - timedelta(minutes=minutes)
            return record.generation_id
    finally:
        db.dispose()


def test_a_request_that_died_after_creating_its_job_is_answered_from_the_job(srv, image_server):
    """The crash window: the job committed, the process died before the response was stored.
    The job's transaction noted it on the record, so a retry gets that job, not a second."""
    key = srv.create_key(f"idem-crash-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    body = small_request(image_server)
    with srv.client(key) as client:
        idem = str(uuid.uuid4())
        first = client.post("/v1/image_to_video", json=body, headers={"Idempotency-Key": idem})
        assert first.status_code == 202
        gen_id = first.json()["data"]["imagevideo"]["id"]
        assert _abandon(srv, idem, minutes=1) == gen_id
        # Within the lock time the request still counts as running.
        assert (
            client.post(
                "/v1/image_to_video", json=body, headers={"Idempotency-Key": idem}
            ).status_code
            == 409
        )
        _abandon(srv, idem)
        retry = client.post("/v1/image_to_video", json=body, headers={"Idempotency-Key": idem})
        assert retry.status_code == 202, retry.text
        assert retry.json()["data"]["imagevideo"]["id"] == gen_id
        assert retry.headers["location"].endswith(f"/v1/image_to_video/{gen_id}")
        # From now on it is an ordinary stored response.
        again = client.post("/v1/image_to_video", json=body, headers={"Idempotency-Key": idem})
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.content == retry.content
        # Another body under the key is still refused.
        other = small_request(image_server, duration=3)
        _abandon(srv, idem)
        assert (
            client.post(
                "/v1/image_to_video", json=other, headers={"Idempotency-Key": idem}
            ).status_code
            == 422
        )

        # GraphQL: the operation runs against the job instead of creating one.
        gql_idem = str(uuid.uuid4())
        payload = {"query": GENERATE, "variables": {"input": small_gql_input(image_server)}}
        first = client.post("/graphql", json=payload, headers={"Idempotency-Key": gql_idem})
        assert first.status_code == 200 and "errors" not in first.json(), first.text
        gql_id = first.json()["data"]["generate"]["id"]
        assert _abandon(srv, gql_idem) == gql_id
        retry = client.post("/graphql", json=payload, headers={"Idempotency-Key": gql_idem})
        assert retry.status_code == 200, retry.text
        assert retry.json()["data"]["generate"] == first.json()["data"]["generate"]

        jobs = {j["id"] for j in api.jobs(client)}
        charges = [e for e in api.ledger(client) if e["kind"] == "charge"]
    assert jobs == {gen_id, gql_id}
    assert sorted(e["generationId"] for e in charges) == sorted([gen_id, gql_id])


def test_a_request_that_died_before_creating_its_job_runs_again(srv, image_server):
    import json
    from datetime import timedelta

    from stillmotion.db import Database, utcnow
    from stillmotion.generations import idempotency
    from stillmotion.generations.models import IdempotencyRecord

    key = srv.create_key(f"idem-early-{uuid.uuid4().hex[:6]}", plan="pro", credits=1000)
    body = small_request(image_server)
    idem = str(uuid.uuid4())
    with srv.client(key) as client:
        account_id = client.get("/v1/account").json()["data"]["account"]["id"]
        # The record as a request leaves it when its process died before its job committed.
        canonical = "POST /v1/image_to_video\n" + idempotency.canonical_json(
            json.dumps(body).encode()
        )
        db = Database(srv.database_url)
        try:
            with db.session(write=True) as session:
                session.add(
                    IdempotencyRecord(
                        account_id=account_id,
                        key=idem,
                        request_hash=idempotency.fingerprint("rest", canonical),
                        state="in_progress",
                        created_at=utcnow() - timedelta(minutes=3),
                        expires_at=utcnow() + timedelta(hours=21),
                    )
                )
        finally:
            db.dispose()
        retry = client.post("/v1/image_to_video", json=body, headers={"Idempotency-Key": idem})
        assert retry.status_code == 202 and "idempotent-replayed" not in retry.headers
        assert [j["id"] for j in api.jobs(client)] == [retry.json()["data"]["imagevideo"]["id"]]
