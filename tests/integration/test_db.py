"""Persistence (batch/store/db.py, batch/store/models.py, batch/migrations): migrations on SQLite and PostgreSQL,
models in step with them, the unique and check constraints that carry the exactly-once guarantees,
and no account number readable anywhere in the database."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from batch.store.db import (
    MIGRATIONS_DIR,
    DatabaseError,
    DatabaseUnavailable,
    MigrationRefused,
    SchemaError,
    current_revision,
    custom_plans,
    head_revision,
    make_engine,
    make_sessionmaker,
    normalize_url,
    open_database,
    require_current_schema,
    upgrade,
)
from batch.collect.imports import import_autopay, import_payments, import_premiums
from batch.store.crypto import Keyring, generate_secret
from batch.store.models import (
    AutopayMandate,
    Base,
    BankAccount,
    FileEntry,
    NachaFile,
    Payment,
    Premium,
    Sequence,
)
from jobs.cli import cli

TABLES = {"premiums", "bank_accounts", "autopay_mandates", "payments", "nacha_files", "file_entries", "sequences",
          "import_runs"}
T0 = datetime(2026, 1, 15, 15, 0, tzinfo=timezone.utc)


# -- migrations -----------------------------------------------------------------------------------

def test_upgrade_creates_schema_and_is_idempotent(db_url):
    before, after = upgrade(db_url)
    assert before is None and after == head_revision()
    assert upgrade(db_url) == (after, after)
    engine = make_engine(db_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        assert current_revision(engine) == head_revision()
        require_current_schema(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_file_bytes_move_to_their_own_table_and_back(db_url):
    """Migration 0006 moves each file's bytes out of nacha_files (SQLite rewrote the whole row at
    every delivery state change) and keeps the rows that refer to the file; downgrading puts them back."""
    upgrade(db_url, "0005_payment_indexes")
    blobs = {1: b"\x01first file" + bytes(range(256)), 2: b"\x01second"}
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            for fid, blob in blobs.items():
                conn.execute(text(
                    "INSERT INTO nacha_files (id, file_date, file_id_modifier, file_name, sha256, content_enc, "
                    "batch_count, entry_count, total_debit_cents, total_credit_cents, state, created_at) VALUES "
                    "(:id, :d, :m, :n, :h, :c, 1, 1, 100, 0, 'built', :t)"),
                    {"id": fid, "d": date(2026, 12, fid), "m": "A", "n": f"F{fid}.ach", "h": "0" * 64, "c": blob,
                     "t": T0})
            conn.execute(text(
                "INSERT INTO file_entries (id, file_id, batch_number, trace_number, amount_cents, transaction_code, "
                "sec_code) VALUES (1, 1, 1, '011000010000001', 100, '27', 'PPD')"))

        assert upgrade(db_url)[1] == head_revision()
        with engine.connect() as conn:
            assert "content_enc" not in {c["name"] for c in inspect(conn).get_columns("nacha_files")}
            moved = dict(conn.execute(text("SELECT file_id, content_enc FROM nacha_file_contents")).all())
            assert {k: bytes(v) for k, v in moved.items()} == blobs
            assert conn.execute(text("SELECT count(*) FROM nacha_files")).scalar() == 2
            assert conn.execute(text("SELECT file_id FROM file_entries")).scalar() == 1  # not cascaded away
        with make_sessionmaker(engine)() as s:  # the model reads them through the file
            assert s.get(NachaFile, 2).content_enc == blobs[2]

        downgrade_to(db_url, "0005_payment_indexes")
        with engine.connect() as conn:
            assert "nacha_file_contents" not in inspect(conn).get_table_names()
            back = dict(conn.execute(text("SELECT id, content_enc FROM nacha_files")).all())
            assert {k: bytes(v) for k, v in back.items()} == blobs
            assert conn.execute(text("SELECT count(*) FROM file_entries")).scalar() == 1
    finally:
        engine.dispose()


def test_money_rules_migration_keeps_review_items_and_flags(db_url):
    """Migration 0007 rebuilds review_items and coverage_flags on SQLite: existing items keep every
    value (subject 'file'), flags keep their ids while notices refer to them, and the new rules hold:
    an item about a file still needs its file and line, at most one open re-presentment per payment."""
    upgrade(db_url, "0006_file_contents")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO return_files (id, sha256, file_name, status, processed_on, returns, nocs, "
                              "applied, review_items, created_at) VALUES (1, :h, 'r.ach', 'applied', :d, 1, 0, 0, 1, :t)"),
                         {"h": "a" * 64, "d": date(2026, 2, 2), "t": T0})
            conn.execute(text("INSERT INTO review_items (id, return_file_id, line, kind, code, original_trace_number, "
                              "trace_number, amount_cents, detail, status, created_at) VALUES (7, 1, 3, "
                              "'unknown_trace', 'R01', '011000010000009', '091000010000001', 1234, 'no entry', "
                              "'open', :t)"), {"t": T0})
            conn.execute(text("INSERT INTO coverage_flags (id, member_id, plan_id, status, reason_code, reason, "
                              "months_owed, amount_owed_cents, grace_month, grace_months, subsidy, assessed_on, "
                              "last_assessed_on, current_key, created_at) VALUES (5, 'M1', 'P1', 'past_due', 'x', "
                              "'why', 1, 100, 1, 3, 'aptc', :d, :d, 'M1|P1', :t)"), {"d": date(2026, 2, 2), "t": T0})
            conn.execute(text("INSERT INTO notices (id, event_key, kind, member_id, plan_id, amount_owed_cents, "
                              "file_name, notice_date, coverage_flag_id, created_at) VALUES (1, 'k', "
                              "'past_due_warning', 'M1', 'P1', 100, 'n.html', :d, 5, :t)"), {"d": date(2026, 2, 2), "t": T0})
        assert upgrade(db_url)[1] == head_revision()
        with engine.begin() as conn:
            row = conn.execute(text("SELECT subject, return_file_id, line, code, amount_cents, detail, status "
                                    "FROM review_items WHERE id = 7")).one()
            assert tuple(row) == ("file", 1, 3, "R01", 1234, "no entry", "open")
            assert conn.execute(text("SELECT coverage_flag_id FROM notices")).scalar() == 5
            assert conn.execute(text("SELECT status FROM coverage_flags WHERE id = 5")).scalar() == "past_due"
            conn.execute(text("UPDATE coverage_flags SET status = 'at_risk' WHERE id = 5"))
            conn.execute(text("INSERT INTO review_items (kind, subject, amount_cents, detail, status, created_at) "
                              "VALUES ('double_collection', 'payment', 0, 'two debits', 'open', :t)"), {"t": T0})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # an item about a file names it
            conn.execute(text("INSERT INTO review_items (kind, subject, amount_cents, detail, status, created_at) "
                              "VALUES ('unknown_trace', 'file', 0, 'x', 'open', :t)"), {"t": T0})
        downgrade_to(db_url, "0006_file_contents")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM review_items")).scalar() == 1  # the file item
            assert conn.execute(text("SELECT status FROM coverage_flags WHERE id = 5")).scalar() == "past_due"
            assert conn.execute(text("SELECT coverage_flag_id FROM notices")).scalar() == 5
    finally:
        engine.dispose()


def test_stored_key_ids_names_every_key_in_each_table(db_url):
    """Which keys the stored data needs is read by one index seek per key id: every id of every
    table, whichever order they sort in, and none when nothing is stored."""
    from batch.store.crypto import FILE_CONTEXT, stored_key_ids

    upgrade(db_url)
    rings = [Keyring([generate_secret()]) for _ in range(6)]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert stored_key_ids(conn) == set()
        with make_sessionmaker(engine)() as s, s.begin():
            for i, ring in enumerate(rings[:5]):  # five keys' accounts, three of each, interleaved
                for j in range(3):
                    s.add(_account(ring, number=f"{1000 + 10 * j + i}"))
            s.add(NachaFile(id=7, file_date=date(2026, 12, 1), file_id_modifier="A", file_name="F.ach",
                            sha256="0" * 64, batch_count=1, entry_count=1, total_debit_cents=100,
                            total_credit_cents=0, state="built", created_at=T0))
            s.flush()
            s.get(NachaFile, 7).content_enc = rings[5].encrypt(b"file", FILE_CONTEXT)
        with engine.connect() as conn:
            assert stored_key_ids(conn) == {r.current_key_id for r in rings}
            assert len(stored_key_ids(conn)) == 6
    finally:
        engine.dispose()


def test_key_id_migration_records_each_values_key_and_goes_back(db_url):
    """Migration 0010 records, beside each encrypted account number and file (ours and the bank's), the id of the key it
    was made with (read from the ciphertext), indexed; rows written afterwards record theirs; the
    ids the stored data needs are one query; downgrading drops the columns and keeps the data."""
    from batch.store.crypto import FILE_CONTEXT, stored_key_ids

    upgrade(db_url, "0009_review_resolutions")
    old, new, bank = Keyring([generate_secret()]), Keyring([generate_secret()]), Keyring([generate_secret()])
    acct_blob, file_blob = old.encrypt_account("123456789"), new.encrypt(b"file bytes", FILE_CONTEXT)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO bank_accounts (id, routing_number, account_number_enc, account_hash, last4, "
                "account_type, holder_name, status, validation_result, created_at, updated_at) VALUES "
                "(100, '011000015', :b, :h, '6789', 'checking', 'A B', 'active', 'unvalidated', :t, :t)"),
                {"b": acct_blob, "h": "f" * 64, "t": T0})
            conn.execute(text(
                "INSERT INTO nacha_files (id, file_date, file_id_modifier, file_name, sha256, batch_count, "
                "entry_count, total_debit_cents, total_credit_cents, state, created_at) VALUES "
                "(100, :d, 'A', 'F.ach', :h, 1, 1, 100, 0, 'built', :t)"), {"d": date(2026, 12, 1), "h": "0" * 64, "t": T0})
            conn.execute(text("INSERT INTO nacha_file_contents (file_id, content_enc) VALUES (100, :c)"), {"c": file_blob})
            conn.execute(text("INSERT INTO return_files (id, sha256, file_name, status, processed_on, returns, nocs, "
                              "applied, review_items, created_at) VALUES (100, :h, 'r.ach', 'applied', :d, 1, 0, 0, 1, "
                              ":t)"), {"h": "b" * 64, "d": date(2026, 12, 2), "t": T0})
            conn.execute(text("INSERT INTO return_file_contents (return_file_id, content_enc) VALUES (100, :c)"),
                         {"c": bank.encrypt(b"bank file", FILE_CONTEXT)})

        assert upgrade(db_url)[1] == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT key_id FROM bank_accounts")).scalar() == old.current_key_id
            assert conn.execute(text("SELECT key_id FROM nacha_file_contents")).scalar() == new.current_key_id
            assert conn.execute(text("SELECT key_id FROM return_file_contents")).scalar() == bank.current_key_id
            assert stored_key_ids(conn) == {old.current_key_id, new.current_key_id, bank.current_key_id}
            indexes = {i["name"] for t in ("bank_accounts", "nacha_file_contents") for i in inspect(conn).get_indexes(t)}
            assert {"ix_bank_accounts_key_id", "ix_nacha_file_contents_key_id"} <= indexes
        third = Keyring([generate_secret()])
        with make_sessionmaker(engine)() as s, s.begin():  # the ORM and Core paths record their key id
            s.add(_account(third, routing="021000021"))
            s.execute(BankAccount.__table__.insert().values(
                routing_number="026009593", account_number_enc=third.encrypt_account("55"), account_hash="e" * 64,
                last4="55", account_type="savings", holder_name="C D", status="active",
                validation_result="unvalidated", created_at=T0, updated_at=T0))
            f = s.get(NachaFile, 100)
            f.content_enc = third.encrypt(b"again", FILE_CONTEXT)
        with engine.connect() as conn:
            assert stored_key_ids(conn) == {old.current_key_id, third.current_key_id, bank.current_key_id}
            assert conn.execute(text("SELECT count(*) FROM bank_accounts WHERE key_id = :k"),
                                {"k": third.current_key_id}).scalar() == 2

        downgrade_to(db_url, "0009_review_resolutions")
        with engine.connect() as conn:
            for table in ("bank_accounts", "nacha_file_contents", "return_file_contents"):
                assert "key_id" not in {c["name"] for c in inspect(conn).get_columns(table)}
            assert bytes(conn.execute(text("SELECT account_number_enc FROM bank_accounts WHERE id = 100")).scalar()) \
                == acct_blob
            assert conn.execute(text("SELECT count(*) FROM nacha_file_contents")).scalar() == 1
        assert upgrade(db_url)[1] == head_revision()  # and up again
    finally:
        engine.dispose()


def test_two_open_representments_of_one_payment_cannot_coexist(sessions, keyring):
    """The database, not only the application, refuses a second open re-presentment (0007)."""
    from batch.store.models import BankAccount as BA
    with sessions() as s, s.begin():
        acct = BA(routing_number="011000015", account_number_enc=keyring.encrypt_account("12345678"),
                  account_hash=keyring.account_hash("011000015", "12345678"), last4="5678",
                  account_type="checking", holder_name="A")
        s.add(acct)
        s.flush()
        base = dict(channel="portal", member_id="M1", plan_id="P1", coverage_month=date(2026, 3, 1),
                    amount_cents=100, bank_account_id=acct.id, submitted_at=T0, sec_code="WEB",
                    payment_type_code="S", originate_on=date(2026, 2, 2))
        orig = Payment(confirmation_id="C1", state="returned", **base)
        s.add(orig)
        s.flush()
        retry = dict(base, channel="retry", retry_of_id=orig.id)
        s.add(Payment(confirmation_id="RT-1-1", state="returned", retry_number=1, **retry))
        s.add(Payment(confirmation_id="RT-1-2", state="sent", retry_number=2, **retry))
    with pytest.raises(IntegrityError), sessions() as s, s.begin():
        s.add(Payment(confirmation_id="RT-1-3", state="pending", retry_number=3, **retry))
    with sessions() as s, s.begin():  # once the open one is returned, the next may open
        s.execute(update(Payment).where(Payment.confirmation_id == "RT-1-2").values(state="returned"))
        s.add(Payment(confirmation_id="RT-1-3", state="pending", retry_number=3, **retry))


def test_review_resolutions_migration_up_and_down(db_url):
    """Migration 0009 adds review_resolutions (one row per resolved item, checked values) and
    return_file_contents beside the existing items, and drops both again on downgrade, leaving the
    items as they were."""
    upgrade(db_url, "0008_review_location")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO return_files (id, sha256, file_name, status, processed_on, returns, nocs, "
                              "applied, review_items, created_at) VALUES (1, :h, 'r.ach', 'applied', :d, 1, 0, 0, 1, :t)"),
                         {"h": "b" * 64, "d": date(2026, 2, 2), "t": T0})
            conn.execute(text("INSERT INTO review_items (id, subject, return_file_id, line, kind, code, "
                              "original_trace_number, trace_number, amount_cents, detail, status, created_at) VALUES "
                              "(7, 'file', 1, 3, 'unknown_trace', 'R01', '011000010000009', '091000010000001', 1234, "
                              "'no entry', 'open', :t)"), {"t": T0})
        assert "review_resolutions" not in inspect(engine).get_table_names()
        assert upgrade(db_url, "0009_review_resolutions")[1] == "0009_review_resolutions"
        row = ("INSERT INTO review_resolutions (review_item_id, action, note, resolved_by, resolved_at, business_date, "
               "payment_id, forced, before_state, after_state) VALUES (7, :a, 'why', 'pat', :t, :d, NULL, :f, '{}', '{}')")
        with engine.begin() as conn:
            conn.execute(text("UPDATE review_items SET status = 'resolved' WHERE id = 7"))
            conn.execute(text(row), {"a": "dismiss", "t": T0, "d": date(2026, 2, 3), "f": False})
            conn.execute(text("INSERT INTO return_file_contents (return_file_id, content_enc) VALUES (1, :c)"),
                         {"c": b"\x01ciphertext"})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # an item is resolved once
            conn.execute(text(row), {"a": "dismiss", "t": T0, "d": date(2026, 2, 3), "f": False})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # no such action
            conn.execute(text("DELETE FROM review_resolutions"))
            conn.execute(text(row), {"a": "refund", "t": T0, "d": date(2026, 2, 3), "f": False})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # --force goes with apply only
            conn.execute(text("DELETE FROM review_resolutions"))
            conn.execute(text(row), {"a": "dismiss", "t": T0, "d": date(2026, 2, 3), "f": True})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT action, resolved_by FROM review_resolutions")).one() == ("dismiss", "pat")
        downgrade_to(db_url, "0008_review_location")
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert "review_resolutions" not in names and "return_file_contents" not in names
            assert tuple(conn.execute(text("SELECT kind, status, line FROM review_items WHERE id = 7")).one()) == \
                ("unknown_trace", "resolved", 3)
        assert upgrade(db_url)[1] == head_revision()  # and up again
    finally:
        engine.dispose()


def downgrade_to(url: str, revision: str) -> None:
    from alembic import command

    from batch.store.db import alembic_config

    command.downgrade(alembic_config(url), revision)  # the migrations' env opens the database itself


def test_schema_check_before_upgrade(db_url):
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaError, match="achbatch db upgrade"):
            require_current_schema(engine)
    finally:
        engine.dispose()


def test_schema_revisions_read_without_alembic_agree_with_alembic(db_url):
    """head_revision() reads the migration files' lines and current_revision() the version table
    with one query (start-up time); Alembic's own script directory and migration context say the
    same, before the schema exists, at an older revision and at the head."""
    from alembic.command import downgrade
    from alembic.script import ScriptDirectory

    from batch.store.db import _head_from_files, alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert _head_from_files() is not None  # the fast reading applies to the shipped files
    assert head_revision() == script.get_current_head()
    older = script.get_revision(script.get_current_head()).down_revision
    engine = make_engine(db_url)
    try:
        def alembic_says():
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()

        assert current_revision(engine) is None and alembic_says() is None
        upgrade(db_url)
        assert current_revision(engine) == alembic_says() == script.get_current_head()
        cfg = alembic_config(db_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            downgrade(cfg, older)
        assert current_revision(engine) == alembic_says() == older
        with pytest.raises(SchemaError, match=f"revision {older}"):
            require_current_schema(engine)
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package():
    import batch.store

    assert MIGRATIONS_DIR.parent == Path(batch.store.__file__).resolve().parent
    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()
    # package directories (with __init__.py) so that setuptools' find: includes them in a wheel
    assert (MIGRATIONS_DIR / "__init__.py").is_file() and (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    shipped = {p.stem for p in (MIGRATIONS_DIR / "versions").glob("0*.py")}
    assert "0001_ledger" in shipped and head_revision() in shipped


def test_url_normalisation():
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u:p%40ss@h:5433/db") == "postgresql+psycopg://u:p%40ss@h:5433/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(DatabaseError, match="unsupported"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(DatabaseError, match="not a database URL"):
        normalize_url("nonsense")


def test_unreachable_database_is_temporary(tmp_path):
    with pytest.raises(DatabaseUnavailable):
        upgrade("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_sqlite_pragmas(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()
    assert (tmp_path / "sub").is_dir()


@pytest.mark.postgres
def test_postgresql_connections_run_without_jit(pg_url):
    """JIT compiled the night's big statements for longer than they ran (make_engine): every pooled
    connection has it off, through commits and rollbacks, with no transaction left open by the SET;
    `custom_plans` forces custom plans for one transaction only."""
    engine = make_engine(pg_url, pool_size=2)
    try:
        with engine.connect() as a, engine.connect() as b:
            for conn in (a, b):
                assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
                assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
                conn.rollback()
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x int)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            conn.rollback()
            with conn.begin():
                custom_plans(conn)
                assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"  # that transaction's only
        with engine.connect() as conn:  # the SET ran in autocommit: the driver is back in transactions
            assert conn.connection.dbapi_connection.autocommit is False
    finally:
        engine.dispose()
    # a plain engine on the same server keeps the server's own setting: the SET is ours, not global
    from sqlalchemy import create_engine
    plain = create_engine(pg_url)
    try:
        with plain.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar() == conn.exec_driver_sql(
                "SELECT reset_val FROM pg_settings WHERE name = 'jit'").scalar()
    finally:
        plain.dispose()


def test_sqlite_database_and_its_wal_and_shm_are_created_0600(tmp_path):
    """Under the usual umask (022) SQLite would create the database 0644; it holds member names."""
    import os

    db = tmp_path / "data" / "achbatch.db"
    old = os.umask(0o022)
    try:
        upgrade(f"sqlite:///{db}")
        engine = make_engine(f"sqlite:///{db}")
        try:
            with engine.begin() as conn:  # a write, with the connection open: -wal and -shm exist
                conn.execute(text("INSERT INTO sequences (name, value) VALUES ('probe', 1)"))
                files = {p.name: p.stat().st_mode & 0o777 for p in db.parent.iterdir()}
        finally:
            engine.dispose()
    finally:
        os.umask(old)
    assert files == {"achbatch.db": 0o600, "achbatch.db-wal": 0o600, "achbatch.db-shm": 0o600}
    assert db.parent.stat().st_mode & 0o777 == 0o700


def test_cli_db_upgrade_then_commands_see_the_schema(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    (tmp_path / "p.csv").write_text("member_id,member_name,plan_id,coverage_month,amount_due,subsidy,binder\n")
    early = runner.invoke(cli, ["import", "premiums", "p.csv"])
    assert early.exit_code == 2 and "achbatch db upgrade" in early.output
    first = runner.invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0 and "upgraded" in first.output
    assert (tmp_path / "achbatch-data" / "achbatch.db").is_file()
    second = runner.invoke(cli, ["db", "upgrade"])
    assert second.exit_code == 0 and "already at revision" in second.output


# -- constraints ------------------------------------------------------------------------------------

def _premium(**kw) -> Premium:
    values = dict(member_id="M1", member_name="A B", plan_id="P1", coverage_month=date(2026, 2, 1),
                  amount_due_cents=10000, subsidy="none", binder=False, due_date=date(2026, 1, 23))
    values.update(kw)
    return Premium(**values)


def _account(keyring, number="12345678", routing="011000015") -> BankAccount:
    return BankAccount(routing_number=routing, account_number_enc=keyring.encrypt_account(number),
                       account_hash=keyring.account_hash(routing, number), last4=number[-4:],
                       account_type="checking", holder_name="A B")


def _payment(account_id, **kw) -> Payment:
    values = dict(confirmation_id="C1", channel="portal", member_id="M1", plan_id="P1",
                  coverage_month=date(2026, 2, 1), amount_cents=100, bank_account_id=account_id, submitted_at=T0,
                  sec_code="WEB", payment_type_code="S", originate_on=date(2026, 1, 15), state="pending")
    values.update(kw)
    return Payment(**values)


def _violates(sessions, *objects) -> bool:
    try:
        with sessions() as s, s.begin():
            s.add_all(objects)
    except IntegrityError:
        return True
    return False


def test_premium_unique_per_member_plan_month(sessions):
    assert not _violates(sessions, _premium())
    assert _violates(sessions, _premium(amount_due_cents=5))
    assert not _violates(sessions, _premium(coverage_month=date(2026, 3, 1), due_date=date(2026, 2, 23)))
    assert _violates(sessions, _premium(member_id="M9", amount_due_cents=-1))


def test_bank_account_unique_by_routing_and_hash(sessions, keyring):
    assert not _violates(sessions, _account(keyring))
    assert _violates(sessions, _account(keyring))
    assert not _violates(sessions, _account(keyring, routing="021000021"))


def test_payment_guarantees(sessions, keyring):
    with sessions() as s, s.begin():
        acct = _account(keyring)
        prem = _premium()
        s.add_all([acct, prem])
        s.flush()
        acct_id, prem_id = acct.id, prem.id
        s.add(_payment(acct_id))
    assert _violates(sessions, _payment(acct_id))  # confirmation_id is the idempotency key
    assert _violates(sessions, _payment(acct_id, confirmation_id="C2", amount_cents=0))
    assert _violates(sessions, _payment(999_999, confirmation_id="C3"))  # foreign keys enforced (SQLite too)
    # never two AutoPay pulls for one premium
    pull = dict(channel="autopay", autopay_premium_id=prem_id, premium_id=prem_id, payment_type_code="R")
    assert not _violates(sessions, _payment(acct_id, confirmation_id=f"AP-{prem_id}", **pull))
    assert _violates(sessions, _payment(acct_id, confirmation_id="AP-other", **pull))
    assert _violates(sessions, _payment(acct_id, confirmation_id="C4", autopay_premium_id=prem_id))  # not autopay
    # mail: no account, no SEC code, state paid; ACH channels the opposite
    mail = dict(channel="mail", bank_account_id=None, sec_code=None, payment_type_code="", originate_on=None)
    assert not _violates(sessions, _payment(None, confirmation_id="M-1", state="paid", **mail))
    assert _violates(sessions, _payment(None, confirmation_id="M-2", state="pending", **mail))
    assert _violates(sessions, _payment(acct_id, confirmation_id="M-3", state="paid", channel="mail", sec_code=None,
                                        payment_type_code="", originate_on=None))
    assert _violates(sessions, _payment(None, confirmation_id="C5"))  # ACH debit without an account
    assert _violates(sessions, _payment(acct_id, confirmation_id="C6", state="paid"))
    assert _violates(sessions, _payment(acct_id, confirmation_id="C7", sec_code="CCD"))
    assert _violates(sessions, _payment(acct_id, confirmation_id="C8", channel="card"))


def test_one_live_mandate_per_member_plan(sessions, keyring):
    with sessions() as s, s.begin():
        a1, a2 = _account(keyring, "11112222"), _account(keyring, "33334444")
        s.add_all([a1, a2])
        s.flush()
        ids = a1.id, a2.id

    def mandate(account_id, status="active", key="M1|P1", **kw):
        return AutopayMandate(member_id="M1", plan_id="P1", bank_account_id=account_id, channel="web",
                              authorized_at=T0, status=status, active_key=key, **kw)

    assert not _violates(sessions, mandate(ids[0]))
    assert _violates(sessions, mandate(ids[1]))  # a second live mandate
    assert _violates(sessions, mandate(ids[1], status="suspended"))  # suspended is live too
    assert _violates(sessions, mandate(ids[1], status="revoked"))  # revoked must release the key
    assert _violates(sessions, mandate(ids[1], key="M1|P2"))  # the key is exactly member|plan
    assert _violates(sessions, mandate(ids[1], key=None))  # active needs its key
    assert not _violates(sessions, mandate(ids[1], status="revoked", key=None),
                         mandate(ids[1], status="revoked", key=None))  # any number of ended ones
    # revoking the live one frees the slot
    with sessions() as s, s.begin():
        s.execute(update(AutopayMandate).where(AutopayMandate.status == "active")
                  .values(status="revoked", status_reason="replaced", active_key=None))
    assert not _violates(sessions, mandate(ids[1]))


def test_file_entry_guarantees(sessions, keyring):
    with sessions() as s, s.begin():
        acct = _account(keyring)
        s.add(acct)
        s.flush()
        p1, p2 = _payment(acct.id), _payment(acct.id, confirmation_id="C2")
        f = NachaFile(file_date=date(2026, 1, 15), file_id_modifier="A", file_name="a.ach", sha256="0" * 64,
                      content_enc=b"x", entry_count=1, total_debit_cents=100, total_credit_cents=0)
        s.add_all([p1, p2, f])
        s.flush()
        ids = p1.id, p2.id, f.id
        s.add(FileEntry(file_id=f.id, batch_number=1, trace_number="011000010000001", payment_id=p1.id,
                        amount_cents=100, transaction_code="27", sec_code="WEB"))

    def entry(payment_id, trace):
        return FileEntry(file_id=ids[2], batch_number=1, trace_number=trace, payment_id=payment_id,
                         amount_cents=100, transaction_code="27", sec_code="WEB")

    assert _violates(sessions, entry(ids[0], "011000010000002"))  # a payment in two entries
    assert _violates(sessions, entry(ids[1], "011000010000001"))  # a trace number reused
    assert _violates(sessions, entry(ids[1], "0110000100002"))  # trace numbers are 15 characters
    assert not _violates(sessions, entry(ids[1], "011000010000002"))
    assert not _violates(sessions, entry(None, "011000010000003"), entry(None, "011000010000004"))  # offsets
    same_day = NachaFile(file_date=date(2026, 1, 15), file_id_modifier="A", file_name="b.ach", sha256="1" * 64,
                         content_enc=b"y", entry_count=0, total_debit_cents=0, total_credit_cents=0)
    assert _violates(sessions, same_day)  # one file per (date, modifier)


def test_trace_sequence_is_seeded_and_claimed_atomically(sessions):
    with sessions() as s, s.begin():
        assert s.get(Sequence, "trace").value == 0
    for expected in (5, 10):
        with sessions() as s, s.begin():
            claimed = s.execute(update(Sequence).where(Sequence.name == "trace")
                                .values(value=Sequence.value + 5).returning(Sequence.value)).scalar_one()
        assert claimed == expected


def test_datetimes_are_aware_utc_and_naive_is_refused(sessions):
    est = timezone(timedelta(hours=-5))
    with sessions() as s, s.begin():
        p = _premium(created_at=datetime(2026, 1, 15, 22, 10, tzinfo=est))
        s.add(p)
    with sessions() as s:
        got = s.scalars(select(Premium)).one().created_at
    assert got == datetime(2026, 1, 16, 3, 10, tzinfo=timezone.utc) and got.tzinfo is not None
    with pytest.raises(StatementError, match="naive datetime"):
        with sessions() as s, s.begin():
            s.add(_premium(member_id="M2", created_at=datetime(2026, 1, 15, 22, 10)))


# -- account numbers are unreadable at rest --------------------------------------------------------

ACCOUNTS = ["730051749112", "99188470233", "5550042871", "48213377009"]  # none passes Luhn at 13+ digits


def _load_accounts(sessions, keyring, tmp_path):
    (tmp_path / "premiums.csv").write_text(
        "member_id,member_name,plan_id,coverage_month,amount_due,subsidy,binder\n"
        "M1,Quinn Rivers,P1,2026-02,100.00,none,yes\n")
    (tmp_path / "autopay.csv").write_text(
        "member_id,plan_id,routing_number,account_number,account_type,account_holder,authorized_at,channel\n"
        f"M1,P1,011000015,{ACCOUNTS[0]},checking,Quinn Rivers,2026-01-02,web\n"
        f"M2,P1,021000021,{ACCOUNTS[1]},savings,Sky Harbor,2026-01-02,paper\n"
        f"M1,P1,011000015,{ACCOUNTS[2]},checking,Quinn Rivers,2026-01-09,web\n")  # replaces the first
    (tmp_path / "payments.csv").write_text(
        "confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,routing_number,"
        "account_number,account_type,account_holder\n"
        f"PC-1,2026-01-15T10:00:00-05:00,guest,M1,P1,2026-02,100.00,026009593,{ACCOUNTS[3]},checking,Quinn Rivers\n"
        f"PC-2,2026-01-15T11:00:00-05:00,portal,M2,P1,2026-02,80.00,021000021,{ACCOUNTS[1]},savings,Sky Harbor\n")
    assert import_premiums(sessions, tmp_path / "premiums.csv").ok
    assert import_autopay(sessions, tmp_path / "autopay.csv", keyring=keyring).ok
    assert import_payments(sessions, tmp_path / "payments.csv", keyring=keyring).ok
    with sessions() as s, s.begin():
        s.add(NachaFile(file_date=date(2026, 1, 15), file_id_modifier="A", file_name="a.ach", sha256="0" * 64,
                        content_enc=keyring.encrypt(f"6270260095931{ACCOUNTS[3]}".encode(), b"nacha_files.content"),
                        entry_count=1, total_debit_cents=10000, total_credit_cents=0))
        assert len(s.scalars(select(BankAccount)).all()) == 4


def _forms(number: str) -> list[bytes]:
    # as text, and as PostgreSQL would print it inside a bytea (hex)
    return [number.encode(), number.encode().hex().encode()]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_file_bytes_hold_no_account_number(db_url, migrated_url, sessions, engine, keyring, tmp_path):
    _load_accounts(sessions, keyring, tmp_path)
    engine.dispose()  # checkpoint the WAL into the main file
    db_path = Path(engine.url.database)
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    dump = b"".join(p.read_bytes() for p in files)
    assert b"Quinn Rivers" in dump  # the dump really shows stored text
    for number in ACCOUNTS:
        for form in _forms(number):
            assert form not in dump, f"account ending {number[-4:]} readable in the SQLite file"


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgresql_every_column_holds_no_account_number(db_url, migrated_url, sessions, engine, keyring, tmp_path):
    _load_accounts(sessions, keyring, tmp_path)
    dump: list[str] = []
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")).scalars().all()
        assert TABLES <= set(tables)
        for table in tables:
            columns = conn.execute(text("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_schema = 'public' AND table_name = :t"), {"t": table}).all()
            for column, data_type in columns:
                expr = f'"{column}"::text'
                if data_type == "bytea":  # printable bytes as themselves, the rest escaped
                    expr = f"encode(\"{column}\", 'escape') || ' ' || \"{column}\"::text"
                dump += [v for v in conn.execute(text(f'SELECT {expr} FROM "{table}"')).scalars() if v is not None]
    text_dump = "\n".join(dump)
    assert "Quinn Rivers" in text_dump and "011000015" in text_dump  # the dump really shows stored values
    for number in ACCOUNTS:
        for form in _forms(number):
            assert form.decode() not in text_dump, f"account ending {number[-4:]} readable in PostgreSQL"


def test_open_database_checks_schema(db_url):
    with pytest.raises(SchemaError):
        with open_database(db_url):
            pass
    upgrade(db_url)
    with open_database(db_url) as sessions:
        with sessions() as s:
            assert s.scalar(select(Sequence.value).where(Sequence.name == "trace")) == 0


def test_bai2_statements_migration_up_and_down(db_url):
    """Migration 0012 adds statement_files and statement_lines, inbound_files.kind ('returns' for the
    files fetched before it) and return_files' total and settlement date (NULL on older files), and
    takes them away again on downgrade, leaving the rows as they were."""
    upgrade(db_url, "0011_rules16_amount_warnings")
    engine = make_engine(db_url)
    inbound = ("INSERT INTO inbound_files (id, source, remote_name, remote_size, remote_mtime, sha256, size, content_key, "
               "decrypted, content_sha256, local_name, archive_path, state, received_at) VALUES "
               "(:i, 'folder:x outgoing', :n, 10, 1, :h, 10, :h, :f, :h, :n, '/a', 'received', :t)")
    try:
        with engine.begin() as conn:
            conn.execute(text(inbound), {"i": 1, "n": "RET.ach", "h": "c" * 64, "f": False, "t": T0})
            conn.execute(text("INSERT INTO return_files (id, sha256, file_name, status, processed_on, returns, nocs, "
                              "applied, review_items, created_at) VALUES (1, :h, 'r.ach', 'applied', :d, 1, 0, 1, 0, :t)"),
                         {"h": "b" * 64, "d": date(2026, 2, 2), "t": T0})
        assert upgrade(db_url, "0012_bai2_statements")[1] == "0012_bai2_statements"
        with engine.begin() as conn:
            assert conn.execute(text("SELECT kind FROM inbound_files WHERE id = 1")).scalar_one() == "returns"
            assert tuple(conn.execute(text("SELECT return_total_cents, settlement_date FROM return_files")).one()) == \
                (None, None)
            conn.execute(text("INSERT INTO statement_files (id, sha256, file_name, sender_id, bank_file_id, created_on, "
                              "as_of_date, final, processed_on, lines, matched, missing, unexplained, created_at) VALUES "
                              "(1, :h, 's.bai', '021000021', '1', :d, :d, :f, :d, 1, 1, 0, 0, :t)"),
                         {"h": "d" * 64, "d": date(2026, 1, 27), "f": True, "t": T0})
            line = ("INSERT INTO statement_lines (statement_file_id, line, account_last4, as_of_date, type_code, "
                    "direction, amount_cents, bank_reference, customer_reference, text, return_file_id, match_basis) "
                    "VALUES (1, :l, '6789', :d, '468', :dir, 38150, '', '', '', 1, 'amount and date')")
            conn.execute(text(line), {"l": 4, "d": date(2026, 1, 26), "dir": "debit"})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a return file is matched once
            conn.execute(text(line), {"l": 5, "d": date(2026, 1, 26), "dir": "debit"})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # credit or debit, nothing else
            conn.execute(text(line.replace(", 1, 'amount", ", NULL, 'amount")), {"l": 6, "d": date(2026, 1, 26),
                                                                               "dir": "both"})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # no such kind
            conn.execute(text(inbound.replace("'received'", "'received'").replace(
                "received_at) VALUES", "received_at, kind) VALUES").replace(":t)", ":t, 'junk')")),
                {"i": 2, "n": "X.ach", "h": "e" * 64, "f": False, "t": T0})
        downgrade_to(db_url, "0011_rules16_amount_warnings")
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            assert "statement_files" not in names and "statement_lines" not in names
            assert "kind" not in {c["name"] for c in inspect(conn).get_columns("inbound_files")}
            assert "settlement_date" not in {c["name"] for c in inspect(conn).get_columns("return_files")}
            assert conn.execute(text("SELECT remote_name FROM inbound_files")).scalar_one() == "RET.ach"
    finally:
        engine.dispose()


def test_originate_runs_migration_widens_the_run_kinds_and_goes_back(db_url):
    """Migration 0013 lets `runs.kind` be 'originate' (an originate by itself recording its
    --allow-earlier-date override), keeps every run and its steps on the way up (SQLite rebuilds the
    table), and on the way down removes the originate rows and refuses the kind again."""
    upgrade(db_url, "0012_bai2_statements")
    engine = make_engine(db_url)
    run_row = ("INSERT INTO runs (id, kind, business_date, status, exit_code, host, pid, started_at) VALUES "
               "(:id, :kind, :d, 'done', 0, 'h', 1, :t)")
    try:
        with engine.begin() as conn:
            conn.execute(text(run_row), {"id": 1, "kind": "nightly", "d": date(2026, 12, 28), "t": T0})
            conn.execute(text("INSERT INTO run_steps (run_id, kind, business_date, step, position, status, "
                              "started_at, note) VALUES (1, 'nightly', :d, 'import', 1, 'done', :t, '')"),
                         {"d": date(2026, 12, 28), "t": T0})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(run_row), {"id": 2, "kind": "originate", "d": date(2026, 12, 23), "t": T0})

        assert upgrade(db_url, "0013_ops_c_originate_runs")[1] == "0013_ops_c_originate_runs"
        with engine.begin() as conn:
            conn.execute(text(run_row), {"id": 2, "kind": "originate", "d": date(2026, 12, 23), "t": T0})
            assert conn.execute(text("SELECT id, kind FROM runs ORDER BY id")).all() == [(1, "nightly"),
                                                                                      (2, "originate")]
            assert conn.execute(text("SELECT run_id, step FROM run_steps")).all() == [(1, "import")]
            assert {i["name"] for i in inspect(conn).get_indexes("runs")} >= {"ix_runs_kind_business_date",
                                                                                "ix_runs_status"}
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(run_row), {"id": 3, "kind": "weekly", "d": date(2026, 12, 23), "t": T0})

        downgrade_to(db_url, "0012_bai2_statements")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, kind FROM runs")).all() == [(1, "nightly")]
            assert conn.execute(text("SELECT run_id FROM run_steps")).all() == [(1,)]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(run_row), {"id": 2, "kind": "originate", "d": date(2026, 12, 23), "t": T0})
        assert upgrade(db_url)[1] == head_revision()  # and up again
    finally:
        engine.dispose()


def test_prenote_migration_kinds_entries_and_holds_payments_and_goes_back(db_url):
    """Migration 0014 (WEB account validation): existing entries become `payment` or `offset` by
    whether they carry a payment (a prenote is no longer read as the offset entry), prenotes are
    stored with their own kind of entry (amount 0 only), payments may be `held` (a state PostgreSQL
    stores in its 10 characters); downgrading drops prenotes and puts held payments back to pending."""
    upgrade(db_url, "0013_ops_c_originate_runs")
    keyring = Keyring([generate_secret()])
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO bank_accounts (id, routing_number, account_number_enc, key_id, account_hash, last4, "
                "account_type, holder_name, status, validation_result, created_at, updated_at) VALUES "
                "(1, '011000015', :b, :k, :h, '6789', 'checking', 'A B', 'active', 'unvalidated', :t, :t)"),
                {"b": keyring.encrypt_account("123456789"), "k": keyring.current_key_id, "h": "f" * 64, "t": T0})
            conn.execute(text(
                "INSERT INTO payments (id, confirmation_id, channel, member_id, plan_id, coverage_month, amount_cents, "
                "bank_account_id, submitted_at, sec_code, payment_type_code, originate_on, state, retry_number, "
                "created_at, updated_at) VALUES (1, 'C1', 'portal', 'M1', 'P1', :m, 100, 1, :t, 'WEB', 'S', :d, "
                "'in_file', 0, :t, :t)"), {"m": date(2027, 1, 1), "d": date(2026, 12, 1), "t": T0})
            conn.execute(text(
                "INSERT INTO nacha_files (id, file_date, file_id_modifier, file_name, sha256, batch_count, "
                "entry_count, total_debit_cents, total_credit_cents, state, created_at) VALUES "
                "(1, :d, 'A', 'F.ach', :h, 2, 2, 100, 100, 'built', :t)"), {"d": date(2026, 12, 1), "h": "0" * 64, "t": T0})
            for i, pid, tc in ((1, 1, "27"), (2, None, "22")):
                conn.execute(text(
                    "INSERT INTO file_entries (id, file_id, batch_number, trace_number, payment_id, amount_cents, "
                    "transaction_code, sec_code) VALUES (:i, 1, :i, :tr, :p, 100, :tc, 'WEB')"),
                    {"i": i, "tr": f"01100001000000{i}", "p": pid, "tc": tc})

        assert upgrade(db_url)[1] == head_revision()
        with engine.connect() as conn:
            assert dict(conn.execute(text("SELECT id, kind FROM file_entries")).all()) == {1: "payment", 2: "offset"}
        new_entry = ("INSERT INTO file_entries (id, file_id, batch_number, trace_number, prenote_id, amount_cents, "
                     "transaction_code, sec_code, kind) VALUES (:i, 1, 3, :tr, :pn, :a, '28', 'WEB', 'prenote')")
        with engine.begin() as conn:
            for pn in (1, 2):
                conn.execute(text(
                    "INSERT INTO prenotes (id, bank_account_id, member_id, sec_code, payment_type_code, reason, state, "
                    "requested_on, created_at, updated_at) VALUES (:pn, 1, 'M1', 'WEB', 'S', 'first use', 'in_file', "
                    ":d, :t, :t)"), {"pn": pn, "d": date(2026, 12, 1), "t": T0})
            conn.execute(text(new_entry), {"i": 3, "tr": "011000010000003", "pn": 1, "a": 0})
            conn.execute(text("UPDATE payments SET state = 'held' WHERE id = 1"))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a prenote carries no dollars
            conn.execute(text(new_entry), {"i": 4, "tr": "011000010000004", "pn": 2, "a": 1})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one entry per prenote
            conn.execute(text(new_entry), {"i": 4, "tr": "011000010000004", "pn": 1, "a": 0})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # no payment-less 'payment' entry
            conn.execute(text("INSERT INTO file_entries (id, file_id, batch_number, trace_number, amount_cents, "
                              "transaction_code, sec_code, kind) VALUES (5, 1, 1, '011000010000005', 5, '27', "
                              "'WEB', 'payment')"))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE prenotes SET state = 'unknown' WHERE id = 1"))
        with make_sessionmaker(engine)() as s:  # the model's default kind follows the ids it is given
            s.add(FileEntry(id=6, file_id=1, batch_number=1, trace_number="011000010000006", amount_cents=7,
                            transaction_code="22", sec_code="CCD"))
            s.commit()
            assert s.scalar(select(FileEntry.kind).where(FileEntry.trace_number == "011000010000006")) == "offset"

        downgrade_to(db_url, "0013_ops_c_originate_runs")
        with engine.connect() as conn:
            assert "prenotes" not in inspect(conn).get_table_names()
            assert {"kind", "prenote_id"}.isdisjoint(c["name"] for c in inspect(conn).get_columns("file_entries"))
            assert len(conn.execute(text("SELECT id FROM file_entries")).all()) == 3  # the prenote's entry is gone
            assert conn.execute(text("SELECT state FROM payments")).scalar() == "pending"
            assert conn.execute(text("SELECT count(*) FROM file_entries WHERE transaction_code = '28'")).scalar() == 0
        assert upgrade(db_url)[1] == head_revision()  # and up again
        with engine.connect() as conn:
            assert dict(conn.execute(text("SELECT id, kind FROM file_entries WHERE id < 3")).all()) == \
                {1: "payment", 2: "offset"}
    finally:
        engine.dispose()


def test_prenote_notices_migration_adds_the_kind_and_the_prenote_links_and_goes_back(db_url):
    """Migration 0015: a notice may be `account_not_validated` and name its prenote (one notice per
    prenote); a review resolution may name the prenote a person applied a bank entry to.
    Downgrading deletes those notices and drops both columns, leaving the other notices."""
    upgrade(db_url, "0014_web_validate_prenotes")
    keyring = Keyring([generate_secret()])
    engine = make_engine(db_url)
    notice = ("INSERT INTO notices (id, event_key, kind, member_id, plan_id, amount_owed_cents, file_name, notice_date, "
              "created_at{col}) VALUES (:i, :e, :k, 'M1', 'P1', 0, 'n.html', :d, :t{val})")
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO bank_accounts (id, routing_number, account_number_enc, key_id, account_hash, last4, "
                "account_type, holder_name, status, validation_result, created_at, updated_at) VALUES "
                "(1, '011000015', :b, :k, :h, '6789', 'checking', 'A B', 'blocked', 'invalid', :t, :t)"),
                {"b": keyring.encrypt_account("123456789"), "k": keyring.current_key_id, "h": "f" * 64, "t": T0})
            conn.execute(text(
                "INSERT INTO prenotes (id, bank_account_id, member_id, sec_code, payment_type_code, reason, state, "
                "requested_on, created_at, updated_at) VALUES (1, 1, 'M1', 'WEB', 'S', 'first use', 'returned', "
                ":d, :t, :t)"), {"d": date(2026, 12, 1), "t": T0})
            conn.execute(text(notice.format(col="", val="")),
                         {"i": 1, "e": "return:1", "k": "returned_payment", "d": date(2026, 12, 3), "t": T0})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # not a kind yet
            conn.execute(text(notice.format(col="", val="")),
                         {"i": 2, "e": "prenote:1", "k": "account_not_validated", "d": date(2026, 12, 3), "t": T0})

        assert upgrade(db_url)[1] == head_revision()
        with_prenote = notice.format(col=", prenote_id", val=", :p")
        with engine.begin() as conn:
            conn.execute(text(with_prenote), {"i": 2, "e": "prenote:1", "k": "account_not_validated",
                                              "d": date(2026, 12, 3), "t": T0, "p": 1})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one notice per prenote
            conn.execute(text(with_prenote), {"i": 3, "e": "prenote:1:again", "k": "account_not_validated",
                                              "d": date(2026, 12, 3), "t": T0, "p": 1})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # no such prenote
            conn.execute(text(with_prenote), {"i": 4, "e": "prenote:9", "k": "account_not_validated",
                                              "d": date(2026, 12, 3), "t": T0, "p": 9})
        with engine.connect() as conn:
            assert {c["name"] for c in inspect(conn).get_columns("review_resolutions")} >= {"prenote_id", "payment_id"}
            assert dict(conn.execute(text("SELECT id, kind FROM notices")).all()) == {
                1: "returned_payment", 2: "account_not_validated"}

        downgrade_to(db_url, "0014_web_validate_prenotes")
        with engine.connect() as conn:
            assert dict(conn.execute(text("SELECT id, kind FROM notices")).all()) == {1: "returned_payment"}
            assert "prenote_id" not in {c["name"] for c in inspect(conn).get_columns("notices")}
            assert "prenote_id" not in {c["name"] for c in inspect(conn).get_columns("review_resolutions")}
    finally:
        engine.dispose()


def test_coverage_activation_migration_status_and_export_tables_and_goes_back(db_url):
    """Migration 0016: `coverage_flags.status` may be `pending_activation` (flags kept on the way up:
    SQLite rebuilds the table); the export ledger tables (a change it does not know refused),
    a flag exported as new at most once; downgrading drops the ledger and makes pending flags `ok`."""
    upgrade(db_url, "0015_prenote_notices")
    engine = make_engine(db_url)
    flag = ("INSERT INTO coverage_flags (id, member_id, plan_id, status, reason_code, reason, months_owed, "
            "amount_owed_cents, grace_month, grace_months, subsidy, assessed_on, last_assessed_on, current_key, "
            "created_at) VALUES (:id, :m, 'P', :st, 'x', 'x', 0, 0, 0, 0, 'none', :d, :d, :key, :t)")
    try:
        with engine.begin() as conn:
            conn.execute(text(flag), {"id": 1, "m": "M1", "st": "at_risk", "d": date(2026, 12, 1), "key": "M1|P",
                                      "t": T0})
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(flag), {"id": 2, "m": "M2", "st": "pending_activation", "d": date(2026, 12, 1),
                                      "key": "M2|P", "t": T0})

        assert upgrade(db_url, "0016_coverage_activation_export")[1] == "0016_coverage_activation_export"
        with engine.begin() as conn:
            conn.execute(text(flag), {"id": 2, "m": "M2", "st": "pending_activation", "d": date(2026, 12, 1),
                                      "key": "M2|P", "t": T0})
            assert conn.execute(text("SELECT id, status FROM coverage_flags ORDER BY id")).all() == [
                (1, "at_risk"), (2, "pending_activation")]
            assert "ix_coverage_flags_assessed_on" in {i["name"] for i in inspect(conn).get_indexes("coverage_flags")}
            conn.execute(text("INSERT INTO coverage_exports (id, business_date, path, sha256, row_count, new_count, "
                              "through_flag_id, created_at) VALUES (1, :d, 'f.csv', '', 1, 1, 2, :t)"),
                         {"d": date(2026, 12, 2), "t": T0})
            conn.execute(text("INSERT INTO coverage_export_items (export_id, flag_id, change, reexport) "
                              "VALUES (1, 1, 'at_risk', :no)"), {"no": False})
        item = "INSERT INTO coverage_export_items (export_id, flag_id, change, reexport) VALUES (1, 1, :c, :again)"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(item), {"c": "at_risk", "again": False})  # exported as new twice
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(item), {"c": "pending", "again": True})  # not a change the export knows
        with engine.begin() as conn:
            conn.execute(text(item), {"c": "at_risk", "again": True})

        downgrade_to(db_url, "0015_prenote_notices")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, status FROM coverage_flags ORDER BY id")).all() == [
                (1, "at_risk"), (2, "ok")]
            assert not {"coverage_exports", "coverage_export_items"} & set(inspect(conn).get_table_names())
        assert upgrade(db_url)[1] == head_revision()  # and up again
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_update_room_migration_sets_and_resets_the_fill_factor(db_url):
    """Migration 0017: on PostgreSQL `bank_accounts` and `autopay_mandates` leave half of each page
    free, so the night's in-place updates of rows it just loaded stay on their page (heap-only: no
    index touched); downgrading gives the default back."""
    def options(conn) -> dict[str, list[str] | None]:
        return dict(conn.execute(text("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                                      "('bank_accounts', 'autopay_mandates', 'payments')")).all())

    upgrade(db_url, "0016_coverage_activation_export")
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert options(conn) == {"bank_accounts": None, "autopay_mandates": None, "payments": None}
        upgrade(db_url)
        with engine.connect() as conn:
            assert options(conn) == {"bank_accounts": ["fillfactor=50"], "autopay_mandates": ["fillfactor=50"],
                                     "payments": None}
        # what it is for: an update of every loaded account, in a column no index covers, stays heap-only
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO bank_accounts (routing_number, account_hash, account_number_enc, last4, "
                              "account_type, holder_name, status, validation_result, key_id, created_at, "
                              "updated_at) SELECT '011000015', md5(g::text), '\\x00'::bytea, '0000', 'checking', "
                              "'Member', 'active', 'unvalidated', 'k', :t, :t FROM generate_series(1, 2000) g"),
                         {"t": T0})
        with engine.begin() as conn:
            assert conn.execute(text("UPDATE bank_accounts SET validation_result = 'pending'")).rowcount == 2000
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
        with engine.connect() as conn:
            updated, hot = conn.execute(text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                                             "WHERE relname = 'bank_accounts'")).one()
            assert (updated, hot) == (2000, 2000)
        downgrade_to(db_url, "0016_coverage_activation_export")
        with engine.connect() as conn:
            assert options(conn) == {"bank_accounts": None, "autopay_mandates": None, "payments": None}
        assert upgrade(db_url)[1] == head_revision()
    finally:
        engine.dispose()


def _check_equalities_migration():
    import importlib

    return importlib.import_module("batch.store.migrations.versions.0018_check_equalities")


def test_check_equalities_rewrite_is_the_same_rule_and_goes_back():
    """Migration 0018's two rewrites: an IN list (NOT IN too) and its OR of equalities give the same
    answer for each listed value, a value not listed, the empty string and NULL, as SQLite itself
    evaluates them; and each rewrite undoes the other exactly."""
    import sqlite3

    mig = _check_equalities_migration()
    check = ("CHECK (ptc IN ('S', 'R', '')) CHECK (sec IS NULL OR sec IN ('WEB', 'PPD', 'TEL')) "
             "CHECK ((status IN ('active', 'suspended') AND key IS NOT NULL) OR (status NOT IN ('active', "
             "'suspended') AND key IS NULL)) CHECK (length(t) = 15) CHECK (kind = 'payment' OR t = 'offset')")
    rewritten = mig._equalities(check)
    assert " IN (" not in rewritten and "(ptc = 'S' OR ptc = 'R' OR ptc = '')" in rewritten
    assert "NOT (status = 'active' OR status = 'suspended')" in rewritten
    assert "CHECK (length(t) = 15) CHECK (kind = 'payment' OR t = 'offset')" in rewritten  # left alone
    assert mig._in_lists(rewritten) == check
    # an OR of equalities written by hand would come back as a list: why the migration compares
    assert mig._in_lists("CHECK ((kind = 'a' OR kind = 'b'))") == "CHECK (kind IN ('a', 'b'))"
    pairs = mig._pairs(check)
    assert len(pairs) == 4
    db = sqlite3.connect(":memory:")
    for old, new in pairs:
        column = new.split("(")[1].split(" ")[0]
        for value in ("S", "R", "", "WEB", "TEL", "active", "suspended", "revoked", "x", None):
            got = db.execute(f"SELECT {old.replace(column, '?', 1)}, {new.replace(column, '?')}",
                             (value,) + (value,) * new.count(" = ")).fetchone()
            assert got[0] == got[1], (old, new, value, got)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_check_equalities_migration_rewrites_sqlite_checks_and_goes_back(db_url):
    """Migration 0018 on SQLite: every CHECK of a value list becomes equalities, so an INSERT no
    longer fills a look-up table per list at each execution (executemany: each row); the rows
    stay, the checks refuse what they refused; downgrading gives back the exact stored schema."""
    import sqlite3

    path = db_url.removeprefix("sqlite:///")

    def schema() -> list[tuple]:
        with sqlite3.connect(path) as c:
            return c.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()

    def lookup_tables(table: str, columns: str) -> int:
        """Look-up tables the INSERT's program opens (SQLite's EXPLAIN)."""
        n = columns.count(",") + 1
        with sqlite3.connect(path) as c:
            program = c.execute(f"EXPLAIN INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * n)})",
                                (None,) * n).fetchall()
        return sum(op[1] == "OpenEphemeral" for op in program)

    inserts = {
        "premiums": "member_id, member_name, plan_id, coverage_month, due_date, amount_due_cents, subsidy, binder, "
                    "created_at, updated_at",
        "bank_accounts": "routing_number, account_number_enc, key_id, account_hash, last4, account_type, "
                         "holder_name, status, validation_result, created_at, updated_at",
        "autopay_mandates": "member_id, plan_id, bank_account_id, channel, authorized_at, status, active_key, "
                            "created_at, updated_at",
        "payments": "confirmation_id, channel, member_id, plan_id, coverage_month, amount_cents, bank_account_id, "
                    "submitted_at, sec_code, payment_type_code, originate_on, state, retry_number, created_at, "
                    "updated_at",
    }
    upgrade(db_url, "0017_update_room")
    keyring = Keyring([generate_secret()])
    engine = make_engine(db_url)
    account = ("INSERT INTO bank_accounts (id, routing_number, account_number_enc, key_id, account_hash, last4, "
               "account_type, holder_name, status, validation_result, created_at, updated_at) VALUES "
               "(:i, '011000015', :b, :k, :h, '6789', :ty, 'A B', 'active', 'unvalidated', :t, :t)")
    mandate = ("INSERT INTO autopay_mandates (id, member_id, plan_id, bank_account_id, channel, authorized_at, status, "
               "active_key, created_at, updated_at) VALUES (:i, :m, 'P1', 1, 'web', :t, :st, :key, :t, :t)")
    payment = ("INSERT INTO payments (id, confirmation_id, channel, member_id, plan_id, coverage_month, amount_cents, "
               "bank_account_id, submitted_at, sec_code, payment_type_code, originate_on, state, retry_number, "
               "created_at, updated_at) VALUES (:i, :c, :ch, 'M1', 'P1', :m, 100, 1, :t, 'WEB', 'S', :d, :st, 0, :t, :t)")
    try:
        with engine.begin() as conn:
            conn.execute(text(account), {"i": 1, "b": keyring.encrypt_account("123456789"), "k": keyring.current_key_id,
                                         "h": "f" * 64, "ty": "checking", "t": T0})
            conn.execute(text(mandate), {"i": 1, "m": "M1", "st": "active", "key": "M1|P1", "t": T0})
            conn.execute(text(mandate), {"i": 2, "m": "M2", "st": "revoked", "key": None, "t": T0})
            conn.execute(text(payment), {"i": 1, "c": "C1", "ch": "portal", "m": date(2027, 1, 1),
                                         "d": date(2026, 12, 1), "st": "held", "t": T0})
        before = schema()
        lists_before = {t: lookup_tables(t, c) for t, c in inserts.items()}
        assert all(lists_before.values())

        assert upgrade(db_url)[1] == head_revision()
        assert not [name for kind, name, _, sql in schema() if kind == "table" and " IN (" in sql]
        lists_after = {t: lookup_tables(t, c) for t, c in inserts.items()}
        # payments keeps one: its open re-presentment index's predicate (state IN ...), an index, not a CHECK
        assert lists_after == {"premiums": 0, "bank_accounts": 0, "autopay_mandates": 0, "payments": 1}
        assert lists_before["payments"] == 5
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, state FROM payments")).all() == [(1, "held")]
            assert conn.execute(text("SELECT id, status FROM autopay_mandates ORDER BY id")).all() == [
                (1, "active"), (2, "revoked")]
        refused = [
            (account, {"i": 2, "b": b"x", "k": "k", "h": "e" * 64, "ty": "money market", "t": T0}),
            (mandate, {"i": 3, "m": "M3", "st": "active", "key": None, "t": T0}),  # live without its key
            (mandate, {"i": 3, "m": "M3", "st": "revoked", "key": "M3|P1", "t": T0}),  # ended with a key
            (mandate, {"i": 3, "m": "M3", "st": "paused", "key": None, "t": T0}),
            (payment, {"i": 2, "c": "C2", "ch": "fax", "m": date(2027, 1, 1), "d": date(2026, 12, 1),
                       "st": "pending", "t": T0}),
            (payment, {"i": 2, "c": "C2", "ch": "portal", "m": date(2027, 1, 1), "d": date(2026, 12, 1),
                       "st": "lost", "t": T0}),
        ]
        for statement, values in refused:
            with pytest.raises(IntegrityError, match="CHECK"), engine.begin() as conn:
                conn.execute(text(statement), values)
        with engine.begin() as conn:  # and what they accepted, they accept
            conn.execute(text(mandate), {"i": 3, "m": "M3", "st": "suspended", "key": "M3|P1", "t": T0})
            conn.execute(text(payment), {"i": 2, "c": "C2", "ch": "phone", "m": date(2027, 1, 1),
                                         "d": date(2026, 12, 1), "st": "pending", "t": T0})
            conn.execute(text("DELETE FROM autopay_mandates WHERE id = 3"))
            conn.execute(text("DELETE FROM payments WHERE id = 2"))

        downgrade_to(db_url, "0017_update_room")
        assert schema() == before
        assert upgrade(db_url)[1] == head_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_check_equalities_migration_stops_on_a_schema_it_does_not_expect(db_url):
    """A stored CREATE TABLE that the rewrite could not give back exactly (here a table already
    holding an OR of equalities beside an IN list) stops the migration before anything is written:
    the database stays at 0017 with its schema as it was."""
    import sqlite3

    path = db_url.removeprefix("sqlite:///")
    upgrade(db_url, "0017_update_room")
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE odd (x TEXT CHECK ((x = 'a' OR x = 'b')), y TEXT CHECK (y IN ('a', 'b')))")
        before = c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    with pytest.raises(MigrationRefused, match="migration 0018: table odd: its stored CREATE TABLE is not as this "
                                               "migration expects; nothing changed"):
        upgrade(db_url)
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == before
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [("0017_update_room",)]


def test_autopay_premium_check_migration_replaces_the_second_foreign_key_and_goes_back(db_url, monkeypatch):
    """Migration 0019: `payments.autopay_premium_id` must be the payment's own premium (a CHECK)
    instead of a second foreign key to premiums; the premium's existence is still the database's
    (premium_id's foreign key). Rows stay; downgrading gives the foreign key back (on SQLite the
    exact stored schema); an upgrade over a payment the CHECK would refuse stops, nothing changed."""
    upgrade(db_url, "0018_check_equalities")
    keyring = Keyring([generate_secret()])
    engine = make_engine(db_url)
    premium = ("INSERT INTO premiums (id, member_id, member_name, plan_id, coverage_month, due_date, amount_due_cents, "
               "subsidy, binder, created_at, updated_at) VALUES (:i, :m, 'A B', 'P1', :mo, :d, 10000, 'none', :b, :t, :t)")
    pull = ("INSERT INTO payments (id, confirmation_id, channel, member_id, plan_id, coverage_month, premium_id, "
            "amount_cents, bank_account_id, submitted_at, sec_code, payment_type_code, originate_on, state, "
            "autopay_premium_id, retry_number, created_at, updated_at) VALUES (:i, :c, :ch, 'M1', 'P1', :mo, :p, 100, "
            "1, :t, 'WEB', 'R', :d, 'pending', :ap, 0, :t, :t)")
    month, due = date(2027, 1, 1), date(2026, 12, 23)

    def values(i, p, ap, ch="autopay"):
        return {"i": i, "c": f"AP-{i}", "ch": ch, "mo": month, "p": p, "ap": ap, "d": due, "t": T0}

    def foreign_keys() -> set[tuple]:
        with engine.connect() as conn:
            return {(tuple(fk["constrained_columns"]), fk["referred_table"]) for fk in inspect(conn).get_foreign_keys("payments")}

    def stored() -> list[tuple]:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                return conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY name")).all()
            return conn.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                     "WHERE conrelid = 'payments'::regclass ORDER BY conname")).all()

    try:
        with engine.begin() as conn:
            for i in (1, 2, 3):
                conn.execute(text(premium), {"i": i, "m": f"M{i}", "mo": month, "d": due, "b": False, "t": T0})
            conn.execute(text(
                "INSERT INTO bank_accounts (id, routing_number, account_number_enc, key_id, account_hash, last4, "
                "account_type, holder_name, status, validation_result, created_at, updated_at) VALUES "
                "(1, '011000015', :b, :k, :h, '6789', 'checking', 'A B', 'active', 'unvalidated', :t, :t)"),
                {"b": keyring.encrypt_account("123456789"), "k": keyring.current_key_id, "h": "f" * 64, "t": T0})
            conn.execute(text(pull), values(1, 1, 1))
            conn.execute(text(pull), values(2, 2, None, ch="portal"))
            conn.execute(text(pull), values(3, 2, 3))  # the AutoPay premium of another premium: 0018 lets it in
        before = stored()
        with pytest.raises(MigrationRefused, match="migration 0019: payments whose autopay_premium_id is not their "
                                                   "premium_id: 1; nothing changed"):
            upgrade(db_url)
        assert stored() == before and current_revision(engine) == "0018_check_equalities"
        monkeypatch.setenv("ACHBATCH_DATABASE__URL", db_url)  # what a person sees: one line, exit 2
        refusal = CliRunner().invoke(cli, ["db", "upgrade"])
        assert refusal.exit_code == 2 and "Traceback" not in refusal.output
        assert refusal.output.strip().splitlines() == [
            "achbatch: migration 0019: payments whose autopay_premium_id is not their premium_id: 1; nothing changed; "
            "look at them before upgrading (SELECT id, premium_id, autopay_premium_id FROM payments WHERE "
            "autopay_premium_id <> premium_id)"]
        assert stored() == before and current_revision(engine) == "0018_check_equalities"
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM payments WHERE id = 3"))
        before = stored()

        assert upgrade(db_url)[1] == head_revision()
        assert (("autopay_premium_id",), "premiums") not in foreign_keys()
        assert {(("premium_id",), "premiums"), (("bank_account_id",), "bank_accounts")} <= foreign_keys()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, premium_id, autopay_premium_id FROM payments ORDER BY id")).all() == [
                (1, 1, 1), (2, 2, None)]
        with pytest.raises(IntegrityError, match="(?i)check"), engine.begin() as conn:
            conn.execute(text(pull), values(3, 2, 3))  # not its own premium
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(pull), values(3, 99, 99))  # its own, but no such premium: premium_id's foreign key
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(pull), values(3, 1, 1))  # a second pull of premium 1: still unique
        with engine.begin() as conn:
            conn.execute(text(pull), values(3, 2, 2))
            conn.execute(text("DELETE FROM payments WHERE id = 3"))

        downgrade_to(db_url, "0018_check_equalities")
        assert (("autopay_premium_id",), "premiums") in foreign_keys()
        assert stored() == before
        assert upgrade(db_url)[1] == head_revision()
    finally:
        engine.dispose()
