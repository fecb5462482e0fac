"""Redelivery storms (issue 10, item 3): a crowd of redeliveries to a receiver that accepts and
never answers must not hold the API's shared threads. Redelivery only queues the delivery;
the delivery loop (here: a `stillmotion worker` process started later) sends it.

The server runs no workers, so nothing in the API process sends webhooks: the cancelled jobs'
events wait in the outbox, and any connection that reaches the receiver before the worker
starts was made by a request handler.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from stillmotion.client import Client, Conflict
from tests.support.servers import TEST_HOST, StillmotionServer, small_request

pytestmark = pytest.mark.slow

JOBS = 60
SEND_TIMEOUT = 4.0  # STILLMOTION_WEBHOOK_TIMEOUT_SECONDS: how long a held thread used to wait
FAST = SEND_TIMEOUT / 2  # loose: an idle request takes milliseconds; a starved one SEND_TIMEOUT

REDELIVER = """mutation($id: ID!) { redeliverWebhook(id: $id) {
    id state attemptCount nextAttemptAt attempts { statusCode } } }"""
DELIVERIES = """{ deliveries(first: 100) {
    id generationId state attemptCount attempts { statusCode error } } }"""


class HangingReceiver:
    """Accepts every connection on `TEST_HOST` and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server((TEST_HOST, 0), backlog=256)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"http://{TEST_HOST}:{self.port}/hook"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._held.append(conn)  # read nothing, answer nothing, keep it open

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def storm_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("storm")
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}",
        data_dir=tmp,
        workers=0,
        env={
            "STILLMOTION_WEBHOOK_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
            "STILLMOTION_WEBHOOK_CONCURRENCY": "32",
            "STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.05",
        },
    ).start()
    yield srv
    srv.close()


@pytest.fixture
def hanging():
    receiver = HangingReceiver()
    yield receiver
    receiver.close()


def _create(client: httpx.Client, body: dict) -> str:
    response = client.post("/v1/image_to_video", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]["imagevideo"]["id"]


def _deliveries(client: httpx.Client) -> list[dict]:
    response = client.post("/graphql", json={"query": DELIVERIES})
    assert response.status_code == 200, response.text
    return response.json()["data"]["deliveries"]


def _redeliver(client: httpx.Client, delivery: dict, graphql: bool) -> tuple[float, int, dict]:
    start = time.monotonic()
    if graphql:
        response = client.post(
            "/graphql", json={"query": REDELIVER, "variables": {"id": delivery["id"]}}
        )
        took = time.monotonic() - start
        body = response.json()
        return took, response.status_code, (body.get("data") or {}).get("redeliverWebhook") or body
    path = f"/v1/image_to_video/{delivery['generationId']}/deliveries/{delivery['id']}/redeliver"
    response = client.post(path)
    took = time.monotonic() - start
    body = response.json()
    return took, response.status_code, (body.get("data") or {}).get("delivery") or body


def test_a_redelivery_storm_leaves_other_accounts_fast(storm_server, hanging, image_server):
    storm_key = storm_server.create_key("storm-a", plan="enterprise")
    other_key = storm_server.create_key("storm-b", plan="enterprise")
    limits = httpx.Limits(max_connections=JOBS + 10, max_keepalive_connections=JOBS + 10)
    with (
        storm_server.client(storm_key, limits=limits) as storm,
        storm_server.client(other_key) as other,
    ):
        # 60 jobs made and cancelled (refunded: free), each with its event for the receiver.
        body = small_request(image_server, webhookUrl=hanging.url())
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: _create(storm, body), range(JOBS)))
            for response in pool.map(lambda g: storm.delete(f"/v1/image_to_video/{g}"), ids):
                assert response.status_code == 200, response.text
        queued = _deliveries(storm)
        assert sorted(d["generationId"] for d in queued) == sorted(ids)
        to_cancel = _create(other, small_request(image_server))

        # 60 parallel redeliveries, half REST, half GraphQL; meanwhile another account reads.
        probes: list[tuple[str, float, int]] = []

        def probe(name: str, method: str, path: str) -> None:
            start = time.monotonic()
            response = other.request(method, path)
            probes.append((name, time.monotonic() - start, response.status_code))

        with ThreadPoolExecutor(JOBS) as pool:
            storm_calls = [
                pool.submit(_redeliver, storm, d, i % 2 == 1) for i, d in enumerate(queued)
            ]
            for _ in range(3):
                probe("account", "GET", "/v1/account")
                probe("list", "GET", "/v1/image_to_video?limit=5")
                probe("ledger", "GET", "/v1/account/ledger")
            probe("cancel", "DELETE", f"/v1/image_to_video/{to_cancel}")
            answers = [call.result() for call in storm_calls]
        sent_by_handlers = hanging.connections

        # A delivery already queued is refused, over both transports.
        again_rest = _redeliver(storm, queued[0], graphql=False)
        again_gql = storm.post(
            "/graphql", json={"query": REDELIVER, "variables": {"id": queued[1]["id"]}}
        )

        # The delivery loop of a worker process sends them all.
        worker = storm_server.worker_process()
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                logged = _deliveries(storm)
                if all(d["attemptCount"] >= 1 for d in logged):
                    break
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)

    print(  # the figures, for `pytest -s`
        f"probes: max {max(t for _, t, _ in probes):.3f} s; "
        f"redeliveries: max {max(t for t, _, _ in answers):.3f} s"
    )
    slow = [(name, round(took, 2)) for name, took, _ in probes if took >= FAST]
    assert not slow, f"another account's requests waited during the storm: {slow}"
    assert [status for *_, status in probes] == [200] * len(probes)
    slow_storm = sorted(round(took, 2) for took, _, _ in answers if took >= FAST)
    assert not slow_storm, f"redeliveries held their request for {slow_storm} s"
    # REST answers 202 Accepted; GraphQL 200 with the mutation's result.
    expected = [200 if i % 2 else 202 for i in range(JOBS)]
    assert [status for _, status, _ in answers] == expected, answers[:2]
    assert {d["state"] for _, _, d in answers} == {"queued"}
    assert all(d["attemptCount"] == 0 and d["nextAttemptAt"] for _, _, d in answers)
    assert sent_by_handlers == 0, "a request handler sent a webhook itself"

    assert again_rest[1] == 409, again_rest
    assert again_rest[2]["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert again_gql.status_code == 409, again_gql.text
    assert again_gql.json()["errors"][0]["extensions"]["code"] == "CONFLICT"

    assert all(d["attemptCount"] >= 1 for d in logged), logged
    for d in logged:
        first = d["attempts"][0]
        assert first["statusCode"] is None and first["error"], d
    assert hanging.connections >= JOBS


def test_the_webhook_secret_is_never_cached(storm_server):
    key = storm_server.create_key("secret-cache")
    with storm_server.client(key) as client:
        read = client.get("/v1/account/webhook_secret")
        rotated = client.post("/v1/account/webhook_secret")
    assert read.status_code == 200 and rotated.status_code == 200
    assert read.headers.get("cache-control") == "no-store"
    assert rotated.headers.get("cache-control") == "no-store"


def test_the_sdk_redelivers_and_sees_it_queued(storm_server, hanging, image_server):
    key = storm_server.create_key("storm-sdk", plan="enterprise")
    with storm_server.client(key) as http:
        gen_id = _create(http, small_request(image_server, webhookUrl=hanging.url()))
        assert http.delete(f"/v1/image_to_video/{gen_id}").status_code == 200
    with Client(base_url=storm_server.url, api_key=key, max_retries=0) as client:
        [delivery] = client.deliveries(gen_id)
        queued = client.redeliver(gen_id, delivery.id)
        with pytest.raises(Conflict) as refused:
            client.redeliver(gen_id, delivery.id)
    assert queued.id == delivery.id and queued.unknown() == {}
    assert queued.state == "queued" and queued.attempt_count == 0
    assert queued.next_attempt_at is not None
    assert refused.value.code == "CONFLICT"
