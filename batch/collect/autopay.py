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

from sqlalchemy import (
    BigInteger, Column, Date, Index, MetaData, String, Table, and_, case, cast, exists, false, func, insert, literal,
    or_, select, update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, sessionmaker

from . import debit_guard
from .coverage import ENDED_STATES, paid_on_time_cents

from ..rules import debit_rules
from ..rules.channels import AUTOPAY_CONFIRMATION_PREFIX, autopay_confirmation_id, sec_for_mandate
from ..store.models import (
    MANDATE_CHANNELS, AutopayMandate, BankAccount, Id, Notice, Payment, PaymentEvent, PaymentReturn, Premium,
    ReviewItem, UTCDateTime, utcnow,
)
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
    judged: int = 0  # candidates the set-based pass left to the per-row path


def schedule_autopay(sessions: sessionmaker[Session], run_date: date, lead_banking_days: int = 0,
                     guard: debit_guard.GuardSettings | None = None, *, set_based: bool = True) -> AutopayResult:
    """Create the AutoPay pulls due on `run_date`. Idempotent. `guard`: the settings the debit rules
    need (coverage rules, time zone).

    `set_based` (the default): the candidates are sorted in one INSERT ... SELECT into a temporary
    table, the pulls that plainly pass every rule are created by one INSERT ... SELECT, and only
    the rest (a policy with a past premium not paid on time or a returned or failed payment, an
    authorization near the due date, a pull above the authorized amount, a mandate with two
    premiums due) go through the per-row path below, which decides with the pure rules. With
    `set_based=False` every candidate takes the per-row path (tests compare the two)."""
    guard = guard or debit_guard.GuardSettings()
    res = AutopayResult(run_date)
    due_now = debit_rules.current_due_date(run_date, lead_banking_days)
    res.due_date = due_now
    # Premiums normally fall due on the 23rd, so this is one due date; a premium with another due
    # date between it and the next draft is pulled once its own draft date comes.
    horizon = run_date + timedelta(days=60)
    with sessions() as s, s.begin():
        only = None
        if set_based:
            only = _set_based(s, res, run_date, due_now, horizon, lead_banking_days, guard)
        if only is None or res.judged:
            _per_row(s, res, run_date, due_now, horizon, lead_banking_days, guard, only)
        if only is not None:
            only.drop(s.connection())
    return res


def _per_row(s: Session, res: AutopayResult, run_date: date, due_now: date, horizon: date, lead_banking_days: int,
             guard: debit_guard.GuardSettings, only=None) -> None:
    """Decide each candidate pull with the pure rules, a chunk at a time (`only`: the temporary
    table of the set-based pass; then only its rows marked 'judge')."""
    tz = guard.tz
    last_id = 0
    while True:
        q = (select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month,
                    Premium.amount_due_cents, Premium.due_date, AutopayMandate.bank_account_id,
                    AutopayMandate.channel, AutopayMandate.authorized_at, BankAccount.status,
                    AutopayMandate.id, AutopayMandate.authorized_amount_cents)
             .join(AutopayMandate, and_(AutopayMandate.member_id == Premium.member_id,
                                        AutopayMandate.plan_id == Premium.plan_id,
                                        AutopayMandate.status == "active"))
             .join(BankAccount, BankAccount.id == AutopayMandate.bank_account_id)
             .where((Premium.due_date >= due_now) & (Premium.due_date <= horizon) & (Premium.id > last_id)))
        if only is not None:
            q = q.where(Premium.id.in_(select(only.c.premium_id).where(only.c.bucket == "judge")))
        rows = s.execute(q.order_by(Premium.id).limit(CHUNK)).all()
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


# -- the set-based pass ------------------------------------------------------------------------
# Bucket of each candidate (premium due in the window, its member's live mandate), in the order the
# per-row path decides: already scheduled, not due yet, covered, account blocked, then either a
# pull that plainly passes every rule or one left to the per-row path ('judge').
_BUCKETS = ("scheduled", "not_due", "covered", "blocked", "pull", "judge")
# An instant t has a local date on or before D in every zone (UTC-12 ... UTC+14) when t is before
# D+1 00:00 UTC less 14 hours; later ones (the same day) are left to the pure rule.
_SAFE_BEFORE_NEXT_UTC_MIDNIGHT = timedelta(hours=14)


def surely_on_or_before(day: date) -> datetime:
    """The instant before which every instant's local date, in any time zone, is on or before `day`
    (the set-based pass compares instants with it; tests check it against the local date)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=timezone.utc) - _SAFE_BEFORE_NEXT_UTC_MIDNIGHT


def _run_table() -> Table:
    return Table("autopay_run", MetaData(),
                 Column("premium_id", Id, primary_key=True, autoincrement=False),
                 Column("mandate_id", Id, nullable=False),
                 Column("bank_account_id", Id), Column("member_id", String(15)), Column("plan_id", String(20)),
                 Column("coverage_month", Date), Column("channel", String(8)), Column("owed", BigInteger),
                 Column("bucket", String(10)), Index("ix_autopay_run_mandate", "mandate_id"),
                 prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


def clean_policies_clause(conn, member_col, plan_col, as_of: date, threshold_cents: int):
    """SQL: the policy (member_col, plan_col) has no payment returned or failed, no return of any
    kind recorded against its payments, and every premium due before `as_of` was paid in full
    (within `threshold_cents`) by payments made on or before its due date (never held for account
    validation). Such a policy's standing on `as_of` is 'ok' or 'pending_activation'
    (batch.rules.coverage.assess_policy: no return, no month unpaid after its due date), so the
    coverage rule allows any pull, and no R01/R09 return counts toward the reinitiation limit. A
    policy not matching is left to the pure rules (tests check the clause against assess_policy)."""
    Y, Z = aliased(Payment), aliased(Payment)
    PQ = aliased(Premium)
    ended = exists(select(Y.id).where((Y.member_id == member_col) & (Y.plan_id == plan_col)
                                      & Y.state.in_(ENDED_STATES)))
    returned = exists(select(PaymentReturn.id).join(Z, Z.id == PaymentReturn.payment_id)
                      .where((Z.member_id == member_col) & (Z.plan_id == plan_col)))
    on_time = paid_on_time_cents(conn, PQ)  # held or released payments not counted: left to the rules
    unpaid = exists(select(PQ.id).where((PQ.member_id == member_col) & (PQ.plan_id == plan_col)
                                        & (PQ.due_date < as_of)
                                        & (PQ.amount_due_cents - threshold_cents > on_time)))
    return ~ended & ~returned & ~unpaid


def _set_based(s: Session, res: AutopayResult, run_date: date, due_now: date, horizon: date,
               lead_banking_days: int, guard: debit_guard.GuardSettings) -> Table:
    """Sort every candidate into a bucket in one statement, create the plain pulls in one INSERT ...
    SELECT, count the rest; the 'judge' rows are left in the returned temporary table for the
    per-row path. The low-cardinality rules are evaluated here with the pure functions themselves
    (the draft date of each due date in the window, the SEC code of each mandate channel) and
    passed to SQL as values."""
    conn = s.connection()
    # (no JIT on PostgreSQL, see db.make_engine: the bucket statement alone spent 1.2 s of its 2.1 s
    # compiling with JIT, 100,000 mandates after a night's 100,000 payments, EXPLAIN's JIT timing)
    P, M, B = Premium, AutopayMandate, BankAccount
    in_window = (P.due_date >= due_now) & (P.due_date <= horizon)
    dues = sorted(d for (d,) in conn.execute(select(P.due_date).where(in_window).distinct()))
    eligible = [d for d in dues if autopay_draft_date(d, lead_banking_days) <= run_date]
    Q, X = aliased(Payment), aliased(Payment)
    covered = (select(func.coalesce(func.sum(Q.amount_cents), 0))
               .where((Q.member_id == P.member_id) & (Q.plan_id == P.plan_id) & (Q.coverage_month == P.coverage_month)
                      & Q.state.in_(COVERING_STATES)).scalar_subquery())
    inner = (select(P.id.label("premium_id"), M.id.label("mandate_id"), M.bank_account_id, P.member_id, P.plan_id,
                    P.coverage_month, M.channel, (P.amount_due_cents - covered).label("owed"),
                    M.authorized_amount_cents.label("authorized"), P.due_date, M.authorized_at,
                    B.status.label("account_status"),
                    exists(select(X.id).where(X.autopay_premium_id == P.id)).label("scheduled"))
             .join(M, and_(M.member_id == P.member_id, M.plan_id == P.plan_id, M.status == "active"))
             .join(B, B.id == M.bank_account_id)
             .where(in_window)
             .cte("candidates").prefix_with("MATERIALIZED"))  # owed: computed once per row
    c = inner.c
    authorized_in_time = or_(false(), *[(c.due_date == d) & (c.authorized_at < surely_on_or_before(d))
                                        for d in eligible])
    amount_ok = c.authorized.is_(None) | (c.owed <= c.authorized)
    bucket = case(
        (c.scheduled, "scheduled"),
        (~c.due_date.in_(eligible), "not_due"),
        (c.owed <= 0, "covered"),
        (c.account_status != "active", "blocked"),
        (authorized_in_time & amount_ok
         & clean_policies_clause(conn, c.member_id, c.plan_id, run_date, guard.coverage.payment_threshold_cents),
         "pull"),
        else_="judge")
    run = _run_table()
    run.create(conn)
    conn.execute(insert(run).from_select(
        ["premium_id", "mandate_id", "bank_account_id", "member_id", "plan_id", "coverage_month", "channel", "owed",
         "bucket"],
        select(c.premium_id, c.mandate_id, c.bank_account_id, c.member_id, c.plan_id, c.coverage_month, c.channel,
               c.owed, bucket)))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE autopay_run")  # a temporary table has no statistics until asked
    # A mandate with two premiums due in one run: its first pull sets the authorized amount the
    # second is held to, so the per-row path takes both, in order.
    twice = (select(run.c.mandate_id).where(run.c.bucket.in_(("pull", "judge"))).group_by(run.c.mandate_id)
             .having(func.count() > 1))
    conn.execute(update(run).where((run.c.bucket == "pull") & run.c.mandate_id.in_(twice)).values(bucket="judge"))
    counts = dict(conn.execute(select(run.c.bucket, func.count()).group_by(run.c.bucket)).all())
    res.already_scheduled += counts.get("scheduled", 0)
    res.not_due_yet += counts.get("not_due", 0)
    res.covered += counts.get("covered", 0)
    res.account_blocked += counts.get("blocked", 0)
    res.judged = counts.get("judge", 0)
    if counts.get("pull"):
        # A mandate's first pull sets the amount it authorized (debit_rules.amount_change).
        # (UPDATE ... FROM: each such mandate has exactly one pull in the run, see `twice` above)
        mt = M.__table__
        first = update(mt).where((mt.c.id == run.c.mandate_id) & (run.c.bucket == "pull")
                                 & mt.c.authorized_amount_cents.is_(None)).values(authorized_amount_cents=run.c.owed)
        if conn.dialect.name == "postgresql":
            _in_mandate_order(conn, first)
        else:
            conn.execute(first)
        now = utcnow()
        sec = {ch: sec_for_mandate(ch) for ch in MANDATE_CHANNELS}
        pulls = (select(literal(AUTOPAY_CONFIRMATION_PREFIX) + cast(run.c.premium_id, String),
                        literal("autopay"), run.c.member_id, run.c.plan_id, run.c.coverage_month, run.c.premium_id,
                        run.c.owed, run.c.bank_account_id,
                        literal(datetime.combine(run_date, time(0), tzinfo=timezone.utc), UTCDateTime),
                        case({ch: v[0] for ch, v in sec.items()}, value=run.c.channel),
                        case({ch: v[1] for ch, v in sec.items()}, value=run.c.channel),
                        literal(run_date, Date), literal("pending"), run.c.premium_id, literal(0),
                        literal(now, UTCDateTime), literal(now, UTCDateTime))
                 .where(run.c.bucket == "pull").order_by(run.c.premium_id))
        cols = ["confirmation_id", "channel", "member_id", "plan_id", "coverage_month", "premium_id", "amount_cents",
                "bank_account_id", "submitted_at", "sec_code", "payment_type_code", "originate_on", "state",
                "autopay_premium_id", "retry_number", "created_at", "updated_at"]
        table = Payment.__table__
        made, cents, ids = _insert_pulls(conn, table, cols, pulls)
        res.created += made
        res.created_cents += cents
        res.pulls.extend(ids)
    return run


def _in_mandate_order(conn, stmt) -> None:
    """PostgreSQL: run the UPDATE of the mandates joined to the run table in mandate id order (a
    merge join or ordered loop, not a hash join). The rows each get a new version and new entries
    in every index of `autopay_mandates`; in the order of a hash join (rows spread over its
    batches) that touched every page at random: at 1,000,000 mandates, larger than the server's
    buffers, 41.6 s with 2 million pages read and written back; in id order 16.9 s, 37,000 read.
    The setting is the transaction's own (set_config ..., true) and put back right after."""
    was = conn.exec_driver_sql("SELECT current_setting('enable_hashjoin')").scalar_one()
    conn.execute(select(func.set_config("enable_hashjoin", "off", True)))
    try:
        conn.execute(stmt)
    finally:
        conn.execute(select(func.set_config("enable_hashjoin", was, True)))


def _insert_pulls(conn, table: Table, cols: list[str], pulls) -> tuple[int, int, list[int]]:
    """INSERT ... SELECT of the plain pulls, skipping a premium another run pulled meanwhile (unique
    autopay_premium_id): (pulls created, their cents, the first 1,000 payment ids). Counted in
    the database, not by returning every new row to Python (at 1,000,000 pulls those rows were
    about 230 MB of the process's 334 MB peak)."""
    if conn.dialect.name == "postgresql":
        made = (postgresql.insert(table).from_select(cols, pulls)
                .on_conflict_do_nothing(index_elements=["autopay_premium_id"])
                .returning(table.c.id, table.c.amount_cents).cte("made"))
        first = select(made.c.id).order_by(made.c.id).limit(1000).subquery()
        n, cents, ids = conn.execute(select(func.count(), func.coalesce(func.sum(made.c.amount_cents), 0),
                                            select(func.array_agg(first.c.id)).scalar_subquery())).one()
        return int(n), int(cents), list(ids or [])
    # SQLite has no INSERT in a WITH. The transaction holds the database's only write lock (BEGIN
    # IMMEDIATE, and the mandates were updated just before), so no one else inserts meanwhile, and
    # a new row's id is above the highest before: the new pulls are the payments above it.
    before = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    conn.execute(sqlite.insert(table).from_select(cols, pulls)
                 .on_conflict_do_nothing(index_elements=["autopay_premium_id"]))
    n, cents = conn.execute(select(func.count(), func.coalesce(func.sum(table.c.amount_cents), 0))
                            .where(table.c.id > before)).one()
    ids = conn.execute(select(table.c.id).where(table.c.id > before).order_by(table.c.id).limit(1000)).scalars().all()
    return int(n), int(cents), list(ids)


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
