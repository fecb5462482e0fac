"""Session-wide real parts: a PostgreSQL cluster, an image server, and stillmotion servers.

`server` is a `stillmotion serve` subprocess on SQLite; `backend_server` is parametrized over
SQLite and PostgreSQL, so a test that takes it runs against both databases.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.postgres import PostgresCluster
from tests.support.servers import ImageServer, StillmotionServer, photo_bytes


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def image_server():
    srv = ImageServer()
    yield srv
    srv.close()


@pytest.fixture
def image_url(image_server) -> str:
    return image_server.url("/astronaut-small.jpg")


@pytest.fixture
def image_path(tmp_path) -> Path:
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(photo_bytes("astronaut", size=256))
    return path


def _database_url(backend: str, tmp: Path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'stillmotion.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("sm_" + uuid.uuid4().hex[:12])


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A migrated database of each kind, for domain rules tested in process."""
    from stillmotion.db import Database
    from stillmotion.migrations import upgrade

    url = _database_url(request.param, tmp_path, request)
    upgrade(url)
    database = Database(url)
    database.backend = request.param
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    srv = StillmotionServer(
        database_url=f"sqlite:///{tmp / 'stillmotion.db'}", data_dir=tmp, workers=2
    ).start()
    yield srv
    srv.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend_server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    srv = StillmotionServer(
        database_url=_database_url(request.param, tmp, request), data_dir=tmp, workers=2
    ).start()
    srv.backend = request.param
    yield srv
    srv.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def idle_server(request, tmp_path_factory):
    """A server per test module and database with no workers: jobs stay queued, so requests
    can race without rendering competing for the CPU (a test starts workers when it wants)."""
    tmp = tmp_path_factory.mktemp(f"idle-{request.param}")
    srv = StillmotionServer(
        database_url=_database_url(request.param, tmp, request), data_dir=tmp, workers=0
    ).start()
    srv.backend = request.param
    yield srv
    srv.close()


@pytest.fixture
def make_server(tmp_path, request):
    """A factory for servers a test may stop, restart or kill: `make_server(backend, **kw)`."""
    started: list[StillmotionServer] = []

    def make(backend: str = "sqlite", **kw) -> StillmotionServer:
        data_dir = tmp_path / f"{backend}-{len(started)}"
        data_dir.mkdir()
        srv = StillmotionServer(
            database_url=_database_url(backend, data_dir, request), data_dir=data_dir, **kw
        )
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.close()
