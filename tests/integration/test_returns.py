"""Returns and NOCs (batch/collect/returns.py): the pure decisions, then the whole path on SQLite and
PostgreSQL: we originate real NACHA files, the simulated bank answers with return and NOC files
built by our writer, and `process_return_file` applies them."""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from batch.store.crypto import Keyring, generate_secret
from batch.store.models import (
    AccountChange,
    AutopayMandate,
    BankAccount,
    Payment,
    PaymentEvent,
    PaymentReturn,
    Premium,
    ReturnFile,
    ReviewItem,
)
from batch.collect.origination import Company, Limits, originate
from batch.report.reports import returns_report
from batch.rules.premium_calendar import due_date
from batch.collect.returns import (
    AccountState,
    OriginalEntry,
    ReturnPolicy,
    ReturnSeen,
    cancel_unneeded_retries,
    decide_return,
    plan_noc,
    plan_retry,
    process_return_file,
    return_code_review,
    returned_state_for,
)
from jobs.cli import cli
from nacha import codes
from nacha.calendar import add_banking_days, effective_entry_date
from nacha.reader import read_file

from test_returns_simbank import Original, SimBank, originals

FILE_DATE = date(2026, 12, 1)  # Tuesday
RETURN_DAY = date(2026, 12, 3)  # Thursday: returns processed
COMPANY = Company("Health Connector", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK", "011000015")
NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
JAN = date(2027, 1, 1)
RC = codes.RETURN_CODES


# =============================================================================================
# Pure decisions
# =============================================================================================

def _orig(state="in_file", amount=10000, accounts=frozenset({("02600959", "h1")}), **kw):
    return OriginalEntry(7, 70, amount, state, accounts, **kw)


def _seen(code="R01", amount=10000, rdfi="02600959", hashes=("h1",)):
    return ReturnSeen(code, "011000010000001", "021000020000001", amount, rdfi, hashes)


@pytest.mark.parametrize("code, seen, original, apply, outcome", [
    ("R01", _seen(), None, False, "unknown_trace"),
    ("R01", _seen(), OriginalEntry(7, None, 10000, None), False, "offset_entry"),
    ("R01", _seen(amount=9999), _orig(), False, "amount_mismatch"),
    ("R01", _seen(rdfi="02100002"), _orig(), False, "account_mismatch"),
    ("R01", _seen(hashes=("h2",)), _orig(), False, "account_mismatch"),
    ("R01", _seen(hashes=None), _orig(), True, "returned"),  # the bank left the account blank
    ("R01", _seen(hashes=("h2", "h1")), _orig(), True, "returned"),  # matches under an older key
    ("R01", _seen(), _orig("sent"), True, "returned"),
    ("R01", _seen(), _orig("settled"), True, "returned"),
    ("R09", _seen("R09"), _orig(), True, "returned"),
    ("R02", _seen("R02"), _orig(), True, "returned"),
    ("R03", _seen("R03"), _orig(), True, "returned"),
    ("R04", _seen("R04"), _orig(), True, "returned"),
    ("R10", _seen("R10"), _orig(), True, "returned"),
    ("R08", _seen("R08"), _orig(), True, "failed"),
    ("R17", _seen("R17"), _orig(), True, "failed"),
    ("R06", _seen("R06"), _orig(), True, "failed"),
    ("R01", _seen(), _orig("returned"), False, "duplicate_return"),
    ("R01", _seen(), _orig("failed"), False, "duplicate_return"),
    ("R69", _seen("R69"), _orig("returned"), False, "no_prior_return"),
    ("R69", _seen("R69"), _orig("returned", applied_return=True, returned_state="returned"), True, "settled"),
    ("R74", _seen("R74"), _orig("settled"), False, "no_prior_return"),
    ("R74", _seen("R74"), _orig("settled", dishonored_return=True, returned_state="failed"), True, "failed"),
])
def test_decide_return(code, seen, original, apply, outcome):
    d = decide_return(RC[code], seen, original)
    assert d.apply is apply
    assert (d.new_state if apply else d.review_kind) == outcome


def test_every_return_code_leaves_the_payment_returned_or_failed_by_its_disposition():
    follow_up = {codes.RETRY_FUNDS, codes.BLOCK_ACCOUNT, codes.REVOKE_AUTH}
    for rc in RC.values():
        assert returned_state_for(rc) == ("returned" if rc.disposition in follow_up else "failed"), rc.code
    assert {c for c, rc in RC.items() if rc.retry_allowed} == {"R01", "R09"}
    assert {"R02", "R03", "R04"} <= {c for c, rc in RC.items() if rc.blocks_account}
    assert {c for c, rc in RC.items() if rc.revokes_authorization} == {"R05", "R07", "R10", "R11", "R29", "R51"}


@pytest.mark.parametrize("code, processed, kind", [
    ("R01", date(2026, 12, 3), None),
    ("R06", date(2026, 12, 3), None),  # known and in effect: applied (and then put on the review list)
    ("R99", date(2026, 12, 3), "unknown_return_code"),
    ("R48", date(2030, 1, 1), "unknown_return_code"),
    ("R0X", date(2026, 12, 3), "unknown_return_code"),  # the reader rejects it; never a KeyError here
    ("R90", date(2026, 12, 3), "code_not_effective"),
    ("R90", date(2028, 3, 16), "code_not_effective"),
    ("R90", date(2028, 3, 17), None),  # NACHA-R90: effective 2028-03-17
])
def test_return_code_review(code, processed, kind):
    d = return_code_review(code, processed)
    if kind is None:
        assert d is None
        return
    assert (d.apply, d.review_kind) == (False, kind)
    assert code in d.detail and "a person must decide" in d.detail
    if kind == "code_not_effective":
        assert "takes effect on 2028-03-17" in d.detail and processed.isoformat() in d.detail


POLICY = ReturnPolicy()
SETTLED = date(2026, 12, 2)


@pytest.mark.parametrize("processed, settled, so_far, owed, when, n", [
    (date(2026, 12, 3), SETTLED, 0, 10000, date(2026, 12, 7), 1),  # Thu -> Mon (2 banking days)
    (date(2026, 12, 4), SETTLED, 1, 10000, date(2026, 12, 8), 2),  # Fri -> Tue: the second retry
    (date(2026, 12, 5), SETTLED, 0, 10000, date(2026, 12, 8), 1),  # processed on a Saturday
    (date(2026, 12, 23), SETTLED, 0, 10000, date(2026, 12, 28), 1),  # Dec 25 is a Fed holiday
    (date(2026, 12, 24), SETTLED, 0, 10000, date(2026, 12, 29), 1),
    (date(2026, 12, 3), SETTLED, 2, 10000, None, 3),  # two already: no more
    (date(2026, 12, 3), SETTLED, 0, 0, None, 1),  # premium paid another way
    (date(2026, 12, 3), SETTLED, 0, 5000, None, 1),  # partly paid: the same amount would overpay
    (date(2026, 12, 3), SETTLED, 0, None, None, 1),  # no premium on record
])
def test_plan_retry(processed, settled, so_far, owed, when, n):
    plan = plan_retry(processed_on=processed, original_settlement=settled, retries_so_far=so_far,
                      premium_owed_cents=owed, amount_cents=10000, policy=POLICY)
    assert plan.originate_on == when and plan.retry_number == n


def test_plan_retry_window_edge():
    # The latest re-presentment allowed settles exactly 180 days after the original settlement.
    limit = date(2027, 5, 31)  # 2026-12-02 + 180 days (a Monday: Memorial Day 2027, closed)
    ok = plan_retry(processed_on=date(2027, 5, 24), original_settlement=SETTLED, retries_so_far=0,
                    premium_owed_cents=1, amount_cents=1, policy=POLICY)
    assert ok.originate_on == date(2027, 5, 26) and effective_entry_date(ok.originate_on) <= limit
    late = plan_retry(processed_on=date(2027, 5, 26), original_settlement=SETTLED, retries_so_far=0,
                      premium_owed_cents=1, amount_cents=1, policy=POLICY)
    # would go out 2027-05-28 (Fri) and settle 2027-06-01, 181 days after the original
    assert late.originate_on is None and "180 days" in late.reason
    slower = plan_retry(processed_on=date(2026, 12, 3), original_settlement=SETTLED, retries_so_far=0,
                        premium_owed_cents=1, amount_cents=1, policy=ReturnPolicy(retry_delay_banking_days=5))
    assert slower.originate_on == date(2026, 12, 10)


CUR = AccountState("026009593", "7300007919", "checking", "MEMBER ONE")


@pytest.mark.parametrize("code, parts, status, new", [
    ("C01", {"account_number": "12345678901"}, "applied", CUR.__class__("026009593", "12345678901", "checking", "MEMBER ONE")),
    ("C02", {"routing_number": "021000021"}, "applied", CUR.__class__("021000021", "7300007919", "checking", "MEMBER ONE")),
    ("C02", {"routing_number": "021000022"}, "rejected", None),  # check digit wrong
    ("C03", {"routing_number": "021000021", "account_number": "55"}, "applied",
     CUR.__class__("021000021", "55", "checking", "MEMBER ONE")),
    ("C04", {"individual_name": "MEMBER ONE-SMITH"}, "applied",
     CUR.__class__("026009593", "7300007919", "checking", "MEMBER ONE-SMITH")),
    ("C05", {"transaction_code": "37"}, "applied", CUR.__class__("026009593", "7300007919", "savings", "MEMBER ONE")),
    ("C05", {"transaction_code": "27"}, "unchanged", CUR),
    ("C05", {"transaction_code": "47"}, "rejected", None),  # a general-ledger code
    ("C06", {"account_number": "99", "transaction_code": "32"}, "applied",
     CUR.__class__("026009593", "99", "savings", "MEMBER ONE")),
    ("C07", {"routing_number": "011000015", "account_number": "42", "transaction_code": "37"}, "applied",
     CUR.__class__("011000015", "42", "savings", "MEMBER ONE")),
    ("C01", {"account_number": "7300007919"}, "unchanged", CUR),
])
def test_plan_noc(code, parts, status, new):
    plan = plan_noc(code, parts, CUR)
    assert plan.status == status
    assert plan.new == new
    assert "7300007919" not in plan.detail and "12345678901" not in plan.detail


# =============================================================================================
# The database path
# =============================================================================================

ROUTINGS = ["026009593", "021000021", "011401533", "091000019"]


class World:
    """Premiums, accounts, mandates and payments; origination; the simulated bank's answers."""

    def __init__(self, sessions, keyring, tmp_path: Path):
        self.sessions, self.keyring, self.tmp = sessions, keyring, tmp_path
        self.outbox = tmp_path / "outbox"
        self.bank = SimBank()
        self.n = 0
        self.files = 0

    def account(self, s, number: str, routing: str, account_type="checking", holder="MEMBER"):
        ba = BankAccount(routing_number=routing, account_number_enc=self.keyring.encrypt_account(number),
                         account_hash=self.keyring.account_hash(routing, number), last4=number[-4:],
                         account_type=account_type, holder_name=holder)
        s.add(ba)
        s.flush()
        return ba

    def member(self, *, channel="autopay", amount=10000, month=JAN, subsidy="aptc", binder=False,
               account_type="checking", originate_on=FILE_DATE, account_id=None, member_id=None) -> str:
        self.n += 1
        i = self.n
        member = member_id or f"M{i:06d}"
        with self.sessions() as s, s.begin():
            prem = s.scalar(select(Premium).where(Premium.member_id == member, Premium.coverage_month == month))
            if prem is None:
                prem = Premium(member_id=member, member_name=f"Member {i}", plan_id="HLTH-1", coverage_month=month,
                               amount_due_cents=amount, subsidy=subsidy, binder=binder, due_date=due_date(month))
                s.add(prem)
                s.flush()
            if account_id is None:
                number = f"{7300000000 + i * 7919}"
                ba = self.account(s, number, ROUTINGS[i % len(ROUTINGS)], account_type, f"MEMBER {i}")
                account_id = ba.id
            if channel == "autopay" and s.scalar(select(AutopayMandate).where(AutopayMandate.member_id == member)) is None:
                s.add(AutopayMandate(member_id=member, plan_id="HLTH-1", bank_account_id=account_id, channel="web",
                                     authorized_at=NOW, status="active",
                                     active_key=AutopayMandate.key_for(member, "HLTH-1")))
            sec, ptc = {"autopay": ("WEB", "R"), "portal": ("WEB", "S"), "phone": ("TEL", "S")}[channel]
            s.add(Payment(confirmation_id=f"C-{i}", channel=channel, member_id=member, plan_id="HLTH-1",
                          coverage_month=month, premium_id=prem.id, amount_cents=amount, bank_account_id=account_id,
                          submitted_at=NOW, sec_code=sec, payment_type_code=ptc, originate_on=originate_on,
                          autopay_premium_id=prem.id if channel == "autopay" else None))
        return member

    def originate(self, d=FILE_DATE) -> dict[str, Original]:
        r = originate(self.sessions, self.keyring, COMPANY, Limits(), d, self.outbox, file_time="2300")
        by_member = {}
        for f in r.files:
            for o in originals(f.path).values():
                by_member[o.member_id] = o
        return by_member

    def write(self, text: str, name: str | None = None) -> Path:
        self.files += 1
        p = self.tmp / (name or f"bank-{self.files}.ach")
        p.write_text(text)
        return p

    def process(self, text: str, d=RETURN_DAY, policy=ReturnPolicy()):
        return process_return_file(self.sessions, self.keyring, self.write(text), d, policy)

    def payments(self, member) -> list[Payment]:
        with self.sessions() as s:
            return list(s.scalars(select(Payment).where(Payment.member_id == member).order_by(Payment.id)))

    def count(self, model, *where) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def world(sessions, keyring, tmp_path):
    return World(sessions, keyring, tmp_path)


def test_r01_and_r09_schedule_a_retry_originated_in_a_retry_pymt_batch(world):
    a = world.member(amount=12345)
    b = world.member(channel="portal", amount=20000)
    c = world.member(amount=30000)
    o = world.originate()
    out = world.process(world.bank.returns([(o[a], "R01"), (o[b], "R09")], RETURN_DAY))
    assert (out.status, out.returns, out.returns_applied, out.retries_scheduled, out.review_items) == \
           ("applied", 2, 2, 2, 0)
    retry_day = add_banking_days(RETURN_DAY, 2)
    assert retry_day == date(2026, 12, 7)
    for member, amount, sec in ((a, 12345, "WEB"), (b, 20000, "WEB")):
        original, retry = world.payments(member)
        assert original.state == "returned"
        assert (retry.channel, retry.amount_cents, retry.retry_of_id, retry.retry_number, retry.state) == \
               ("retry", amount, original.id, 1, "pending")
        assert retry.originate_on == retry_day and retry.bank_account_id == original.bank_account_id
        assert retry.sec_code == sec and retry.coverage_month == JAN and retry.premium_id == original.premium_id
    (untouched,) = world.payments(c)
    assert untouched.state == "in_file"
    with world.sessions() as s:
        ret = s.scalars(select(PaymentReturn).where(PaymentReturn.return_code == "R01")).one()
        assert (ret.returned_on, ret.disposition, ret.category, ret.kind) == (RETURN_DAY, "retry", "other", "return")
        assert ret.return_title == "Insufficient Funds" and "scheduled for 2026-12-07" in ret.action
        assert ret.original_trace_number == o[a].trace and ret.retry_payment_id is not None
        assert s.get(ReturnFile, out.return_file_id).status == "applied"
    # Not originated before its day; then in its own RETRY PYMT batch, with the original amount.
    assert world.originate(date(2026, 12, 4)) == {}
    again = world.originate(retry_day)
    assert set(again) == {a, b}
    files = sorted(world.outbox.glob("ACH-20261207-*.ach"))
    f = read_file(files[0], "strict")
    assert {bt.header.company_entry_description for bt in f.batches} == {"RETRY PYMT"}
    assert sorted(e.record.amount for e in f.entries()) == [12345, 20000]
    assert f.batches[0].header.company_name == "HEALTH CONNECTOR"


def test_at_most_two_retries_per_original_payment(world):
    a = world.member()
    o = world.originate()
    day = RETURN_DAY
    for n in (1, 2, 3):
        out = world.process(world.bank.returns([(o[a], "R01")], day))
        assert out.returns_applied == 1
        assert out.retries_scheduled == (1 if n < 3 else 0)
        pays = world.payments(a)
        if n == 3:
            break
        retry = pays[-1]
        assert (retry.retry_number, retry.retry_of_id) == (n, pays[0].id)
        o = world.originate(retry.originate_on)
        day = add_banking_days(retry.originate_on, 2)
    assert [p.state for p in world.payments(a)] == ["returned", "returned", "returned"]
    with world.sessions() as s:
        last = s.scalars(select(PaymentReturn).order_by(PaymentReturn.id.desc())).first()
        assert "2 already made" in last.action and last.retry_payment_id is None


def test_no_retry_when_the_premium_was_paid_another_way_and_pending_retries_are_cancelled(world):
    a = world.member()
    b = world.member()
    o = world.originate()
    with world.sessions() as s, s.begin():  # a mail payment (lockbox check) already covers a's premium
        s.add(Payment(confirmation_id="MAIL-1", channel="mail", member_id=a, plan_id="HLTH-1", coverage_month=JAN,
                      amount_cents=10000, submitted_at=NOW, state="paid"))
    out = world.process(world.bank.returns([(o[a], "R01"), (o[b], "R01")], RETURN_DAY))
    assert out.retries_scheduled == 1
    with world.sessions() as s:
        ret = s.scalars(select(PaymentReturn).where(PaymentReturn.original_trace_number == o[a].trace)).one()
        assert ret.action == "no re-presentment: premium paid by other means"
    # b pays by check before the retry goes out: the re-presentment is cancelled, never debited.
    with world.sessions() as s, s.begin():
        s.add(Payment(confirmation_id="MAIL-2", channel="mail", member_id=b, plan_id="HLTH-1", coverage_month=JAN,
                      amount_cents=10000, submitted_at=NOW, state="paid"))
    assert cancel_unneeded_retries(world.sessions, RETURN_DAY) == 1
    retry = [p for p in world.payments(b) if p.channel == "retry"][0]
    assert retry.state == "failed"
    assert world.count(PaymentEvent, PaymentEvent.payment_id == retry.id, PaymentEvent.event == "cancelled") == 1
    assert world.originate(date(2026, 12, 7)) == {}
    assert cancel_unneeded_retries(world.sessions, RETURN_DAY) == 0


def test_no_retry_past_180_days_after_the_original_settlement(world):
    a = world.member()
    o = world.originate()
    out = world.process(world.bank.returns([(o[a], "R01")], date(2027, 5, 27)), d=date(2027, 5, 27))
    assert out.returns_applied == 1 and out.retries_scheduled == 0
    assert [p.state for p in world.payments(a)] == ["returned"]


@pytest.mark.parametrize("code", ["R02", "R03", "R04", "R12"])
def test_administrative_return_blocks_the_account_and_suspends_autopay(world, code):
    a = world.member()
    o = world.originate()
    first = world.payments(a)[0]
    # next month's pull is already scheduled on the same account
    world.member(member_id=a, month=date(2027, 2, 1), account_id=first.bank_account_id,
                 originate_on=date(2027, 1, 22))
    out = world.process(world.bank.returns([(o[a], code)], RETURN_DAY))
    assert (out.accounts_blocked, out.mandates_suspended, out.retries_scheduled) == (1, 1, 0)
    returned, pending = world.payments(a)
    assert returned.state == "returned" and pending.state == "failed"
    with world.sessions() as s:
        acct = s.get(BankAccount, first.bank_account_id)
        assert acct.status == "blocked" and acct.status_reason.startswith(code)
        m = s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == a)).one()
        assert m.status == "suspended" and m.active_key == AutopayMandate.key_for(a, "HLTH-1")
        ev = s.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == pending.id)).one()
        assert ev.event == "stopped" and "blocked" in ev.reason
        ret = s.scalars(select(PaymentReturn)).one()
        assert "blocked" in ret.action and "AutoPay suspended (1 mandate)" in ret.action
    assert world.originate(date(2027, 1, 22)) == {}  # nothing is debited from a blocked account


@pytest.mark.parametrize("code", ["R05", "R07", "R10", "R11", "R29", "R51"])
def test_unauthorized_return_revokes_the_mandate(world, code):
    a = world.member()
    o = world.originate()
    first = world.payments(a)[0]
    world.member(member_id=a, month=date(2027, 2, 1), account_id=first.bank_account_id,
                 originate_on=date(2027, 1, 22))
    out = world.process(world.bank.returns([(o[a], code)], RETURN_DAY))
    assert (out.mandates_revoked, out.accounts_blocked, out.retries_scheduled) == (1, 0, 0)
    returned, stopped = world.payments(a)
    assert (returned.state, stopped.state) == ("returned", "failed")
    with world.sessions() as s:
        m = s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == a)).one()
        assert m.status == "revoked" and m.active_key is None and m.ended_at is not None
        assert code in m.status_reason
        assert s.get(BankAccount, first.bank_account_id).status == "active"


@pytest.mark.parametrize("code, review", [("R08", None), ("R24", "format_error"), ("R06", "return_for_review"),
                                          ("R23", "return_for_review"), ("R21", "return_for_review")])
def test_other_codes_mark_the_payment_failed_with_the_title(world, code, review):
    a = world.member()
    o = world.originate()
    out = world.process(world.bank.returns([(o[a], code)], RETURN_DAY))
    assert out.returns_applied == 1 and out.retries_scheduled == 0 and out.accounts_blocked == 0
    assert out.payments_failed == 1 and out.review_items == (1 if review else 0)
    (p,) = world.payments(a)
    assert p.state == "failed"
    with world.sessions() as s:
        ret = s.scalars(select(PaymentReturn)).one()
        assert ret.return_title == RC[code].title and RC[code].title in ret.action
        assert s.scalars(select(AutopayMandate)).one().status == "active"
        assert [(r.kind, r.payment_id, r.code) for r in s.scalars(select(ReviewItem))] == (
            [(review, p.id, code)] if review else [])


def test_every_review_disposition_code_opens_a_review_item():
    # the codes the previous test does not name take the same branch: their disposition is REVIEW
    assert {"R06", "R21", "R22", "R23", "R90"} <= {c for c, rc in RC.items() if rc.disposition == codes.REVIEW}


def test_review_unknown_and_not_yet_effective_codes_in_one_file(world):
    """One file: R06 (disposition review), R99 (unknown), R90 before 2028-03-17 (not in effect)
    and R01. Only R06 and R01 touch their payments; R99 and R90 leave theirs as they are."""
    a, b, c, d = (world.member() for _ in range(4))
    o = world.originate()
    text = world.bank.returns([(o[a], "R06"), (o[b], "R99"), (o[c], "R90"), (o[d], "R01")], RETURN_DAY)
    lines = text.splitlines()
    line_of = {ln[3:6]: n for n, ln in enumerate(lines, 1) if ln.startswith("799")}
    assert set(line_of) == {"R06", "R99", "R90", "R01"}
    out = world.process(text)
    assert out.status == "applied" and out.errors == []
    assert (out.returns, out.returns_applied, out.review_items, out.payments_failed, out.retries_scheduled) == \
           (4, 2, 3, 1, 1)
    assert len(out.warnings) == 2
    assert f":{line_of['R99']}:4-6: addenda_99.return_reason_code: unknown return reason code 'R99'" in out.warnings[0]
    assert f":{line_of['R90']}:4-6:" in out.warnings[1] and "2028-03-17" in out.warnings[1]
    (pa,), (pb,), (pc,), (pd, retry) = (world.payments(m) for m in (a, b, c, d))
    assert (pa.state, pb.state, pc.state, pd.state) == ("failed", "in_file", "in_file", "returned")
    assert (retry.channel, retry.retry_of_id, retry.state, retry.originate_on) == \
           ("retry", pd.id, "pending", add_banking_days(RETURN_DAY, 2))
    with world.sessions() as s:
        items = {r.kind: r for r in s.scalars(select(ReviewItem))}
        assert set(items) == {"return_for_review", "unknown_return_code", "code_not_effective"}
        for kind, code, pay, member in (("return_for_review", "R06", pa, a), ("unknown_return_code", "R99", pb, b),
                                        ("code_not_effective", "R90", pc, c)):
            r = items[kind]
            assert (r.code, r.line, r.payment_id, r.original_trace_number, r.subject, r.status) == \
                   (code, line_of[code] - 1, pay.id, o[member].trace, "file", "open"), kind
            assert r.return_file_id == out.return_file_id and r.amount_cents == 10000
            assert code in r.detail and "a person must decide" in r.detail
        assert RC["R06"].title in items["return_for_review"].detail
        assert "2028-03-17" in items["code_not_effective"].detail
        assert sorted(r.return_code for r in s.scalars(select(PaymentReturn))) == ["R01", "R06"]
        assert s.scalar(select(func.count()).select_from(PaymentEvent)
                        .where(PaymentEvent.payment_id.in_([pb.id, pc.id]))) == 0
        rf = s.get(ReturnFile, out.return_file_id)
        assert (rf.returns, rf.applied, rf.review_items) == (4, 2, 3)


def test_r90_is_applied_for_review_once_in_effect(world):
    a = world.member()
    o = world.originate()
    day = date(2028, 3, 17)
    out = world.process(world.bank.returns([(o[a], "R90")], day), d=day)
    assert out.warnings == []  # the file was created on the day R90 took effect
    assert (out.returns_applied, out.review_items, out.payments_failed) == (1, 1, 1)
    assert [p.state for p in world.payments(a)] == ["failed"]
    with world.sessions() as s:
        assert s.scalars(select(ReviewItem)).one().kind == "return_for_review"


def test_unknown_traces_and_mismatches_go_to_the_review_list(world):
    a, b, c, d = (world.member() for _ in range(4))
    o = world.originate()
    ghost = Original(o[a].header, o[a].entry._replace(trace_number="011000019999999"))
    text = world.bank.returns([(ghost, "R01"), (o[b], "R01"), (o[c], "R01"), (o[d], "R01")], RETURN_DAY,
                              amounts={o[b].trace: o[b].entry.amount + 1},
                              rdfis={o[c].trace: "12345678"},
                              accounts={o[d].trace: "5555555555"})
    out = world.process(text)
    assert (out.returns, out.returns_applied, out.review_items) == (4, 0, 4)
    with world.sessions() as s:
        items = {r.kind: r for r in s.scalars(select(ReviewItem))}
        kinds = sorted(r.kind for r in s.scalars(select(ReviewItem)))
        assert kinds == ["account_mismatch", "account_mismatch", "amount_mismatch", "unknown_trace"]
        am = items["amount_mismatch"]
        assert (am.amount_cents, am.expected_amount_cents, am.status) == (10001, 10000, "open")
        assert "5555555555" not in " ".join(r.detail for r in s.scalars(select(ReviewItem)))
        assert s.scalar(select(func.count()).select_from(PaymentReturn)) == 0
    assert {p.state for m in (a, b, c, d) for p in world.payments(m)} == {"in_file"}


def test_review_items_point_at_the_field_of_the_bank_record(world):
    """Each review item carries the location of the field it is about (line, columns, record,
    field, as the reader states a problem): the bytes there are the value the item is about."""
    a, b, c = (world.member() for _ in range(3))
    o = world.originate()
    ghost = Original(o[a].header, o[a].entry._replace(trace_number="011000019999999"))
    text = world.bank.returns([(ghost, "R01"), (o[b], "R01"), (o[c], "R01")], RETURN_DAY,
                              amounts={o[b].trace: o[b].entry.amount + 1}, accounts={o[c].trace: "5555555555"})
    world.process(text)
    lines = text.splitlines()
    with world.sessions() as s:
        items = {r.kind: r for r in s.scalars(select(ReviewItem))}
        assert set(items) == {"unknown_trace", "amount_mismatch", "account_mismatch"}
        where = {k: r.issue("r.ach") for k, r in items.items()}
    unknown = where["unknown_trace"]
    assert (unknown.record, unknown.field, unknown.columns) == ("addenda_99", "original_entry_trace_number", (7, 21))
    assert lines[unknown.line - 1][6:21] == "011000019999999"  # the addenda that follows the entry
    assert unknown.line == items["unknown_trace"].line + 1
    amount = where["amount_mismatch"]
    assert (amount.record, amount.field, amount.columns, amount.line) == (
        "entry_web", "amount", (30, 39), items["amount_mismatch"].line)
    assert int(lines[amount.line - 1][29:39]) == o[b].entry.amount + 1
    account = where["account_mismatch"]
    assert (account.field, account.columns) == ("dfi_account_number", (13, 29))
    assert lines[account.line - 1][12:29].strip() == "5555555555"
    assert "5555555555" not in str(account)  # the location names the field, never its value
    # ... and the returns report's open review items show it
    report = returns_report(world.sessions, RETURN_DAY)
    (_, table), = [(title, df) for title, df in report.extra if title.startswith("Open review items")]
    shown = dict(zip(table["kind"], table["where"]))
    assert shown["unknown_trace"] == f"line {unknown.line}, columns 7-21: addenda_99.original_entry_trace_number"


def test_the_same_file_twice_is_applied_once(world):
    a = world.member()
    o = world.originate()
    text = world.bank.returns([(o[a], "R01")], RETURN_DAY)
    first = world.process(text)
    second = world.process(text)  # same bytes, another file name
    assert first.status == "applied" and second.status == "duplicate"
    assert second.previously_processed_on == RETURN_DAY and second.return_file_id == first.return_file_id
    assert world.count(PaymentReturn) == 1 and world.count(ReturnFile) == 1
    assert len(world.payments(a)) == 2  # the original and one retry


def test_a_second_return_of_the_same_payment_goes_to_review(world):
    a = world.member()
    o = world.originate()
    world.process(world.bank.returns([(o[a], "R01")], RETURN_DAY))
    out = world.process(world.bank.returns([(o[a], "R03")], RETURN_DAY, modifier="B"))
    assert out.returns_applied == 0 and out.review_items == 1
    with world.sessions() as s:
        assert s.scalars(select(ReviewItem)).one().kind == "duplicate_return"


def test_an_invalid_file_is_rejected_whole_with_located_errors(world):
    a, b = world.member(), world.member()
    o = world.originate()
    text = world.bank.returns([(o[a], "R01"), (o[b], "R02")], RETURN_DAY)
    lines = text.splitlines()
    # corrupt the second entry's amount: a located error, and the batch total no longer adds up
    i = [n for n, line in enumerate(lines) if line.startswith("6")][1]
    lines[i] = lines[i][:29] + "00001O0000" + lines[i][39:]
    out = world.process("\n".join(lines) + "\n")
    assert out.status == "rejected" and out.errors
    assert any(f":{i + 1}:30-39:" in e and "amount" in e for e in out.errors)
    assert world.count(PaymentReturn) == 0 and world.count(Payment, Payment.channel == "retry") == 0
    assert {p.state for m in (a, b) for p in world.payments(m)} == {"in_file"}
    with world.sessions() as s:
        rf = s.scalars(select(ReturnFile)).one()
        assert rf.status == "rejected" and "30-39" in rf.errors
        assert s.scalars(select(BankAccount).where(BankAccount.status == "blocked")).first() is None
    again = world.process("\n".join(lines) + "\n")
    assert again.status == "rejected" and again.errors == out.errors and world.count(ReturnFile) == 1


def test_a_rejected_file_keeps_its_located_issues_and_an_old_row_of_strings_still_reads(world):
    a = world.member()
    o = world.originate()
    lines = world.bank.returns([(o[a], "R01")], RETURN_DAY).splitlines()
    i = [n for n, line in enumerate(lines) if line.startswith("6")][0]
    lines[i] = lines[i][:29] + "00001O0000" + lines[i][39:]
    text = "\n".join(lines) + "\n"
    out = world.process(text)
    assert out.status == "rejected" and [str(x) for x in out.issues] == out.errors
    bad = next(x for x in out.issues if x.columns == (30, 39))
    assert (bad.line, bad.field) == (i + 1, "amount")
    with world.sessions() as s:
        rf = s.scalars(select(ReturnFile)).one()
        stored = json.loads(rf.errors)
        assert [{k: e[k] for k in ("line", "columns", "record", "field", "message")} for e in stored] == \
            [x.to_json() for x in out.issues]
    again = world.process(text)  # read back from the row: the same errors, the same located issues
    assert (again.errors, again.issues) == (out.errors, out.issues)
    with world.sessions() as s, s.begin():
        s.scalars(select(ReturnFile)).one().errors = json.dumps(out.errors)  # a row written before: strings
    old = world.process(text)
    assert old.status == "rejected" and old.errors == out.errors and old.issues == []


def test_a_problem_after_the_first_chunks_still_rejects_the_whole_file(world, monkeypatch):
    import batch.collect.returns as returns_mod

    monkeypatch.setattr(returns_mod, "CHUNK", 1)  # every entry is applied as its own chunk
    a, b, c = world.member(), world.member(), world.member()
    o = world.originate()
    text = world.bank.returns([(o[a], "R02"), (o[b], "R01"), (o[c], "R01")], RETURN_DAY)
    lines = text.splitlines()
    i = [n for n, line in enumerate(lines) if line.startswith("799")][2]
    lines[i] = lines[i][:3] + "R0X" + lines[i][6:]  # malformed (a well-formed unknown code is only a warning)
    out = world.process("\n".join(lines) + "\n")
    assert out.status == "rejected" and any("malformed return reason code 'R0X'" in e for e in out.errors)
    assert world.count(PaymentReturn) == 0 and world.count(Payment, Payment.channel == "retry") == 0
    assert world.count(BankAccount, BankAccount.status == "blocked") == 0
    assert {p.state for m in (a, b, c) for p in world.payments(m)} == {"in_file"}


def test_concurrent_runs_apply_a_file_once(world):
    a = world.member()
    o = world.originate()
    path = world.write(world.bank.returns([(o[a], "R01")], RETURN_DAY))
    outcomes = []

    def run():
        outcomes.append(process_return_file(world.sessions, world.keyring, path, RETURN_DAY).status)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["applied", "duplicate", "duplicate"]
    assert world.count(PaymentReturn) == 1 and world.count(Payment, Payment.channel == "retry") == 1


def test_nocs_correct_the_stored_account_with_a_masked_audit_and_the_next_pull_uses_it(world):
    a, b, c, d = (world.member() for _ in range(4))
    o = world.originate()
    text = world.bank.nocs([
        (o[a], "C01", {"account_number": "4444333322"}),
        (o[b], "C02", {"routing_number": "021000021"}),
        (o[c], "C05", {"transaction_code": "37"}),
        (o[d], "C07", {"routing_number": "091000019", "account_number": "1212121299", "transaction_code": "37"}),
    ], RETURN_DAY)
    out = world.process(text)
    assert (out.nocs, out.nocs_applied, out.review_items) == (4, 4, 0)
    a_account = world.payments(a)[0].bank_account_id
    with world.sessions() as s:
        changes = {ch.change_code: ch for ch in s.scalars(select(AccountChange))}
        assert set(changes) == {"C01", "C02", "C05", "C07"} and {ch.status for ch in changes.values()} == {"applied"}
        c01 = changes["C01"]
        old_number = o[a].entry.dfi_account_number
        assert (c01.old_account_masked, c01.new_account_masked) == ("****" + old_number[-4:], "****3322")
        assert changes["C02"].new_routing_number == "021000021"
        assert (changes["C05"].old_account_type, changes["C05"].new_account_type) == ("checking", "savings")
        for ch in changes.values():  # never a full account number in the audit
            row = " ".join(str(v) for v in (ch.old_account_masked, ch.new_account_masked, ch.detail))
            assert old_number not in row and "4444333322" not in row and "1212121299" not in row
        acct = s.get(BankAccount, a_account)
        assert world.keyring.decrypt_account(acct.account_number_enc) == "4444333322" and acct.last4 == "3322"
        assert acct.account_hash == world.keyring.account_hash(acct.routing_number, "4444333322")
    # Next month's pulls are built after the NOCs: they go to the corrected accounts.
    for m in (a, b, c, d):
        world.member(member_id=m, month=date(2027, 2, 1), account_id=world.payments(m)[0].bank_account_id,
                     originate_on=date(2027, 1, 21))
    nxt = world.originate(date(2027, 1, 21))
    assert nxt[a].entry.dfi_account_number == "4444333322"
    assert nxt[b].entry.receiving_dfi_identification + nxt[b].entry.check_digit == "021000021"
    assert nxt[c].entry.transaction_code == "37"
    e = nxt[d].entry
    assert (e.receiving_dfi_identification + e.check_digit, e.dfi_account_number, e.transaction_code) == \
           ("091000019", "1212121299", "37")


def test_refused_and_review_nocs_are_recorded_and_change_nothing(world):
    a, b, c = world.member(), world.member(), world.member()
    o = world.originate()
    text = world.bank.nocs([(o[a], "C01", {"account_number": "4444333322"}),
                            (o[b], "C09", {"individual_id": "X123"}),
                            (o[c], "C13", {})], RETURN_DAY, refused={o[a].trace: "C68"})
    out = world.process(text)
    assert (out.nocs, out.nocs_refused, out.review_items) == (3, 1, 1)
    a_account = world.payments(a)[0].bank_account_id
    with world.sessions() as s:
        by_trace = {ch.original_trace_number: ch for ch in s.scalars(select(AccountChange))}
        ref = by_trace[o[a].trace]
        assert (ref.status, ref.refused_code, ref.change_code) == ("refused", "C68", "C01")
        assert by_trace[o[b].trace].status == "noted" and by_trace[o[c].trace].status == "noted"
        assert s.scalars(select(ReviewItem)).one().kind == "noc_for_review"
        acct = s.get(BankAccount, a_account)
        assert world.keyring.decrypt_account(acct.account_number_enc) == o[a].entry.dfi_account_number


def test_noc_to_an_account_already_on_record_moves_payments_and_autopay_to_it(world):
    a = world.member()
    o = world.originate()
    first = world.payments(a)[0]
    with world.sessions() as s, s.begin():
        other = world.account(s, "8888777766", o[a].entry.receiving_dfi_identification + o[a].entry.check_digit)
        other_id = other.id
    world.member(member_id=a, month=date(2027, 2, 1), account_id=first.bank_account_id, originate_on=date(2027, 1, 21))
    out = world.process(world.bank.nocs([(o[a], "C01", {"account_number": "8888777766"})], RETURN_DAY))
    assert out.nocs_applied == 1
    with world.sessions() as s:
        assert s.get(BankAccount, first.bank_account_id).status == "blocked"
        assert s.scalars(select(AutopayMandate)).one().bank_account_id == other_id
    assert world.payments(a)[1].bank_account_id == other_id


def test_a_return_after_a_noc_still_matches_the_account_we_debited(world):
    a = world.member()
    o = world.originate()
    world.process(world.bank.nocs([(o[a], "C03", {"routing_number": "021000021", "account_number": "31313131"})],
                                  RETURN_DAY))
    out = world.process(world.bank.returns([(o[a], "R01")], RETURN_DAY, modifier="B"))
    assert out.returns_applied == 1 and out.review_items == 0


def test_dishonored_return_reinstates_and_a_contest_restores_the_return(world):
    a = world.member()
    o = world.originate()
    world.process(world.bank.returns([(o[a], "R01")], RETURN_DAY))
    assert [p.state for p in world.payments(a)] == ["returned", "pending"]
    out = world.process(world.bank.dishonored([(o[a], "R68", "R01")], date(2026, 12, 4)), d=date(2026, 12, 4))
    assert out.returns_applied == 1
    original, retry = world.payments(a)
    assert original.state == "settled" and retry.state == "failed"  # the re-presentment is no longer needed
    with world.sessions() as s:
        statuses = [(r.kind, r.status) for r in s.scalars(select(PaymentReturn).order_by(PaymentReturn.id))]
        assert statuses == [("return", "dishonored"), ("dishonored", "applied")]
    out = world.process(world.bank.contested([(o[a], "R73", "R01")], date(2026, 12, 7)), d=date(2026, 12, 7))
    assert out.returns_applied == 1
    assert world.payments(a)[0].state == "returned"
    with world.sessions() as s:
        first = s.scalars(select(PaymentReturn).order_by(PaymentReturn.id)).first()
        assert first.status == "applied"
    # a dishonor for a payment never returned goes to review
    b = world.member(originate_on=date(2026, 12, 7))
    ob = world.originate(date(2026, 12, 7))
    out = world.process(world.bank.dishonored([(ob[b], "R69", "R01")], date(2026, 12, 8)), d=date(2026, 12, 8))
    assert out.returns_applied == 0 and out.review_items == 1


# -- the command ----------------------------------------------------------------------------------

@pytest.fixture
def cli_env(migrated_url, tmp_path, monkeypatch):
    secret = generate_secret()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACHBATCH_DATABASE__URL", migrated_url)
    monkeypatch.setenv("ACHBATCH_SECURITY__KEY", secret)
    monkeypatch.delenv("ACHBATCH_CONFIG", raising=False)
    # these tests' payments are first uses of WEB accounts: sent at once, as in the demo (what a
    # held first use does is tests/integration/test_validation.py)
    monkeypatch.setenv("ACHBATCH_VALIDATION__FIRST_USE", "send")
    return Keyring([secret])


def test_cli_process_exit_codes_and_inbox(cli_env, sessions, tmp_path):
    w = World(sessions, cli_env, tmp_path)
    a, b = w.member(), w.member()
    o = w.originate()
    good = w.write(w.bank.returns([(o[a], "R01")], RETURN_DAY))
    run = CliRunner()
    r = run.invoke(cli, ["returns", "process", str(good), "--date", "2026-12-03"])
    assert r.exit_code == 0, r.output
    assert "applied: 1 of 1 return," in r.output and "1 re-presentment scheduled" in r.output
    assert "notices: 1 written" in r.output
    r = run.invoke(cli, ["returns", "process", str(good), "--date", "2026-12-03"])
    assert r.exit_code == 0 and "duplicate" in r.output
    bad = w.write(w.bank.returns([(o[b], "R01")], RETURN_DAY, modifier="B").replace("R01", "R0X", 1))
    r = run.invoke(cli, ["returns", "process", str(bad), "--date", "2026-12-03"])
    assert r.exit_code == 1
    assert "rejected" in r.output and "malformed return reason code 'R0X'" in r.output
    review = w.write(w.bank.returns([(o[b], "R01")], RETURN_DAY, modifier="C", amounts={o[b].trace: 1}))
    r = run.invoke(cli, ["returns", "process", str(review), "--date", "2026-12-03"])
    assert r.exit_code == 1 and "review list" in r.output
    r = run.invoke(cli, ["returns", "process", str(tmp_path / "missing.ach")])
    assert r.exit_code == 2
    # No FILE: the inbox files the inbound ledger lists as received, each marked processed.
    from batch.store.models import InboundFile

    inbox = tmp_path / "achbatch-data" / "inbox"
    inbox.mkdir(parents=True)
    text = w.bank.returns([(o[b], "R09")], RETURN_DAY, modifier="D")
    (inbox / "ret-d.ach").write_text(text)
    import hashlib

    sha = hashlib.sha256(text.encode()).hexdigest()
    with sessions() as s, s.begin():
        s.add(InboundFile(source="folder:test", remote_name="ret-d.ach", remote_size=len(text), remote_mtime=1,
                          sha256=sha, size=len(text), content_key=sha, content_sha256=sha, local_name="ret-d.ach",
                          archive_path=str(tmp_path / "arch"), state="received"))
    r = run.invoke(cli, ["returns", "process", "--date", "2026-12-03"])
    assert r.exit_code == 0, r.output
    assert "ret-d.ach: applied: 1 of 1 return," in r.output
    with sessions() as s:
        row = s.scalars(select(InboundFile)).one()
        assert row.state == "processed" and row.process_result.startswith("applied")
    r = run.invoke(cli, ["returns", "process", "--date", "2026-12-03"])
    assert r.exit_code == 0 and "no files to process" in r.output


def test_cli_process_prints_the_readers_warnings(cli_env, sessions, tmp_path):
    w = World(sessions, cli_env, tmp_path)
    a, b = w.member(), w.member()
    o = w.originate()
    text = w.bank.returns([(o[a], "R01"), (o[b], "R99")], RETURN_DAY)
    line = [n for n, ln in enumerate(text.splitlines(), 1) if ln.startswith("799R99")][0]
    path = w.write(text, "bank-r99.ach")
    r = CliRunner().invoke(cli, ["returns", "process", str(path), "--date", "2026-12-03"])
    assert r.exit_code == 1, r.output  # an entry on the review list
    assert "applied: 1 of 2 returns, 0 of 0 NOCs, 1 for review" in r.output
    assert f"  warning: bank-r99.ach:{line}:4-6: addenda_99.return_reason_code: unknown return reason code 'R99'" \
           in r.output
