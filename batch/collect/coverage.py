"""Coverage standing, the service: `assess_coverage` feeds each policy's premiums and payments
(`policy_facts`) to the rule `batch.rules.coverage.assess_policy` (pure; its module states the
rules) and stores one current flag per policy, keeping the history (a new row whenever the standing
changes). The rule's names are re-exported here."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from sqlalchemy import Date, cast, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.orm import Session, sessionmaker

from nacha.calendar import effective_entry_date

from ..store.models import (
    CoverageFlag, FileEntry, NachaFile, Payment, PaymentEvent, PaymentReturn, Premium, utcnow,
)
from ..rules.coverage import (  # noqa: F401  (re-exported: the rules live in batch.rules.coverage)
    AT_RISK_STATUSES, SUBSIDIZED, CoverageRules, PaymentFact, PremiumFact, Standing, assess_policy, months_later,
)
from ..rules.premium_calendar import cleared_on as clearing_date

__all__ = [
    "AT_RISK_STATUSES", "SUBSIDIZED", "AssessResult", "CoverageRules", "PaymentFact", "PremiumFact", "Standing",
    "ENDED_STATES", "assess_coverage", "assess_policy", "months_later", "paid_on_time_cents",
    "policies_past_due_unclear", "policy_facts", "standings",
]

# =============================================================================================
# The service
# =============================================================================================

@dataclass
class AssessResult:
    as_of: date
    policies: int = 0
    new: int = 0  # policies assessed for the first time
    changed: int = 0  # standing differs from the current flag: a new flag row
    unchanged: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    flag_ids: list[int] = field(default_factory=list)  # the new flag rows (first 10,000)


_COMPARED = ("status", "reason_code", "reason", "months_owed", "amount_owed_cents", "deadline", "grace_month",
             "grace_months", "first_unpaid_month", "coverage_ends_on", "subsidy")
CHUNK = 2000


def assess_coverage(sessions: sessionmaker[Session], as_of: date, rules: CoverageRules = CoverageRules(),
                    tz: tzinfo | None = None) -> AssessResult:
    """Recompute every policy's standing as of `as_of` and store it: a policy whose standing is
    unchanged keeps its current flag (last_assessed_on moves); a changed one gets a new current
    flag and the old one is superseded (history kept). Streams policies a chunk at a time.
    `tz`: the zone of business dates (a mail payment counts from its submission day there)."""
    res = AssessResult(as_of)
    last: tuple[str, str] | None = None
    while True:
        with sessions() as s, s.begin():
            conn = s.connection()
            keys = _policy_keys(conn, last)
            if not keys:
                break
            last = keys[-1]
            _assess_chunk(conn, keys, as_of, rules, tz, res)
    return res


def standings(sessions: sessionmaker[Session], as_of: date, rules: CoverageRules = CoverageRules(),
              tz: tzinfo | None = None) -> Iterator[tuple[tuple[str, str], Standing]]:
    """Every policy's standing as of `as_of`, ((member_id, plan_id), Standing), computed exactly as
    `assess_coverage` computes it (the same facts, the same rule) and written nowhere: what the
    coverage report shows for a date, whether or not that date was ever assessed."""
    last: tuple[str, str] | None = None
    while True:
        with sessions() as s:
            conn = s.connection()
            keys = _policy_keys(conn, last)
            if not keys:
                return
            last = keys[-1]
            facts = policy_facts(conn, keys, tz)
        for key in keys:
            yield key, assess_policy(*facts[key], as_of, rules)


def _policy_keys(conn, after: tuple[str, str] | None) -> list[tuple[str, str]]:
    """The next CHUNK policies (member_id, plan_id) with a premium, after `after` (keyset pagination)."""
    q = select(Premium.member_id, Premium.plan_id).group_by(Premium.member_id, Premium.plan_id)
    if after is not None:
        q = q.where((Premium.member_id > after[0]) | ((Premium.member_id == after[0]) & (Premium.plan_id > after[1])))
    return [tuple(r) for r in conn.execute(q.order_by(Premium.member_id, Premium.plan_id).limit(CHUNK))]


Facts = dict[tuple[str, str], tuple[list[PremiumFact], list[PaymentFact]]]


def policy_facts(conn, keys: list[tuple[str, str]], tz: tzinfo | None,
                 exclude_payment_ids: frozenset[int] = frozenset()) -> Facts:
    """The facts `assess_policy` needs for each policy (member_id, plan_id) of `keys`: its premiums
    and its payments, every key present (([], []) for a policy with none). One set of queries for
    the chunk of keys, whatever its size (callers pass a chunk, e.g. CHUNK policies): premiums,
    payments with the file that carried each (its settlement date), and the returns and failures
    of those that ended. `tz`: the zone of business dates (a mail payment counts, and has cleared,
    from its submission day there). `exclude_payment_ids`: payments left out, e.g. the debit a
    caller is deciding whether to originate.

    A payment held for its account's validation (state `held`) is left out: it has not been made.
    A payment's `paid_on` is its origination day (or a mail payment's submission day; for a payment
    that was held, at the earliest the day it was released); `cleared_on`
    is premium_calendar.cleared_on of its settlement date: the effective entry date of the file
    that carried it, or, not in a file yet, of its origination day; a mail payment's paid_on."""
    out: Facts = {k: ([], []) for k in keys}
    members = sorted({k[0] for k in keys})
    if not members:
        return out
    for m, p, month, cents, subsidy, binder, due in conn.execute(
            select(Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.amount_due_cents,
                   Premium.subsidy, Premium.binder, Premium.due_date).where(Premium.member_id.in_(members))):
        if (m, p) in out:
            out[(m, p)][0].append(PremiumFact(month, int(cents), subsidy, bool(binder), due))
    # the day a payment held for its account's validation was released (None: never held)
    released_on = (select(func.max(PaymentEvent.occurred_on))
                   .where((PaymentEvent.payment_id == Payment.id) & (PaymentEvent.event == "released"))
                   .correlate(Payment).scalar_subquery())
    rows = [r for r in conn.execute(
        select(Payment.id, Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.amount_cents,
               Payment.state, Payment.channel, Payment.originate_on, Payment.submitted_at, Payment.retry_number,
               NachaFile.file_date, released_on)
        .outerjoin(FileEntry, FileEntry.payment_id == Payment.id)
        .outerjoin(NachaFile, NachaFile.id == FileEntry.file_id)
        .where(Payment.member_id.in_(members))).all()
        if (r[1], r[2]) in out and r[0] not in exclude_payment_ids]
    dead = [r[0] for r in rows if r[5] in ("returned", "failed")]
    ended: dict[int, tuple[date, str | None]] = {}
    for i in range(0, len(dead), 1000):
        part = dead[i:i + 1000]
        for pid, on, code in conn.execute(
                select(PaymentReturn.payment_id, PaymentReturn.returned_on, PaymentReturn.return_code)
                .where(PaymentReturn.payment_id.in_(part) & (PaymentReturn.kind == "return"))
                .order_by(PaymentReturn.id)):
            ended[pid] = (on, code)
        for pid, on in conn.execute(select(PaymentEvent.payment_id, func.max(PaymentEvent.occurred_on))
                                    .where(PaymentEvent.payment_id.in_(part) & (PaymentEvent.new_state == "failed")
                                           & PaymentEvent.event.in_(("stopped", "cancelled")))
                                    .group_by(PaymentEvent.payment_id)):
            ended.setdefault(pid, (on, None))
    for pid, m, p, month, cents, state, channel, originate_on, submitted_at, retry_number, file_date, released in rows:
        if state == "held":  # waiting for its account's validation: not made, it counts for nothing
            continue
        if channel == "mail":
            paid_on = _local_date(submitted_at, tz)
            cleared, pending = paid_on, False
        else:
            paid_on = originate_on if originate_on is not None else _local_date(submitted_at, tz)
            if released is not None:  # held, then released: made (at the earliest) the day it was released
                paid_on = max(paid_on, released)
            pending = state == "pending"
            cleared = clearing_date(effective_entry_date(file_date if file_date is not None else paid_on))
        returned_on, code = None, None
        if state in ("returned", "failed"):
            returned_on, code = ended.get(pid, (paid_on, None))
        out[(m, p)][1].append(PaymentFact(month, int(cents), paid_on, returned_on, code, cleared,
                                          int(retry_number or 0), pending, pid))
    return out


def _assess_chunk(conn, keys: list[tuple[str, str]], as_of: date, rules: CoverageRules, tz, res: AssessResult) -> None:
    facts = policy_facts(conn, keys, tz)
    current = {(f.member_id, f.plan_id): f for f in conn.execute(
        select(CoverageFlag).where(CoverageFlag.current_key.in_([CoverageFlag.key_for(*k) for k in keys])))}
    now = utcnow()
    keep: list[int] = []
    supersede: list[int] = []
    new_rows: list[dict] = []
    for key in keys:
        premiums, payments = facts[key]
        st = assess_policy(premiums, payments, as_of, rules)
        res.policies += 1
        res.by_status[st.status] = res.by_status.get(st.status, 0) + 1
        cur = current.get(key)
        if cur is not None and all(getattr(cur, a) == getattr(st, a) for a in _COMPARED):
            keep.append(cur.id)
            res.unchanged += 1
            continue
        if cur is None:
            res.new += 1
        else:
            supersede.append(cur.id)
            res.changed += 1
        new_rows.append({
            "member_id": key[0], "plan_id": key[1], **{a: getattr(st, a) for a in _COMPARED},
            "reason": st.reason[:300], "assessed_on": as_of, "last_assessed_on": as_of, "superseded_on": None,
            "current_key": CoverageFlag.key_for(*key), "created_at": now,
        })
    for i in range(0, len(keep), 1000):
        conn.execute(update(CoverageFlag).where(CoverageFlag.id.in_(keep[i:i + 1000]))
                     .values(last_assessed_on=as_of))
    for i in range(0, len(supersede), 1000):
        conn.execute(update(CoverageFlag).where(CoverageFlag.id.in_(supersede[i:i + 1000]))
                     .values(current_key=None, superseded_on=as_of))
    if new_rows:
        for (fid,) in conn.execute(insert(CoverageFlag).returning(CoverageFlag.id), new_rows):
            if len(res.flag_ids) < 10_000:
                res.flag_ids.append(fid)


def _local_date(instant: datetime, tz: tzinfo | None) -> date:
    return instant.astimezone(tz).date() if tz is not None else instant.date()


# =============================================================================================
# A set-based voucher (return processing asks it before the rule, for many policies at once)
# =============================================================================================

# States whose payments carry a return or failure day (policy_facts): the month may be unpaid.
ENDED_STATES = ("returned", "failed")


def _utc_day(conn, col):
    """The UTC calendar day of an instant column, in SQL (on or after its day in zones west of UTC,
    on or before it in zones east): used only as `_utc_day(x) < day`, which implies x's local date
    is on or before `day` in every zone (UTC-12 ... UTC+14)."""
    if conn.dialect.name == "postgresql":
        return cast(func.timezone("UTC", col), Date)
    return func.date(col)


def paid_on_time_cents(conn, premium):
    """SQL scalar: the cents paid toward `premium`'s month (an aliased or plain Premium) by payments
    made on or before its due date. paid_on (policy_facts): a debit's origination day, a mail
    payment's local submission day (taken as on time only when its UTC day is before the due date:
    on time in any zone). A payment held for its account's validation counts for nothing, and one
    released from a hold counts from its release day: neither is counted here (a policy short of
    its premium is left to the rules)."""
    W, E = aliased(Payment), aliased(PaymentEvent)
    was_held = exists(select(E.id).where((E.payment_id == W.id) & (E.event == "released")))
    return (select(func.coalesce(func.sum(W.amount_cents), 0))
            .where((W.member_id == premium.member_id) & (W.plan_id == premium.plan_id)
                   & (W.coverage_month == premium.coverage_month) & (W.state != "held") & ~was_held
                   & or_((W.channel != "mail") & (W.originate_on <= premium.due_date),
                         (W.channel == "mail") & (_utc_day(conn, W.submitted_at) < premium.due_date)))
            .scalar_subquery())


def policies_past_due_unclear(conn, members: list[str], as_of: date, threshold_cents: int,
                              in_list=None) -> set[tuple[str, str]]:
    """Of the policies of `members`, those the SQL cannot vouch for on `as_of`: a policy with a
    premium due before `as_of` that has a payment returned or failed, or that was not paid in full
    (within `threshold_cents`) by payments made on or before its due date and never held for their
    account's validation. Every other policy of these members has, on `as_of`, no month past its
    due date that is unpaid or returned, so `assess_policy` finds it neither `not_started` nor past
    due, pending termination or terminated (only `ok`, `pending_activation` or `at_risk`): the
    rule `debit_rules.coverage_allows` allows any AutoPay pull or re-presentment for it. A policy
    returned here is left to the rule (tests check the voucher against `assess_policy`).

    `in_list(column, values)`: how to write `column IN values` for long lists (default `in_`)."""
    if not members:
        return set()
    in_list = in_list or (lambda column, values: column.in_(values))
    PQ, Y = Premium, aliased(Payment)
    ended = exists(select(Y.id).where((Y.member_id == PQ.member_id) & (Y.plan_id == PQ.plan_id)
                                      & (Y.coverage_month == PQ.coverage_month) & Y.state.in_(ENDED_STATES)))
    on_time = paid_on_time_cents(conn, PQ)
    q = (select(PQ.member_id, PQ.plan_id).distinct()
         .where(in_list(PQ.member_id, members)
                & (PQ.due_date.is_(None)
                   | ((PQ.due_date < as_of) & (ended | (PQ.amount_due_cents - threshold_cents > on_time))))))
    return {(m, p) for m, p in conn.execute(q)}
