"""A worker whose storage fills up while it stores a finished render hands the job back to
the queue (the attempt not counted, nothing refunded or failed) instead of crashing or
burning the job's attempts; once space is back the job completes. In process, both DBs."""

from __future__ import annotations

import errno
import logging
import shutil
import threading

import pytest

from stillmotion.accounts import service as accounts
from stillmotion.config import Settings
from stillmotion.context import Context
from stillmotion.credits import service as credits
from stillmotion.db import new_id
from stillmotion.generations.models import Generation
from stillmotion.jobs.worker import Worker
from stillmotion.storage import LocalStorage
from tests.support import rows
from tests.support.servers import photo_bytes


class _FillingStorage(LocalStorage):
    """Local storage whose output files meet a full disk (ENOSPC from the copy) while `full`."""

    full = True

    def put_file(self, key, path):
        if self.full and key.startswith("outputs/"):
            real_copy = shutil.copyfile

            def no_space(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            shutil.copyfile = no_space
            try:
                return super().put_file(key, path)
            finally:
                shutil.copyfile = real_copy
        return super().put_file(key, path)


class _NoPause(threading.Event):
    """A stop event whose waits return at once (the worker pauses after a full disk)."""

    def wait(self, timeout=None):
        return self.is_set()


@pytest.fixture
def ctx(db, tmp_path):
    storage = _FillingStorage(tmp_path / "media", public_url="http://test")
    return Context(db=db, settings=Settings(data_dir=tmp_path), storage=storage)


@pytest.mark.slow
def test_a_full_disk_while_storing_hands_the_job_back(ctx, caplog):
    with ctx.db.session(write=True) as session:
        account, _ = accounts.get_or_create_account(session=session, name="full", plan="pro")
        credits.grant(session=session, account_id=account.id, amount=100)
        gen_id = new_id("gen")
        credits.charge(session=session, account_id=account.id, amount=4, generation_id=gen_id)
        ctx.storage.put_bytes("sources/s.jpg", photo_bytes("astronaut", size=128))
        session.add(
            rows.generation(
                account.id, id=gen_id, source_key="sources/s.jpg", width=256, height=144
            )
        )
    worker = Worker(ctx, name="w-full")
    worker.stopping = _NoPause()
    with caplog.at_level(logging.INFO, logger="stillmotion.worker"):
        assert worker.run_once()
    assert "storage is full" in caplog.text
    with ctx.db.session() as session:
        gen = session.get(Generation, gen_id)
        assert (gen.status, gen.stage, gen.attempts, gen.lease_owner) == (
            "processing",
            "queued",
            0,
            None,
        )
        assert session.get(type(account), account.id).credit_balance == 96  # not refunded

    ctx.storage.full = False
    assert worker.run_once()
    with ctx.db.session() as session:
        gen = session.get(Generation, gen_id)
        assert (gen.status, gen.attempts) == ("completed", 1)
        assert ctx.storage.read_bytes(gen.output_key)[4:8] == b"ftyp"
