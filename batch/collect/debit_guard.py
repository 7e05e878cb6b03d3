"""The database side of the debit rules (batch/rules/debit_rules.py): loads what the rules need for a set
of debits, a chunk at a time, and screens the pending debits of a file date inside origination's
transaction, the last point before money is taken. AutoPay scheduling and return processing ask
the same rules before they create a pull or a re-presentment.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Iterable

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import aliased

from nacha import codes

from ..rules import debit_rules
from ..rules.debit_rules import GuardSettings  # noqa: F401  (re-exported)
from .coverage import Standing, assess_policy, policy_facts
from ..store.models import (
    MANDATE_LIVE_STATUSES, AutopayMandate, FileEntry, NachaFile, Payment, PaymentEvent, PaymentReturn, Premium,
    ReviewItem, utcnow,
)
from ..rules.money import dollars

__all__ = ["GuardSettings", "Screened", "authorizations", "prior_returns", "screen_pending", "standings"]

# Return codes after which a debit may be re-presented (R01, R09): the ones the limit counts.
FUNDS_RETURN_CODES = tuple(sorted(c for c, rc in codes.RETURN_CODES.items() if rc.retry_allowed))
CHUNK = 2000


Key = tuple[str, str, date, int]  # member, plan, coverage month, bank account


def prior_returns(conn, keys: Iterable[Key]) -> dict[Key, list[debit_rules.PriorReturn]]:
    """The applied R01/R09 returns of debits for each (member, plan, month, account)."""
    wanted = set(keys)
    out: dict[Key, list[debit_rules.PriorReturn]] = defaultdict(list)
    members = sorted({k[0] for k in wanted})
    for i in range(0, len(members), CHUNK):
        for m, p, month, acct, on, fdate in conn.execute(
                select(Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.bank_account_id,
                       PaymentReturn.returned_on, NachaFile.file_date)
                .select_from(PaymentReturn)
                .join(Payment, Payment.id == PaymentReturn.payment_id)
                .join(FileEntry, FileEntry.id == PaymentReturn.file_entry_id)
                .join(NachaFile, NachaFile.id == FileEntry.file_id)
                .where(Payment.member_id.in_(members[i:i + CHUNK]) & PaymentReturn.return_code.in_(FUNDS_RETURN_CODES)
                       & (PaymentReturn.kind == "return") & (PaymentReturn.status == "applied"))):
            key = (m, p, month, acct)
            if key in wanted:
                out[key].append(debit_rules.PriorReturn(on, debit_rules.settlement_of(fdate)))
    return out


def _local(instant: datetime, tz: tzinfo) -> date:
    return instant.astimezone(tz).date()


def authorizations(conn, payment_ids: Iterable[int], tz: tzinfo) -> dict[int, date]:
    """The day each debit was authorized: a member's payment when it was submitted; an AutoPay
    pull when its mandate on that account was signed; a re-presentment as its original."""
    ids = sorted(set(payment_ids))
    out: dict[int, date] = {}
    P = Payment
    rows = []
    for i in range(0, len(ids), CHUNK):
        rows += conn.execute(select(P.id, P.channel, P.member_id, P.plan_id, P.bank_account_id, P.submitted_at,
                                    P.retry_of_id).where(P.id.in_(ids[i:i + CHUNK]))).all()
    roots = sorted({r.retry_of_id for r in rows if r.retry_of_id is not None} - set(ids))
    for i in range(0, len(roots), CHUNK):
        rows += conn.execute(select(P.id, P.channel, P.member_id, P.plan_id, P.bank_account_id, P.submitted_at,
                                    P.retry_of_id).where(P.id.in_(roots[i:i + CHUNK]))).all()
    by_id = {r.id: r for r in rows}
    pulls = [r for r in rows if r.channel == "autopay"]
    mandates: dict[tuple[str, str, int], list[tuple[datetime, str]]] = defaultdict(list)
    members = sorted({r.member_id for r in pulls})
    for i in range(0, len(members), CHUNK):
        for m, p, acct, at, status in conn.execute(
                select(AutopayMandate.member_id, AutopayMandate.plan_id, AutopayMandate.bank_account_id,
                       AutopayMandate.authorized_at, AutopayMandate.status)
                .where(AutopayMandate.member_id.in_(members[i:i + CHUNK]))):
            mandates[(m, p, acct)].append((at, status))

    def own(r) -> date:
        if r.channel == "autopay":
            signed = mandates.get((r.member_id, r.plan_id, r.bank_account_id))
            if signed:  # the live mandate on the account, else the latest one signed
                live = [at for at, st in signed if st in MANDATE_LIVE_STATUSES]
                return _local(max(live) if live else max(at for at, _st in signed), tz)
        return _local(r.submitted_at, tz)

    for pid in ids:
        r = by_id.get(pid)
        if r is None:
            continue
        root = by_id.get(r.retry_of_id) if r.retry_of_id is not None else None
        out[pid] = own(root if root is not None else r)
    return out


def standings(conn, policies: Iterable[tuple[str, str]], on: date, guard: GuardSettings,
              exclude_payment_ids: frozenset[int] = frozenset()) -> dict[tuple[str, str], Standing]:
    """Each policy's coverage standing on `on`, as `coverage.assess_policy` finds it (without the
    debits being decided)."""
    keys = sorted(set(policies))
    out: dict[tuple[str, str], Standing] = {}
    for i in range(0, len(keys), CHUNK):
        part = keys[i:i + CHUNK]
        facts = policy_facts(conn, part, guard.tz, exclude_payment_ids=exclude_payment_ids)
        for key in part:
            out[key] = assess_policy(*facts[key], on, guard.coverage)
    return out


@dataclass(frozen=True)
class Candidate:
    """A debit whose fate is being decided. A re-presentment not yet made is asked about under the
    negative id of the payment it would copy (it shares that payment's authorization)."""

    id: int
    channel: str
    member_id: str
    plan_id: str
    coverage_month: date
    bank_account_id: int

    @property
    def key(self) -> Key:
        return (self.member_id, self.plan_id, self.coverage_month, self.bank_account_id)


def verdicts(conn, candidates: list[Candidate], on: date, guard: GuardSettings, *,
             exclude: frozenset[int] | None = None,
             extra_prior: dict[Key, list[debit_rules.PriorReturn]] | None = None,
             authorized: dict[int, date] | None = None) -> dict[int, debit_rules.Verdict]:
    """The verdict of each candidate going out in a file of `on` (only the refusals are returned):
    coverage that can exist (AutoPay pulls and re-presentments) and the reinitiation limit.
    `exclude`: payments left out of the coverage facts (default: the candidates themselves);
    `extra_prior`: returns being applied now, not yet recorded; `authorized`: authorization days
    known to the caller (an AutoPay pull not yet made: its mandate's), by candidate id."""
    out: dict[int, debit_rules.Verdict] = {}
    if not candidates:
        return out
    settles = debit_rules.settlement_of(on)
    automatic = [c for c in candidates if c.channel in debit_rules.AUTOMATIC_CHANNELS]
    if automatic:
        st = standings(conn, {(c.member_id, c.plan_id) for c in automatic}, on, guard,
                       frozenset(c.id for c in candidates) if exclude is None else exclude)
        for c in automatic:
            s = st[(c.member_id, c.plan_id)]
            v = debit_rules.coverage_allows(c.coverage_month, s.status, s.coverage_ends_on, s.first_unpaid_month)
            if not v.ok:
                out[c.id] = v
    prior = prior_returns(conn, {c.key for c in candidates if c.id not in out})
    for key, more in (extra_prior or {}).items():
        prior[key] = prior.get(key, []) + more
    todo = [c for c in candidates if c.id not in out and prior.get(c.key)]
    if todo:
        known = authorized or {}
        auth = authorizations(conn, [abs(c.id) for c in todo if c.id not in known], guard.tz)
        for c in todo:
            day = known[c.id] if c.id in known else auth.get(abs(c.id), on)
            v = debit_rules.reinitiation_allows(prior[c.key], day, settles,
                                                guard.max_reinitiations, guard.window_days)
            if not v.ok:
                out[c.id] = v
    return out


# -- the origination screen --------------------------------------------------------------------

@dataclass
class Screened:
    """What the screen stopped: payment id -> reason, and the review items it opened."""

    stopped: dict[int, str] = field(default_factory=dict)
    reduced: dict[int, tuple[int, int]] = field(default_factory=dict)  # AutoPay pull -> (old, new cents)
    review_items: int = 0


def _eligible(file_date: date):
    return (Payment.state == "pending") & (Payment.originate_on <= file_date) & Payment.bank_account_id.is_not(None)


def screen_pending(conn, file_date: date, guard: GuardSettings) -> Screened:
    """Stop every pending debit of `file_date` that a rule forbids, inside the caller's (the
    origination's) transaction: a premium month whose debits would add up to more than is owed;
    an AutoPay pull or re-presentment for coverage that cannot exist; a debit past the
    reinitiation limit. A stopped debit is marked failed with a `stopped` event; a member's own
    payment stopped also opens a review item (someone should tell the member)."""
    res = Screened()
    # 1. never more in flight than is owed: the months, among those with a debit going out, whose
    #    counting payments exceed the premium (one guarded query; usually none).
    q = aliased(Payment)
    total = (select(func.coalesce(func.sum(q.amount_cents), 0))
             .where((q.member_id == Premium.member_id) & (q.plan_id == Premium.plan_id)
                    & (q.coverage_month == Premium.coverage_month) & q.state.in_(debit_rules.COUNTING_STATES))
             .scalar_subquery())
    going = select(Payment.premium_id).where(_eligible(file_date) & Payment.premium_id.is_not(None))
    over = conn.execute(select(Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.amount_due_cents)
                        .where(Premium.id.in_(going) & (total > Premium.amount_due_cents))).all()
    if over:
        keys = {(m, p, month): int(due) for m, p, month, due in over}
        members = sorted({k[0] for k in keys})
        debits: dict[tuple, list[debit_rules.Debit]] = defaultdict(list)
        eligible_ids: set[int] = set()
        for i in range(0, len(members), CHUNK):
            for pid, m, p, month, channel, state, cents, root, when in conn.execute(
                    select(Payment.id, Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.channel,
                           Payment.state, Payment.amount_cents, Payment.retry_of_id, Payment.originate_on)
                    .where(Payment.member_id.in_(members[i:i + CHUNK]))):
                if (m, p, month) in keys:
                    debits[(m, p, month)].append(debit_rules.Debit(pid, channel, state, int(cents), root))
                    if state == "pending" and when is not None and when <= file_date:
                        eligible_ids.add(pid)
        for key, due in keys.items():
            plan = debit_rules.excess_debits(due, debits[key])
            for pid in plan.cancel:
                if pid in eligible_ids:  # a debit for a later day is screened on its own day
                    res.stopped[pid] = f"{key[2]:%Y-%m} would be collected beyond the {dollars(due)} owed"
            amounts = {d.id: d.amount_cents for d in debits[key]}
            for pid, cents in plan.reduce:
                if pid in eligible_ids:
                    res.reduced[pid] = (amounts[pid], cents)
    # 2. AutoPay pulls and re-presentments (coverage, reinitiation), and member payments to an
    #    account whose debits for the month were returned for funds (reinitiation).
    R, RP = PaymentReturn, aliased(Payment)
    returned_before = exists(select(R.id).join(RP, RP.id == R.payment_id).where(
        (RP.member_id == Payment.member_id) & (RP.plan_id == Payment.plan_id)
        & (RP.coverage_month == Payment.coverage_month) & (RP.bank_account_id == Payment.bank_account_id)
        & R.return_code.in_(FUNDS_RETURN_CODES) & (R.kind == "return") & (R.status == "applied")))
    stmt = (select(Payment.id, Payment.channel, Payment.member_id, Payment.plan_id, Payment.coverage_month,
                   Payment.bank_account_id)
            .where(_eligible(file_date) & (Payment.channel.in_(debit_rules.AUTOMATIC_CHANNELS) | returned_before))
            .order_by(Payment.id))
    result = conn.execute(stmt, execution_options={"stream_results": True, "max_row_buffer": CHUNK})
    try:
        for rows in result.partitions(CHUNK):
            cands = [Candidate(*r) for r in rows if r[0] not in res.stopped]
            for pid, v in verdicts(conn, cands, file_date, guard).items():
                res.stopped[pid] = v.reason
    finally:
        result.close()
    if res.stopped:
        _stop(conn, res, file_date)
    if res.reduced:
        _reduce(conn, res, file_date)
    return res


def _reduce(conn, res: Screened, on: date) -> None:
    now = utcnow()
    for pid, (_old, new) in res.reduced.items():
        conn.execute(update(Payment).where((Payment.id == pid) & (Payment.state == "pending"))
                     .values(amount_cents=new, updated_at=now))
    conn.execute(insert(PaymentEvent), [
        {"payment_id": pid, "event": "reduced", "old_state": "pending", "new_state": "pending",
         "reason": f"AutoPay pull lowered from {dollars(old)} to {dollars(new)}: the rest is paid another way",
         "occurred_on": on, "return_file_id": None, "created_at": now} for pid, (old, new) in res.reduced.items()])



def _stop(conn, res: Screened, on: date) -> None:
    ids = sorted(res.stopped)
    channels: dict[int, tuple[str, str, str, date, int]] = {}
    for i in range(0, len(ids), CHUNK):
        part = ids[i:i + CHUNK]
        for pid, channel, m, p, month, cents in conn.execute(
                select(Payment.id, Payment.channel, Payment.member_id, Payment.plan_id, Payment.coverage_month,
                       Payment.amount_cents).where(Payment.id.in_(part))):
            channels[pid] = (channel, m, p, month, int(cents))
        conn.execute(update(Payment).where(Payment.id.in_(part) & (Payment.state == "pending"))
                     .values(state="failed", updated_at=utcnow()))
    now = utcnow()
    conn.execute(insert(PaymentEvent), [
        {"payment_id": pid, "event": "stopped", "old_state": "pending", "new_state": "failed",
         "reason": _cut(f"not debited: {reason}", 200), "occurred_on": on, "return_file_id": None,
         "created_at": now} for pid, reason in res.stopped.items()])
    reviews = []
    for pid, reason in res.stopped.items():
        channel, m, p, month, cents = channels[pid]
        if channel in debit_rules.MEMBER_CHANNELS:
            reviews.append({"kind": "debit_stopped", "subject": "payment", "payment_id": pid, "amount_cents": cents,
                            "dedupe_key": f"debit_stopped|{pid}", "status": "open", "created_at": now,
                            "detail": _cut(f"{channel} payment of {m} {p} for {month:%Y-%m} not debited: {reason}; "
                                           "tell the member", 300)})
    if reviews:
        conn.execute(insert(ReviewItem), reviews)
        res.review_items = len(reviews)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
