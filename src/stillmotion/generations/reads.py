"""Reading one generation for its owner: the full view, and the polling fast path.

Polling is the hottest request of the API. A started or finished job's view needs nothing but
its row, which on SQLite is read without an ORM session (`RowReader`); a waiting job's
`stage` and `queuePosition` are counts over the queue, and a poller gets them at most
`context.QUEUED_VIEW_SECONDS` old (`ctx.caches.waiting_views`). Anything the row itself says
(it started, was cancelled) is never stale: the row is read first, every time.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stillmotion import errors
from stillmotion.context import Context
from stillmotion.generations import quota, service
from stillmotion.generations.models import Generation
from stillmotion.generations.views import to_api


def view(ctx: Context, generation_id: str, principal) -> dict[str, Any]:
    """The caller's generation as API.md §3 shows it (404 for another account's)."""
    with ctx.db.session() as session:
        gen = service.get(session=session, principal=principal, generation_id=generation_id)
        return to_api(gen, session=session, storage=ctx.storage)


class RowReader:
    """One generation row by id, without an ORM session or Core statement execution.

    SQLite only: a pooled DBAPI connection (autocommit, so a lone SELECT needs no BEGIN), the
    statement text made once, and SQLAlchemy's own result processors per column, so values
    come back exactly as the ORM would give them (aware datetimes, JSON).
    """

    def __init__(self, db) -> None:
        table = Generation.__table__
        dialect = db.engine.dialect
        quote = dialect.identifier_preparer.quote
        self.db = db
        self.sql = (
            f"SELECT {', '.join(quote(c.name) for c in table.columns)} "
            f"FROM {quote(table.name)} WHERE {quote('id')} = ?"
        )
        self.columns = [
            (c.name, c.type._cached_result_processor(dialect, None)) for c in table.columns
        ]
        self.connection = None

    def get(self, gen_id: str) -> SimpleNamespace | None:
        """Call it from the event loop only: it keeps one connection for that thread."""
        if self.connection is None:
            # Out of the pool for good: a pool checkout costs as much as the query.
            fairy = self.db.engine.raw_connection()
            fairy.detach()
            self.connection = fairy.dbapi_connection
        values = self.connection.execute(self.sql, (gen_id,)).fetchone()
        if values is None:
            return None
        return SimpleNamespace(
            **{
                name: process(value) if process else value
                for (name, process), value in zip(self.columns, values, strict=True)
            }
        )


def poll_view(ctx: Context, generation_id: str, principal) -> dict[str, Any]:
    """`view`, for polling (run it through `Database.run`: on the event loop for SQLite)."""
    errors.check_text(generation_id, field="id")
    if ctx.db.is_sqlite:
        if ctx.caches.row_reader is None:
            ctx.caches.row_reader = RowReader(ctx.db)
        row = ctx.caches.row_reader.get(generation_id)
    else:
        with ctx.db.session() as session:
            row = session.get(Generation, generation_id)
            if row is not None:
                session.expunge(row)
    if row is None or row.account_id != principal.account_id:
        raise errors.NotFound(f"no generation {errors.quote(generation_id)}")
    if quota.is_waiting(row):
        cache = ctx.caches.waiting_views
        hit = cache.get(generation_id)
        if hit is not None:
            return hit
        payload = view(ctx, generation_id, principal)
        cache.put(generation_id, payload)
        return payload
    return to_api(row, session=None, storage=ctx.storage)
