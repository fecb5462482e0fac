"""A fresh Debian machine after `make system-deps`: the test cluster finds PostgreSQL where the
Debian package puts it (`/usr/lib/postgresql/<version>/bin`, not on PATH), newest first."""

from __future__ import annotations

import os
import stat

import pytest

from tests.support import postgres


def _fake_binary(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_debian_layout_is_found_off_path_newest_version_first(tmp_path, monkeypatch):
    for version in ("9.6", "15", "16"):
        _fake_binary(tmp_path / "lib" / version / "bin" / "initdb")
    (tmp_path / "lib" / "17").mkdir()  # a version with its client package only: no initdb
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path / "lib")
    assert postgres._bin("initdb") == str(tmp_path / "lib" / "16" / "bin" / "initdb")


def test_path_wins_over_the_debian_layout(tmp_path, monkeypatch):
    _fake_binary(tmp_path / "lib" / "16" / "bin" / "pg_ctl")
    _fake_binary(tmp_path / "path" / "pg_ctl")
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path / "lib")
    assert postgres._bin("pg_ctl") == str(tmp_path / "path" / "pg_ctl")


def test_missing_binaries_say_how_to_install_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path / "none")
    with pytest.raises(RuntimeError, match=r"make system-deps.*postgresql"):
        postgres._bin("initdb")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the postgres user")
def test_missing_postgres_user_as_root_says_how_to_get_it(monkeypatch):
    def no_user(name):
        raise KeyError(name)

    monkeypatch.setattr(postgres.pwd, "getpwnam", no_user)
    with pytest.raises(RuntimeError, match=r"postgres.*user.*make system-deps"):
        postgres.PostgresCluster()
