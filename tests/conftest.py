"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, migrated sessions, and
an account-number keyring.

`db_url` is parametrized ['sqlite', 'postgresql']. For PostgreSQL a database with a random name is
created on the server of ACHBATCH_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
and dropped afterwards. When that server is unreachable the PostgreSQL cases FAIL if CI or
ACHBATCH_TEST_PG_URL is set (scripts/test.sh sets it) and are skipped, with the reason, otherwise;
when scripts/test.sh could not set PostgreSQL up it says why in ACHBATCH_TEST_PG_SKIP instead.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# Test modules share helpers across the unit/, integration/ and e2e/ folders (the simulated bank, the
# world of the returns tests, the sshd fixture): all four folders are importable by plain name.
_HERE = Path(__file__).resolve().parent
for _d in (_HERE, _HERE / "unit", _HERE / "integration", _HERE / "e2e"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from batch.store.crypto import Keyring, generate_secret
from batch.store.db import make_engine, make_sessionmaker, upgrade

PG_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_pg_problem: list[str] = []  # cached after the first attempt: unreachable servers are slow to time out


def pg_admin_url() -> str:
    return os.environ.get("ACHBATCH_TEST_PG_URL") or PG_DEFAULT_URL


def _pg_unavailable(reason: str) -> None:
    where = make_url(pg_admin_url()).render_as_string(hide_password=True)
    if os.environ.get("CI") or os.environ.get("ACHBATCH_TEST_PG_URL"):
        pytest.fail(f"PostgreSQL at {where} is unreachable ({reason}); it is required here "
                    "(CI or ACHBATCH_TEST_PG_URL is set)", pytrace=False)
    pytest.skip(f"PostgreSQL at {where} is unreachable ({reason}); start it or set ACHBATCH_TEST_PG_URL "
                "(in CI this fails instead of skipping)")


def _admin_engine():
    return create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database (random name), dropped at teardown."""
    if os.environ.get("ACHBATCH_TEST_PG_SKIP") and not os.environ.get("ACHBATCH_TEST_PG_URL"):
        # scripts/test.sh (scripts/pg_setup.sh) found no PostgreSQL it could use, and said why
        _pg_unavailable(os.environ["ACHBATCH_TEST_PG_SKIP"])
    if _pg_problem:
        _pg_unavailable(_pg_problem[0])
    admin = _admin_engine()
    name = f"achbatch_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001 - any failure to reach the server
        admin.dispose()
        _pg_problem.append(str(getattr(e, "orig", e)).strip().splitlines()[0] if str(e) else type(e).__name__)
        _pg_unavailable(_pg_problem[0])
    try:
        yield make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database URL, once on SQLite (a file under tmp_path) and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'achbatch.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def migrated_url(db_url):
    """`db_url` with the schema migrated to head."""
    upgrade(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url):
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine):
    """A session factory on a freshly migrated database."""
    return make_sessionmaker(engine)


@pytest.fixture
def keyring():
    return Keyring([generate_secret()])


@pytest.fixture
def gpg_pair():
    """The bank's key pair and ours, each in its own GnuPG home (agents stopped at teardown). gpg
    missing: a failure under CI, a skip with the reason elsewhere."""
    import shutil

    from sshd import GpgHome

    if shutil.which("gpg") is None:
        if os.environ.get("CI"):
            pytest.fail("gpg is missing; it is required in CI")
        pytest.skip("gpg is not installed")
    bank, us = GpgHome("ach-bank@example.test"), GpgHome("achbatch@example.test")
    us.trust(bank)
    bank.trust(us)
    try:
        yield bank, us
    finally:
        bank.close()
        us.close()


def pytest_report_header(config):
    from examples import QUICK
    if QUICK:
        return "ACHBATCH_QUICK=1: property tests draw a tenth of their examples (the whole suite draws all)"
