"""WEB debit account validation, the database side (rules: batch/rules/validation.py;
docs/validation.md). `prepare` runs inside origination's transaction, before the night's debits are
read: it records the accounts validated since the last file (prenote with no return by its
`valid_from`, live debit cleared), asks for a prenote of each WEB account about to be used for the
first time, holds the first-use WEB payments whose account is not validated (or, under
`first_use = "send"`, `accept_risk` records on each the acceptance of the risk) and releases those
whose account now is. `pending_prenotes` gives origination the prenotes to write into the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Iterable

from sqlalchemy import and_, func, insert, select, update

from nacha.calendar import effective_entry_date

from ..rules.money import dollars
from ..rules.premium_calendar import cleared_on
from ..rules.validation import FIRST_USE_CHANNELS, ValidationPolicy, expected_release, misses_due_date
from ..store.db import bulk_insert, in_set
from ..store.models import (
    AutopayMandate, BankAccount, FileEntry, NachaFile, Payment, PaymentEvent, PaymentReturn, Premium, Prenote,
    ReviewItem, utcnow,
)

__all__ = ["ValidationOutcome", "accept_risk", "awaiting_validation", "pending_prenotes", "prepare", "RISK_EVENT"]

RISK_EVENT = "risk_accepted"  # payment_events.event of a first-use WEB debit sent unvalidated
HOLD_REVIEW_KIND = "validation_hold"
UNVALIDATED = ("unvalidated", "pending")
PART = 1000


@dataclass
class ValidationOutcome:
    validated: int = 0  # accounts validated tonight (prenote waited out, or a live debit cleared)
    prenotes_requested: int = 0
    held: int = 0  # payments moved to held tonight
    released: int = 0  # held payments released tonight
    still_held: int = 0  # held payments after tonight's work
    risk_accepted: int = 0  # first-use payments sent unvalidated (first_use = "send")
    review_items: int = 0  # held payments that will miss their premium's due date
    validated_accounts: list[int] = field(default_factory=list)


def _first_use(q=Payment):
    return (q.sec_code == "WEB") & q.channel.in_(FIRST_USE_CHANNELS)


def prepare(conn, file_date: date, policy: ValidationPolicy) -> ValidationOutcome:
    out = ValidationOutcome()
    if not policy.active:
        _release(conn, file_date, out, everything=True)
        return out
    now = utcnow()
    _validate_by_prenote(conn, file_date, now, out)
    _validate_by_cleared_debit(conn, file_date, now, out)
    _request_prenotes(conn, file_date, policy, now, out)
    _release(conn, file_date, out)
    if policy.holds:
        _hold(conn, file_date, now, out)
        _review_late_holds(conn, file_date, policy, out)
    out.still_held = conn.scalar(select(func.count()).select_from(Payment).where(Payment.state == "held")) or 0
    return out


def _mark_valid(conn, ids: list[int], method: str, on: date, now) -> int:
    n = 0
    for i in range(0, len(ids), PART):
        n += conn.execute(update(BankAccount).where(BankAccount.id.in_(ids[i:i + PART])
                                                     & BankAccount.validation_result.in_(UNVALIDATED))
                          .values(validation_result="valid", validation_method=method, validated_on=on,
                                  updated_at=now)).rowcount
    return n


def _validate_by_prenote(conn, file_date: date, now, out: ValidationOutcome) -> None:
    """A prenote in a file the bank confirmed, with no return by its `valid_from`, validates."""
    rows = conn.execute(
        select(Prenote.id, Prenote.bank_account_id)
        .join(FileEntry, FileEntry.prenote_id == Prenote.id)
        .join(NachaFile, NachaFile.id == FileEntry.file_id)
        .where((Prenote.state == "in_file") & (Prenote.valid_from <= file_date) & (NachaFile.state == "sent"))).all()
    if not rows:
        return
    ids = [r.id for r in rows]
    for i in range(0, len(ids), PART):
        conn.execute(update(Prenote).where(Prenote.id.in_(ids[i:i + PART]))
                     .values(state="validated", resolved_on=file_date, updated_at=now))
    accounts = sorted({r.bank_account_id for r in rows})
    out.validated += _mark_valid(conn, accounts, "prenote", file_date, now)
    out.validated_accounts += accounts


def _validate_by_cleared_debit(conn, file_date: date, now, out: ValidationOutcome) -> None:
    """An unvalidated account with a live debit that cleared (settlement + 2 banking days, no
    return) counts as validated; its prenotes not yet sent are no longer needed."""
    returned = select(PaymentReturn.payment_id).where(PaymentReturn.status == "applied")
    rows = conn.execute(
        select(Payment.bank_account_id, func.min(NachaFile.file_date))
        .join(BankAccount, BankAccount.id == Payment.bank_account_id)
        .join(FileEntry, FileEntry.payment_id == Payment.id)
        .join(NachaFile, NachaFile.id == FileEntry.file_id)
        .where(BankAccount.validation_result.in_(UNVALIDATED) & Payment.state.in_(("sent", "settled"))
               & (NachaFile.state == "sent") & Payment.id.not_in(returned))
        .group_by(Payment.bank_account_id)).all()
    accounts = sorted(acct for acct, fdate in rows if cleared_on(effective_entry_date(fdate)) <= file_date)
    if not accounts:
        return
    out.validated += _mark_valid(conn, accounts, "cleared_debit", file_date, now)
    out.validated_accounts += accounts
    for i in range(0, len(accounts), PART):
        conn.execute(update(Prenote).where(Prenote.bank_account_id.in_(accounts[i:i + PART])
                                           & (Prenote.state == "pending"))
                     .values(state="cancelled", resolved_on=file_date, updated_at=now))


def _request_prenotes(conn, file_date: date, policy: ValidationPolicy, now, out: ValidationOutcome) -> None:
    """A prenote for each active, unvalidated account of a live WEB AutoPay mandate or of a
    first-use WEB payment not yet out, unless one is already open. Under `first_use = "send"` an
    account whose WEB debit goes out tonight, or with a live debit already out, is validated by
    that debit clearing instead."""
    has_open = select(Prenote.bank_account_id).where(Prenote.state.in_(("pending", "in_file")))
    usable = (BankAccount.status == "active") & (BankAccount.validation_result == "unvalidated") \
        & BankAccount.id.not_in(has_open)
    wanted: dict[int, tuple[str, str, str]] = {}  # account -> (member, payment type code, reason)
    for acct, member in conn.execute(
            select(AutopayMandate.bank_account_id, AutopayMandate.member_id)
            .join(BankAccount, BankAccount.id == AutopayMandate.bank_account_id)
            .where((AutopayMandate.channel == "web") & (AutopayMandate.status == "active") & usable)
            .order_by(AutopayMandate.id)):
        wanted.setdefault(acct, (member, "R", "first use by a WEB AutoPay mandate"))
    going_tonight: set[int] = set()
    for acct, member, ptc, channel, originate_on in conn.execute(
            select(Payment.bank_account_id, Payment.member_id, Payment.payment_type_code, Payment.channel,
                   Payment.originate_on)
            .join(BankAccount, BankAccount.id == Payment.bank_account_id)
            .where(_first_use() & Payment.state.in_(("pending", "held")) & usable)
            .order_by(Payment.id)):
        if originate_on is not None and originate_on <= file_date:
            going_tonight.add(acct)
        wanted.setdefault(acct, (member, ptc or "S", f"first use by a {channel} payment"))
    if not policy.holds and wanted:
        # a live debit already out (a re-run of the night, a PPD pull to the same account) validates
        # the account when it clears, as tonight's will
        ids = sorted(wanted)
        for i in range(0, len(ids), PART):
            going_tonight.update(conn.scalars(select(Payment.bank_account_id).where(
                Payment.bank_account_id.in_(ids[i:i + PART]) & Payment.state.in_(("in_file", "sent", "settled")))))
        for acct in going_tonight:
            wanted.pop(acct, None)
    if not wanted:
        return
    _insert_in_parts(conn, Prenote, (
        {"bank_account_id": acct, "member_id": member, "sec_code": "WEB", "payment_type_code": ptc,
         "reason": reason, "state": "pending", "requested_on": file_date, "created_at": now, "updated_at": now}
        for acct, (member, ptc, reason) in sorted(wanted.items())))
    ids = sorted(wanted)
    conn.execute(update(BankAccount).where(in_set(BankAccount.id, ids))
                 .values(validation_result="pending", validation_method="prenote", updated_at=now))
    out.prenotes_requested += len(wanted)


def _insert_in_parts(conn, model, rows: Iterable[dict], size: int = 5000) -> None:
    """Insert `rows` (built lazily, each naming the same columns, those with Python defaults
    included) `size` at a time by the driver's bulk load (`db.bulk_insert`: COPY or executemany,
    not the ORM's per-row parameters): a night that holds or prenotes a million first uses keeps a
    few thousand row dicts in memory, not a million."""
    it = iter(rows)
    while part := list(islice(it, size)):
        bulk_insert(conn, model.__table__, part)


def _events(conn, rows: Iterable[dict]) -> None:
    now = utcnow()
    _insert_in_parts(conn, PaymentEvent, ({**row, "created_at": now} for row in rows))


def _release(conn, file_date: date, out: ValidationOutcome, *, everything: bool = False) -> None:
    """Held payments whose account is now validated (all of them when validation is off) go back
    to pending, for tonight's file."""
    q = select(Payment.id).where(Payment.state == "held")
    if not everything:
        q = q.where(Payment.bank_account_id.in_(select(BankAccount.id).where(BankAccount.validation_result == "valid")))
    ids = list(conn.scalars(q.order_by(Payment.id)))
    if not ids:
        return
    now = utcnow()
    conn.execute(update(Payment).where(in_set(Payment.id, ids) & (Payment.state == "held"))
                 .values(state="pending", updated_at=now))
    reason = "account validation off" if everything else "account validated"
    _events(conn, ({"payment_id": pid, "event": "released", "old_state": "held", "new_state": "pending",
                    "reason": reason, "occurred_on": file_date} for pid in ids))
    out.released += len(ids)


def _hold(conn, file_date: date, now, out: ValidationOutcome) -> None:
    """First-use WEB payments due tonight on an account not validated wait, held."""
    rows = conn.execute(
        select(Payment.id, BankAccount.validation_result)
        .join(BankAccount, BankAccount.id == Payment.bank_account_id)
        .where(_first_use() & (Payment.state == "pending") & (Payment.originate_on <= file_date)
               & (BankAccount.status == "active") & (BankAccount.validation_result != "valid"))
        .order_by(Payment.id)).all()
    ids = [r.id for r in rows]
    if not ids:
        return
    conn.execute(update(Payment).where(in_set(Payment.id, ids) & (Payment.state == "pending"))
                 .values(state="held", updated_at=now))
    _events(conn, ({"payment_id": pid, "event": "held", "old_state": "pending", "new_state": "held",
                    "reason": "first use of a WEB account: held until the account is validated ([validation] "
                              "first_use = hold)", "occurred_on": file_date} for pid in ids))
    out.held += len(ids)


def _review_late_holds(conn, file_date: date, policy: ValidationPolicy, out: ValidationOutcome) -> None:
    """A held payment that, released when its account's prenote allows, would settle after its
    premium's due date stays held and opens a review item (once) saying so."""
    open_valid = select(Prenote.bank_account_id, func.max(Prenote.valid_from).label("valid_from")) \
        .where(Prenote.state == "in_file").group_by(Prenote.bank_account_id).subquery()
    rows = conn.execute(
        select(Payment.id, Payment.amount_cents, Payment.member_id, Payment.plan_id, Payment.coverage_month,
               Premium.due_date, open_valid.c.valid_from)
        .outerjoin(Premium, and_(Premium.member_id == Payment.member_id, Premium.plan_id == Payment.plan_id,
                                 Premium.coverage_month == Payment.coverage_month))
        .outerjoin(open_valid, open_valid.c.bank_account_id == Payment.bank_account_id)
        .where(Payment.state == "held")).all()
    late = []
    for pid, cents, member, plan, month, due, valid_from in rows:
        release = expected_release(file_date, valid_from, policy.prenote_wait_banking_days)
        if misses_due_date(release, due):
            late.append((pid, cents, member, plan, month, due, release))
    if not late:
        return
    keys = [f"{HOLD_REVIEW_KIND}|{pid}" for pid, *_ in late]
    seen = set(conn.scalars(select(ReviewItem.dedupe_key).where(ReviewItem.dedupe_key.in_(keys))))
    rows = []
    for (pid, cents, member, plan, month, due, release), key in zip(late, keys):
        if key in seen:
            continue
        rows.append({
            "kind": HOLD_REVIEW_KIND, "subject": "payment", "subject_ref": None, "payment_id": pid,
            "amount_cents": cents, "dedupe_key": key, "status": "open",
            "detail": (f"payment #{pid} ({dollars(cents)}, member {member}, plan {plan}, {month:%Y-%m}) is held "
                       f"until its new WEB account is validated (earliest {release}); it would settle after the "
                       f"premium's due date {due}: the member can pay another way; coverage rules apply")[:300],
        })
    if rows:
        conn.execute(insert(ReviewItem), rows)
        out.review_items += len(rows)


def accept_risk(conn, file_date: date, policy: ValidationPolicy, out: ValidationOutcome) -> None:
    """`first_use = "send"`: each first-use WEB payment going out tonight on an account not
    validated records the acceptance of the risk (once). Called after the debit rules screened the
    night's debits (a debit they stop goes nowhere)."""
    if not policy.active or policy.holds:
        return
    done = select(PaymentEvent.payment_id).where(PaymentEvent.event == RISK_EVENT)
    ids = list(conn.scalars(
        select(Payment.id).join(BankAccount, BankAccount.id == Payment.bank_account_id)
        .where(_first_use() & (Payment.state == "pending") & (Payment.originate_on <= file_date)
               & (BankAccount.status == "active") & (BankAccount.validation_result != "valid")
               & Payment.id.not_in(done))
        .order_by(Payment.id)))
    _events(conn, ({"payment_id": pid, "event": RISK_EVENT, "old_state": "pending", "new_state": "pending",
                    "reason": "first use of a WEB account sent before it was validated ([validation] first_use = "
                              "send: risk accepted)", "occurred_on": file_date} for pid in ids))
    out.risk_accepted += len(ids)


def pending_prenotes(conn):
    """The prenotes to write tonight (active accounts), in id order: (prenote id, member id,
    payment type code, routing, encrypted account, account type, holder name)."""
    return conn.execute(
        select(Prenote.id, Prenote.member_id, Prenote.payment_type_code, BankAccount.routing_number,
               BankAccount.account_number_enc, BankAccount.account_type, BankAccount.holder_name)
        .join(BankAccount, BankAccount.id == Prenote.bank_account_id)
        .where((Prenote.state == "pending") & (BankAccount.status == "active"))
        .order_by(Prenote.id)).all()


def awaiting_validation(conn) -> dict[str, int]:
    """Counts for status and reports: accounts awaiting validation (a prenote open), payments held
    for it, and prenotes returned."""
    awaiting = conn.scalar(select(func.count(func.distinct(Prenote.bank_account_id)))
                           .where(Prenote.state.in_(("pending", "in_file")))) or 0
    held = conn.scalar(select(func.count()).select_from(Payment).where(Payment.state == "held")) or 0
    returned = conn.scalar(select(func.count()).select_from(Prenote).where(Prenote.state == "returned")) or 0
    return {"accounts_awaiting_validation": awaiting, "payments_held": held, "prenotes_returned": returned}
