"""`stillmotion animate`: render a clip from a local image, with a progress bar.

Registered by the main CLI as `app.command("animate")(animate)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from stillmotion import options as limits
from stillmotion.engine.errors import EngineError
from stillmotion.engine.image import open_image
from stillmotion.engine.motion import AXES, MOVES
from stillmotion.engine.render import ASPECT_RATIOS, VERSIONS, RenderSpec, render


def parse_camera(text: str) -> dict:
    """`zoom=3,pan=-2,static` -> {"zoom": 3.0, "pan": -2.0, "static": True}."""
    camera: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if name == "static" and not sep:
            camera["static"] = True
            continue
        if name not in AXES and name != "static":
            raise typer.BadParameter(f"unknown camera axis {name!r}; known: {', '.join(AXES)}")
        if name == "static":
            camera["static"] = value.strip().lower() in ("1", "true", "yes")
            continue
        try:
            camera[name] = float(value)
        except ValueError:
            raise typer.BadParameter(f"camera {name} needs a number, got {value!r}") from None
    return camera


def _parse_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    w, _sep, h = text.lower().partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        raise typer.BadParameter("size is WIDTHxHEIGHT, e.g. 640x360") from None


def animate(
    image: Annotated[Path, typer.Argument(help="JPEG, PNG or WebP to animate.", exists=True)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the MP4.")],
    prompt: Annotated[str, typer.Option(help="Camera language, e.g. 'slow push in'.")] = "",
    camera: Annotated[
        str | None,
        typer.Option(help="Camera axes, e.g. 'zoom=3,pan=-2' (each -10 … 10), or 'static'."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help=f"A named camera move: {', '.join(sorted(MOVES))}."),
    ] = None,
    version: Annotated[str, typer.Option(help="gen-2, gen-3 or gen-4.")] = "gen-3",
    ratio: Annotated[str, typer.Option(help="16:9, 9:16 or 1:1.")] = "16:9",
    duration: Annotated[
        int, typer.Option(min=limits.DURATION_MIN, max=limits.DURATION_MAX, help="Seconds.")
    ] = limits.DURATION_DEFAULT,
    seed: Annotated[int, typer.Option(min=0, max=limits.SEED_MAX)] = 0,
    intensity: Annotated[
        limits.MotionIntensity, typer.Option(help="Motion intensity (the API's motionIntensity).")
    ] = "medium",
    loop: Annotated[bool, typer.Option(help="Make the last frame flow into the first.")] = False,
    size: Annotated[
        str | None, typer.Option(help="Override the output size, e.g. 640x360 (previews).")
    ] = None,
    poster: Annotated[Path | None, typer.Option(help="Also write a JPEG poster here.")] = None,
) -> None:
    """Animate IMAGE into an MP4 clip on this machine (no server needed)."""
    if version not in VERSIONS:
        raise typer.BadParameter(f"version must be one of {', '.join(VERSIONS)}")
    if ratio not in ASPECT_RATIOS:
        raise typer.BadParameter(f"ratio must be one of {', '.join(ASPECT_RATIOS)}")
    width, height = _parse_size(size)
    if preset is not None and preset not in MOVES:
        raise typer.BadParameter(f"preset must be one of {', '.join(sorted(MOVES))}")
    cam = parse_camera(camera) if camera else None
    if preset is not None:
        # a preset is a camera object; explicit --camera axes adjust it
        cam = {**MOVES[preset], **(cam or {})} if preset != "static" else {"static": True}
    console = Console(stderr=True, soft_wrap=True)  # an error stays one line
    try:
        picture = open_image(image.read_bytes())
        spec = RenderSpec(
            version=version,
            aspect_ratio=ratio,
            duration=duration,
            prompt=prompt,
            motion_intensity=intensity,
            seed=seed,
            camera=cam,
            loop=loop,
            width=width,
            height=height,
        )
        with Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("rendering", total=1.0)

            def on_progress(fraction: float, stage: str) -> None:
                progress.update(task, completed=fraction, description=stage)

            result = render(picture, spec, output, poster_path=poster, on_progress=on_progress)
    except (EngineError, ValueError) as exc:
        console.print(Text.assemble(("error:", "red"), f" {exc}"))
        raise typer.Exit(1) from None
    moves = ", ".join(result.plan["moves"]) or result.plan["source"]
    console.print(
        f"wrote {output} — {result.width}x{result.height}, {result.frames} frames, "
        f"{result.bytes / 1e6:.1f} MB ({moves})"
    )
