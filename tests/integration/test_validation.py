"""WEB debit account validation (issue 16): prenotes in the night's file, first-use WEB payments
held until their account is validated, prenote returns and NOCs, a cleared live debit, and
`first_use = "send"`; on SQLite and PostgreSQL (the `sessions` fixture runs both)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from batch.collect.notices import issue_notices
from batch.collect.origination import Company, Limits, originate
from batch.collect.returns import outcome_words, process_return_file
from batch.collect.validation import RISK_EVENT, awaiting_validation
from batch.rules.premium_calendar import cleared_on, due_date
from batch.rules.validation import ValidationPolicy
from batch.store.models import (
    AutopayMandate, BankAccount, FileEntry, NachaFile, Notice, Payment, PaymentEvent, Premium, Prenote, ReviewItem,
)
from nacha.calendar import add_banking_days, effective_entry_date, previous_banking_day
from nacha.reader import read_file

from test_returns_simbank import SimBank, originals

FILE_DATE = date(2026, 12, 1)  # Tuesday; effective (settlement) Wednesday 2026-12-02
SETTLES = date(2026, 12, 2)
VALID_FROM = date(2026, 12, 7)  # the third banking day after the settlement date
COMPANY = Company("Health Connector", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK", "011000015")
NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
JAN = date(2027, 1, 1)
HOLD = ValidationPolicy()
SEND = ValidationPolicy(first_use="send")
# (channel, sec, payment type, account type)
KINDS = {"portal": ("WEB", "S"), "guest": ("WEB", "S"), "autopay": ("WEB", "R"), "paper": ("PPD", ""),
         "phone": ("TEL", "S")}


class World:
    def __init__(self, sessions, keyring, tmp_path: Path):
        self.sessions, self.keyring, self.tmp = sessions, keyring, tmp_path
        self.outbox = tmp_path / "outbox"
        self.bank = SimBank()
        self.n = 0

    def payment(self, channel: str, *, account_type="checking", amount=10000, month=JAN, originate_on=FILE_DATE,
                premium_due: date | None = None) -> tuple[int, int]:
        """A member with a premium and one payment of `channel` on a new account: (payment id, account id)."""
        self.n += 1
        i = self.n
        member = f"M{i:06d}"
        number = f"{7300000000 + i * 7919}"
        sec, ptc = KINDS[channel]
        with self.sessions() as s, s.begin():
            prem = Premium(member_id=member, member_name=f"Member {i}", plan_id="HLTH-1", coverage_month=month,
                           amount_due_cents=amount, subsidy="none", binder=False,
                           due_date=premium_due or due_date(month))
            ba = BankAccount(routing_number="021000021", account_number_enc=self.keyring.encrypt_account(number),
                             account_hash=self.keyring.account_hash("021000021", number), last4=number[-4:],
                             account_type=account_type, holder_name=f"MEMBER {i}")
            s.add_all([prem, ba])
            s.flush()
            pay_channel = "autopay" if channel in ("autopay", "paper") else channel
            if pay_channel == "autopay":
                s.add(AutopayMandate(member_id=member, plan_id="HLTH-1", bank_account_id=ba.id,
                                     channel="web" if channel == "autopay" else "paper", authorized_at=NOW,
                                     status="active", active_key=AutopayMandate.key_for(member, "HLTH-1")))
            p = Payment(confirmation_id=f"C-{i}", channel=pay_channel, member_id=member, plan_id="HLTH-1",
                        coverage_month=month, premium_id=prem.id, amount_cents=amount, bank_account_id=ba.id,
                        submitted_at=NOW, sec_code=sec, payment_type_code=ptc, originate_on=originate_on,
                        autopay_premium_id=prem.id if pay_channel == "autopay" else None)
            s.add(p)
            s.flush()
            return p.id, ba.id

    def originate(self, d=FILE_DATE, policy=HOLD):
        return originate(self.sessions, self.keyring, COMPANY, Limits(), d, self.outbox, file_time="2300",
                         validation=policy)

    def send_all(self) -> None:
        """What delivery does once the bank confirmed a file."""
        with self.sessions() as s, s.begin():
            s.execute(update(NachaFile).values(state="sent"))
            s.execute(update(Payment).where(Payment.state == "in_file").values(state="sent"))

    def process(self, text: str, d: date, name="bank.ach"):
        p = self.tmp / name
        p.write_text(text)
        return process_return_file(self.sessions, self.keyring, p, d)

    def get(self, model, id_):
        with self.sessions() as s:
            return s.get(model, id_)

    def events(self, pid: int) -> list[tuple[str, str, str, str]]:
        with self.sessions() as s:
            return [(e.event, e.old_state, e.new_state, e.reason) for e in
                    s.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == pid).order_by(PaymentEvent.id))]

    def prenote_of(self, acct: int) -> Prenote:
        with self.sessions() as s:
            return s.scalars(select(Prenote).where(Prenote.bank_account_id == acct).order_by(Prenote.id)).one()


@pytest.fixture
def world(sessions, keyring, tmp_path):
    return World(sessions, keyring, tmp_path)


def _prenote_entries(path: Path):
    f = read_file(path, "strict")  # the strict profile accepts the file (amount 0 with 28/38)
    return [(b.header, e.record) for b in f.batches for e in b.entries
            if e.record.transaction_code in ("28", "38")]


def test_first_use_web_accounts_are_prenoted_with_28_or_38_and_zero_dollars_and_their_payments_held(world):
    portal, portal_acct = world.payment("portal")  # checking
    guest, guest_acct = world.payment("guest", account_type="savings")
    auto, auto_acct = world.payment("autopay")
    paper, _ = world.payment("paper", amount=2000)
    phone, _ = world.payment("phone", amount=3000)
    r = world.originate()
    # PPD and TEL debits follow their own rules: they go out live tonight, unprenoted.
    assert (r.payments, r.total_cents, r.prenotes) == (2, 5000, 3)
    assert (r.validation.held, r.validation.prenotes_requested) == (3, 3)
    (built,) = r.files
    prenotes = _prenote_entries(built.path)
    assert sorted((e.transaction_code, e.amount, h.standard_entry_class_code, e.payment_type_code)
                  for h, e in prenotes) == [("28", 0, "WEB", "R"), ("28", 0, "WEB", "S"), ("38", 0, "WEB", "S")]
    assert all(h.service_class_code == "225" for h, _e in prenotes)
    with world.sessions() as s:
        states = dict(s.execute(select(Payment.id, Payment.state)).all())
        kinds = sorted(s.scalars(select(FileEntry.kind)))
    assert states == {portal: "held", guest: "held", auto: "held", paper: "in_file", phone: "in_file"}
    assert kinds == ["payment", "payment", "prenote", "prenote", "prenote"]
    for acct in (portal_acct, guest_acct, auto_acct):
        p = world.prenote_of(acct)
        assert (p.state, p.file_date, p.settlement_date, p.valid_from) == ("in_file", FILE_DATE, SETTLES, VALID_FROM)
        assert world.get(BankAccount, acct).validation_result == "pending"
    assert world.events(portal)[0][:3] == ("held", "pending", "held")
    with world.sessions() as s:
        assert awaiting_validation(s.connection()) == {"accounts_awaiting_validation": 3, "payments_held": 3,
                                                       "prenotes_returned": 0}
    # A second run the same night neither prenotes again nor sends the held payments.
    again = world.originate()
    assert (again.files, again.prenotes) == ([], 0)


def test_held_payment_goes_out_on_the_third_banking_day_after_the_prenote_settled(world):
    pid, acct = world.payment("portal", amount=12345)
    world.originate()
    world.send_all()
    day_before = previous_banking_day(VALID_FROM)
    assert day_before == date(2026, 12, 4)
    r = world.originate(day_before)
    assert (r.files, r.validation.still_held) == ([], 1)
    assert world.get(Payment, pid).state == "held"
    r = world.originate(VALID_FROM)
    assert (r.payments, r.total_cents, r.prenotes, r.validation.validated, r.validation.released) == (1, 12345, 0, 1, 1)
    assert world.get(Payment, pid).state == "in_file"
    a = world.get(BankAccount, acct)
    assert (a.validation_result, a.validation_method, a.validated_on) == ("valid", "prenote", VALID_FROM)
    assert world.prenote_of(acct).state == "validated"
    assert [e[0] for e in world.events(pid)] == ["held", "released"]
    (f,) = r.files
    (entry,) = [e.record for b in read_file(f.path, "strict").batches for e in b.entries]
    assert (entry.transaction_code, entry.amount) == ("27", 12345)


def test_a_prenote_not_confirmed_sent_validates_nothing(world):
    pid, acct = world.payment("portal")
    world.originate()  # built, never confirmed at the bank
    r = world.originate(VALID_FROM)
    assert r.files == [] and world.get(Payment, pid).state == "held"
    assert world.get(BankAccount, acct).validation_result == "pending"


def test_a_returned_prenote_blocks_the_account_and_the_held_payment_fails_with_the_reason(world):
    pid, acct = world.payment("autopay")
    other, other_acct = world.payment("portal")
    r = world.originate()
    world.send_all()
    by_account = {o.entry.individual_identification_number: o for o in originals(r.files[0].path).values()}
    prenote = by_account["M000001"]
    assert prenote.entry.transaction_code == "28"
    out = world.process(world.bank.returns([(prenote, "R03")], date(2026, 12, 3)), date(2026, 12, 3))
    # never read as our offset entry, nor as an unknown trace
    assert (out.status, out.prenotes_returned, out.review_items, out.accounts_blocked) == ("applied", 1, 0, 1)
    assert outcome_words(out) == ("applied: 0 of 1 return, 0 of 0 NOCs, 0 for review (prenotes: 1 returned, "
                                  "account blocked; 0 corrected by a NOC, account validated)")
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(ReviewItem)) == 0
    a = world.get(BankAccount, acct)
    assert (a.status, a.validation_result) == ("blocked", "invalid")
    assert a.status_reason == "prenote returned R03 No Account / Unable to Locate Account"
    p = world.prenote_of(acct)
    assert (p.state, p.return_code) == ("returned", "R03")
    pay = world.get(Payment, pid)
    assert pay.state == "failed"
    assert world.events(pid)[-1] == ("stopped", "held", "failed",
                                     "bank account blocked: prenote returned R03 No Account / Unable to Locate Account")
    with world.sessions() as s:
        mandate = s.scalars(select(AutopayMandate).where(AutopayMandate.bank_account_id == acct)).one()
        assert mandate.status == "suspended"
        assert awaiting_validation(s.connection())["prenotes_returned"] == 1
    # the other account is untouched and released on its day
    r = world.originate(VALID_FROM)
    assert r.payments == 1 and world.get(Payment, other).state == "in_file"
    assert world.get(Payment, pid).state == "failed"


def test_a_returned_prenote_sends_the_member_one_notice_of_what_happened_and_what_to_do(world):
    """The member learns of a returned prenote by an `account_not_validated` notice (once): the
    account masked, the bank's reason, AutoPay suspended, the held payment not made, what to do."""
    pid, acct = world.payment("autopay", amount=23456)
    other, _ = world.payment("portal")
    r = world.originate()
    world.send_all()
    by_member = {o.entry.individual_identification_number: o for o in originals(r.files[0].path).values()}
    world.process(world.bank.returns([(by_member["M000001"], "R03")], date(2026, 12, 3)), date(2026, 12, 3))
    notices = world.tmp / "notices"
    res = issue_notices(world.sessions, notices, date(2026, 12, 3))
    assert res.by_kind == {"account_not_validated": 1}
    prenote = world.prenote_of(acct)
    with world.sessions() as s:
        (n,) = s.scalars(select(Notice)).all()
        assert (n.kind, n.member_id, n.plan_id, n.prenote_id, n.event_key) == (
            "account_not_validated", "M000001", "HLTH-1", prenote.id, f"prenote:{prenote.id}")
        assert (n.amount_owed_cents, n.deadline) == (23456, due_date(JAN))
        number = world.keyring.decrypt_account(s.get(BankAccount, acct).account_number_enc)
    html = res.files[0].read_text()
    assert f"****{number[-4:]}" in html and number not in html
    assert "R03 &ndash; No Account / Unable to Locate Account" in html
    assert "Your AutoPay from this account is on hold (plan HLTH-1)" in html
    assert "Your payment of $234.56 for your January 2027 premium was not made" in html
    assert f"Please pay $234.56\nby {due_date(JAN)} another way" in html
    manifest = (notices / "manifest.csv").read_text().splitlines()
    assert manifest[1].startswith('"2026-12-03","M000001","Member 1","HLTH-1","account_not_validated",')
    # once per prenote, whatever re-runs happen
    assert issue_notices(world.sessions, notices, date(2026, 12, 4)).created == 0


def test_a_noc_on_a_prenote_corrects_the_account_which_then_counts_as_validated(world):
    pid, acct = world.payment("portal")
    r = world.originate()
    world.send_all()
    (prenote,) = originals(r.files[0].path).values()
    out = world.process(world.bank.nocs([(prenote, "C01", {"account_number": "4444333322"})], date(2026, 12, 3)),
                        date(2026, 12, 3))
    assert (out.nocs_applied, out.prenotes_corrected, out.review_items) == (1, 1, 0)
    a = world.get(BankAccount, acct)
    assert (a.validation_result, a.validation_method, a.status) == ("valid", "prenote_noc", "active")
    assert world.keyring.decrypt_account(a.account_number_enc) == "4444333322"
    assert world.prenote_of(acct).state == "corrected"
    # validated: the held payment goes out in the next file, to the corrected account
    r = world.originate(date(2026, 12, 3))
    assert r.payments == 1 and world.get(Payment, pid).state == "in_file"
    (entry,) = [e.record for b in read_file(r.files[0].path, "strict").batches for e in b.entries]
    assert (entry.dfi_account_number, entry.transaction_code) == ("4444333322", "27")


def test_first_use_send_records_the_accepted_risk_and_a_cleared_live_debit_validates(world):
    pid, acct = world.payment("portal")
    auto, auto_acct = world.payment("autopay", originate_on=date(2026, 12, 22))  # its first pull is later
    r = world.originate(policy=SEND)
    # the portal payment goes out live tonight; the mandate's account is prenoted meanwhile
    assert (r.payments, r.prenotes, r.validation.risk_accepted) == (1, 1, 1)
    assert world.events(pid) == [(RISK_EVENT, "pending", "pending",
                                  "first use of a WEB account sent before it was validated ([validation] first_use = "
                                  "send: risk accepted)")]
    assert world.prenote_of(auto_acct).state == "in_file"
    world.send_all()
    cleared = cleared_on(effective_entry_date(FILE_DATE))
    assert cleared == date(2026, 12, 4)
    world.originate(previous_banking_day(cleared), policy=SEND)
    assert world.get(BankAccount, acct).validation_result == "unvalidated"
    r = world.originate(cleared, policy=SEND)
    a = world.get(BankAccount, acct)
    assert (a.validation_result, a.validation_method, a.validated_on) == ("valid", "cleared_debit", cleared)
    assert r.validation.risk_accepted == 0 and len(world.events(pid)) == 1  # recorded once


def test_a_cleared_live_debit_validates_under_hold_too(world):
    """An account first debited by a PPD pull (no WEB validation needed) and later used for a WEB
    payment: the cleared debit validates it; the WEB payment is not held."""
    paper, acct = world.payment("paper")
    world.originate()
    world.send_all()
    cleared = cleared_on(effective_entry_date(FILE_DATE))
    with world.sessions() as s, s.begin():
        s.add(Payment(confirmation_id="C-web", channel="portal", member_id="M000001", plan_id="HLTH-1",
                      coverage_month=date(2027, 2, 1), amount_cents=500, bank_account_id=acct, submitted_at=NOW,
                      sec_code="WEB", payment_type_code="S", originate_on=cleared))
    r = world.originate(cleared)
    assert (r.payments, r.prenotes, r.validation.held, r.validation.validated) == (1, 0, 0, 1)
    assert world.get(BankAccount, acct).validation_method == "cleared_debit"


def test_a_held_payment_that_would_miss_its_due_date_stays_held_with_a_review_item(world):
    pid, _acct = world.payment("guest", premium_due=date(2026, 12, 4))
    ok, _ = world.payment("portal")  # due 2026-12-23: time enough
    r = world.originate()
    assert r.validation.review_items == 1 and r.review_items == 1
    with world.sessions() as s:
        (item,) = s.scalars(select(ReviewItem))
        assert (item.kind, item.subject, item.payment_id, item.status) == ("validation_hold", "payment", pid, "open")
        assert "earliest 2026-12-07" in item.detail and "due date 2026-12-04" in item.detail
    assert world.get(Payment, pid).state == "held"
    world.send_all()
    r = world.originate(date(2026, 12, 2))
    assert r.validation.review_items == 0  # opened once


def test_method_none_holds_and_prenotes_nothing(world):
    pid, acct = world.payment("portal")
    r = world.originate(policy=ValidationPolicy(method="none"))
    assert (r.payments, r.prenotes) == (1, 0)
    assert world.get(BankAccount, acct).validation_result == "unvalidated"


def test_a_mandate_imported_on_a_weekend_is_prenoted_in_the_next_banking_days_file(world):
    _pid, acct = world.payment("autopay", originate_on=date(2026, 12, 22))
    sat = date(2026, 12, 5)
    assert world.originate(sat).skipped_reason is not None
    r = world.originate(date(2026, 12, 7))
    assert (r.payments, r.prenotes) == (0, 1)
    p = world.prenote_of(acct)
    assert (p.requested_on, p.file_date, p.reason) == (date(2026, 12, 7), date(2026, 12, 7),
                                                       "first use by a WEB AutoPay mandate")
    assert p.valid_from == add_banking_days(date(2026, 12, 8), 3)


def test_status_warns_of_accounts_awaiting_validation_and_the_returns_report_lists_prenote_returns(world, tmp_path):
    from batch.config import Settings
    from batch.report.reports import returns_report
    from batch.report.status import collect_status

    blocked, blocked_acct = world.payment("portal")
    world.payment("guest")
    r = world.originate()
    world.send_all()
    settings = Settings.model_validate({"paths": {"data_dir": str(tmp_path / "data")}})
    report = collect_status(world.sessions, settings, now=datetime(2026, 12, 2, 12, tzinfo=timezone.utc))
    (w,) = [w for w in report.warnings if w["reason"] == "accounts_awaiting_validation"]
    assert w["message"].startswith("2 bank accounts awaiting WEB account validation") and "2 payments held" in w["message"]
    assert report.data["validation"] == {"accounts_awaiting_validation": 2, "payments_held": 2, "prenotes_returned": 0}
    by_member = {o.member_id: o for o in originals(r.files[0].path).values()}
    world.process(world.bank.returns([(by_member["M000001"], "R04")], date(2026, 12, 3)), date(2026, 12, 3))
    rep = returns_report(world.sessions, date(2026, 12, 10))
    (title, table), = [(t, df) for t, df in rep.extra if t.startswith("Prenote returns")]
    rows = table.to_dict("records")
    number = world.keyring.decrypt_account(world.get(BankAccount, blocked_acct).account_number_enc)
    assert [(x["member_id"], x["return_code"], x["account"]) for x in rows] == [("M000001", "R04", "****" + number[-4:])]
    assert rows[0]["trace_number"] == by_member["M000001"].trace
    assert number not in table.to_csv()
    assert ("Prenotes returned (account validation)", "1") in rep.summary
    assert ("Accounts awaiting validation", "1 (1 payment held)") in rep.summary
    assert len(rep.table) == 0  # not a live return: not in the contract table nor the rates
    report = collect_status(world.sessions, settings, now=datetime(2026, 12, 3, 12, tzinfo=timezone.utc))
    assert report.data["validation"]["prenotes_returned"] == 1 and world.get(Payment, blocked).state == "failed"


def test_under_send_a_rerun_of_the_night_does_not_prenote_accounts_whose_debit_is_already_out(world):
    """A re-run of the same night (after a crash past the commit) finds the first-use payment in a
    file: its account is validated by that debit clearing, not by a prenote in a second file."""
    pid, acct = world.payment("autopay")
    r = world.originate(policy=SEND)
    assert (r.payments, r.prenotes) == (1, 0)
    again = world.originate(policy=SEND)
    assert (again.files, again.prenotes, again.validation.prenotes_requested) == ([], 0, 0)
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Prenote)) == 0
