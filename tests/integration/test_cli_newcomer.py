"""What a new user trips on with the `stillmotion` command and the SDK, against real servers.

The CLI runs as a subprocess, as a user runs it, with `COLUMNS=80`: piped (Rich's 80-column
default when stdout is no terminal) and, with `TTY_COMPATIBLE=1`, as Rich draws for a terminal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from stillmotion import options
from stillmotion.client import Client
from stillmotion.client.errors import ValidationError
from tests.support.servers import free_port, photo_bytes

FAST = ["--duration", "2", "--version", "gen-2"]


def run_cli(*args: str, env: dict[str, str], tty: bool = False) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STILLMOTION_") and k not in ("TTY_COMPATIBLE", "FORCE_COLOR")
    }
    full = {**base, "COLUMNS": "80", **env}
    if tty:
        full["TTY_COMPATIBLE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "stillmotion", *args],
        env=full,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def client_env(srv, key: str) -> dict[str, str]:
    return {"STILLMOTION_URL": srv.url, "STILLMOTION_API_KEY": key}


def operator_env(srv) -> dict[str, str]:
    """What an operator on the server's machine has set: its database and data folder."""
    return {k: v for k, v in srv.env.items() if k.startswith("STILLMOTION_")}


def rest_generation(srv, key: str, gen_id: str) -> dict:
    with srv.client(key) as http:
        return http.get(f"/v1/image_to_video/{gen_id}").json()["data"]["imagevideo"]


def test_status_shows_a_150_character_video_url_whole(make_server, image_url):
    srv = make_server("sqlite")
    # A public URL behind a reverse proxy under a long path: media URLs of 150+ characters.
    srv.env["STILLMOTION_PUBLIC_URL"] = f"{srv.url}/behind/a/proxy/{'p' * 90}"
    srv.start()
    key = srv.create_key("long-urls")
    with Client(base_url=srv.url, api_key=key) as client:
        gen = client.wait(client.generate(image_url=image_url, duration=2, version="gen-2"))
    assert len(gen.url) >= 150
    for tty in (False, True):
        shown = run_cli("status", gen.id, env=client_env(srv, key), tty=tty)
        assert shown.returncode == 0, shown.stderr
        assert gen.url in shown.stdout, shown.stdout
        assert gen.id in shown.stdout and "completed" in shown.stdout


def test_keys_list_shows_whole_key_ids_at_80_columns(server):
    account = f"newcomer-{uuid.uuid4().hex}-with-a-long-account-name"
    made = run_cli("keys", "create", "--account", account, "--json", env=operator_env(server))
    assert made.returncode == 0, made.stderr
    key_id = json.loads(made.stdout)["keyId"]
    for tty in (False, True):
        listed = run_cli("keys", "list", "--account", account, env=operator_env(server), tty=tty)
        assert listed.returncode == 0, listed.stderr
        assert key_id in listed.stdout, listed.stdout
        if not tty:  # piped: one tab-separated line, every field whole
            (line,) = listed.stdout.splitlines()
            assert line.split("\t")[:4] == [key_id, line.split("\t")[1], account, "user"]


def test_an_error_is_printed_as_one_line_not_wrapped_at_80_columns(server):
    key = server.create_key(f"cli-{uuid.uuid4().hex[:10]}")
    # 127.0.0.1 is not allow-listed: the server refuses it with URL_NOT_ALLOWED.
    refused = run_cli("generate", "http://127.0.0.1:9/photo.jpg", env=client_env(server, key))
    assert refused.returncode == 1, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert "URL_NOT_ALLOWED" in lines[0] and len(lines[0]) > 80  # else the test shows nothing


@pytest.mark.parametrize(
    "args", [["account"], ["status", "gen_x"], ["generate", "https://example.com/a.jpg"]]
)
def test_no_key_says_how_to_set_one_without_asking_the_server(args):
    # Nothing listens at this URL: a CLI that went out would report the connection instead.
    env = {"STILLMOTION_URL": f"http://127.0.0.1:{free_port()}"}
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert "set STILLMOTION_API_KEY or pass --key" in result.stderr, result.stderr
    assert "401" not in result.stderr and "server running" not in result.stderr


def test_no_server_says_so_at_once():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_cli("account", env={"STILLMOTION_URL": url, "STILLMOTION_API_KEY": "sm_x"})
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert f"is a server running at {url}?" in result.stderr, result.stderr
    assert "ConnectError" not in result.stderr
    assert took < 8, took  # the SDK's retries alone took ~10 s; a start-up takes ~1 s


def test_generate_and_animate_take_intensity_and_generate_keeps_motion(server, image_url):
    for command in ("generate", "animate"):
        helped = run_cli(command, "--help", env={})
        assert helped.returncode == 0, helped.stderr
        assert "--intensity" in helped.stdout, helped.stdout
        assert "--motion " not in helped.stdout  # the old name is a hidden alias
    key = server.create_key(f"cli-{uuid.uuid4().hex[:10]}")
    env = client_env(server, key)
    for flag, value in (("--intensity", "low"), ("--motion", "high")):
        made = run_cli("generate", image_url, *FAST, flag, value, env=env)
        assert made.returncode == 0, made.stderr
        gen_id = re.search(r"Created (gen_\w+)", made.stdout).group(1)
        assert rest_generation(server, key, gen_id)["metadata"]["motionIntensity"] == value
    wrong = run_cli("generate", image_url, "--intensity", "extreme", env=env)
    assert wrong.returncode == 2 and "extreme" in wrong.stderr, wrong.stderr


@pytest.mark.parametrize("duration", [options.DURATION_MIN - 1, options.DURATION_MAX + 1])
def test_duration_outside_the_apis_range_is_refused_before_anything_is_sent(
    duration, image_path, tmp_path
):
    # No server: a refusal that needed one would be a connection error, not a usage error.
    env = {"STILLMOTION_URL": f"http://127.0.0.1:{free_port()}", "STILLMOTION_API_KEY": "sm_x"}
    bound = options.DURATION_MIN if duration < options.DURATION_MIN else options.DURATION_MAX
    expected = f"equal to {bound}"
    for args in (
        ["generate", str(image_path), "--duration", str(duration)],
        ["animate", str(image_path), "-o", str(tmp_path / "a.mp4"), "--duration", str(duration)],
    ):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, result.stderr
        assert "'--duration'" in result.stderr and expected in result.stderr, result.stderr
    assert not (tmp_path / "a.mp4").exists()


def test_animate_renders_the_apis_shortest_clip(image_path, tmp_path):
    out = tmp_path / "short.mp4"
    args = ["animate", str(image_path), "-o", str(out), "--version", "gen-2", "--size", "64x36"]
    result = run_cli(*args, "--duration", str(options.DURATION_MIN), "--intensity", "low", env={})
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0


def test_the_sdk_refuses_duration_0_before_uploading_the_image(server, tmp_path):
    key = server.create_key(f"sdk-{uuid.uuid4().hex[:10]}")
    path = tmp_path / "unique.jpg"
    path.write_bytes(photo_bytes("astronaut", size=200))  # a size no other test uploads
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stored = server.data_dir / "media" / "sources" / f"{digest}.jpg"
    with Client(base_url=server.url, api_key=key) as client:
        with pytest.raises(ValidationError) as info:
            client.generate(image=str(path), duration=0)
        assert info.value.field == "duration"
        assert not stored.exists()
        # The same call with a valid duration does upload it: the check above can fail.
        client.generate(image=str(path), duration=2, version="gen-2")
    assert stored.exists()
