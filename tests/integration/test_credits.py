"""Credits (API.md §4) against a real server on SQLite and PostgreSQL: exact under concurrency,
refunded exactly once, the ledger always sums to the balance."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, update

from tests.support import api
from tests.support.servers import StillmotionServer, photo_bytes, small_gql_input, small_request

GENERATE = """
mutation Generate($input: GenerateInput!) {
  generate(input: $input) { id creditCost }
}
"""
COST = 4  # gen-2, 2 s, at the default 2 credits per second


@pytest.fixture(scope="module")
def srv(idle_server):
    return idle_server


def _assert_books_balance(client) -> list[dict]:
    """The balance is the ledger's sum, and no entry ever left it negative."""
    entries = api.ledger(client)
    balance = api.account(client)["creditBalance"]
    assert sum(e["amount"] for e in entries) == balance
    assert entries[0]["balanceAfter"] == balance
    assert all(e["balanceAfter"] >= 0 for e in entries)
    # Replaying the ledger oldest-first reproduces every balanceAfter.
    running = 0
    for e in reversed(entries):
        running += e["amount"]
        assert e["balanceAfter"] == running, e
    return entries


def _worker(srv: StillmotionServer, **env: str) -> subprocess.Popen:
    log = open(srv.data_dir / "worker.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "stillmotion", "worker", "--threads", "1"],
        env={**srv.env, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=srv.data_dir,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_credits_for_n_jobs_accept_exactly_n_of_4n_concurrent_creates(srv, image_server):
    n = 5
    key = srv.create_key(f"race-{uuid.uuid4().hex[:6]}", plan="pro", credits=n * COST)
    limits = httpx.Limits(max_connections=4 * n, max_keepalive_connections=4 * n)
    with srv.client(key, limits=limits) as client:

        def create(i: int) -> tuple[int, dict]:
            if i % 2:  # half over REST, half over GraphQL: one service layer
                r = client.post("/v1/image_to_video", json=small_request(image_server))
                body = r.json()
                gen = body.get("data", {}).get("imagevideo") if r.status_code == 202 else None
            else:
                variables = {"input": small_gql_input(image_server)}
                r = client.post("/graphql", json={"query": GENERATE, "variables": variables})
                body = r.json()
                gen = (body.get("data") or {}).get("generate")
            return r.status_code, gen or body

        with ThreadPoolExecutor(4 * n) as pool:
            results = list(pool.map(create, range(4 * n)))
        accepted = [g for s, g in results if s in (200, 202)]
        refused = [b for s, b in results if s == 402]
        assert len(accepted) == n, results
        assert len(refused) == 3 * n, results
        for body in refused:
            ext = body["errors"][0]["extensions"]
            assert ext["code"] == "INSUFFICIENT_CREDITS"
            assert ext["creditsRequired"] == COST
            assert 0 <= ext["creditsAvailable"] < COST
        assert api.account(client)["creditBalance"] == 0
        entries = _assert_books_balance(client)
        charges = [e for e in entries if e["kind"] == "charge"]
        assert sorted(e["generationId"] for e in charges) == sorted(g["id"] for g in accepted)
        assert all(e["amount"] == -COST for e in charges)


def test_cancel_refunds_exactly_once_under_concurrent_cancels(srv, image_server):
    key = srv.create_key(f"cancel-{uuid.uuid4().hex[:6]}", plan="pro", credits=100)
    with srv.client(key, limits=httpx.Limits(max_connections=10)) as client:
        gen = client.post("/v1/image_to_video", json=small_request(image_server)).json()["data"][
            "imagevideo"
        ]
        assert api.account(client)["creditBalance"] == 100 - COST
        with ThreadPoolExecutor(10) as pool:
            responses = list(
                pool.map(lambda _: client.delete(f"/v1/image_to_video/{gen['id']}"), range(10))
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * 9, statuses
        assert {
            r.json()["errors"][0]["extensions"]["code"] for r in responses if r.status_code == 409
        } == {"ALREADY_FINISHED"}
        assert api.account(client)["creditBalance"] == 100
        entries = _assert_books_balance(client)
        refunds = [e for e in entries if e["kind"] == "refund"]
        assert [(e["generationId"], e["amount"]) for e in refunds] == [(gen["id"], COST)]


def test_failed_jobs_are_refunded_once(srv, image_server):
    key = srv.create_key(f"fail-{uuid.uuid4().hex[:6]}", plan="pro", credits=100)
    with srv.client(key) as client:
        # A photograph no other test uses, so its stored copy is this test's alone.
        body = small_request(image_server, imageUrl=image_server.url("/chelsea.jpg"))
        ids = [
            client.post("/v1/image_to_video", json=body).json()["data"]["imagevideo"]["id"]
            for _ in range(2)
        ]
        assert api.account(client)["creditBalance"] == 100 - 2 * COST
        # The stored source goes bad before any worker runs: every render of it fails.
        digest = hashlib.sha256(photo_bytes("chelsea")).hexdigest()
        stored = srv.data_dir / "media" / "sources" / f"{digest}.jpg"
        assert stored.exists()
        stored.write_bytes(b"\xff\xd8\xff" + b"not a JPEG any more" * 100)
        worker = _worker(srv)
        try:
            finished = [api.wait_finished(client, gen_id, timeout=60) for gen_id in ids]
        finally:
            _stop(worker)
        assert [g["status"] for g in finished] == ["failed", "failed"], finished
        assert all(g["error"]["code"] for g in finished)
        # Cancelling a failed job changes nothing.
        assert client.delete(f"/v1/image_to_video/{ids[0]}").status_code == 409
        assert api.account(client)["creditBalance"] == 100
        refunds = [e for e in _assert_books_balance(client) if e["kind"] == "refund"]
        assert sorted(e["generationId"] for e in refunds) == sorted(ids)


def test_cancel_racing_completion_refunds_only_what_did_not_complete(srv, image_server):
    """Each job is cancelled a little later into its render than the one before (a render
    here takes about half a second), so cancels land before, during and after completion."""
    delays = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
    key = srv.create_key(f"racefinish-{uuid.uuid4().hex[:6]}", plan="pro", credits=100)
    with srv.client(key) as client:
        ids = [
            client.post("/v1/image_to_video", json=small_request(image_server, seed=i)).json()[
                "data"
            ]["imagevideo"]["id"]
            for i in range(len(delays))
        ]
        worker = _worker(srv)
        outcomes = {}
        try:
            for gen_id, delay in zip(ids, delays, strict=True):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    gen = client.get(f"/v1/image_to_video/{gen_id}").json()["data"]["imagevideo"]
                    if gen["stage"] != "queued" or gen["status"] != "processing":
                        break
                    time.sleep(0.01)
                time.sleep(delay)
                outcomes[gen_id] = client.delete(f"/v1/image_to_video/{gen_id}").status_code
            finished = {gen_id: api.wait_finished(client, gen_id, timeout=60) for gen_id in ids}
        finally:
            _stop(worker)
        assert set(outcomes.values()) <= {200, 409}
        entries = _assert_books_balance(client)
        refunded = [e["generationId"] for e in entries if e["kind"] == "refund"]
        assert len(refunded) == len(set(refunded))  # never twice
        for gen_id, gen in finished.items():
            assert gen["status"] == ("cancelled" if outcomes[gen_id] == 200 else "completed")
            assert (gen_id in refunded) == (gen["status"] == "cancelled")
            assert (gen["url"] is not None) == (gen["status"] == "completed")
        completed = sum(g["status"] == "completed" for g in finished.values())
        assert api.account(client)["creditBalance"] == 100 - completed * COST


def test_credits_low_is_recorded_once_per_crossing(srv, image_server):
    from stillmotion.accounts.models import Account
    from stillmotion.credits import service as credits
    from stillmotion.db import Database
    from stillmotion.webhooks.models import WebhookDelivery

    name = f"low-{uuid.uuid4().hex[:6]}"
    key = srv.create_key(name, plan="pro", credits=20)
    hook = image_server.url("/status/204")
    db = Database(srv.database_url)
    try:
        with db.session(write=True) as session:
            session.execute(
                update(Account)
                .where(Account.name == name)
                .values(low_credit_threshold=10, webhook_url=hook)
            )
            account_id = session.scalar(select(Account.id).where(Account.name == name))

        def events() -> list[dict]:
            with db.session() as session:
                rows = session.scalars(
                    select(WebhookDelivery).where(
                        WebhookDelivery.account_id == account_id,
                        WebhookDelivery.event == "account.credits_low",
                    )
                ).all()
                return [json.loads(r.payload) for r in rows]

        with srv.client(key) as client:
            assert api.account(client)["lowCreditThreshold"] == 10

            def create():
                r = client.post("/v1/image_to_video", json=small_request(image_server))
                assert r.status_code == 202, r.text

            create()  # 20 → 16
            create()  # 16 → 12
            assert events() == []
            create()  # 12 → 8: the crossing
            create()  # 8 → 4: still low, no second event
            assert [(e["creditBalance"], e["lowCreditThreshold"]) for e in events()] == [(8, 10)]
            assert events()[0]["event"] == "account.credits_low"
            with db.session(write=True) as session:
                credits.grant(session=session, account_id=account_id, amount=20)  # 4 → 24
            create()  # 24 → 20
            create()  # 20 → 16
            create()  # 16 → 12
            create()  # 12 → 8: a new crossing
            assert [e["creditBalance"] for e in events()] == [8, 8]
            # Without a URL the crossing is still recorded (the flag), with nothing to send.
            with db.session(write=True) as session:
                session.execute(
                    update(Account).where(Account.id == account_id).values(webhook_url=None)
                )
                credits.grant(session=session, account_id=account_id, amount=10)  # 8 → 18
                assert not session.get(Account, account_id).credits_low_notified
            create()  # 18 → 14
            create()  # 14 → 10
            create()  # 10 → 6: crossing without a URL
            with db.session() as session:
                assert session.get(Account, account_id).credits_low_notified
            assert len(events()) == 2
            _assert_books_balance(client)
    finally:
        db.dispose()


def test_operator_cli_grants_adjusts_and_shows_the_ledger(srv):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    key = srv.create_key(name, plan="free", credits=0)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stillmotion", "credits", *args],
            env={**srv.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = cli("grant", name, "500", "--note", "welcome")
    assert out.returncode == 0, out.stderr
    assert "balance 500" in out.stdout
    assert cli("adjust", name, "-120", "--note", "correction").returncode == 0
    refused = cli("adjust", name, "-1000")
    assert refused.returncode == 1 and "Insufficient credits" in refused.stderr
    assert cli("grant", "nobody-" + name, "5").returncode == 1
    shown = cli("ledger", name, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["balance"] == data["ledgerSum"] == 380
    assert [(e["kind"], e["amount"], e["note"]) for e in data["entries"]] == [
        ("adjustment", -120, "correction"),
        ("grant", 500, "welcome"),
    ]
    with srv.client(key) as client:
        assert api.account(client)["creditBalance"] == 380
        gql = client.post(
            "/graphql",
            json={"query": "{ account { creditBalance ledger(first: 1) { kind amount note } } }"},
        )
        assert gql.json()["data"]["account"] == {
            "creditBalance": 380,
            "ledger": [{"kind": "adjustment", "amount": -120, "note": "correction"}],
        }
