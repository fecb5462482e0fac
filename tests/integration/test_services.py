"""The service catalogue (issue 11, its API half): `STILLMOTION_SERVICES` read once at start,
`GET /v1/services` and GraphQL `services`, and creates held to the service they name.

Against real `stillmotion serve` subprocesses with no workers, so runway-backed creates are
only accepted or refused here, never rendered (`test_runway_worker.py` renders them). The
"upstream refused" half of availability is checked in process, against the fake Runway API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stillmotion.config import Settings
from stillmotion.db import Database
from stillmotion.generations.models import Generation
from stillmotion.providers.base import ProviderError, RenderJob
from stillmotion.providers.registry import Providers
from stillmotion.services import catalogue
from stillmotion.services.views import service_view
from tests.support.fake_runway import FakeRunway
from tests.support.servers import StillmotionServer, free_port, photo_bytes

# The issue's example, exactly as written.
ISSUE_EXAMPLE = """\
[services.runway-i2v]
provider = "runway"
model = "gen4_turbo"                          # Runway's model id
base_url = "https://api.dev.runwayml.com"     # the default; any Runway-compatible API
api_key_env = "RUNWAYML_API_SECRET"           # the key is read from this variable, never from the file
[services.local]
provider = "local"
"""  # noqa: E501  (the issue's line, as written)
# The example plus a narrow service, for the refusals and prices of the file.
CUSTOM = (
    ISSUE_EXAMPLE
    + """
[services.short]
provider = "local"
description = "Short clips, gen-4 only"
versions = ["gen-4"]
aspect_ratios = ["16:9", "1:1"]
durations = [2, 3]
prices = { gen-4 = 7 }
options = ["seed"]
"""
)
RUNWAY_KEY = "key_services_test_" + "ab" * 20
API_OPTIONS = {"camera", "motionBrush", "loop", "seed"}

SERVICES_QUERY = """{ services { id provider description versions aspectRatios durations
  prices options available unavailableReason } }"""


def _server(tmp: Path, text: str, **env: str) -> StillmotionServer:
    path = tmp / "services.toml"
    path.write_text(text)
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}",
        data_dir=tmp,
        workers=0,
        env={"STILLMOTION_SERVICES": str(path), "RUNWAYML_API_SECRET": RUNWAY_KEY, **env},
    )
    return srv.start()


@pytest.fixture(scope="module")
def example_server(tmp_path_factory):
    srv = _server(tmp_path_factory.mktemp("services-example"), ISSUE_EXAMPLE)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def custom_server(tmp_path_factory):
    srv = _server(tmp_path_factory.mktemp("services-custom"), CUSTOM)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def example_key(example_server):
    return example_server.create_key("services-example")


@pytest.fixture(scope="module")
def custom_key(custom_server):
    return custom_server.create_key("services-custom")


def _gql(srv, key, query, variables=None):
    return httpx.post(
        srv.url + "/graphql",
        headers={"Authorization": f"Bearer {key}"},
        json={"query": query, "variables": variables or {}},
        timeout=30,
    )


def _create(srv, key, image_server, **fields):
    body = {
        "service": "runway-i2v",
        "prompt": "",
        "imageUrl": image_server.url("/astronaut-small.jpg"),
        **fields,
    }
    return httpx.post(
        srv.url + "/v1/image_to_video",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _refusal(response, field: str) -> str:
    assert response.status_code == 400, response.text
    err = response.json()["errors"][0]
    assert err["extensions"]["code"] == "VALIDATION_ERROR", err
    assert err["extensions"]["field"] == field, err
    return err["message"]


# --- the list -------------------------------------------------------------------------------


def _check_example_listing(services: list[dict]) -> None:
    by_id = {s["id"]: s for s in services}
    assert list(by_id) == ["runway-i2v", "local"]
    runway, local = by_id["runway-i2v"], by_id["local"]
    assert runway["provider"] == "runway"
    assert runway["versions"] == ["gen-2", "gen-3", "gen-4"]
    assert runway["aspectRatios"] == ["16:9", "9:16", "1:1"]  # gen4_turbo has all three
    assert runway["durations"] == list(range(2, 11))
    assert runway["prices"] == {"gen-2": 2, "gen-3": 5, "gen-4": 20}  # the server's defaults
    assert runway["options"] == ["seed"]
    # The key is set and nothing has refused it: available (no network check either way).
    assert runway["available"] is True and runway["unavailableReason"] is None
    assert local["provider"] == "local"
    assert set(local["options"]) == API_OPTIONS
    assert local["available"] is True and local["unavailableReason"] is None
    assert local["durations"] == list(range(2, 11))
    assert all(isinstance(s["description"], str) for s in services)


def test_the_issue_example_is_listed_by_rest(example_server, example_key):
    response = example_server.client(example_key).get("/v1/services")
    assert response.status_code == 200, response.text
    assert "X-RateLimit-Limit" in response.headers  # counted as a read
    _check_example_listing(response.json()["data"]["services"])


def test_the_issue_example_is_listed_by_graphql(example_server, example_key):
    response = _gql(example_server, example_key, SERVICES_QUERY)
    assert response.status_code == 200, response.text
    _check_example_listing(response.json()["data"]["services"])


def test_the_list_needs_a_key(example_server):
    response = httpx.get(example_server.url + "/v1/services", timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_services_own_values_are_listed(custom_server, custom_key):
    services = custom_server.client(custom_key).get("/v1/services").json()["data"]["services"]
    short = next(s for s in services if s["id"] == "short")
    assert short == {
        "id": "short",
        "provider": "local",
        "description": "Short clips, gen-4 only",
        "versions": ["gen-4"],
        "aspectRatios": ["16:9", "1:1"],
        "durations": [2, 3],
        "prices": {"gen-4": 7},
        "options": ["seed"],
        "available": True,
        "unavailableReason": None,
    }


def test_without_a_file_the_catalogue_is_runway_i2v_on_the_engine(server):
    key = server.create_key("services-default")
    services = server.client(key).get("/v1/services").json()["data"]["services"]
    assert [(s["id"], s["provider"], s["available"]) for s in services] == [
        ("runway-i2v", "local", True)
    ]
    assert set(services[0]["options"]) == API_OPTIONS


# --- a bad file stops the server at start ---------------------------------------------------

BAD_FILES = [
    # (file text, environment, what the one line must name)
    (
        '[services.runway-i2v]\nprovider = "sora"\n',
        {},
        ["[services.runway-i2v]", "provider", "sora"],
    ),
    (
        '[services.local]\nprovider = "local"\ncolour = "blue"\n',
        {},
        ["[services.local]", "colour", "unknown key"],
    ),
    (ISSUE_EXAMPLE, {"RUNWAYML_API_SECRET": ""}, ["[services.runway-i2v]", "api_key_env"]),
]


def _start_and_fail(tmp_path: Path, text: str, env: dict[str, str], *command: str):
    path = tmp_path / "services.toml"
    path.write_text(text)
    environ = {
        **os.environ,
        "STILLMOTION_DATABASE_URL": f"sqlite:///{tmp_path / 'stillmotion.db'}",
        "STILLMOTION_DATA_DIR": str(tmp_path),
        "STILLMOTION_SERVICES": str(path),
        **env,
    }
    if not environ.get("RUNWAYML_API_SECRET"):
        environ.pop("RUNWAYML_API_SECRET", None)
    proc = subprocess.run(
        [sys.executable, "-m", "stillmotion", *command],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, path


@pytest.mark.parametrize(("text", "env", "named"), BAD_FILES, ids=["provider", "key", "variable"])
def test_a_bad_file_stops_serve_with_one_line(tmp_path, text, env, named):
    proc, path = _start_and_fail(tmp_path, text, env, "serve", "--port", str(free_port()))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in lines[0]
    for word in named:
        assert word in lines[0], lines[0]


def test_the_issue_example_without_its_variable_names_it(tmp_path):
    proc, path = _start_and_fail(tmp_path, ISSUE_EXAMPLE, {"RUNWAYML_API_SECRET": ""}, "serve")
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if line.strip()]
    assert f"{path}: [services.runway-i2v] api_key_env: RUNWAYML_API_SECRET is not set" in line


def test_a_bad_file_stops_the_worker_with_one_line(tmp_path):
    text, env, _ = BAD_FILES[0]
    proc, path = _start_and_fail(tmp_path, text, env, "worker")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "provider" in lines[0], proc.stderr


def test_a_missing_file_stops_serve_with_one_line(tmp_path):
    environ = {
        **os.environ,
        "STILLMOTION_DATABASE_URL": f"sqlite:///{tmp_path / 'stillmotion.db'}",
        "STILLMOTION_SERVICES": str(tmp_path / "nowhere.toml"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "stillmotion", "serve", "--port", str(free_port())],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    (line,) = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "nowhere.toml" in line


# --- creates are held to their service -----------------------------------------------------


def test_an_unknown_service_lists_the_known_ones(example_server, example_key, image_server):
    response = _create(example_server, example_key, image_server, service="sora")
    message = _refusal(response, "service")
    assert "'sora'" in message and "runway-i2v" in message and "local" in message
    gql = _gql(
        example_server,
        example_key,
        "mutation($i: ImageAnimationInput!) { animateImage(input: $i) { id } }",
        {"i": {"service": "sora", "imageUrl": image_server.url("/astronaut-small.jpg")}},
    )
    assert gql.status_code == 400, gql.text
    err = gql.json()["errors"][0]
    assert err["extensions"]["field"] == "service" and "runway-i2v" in err["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("camera", {"zoom": 3}),
        ("motionBrush", [{"mask": [[0.1, 0.5], [0.4, 0.5], [0.3, 0.9]], "horizontal": 4}]),
        ("loop", True),
    ],
)
def test_an_option_the_service_does_not_take_is_refused(
    example_server, example_key, image_server, field, value
):
    message = _refusal(_create(example_server, example_key, image_server, **{field: value}), field)
    assert field in message and "runway-i2v" in message
    # GraphQL, both shapes: the same refusal.
    generate = _gql(
        example_server,
        example_key,
        "mutation($i: GenerateInput!) { generate(input: $i) { id } }",
        {
            "i": {
                "type": "VIDEO",
                "provider": "runway-i2v",
                "input": {"imageUrl": image_server.url("/astronaut-small.jpg")},
                "options": {field: value},
            }
        },
    )
    animate = _gql(
        example_server,
        example_key,
        "mutation($i: ImageAnimationInput!) { animateImage(input: $i) { id } }",
        {
            "i": {
                "service": "runway-i2v",
                "imageUrl": image_server.url("/astronaut-small.jpg"),
                field: value,
            }
        },
    )
    for response in (generate, animate):
        assert response.status_code == 400, response.text
        err = response.json()["errors"][0]
        assert err["extensions"]["code"] == "VALIDATION_ERROR"
        assert err["extensions"]["field"] == field
        assert field in err["message"] and "runway-i2v" in err["message"]


def test_refusals_charge_nothing(example_server, image_server):
    key = example_server.create_key("services-refusals", credits=1000)
    client = example_server.client(key)
    _refusal(_create(example_server, key, image_server, camera={"zoom": 3}), "camera")
    assert client.get("/v1/account").json()["data"]["account"]["creditBalance"] == 1000
    assert client.get("/v1/image_to_video").json()["data"]["imagevideos"] == []


def test_the_engine_service_takes_every_option(example_server, example_key, image_server):
    response = _create(
        example_server,
        example_key,
        image_server,
        service="local",
        version="gen-2",
        duration=2,
        camera={"zoom": 3},
        loop=True,
    )
    assert response.status_code == 202, response.text


def test_a_create_for_a_runway_service_is_accepted_and_charged(
    example_server, example_key, image_server
):
    """Workers run the Runway provider: a create for a runway service is accepted (202),
    charged its price, and waits in the queue (this server has no workers)."""
    before = httpx.get(
        example_server.url + "/v1/account", headers={"X-API-Key": example_key}
    ).json()["data"]["account"]["creditBalance"]
    response = _create(
        example_server, example_key, image_server, version="gen-4", duration=5, seed=7
    )
    assert response.status_code == 202, response.text
    gen = response.json()["data"]["imagevideo"]
    assert gen["status"] == "processing" and gen["creditCost"] == 100  # 20 a second × 5
    after = httpx.get(
        example_server.url + "/v1/account", headers={"X-API-Key": example_key}
    ).json()["data"]["account"]["creditBalance"]
    assert after == before - 100
    db = Database(example_server.database_url)
    try:
        with db.session() as session:
            row = session.get(Generation, gen["id"])
            assert (row.provider, row.service, row.provider_state) == ("runway", "runway-i2v", None)
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"version": "gen-3"}, "version", ["gen-3", "short", "gen-4"]),
        ({"duration": 5}, "duration", ["5", "short", "2, 3"]),
        ({"aspectRatio": "9:16"}, "aspectRatio", ["9:16", "short", "16:9"]),
        ({"camera": {"pan": 1}}, "camera", ["camera", "short"]),
    ],
)
def test_values_outside_the_service_are_refused(
    custom_server, custom_key, image_server, fields, field, words
):
    response = _create(custom_server, custom_key, image_server, service="short", **fields)
    message = _refusal(response, field)
    for word in words:
        assert word in message, message


def test_prices_come_from_the_file(custom_server, custom_key, image_server):
    response = _create(
        custom_server, custom_key, image_server, service="short", version="gen-4", duration=3
    )
    assert response.status_code == 202, response.text
    assert response.json()["data"]["imagevideo"]["creditCost"] == 21  # 7 a second × 3
    # GraphQL's creditCost is the same price.
    gql = _gql(
        custom_server,
        custom_key,
        "mutation($i: GenerateInput!) { generate(input: $i) { creditCost } }",
        {
            "i": {
                "type": "VIDEO",
                "provider": "short",
                "input": {"imageUrl": image_server.url("/astronaut-small.jpg")},
                "options": {"version": "gen-4", "duration": 2},
            }
        },
    )
    assert gql.status_code == 200, gql.text
    assert gql.json()["data"]["generate"]["creditCost"] == 14


def test_unset_options_take_the_services_defaults(custom_server, custom_key, image_server):
    # The API's defaults (gen-3, 5 s) are not the service's: its first version and its
    # duration nearest 5 s are used instead.
    response = _create(custom_server, custom_key, image_server, service="short")
    assert response.status_code == 202, response.text
    gen = response.json()["data"]["imagevideo"]
    assert gen["duration"] == 3 and gen["metadata"]["version"] == "gen-4"
    assert gen["creditCost"] == 21


# --- availability when the upstream refused (in process, fake Runway) ------------------------


def test_a_refused_key_shows_the_service_unavailable_with_the_reason(tmp_path):
    fake = FakeRunway(api_key="key_the_real_one", min_poll_interval=0.05)
    try:
        path = tmp_path / "services.toml"
        path.write_text(
            "[services.runway-i2v]\n"
            'provider = "runway"\n'
            'model = "gen4_turbo"\n'
            f'base_url = "{fake.base_url}"\n'
            'api_key_env = "RUNWAY_TEST_KEY"\n'
            "poll_interval = 0.05\n"
        )
        cat = catalogue.load(path, environ={"RUNWAY_TEST_KEY": "key_a_wrong_one"})
        providers = Providers(cat, Settings(_env_file=None))
        spec = cat.get("runway-i2v")
        first = service_view(spec, providers)
        assert first["available"] is True  # nothing has refused the key yet
        assert first["unavailableReason"] is None
        provider = providers.get(spec)
        assert providers.get(spec) is provider  # built once
        job = RenderJob(
            generation_id="gen_01services",
            source=photo_bytes("astronaut", size=256),
            options={"version": "gen-3", "aspect_ratio": "16:9", "duration": 5, "prompt": ""},
        )
        with pytest.raises(ProviderError):
            provider.render(
                job, workdir=tmp_path, on_progress=lambda *_: None, should_cancel=lambda: False
            )
        view = service_view(spec, providers)
        assert view["available"] is False
        assert "HTTP 401" in view["unavailableReason"]
        # The metric says it too, with the refusal counted.
        from types import SimpleNamespace

        from stillmotion import metrics
        from stillmotion.migrations import upgrade

        url = f"sqlite:///{tmp_path / 'm.db'}"
        upgrade(url)
        db = Database(url)
        try:
            ctx = SimpleNamespace(db=db, catalogue=cat, providers=providers)
            text = metrics.render(ctx).decode()
        finally:
            db.dispose()
        assert 'stillmotion_service_available{provider="runway",service="runway-i2v"} 0.0' in text
        assert 'stillmotion_provider_events{event="refusals",service="runway-i2v"} 1.0' in text
        assert fake.counts() == {"create": 1}  # the view itself asked nothing upstream
    finally:
        fake.close()


def test_the_sdk_prices_a_batch_at_the_servers_prices(custom_server, image_server):
    """The SDK reads prices from /v1/services instead of its own copy: the 'short' service
    costs 7 a second for gen-4 (the default is 20), so credits for one job at that price are
    spent on exactly one job and the rest are skipped with the server's numbers."""
    from stillmotion.client import Client

    key = custom_server.create_key("services-sdk-price", credits=14)
    with Client(base_url=custom_server.url, api_key=key, max_retries=0) as client:
        assert client.price_of(service="short", version="gen-4", duration=2) == 14
        assert client.price_of(service="runway-i2v", version="gen-4", duration=2) == 40
        result = client.batch(
            [image_server.url("/astronaut-small.jpg")] * 2,
            service="short",
            version="gen-4",
            duration=2,
        )
    assert len(result.submitted) == 1 and result.submitted[0].credit_cost == 14
    assert [s.reason for s in result.skipped] == ["insufficient credits: 14 needed, 0 available"]
