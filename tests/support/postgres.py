"""A throw-away PostgreSQL cluster from the machine's server binaries, on a Unix socket."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


# Debian's `postgresql` package puts the server binaries here, one folder per major version,
# and only wrappers (pg_ctlcluster, …) on PATH.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "run `make system-deps` (or `sudo apt-get install postgresql`)"


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in folder.name.split("."))


def _bin(name: str) -> str:
    """A PostgreSQL server binary: from PATH, else the newest version under DEBIAN_ROOT."""
    found = shutil.which(name)
    if found:
        return found
    for version in sorted(DEBIAN_ROOT.glob("*"), key=_version, reverse=True):
        if (version / "bin" / name).exists():
            return str(version / "bin" / name)
    raise RuntimeError(
        f"PostgreSQL's {name} is neither on PATH nor under {DEBIAN_ROOT}/<version>/bin: "
        f"{INSTALL_HINT}"
    )


class PostgresCluster:
    def __init__(self) -> None:
        owner = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; the Debian package creates this user.
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    f"running as root, the test cluster needs a `postgres` user: {INSTALL_HINT}"
                ) from None
        self.root = Path(tempfile.mkdtemp(prefix="stillmotion-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir()
        if owner is not None:
            for p in (self.root, self.socket_dir):
                os.chown(p, owner.pw_uid, owner.pw_gid)

    def start(self) -> str:
        subprocess.run(
            _as_postgres(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        opts = (
            f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        subprocess.run(
            _as_postgres(
                [
                    _bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-w",
                    "-l",
                    str(self.root / "log"),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self.url_for("postgres")
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host={self.socket_dir} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
