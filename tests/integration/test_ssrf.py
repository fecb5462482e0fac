"""The server cannot be turned against internal networks (API.md §7), through the real API.

Every URL below is refused with URL_NOT_ALLOWED as `imageUrl` and as `webhookUrl`, over REST and
both GraphQL mutations, and as the account webhook URL; listeners on 127.0.0.1 and [::1] (the
port every loopback spelling names) count the connections that arrive anyway: there must be
none. Only 127.0.0.2, where the test peers live, is allow-listed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from stillmotion.db import Database
from stillmotion.webhooks import outbox
from tests.support.receivers import WebhookReceiver, counters_on_one_port
from tests.support.servers import StillmotionServer

GENERATE = """mutation($input: GenerateInput!) { generate(input: $input) { id } }"""
ANIMATE = """mutation($input: ImageAnimationInput!) { animateImage(input: $input) { id } }"""
SET_URL = "mutation($u: String) { setAccountWebhookUrl(url: $u) { url } }"


def _loopback_name() -> str:
    """A host name (not `localhost`) that resolves to loopback here, from /etc/hosts."""
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0].startswith("127."):
            for name in fields[1:]:
                if name != "localhost" and "." not in name.strip("."):
                    return name
    return "localhost."


@pytest.fixture(scope="module")
def counters():
    v4, v6 = counters_on_one_port()
    yield v4, v6
    v4.close()
    v6.close()


@pytest.fixture(scope="module")
def ssrf_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ssrf")
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}",
        data_dir=tmp,
        workers=1,
        env={
            "STILLMOTION_WEBHOOK_POLL_INTERVAL": "0.05",
            "STILLMOTION_WEBHOOK_BACKOFF_SCALE": "0.0001",
        },
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(ssrf_server):
    key = ssrf_server.create_key(f"ssrf-{random.getrandbits(32)}", plan="enterprise")
    with ssrf_server.client(key) as c:
        yield c


def forbidden_urls(port: int, image_server) -> dict[str, str]:
    """Name → URL; `port` is where the loopback counters listen."""
    return {
        "ipv4-loopback": f"http://127.0.0.1:{port}/a.jpg",
        "localhost": f"http://localhost:{port}/a.jpg",
        "ipv6-loopback": f"http://[::1]:{port}/a.jpg",
        "unspecified": f"http://0.0.0.0:{port}/a.jpg",
        "private-10": "http://10.0.0.1/a.jpg",
        "private-172": "http://172.16.0.1/a.jpg",
        "private-192": "http://192.168.1.1/a.jpg",
        "cloud-metadata": "http://169.254.169.254/latest/meta-data/",
        "cgnat": "http://100.64.0.1/a.jpg",
        "ipv4-mapped": f"http://[::ffff:127.0.0.1]:{port}/a.jpg",
        "unique-local-v6": "http://[fd00::1]/a.jpg",
        "decimal": f"http://2130706433:{port}/a.jpg",
        "octal": f"http://0177.0.0.1:{port}/a.jpg",
        "hex": f"http://0x7f000001:{port}/a.jpg",
        "hex-dotted": f"http://0x7f.0.0.1:{port}/a.jpg",
        "short-form": f"http://127.1:{port}/a.jpg",
        "name-to-loopback": f"http://{_loopback_name()}:{port}/a.jpg",
        "https-loopback": f"https://127.0.0.1:{port}/a.jpg",
        "userinfo-trick": f"http://127.0.0.2@127.0.0.1:{port}/a.jpg",
        "file": "file:///etc/passwd",
        "ftp": f"ftp://127.0.0.1:{port}/a.jpg",
        "gopher": f"gopher://127.0.0.1:{port}/_GET%20/",
    }


CASES = [
    "ipv4-loopback",
    "localhost",
    "ipv6-loopback",
    "unspecified",
    "private-10",
    "private-172",
    "private-192",
    "cloud-metadata",
    "cgnat",
    "ipv4-mapped",
    "unique-local-v6",
    "decimal",
    "octal",
    "hex",
    "hex-dotted",
    "short-form",
    "name-to-loopback",
    "https-loopback",
    "userinfo-trick",
    "file",
    "ftp",
    "gopher",
]


def _refused(response, where: str) -> None:
    assert response.status_code == 400, f"{where}: {response.status_code} {response.text}"
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "URL_NOT_ALLOWED", f"{where}: {body}"
    if "data" in body:
        assert body["data"] is None, where


def _create_everywhere(client, image: str, webhook: str | None) -> dict[str, object]:
    """The same request through REST, GraphQL `generate` and GraphQL `animateImage`."""
    rest = {
        "service": "runway-i2v",
        "prompt": "x",
        "imageUrl": image,
        "version": "gen-2",
        "duration": 2,
    }
    generate = {
        "type": "VIDEO",
        "provider": "runway-i2v",
        "input": {"imageUrl": image, "prompt": "x"},
        "options": {"version": "gen-2", "duration": 2},
    }
    animate = {"service": "runway-i2v", "imageUrl": image, "version": "gen-2", "duration": 2}
    if webhook is not None:
        rest["webhookUrl"] = generate["webhookUrl"] = animate["webhookUrl"] = webhook
    return {
        "REST": client.post("/v1/image_to_video", json=rest),
        "GraphQL generate": client.post(
            "/graphql", json={"query": GENERATE, "variables": {"input": generate}}
        ),
        "GraphQL animateImage": client.post(
            "/graphql", json={"query": ANIMATE, "variables": {"input": animate}}
        ),
    }


@pytest.mark.parametrize("case", CASES)
def test_forbidden_url_is_refused_everywhere(client, image_server, counters, case):
    port = counters[0].port
    url = forbidden_urls(port, image_server)[case]
    good_image = image_server.url("/astronaut-small.jpg")
    before = client.get("/v1/account").json()["data"]["account"]
    for where, response in _create_everywhere(client, url, None).items():
        _refused(response, f"imageUrl via {where}")
    for where, response in _create_everywhere(client, good_image, url).items():
        _refused(response, f"webhookUrl via {where}")
    _refused(client.put("/v1/account/webhook", json={"url": url}), "account webhook (REST)")
    response = client.post("/graphql", json={"query": SET_URL, "variables": {"u": url}})
    _refused(response, "account webhook (GraphQL)")
    # Nothing was created or charged, and nothing reached loopback.
    after = client.get("/v1/account").json()["data"]["account"]
    assert after["creditBalance"] == before["creditBalance"]
    assert after["usage"]["generationsToday"] == before["usage"]["generationsToday"]
    assert after["webhookUrl"] is None
    assert [c.connections for c in counters] == [0, 0]


def test_image_url_redirecting_to_loopback_is_refused(client, image_server, counters):
    port = counters[0].port
    for target in (f"http://127.0.0.1:{port}/a.jpg", f"http://[::1]:{port}/a.jpg"):
        url = image_server.url(f"/redirect?to={target}")
        before = len(image_server.hits)
        for where, response in _create_everywhere(client, url, None).items():
            _refused(response, f"redirect via {where}")
        # The allow-listed server was asked (and answered 302); loopback never was.
        assert image_server.hits[before:] == [url.split(str(image_server.port), 1)[1]] * 3
    assert [c.connections for c in counters] == [0, 0]


@pytest.mark.slow
def test_webhook_redirect_to_loopback_is_not_followed(client, image_server, counters):
    port = counters[0].port
    target = f"http://127.0.0.1:{port}/hook"
    receiver = WebhookReceiver([(302, {"Location": target}), (307, {"Location": target})])
    try:
        body = {
            "service": "runway-i2v",
            "prompt": "x",
            "imageUrl": image_server.url("/astronaut-small.jpg"),
            "version": "gen-2",
            "duration": 2,
            "webhookUrl": receiver.url(),
        }
        created = client.post("/v1/image_to_video", json=body)
        assert created.status_code == 202, created.text
        gen_id = created.json()["data"]["imagevideo"]["id"]
        receiver.wait_for(3, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (delivery,) = client.get(f"/v1/image_to_video/{gen_id}/deliveries").json()["data"][
                "deliveries"
            ]
            if delivery["state"] == "delivered":
                break
            time.sleep(0.05)
    finally:
        receiver.close()
    # A 3xx is a failed attempt, retried at the same URL; the Location is never requested.
    assert [a["statusCode"] for a in delivery["attempts"]] == [302, 307, 200]
    assert delivery["state"] == "delivered"
    assert {r.path for r in receiver.requests} == {"/hook"}
    assert [c.connections for c in counters] == [0, 0]


def test_delivery_time_check_refuses_a_url_that_turned_inward(ssrf_server, client, counters):
    """A URL accepted earlier whose name now resolves inward (DNS changed): the attempt is
    refused and recorded as failed; the loopback listeners see nothing."""
    port = counters[0].port
    account_id = client.get("/v1/account").json()["data"]["account"]["id"]
    db = Database(ssrf_server.database_url)
    try:
        with db.session(write=True) as session:
            for host in ("127.0.0.1", "[::1]"):
                outbox.enqueue(
                    session=session,
                    account_id=account_id,
                    url=f"http://{host}:{port}/hook",
                    event="test.inward",
                    payload={"host": host},
                )
    finally:
        db.dispose()
    query = "{ deliveries { url state attempts { statusCode error } } }"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = client.post("/graphql", json={"query": query}).json()["data"]["deliveries"]
        inward = [d for d in found if str(port) in d["url"]]
        if len(inward) == 2 and all(d["attempts"] for d in inward):
            break
        time.sleep(0.1)
    for delivery in inward:
        assert delivery["state"] == "pending"  # retried on the schedule, like any failure
        for attempt in delivery["attempts"]:
            assert attempt["statusCode"] is None
            assert attempt["error"].startswith("URL_NOT_ALLOWED"), attempt
    assert [c.connections for c in counters] == [0, 0]
