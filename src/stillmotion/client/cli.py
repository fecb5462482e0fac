"""The client half of the `stillmotion` CLI: generate, status, account.

Plain Typer command functions; the main app registers them:

    app.command("generate")(generate)
    app.command("status")(status)
    app.command("account")(account)

Base URL and key come from `--url` / `--key` or `STILLMOTION_URL` / `STILLMOTION_API_KEY`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

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
_errors = Console(stderr=True)


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
    try:
        with Client(base_url=url, api_key=key) as client:
            yield client
    except WaitTimeout as exc:
        _errors.print(f"[yellow]{exc.message}[/]")
        raise typer.Exit(2) from None
    except StillmotionError as exc:
        _errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def generate(
    image: Annotated[str, typer.Argument(help="A local image file, or an image URL.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What should move, and how.")] = "",
    duration: Annotated[int | None, typer.Option(help="Seconds, 2 … 10.")] = None,
    ratio: Annotated[str | None, typer.Option(help="16:9, 9:16 or 1:1.")] = None,
    version: Annotated[str | None, typer.Option(help="gen-2, gen-3 or gen-4.")] = None,
    motion: Annotated[str | None, typer.Option(help="Motion intensity: low, medium, high.")] = None,
    seed: Annotated[int | None, typer.Option(help="Same seed, same frames.")] = None,
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
        "motion_intensity": motion,
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
            _console.print(f"Saved [bold]{output}[/]")
        else:
            _console.print(f"Video: {gen.url}")


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
    table = Table(show_header=False, box=None)
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
    for name, value in rows:
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%d %H:%M:%S UTC")
        if value is not None:
            table.add_row(f"[bold]{name}[/]", str(value))
    _console.print(table)


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
    table = Table(show_header=False, box=None)
    table.add_row("[bold]account[/]", acct.id)
    table.add_row("[bold]plan[/]", str(acct.plan))
    table.add_row("[bold]credits[/]", str(acct.credit_balance))
    if acct.low_credit_threshold is not None:
        table.add_row("[bold]low-credit alert[/]", f"below {acct.low_credit_threshold}")
    for name, value in {**acct.limits}.items():
        table.add_row(f"[bold]limit {name}[/]", "unlimited" if value is None else str(value))
    for name, value in {**acct.usage}.items():
        table.add_row(f"[bold]usage {name}[/]", str(value))
    _console.print(table)
