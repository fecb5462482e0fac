"""Database engine, sessions and the declarative base. Migrations live in `migrations/` (Alembic).

SQLite runs in WAL mode with a busy timeout, so the API and worker threads (and a standalone
`stillmotion worker` process) share one file; writes take the lock at `BEGIN` (IMMEDIATE) so
read-then-write transactions serialise instead of failing with "database is locked" on upgrade.
PostgreSQL needs nothing special: row locks and `SKIP LOCKED` do the work.
"""

from __future__ import annotations

import functools
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


_ALPHABET = string.digits + string.ascii_letters


def new_id(prefix: str) -> str:
    """`prefix_` + 9 base62 characters of milliseconds (sortable) + 12 random ones."""
    ms = int(time.time() * 1000)
    head = ""
    for _ in range(9):
        ms, r = divmod(ms, 62)
        head = _ALPHABET[r] + head
    bits = secrets.randbits(72)  # one read of the system's randomness, not twelve
    tail = ""
    for _ in range(12):
        bits, r = divmod(bits, 62)
        tail += _ALPHABET[r]
    return f"{prefix}_{head}{tail}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


class Database:
    """The engine and session factories for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self.write_sessionmaker = sessionmaker(writer, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process queue for it here: SQLite's
        # own busy handler sleeps with growing back-off, so under load a waiting thread could
        # lose to newcomers for a second or more (other processes still meet that handler).
        self._write_lock = threading.RLock() if self.is_sqlite else nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn`, short database work, from async code: on the event loop for SQLite (a
        local transaction costs a few hundred microseconds of CPU, about what a thread hop
        costs; this process's writers queue on `_write_lock`), in the thread pool for
        PostgreSQL, which waits on the network."""
        if self.is_sqlite:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        `write=True` for a transaction that reads and then writes: on SQLite it takes the write
        lock at BEGIN, so two such transactions queue instead of one failing on lock upgrade.
        """
        if not write:
            with self.sessionmaker() as session, session.begin():
                yield session
            return
        with self._write_lock, self.write_sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
