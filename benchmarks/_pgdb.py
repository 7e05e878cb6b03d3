"""A throwaway PostgreSQL database for a benchmark run, on the server of $ACHBATCH_TEST_PG_URL
(default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)."""
from __future__ import annotations

import os
import uuid

ADMIN_URL = os.environ.get("ACHBATCH_TEST_PG_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin():
    from sqlalchemy import create_engine

    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_database() -> tuple[str, str]:
    """A new empty database: (its URL, its name)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"achbatch_bench_{uuid.uuid4().hex[:10]}"
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False), name


def drop_database(name: str) -> None:
    from sqlalchemy import text

    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()
