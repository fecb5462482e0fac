"""The client CLI commands (generate, status, account) against a real running server."""

from __future__ import annotations

import re
import uuid

import av
import pytest
import typer
from typer.testing import CliRunner

from stillmotion.client import Client
from stillmotion.client.cli import account, generate, parse_camera, status


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("generate")(generate)
    app.command("status")(status)
    app.command("account")(account)
    return app


@pytest.fixture
def env(server) -> dict[str, str]:
    key = server.create_key(f"cli-{uuid.uuid4().hex[:10]}", credits=500)
    return {"STILLMOTION_URL": server.url, "STILLMOTION_API_KEY": key, "COLUMNS": "120"}


def test_generate_turns_a_local_photo_into_an_mp4(app, env, image_path, tmp_path):
    out = tmp_path / "clip.mp4"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(image_path),
            "--prompt",
            "slow push in",
            "--duration",
            "2",
            "--version",
            "gen-2",
            "--ratio",
            "1:1",
            "--camera",
            "zoom=3,pan=-2",
            "--wait",
            "-o",
            str(out),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"\b100%", result.output), result.output
    gen_id = re.search(r"Created (gen_\w+)", result.output).group(1)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (960, 960)
        assert sum(1 for _ in container.decode(stream)) == 48
    with Client(base_url=env["STILLMOTION_URL"], api_key=env["STILLMOTION_API_KEY"]) as client:
        gen = client.get(gen_id)
    assert gen.status == "completed" and gen.prompt == "slow push in"

    shown = CliRunner().invoke(app, ["status", gen_id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "completed" in shown.output and "100%" in shown.output and gen.url in shown.output

    acct = CliRunner().invoke(app, ["account"], env=env)
    assert acct.exit_code == 0, acct.output
    assert re.search(r"credits\s+496\b", acct.output), acct.output


def test_generate_without_wait_prints_the_id_and_flags_override_env(app, env, image_url, server):
    flags = ["--url", env["STILLMOTION_URL"], "--key", env["STILLMOTION_API_KEY"]]
    result = CliRunner().invoke(
        app,
        ["generate", image_url, "--duration", "2", "--version", "gen-2", *flags],
        env={"STILLMOTION_URL": "http://127.0.0.1:9", "STILLMOTION_API_KEY": "wrong"},
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"stillmotion status gen_\w+", result.output)


def test_errors_exit_non_zero_with_the_code(app, env, tmp_path):
    bad = dict(env, STILLMOTION_API_KEY="sm_" + "y" * 40)
    result = CliRunner().invoke(app, ["account"], env=bad)
    assert result.exit_code == 1 and "UNAUTHENTICATED" in result.output
    missing = CliRunner().invoke(app, ["generate", str(tmp_path / "nope.jpg")], env=env)
    assert missing.exit_code == 2 and "no such file" in missing.output
    unknown = CliRunner().invoke(app, ["status", "gen_nope"], env=env)
    assert unknown.exit_code == 1 and "NOT_FOUND" in unknown.output


def test_parse_camera():
    assert parse_camera("zoom=3,pan=-2.5,static") == {"zoom": 3, "pan": -2.5, "static": True}
    assert parse_camera(None) is None
    with pytest.raises(typer.BadParameter):
        parse_camera("zoom=lots")


def test_a_failed_generation_exits_1_with_its_code(app, make_server, image_url):
    srv = make_server("sqlite", env={"STILLMOTION_RENDER_TIMEOUT_SECONDS": "0.2"}).start()
    env = {"STILLMOTION_URL": srv.url, "STILLMOTION_API_KEY": srv.create_key("cli-fail")}
    result = CliRunner().invoke(
        app, ["generate", image_url, "--duration", "10", "--version", "gen-3", "--wait"], env=env
    )
    assert result.exit_code == 1, result.output
    assert "TIMEOUT" in result.output
    gen_id = re.search(r"Created (gen_\w+)", result.output).group(1)
    shown = CliRunner().invoke(app, ["status", gen_id], env=env)
    assert "failed" in shown.output and "TIMEOUT" in shown.output
