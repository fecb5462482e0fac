"""Reading a server's state through its API, for tests: one generation, waiting for one, the
account, its ledger and its jobs (an `httpx.Client` made by `StillmotionServer.client`)."""

from __future__ import annotations

import time
from collections.abc import Callable


def generation(client, gen_id: str) -> dict:
    response = client.get(f"/v1/image_to_video/{gen_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]["imagevideo"]


def wait_until(
    client,
    gen_id: str,
    predicate: Callable[[dict], bool],
    *,
    timeout: float = 120,
    interval: float = 0.1,
) -> dict:
    """The generation once `predicate` holds for it; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        gen = generation(client, gen_id)
        if predicate(gen):
            return gen
        if time.monotonic() > deadline:
            raise AssertionError(f"{gen_id} timed out; last state {gen}")
        time.sleep(interval)


def finished(gen: dict) -> bool:
    return gen["status"] != "processing"


def wait_finished(client, gen_id: str, **wait) -> dict:
    """`wait_until` the generation has finished (`timeout`, `interval` as there)."""
    return wait_until(client, gen_id, finished, **wait)


def account(client) -> dict:
    response = client.get("/v1/account")
    assert response.status_code == 200, response.text
    return response.json()["data"]["account"]


def ledger(client) -> list[dict]:
    response = client.get("/v1/account/ledger", params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["data"]["ledger"]


def jobs(client) -> list[dict]:
    response = client.get("/v1/image_to_video", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]["imagevideos"]
