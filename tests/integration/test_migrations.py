"""The migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import stillmotion.models  # noqa: F401  (every table on Base.metadata)
from stillmotion.db import Base
from stillmotion.migrations import upgrade


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_models(backend, request, tmp_path):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database("m_" + uuid.uuid4().hex[:10])
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], "the models and the migrations differ; add a migration:\n" + "\n".join(
        map(str, diff)
    )
