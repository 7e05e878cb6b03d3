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
from typing import Iterator

from sqlalchemy import Date, Integer, String, and_, func, insert, literal, select, union_all, update

from nacha.calendar import effective_entry_date

from ..rules.money import dollars
from ..rules.premium_calendar import cleared_on
from ..rules.validation import FIRST_USE_CHANNELS, ValidationPolicy, expected_release, misses_due_date
from ..store.db import in_set
from ..store.models import (
    AutopayMandate, BankAccount, FileEntry, NachaFile, Payment, PaymentEvent, PaymentReturn, Premium, Prenote,
    ReviewItem, utcnow,
)

__all__ = ["ValidationOutcome", "accept_risk", "awaiting_validation", "count_pending_prenotes", "pending_prenotes", "prepare", "RISK_EVENT"]

RISK_EVENT = "risk_accepted"  # payment_events.event of a first-use WEB debit sent unvalidated
HOLD_REVIEW_KIND = "validation_hold"
UNVALIDATED = ("unvalidated", "pending")
PART_ROWS = 5000  # rows read at a time where a night's rows are streamed


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
    return conn.execute(update(BankAccount).where(in_set(BankAccount.id, ids)
                                                  & BankAccount.validation_result.in_(UNVALIDATED))
                        .values(validation_result="valid", validation_method=method, validated_on=on,
                                updated_at=now)).rowcount


def _validate_by_prenote(conn, file_date: date, now, out: ValidationOutcome) -> None:
    """A prenote in a file the bank confirmed, with no return by its `valid_from`, validates."""
    due = (select(Prenote.id)
           .join(FileEntry, FileEntry.prenote_id == Prenote.id)
           .join(NachaFile, NachaFile.id == FileEntry.file_id)
           .where((Prenote.state == "in_file") & (Prenote.valid_from <= file_date) & (NachaFile.state == "sent")))
    accounts = list(conn.scalars(select(Prenote.bank_account_id).where(Prenote.id.in_(due))
                                 .distinct().order_by(Prenote.bank_account_id)))
    if not accounts:
        return
    conn.execute(update(Prenote).where(Prenote.id.in_(due))
                 .values(state="validated", resolved_on=file_date, updated_at=now))
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
    conn.execute(update(Prenote).where(in_set(Prenote.bank_account_id, accounts) & (Prenote.state == "pending"))
                 .values(state="cancelled", resolved_on=file_date, updated_at=now))


def _request_prenotes(conn, file_date: date, policy: ValidationPolicy, now, out: ValidationOutcome) -> None:
    """A prenote for each active, unvalidated account of a live WEB AutoPay mandate or of a
    first-use WEB payment not yet out, unless one is already open. Under `first_use = "send"` an
    account whose WEB debit goes out tonight, or with a live debit already out, is validated by
    that debit clearing instead.

    Set-based (one INSERT ... SELECT, one UPDATE): a night with a million first uses keeps none of
    them in memory. Each account's prenote takes its member, payment type and reason from its
    first asker: the oldest mandate, else the oldest payment (by id)."""
    has_open = select(Prenote.bank_account_id).where(Prenote.state.in_(("pending", "in_file")))
    usable = (BankAccount.status == "active") & (BankAccount.validation_result == "unvalidated") \
        & BankAccount.id.not_in(has_open)
    by_mandate = (
        select(AutopayMandate.bank_account_id.label("acct"), AutopayMandate.member_id.label("member"),
               literal("R", String).label("ptc"), literal("first use by a WEB AutoPay mandate", String).label("reason"),
               literal(0, Integer).label("rank"), AutopayMandate.id.label("ord"))
        .join(BankAccount, BankAccount.id == AutopayMandate.bank_account_id)
        .where((AutopayMandate.channel == "web") & (AutopayMandate.status == "active") & usable))
    by_payment = (
        select(Payment.bank_account_id, Payment.member_id,
               func.coalesce(func.nullif(Payment.payment_type_code, ""), "S"),
               literal("first use by a ", String) + Payment.channel + literal(" payment", String),
               literal(1, Integer), Payment.id)
        .join(BankAccount, BankAccount.id == Payment.bank_account_id)
        .where(_first_use() & Payment.state.in_(("pending", "held")) & usable))
    asks = union_all(by_mandate, by_payment).subquery("asks")
    ranked = select(asks, func.row_number().over(partition_by=asks.c.acct, order_by=(asks.c.rank, asks.c.ord))
                    .label("n")).subquery("ranked")
    chosen = ranked.c.n == 1
    if not policy.holds:
        # a WEB debit going out tonight, or a live debit already out (a re-run of the night, a PPD
        # pull to the same account), validates the account when it clears
        going = select(Payment.bank_account_id).where(
            (_first_use() & Payment.state.in_(("pending", "held")) & (Payment.originate_on <= file_date))
            | Payment.state.in_(("in_file", "sent", "settled")))
        chosen = chosen & ranked.c.acct.not_in(going)
    before = conn.scalar(select(func.max(Prenote.id))) or 0
    requested = conn.execute(insert(Prenote).from_select(
        ["bank_account_id", "member_id", "sec_code", "payment_type_code", "reason", "state", "requested_on",
         "created_at", "updated_at"],
        select(ranked.c.acct, ranked.c.member, literal("WEB", String), ranked.c.ptc, ranked.c.reason,
               literal("pending", String), literal(file_date, Date), _at(now), _at(now))
        .where(chosen).order_by(ranked.c.acct)).execution_options(preserve_rowcount=True)).rowcount
    if not requested:
        return
    if conn.dialect.name == "postgresql":
        # The planner's statistics of prenotes predate these rows (the table may have been empty):
        # it took the new ones for a few hundred and visited their accounts by index in hash order,
        # reading and writing every page of bank_accounts many times over (667,000 prenotes of 1M:
        # 5.7 s, 360,000 page writes). Counted now, it scans the accounts once, in order.
        conn.exec_driver_sql("ANALYZE prenotes")
    conn.execute(update(BankAccount)
                 .where(BankAccount.id.in_(select(Prenote.bank_account_id).where(Prenote.id > before)))
                 .values(validation_result="pending", validation_method="prenote", updated_at=now))
    out.prenotes_requested += requested


def _at(now):
    """`now` as a typed literal of an INSERT ... SELECT (converted by UTCDateTime like a parameter)."""
    return literal(now, PaymentEvent.__table__.c.created_at.type)


def _events_from(conn, payments, event: str, old: str, new: str, reason: str, on: date) -> int:
    """One payment event per payment id of the select `payments`, in one INSERT ... SELECT."""
    q = select(Payment.id, literal(event, String), literal(old, String), literal(new, String),
               literal(reason, String), literal(on, Date), _at(utcnow())) \
        .where(Payment.id.in_(payments)).order_by(Payment.id)
    return conn.execute(insert(PaymentEvent).from_select(
        ["payment_id", "event", "old_state", "new_state", "reason", "occurred_on", "created_at"], q)
        .execution_options(preserve_rowcount=True)).rowcount  # (PostgreSQL: else -1 for an INSERT)





def _release(conn, file_date: date, out: ValidationOutcome, *, everything: bool = False) -> None:
    """Held payments whose account is now validated (all of them when validation is off) go back
    to pending, for tonight's file: their events first, then the rows, from the same select."""
    q = select(Payment.id).where(Payment.state == "held")
    if not everything:
        q = q.where(Payment.bank_account_id.in_(select(BankAccount.id).where(BankAccount.validation_result == "valid")))
    reason = "account validation off" if everything else "account validated"
    n = _events_from(conn, q, "released", "held", "pending", reason, file_date)
    if not n:
        return
    conn.execute(update(Payment).where(Payment.id.in_(q) & (Payment.state == "held"))
                 .values(state="pending", updated_at=utcnow()))
    out.released += n


def _hold(conn, file_date: date, now, out: ValidationOutcome) -> None:
    """First-use WEB payments due tonight on an account not validated wait, held: their events
    first, then the rows, from the same select."""
    q = (select(Payment.id)
         .join(BankAccount, BankAccount.id == Payment.bank_account_id)
         .where(_first_use() & (Payment.state == "pending") & (Payment.originate_on <= file_date)
                & (BankAccount.status == "active") & (BankAccount.validation_result != "valid")))
    n = _events_from(conn, q, "held", "pending", "held",
                     "first use of a WEB account: held until the account is validated ([validation] "
                     "first_use = hold)", file_date)
    if not n:
        return
    conn.execute(update(Payment).where(Payment.id.in_(q) & (Payment.state == "pending"))
                 .values(state="held", updated_at=now))
    out.held += n


def _review_late_holds(conn, file_date: date, policy: ValidationPolicy, out: ValidationOutcome) -> None:
    """A held payment that, released when its account's prenote allows, would settle after its
    premium's due date stays held and opens a review item (once) saying so. The held payments are
    read a part at a time (a streamed select), so a night that holds a million keeps a few thousand."""
    open_valid = select(Prenote.bank_account_id, func.max(Prenote.valid_from).label("valid_from")) \
        .where(Prenote.state == "in_file").group_by(Prenote.bank_account_id).subquery()
    rows = conn.execute(
        select(Payment.id, Payment.amount_cents, Payment.member_id, Payment.plan_id, Payment.coverage_month,
               Premium.due_date, open_valid.c.valid_from)
        .outerjoin(Premium, and_(Premium.member_id == Payment.member_id, Premium.plan_id == Payment.plan_id,
                                 Premium.coverage_month == Payment.coverage_month))
        .outerjoin(open_valid, open_valid.c.bank_account_id == Payment.bank_account_id)
        .where(Payment.state == "held").order_by(Payment.id),
        execution_options={"stream_results": True, "max_row_buffer": PART_ROWS})
    releases: dict[date | None, date] = {}  # valid_from -> expected release (few distinct values)
    try:
        for part in rows.partitions(PART_ROWS):
            late = []
            for pid, cents, member, plan, month, due, valid_from in part:
                release = releases.get(valid_from)
                if release is None:
                    release = releases[valid_from] = expected_release(file_date, valid_from,
                                                                      policy.prenote_wait_banking_days)
                if misses_due_date(release, due):
                    late.append((pid, cents, member, plan, month, due, release))
            if late:
                out.review_items += _open_late_hold_items(conn, late)
    finally:
        rows.close()


def _open_late_hold_items(conn, late: list[tuple]) -> int:
    keys = [f"{HOLD_REVIEW_KIND}|{pid}" for pid, *_ in late]
    seen = set(conn.scalars(select(ReviewItem.dedupe_key).where(in_set(ReviewItem.dedupe_key, keys))))
    items = []
    for (pid, cents, member, plan, month, due, release), key in zip(late, keys):
        if key in seen:
            continue
        items.append({
            "kind": HOLD_REVIEW_KIND, "subject": "payment", "subject_ref": None, "payment_id": pid,
            "amount_cents": cents, "dedupe_key": key, "status": "open",
            "detail": (f"payment #{pid} ({dollars(cents)}, member {member}, plan {plan}, {month:%Y-%m}) is held "
                       f"until its new WEB account is validated (earliest {release}); it would settle after the "
                       f"premium's due date {due}: the member can pay another way; coverage rules apply")[:300],
        })
    if items:
        conn.execute(insert(ReviewItem), items)
    return len(items)


def accept_risk(conn, file_date: date, policy: ValidationPolicy, out: ValidationOutcome) -> None:
    """`first_use = "send"`: each first-use WEB payment going out tonight on an account not
    validated records the acceptance of the risk (once). Called after the debit rules screened the
    night's debits (a debit they stop goes nowhere)."""
    if not policy.active or policy.holds:
        return
    done = select(PaymentEvent.payment_id).where(PaymentEvent.event == RISK_EVENT)
    q = (select(Payment.id).join(BankAccount, BankAccount.id == Payment.bank_account_id)
         .where(_first_use() & (Payment.state == "pending") & (Payment.originate_on <= file_date)
                & (BankAccount.status == "active") & (BankAccount.validation_result != "valid")
                & Payment.id.not_in(done)))
    out.risk_accepted += _events_from(conn, q, RISK_EVENT, "pending", "pending",
                                      "first use of a WEB account sent before it was validated ([validation] "
                                      "first_use = send: risk accepted)", file_date)


def pending_prenotes(conn) -> Iterator[list]:
    """The prenotes to write tonight (active accounts), in id order, a part at a time: lists of
    (prenote id, member id, payment type code, routing, encrypted account, account type, holder
    name). One streamed select (a server-side cursor on PostgreSQL; SQLite steps its statement
    lazily), as origination reads its payments: paging with `id > last ... LIMIT` made every page
    sort the remaining prenotes (1.5 s a page for 667,000 on PostgreSQL). The writes origination
    makes meanwhile (entries; prenotes already read moving to in_file when a file closes) never
    touch a row the cursor has yet to return."""
    result = conn.execute(
        select(Prenote.id, Prenote.member_id, Prenote.payment_type_code, BankAccount.routing_number,
               BankAccount.account_number_enc, BankAccount.account_type, BankAccount.holder_name)
        .join(BankAccount, BankAccount.id == Prenote.bank_account_id)
        .where(_writable()).order_by(Prenote.id),
        execution_options={"stream_results": True, "max_row_buffer": PART_ROWS})
    try:
        yield from result.partitions(PART_ROWS)
    finally:
        result.close()


def _writable():
    return (Prenote.state == "pending") & (BankAccount.status == "active")


def count_pending_prenotes(conn) -> int:
    """How many prenotes `pending_prenotes` will give."""
    return conn.scalar(select(func.count()).select_from(Prenote)
                       .join(BankAccount, BankAccount.id == Prenote.bank_account_id).where(_writable())) or 0


def awaiting_validation(conn) -> dict[str, int]:
    """Counts for status and reports: accounts awaiting validation (a prenote open), payments held
    for it, and prenotes returned."""
    awaiting = conn.scalar(select(func.count(func.distinct(Prenote.bank_account_id)))
                           .where(Prenote.state.in_(("pending", "in_file")))) or 0
    held = conn.scalar(select(func.count()).select_from(Payment).where(Payment.state == "held")) or 0
    returned = conn.scalar(select(func.count()).select_from(Prenote).where(Prenote.state == "returned")) or 0
    return {"accounts_awaiting_validation": awaiting, "payments_held": held, "prenotes_returned": returned}
