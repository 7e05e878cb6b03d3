"""AutoPay scheduling: for each active mandate and each unpaid premium whose draft date has come,
create one pull (a pending payment) for what is still owed.

The draft date is `premium_calendar.autopay_draft_date(due_date, lead_days)`: the pull settles on
the last banking day on or before the due date (the 23rd of the month before coverage), earlier by
`autopay_lead_days` banking days. A run that finds the draft date already passed creates the pull
at once (it goes out in that day's file). `payments.autopay_premium_id` is unique, so no premium
ever gets two pulls, whatever re-runs or concurrent runs happen. A premium already covered in full
by pending, in-file, sent, settled or mail payments gets no pull.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from .models import AutopayMandate, BankAccount, Payment, Premium
from .premium_calendar import autopay_draft_date

# Payments that count toward a premium being covered.
COVERING_STATES = ("pending", "in_file", "sent", "settled", "paid")
CHUNK = 5000


@dataclass
class AutopayResult:
    run_date: date
    created: int = 0
    created_cents: int = 0
    already_scheduled: int = 0
    covered: int = 0  # premiums paid in full another way
    not_due_yet: int = 0
    account_blocked: int = 0
    pulls: list[int] = field(default_factory=list)  # payment ids created (first 1000)


def autopay_confirmation_id(premium_id: int) -> str:
    return f"AP-{premium_id}"


def schedule_autopay(sessions: sessionmaker[Session], run_date: date, lead_banking_days: int = 0) -> AutopayResult:
    """Create the AutoPay pulls due on or before `run_date`. Idempotent."""
    res = AutopayResult(run_date)
    # Draft dates are at most a few weeks before the due date: premiums due more than 60 days after
    # the run date cannot be due yet, which bounds the scan.
    horizon = run_date + timedelta(days=60)
    with sessions() as s, s.begin():
        last_id = 0
        while True:
            rows = s.execute(
                select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month,
                       Premium.amount_due_cents, Premium.due_date, AutopayMandate.bank_account_id,
                       AutopayMandate.channel, BankAccount.status)
                .join(AutopayMandate, and_(AutopayMandate.member_id == Premium.member_id,
                                           AutopayMandate.plan_id == Premium.plan_id,
                                           AutopayMandate.status == "active"))
                .join(BankAccount, BankAccount.id == AutopayMandate.bank_account_id)
                .where((Premium.due_date <= horizon) & (Premium.id > last_id))
                .order_by(Premium.id)
                .limit(CHUNK)
            ).all()
            if not rows:
                break
            last_id = rows[-1][0]
            ids = [r[0] for r in rows]
            scheduled = set(s.scalars(select(Payment.autopay_premium_id).where(Payment.autopay_premium_id.in_(ids))))
            paid = _covered_cents(s, rows)
            new = []
            for pid, member, plan, month, due_cents, due, account_id, channel, acct_status in rows:
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
                web = channel == "web"
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
                    "sec_code": "WEB" if web else "PPD",
                    "payment_type_code": "R" if web else "",
                    "originate_on": run_date,
                    "state": "pending",
                    "autopay_premium_id": pid,
                })
            if new:
                s.execute(_insert_ignoring_duplicates(s), new)
                res.created += len(new)
                res.created_cents += sum(p["amount_cents"] for p in new)
    return res


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
