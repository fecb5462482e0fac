"""The `stillmotion` command: server, workers, keys, credits, and the client and engine tools.

Server commands import the server's modules lazily, so the client commands work with only the
base install (httpx, Typer, Rich).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="stillmotion: a self-hosted image-to-video API server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
credits_app = typer.Typer(help="Grant, adjust and inspect account credits.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")
limits_app = typer.Typer(help="Plans and per-account limits.", no_args_is_help=True)
app.add_typer(limits_app, name="limits")
console = Console()
# soft_wrap: an error is one line however narrow the terminal (or a pipe's 80 columns).
err = Console(stderr=True, soft_wrap=True)


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _settings():
    from stillmotion.config import get_settings

    try:
        return get_settings()
    except Exception as exc:  # pydantic's message names the variable
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _catalogue(settings):
    """The service catalogue (`STILLMOTION_SERVICES`), read once at start; a bad file stops the
    command with one line naming the file, the table and the field (exit 2)."""
    from stillmotion.context import load_catalogue
    from stillmotion.services.catalogue import CatalogueError

    try:
        return load_catalogue(settings)
    except CatalogueError as exc:
        err.print(f"[red]service catalogue error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _migrate(settings) -> None:
    from stillmotion.migrations import upgrade

    upgrade(settings.resolved_database_url)


@contextmanager
def _database(*, migrate: bool = True, error_code: int = 1) -> Iterator[tuple[Any, Any]]:
    """(settings, database) for an operator command: migrated first when `migrate`, disposed
    after; a domain error is printed as `error: …` and exits with `error_code`."""
    from stillmotion import errors
    from stillmotion.db import Database

    settings = _settings()
    if migrate:
        _migrate(settings)
    db = Database(settings.resolved_database_url)
    try:
        yield settings, db
    except errors.StillmotionError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(error_code) from None
    finally:
        db.dispose()


def _first_key(settings) -> str | None:
    """On first start (no account yet), create `default` with credits and return its key."""
    from sqlalchemy import func, select

    from stillmotion.accounts import service as accounts
    from stillmotion.accounts.models import Account
    from stillmotion.credits import service as credits
    from stillmotion.db import Database

    db = Database(settings.resolved_database_url)
    try:
        with db.session(write=True) as session:
            if session.scalar(select(func.count()).select_from(Account)):
                return None
            account, _ = accounts.get_or_create_account(session=session, name="default", plan="pro")
            credits.grant(session=session, account_id=account.id, amount=1000, note="first start")
            _, key = accounts.create_key(session=session, account=account, admin=True)
            return key
    finally:
        db.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Embedded worker threads (default STILLMOTION_WORKERS, 2); "
            "0: none, jobs wait for `stillmotion worker`."
        ),
    ] = None,
) -> None:
    """Run the API (REST, GraphQL, media) with N embedded worker threads."""
    from stillmotion import server
    from stillmotion.accesslog import AccessLog
    from stillmotion.app import create_app

    _setup_logging()
    settings = _settings()
    catalogue = _catalogue(settings)
    _migrate(settings)
    key = _first_key(settings)
    if key:
        # Plain print: a key must never be wrapped or styled into something a paste breaks.
        print(
            "First start: created account 'default' (plan pro, 1000 credits) with this admin "
            f"API key, shown only once:\n\n    {key}\n\n"
            f"Try: curl -H 'Authorization: Bearer {key}' http://{host}:{port}/v1/account\n",
            flush=True,
        )
    api = create_app(settings, workers=workers, catalogue=catalogue)
    server.run(
        AccessLog(api) if settings.access_log else api, host=host, port=port, settings=settings
    )


@app.command()
def worker(
    threads: Annotated[int, typer.Option(help="Render threads in this process.")] = 1,
) -> None:
    """Run a standalone worker (renders and webhook deliveries) for the API's database."""
    from stillmotion.context import Context
    from stillmotion.db import Database
    from stillmotion.jobs.worker import WorkerPool
    from stillmotion.storage import LocalStorage
    from stillmotion.webhooks.delivery import DeliveryLoop

    _setup_logging()
    settings = _settings()
    catalogue = _catalogue(settings)
    _migrate(settings)
    ctx = Context(
        db=Database(settings.resolved_database_url),
        settings=settings,
        storage=LocalStorage(settings.media_dir, public_url=settings.public_url),
        catalogue=catalogue,
    )
    pool = WorkerPool(ctx, threads)
    deliveries = DeliveryLoop(ctx.db, settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    pool.start()
    deliveries.start()
    stop.wait()
    pool.stop()  # first: a running render goes back to the queue at once
    deliveries.stop()
    ctx.providers.close()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    settings = _settings()
    _migrate(settings)
    console.print("database is up to date")


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="Account name; created if needed.")],
    plan: Annotated[
        str | None, typer.Option(help="free, starter, pro or enterprise (new accounts: free).")
    ] = None,
    credits_: Annotated[
        int, typer.Option("--credits", help="Credits to grant the account now.")
    ] = 0,
    admin: Annotated[bool, typer.Option(help="An admin key (may manage accounts).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key (and the account if needed). The key is printed once."""
    from stillmotion.accounts import service as accounts
    from stillmotion.credits import service as credits

    with _database(error_code=2) as (_, db), db.session(write=True) as session:
        acc, _ = accounts.get_or_create_account(session=session, name=account, plan=plan)
        if credits_ > 0:
            credits.grant(session=session, account_id=acc.id, amount=credits_, note="keys create")
        row, key = accounts.create_key(session=session, account=acc, admin=admin)
        account_id = acc.id
    if as_json:
        print(
            json.dumps({"key": key, "account": account, "accountId": account_id, "keyId": row.id})
        )
    else:
        console.print(f"API key for [bold]{account}[/bold] (shown once):\n{key}")


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
) -> None:
    """List keys (their first 8 characters, never the key).

    In a terminal, a table whose ids are never cut; piped, one tab-separated line per key:
    id, prefix, account, role, created, revoked (ISO 8601; empty while the key is active).
    """
    from stillmotion.accounts import service as accounts

    with _database(migrate=False) as (_, db), db.session() as session:
        keys = [
            (k.id, k.prefix, k.account.name, k.role, k.created_at, k.revoked_at)
            for k in accounts.list_keys(session=session, account_name=account)
        ]
    if not console.is_terminal:
        for *text, created, revoked in keys:
            stamps = [t.isoformat(timespec="seconds") if t else "" for t in (created, revoked)]
            print("\t".join([*text, *stamps]))
        return
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    table.add_column("id", no_wrap=True)
    table.add_column("prefix", no_wrap=True)
    table.add_column("account", overflow="fold", min_width=7)
    table.add_column("role", no_wrap=True)
    table.add_column("created", min_width=10)
    table.add_column("revoked", min_width=10)
    for key_id, prefix, name, role, created, revoked in keys:
        table.add_row(
            key_id,
            prefix + "…",
            name,
            role,
            f"{created:%Y-%m-%d %H:%M}",
            f"{revoked:%Y-%m-%d %H:%M}" if revoked else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (key_…) or its 8-character prefix.")],
) -> None:
    """Revoke a key: from now on it is a wrong key."""
    from stillmotion.accounts import service as accounts

    with _database(migrate=False) as (_, db), db.session(write=True) as session:
        row = accounts.revoke_key(session=session, key_id_or_prefix=key_id)
        console.print(f"revoked {row.id} ({row.prefix}…)")


def _credit_change(account: str, amount: int, kind: str, note: str | None) -> None:
    from sqlalchemy import select

    from stillmotion import errors
    from stillmotion.accounts.models import Account
    from stillmotion.credits import service as credits

    with _database() as (settings, db), db.session(write=True) as session:
        acc = session.scalar(select(Account).where(Account.name == account))
        if acc is None:
            raise errors.NotFound(f"no account {account!r}")
        entry = credits.grant(
            session=session,
            account_id=acc.id,
            amount=amount,
            kind=kind,
            note=note,
            settings=settings,
        )
        console.print(
            f"{kind} {entry.amount:+d} for [bold]{account}[/bold]: balance {entry.balance_after}"
        )


@credits_app.command("grant")
def credits_grant(
    account: Annotated[str, typer.Argument(help="Account name.")],
    amount: Annotated[int, typer.Argument(help="Credits to add (> 0).")],
    note: Annotated[str | None, typer.Option(help="Why, kept in the ledger.")] = None,
    topup: Annotated[bool, typer.Option(help="Record it as a paid top-up.")] = False,
) -> None:
    """Add credits to an account (a ledger `grant`, or `topup` with --topup)."""
    _credit_change(account, amount, "topup" if topup else "grant", note)


@credits_app.command("adjust", context_settings={"ignore_unknown_options": True})
def credits_adjust(
    account: Annotated[str, typer.Argument(help="Account name.")],
    amount: Annotated[int, typer.Argument(help="Signed change, e.g. -50.")],
    note: Annotated[str, typer.Option(help="Why, kept in the ledger.")] = "operator adjustment",
) -> None:
    """Correct a balance up or down (never below zero)."""
    _credit_change(account, amount, "adjustment", note)


@credits_app.command("ledger")
def credits_ledger(
    account: Annotated[str, typer.Argument(help="Account name.")],
    limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an account's ledger, newest first, and check that it sums to the balance."""
    from sqlalchemy import select

    from stillmotion import errors
    from stillmotion.accounts.models import Account
    from stillmotion.credits import service as credits

    with _database(migrate=False) as (_, db), db.session() as session:
        acc = session.scalar(select(Account).where(Account.name == account))
        if acc is None:
            raise errors.NotFound(f"no account {account!r}")
        entries, _ = credits.ledger_page(session=session, account_id=acc.id, limit=limit)
        total = credits.ledger_sum(session=session, account_id=acc.id)
        balance = acc.credit_balance
    if as_json:
        print(json.dumps({"balance": balance, "ledgerSum": total, "entries": entries}))
        return
    table = Table("id", "when", "kind", "amount", "balance", "generation", "note")
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["createdAt"],
            e["kind"],
            f"{e['amount']:+d}",
            str(e["balanceAfter"]),
            e["generationId"] or "",
            e["note"] or "",
        )
    console.print(table)
    mark = "[green]matches[/green]" if total == balance else "[red]DOES NOT MATCH[/red]"
    console.print(f"balance {balance}; ledger sum {total} {mark}")


@limits_app.command("set")
def limits_set(
    account: Annotated[str, typer.Argument(help="Account name.")],
    plan: Annotated[str | None, typer.Option(help="free, starter, pro or enterprise.")] = None,
    per_minute: Annotated[int | None, typer.Option(help="Creates per minute.")] = None,
    concurrent: Annotated[int | None, typer.Option(help="Jobs running at once.")] = None,
    daily: Annotated[int | None, typer.Option(help="Creates per UTC day.")] = None,
    low_credit_threshold: Annotated[
        int | None, typer.Option(help="Balance under which account.credits_low is sent.")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Clear the overrides first.")] = False,
) -> None:
    """Change an account's plan or override its plan's limits (enterprise accounts)."""
    from stillmotion.accounts import plans

    with _database() as (_, db), db.session(write=True) as session:
        acc = plans.set_overrides(
            session=session,
            account_name=account,
            plan=plan,
            per_minute=per_minute,
            concurrent=concurrent,
            daily=daily,
            low_credit_threshold=low_credit_threshold,
            reset=reset,
        )
        now = plans.limits_for(acc)
        console.print(
            f"[bold]{account}[/bold] ({acc.plan}): {now.per_minute}/min, "
            f"{now.concurrent} at once, {now.daily or 'unlimited'}/day"
        )


def _register_tools() -> None:
    """The client commands (base install) and the engine's `animate` (server extra)."""
    try:
        from stillmotion.client.cli import account, generate, status
    except ImportError:  # pragma: no cover - the client ships with the base install
        pass
    else:
        app.command("generate")(generate)
        app.command("status")(status)
        app.command("account")(account)
    try:
        from stillmotion.engine.cli import animate
    except ImportError:
        pass  # the engine needs the `server` extra (NumPy, OpenCV, PyAV)
    else:
        app.command("animate")(animate)


_register_tools()


def main() -> None:
    app()
