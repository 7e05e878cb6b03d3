"""Origination: the day's payments become NACHA files, each payment exactly once, on SQLite and
PostgreSQL, through re-runs, crashes at every step boundary and concurrent runs."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from batch.store.crypto import Keyring, generate_secret
from batch.store.db import make_engine, make_sessionmaker
from batch.store.models import BankAccount, FileEntry, NachaFile, Payment, Premium
from batch.collect.origination import Company, Limits, OriginationError, file_name_for, originate, stored_bytes
from nacha.calendar import is_banking_day, next_banking_day
from nacha.reader import read_file

ROOT = Path(__file__).resolve().parents[2]
FILE_DATE = date(2026, 12, 1)  # Tuesday, banking day; effective Wednesday 2026-12-02
COMPANY = Company("Health Connector", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK",
                  "011000015", settlement_routing="021000021", settlement_account="99887766")
NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
ROUTINGS = ["011000015", "021000021", "026009593", "011401533", "091000019"]
# (channel, sec, payment type)
KINDS = [("portal", "WEB", "S"), ("guest", "WEB", "S"), ("autopay", "WEB", "R"), ("autopay", "PPD", ""),
         ("phone", "TEL", "S")]


def account_number(i: int) -> str:
    return f"{7300000000 + i * 7919}"


def seed(sessions, keyring: Keyring, n: int, *, originate_on=FILE_DATE, start=0, amount=lambda i: 1000 + i):
    """n pending payments, one bank account each, cycling through the payment kinds."""
    with sessions() as s, s.begin():
        for i in range(start, start + n):
            routing = ROUTINGS[i % len(ROUTINGS)]
            acct = account_number(i)
            ba = BankAccount(routing_number=routing, account_number_enc=keyring.encrypt_account(acct),
                             account_hash=keyring.account_hash(routing, acct), last4=acct[-4:],
                             account_type="savings" if i % 3 == 0 else "checking", holder_name=f"Member {i}")
            s.add(ba)
            s.flush()
            channel, sec, ptc = KINDS[i % len(KINDS)]
            s.add(Payment(confirmation_id=f"C-{i}", channel=channel, member_id=f"M{i:06d}", plan_id="HLTH-1",
                          coverage_month=date(2027, 1, 1), amount_cents=amount(i), bank_account_id=ba.id,
                          submitted_at=NOW, sec_code=sec, payment_type_code=ptc, originate_on=originate_on))


def run(sessions, keyring, outbox, d=FILE_DATE, **kw):
    limits = kw.pop("limits", Limits())
    return originate(sessions, keyring, COMPANY, limits, d, outbox, file_time="2300", **kw)


def entries_by_payment(sessions) -> dict[int, int]:
    with sessions() as s:
        rows = s.execute(select(FileEntry.payment_id, func.count()).group_by(FileEntry.payment_id)).all()
    return {pid: n for pid, n in rows if pid is not None}


def test_originate_builds_one_valid_file_with_every_payment(sessions, keyring, tmp_path):
    seed(sessions, keyring, 25)
    outbox = tmp_path / "outbox"
    r = run(sessions, keyring, outbox)
    assert r.payments == 25 and len(r.files) == 1
    assert r.effective_date == next_banking_day(FILE_DATE) == date(2026, 12, 2)
    path = outbox / "ACH-20261201-A.ach"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    f = read_file(path, "strict")
    assert f.header.file_id_modifier == "A" and f.header.file_creation_date == "261201"
    # One batch per SEC code / payment type / description, debits only (225), effective next banking day.
    keys = [(b.header.standard_entry_class_code, b.header.company_entry_description) for b in f.batches]
    assert keys == [("WEB", "PREMIUM"), ("WEB", "PREMIUM"), ("PPD", "PREMIUM"), ("TEL", "PREMIUM")]
    assert all(b.header.service_class_code == "225" and b.header.effective_entry_date == "261202" for b in f.batches)
    web_types = [{e.record.payment_type_code for e in b.entries} for b in f.batches[:2]]
    assert sorted(map(sorted, web_types)) == [["R"], ["S"]]
    traces = [e.record.trace_number for e in f.entries()]
    assert all(t.startswith("01100001") for t in traces)
    assert len(set(traces)) == 25
    with sessions() as s:
        pays = {p.id: p for p in s.scalars(select(Payment))}
        fe = {e.trace_number: e for e in s.scalars(select(FileEntry))}
        row = s.scalars(select(NachaFile).options(selectinload(NachaFile.content))).one()
    for e in f.entries():
        rec = e.record
        p = pays[fe[rec.trace_number].payment_id]
        assert rec.amount == p.amount_cents
        assert rec.individual_identification_number == p.member_id
        i = int(p.confirmation_id[2:])
        assert rec.dfi_account_number == account_number(i)
        assert rec.transaction_code == ("37" if i % 3 == 0 else "27")
        assert rec.receiving_dfi_identification + rec.check_digit == ROUTINGS[i % len(ROUTINGS)]
    assert all(p.state == "in_file" for p in pays.values())
    data = path.read_bytes()
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert stored_bytes(keyring, row) == data
    assert row.total_debit_cents == sum(p.amount_cents for p in pays.values())
    # The file's bytes are stored encrypted: no account number in the column.
    assert account_number(3).encode() not in row.content_enc


def test_rerun_for_same_date_builds_nothing_new(sessions, keyring, tmp_path):
    seed(sessions, keyring, 7)
    outbox = tmp_path / "outbox"
    first = run(sessions, keyring, outbox)
    before = sorted(os.listdir(outbox))
    again = run(sessions, keyring, outbox)
    assert first.payments == 7 and again.payments == 0 and again.files == []
    assert sorted(os.listdir(outbox)) == before
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(NachaFile)) == 1


def test_later_payments_get_the_next_file_id_modifier_and_fresh_traces(sessions, keyring, tmp_path):
    outbox = tmp_path / "outbox"
    seed(sessions, keyring, 3)
    a = run(sessions, keyring, outbox)
    seed(sessions, keyring, 2, start=100)
    b = run(sessions, keyring, outbox)
    assert [f.file_id_modifier for f in a.files + b.files] == ["A", "B"]
    ta = [e.record.trace_number for e in read_file(outbox / "ACH-20261201-A.ach").entries()]
    tb = [e.record.trace_number for e in read_file(outbox / "ACH-20261201-B.ach").entries()]
    assert max(ta) < min(tb)


def test_a_37th_file_in_a_day_is_refused(sessions, keyring, tmp_path):
    with sessions() as s, s.begin():
        for m in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
            s.add(NachaFile(file_date=FILE_DATE, file_id_modifier=m, file_name=file_name_for(FILE_DATE, m),
                            sha256="0" * 64, content_enc=b"x", entry_count=0, total_debit_cents=0,
                            total_credit_cents=0, state="sent"))
    seed(sessions, keyring, 2)
    with pytest.raises(OriginationError, match="no File ID Modifier left"):
        run(sessions, keyring, tmp_path / "outbox")
    with sessions() as s:  # nothing claimed
        assert {p.state for p in s.scalars(select(Payment))} == {"pending"}
        assert s.scalar(select(func.count()).select_from(FileEntry)) == 0


def test_not_a_banking_day_builds_nothing(sessions, keyring, tmp_path):
    seed(sessions, keyring, 2, originate_on=date(2026, 11, 26))
    thanksgiving = date(2026, 11, 26)
    assert not is_banking_day(thanksgiving)
    r = run(sessions, keyring, tmp_path / "outbox", d=thanksgiving)
    assert r.files == [] and "not a Federal Reserve banking day" in r.skipped_reason
    with sessions() as s:
        assert {p.state for p in s.scalars(select(Payment))} == {"pending"}


def test_future_payments_wait_for_their_date(sessions, keyring, tmp_path):
    seed(sessions, keyring, 2, originate_on=date(2026, 12, 3))
    assert run(sessions, keyring, tmp_path / "o").payments == 0
    assert run(sessions, keyring, tmp_path / "o", d=date(2026, 12, 3)).payments == 2


def test_dry_run_changes_nothing(sessions, keyring, tmp_path):
    seed(sessions, keyring, 6)
    outbox = tmp_path / "outbox"
    r = run(sessions, keyring, outbox, dry_run=True)
    assert r.dry_run and r.payments == 6 and len(r.files) == 1
    assert not outbox.exists() or os.listdir(outbox) == []
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(FileEntry)) == 0
        assert s.scalar(select(func.count()).select_from(NachaFile)) == 0
        assert {p.state for p in s.scalars(select(Payment))} == {"pending"}
    # ...and a real run afterwards builds the same payments.
    assert run(sessions, keyring, outbox).payments == 6


def test_files_split_at_the_entry_and_dollar_limits(sessions, keyring, tmp_path):
    seed(sessions, keyring, 10, amount=lambda i: 10_000)
    outbox = tmp_path / "outbox"
    r = run(sessions, keyring, outbox, limits=Limits(max_entries_per_file=4, max_cents_per_file=30_000))
    # at most 3 entries of $100 fit under $300; 10 payments -> 4 files (3, 3, 3, 1)
    assert [f.entries for f in r.files] == [3, 3, 3, 1]
    assert [f.file_id_modifier for f in r.files] == ["A", "B", "C", "D"]
    seen = []
    for f in r.files:
        nf = read_file(outbox / f.file_name, "strict")
        assert nf.control.total_debit_amount <= 30_000
        seen += [e.record.trace_number for e in nf.entries()]
    assert len(seen) == len(set(seen)) == 10
    assert set(entries_by_payment(sessions).values()) == {1} and len(entries_by_payment(sessions)) == 10


def test_balanced_file_offsets_the_debits_to_the_settlement_account(sessions, keyring, tmp_path):
    seed(sessions, keyring, 5)
    outbox = tmp_path / "outbox"
    r = run(sessions, keyring, outbox, limits=Limits(balanced=True))
    f = read_file(outbox / r.files[0].file_name, "strict")
    assert f.control.total_debit_amount == f.control.total_credit_amount > 0
    offset = f.batches[-1]
    assert offset.header.standard_entry_class_code == "CCD" and offset.header.service_class_code == "220"
    (e,) = offset.entries
    assert e.record.transaction_code == "22" and e.record.dfi_account_number == "99887766"
    assert e.record.receiving_dfi_identification + e.record.check_digit == "021000021"
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(FileEntry).where(FileEntry.payment_id.is_(None))) == 1


def test_a_balanced_file_is_summarised_by_its_entry_records_offset_included(sessions, keyring, tmp_path):
    # issue 16: a balanced file of 3 entry records (2 debits + the offset) was "2 entries"
    seed(sessions, keyring, 2)
    outbox = tmp_path / "outbox"
    r = run(sessions, keyring, outbox, limits=Limits(balanced=True))
    (built,) = r.files
    records = list(read_file(outbox / built.file_name, "strict").entries())
    assert len(records) == 3
    assert (built.entries, built.offset_entries, built.payments) == (3, 1, 2)
    assert built.entries_words() == "3 entries (2 payments + 1 offset entry)"
    assert (r.entries, r.payments, r.entries_words()) == (3, 2, "3 entries (2 payments + 1 offset entry)")
    unbalanced = run(sessions, keyring, tmp_path / "o2", d=next_banking_day(FILE_DATE))
    assert unbalanced.files == [] or unbalanced.files[0].offset_entries == 0


def test_blocked_accounts_are_held_not_debited(sessions, keyring, tmp_path):
    seed(sessions, keyring, 4)
    with sessions() as s, s.begin():
        ba = s.scalars(select(BankAccount).order_by(BankAccount.id)).first()
        ba.status = "blocked"
    r = run(sessions, keyring, tmp_path / "o")
    assert r.payments == 3 and r.held == 1


# -- crashes at every step boundary -------------------------------------------------------------------
CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from datetime import date
    sys.path.insert(0, {root!r})
    from batch.store.crypto import Keyring
    from batch.store.db import make_engine, make_sessionmaker
    from batch.collect.origination import Company, Limits, originate
    url, secret, outbox, crash_at = sys.argv[1:5]
    def on_step(name):
        if name == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if crash_at == "linger" and name == "locked":
            import time
            time.sleep(1.5)  # hold the transaction open so that concurrent runs really overlap
    company = Company("Health Connector", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK",
                      "011000015")
    sessions = make_sessionmaker(make_engine(url))
    r = originate(sessions, Keyring([secret]), company, Limits(max_entries_per_file=int(sys.argv[5])),
                  date(2026, 12, 1), outbox, file_time="2300", on_step=on_step)
    print(r.payments, len(r.files))
""")


def _origination_process(url, secret, outbox, crash_at, max_entries=1000):
    script = CRASH_SCRIPT.format(root=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", script, url, secret, str(outbox), crash_at, str(max_entries)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_exactly_once(sessions, keyring, outbox: Path, n: int):
    with sessions() as s:
        per_payment = entries_by_payment(sessions)
        files = list(s.scalars(select(NachaFile)))
        states = {p.state for p in s.scalars(select(Payment))}
    assert len(per_payment) == n and set(per_payment.values()) == {1}, "each payment in exactly one entry"
    assert states == {"in_file"}
    # The outbox holds exactly the recorded files, byte for byte, and no temporary file.
    assert sorted(os.listdir(outbox)) == sorted(f.file_name for f in files)
    traces_in_files = []
    for row in files:
        data = (outbox / row.file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        traces_in_files += [e.record.trace_number for e in read_file(data, "strict").entries()]
    assert len(traces_in_files) == len(set(traces_in_files)) == n


@pytest.mark.parametrize("crash_at", ["locked", "claimed", "written", "committed", "renamed"])
def test_a_crash_at_any_step_then_a_rerun_debits_each_payment_exactly_once(migrated_url, tmp_path, crash_at):
    secret = generate_secret()
    keyring = Keyring([secret])
    engine = make_engine(migrated_url)
    sessions = make_sessionmaker(engine)
    try:
        seed(sessions, keyring, 12)
        outbox = tmp_path / "outbox"
        p = _origination_process(migrated_url, secret, outbox, crash_at, max_entries=5)
        out, err = p.communicate(timeout=120)
        assert p.returncode == -signal.SIGKILL, err
        with sessions() as s:
            committed = s.scalar(select(func.count()).select_from(NachaFile))
        assert committed == (3 if crash_at in ("committed", "renamed") else 0)
        # The re-run completes the work without building anything twice.
        r = run(sessions, keyring, outbox, limits=Limits(max_entries_per_file=5))
        if crash_at in ("committed", "renamed"):
            assert r.payments == 0 and r.files == []
            if crash_at == "committed":
                assert sorted(r.repaired) == [file_name_for(FILE_DATE, m) for m in "ABC"]
        else:
            assert r.payments == 12
        _check_exactly_once(sessions, keyring, outbox, 12)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_originations_at_once_on_postgresql_act_as_one(pg_url, tmp_path):
    from batch.store.db import upgrade

    upgrade(pg_url)
    secret = generate_secret()
    keyring = Keyring([secret])
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    try:
        seed(sessions, keyring, 40)
        outbox = tmp_path / "outbox"
        procs = [_origination_process(pg_url, secret, outbox, "linger") for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        # One built the file; the other either found the origination lock held (LockHeld, before
        # it touched anything: tests/integration/test_originate_concurrency.py) or, started after
        # the first had finished, found nothing left.
        built = [o for p, o in zip(procs, outs) if p.returncode == 0 and o[0].split() == ["40", "1"]]
        others = [o for p, o in zip(procs, outs) if not (p.returncode == 0 and o[0].split() == ["40", "1"])]
        assert len(built) == 1 and len(others) == 1, outs
        assert others[0][0].split() == ["0", "0"] or "LockHeld" in others[0][1], others
        _check_exactly_once(sessions, keyring, outbox, 40)
    finally:
        engine.dispose()


def test_no_account_number_in_the_database_after_origination(sessions, keyring, tmp_path, migrated_url):
    seed(sessions, keyring, 5)
    run(sessions, keyring, tmp_path / "o")
    with sessions() as s:
        dump = []
        for table in ("bank_accounts", "payments", "nacha_files", "file_entries"):
            from sqlalchemy import text
            for row in s.execute(text(f"SELECT * FROM {table}")):
                dump.append(repr(tuple(row)))
    blob = "\n".join(dump)
    for i in range(5):
        assert account_number(i) not in blob
