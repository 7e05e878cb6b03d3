"""Coverage activation and the coverage export, on SQLite and PostgreSQL: a held payment counts for
nothing (and from its release day once released); the export of standing changes (each change once,
the ledger, `since` re-exports). The command and the nightly file: tests/e2e/test_coverage_export_cli.py."""
from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from batch.collect.coverage import assess_coverage, policy_facts, standings
from batch.collect.coverage_export import EXPORT_COLUMNS, export_changes
from batch.store.models import (
    BankAccount, CoverageExport, CoverageExportItem, CoverageFlag, FileEntry, NachaFile, Payment, Premium,
)
from test_validation import FILE_DATE, VALID_FROM, World

D = date
JAN, FEB = D(2027, 1, 1), D(2027, 2, 1)
UTC = timezone.utc


# -- a held payment --------------------------------------------------------------------------------

def _binder(world: World, pid: int) -> tuple[str, str]:
    with world.sessions() as s, s.begin():
        p = s.get(Payment, pid)
        s.execute(update(Premium).where(Premium.id == p.premium_id).values(binder=True))
        return p.member_id, p.plan_id


def _standing(sessions, key, on):
    return dict(standings(sessions, on))[key]


@pytest.fixture
def world(sessions, keyring, tmp_path):
    return World(sessions, keyring, tmp_path)


def test_a_binder_whose_only_payment_is_held_past_its_due_date_is_not_started(world):
    pid, _acct = world.payment("portal")  # JAN binder, due 2026-12-23; first use of a WEB account
    key = _binder(world, pid)
    world.originate()  # held, its account prenoted
    assert world.get(Payment, pid).state == "held"
    with world.sessions() as s:
        assert policy_facts(s.connection(), [key], None)[key][1] == []  # not made: no payment fact
    st = _standing(world.sessions, key, D(2026, 12, 24))
    assert (st.status, st.reason_code, st.months_owed, st.amount_owed_cents) == ("not_started", "binder_unpaid", 1,
                                                                                  10000)
    # before its due date the binder is simply not paid yet
    assert _standing(world.sessions, key, D(2026, 12, 2)).reason_code == "binder_not_due"


def test_a_held_payment_counts_from_the_day_it_was_released(world):
    pid, _acct = world.payment("portal")
    key = _binder(world, pid)
    world.originate()
    world.send_all()
    r = world.originate(VALID_FROM)  # Mon 2026-12-07: validated, released, in that night's file
    assert r.validation.released == 1 and world.get(Payment, pid).state == "in_file"
    with world.sessions() as s:
        (fact,) = policy_facts(s.connection(), [key], None)[key][1]
    # made on 12-07 (not on its originate_on 12-01); the file of 12-07 settles Tue 12-08; cleared Thu 12-10
    assert (fact.paid_on, fact.cleared_on) == (VALID_FROM, D(2026, 12, 10))
    assert FILE_DATE < VALID_FROM
    assert _standing(world.sessions, key, D(2026, 12, 9)).status == "pending_activation"
    assert _standing(world.sessions, key, D(2026, 12, 10)).status == "ok"


def test_a_held_payment_released_after_the_due_date_is_late(world):
    pid, _acct = world.payment("guest", premium_due=D(2026, 12, 4))
    key = _binder(world, pid)
    world.originate()
    world.send_all()
    world.originate(VALID_FROM)  # released on 12-07, after the due date 12-04
    assert world.get(Payment, pid).state == "in_file"
    st = _standing(world.sessions, key, D(2026, 12, 8))
    assert (st.status, st.reason_code) == ("not_started", "binder_unpaid")


# -- the export ------------------------------------------------------------------------------------

def _premium(s, member, month, binder, subsidy="none"):
    p = Premium(member_id=member, member_name=f"Member {member}", plan_id="HLTH-1", coverage_month=month,
                amount_due_cents=10000, subsidy=subsidy, binder=binder,
                due_date=D(month.year - 1, 12, 23) if month.month == 1 else D(month.year, month.month - 1, 23))
    s.add(p)
    s.flush()
    return p


def _mail(s, member, month, on: datetime):
    s.add(Payment(confirmation_id=f"ML-{member}-{month:%Y%m}", channel="mail", member_id=member, plan_id="HLTH-1",
                  coverage_month=month, amount_cents=10000, state="paid", submitted_at=on))


class Exports:
    def __init__(self, sessions, tmp_path):
        self.sessions, self.tmp, self.files = sessions, tmp_path, {}

    def __call__(self, as_of, **kw):
        def deliver(export_id, data):
            path = self.tmp / f"export-{export_id}.csv"
            path.write_bytes(data)
            self.files[export_id] = data
            return str(path)
        return export_changes(self.sessions, as_of, deliver, **kw)

    def rows(self, export_id):
        return list(csv.DictReader(io.StringIO(self.files[export_id].decode("utf-8"))))


@pytest.fixture
def book(sessions, keyring):
    """Four policies: M1 a binder paid by mail; M2 a binder never paid; M3 no binder, February missed
    then paid; M4 a binder paid by a portal debit in the file of Thu 2026-12-10 (settles Fri 12-11,
    cleared Tue 12-15)."""
    with sessions() as s, s.begin():
        _premium(s, "M1", JAN, True)
        _mail(s, "M1", JAN, datetime(2026, 12, 10, 15, tzinfo=UTC))
        _premium(s, "M2", JAN, True)
        _premium(s, "M3", JAN, False)
        _premium(s, "M3", FEB, False)
        _mail(s, "M3", JAN, datetime(2026, 12, 10, 15, tzinfo=UTC))
        prem = _premium(s, "M4", JAN, True)
        ba = BankAccount(routing_number="021000021", account_number_enc=keyring.encrypt_account("12345678"),
                         account_hash=keyring.account_hash("021000021", "12345678"), last4="5678",
                         account_type="checking", holder_name="M4", validation_result="valid")
        nf = NachaFile(file_date=D(2026, 12, 10), file_id_modifier="A", file_name="f.ach", sha256="1" * 64,
                       content_enc=b"x", entry_count=1, total_debit_cents=10000, total_credit_cents=0, state="sent")
        s.add_all([ba, nf])
        s.flush()
        pay = Payment(confirmation_id="PC-M4", channel="portal", member_id="M4", plan_id="HLTH-1", coverage_month=JAN,
                      premium_id=prem.id, amount_cents=10000, bank_account_id=ba.id,
                      submitted_at=datetime(2026, 12, 9, 15, tzinfo=UTC), sec_code="WEB", payment_type_code="S",
                      originate_on=D(2026, 12, 10), state="sent")
        s.add(pay)
        s.flush()
        s.add(FileEntry(file_id=nf.id, batch_number=1, trace_number="011000010000001", payment_id=pay.id,
                        amount_cents=10000, transaction_code="27", sec_code="WEB"))
    return sessions


def test_export_each_change_once_then_since_again(book, tmp_path):
    sessions = book
    export = Exports(sessions, tmp_path)
    assess_coverage(sessions, D(2026, 12, 10))
    first = export(D(2026, 12, 10))
    assert [(r["member_id"], r["change"], r["status"], r["previous_status"], r["coverage_month"])
            for r in export.rows(first.export_id)] == [("M1", "activated", "ok", "", "2027-01")]
    assert list(csv.reader(io.StringIO(export.files[first.export_id].decode())))[0] == list(EXPORT_COLUMNS)
    assert (first.rows, first.new, first.reexported, first.by_change) == (1, 1, 0, {"activated": 1})
    second = export(D(2026, 12, 10))
    assert (second.rows, second.new) == (0, 0) and export.rows(second.export_id) == []

    assess_coverage(sessions, D(2026, 12, 14))  # M4 still pending activation: nothing to tell
    assess_coverage(sessions, D(2026, 12, 15))  # M4 cleared: activated
    assess_coverage(sessions, D(2026, 12, 24))  # M2's binder unpaid: not started
    assess_coverage(sessions, D(2027, 1, 24))  # M3's February unpaid (no grace): termination pending
    with sessions() as s, s.begin():
        _mail(s, "M3", FEB, datetime(2027, 1, 25, 15, tzinfo=UTC))
    assess_coverage(sessions, D(2027, 1, 25))  # paid: reinstated
    third = export(D(2027, 1, 25))
    rows = export.rows(third.export_id)
    assert [(r["member_id"], r["change"], r["status"], r["previous_status"], r["coverage_month"], r["deadline"],
             r["changed_on"]) for r in rows] == [
        ("M4", "activated", "ok", "pending_activation", "2027-01", "", "2026-12-15"),
        ("M2", "not_started", "not_started", "pending_activation", "2027-01", "", "2026-12-24"),
        ("M3", "at_risk", "termination_pending", "ok", "2027-02", "2027-02-23", "2027-01-24"),
        ("M3", "reinstated", "ok", "termination_pending", "2027-02", "", "2027-01-25"),
    ]
    m2 = rows[1]
    assert (m2["reason_code"], m2["months_owed"], m2["amount_owed"], m2["plan_id"]) == \
        ("binder_unpaid", "1", "100.00", "HLTH-1")
    assert m2["reason"] == "binder for 2027-01 not paid in full by 2026-12-23: coverage does not start"
    assert (third.rows, third.new, third.reexported) == (4, 4, 0)
    assert export(D(2027, 1, 25)).rows == 0

    again = export(D(2027, 1, 26), since=D(2026, 12, 24))
    assert [(r["member_id"], r["change"]) for r in export.rows(again.export_id)] == [
        ("M2", "not_started"), ("M3", "at_risk"), ("M3", "reinstated")]
    assert (again.rows, again.new, again.reexported) == (3, 0, 3)

    with sessions() as s:
        ledger = s.scalars(select(CoverageExport).order_by(CoverageExport.id)).all()
        items = s.execute(select(CoverageExportItem.export_id, CoverageExportItem.change, CoverageExportItem.reexport)
                          .order_by(CoverageExportItem.id)).all()
        top = s.scalar(select(CoverageFlag.id).order_by(CoverageFlag.id.desc()).limit(1))
    assert [(e.row_count, e.new_count, e.since_date) for e in ledger] == [
        (1, 1, None), (0, 0, None), (4, 4, None), (0, 0, None), (3, 0, D(2026, 12, 24))]
    assert [e.sha256 for e in ledger] == [hashlib.sha256(export.files[e.id]).hexdigest() for e in ledger]
    assert [e.path for e in ledger] == [str(tmp_path / f"export-{e.id}.csv") for e in ledger]
    assert ledger[-1].through_flag_id == top
    assert [(i.change, i.reexport) for i in items if i.export_id == ledger[-1].id] == [
        ("not_started", True), ("at_risk", True), ("reinstated", True)]
    assert sum(1 for i in items if not i.reexport) == 5  # each change once as new


def test_a_change_is_recorded_as_new_at_most_once(book, tmp_path):
    sessions = book
    assess_coverage(sessions, D(2026, 12, 10))
    r = Exports(sessions, tmp_path)(D(2026, 12, 10))
    with sessions() as s:
        (flag_id,) = s.scalars(select(CoverageExportItem.flag_id).where(CoverageExportItem.export_id == r.export_id))
    with pytest.raises(IntegrityError):
        with sessions() as s, s.begin():
            s.execute(insert(CoverageExportItem), [{"export_id": r.export_id, "flag_id": flag_id,
                                                    "change": "activated", "reexport": False}])
    with sessions() as s, s.begin():  # a re-export of it may be recorded any number of times
        s.execute(insert(CoverageExportItem), [{"export_id": r.export_id, "flag_id": flag_id, "change": "activated",
                                                "reexport": True}] * 2)


def test_a_failed_delivery_records_nothing_and_the_changes_wait(book, tmp_path):
    sessions = book
    assess_coverage(sessions, D(2026, 12, 10))

    def broken(_export_id, _data):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        export_changes(sessions, D(2026, 12, 10), broken)
    with sessions() as s:
        assert s.scalars(select(CoverageExport)).all() == []
    assert Exports(sessions, tmp_path)(D(2026, 12, 10)).rows == 1
