"""Issue 13, database errors of standalone commands: a PostgreSQL database that does not exist is a
configuration problem (exit 2, not 75: retrying cannot create it), and every command says what went
wrong on one line, never SQLAlchemy's raw text (statement, parameters, background link)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from batch.store.crypto import generate_secret
from batch.store.db import upgrade
from sshd import write_config
from conftest import pg_admin_url

ROOT = Path(__file__).resolve().parents[2]


def run(config: Path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=config.parent)


def config_for(tmp_path: Path, url: str) -> Path:
    key = tmp_path / "account.key"
    key.write_text(generate_secret() + "\n")
    key.chmod(0o600)
    return write_config(tmp_path / "achbatch.toml", {
        "database": {"url": url}, "security": {"key_file": str(key)},
        "paths": {"data_dir": str(tmp_path / "data")}, "bank": {"transport": "folder"}})


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "[SQL:" not in stderr and "sqlalche.me" not in stderr and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.postgres
@pytest.mark.parametrize("args", [["originate", "--date", "2026-12-01"], ["send"], ["status"],
                                  ["report", "reconciliation", "--date", "2026-12-01"],
                                  ["nightly", "--date", "2026-12-01"], ["db", "upgrade"]])
def test_a_database_that_does_not_exist_exits_2_in_one_line(pg_url, tmp_path, args):
    missing = make_url(pg_url).set(database=make_url(pg_url).database + "_missing")
    r = run(config_for(tmp_path, missing.render_as_string(hide_password=False)), *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    if args[0] == "nightly":  # log lines then the summary: the error line says it
        assert "does not exist" in r.stderr and "Traceback" not in r.stderr
        return
    line = one_line(r.stderr)
    assert "does not exist" in line, line


@pytest.mark.postgres
def test_a_database_failing_mid_command_is_one_line_and_75(pg_url, tmp_path):
    """A lock wait that times out inside the command (PostgreSQL's LockNotAvailable, an
    OperationalError): safe to run again (75), said on one line. PostgreSQL only: SQLite has no
    lock timeout to set on the database."""
    upgrade(pg_url)
    migrated_url = pg_url
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = make_url(migrated_url).database
    with admin.connect() as c:
        c.execute(text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'"))
    admin.dispose()
    eng = create_engine(migrated_url)
    holder = eng.connect()
    tx = holder.begin()
    tables = holder.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")).scalars().all()
    holder.execute(text("LOCK TABLE " + ", ".join(f'"{t}"' for t in tables) + " IN ACCESS EXCLUSIVE MODE"))
    try:
        r = run(config_for(tmp_path, migrated_url), "report", "reconciliation", "--date", "2026-12-01",
                "--format", "csv", "--out", str(tmp_path / "rec.csv"))
    finally:
        tx.rollback()
        holder.close()
        eng.dispose()
    assert r.returncode == 75, (r.stdout, r.stderr)
    line = one_line(r.stderr)
    assert line.startswith("achbatch: database error:") and "lock timeout" in line, line
