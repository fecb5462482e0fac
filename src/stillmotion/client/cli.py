"""The client half of the `stillmotion` CLI: generate, status, account.

Plain Typer command functions; the main app registers them:

    app.command("generate")(generate)
    app.command("status")(status)
    app.command("account")(account)

Base URL and key come from `--url` / `--key` or `STILLMOTION_URL` / `STILLMOTION_API_KEY`.
Option ranges come from `stillmotion.options`, the API's own, so a value the API refuses is
refused here before anything is uploaded. Output is plain `name  value` lines, never cut at
the terminal's width, and errors are one line each, so both survive a pipe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from stillmotion import options as limits
from stillmotion.client import Client, Generation, StillmotionError, WaitTimeout

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="STILLMOTION_URL", help="Server base URL.", show_default=False),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="STILLMOTION_API_KEY", help="API key.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON object.")]

_console = Console()
# soft_wrap: an error is one line however narrow the terminal (or a pipe's 80 columns).
_errors = Console(stderr=True, soft_wrap=True, highlight=False)

INTENSITY_HELP = "Motion intensity (the API's motionIntensity)."


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print `error: message` on one line of stderr; raise the returned Exit."""
    _errors.print(Text.assemble(("error:", "red"), " ", message))
    return typer.Exit(code)


def intensity_option(intensity: str | None, old_name: str, old_value: str | None) -> str | None:
    """`--intensity`, also accepted under its old, hidden name."""
    if intensity is not None and old_value is not None and intensity != old_value:
        raise typer.BadParameter(
            f"give it once: {old_name} is the old name of --intensity", param_hint="--intensity"
        )
    return intensity if intensity is not None else old_value


def parse_camera(value: str | None) -> dict[str, Any] | None:
    """`zoom=3,pan=-2,static` → `{"zoom": 3, "pan": -2, "static": True}`."""
    if not value:
        return None
    camera: dict[str, Any] = {}
    for part in value.split(","):
        name, sep, amount = part.strip().partition("=")
        if not name:
            continue
        if not sep:
            camera[name] = True
            continue
        try:
            number = float(amount)
        except ValueError:
            raise typer.BadParameter(
                f"{name}={amount!r} is not a number", param_hint="--camera"
            ) from None
        camera[name] = int(number) if number.is_integer() else number
    return camera


@contextmanager
def _client(url: str | None, key: str | None) -> Iterator[Client]:
    """A client for a server that answers, or a one-line error saying what to do."""
    if not key:
        raise fail("no API key: set STILLMOTION_API_KEY or pass --key", code=2)
    try:
        with Client(base_url=url, api_key=key) as client:
            _check_reachable(client.base_url)
            yield client
    except WaitTimeout as exc:
        _errors.print(Text(exc.message, style="yellow"))
        raise typer.Exit(2) from None
    except StillmotionError as exc:
        raise fail(str(exc)) from None


def _check_reachable(base_url: str) -> None:
    """One unretried look at the server first: with none there, say so now rather than after
    the SDK's retries, which are for a server that is there but busy."""
    try:
        httpx.get(f"{base_url}/healthz", timeout=10)
    except httpx.UnsupportedProtocol:
        raise fail(f"--url must start with http:// or https://, got {base_url!r}", code=2) from None
    except httpx.TransportError as exc:
        reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__
        raise fail(
            f"cannot connect to {base_url} ({reason}): is a server running at {base_url}? "
            "Start one with `stillmotion serve`, or pass --url (STILLMOTION_URL)."
        ) from None


def print_fields(rows: list[tuple[str, Any]]) -> None:
    """`name  value` lines, values whole: no table cuts a URL or an id at the width."""
    shown = [(name, value) for name, value in rows if value is not None]
    width = max((len(name) for name, _ in shown), default=0) + 2
    for name, value in shown:
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%d %H:%M:%S UTC")
        _console.print(Text.assemble((name.ljust(width), "bold"), str(value)), soft_wrap=True)


def generate(
    image: Annotated[str, typer.Argument(help="A local image file, or an image URL.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What should move, and how.")] = "",
    duration: Annotated[
        int | None,
        typer.Option(
            min=limits.DURATION_MIN,
            max=limits.DURATION_MAX,
            help=f"Seconds (default {limits.DURATION_DEFAULT}).",
        ),
    ] = None,
    ratio: Annotated[limits.AspectRatio | None, typer.Option(help="Aspect ratio.")] = None,
    version: Annotated[limits.Version | None, typer.Option(help="Model version.")] = None,
    intensity: Annotated[limits.MotionIntensity | None, typer.Option(help=INTENSITY_HELP)] = None,
    motion: Annotated[
        limits.MotionIntensity | None, typer.Option("--motion", hidden=True)
    ] = None,  # the old name of --intensity
    seed: Annotated[
        int | None, typer.Option(min=0, max=limits.SEED_MAX, help="Same seed, same frames.")
    ] = None,
    camera: Annotated[
        str | None, typer.Option(help="Camera move, e.g. zoom=3,pan=-2 (each −10 … 10).")
    ] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Make the clip loop.")] = False,
    webhook: Annotated[str | None, typer.Option(help="URL to notify when done.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait and show progress.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Save the MP4 here (implies --wait).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 900.0,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Animate an image on the server (a local file is uploaded first).

    With --wait or -o, follow it with a live progress bar and download the MP4.
    """
    source: str | Path = image
    if not image.startswith(("http://", "https://", "data:", "upload://")):
        source = Path(image)
        if not source.is_file():
            raise typer.BadParameter(f"no such file: {image}", param_hint="IMAGE")
    options: dict[str, Any] = {
        "duration": duration,
        "aspect_ratio": ratio,
        "version": version,
        "motion_intensity": intensity_option(intensity, "--motion", motion),
        "seed": seed,
        "camera": parse_camera(camera),
        "loop": loop or None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    with _client(url, key) as client:
        if isinstance(source, Path):
            with _console.status(f"Uploading {source.name}…"):
                upload = client.upload(source)
            gen = client.generate(image=upload.uri, prompt=prompt, webhook_url=webhook, **options)
        else:
            gen = client.generate(image_url=source, prompt=prompt, webhook_url=webhook, **options)
        _console.print(f"Created [bold]{gen.id}[/] ({gen.credit_cost} credits)")
        if not (wait or output):
            _console.print(f"Follow it with: stillmotion status {gen.id}")
            return
        gen = _follow(client, gen, timeout=timeout)
        if output is not None:
            with _console.status(f"Downloading to {output}…"):
                client.download(gen, output)
            _console.print(Text.assemble("Saved ", (str(output), "bold")), soft_wrap=True)
        else:
            _console.print(Text(f"Video: {gen.url}"), soft_wrap=True)


def _follow(client: Client, gen: Generation, *, timeout: float) -> Generation:
    """`wait` with a live progress bar showing the stage."""
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_console) as progress:
        task = progress.add_task(gen.stage or "queued", total=100)

        def show(g: Generation) -> None:
            stage = g.stage or g.status
            if g.queue_position:
                stage = f"{stage} (#{g.queue_position})"
            progress.update(task, completed=round((g.progress or 0.0) * 100, 1), description=stage)

        try:
            done = client.wait(gen, timeout=timeout, on_progress=show)
        except StillmotionError:
            progress.stop()
            raise
        progress.update(task, completed=100, description=done.stage or "done")
    return done


def status(
    generation_id: Annotated[str, typer.Argument(metavar="ID", help="A generation id.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Show a generation: status, stage, progress, cost and the video URL once done."""
    with _client(url, key) as client:
        gen = client.get(generation_id)
    if as_json:
        _console.print_json(json.dumps(gen.to_dict()))
        return
    rows: list[tuple[str, Any]] = [
        ("id", gen.id),
        ("status", gen.status),
        ("stage", gen.stage),
        ("progress", f"{(gen.progress or 0) * 100:.0f}%"),
        ("queue position", gen.queue_position),
        ("credits", gen.credit_cost),
        ("created", gen.created_at),
        ("completed", gen.completed_at),
        ("url", gen.url),
    ]
    if gen.metadata is not None:
        m = gen.metadata
        rows.append(("video", f"{m.width}x{m.height} {m.duration}s {m.fps}fps {m.version}"))
    if gen.error is not None:
        rows.append(("error", f"{gen.error.code}: {gen.error.message}"))
    print_fields(rows)


def account(
    as_json: JsonOption = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Show your plan, credit balance, limits and today's usage."""
    with _client(url, key) as client:
        acct = client.account()
    if as_json:
        _console.print_json(json.dumps(acct.to_dict()))
        return
    rows: list[tuple[str, Any]] = [
        ("account", acct.id),
        ("plan", acct.plan),
        ("credits", acct.credit_balance),
    ]
    if acct.low_credit_threshold is not None:
        rows.append(("low-credit alert", f"below {acct.low_credit_threshold}"))
    for name, value in {**acct.limits}.items():
        rows.append((f"limit {name}", "unlimited" if value is None else value))
    for name, value in {**acct.usage}.items():
        rows.append((f"usage {name}", value))
    print_fields(rows)
