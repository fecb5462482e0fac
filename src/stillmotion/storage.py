"""Where source images, MP4s and posters live. Keys are relative paths like `outputs/gen_x.mp4`.

`LocalStorage` keeps them under a folder and the API serves them at `/media/KEY` with range
requests. The interface is small so an S3-compatible store can stand in for it.

A write that finds the disk (or the quota) full raises `errors.StorageFull` (503 with
`Retry-After`): the condition is the server's and passes, so the caller is told to retry.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from stillmotion import errors

log = logging.getLogger("stillmotion.storage")

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")
_FULL = {errno.ENOSPC, errno.EDQUOT}
FULL_RETRY_AFTER = 60
"""Seconds a client is asked to wait when storage is full (an operator has to free space)."""


@contextmanager
def _full_is_unavailable(key: str) -> Iterator[None]:
    """Turn "no space left" / "quota exceeded" while writing `key` into `StorageFull`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        log.error("storage is full: could not write %s (%s)", key, os.strerror(exc.errno))
        raise errors.StorageFull(retry_after=FULL_RETRY_AFTER) from None


class Storage(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def url(self, key: str) -> str: ...
    def check(self) -> None: ...


class LocalStorage:
    """Files under `root`; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path, *, public_url: str) -> None:
        self.root = Path(root).resolve()
        self.public_url = public_url.rstrip("/")
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        with _full_is_unavailable(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def put_file(self, key: str, path: Path) -> None:
        target = self.path(key)
        with _full_is_unavailable(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return f"{self.public_url}/media/{key}"

    def check(self) -> None:
        """Raise when the folder cannot be written (for /readyz)."""
        probe = self.root / ".readyz"
        probe.write_bytes(b"ok")
        probe.unlink()
