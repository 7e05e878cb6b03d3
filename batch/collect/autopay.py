"""AutoPay scheduling: for each active mandate, one pull (a pending payment) for what is still owed
on the premium currently due, once its draft date has come.

The draft date is `premium_calendar.autopay_draft_date(due_date, lead_days)`: the pull settles on
the last banking day on or before the due date (the 23rd of the month before coverage), earlier by
`autopay_lead_days` banking days. The premium currently due is the latest whose draft date has
come (`debit_rules.current_due_date`): a run that finds its draft date passed while the host was
down creates the pull at once, and earlier unpaid months are a backlog AutoPay never sweeps (the
member pays those another way; the notices say so). `payments.autopay_premium_id` is unique, so
no premium ever gets two pulls, whatever re-runs or concurrent runs happen. No pull for a premium
already covered in full by pending, in-file, sent, settled or mail payments, due before the mandate
was authorized, for coverage that cannot exist (a binder that lapsed unpaid, a month after a
terminated policy's coverage end), or past the reinitiation limit (batch/rules/debit_rules.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from . import debit_guard

from ..rules import debit_rules
from ..rules.channels import autopay_confirmation_id, sec_for_mandate
from ..store.models import AutopayMandate, BankAccount, Notice, Payment, PaymentEvent, Premium, ReviewItem, utcnow
from ..rules.premium_calendar import autopay_draft_date

# Payments that count toward a premium being covered (one definition, in debit_rules).
COVERING_STATES = debit_rules.COUNTING_STATES
CHUNK = 5000


@dataclass
class AutopayResult:
    run_date: date
    due_date: date | None = None  # the premiums currently due: the only ones pulled
    created: int = 0
    created_cents: int = 0
    already_scheduled: int = 0
    covered: int = 0  # premiums paid in full another way
    not_due_yet: int = 0
    account_blocked: int = 0
    not_authorized: int = 0  # due before the mandate was authorized
    refused: int = 0  # refused by the debit rules (coverage that cannot exist, reinitiation limit)
    amount_held: int = 0  # above the authorized amount, too late for the notice: held for review
    amount_sent_late: int = 0  # likewise, sent by origination.amount_change_late = "send"
    refusals: list[tuple[int, str]] = field(default_factory=list)  # (premium id, why), the first 1000
    pulls: list[int] = field(default_factory=list)  # payment ids created (first 1000)


def schedule_autopay(sessions: sessionmaker[Session], run_date: date, lead_banking_days: int = 0,
                     guard: debit_guard.GuardSettings | None = None) -> AutopayResult:
    """Create the AutoPay pulls due on `run_date`. Idempotent. `guard`: the settings the debit rules
    need (coverage rules, time zone)."""
    guard = guard or debit_guard.GuardSettings()
    tz = guard.tz
    res = AutopayResult(run_date)
    due_now = debit_rules.current_due_date(run_date, lead_banking_days)
    res.due_date = due_now
    # Premiums normally fall due on the 23rd, so this is one due date; a premium with another due
    # date between it and the next draft is pulled once its own draft date comes.
    horizon = run_date + timedelta(days=60)
    with sessions() as s, s.begin():
        last_id = 0
        while True:
            rows = s.execute(
                select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month,
                       Premium.amount_due_cents, Premium.due_date, AutopayMandate.bank_account_id,
                       AutopayMandate.channel, AutopayMandate.authorized_at, BankAccount.status,
                       AutopayMandate.id, AutopayMandate.authorized_amount_cents)
                .join(AutopayMandate, and_(AutopayMandate.member_id == Premium.member_id,
                                           AutopayMandate.plan_id == Premium.plan_id,
                                           AutopayMandate.status == "active"))
                .join(BankAccount, BankAccount.id == AutopayMandate.bank_account_id)
                .where((Premium.due_date >= due_now) & (Premium.due_date <= horizon) & (Premium.id > last_id))
                .order_by(Premium.id)
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            last_id = rows[-1][0]
            ids = [r[0] for r in rows]
            scheduled = set(s.scalars(select(Payment.autopay_premium_id).where(Payment.autopay_premium_id.in_(ids))))
            paid = _covered_cents(s, rows)
            wanted = []
            for row in rows:
                pid, member, plan, month, due_cents, due, account_id, channel, authorized_at, acct_status = row[:10]
                if pid in scheduled:
                    res.already_scheduled += 1
                    continue
                if autopay_draft_date(due, lead_banking_days) > run_date:
                    res.not_due_yet += 1
                    continue
                owed = due_cents - paid.get((member, plan, month), 0)
                if owed <= 0:
                    res.covered += 1
                    continue
                if acct_status != "active":
                    res.account_blocked += 1
                    continue
                auth_day = authorized_at.astimezone(tz).date()
                if not debit_rules.authorized_for(due, auth_day).ok:
                    res.not_authorized += 1
                    continue
                wanted.append((row, owed, auth_day))
            cands = [debit_guard.Candidate(-row[0], "autopay", row[1], row[2], row[3], row[6]) for row, _o, _a in wanted]
            refused = debit_guard.verdicts(s.connection(), cands, run_date, guard, exclude=frozenset(),
                                           authorized={-row[0]: a for row, _o, a in wanted})
            new = []
            held = []
            late_sent: list[int] = []
            noticed = _amount_notices(s, {row[1] for row, _o, _a in wanted})
            settles_on = debit_rules.settlement_of(run_date)
            for row, owed, _a in wanted:
                pid, member, plan, month, _due_cents, _due, account_id, channel, _at, _st, mandate_id, authorized = row
                v = refused.get(-pid)
                if v is not None:
                    res.refused += 1
                    if len(res.refusals) < 1000:
                        res.refusals.append((pid, v.reason))
                    continue
                # Recurring debits of varying amount (NACHA Rules 2.3.2.6): above the authorized amount
                # only after a notice 10 calendar days before settlement (debit_rules.amount_change).
                n_on, n_cents = noticed.get(pid, (None, None))
                decision = debit_rules.amount_change(owed, authorized, settles_on, n_on, n_cents,
                                                     late=guard.amount_change_late)
                sec_code, payment_type = sec_for_mandate(channel)
                if decision.action == "hold":
                    res.amount_held += 1
                    held.append((pid, owed, authorized, decision.reason))
                elif decision.new_authorized is not None and decision.new_authorized != authorized:
                    s.execute(update(AutopayMandate).where(AutopayMandate.id == mandate_id)
                              .values(authorized_amount_cents=decision.new_authorized))
                    if decision.action == "send_late":
                        res.amount_sent_late += 1
                        late_sent.append(pid)
                new.append({
                    "confirmation_id": autopay_confirmation_id(pid),
                    "channel": "autopay",
                    "member_id": member,
                    "plan_id": plan,
                    "coverage_month": month,
                    "premium_id": pid,
                    "amount_cents": owed,
                    "bank_account_id": account_id,
                    "submitted_at": datetime.combine(run_date, time(0), tzinfo=timezone.utc),
                    "sec_code": sec_code,
                    "payment_type_code": payment_type,
                    "originate_on": run_date,
                    "state": "failed" if decision.action == "hold" else "pending",
                    "autopay_premium_id": pid,
                })
            if new:
                s.execute(_insert_ignoring_duplicates(s), new)
                res.created += len(new) - len(held)
                res.created_cents += sum(p["amount_cents"] for p in new if p["state"] == "pending")
            _record_amount_changes(s, run_date, held, late_sent)
    return res


def _amount_notices(s: Session, members: set[str]) -> dict[int, tuple[date, int]]:
    """premium id -> (day, amount) of the latest `autopay_amount_change` notice for it."""
    out: dict[int, tuple[date, int]] = {}
    if not members:
        return out
    for key, on, cents in s.execute(
            select(Notice.event_key, Notice.notice_date, Notice.amount_owed_cents)
            .where((Notice.kind == "autopay_amount_change") & Notice.member_id.in_(sorted(members)))
            .order_by(Notice.notice_date)):
        out[int(key.split(":")[1])] = (on, int(cents))
    return out


def _record_amount_changes(s: Session, run_date: date, held: list, late_sent: list[int]) -> None:
    """A held pull (state 'failed', never originated) gets an event and a review item; a pull sent
    above its authorized amount without the notice period gets an event recording the risk taken
    (the notice goes out that night: batch.collect.notices)."""
    pids = [h[0] for h in held] + late_sent
    if not pids:
        return
    ids = dict(s.execute(select(Payment.autopay_premium_id, Payment.id).where(Payment.autopay_premium_id.in_(pids))).all())
    events, reviews = [], []
    now = utcnow()
    for pid, owed, authorized, reason in held:
        pay = ids.get(pid)
        if pay is None:
            continue
        events.append({"payment_id": pay, "event": "amount_change_held", "old_state": "pending", "new_state": "failed",
                       "reason": reason[:200], "occurred_on": run_date, "created_at": now})
        reviews.append({"kind": "autopay_amount_change", "subject": "payment", "payment_id": pay,
                        "amount_cents": owed, "expected_amount_cents": authorized,
                        "dedupe_key": f"autopay_amount:{pid}", "detail": reason[:300], "status": "open",
                        "created_at": now})
    for pid in late_sent:
        pay = ids.get(pid)
        if pay is not None:
            events.append({"payment_id": pay, "event": "amount_sent_late", "old_state": "pending",
                           "new_state": "pending", "reason": "above the authorized amount without 10 days' notice; "
                           "sent by origination.amount_change_late = \"send\"", "occurred_on": run_date,
                           "created_at": now})
    if events:
        s.execute(insert(PaymentEvent), events)
    if reviews:
        s.execute(insert(ReviewItem), reviews)


def _covered_cents(s: Session, rows) -> dict[tuple, int]:
    """Cents already paid or on their way per (member, plan, coverage month)."""
    keys = {(r[1], r[2], r[3]) for r in rows}
    members = {k[0] for k in keys}
    out: dict[tuple, int] = {}
    for member, plan, month, cents in s.execute(
        select(Payment.member_id, Payment.plan_id, Payment.coverage_month, func.sum(Payment.amount_cents))
        .where(Payment.member_id.in_(members) & Payment.state.in_(COVERING_STATES))
        .group_by(Payment.member_id, Payment.plan_id, Payment.coverage_month)
    ):
        if (member, plan, month) in keys:
            out[(member, plan, month)] = int(cents)
    return out


def _insert_ignoring_duplicates(s: Session):
    """INSERT that skips a pull another run created meanwhile (unique autopay_premium_id)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Payment).on_conflict_do_nothing(index_elements=["autopay_premium_id"])
    return sqlite.insert(Payment).on_conflict_do_nothing(index_elements=["autopay_premium_id"])
