"""The run lock (batch/store/runlock.py) on SQLite (flock beside the database) and PostgreSQL (session
advisory lock on a dedicated connection): one holder at a time, the contender told who holds it and
since when, released by the kernel or the server when the holder dies (SIGKILL), and a status check
that never takes it."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from batch.store.db import make_engine, upgrade
from batch.store.runlock import LockHeld, RunLock, lock_file_for, lock_is_held, read_holder


@pytest.fixture
def lock_engine(db_url):
    upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def test_one_holder_at_a_time_and_the_contender_is_told_since_when(lock_engine):
    from sqlalchemy.orm import Session

    first = RunLock(lock_engine).acquire()
    try:
        with Session(lock_engine) as s, s.begin():
            first.record(s, None)
        with pytest.raises(LockHeld) as exc:
            RunLock(lock_engine, host="other-host", pid=4242).acquire()
        h = exc.value.holder
        assert h.pid == first.pid and h.host == first.host and h.since is not None
        assert str(exc.value).startswith("another run holds the lock since ")
        assert lock_is_held(lock_engine) is True
        assert lock_is_held(lock_engine) is True  # asking twice did not take it
    finally:
        first.release()
    assert lock_is_held(lock_engine) is False
    with RunLock(lock_engine):  # free again
        pass


def test_holder_row_says_released(lock_engine):
    from sqlalchemy.orm import Session

    from batch.store.models import RunLockHolder

    with RunLock(lock_engine) as lock:
        with Session(lock_engine) as s, s.begin():
            lock.record(s, None)
        assert read_holder(lock_engine).pid == lock.pid
    with Session(lock_engine) as s:
        row = s.get(RunLockHolder, "nightly")
        assert row.released_at is not None and row.pid == lock.pid
    assert read_holder(lock_engine).since is None  # released: nobody holds it


_HOLD = textwrap.dedent("""
    import sys, time
    from sqlalchemy.orm import Session
    from batch.store.db import make_engine
    from batch.store.runlock import RunLock
    engine = make_engine(sys.argv[1])
    lock = RunLock(engine).acquire()
    with Session(engine) as s, s.begin():
        lock.record(s, None)
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_killed_holder_leaves_no_stale_lock(lock_engine, db_url):
    p = subprocess.Popen([sys.executable, "-c", _HOLD, db_url], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as exc:
            RunLock(lock_engine).acquire()
        assert exc.value.holder.pid == p.pid
        assert lock_is_held(lock_engine) is True
    finally:
        p.kill()  # SIGKILL: no release, no cleanup
        p.wait()
    deadline = time.monotonic() + 20
    while True:  # PostgreSQL notices the dead connection at once; the kernel drops the flock at exit
        try:
            with RunLock(lock_engine):
                break
        except LockHeld:
            assert time.monotonic() < deadline, "the lock stayed held after its holder died"
            time.sleep(0.2)
    assert lock_is_held(lock_engine) is False


def test_sqlite_lock_file_sits_beside_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'd' / 'achbatch.db'}"
    upgrade(url)
    eng = make_engine(url)
    try:
        assert lock_file_for(eng) == tmp_path / "d" / "achbatch.db.nightly.lock"
        with RunLock(eng):
            assert (tmp_path / "d" / "achbatch.db.nightly.lock").exists()
            text = (tmp_path / "d" / "achbatch.db.nightly.lock").read_text()
            assert '"pid"' in text and '"since"' in text
    finally:
        eng.dispose()


@pytest.mark.postgres
def test_postgresql_lock_belongs_to_its_database(pg_url):
    """Two achbatch databases on one server do not block each other, and status looks only at its own."""
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    other = f"achbatch_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{other}"'))
    other_url = make_url(pg_url).set(database=other).render_as_string(hide_password=False)
    try:
        upgrade(pg_url)
        upgrade(other_url)
        a, b = make_engine(pg_url), make_engine(other_url)
        try:
            with RunLock(a):
                assert lock_is_held(a) is True and lock_is_held(b) is False
                with RunLock(b):  # the other database's lock is free
                    assert lock_is_held(b) is True
        finally:
            a.dispose()
            b.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)'))
        admin.dispose()
