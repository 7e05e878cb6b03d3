"""The import path's bulk load (issue 17): `batch.store.db.bulk_insert` stores exactly what an ORM
insert stores, on SQLite and PostgreSQL; the payments import derives each row's keyed account hash
once; `benchmarks/bench_ledger.py` runs end to end and prints every step against its floor. No test
here measures time (the machine is shared: ratios are for the benchmark, never asserted)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from batch.collect.imports import HEADERS, import_payments, import_premiums
from batch.store import crypto
from batch.store.crypto import Keyring
from batch.store.db import bulk_insert, in_set
from batch.store.models import BankAccount, Payment, Premium

ROOT = Path(__file__).resolve().parents[2]
EST = timezone(timedelta(hours=-5))


def _premium(i: int, created: datetime) -> dict:
    return {"member_id": f"M{i}", "member_name": f"Name {i}", "plan_id": "P1", "coverage_month": date(2027, 1, 1),
            "amount_due_cents": 100 + i, "subsidy": "aptc", "binder": bool(i % 2), "due_date": date(2026, 12, 23),
            "created_at": created, "updated_at": created}


@pytest.mark.parametrize("microsecond", [123456, 0])  # 0: SQLite's text must still end in .000000
def test_bulk_insert_stores_what_the_orm_stores(sessions, microsecond):
    created = datetime(2026, 12, 1, 10, 30, 15, microsecond, tzinfo=EST)  # not UTC: normalised on the way in
    with sessions() as s, s.begin():
        s.add(Premium(**_premium(1, created)))
    with sessions() as s, s.begin():
        bulk_insert(s.connection(), Premium.__table__, [_premium(2, created), _premium(3, created)])
    with sessions() as s:
        got = {p.member_id: p for p in s.scalars(select(Premium))}
        cols = [c.name for c in Premium.__table__.columns if c.name not in ("id", "member_id", "member_name",
                                                                              "amount_due_cents", "binder")]
        for name in cols:
            assert getattr(got["M2"], name) == getattr(got["M1"], name), name
        assert got["M2"].created_at == created and got["M2"].created_at.tzinfo == timezone.utc
        assert (got["M2"].binder, got["M3"].binder) == (False, True)
        assert got["M3"].amount_due_cents == 103
        # the stored text itself (SQLite) or value (PostgreSQL) equals the ORM's, so queries compare alike
        raw = s.execute(select(Premium.__table__.c.created_at.cast(Premium.__table__.c.member_id.type))
                        .order_by(Premium.id)).scalars().all()
        assert raw[0] == raw[1] == raw[2]


def test_bulk_insert_of_tuples_stores_what_dicts_store(sessions):
    created = datetime(2026, 12, 1, 10, 30, 15, 5, tzinfo=EST)
    names = list(_premium(0, created))
    with sessions() as s, s.begin():
        bulk_insert(s.connection(), Premium.__table__, [_premium(1, created)])
        bulk_insert(s.connection(), Premium.__table__, [tuple(_premium(i, created).values()) for i in (2, 3)], names)
    with sessions() as s:
        got = {p.member_id: p for p in s.scalars(select(Premium))}
        for name in names:
            if name not in ("member_id", "member_name", "amount_due_cents", "binder"):
                assert getattr(got["M2"], name) == getattr(got["M1"], name), name
        assert (got["M2"].member_name, got["M3"].amount_due_cents, got["M3"].binder) == ("Name 2", 103, True)


def test_in_set_selects_what_an_in_list_selects(sessions):
    """One parameter (PostgreSQL `= ANY(array)`, SQLite `json_each`) and SQLAlchemy's own IN list
    select the same rows: strings, dates, integers, NULL among the values, none, thousands."""
    created = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = [_premium(i, created) for i in range(1, 3001)]
    for r in rows[::2]:
        r["coverage_month"] = date(2027, 2, 1)
    # PostgreSQL reads strings from the text of an array literal: what its syntax could misread
    tricky = ['a"b', "c\\d", "e,f", "{g}", " h ", "NULL", "", "i'j", 'k\\"l', "\u00e9t\u00e9"]
    for i, member in enumerate(tricky):
        rows.append(_premium(5000 + i, created) | {"member_id": member})
    with sessions() as s, s.begin():
        bulk_insert(s.connection(), Premium.__table__, rows)
    with sessions() as s:
        ids = sorted(s.scalars(select(Premium.id)))
        for one in tricky:  # each alone, and all together below
            assert [m for (m,) in s.execute(select(Premium.member_id).where(in_set(Premium.member_id, [one])))] == [one]
        for column, values in ((Premium.member_id, [f"M{i}" for i in range(0, 4000, 3)] + ["x'y", None]),
                               (Premium.member_id, tricky + [None, "absent"]),
                               (Premium.member_id, ["NULL", None]),
                               (Premium.coverage_month, [date(2027, 2, 1), date(2030, 1, 1)]),
                               (Premium.id, ids[::7] + [10**12]),
                               (Premium.member_id, [])):
            want = sorted(s.scalars(select(Premium.id).where(column.in_([v for v in values if v is not None]))))
            got = sorted(s.scalars(select(Premium.id).where(in_set(column, values))))
            assert got == want and (want or not values), column
        assert len(s.scalars(select(Premium.id).where(in_set(Premium.coverage_month, [date(2027, 2, 1)]))).all()) == 1500


def test_bulk_insert_refuses_naive_times_and_unnamed_python_defaults(sessions):
    with sessions() as s, s.begin():
        with pytest.raises(Exception, match="naive datetime"):
            bulk_insert(s.connection(), Premium.__table__, [_premium(1, datetime(2026, 12, 1, 10))])
    row = _premium(2, datetime(2026, 12, 1, tzinfo=timezone.utc))
    del row["created_at"]  # default=utcnow in the model: a bulk load must name it
    with sessions() as s, s.begin():
        with pytest.raises(ValueError, match="created_at"):
            bulk_insert(s.connection(), Premium.__table__, [row])


def test_bulk_insert_raises_sqlalchemy_errors(sessions):
    """A unique key taken (a concurrent import of the same rows) is SQLAlchemy's IntegrityError, as
    with any insert: `achbatch import` turns it into 'safe to run it again' (exit 75)."""
    from sqlalchemy.exc import IntegrityError

    created = datetime(2026, 12, 1, tzinfo=timezone.utc)
    with sessions() as s, s.begin():
        bulk_insert(s.connection(), Premium.__table__, [_premium(1, created)])
    with pytest.raises(IntegrityError):
        with sessions() as s, s.begin():
            bulk_insert(s.connection(), Premium.__table__, [_premium(2, created), _premium(1, created)])
    with sessions() as s:
        assert sorted(s.scalars(select(Premium.member_id))) == ["M1"]  # the failed chunk rolled back whole


def _payments_csv(path: Path, n: int) -> Path:
    lines = [",".join(HEADERS["payments"])]
    for i in range(n):
        lines.append(f"PC-{i},2026-12-01T09:00:00-05:00,{('portal', 'phone')[i % 2]},M{i},P1,2027-01,12.34,"
                     f"011000015,{4000000 + i},{('checking', 'savings')[i % 2]},Holder {i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_payments_import_hashes_each_account_once_and_stores_key_and_hash(sessions, tmp_path, monkeypatch):
    keyring = Keyring([bytes(range(32))])
    calls = []
    real = crypto._Key.account_hash

    def counting(self, routing, account):
        calls.append(account)
        return real(self, routing, account)

    monkeypatch.setattr(crypto._Key, "account_hash", counting)
    result = import_payments(sessions, _payments_csv(tmp_path / "p.csv", 30), keyring=keyring, timezone="America/New_York")
    assert (result.loaded, result.rejected) == (30, [])
    # one keyed hash per row (the look-up's, reused for the new account), not one more per new account
    assert sorted(calls) == sorted(str(4000000 + i) for i in range(30))
    monkeypatch.undo()
    with sessions() as s:
        accounts = s.scalars(select(BankAccount).order_by(BankAccount.id)).all()
        assert len(accounts) == 30
        for a in accounts:
            number = keyring.decrypt_account(a.account_number_enc)
            assert a.account_hash == keyring.account_hash(a.routing_number, number)
            assert a.key_id == keyring.current_key_id and a.last4 == number[-4:]
        pays = {p.confirmation_id: p for p in s.scalars(select(Payment))}
        assert pays["PC-7"].bank_account_id == next(a.id for a in accounts
                                                    if keyring.decrypt_account(a.account_number_enc) == "4000007")
        assert pays["PC-7"].submitted_at == datetime(2026, 12, 1, 14, tzinfo=timezone.utc)
        assert (pays["PC-7"].sec_code, pays["PC-7"].originate_on, pays["PC-7"].state) == ("TEL", date(2026, 12, 1),
                                                                                           "pending")
    # idempotent: the same file again changes nothing
    again = import_payments(sessions, tmp_path / "p.csv", keyring=keyring, timezone="America/New_York")
    assert (again.loaded, again.unchanged, again.rejected) == (0, 30, [])


def test_premiums_import_larger_than_a_chunk_loads_every_row_once(sessions, tmp_path):
    lines = [",".join(HEADERS["premiums"])]
    lines += [f"M{i},Name {i},P1,2027-01,{10 + i}.00,none,no" for i in range(25)]
    lines.insert(7, "M3,Name 3,P1,2027-01,99.00,none,no")  # a later value of line 5's key: applied after it
    path = tmp_path / "premiums.csv"
    path.write_text("\n".join(lines) + "\n")
    r = import_premiums(sessions, path, chunk_size=10)
    assert (r.loaded, r.updated, r.rejected) == (25, 1, [])
    with sessions() as s:
        amounts = {p.member_id: p.amount_due_cents for p in s.scalars(select(Premium))}
    assert len(amounts) == 25 and amounts["M3"] == 9900 and amounts["M24"] == 3400


def test_bench_ledger_prints_every_step_against_its_floor(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_") or k == "ACHBATCH_TEST_PG_URL"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ledger.py"), "--payments", "30"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "30 payments rows: 30 loaded, 0 updated, 0 unchanged, 0 rejected" in out
    assert "30 premiums rows: 30 loaded" in out and "30 autopay rows: 30 loaded" in out
    assert "30 pulls created" in out
    for step in ("import premiums", "import payments", "originate", "send", "import autopay", "autopay schedule"):
        table = out.split("achbatch s", 1)[-1]  # the table, after its header
        line = next((ln for ln in table.splitlines() if ln.strip().startswith(step + " ")), None)
        assert line is not None, f"no line for {step}:\n{out}"
        ratios = [t for t in line.split() if t.endswith("x") and t[:-1].replace(".", "", 1).isdigit()]
        assert len(ratios) == 2, line  # wall and cpu, each a number (no nan: every step has its floor)
    # the imports' floor once more in achbatch's own tables, and the start-up every step pays
    assert "the same floor in achbatch tables" in out, out
    schema = out.split("the same floor in achbatch tables", 1)[1]
    for step in ("import premiums", "import payments", "autopay schedule"):
        line = next((ln for ln in schema.splitlines() if ln.strip().startswith(step + " ")), None)
        assert line is not None, f"no floor in our tables for {step}:\n{out}"
        assert len([t for t in line.split() if t.endswith("x") and t[:-1].replace(".", "", 1).isdigit()]) == 2, line
    assert "start-up of an achbatch command (an import of a header-only file, best of 3): " in out


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_copy_rows_binary_and_text_store_the_same(engine):
    """PostgreSQL COPY: in binary when every column's type allows it, as text otherwise (here a
    numeric and a char column: psycopg has no binary writer for char); both store exactly the
    values given, NULLs and edge values included."""
    from batch.store import db as store_db

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE copy_probe (i2 smallint, i4 integer, i8 bigint, t text, v varchar(20), "
                             "b bytea, d date, ts timestamptz, f boolean)")
        conn.exec_driver_sql("CREATE TABLE copy_probe_text (i8 bigint, t text, n numeric, c char(3))")
    when = datetime(2026, 12, 1, 23, 59, 59, 999999, tzinfo=timezone.utc)
    rows = [(1, 2, 3, "plain", "x", b"\x00\x01\\x\xff", date(2026, 12, 1), when, True),
            (-32768, -2**31, -2**63, 'quote " back \\ tab\t nl\n', "", b"", date(1, 1, 1),
             datetime(1970, 1, 1, tzinfo=timezone.utc), False),
            (None, None, None, None, None, None, None, None, None),
            (32767, 2**31 - 1, 2**63 - 1, "\u00e9t\u00e9 \u20ac", "NULL", b"\\N", date(9999, 12, 31),
             datetime(2026, 6, 1, 12, tzinfo=timezone(timedelta(hours=-4))), True)]
    cols = ("i2", "i4", "i8", "t", "v", "b", "d", "ts", "f")
    with engine.begin() as conn:
        store_db.copy_rows(conn, "copy_probe", cols, rows)
        store_db.copy_rows(conn, "copy_probe_text", ("i8", "t", "n", "c"),
                           [(7, "\\N", 1, "ab"), (None, "a\tb", None, None)])
    raw_key = [k for k in store_db._COPY_TYPES if k[3] == "copy_probe"][0]
    assert store_db._COPY_TYPES[raw_key] == ("int2", "int4", "int8", "text", "varchar", "bytea", "date",
                                             "timestamptz", "bool")  # binary
    assert [v for k, v in store_db._COPY_TYPES.items() if k[3] == "copy_probe_text"] == [None]  # text
    with engine.connect() as conn:
        got = conn.exec_driver_sql(f"SELECT {', '.join(cols)} FROM copy_probe ORDER BY ctid").all()
        assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got] == rows
        assert conn.exec_driver_sql("SELECT i8, t, n, c FROM copy_probe_text ORDER BY ctid").all() == [
            (7, "\\N", 1, "ab "), (None, "a\tb", None, None)]
