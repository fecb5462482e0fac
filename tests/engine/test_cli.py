"""`stillmotion animate`, driven through Typer's CliRunner on a tiny app of its own."""

from __future__ import annotations

import subprocess

import pytest
import typer
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from stillmotion.engine.cli import animate, parse_camera


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("animate")(animate)
    app.command("noop", hidden=True)(lambda: None)  # keep `animate` a named subcommand
    return app


def test_animate_writes_a_clip_and_poster(tmp_path, app):
    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(source)
    out, poster = tmp_path / "cat.mp4", tmp_path / "cat.jpg"
    result = CliRunner().invoke(
        app,
        ["animate", str(source), "-o", str(out), "--camera", "zoom=3,pan=-2", "--duration", "2",
         "--size", "192x108", "--seed", "4", "--poster", str(poster)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "192x108" in result.output and "48 frames" in result.output
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
         "-of", "csv=p=0", str(out)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert frames == "48"
    assert poster.stat().st_size > 1000


def test_animate_reports_bad_input_without_a_traceback(tmp_path, app):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = CliRunner().invoke(app, ["animate", str(bad), "-o", str(tmp_path / "x.mp4")])
    assert result.exit_code == 1
    assert "not a readable image" in result.output
    result = CliRunner().invoke(
        app, ["animate", str(bad), "-o", str(tmp_path / "x.mp4"), "--camera", "warp=2"]
    )
    assert result.exit_code != 0
    assert not (tmp_path / "x.mp4").exists()


def test_parse_camera():
    assert parse_camera("zoom=3, pan=-2") == {"zoom": 3.0, "pan": -2.0}
    assert parse_camera("static") == {"static": True}
    with pytest.raises(typer.BadParameter):
        parse_camera("zoom=fast")


def test_preset_names_a_camera_move(tmp_path, app):
    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(source)
    out = tmp_path / "orbit.mp4"
    args = ["animate", str(source), "-o", str(out), "--preset", "orbit", "--duration", "2",
            "--size", "96x54"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0
    result = CliRunner().invoke(app, [*args[:4], "--preset", "barrel-roll"])
    assert result.exit_code != 0
    assert "preset must be one of" in result.output
