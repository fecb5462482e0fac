"""Webhooks end to end: real receivers on loopback, a real server, real worker processes.

The servers here run the retry schedule scaled down (`STILLMOTION_WEBHOOK_BACKOFF_SCALE`), so
three days of retries take seconds; everything else is as in production.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from stillmotion.accounts.models import Account
from stillmotion.client import webhooks
from stillmotion.db import Database
from stillmotion.webhooks import outbox
from stillmotion.webhooks.delivery import (
    JITTER,
    MAX_ATTEMPTS,
    SCHEDULE,
    parse_retry_after,
    retry_delay,
    signing_secrets,
)
from stillmotion.webhooks.models import WebhookDelivery
from tests.support import api
from tests.support.receivers import WebhookReceiver
from tests.support.servers import StillmotionServer

pytestmark = pytest.mark.slow

SCALE = 0.00002  # the whole schedule (~75.6 h) in ~5.4 s

# -- helpers ------------------------------------------------------------------------------


def submit(client, image_url: str, webhook_url: str | None, **extra) -> str:
    body = {
        "service": "runway-i2v",
        "prompt": "slow push in",
        "imageUrl": image_url,
        "version": "gen-2",
        "duration": 2,
        **extra,
    }
    if webhook_url:
        body["webhookUrl"] = webhook_url
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]["imagevideo"]["id"]


def deliveries(client, gen_id: str) -> list[dict]:
    response = client.get(f"/v1/image_to_video/{gen_id}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()["data"]["deliveries"]


def wait_delivery(client, gen_id: str, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = deliveries(client, gen_id)
        if found and predicate(found[0]):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no matching delivery for {gen_id}: {found}")


def gql(client, query: str, **variables):
    return client.post("/graphql", json={"query": query, "variables": variables})


def secret_of(client) -> str:
    response = client.get("/v1/account/webhook_secret")
    assert response.status_code == 200, response.text
    secret = response.json()["data"]["webhookSecret"]["secret"]
    assert secret.startswith("whsec_")
    return secret


def statuses(delivery: dict) -> list[int | None]:
    return [a["statusCode"] for a in delivery["attempts"]]


def stop(*procs) -> None:
    """SIGTERM the worker processes that are still running, and wait for them."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory, image_server):
    tmp = tmp_path_factory.mktemp("webhooks")
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}",
        data_dir=tmp,
        workers=2,
        env={
            "STILLMOTION_WEBHOOK_BACKOFF_SCALE": str(SCALE),
            "STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.05",
        },
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(hook_server, request):
    key = hook_server.create_key(f"hooks-{request.node.name[:60]}-{random.getrandbits(32)}")
    with hook_server.client(key) as c:
        yield c


@pytest.fixture
def image(image_server) -> str:
    return image_server.url("/astronaut-small.jpg")


# -- the schedule, as pure functions --------------------------------------------------------


def test_retry_delay_follows_the_schedule_with_jitter():
    rng = random.Random(7)
    for attempts, base in enumerate(SCHEDULE, start=1):
        delays = [retry_delay(attempts, scale=1.0, rng=rng) for _ in range(200)]
        assert all(base * (1 - JITTER) <= d <= base * (1 + JITTER) for d in delays)
        assert len({round(d, 6) for d in delays}) > 100  # jittered, not one fixed value
    assert retry_delay(MAX_ATTEMPTS, scale=1.0) is None  # ten attempts, then give up
    assert sum(SCHEDULE) * (1 - JITTER) >= 24 * 3600  # retried for at least a day
    assert retry_delay(1, scale=0.01, rng=rng) == pytest.approx(0.05, rel=JITTER)
    # Retry-After may push an attempt later, never earlier, and at most a day.
    assert retry_delay(1, scale=1.0, retry_after=120, rng=rng) == 120
    assert retry_delay(9, scale=1.0, retry_after=5, rng=rng) >= 86400 * (1 - JITTER)
    assert retry_delay(1, scale=1.0, retry_after=10**9, rng=rng) == 86400


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after("Tue, 24 Nov 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Tue, 24 Nov 2026 11:00:00 GMT", now=now) == 0
    for bad in (None, "", "soon", "-5", "1.5e3", "Tue, 99 Nov 2026 12:00:30 GMT"):
        assert parse_retry_after(bad, now=now) is None


def test_the_previous_secret_signs_only_during_its_grace_period():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    account = Account(
        webhook_secret="whsec_new",
        webhook_secret_previous="whsec_old",
        webhook_secret_previous_expires_at=now + timedelta(hours=1),
    )
    assert signing_secrets(account, now=now) == ["whsec_new", "whsec_old"]
    assert signing_secrets(account, now=now + timedelta(hours=2)) == ["whsec_new"]
    account.webhook_secret_previous_expires_at = None
    assert signing_secrets(account, now=now) == ["whsec_new"]


# -- retries, signatures, the log -----------------------------------------------------------


def test_receiver_failing_then_down_then_up_gets_the_event(client, image):
    # 500, 500, then the socket is closed for a while, then it answers 200.
    receiver = WebhookReceiver([500, 500], down_after=2, down_for=1.0)
    try:
        gen_id = submit(client, image, receiver.url())
        gen = api.wait_finished(client, gen_id)
        assert gen["status"] == "completed", gen
        delivery = wait_delivery(client, gen_id, lambda d: d["state"] != "pending")
        got = receiver.requests
    finally:
        receiver.close()
    assert delivery["state"] == "delivered", delivery
    assert [r.answered for r in got] == [500, 500, 200]
    # One webhook-id on every attempt, and it is the delivery's id in the log.
    assert {r.headers["webhook-id"] for r in got} == {delivery["id"]}
    # The log lists each attempt: two 500s, refused connections while down, then the 200.
    codes = statuses(delivery)
    assert codes[:2] == [500, 500] and codes[-1] == 200, delivery
    assert len(codes) >= 4 and all(c is None for c in codes[2:-1]), delivery
    assert all(a["error"] for a in delivery["attempts"][2:-1])
    assert delivery["attemptCount"] == len(codes)
    assert delivery["lastStatus"] == 200 and delivery["deliveredAt"]
    # The same body every time: the seed's payload plus event and error.
    assert len({r.body for r in got}) == 1
    payload = json.loads(got[-1].body)
    assert payload == delivery["payload"]
    assert payload["event"] == "generation.completed"
    assert payload["id"] == gen_id and payload["status"] == "completed"
    assert payload["url"] == gen["url"] and payload["service"] == "runway-i2v"
    assert payload["metadata"] == {"duration": 2, "width": 1280, "height": 720}
    assert payload["error"] is None
    assert got[-1].headers["content-type"] == "application/json"
    assert got[-1].headers["user-agent"].startswith("stillmotion-webhooks/")


def test_signatures_verify_and_tampering_is_rejected(client, image):
    receiver = WebhookReceiver()
    try:
        gen_id = submit(client, image, receiver.url())
        (req,) = receiver.wait_for(1, timeout=120)
    finally:
        receiver.close()
    secret = secret_of(client)
    headers = req.headers
    assert headers["x-doitong-signature"].startswith("sha256=")
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # Both signatures check out with the account's secret.
    event = webhooks.verify(req.body, headers, secret=secret)
    assert event["id"] == gen_id
    doitong_only = {"x-doitong-signature": headers["x-doitong-signature"]}
    seed_only = {"secret": secret, "require_timestamp": False}
    assert webhooks.verify(req.body, doitong_only, **seed_only)["id"] == gen_id
    with pytest.raises(webhooks.WebhookVerificationError):  # no timestamp: could be a replay
        webhooks.verify(req.body, doitong_only, secret=secret)
    standard_only = {k: v for k, v in headers.items() if k.startswith("webhook-")}
    assert webhooks.verify(req.body, standard_only, secret=secret)["id"] == gen_id
    # A changed byte, a wrong secret, a replay outside the tolerance window: all refused.
    tampered = req.body.replace(b'"completed"', b'"c0mpleted"', 1)
    assert tampered != req.body
    for hdrs in (headers, doitong_only, standard_only):
        with pytest.raises(webhooks.WebhookVerificationError):
            webhooks.verify(tampered, hdrs, secret=secret, require_timestamp=False)
        with pytest.raises(webhooks.WebhookVerificationError):
            webhooks.verify(
                req.body, hdrs, secret=webhooks.generate_secret(), require_timestamp=False
            )
    # The seed's signature is checked too when both are present.
    wrong_seed = {**headers, "x-doitong-signature": "sha256=" + "0" * 64}
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(req.body, wrong_seed, secret=secret)
    later = int(headers["webhook-timestamp"]) + 6 * 60
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(req.body, standard_only, secret=secret, now=later)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(req.body, headers, secret=secret, now=later)
    # A replayed id with a fresh timestamp does not match the signature either.
    forged = {**standard_only, "webhook-timestamp": str(later)}
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(req.body, forged, secret=secret, now=later)


def test_rotation_keeps_the_previous_secret_signing_for_the_grace_period(client, image):
    old = secret_of(client)
    rotated = client.post("/v1/account/webhook_secret")
    assert rotated.status_code == 200, rotated.text
    info = rotated.json()["data"]["webhookSecret"]
    new = info["secret"]
    assert new.startswith("whsec_") and new != old
    until = parse_iso(info["previousSecretExpiresAt"])
    expected = datetime.now(UTC) + timedelta(hours=24)
    assert abs((until - expected).total_seconds()) < 120
    assert secret_of(client) == new

    receiver = WebhookReceiver()
    try:
        submit(client, image, receiver.url())
        (req,) = receiver.wait_for(1, timeout=120)
    finally:
        receiver.close()
    # Two space-separated v1 signatures: one verifies with the new secret, one with the old.
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    standard_only = {k: v for k, v in req.headers.items() if k.startswith("webhook-")}
    for secret in (new, old):
        webhooks.verify(req.body, standard_only, secret=secret)
    webhooks.verify(req.body, req.headers, secret=new)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(req.body, standard_only, secret=webhooks.generate_secret())

    # GraphQL reads and rotates the same secret; the oldest one stops signing.
    read = gql(client, "{ webhookSecret { secret previousSecretExpiresAt } }").json()
    assert read["data"]["webhookSecret"]["secret"] == new
    again = gql(client, "mutation { rotateWebhookSecret { secret previousSecretExpiresAt } }")
    newest = again.json()["data"]["rotateWebhookSecret"]["secret"]
    assert newest not in (old, new) and secret_of(client) == newest


def test_schedule_runs_out_then_failed(client, image):
    receiver = WebhookReceiver([500] * 20)
    try:
        gen_id = submit(client, image, receiver.url())
        delivery = wait_delivery(client, gen_id, lambda d: d["state"] != "pending", timeout=120)
        time.sleep(0.3)
        got = len(receiver.requests)
    finally:
        receiver.close()
    assert delivery["state"] == "failed", delivery
    assert delivery["attemptCount"] == MAX_ATTEMPTS == got == 10
    assert statuses(delivery) == [500] * 10
    times = [parse_iso(a["attemptedAt"]) for a in delivery["attempts"]]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, SCHEDULE, strict=True):
        assert gap >= base * SCALE * (1 - JITTER) - 0.002, (gaps, base)


def test_retry_after_is_honoured(client, image):
    receiver = WebhookReceiver([(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"})])
    try:
        submit(client, image, receiver.url())
        first, second, third = receiver.wait_for(3, timeout=120)
    finally:
        receiver.close()
    # The schedule alone would have retried after 0.1 ms and 6 ms.
    assert second.at - first.at >= 1.0
    assert third.at - second.at >= 1.0
    assert [first.answered, second.answered, third.answered] == [503, 429, 200]


def test_gone_disables_the_url_until_a_redelivery_succeeds(client, image):
    receiver = WebhookReceiver([410])
    try:
        first = submit(client, image, receiver.url())
        gone = wait_delivery(client, first, lambda d: d["state"] != "pending")
        assert gone["state"] == "disabled" and statuses(gone) == [410]
        # Nothing more is queued for that URL.
        second = submit(client, image, receiver.url())
        assert api.wait_finished(client, second)["status"] == "completed"
        time.sleep(0.3)
        assert deliveries(client, second) == []
        assert len(receiver.requests) == 1
        # A manual redelivery (queued, then sent by the loop) that succeeds re-enables it.
        redo = client.post(f"/v1/image_to_video/{first}/deliveries/{gone['id']}/redeliver")
        assert redo.status_code == 202, redo.text
        assert redo.json()["data"]["delivery"]["state"] == "queued"
        again = wait_delivery(client, first, lambda d: d["state"] not in ("queued", "pending"))
        assert again["state"] == "delivered" and statuses(again) == [410, 200]
        third = submit(client, image, receiver.url())
        wait_delivery(client, third, lambda d: d["state"] == "delivered")
        got = receiver.requests
    finally:
        receiver.close()
    assert [r.answered for r in got] == [410, 200, 200]
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == gone["id"]


def test_delivery_log_and_redelivery_over_rest_and_graphql(client, image):
    receiver = WebhookReceiver()
    try:
        gen_id = submit(client, image, receiver.url())
        delivered = wait_delivery(client, gen_id, lambda d: d["state"] == "delivered")
        redo = client.post(f"/v1/image_to_video/{gen_id}/deliveries/{delivered['id']}/redeliver")
        assert redo.status_code == 202, redo.text
        queued = redo.json()["data"]["delivery"]
        assert queued["state"] == "queued" and statuses(queued) == [200]
        resent = wait_delivery(client, gen_id, lambda d: d["attemptCount"] == 2)
        assert resent["state"] == "delivered" and statuses(resent) == [200, 200]
        query = """query($g: ID) { deliveries(generationId: $g) {
            id event generationId url state attemptCount lastStatus payload
            attempts { attemptedAt statusCode error durationMs } } }"""
        listed = gql(client, query, g=gen_id).json()["data"]["deliveries"]
        mutation = """mutation($id: ID!) { redeliverWebhook(id: $id) {
            id state attemptCount attempts { statusCode } } }"""
        redone = gql(client, mutation, id=delivered["id"]).json()["data"]["redeliverWebhook"]
        got = receiver.wait_for(3)
        final = wait_delivery(client, gen_id, lambda d: d["attemptCount"] == 3)
    finally:
        receiver.close()
    (row,) = listed
    assert row["id"] == delivered["id"] and row["generationId"] == gen_id
    assert row["event"] == "generation.completed" and row["url"] == receiver.url()
    assert row["attemptCount"] == 2 and [a["statusCode"] for a in row["attempts"]] == [200, 200]
    assert all(a["durationMs"] >= 0 and a["attemptedAt"] for a in row["attempts"])
    assert row["payload"]["id"] == gen_id
    assert redone["attemptCount"] == 2 and redone["state"] == "queued"
    assert final["state"] == "delivered" and statuses(final) == [200, 200, 200]
    assert {r.headers["webhook-id"] for r in got} == {delivered["id"]}
    assert len(got) == 3


def test_redelivery_while_queued_or_in_flight_is_409(hook_server, client, image):
    receiver = WebhookReceiver(delay=1.5)  # a slow receiver keeps the attempt in flight
    try:
        gen_id = submit(client, image, receiver.url())
        delivery = wait_delivery(client, gen_id, lambda d: d["state"] == "delivered")
        path = f"/v1/image_to_video/{gen_id}/deliveries/{delivery['id']}/redeliver"
        first = client.post(path)  # queued: answered at once, sent by the delivery loop
        queued = client.post(path)
        receiver.wait_for_arrival(2)  # the loop holds the lease, its receiver is sleeping
        in_flight = client.post(path)
        done = wait_delivery(client, gen_id, lambda d: d["attemptCount"] == 2)
        got = receiver.requests
    finally:
        receiver.close()
    assert first.status_code == 202, first.text
    assert first.json()["data"]["delivery"]["state"] == "queued"
    for refused in (queued, in_flight):
        assert refused.status_code == 409, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert done["state"] == "delivered" and statuses(done) == [200, 200]
    assert len(got) == 2


def test_another_accounts_deliveries_are_404(hook_server, client, image):
    receiver = WebhookReceiver()
    try:
        gen_id = submit(client, image, receiver.url())
        delivery = wait_delivery(client, gen_id, lambda d: d["state"] == "delivered")
    finally:
        receiver.close()
    other_key = hook_server.create_key(f"intruder-{random.getrandbits(32)}")
    with hook_server.client(other_key) as other:
        assert other.get(f"/v1/image_to_video/{gen_id}/deliveries").status_code == 404
        path = f"/v1/image_to_video/{gen_id}/deliveries/{delivery['id']}/redeliver"
        response = other.post(path)
        assert response.status_code == 404
        assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        listed = gql(other, "query($g: ID) { deliveries(generationId: $g) { id } }", g=gen_id)
        assert listed.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        mine = gql(other, "{ deliveries { id } }").json()["data"]["deliveries"]
        assert mine == []
        redo = gql(
            other, "mutation($id: ID!) { redeliverWebhook(id: $id) { id } }", id=delivery["id"]
        )
        assert redo.status_code == 404
        assert redo.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # A delivery id under another of one's own generations is 404 too.
    other_gen = submit(client, image, None)
    path = f"/v1/image_to_video/{other_gen}/deliveries/{delivery['id']}/redeliver"
    assert client.post(path).status_code == 404
    assert len(receiver.requests) == 1


def test_cancelled_generation_sends_its_event(client, image_server):
    receiver = WebhookReceiver()
    try:
        gen_id = submit(client, image_server.url("/astronaut.jpg"), receiver.url(), duration=10)
        assert client.delete(f"/v1/image_to_video/{gen_id}").status_code == 200
        (req,) = receiver.wait_for(1)
    finally:
        receiver.close()
    payload = webhooks.verify(req.body, req.headers, secret=secret_of(client))
    assert payload["event"] == "generation.cancelled" and payload["status"] == "cancelled"
    assert payload["url"] is None and payload["id"] == gen_id


def test_failed_generation_sends_its_event_with_the_error(make_server, image_server):
    srv = make_server("sqlite", workers=1, env={"STILLMOTION_RENDER_TIMEOUT_SECONDS": "0.5"})
    srv.start()
    key = srv.create_key("failing")
    receiver = WebhookReceiver()
    try:
        with srv.client(key) as client:
            gen_id = submit(client, image_server.url("/astronaut.jpg"), receiver.url(), duration=8)
            gen = api.wait_finished(client, gen_id)
            (req,) = receiver.wait_for(1)
            payload = webhooks.verify(req.body, req.headers, secret=secret_of(client))
    finally:
        receiver.close()
    assert gen["status"] == "failed", gen
    assert payload["event"] == "generation.failed" and payload["status"] == "failed"
    assert payload["error"] == gen["error"] and payload["error"]["code"] == "TIMEOUT"
    assert payload["url"] is None and payload["id"] == gen_id


def test_account_webhook_url_is_checked_set_and_cleared(client):
    receiver = WebhookReceiver()
    receiver.close()
    bad = client.put("/v1/account/webhook", json={"url": "http://127.0.0.1:9/hook"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["extensions"]["code"] == "URL_NOT_ALLOWED"
    ok = client.put("/v1/account/webhook", json={"url": receiver.url()})
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"]["account"]["webhookUrl"] == receiver.url()
    assert client.get("/v1/account").json()["data"]["account"]["webhookUrl"] == receiver.url()
    cleared = client.put("/v1/account/webhook", json={"url": None})
    assert cleared.json()["data"]["account"]["webhookUrl"] is None
    mutation = "mutation($u: String) { setAccountWebhookUrl(url: $u) { url } }"
    refused = gql(client, mutation, u="http://169.254.169.254/latest/")
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "URL_NOT_ALLOWED"
    done = gql(client, mutation, u=receiver.url()).json()["data"]["setAccountWebhookUrl"]
    assert done == {"url": receiver.url()}
    assert client.get("/v1/account").json()["data"]["account"]["webhookUrl"] == receiver.url()


def test_credits_low_goes_to_the_account_webhook_url(hook_server, image):
    key = hook_server.create_key(f"low-{random.getrandbits(32)}", credits=103)
    receiver = WebhookReceiver()
    try:
        with hook_server.client(key) as client:
            response = client.put("/v1/account/webhook", json={"url": receiver.url("/account")})
            assert response.status_code == 200, response.text
            submit(client, image, None)  # 4 credits: 103 → 99, below the threshold of 100
            (req,) = receiver.wait_for(1)
            query = "{ deliveries { id event generationId state attemptCount } }"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                listed = gql(client, query).json()["data"]["deliveries"]
                if listed and listed[0]["state"] != "pending":
                    break
                time.sleep(0.05)
            event = webhooks.verify(req.body, req.headers, secret=secret_of(client))
    finally:
        receiver.close()
    assert req.path == "/account"
    assert event["event"] == "account.credits_low"
    assert [d["event"] for d in listed] == ["account.credits_low"]
    assert listed[0]["generationId"] is None and listed[0]["id"] == req.headers["webhook-id"]
    assert listed[0]["state"] == "delivered" and listed[0]["attemptCount"] == 1


# -- processes dying, processes racing ------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_between_completion_and_delivery_loses_no_webhook(
    make_server, image_server, backend
):
    srv = make_server(
        backend,
        workers=0,
        env={
            "STILLMOTION_WEBHOOK_BACKOFF_SCALE": "0.001",
            "STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.1",
            "STILLMOTION_WEBHOOK_TIMEOUT_SECONDS": "2",
            "STILLMOTION_WEBHOOK_LEASE_SECONDS": "3",
        },
    ).start()
    key = srv.create_key("killed")
    receiver = WebhookReceiver()
    receiver.down()  # the receiver is down when the job completes
    first = second = None
    try:
        with srv.client(key) as client:
            gen_id = submit(client, image_server.url("/astronaut-small.jpg"), receiver.url())
            first = srv.worker_process()
            assert api.wait_finished(client, gen_id)["status"] == "completed"
            tried = wait_delivery(client, gen_id, lambda d: d["attemptCount"] >= 1)
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert tried["attempts"][0]["error"] and tried["attempts"][0]["statusCode"] is None
            assert deliveries(client, gen_id)[0]["state"] == "pending"
            # Nobody delivers while no worker runs, even once the receiver is back.
            receiver.up()
            time.sleep(1.0)
            assert receiver.requests == []
            second = srv.worker_process()
            (req,) = receiver.wait_for(1, timeout=60)
            done = wait_delivery(client, gen_id, lambda d: d["state"] == "delivered")
    finally:
        stop(first, second)
        receiver.close()
    assert req.headers["webhook-id"] == done["id"] == tried["id"]
    assert json.loads(req.body)["id"] == gen_id
    assert statuses(done)[-1] == 200 and all(s is None for s in statuses(done)[:-1])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_mid_attempt_sends_again_once_its_lease_runs_out(
    make_server, image_server, backend
):
    srv = make_server(
        backend,
        workers=0,
        env={
            "STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.1",
            "STILLMOTION_WEBHOOK_TIMEOUT_SECONDS": "1.5",
            "STILLMOTION_WEBHOOK_LEASE_SECONDS": "2",  # raised to timeout + 5 s: 6.5 s
        },
    ).start()
    key = srv.create_key("mid-attempt")
    receiver = WebhookReceiver(delay=1.0)  # the first answer comes after its sender is dead
    first = second = None
    try:
        with srv.client(key) as client:
            gen_id = submit(client, image_server.url("/astronaut-small.jpg"), receiver.url())
            first = srv.worker_process()
            receiver.wait_for_arrival(1, timeout=120)
            killed_at = time.monotonic()
            first.send_signal(signal.SIGKILL)
            first.wait()
            receiver.delay = 0
            second = srv.worker_process()
            got = receiver.wait_for(2, timeout=60)
            done = wait_delivery(client, gen_id, lambda d: d["state"] == "delivered")
    finally:
        stop(first, second)
        receiver.close()
    # At least once: the receiver saw the event twice with one webhook-id (dedupe on it), and
    # the second sender waited for the dead one's lease instead of sending at once.
    assert [r.headers["webhook-id"] for r in got] == [done["id"]] * 2
    assert got[1].at - killed_at >= 6.5 - 1.5
    assert statuses(done) == [200] and done["attemptCount"] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_delivery_loops_never_send_one_attempt_twice(make_server, backend):
    srv = make_server(backend, workers=0, env={"STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.05"}).start()
    srv.create_key("racing")
    receiver = WebhookReceiver(delay=0.1)
    db = Database(srv.database_url)
    count = 60
    try:
        with db.session(write=True) as session:
            account_id = session.scalar(select(Account.id).where(Account.name == "racing"))
            ids = [
                outbox.enqueue(
                    session=session,
                    account_id=account_id,
                    url=receiver.url(f"/race/{i}"),
                    event="test.race",
                    payload={"n": i},
                ).id
                for i in range(count)
            ]
        workers = [srv.worker_process(), srv.worker_process()]
        try:
            got = receiver.wait_for(count, timeout=90)
            time.sleep(1.0)  # room for a duplicate to show up
            got = list(receiver.requests)
        finally:
            stop(*workers)
        with db.session() as session:
            rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))).all()
    finally:
        db.dispose()
        receiver.close()
    sent = [r.headers["webhook-id"] for r in got]
    assert len(sent) == count and set(sent) == set(ids)
    assert all(row.state == "delivered" and row.attempts == 1 for row in rows)
    assert sorted(json.loads(r.body)["n"] for r in got) == list(range(count))
