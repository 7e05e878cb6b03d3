"""Applying the bank's return and NOC files: each return entry is matched to our original entry by
its Original Entry Trace Number (addenda 99 -> file_entries.trace_number), checked against the
amount and account, and handled by its code's disposition (nacha.codes, never raw codes); each
NOC corrects the stored bank account with an audit record. What cannot be applied automatically
goes to the review list (review_items), never dropped: a return code the tables do not know or that
is not in effect yet is not applied at all, and a code whose disposition is review marks the payment
failed and asks a person what follows.

A file is applied in ONE transaction and ledgered by sha256 (return_files): the same bytes are
applied once; a file that fails validation is rejected whole (nothing applied) with its located
errors. The decisions (`decide_return`, `plan_retry`, `plan_noc`, and `plan_returns` /
`plan_retries` / `return_actions`, which plan a chunk of returns with them) live in
batch/rules/returns.py, pure; `process_return_files` does the I/O around them, streaming the file a
chunk at a time. Their names are re-exported here.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import (
    Date, SmallInteger, String, any_, bindparam, cast, func, insert, literal, select, text, update,
)
from sqlalchemy.types import ARRAY
from sqlalchemy.orm import Session, aliased, sessionmaker

from nacha import codes
from nacha.errors import Issue
from nacha.reader import BatchStart, EntryItem, FileStart, Reader
from nacha.fields import mask_last4
from nacha.routing import check_digit

from . import debit_guard
from .coverage import policies_past_due_unclear

from ..rules import debit_rules
from ..rules.bank_statement import return_settlement_day
from ..rules.channels import RETRY_CONFIRMATION_PREFIX
from ..rules.counts import counted
from ..store.crypto import RETURN_FILE_CONTEXT, Keyring, mask
from ..store.db import bulk_insert, custom_plans, in_set
from ..store.file_errors import dump_errors, load_errors
from ..store.fsutil import file_sha256
from ..store.models import (
    UTCDateTime,
    AccountChange,
    MANDATE_LIVE_STATUSES,
    AutopayMandate,
    BankAccount,
    FileEntry,
    NachaFile,
    Payment,
    PaymentEvent,
    PaymentReturn,
    Premium,
    Prenote,
    ReturnFile,
    ReturnFileContent,
    ReviewItem,
    utcnow,
)
from ..rules.returns import (  # noqa: F401  (re-exported: the rules live in batch.rules.returns)
    AccountState, AppliedReturn, NocPlan, OriginalEntry, OriginalFacts, PlannedRetry, RetryPlan, ReturnDecision,
    ReturnLine, ReturnPlan, ReturnPolicy, ReturnSeen, ReviewPlan, decide_return, keep_retries, plan_noc,
    plan_retries, plan_retry, plan_returns, retry_date, return_actions, return_code_review, return_facts_needed,
    returned_state_for, review_location, state_for_disposition, IN_FLIGHT_STATES, cut, MISMATCH_KINDS,
    OPEN_RETRY_STATES, account_problem, prenote_match_problems,
)
from ..rules.money import dollars
from .origination import ADVISORY_LOCK_KEY

__all__ = [
    "COUNTING_STATES", "IN_FLIGHT_STATES", "AccountState", "AppliedReturn", "FileOutcome", "NocPlan", "OriginalEntry",
    "PlannedRetry", "ProcessResult", "ReturnDecision", "ReturnLine", "ReturnPlan", "ReturnPolicy", "ReturnSeen",
    "RetryPlan", "ReviewPlan", "ManualApplication", "ManualRefusal", "apply_to_payment", "apply_to_prenote", "cancel_unneeded_retries", "decide_return", "file_sha256", "keep_retries",
    "merged_account_reason", "merged_into", "outcome_words", "plan_noc", "plan_retries", "plan_retry",
    "plan_returns", "process_inbox", "process_return_file", "process_return_files", "retry_date",
    "return_actions", "return_code_review", "return_facts_needed", "returned_state_for",
]

CHUNK = 5000  # entries of the file applied together
PART = 5000  # values in one IN list (SQLite allows 32,766 parameters a statement)
# Row timestamps of bulk inserts from the database clock (one SQL expression, not a bound value
# processed per row: with 100,000 rows that is seconds).
_NOW = func.now()
# Payments that count toward a premium (paid, or on their way): one definition, in debit_rules.
COUNTING_STATES = debit_rules.COUNTING_STATES
# Pending payments that a revoked AutoPay authorization stops (a one-time payment carries its own).
_MANDATE_CHANNELS = ("autopay", "retry")


_settles = lru_cache(maxsize=4096)(debit_rules.settlement_of)  # asked once per entry


# =============================================================================================
# Results
# =============================================================================================

@dataclass
class FileOutcome:
    path: str
    sha256: str = ""
    status: str = "applied"  # 'applied' | 'duplicate' | 'rejected'
    return_file_id: int | None = None
    returns: int = 0
    nocs: int = 0
    returns_applied: int = 0
    nocs_applied: int = 0
    nocs_refused: int = 0
    retries_scheduled: int = 0
    accounts_blocked: int = 0
    mandates_suspended: int = 0
    mandates_revoked: int = 0
    payments_failed: int = 0  # returned payments marked failed, and pending (or held) ones stopped
    prenotes_returned: int = 0  # prenote returns applied: each blocked its account
    prenotes_corrected: int = 0  # NOCs answering a prenote: the account corrected, and validated
    review_items: int = 0
    errors: list[str] = field(default_factory=list)
    # The located errors behind `errors` when the file was rejected as invalid (a file rejected
    # before they were stored apart, or one that could not be read, has none).
    issues: list[Issue] = field(default_factory=list)
    # The reader's warnings (a return code the tables do not know, ...): the file is applied; the
    # entries they name are on the review list.
    warnings: list[str] = field(default_factory=list)
    previously_processed_on: date | None = None

    @property
    def problems(self) -> bool:
        return self.status == "rejected" or self.review_items > 0


@dataclass
class ProcessResult:
    processed_on: date
    files: list[FileOutcome] = field(default_factory=list)
    retries_cancelled: int = 0

    @property
    def problems(self) -> bool:
        return any(f.problems for f in self.files)


class _Rejected(Exception):
    def __init__(self, issues: list[Issue], warnings: list[Issue]):
        self.issues = issues
        self.warnings = warnings


# =============================================================================================
# The service
# =============================================================================================

Mark = Callable[[Session, FileOutcome], None]


def process_return_files(sessions: sessionmaker[Session], keyring: Keyring, paths: Iterable[str | os.PathLike],
                         processed_on: date, policy: ReturnPolicy = ReturnPolicy(), *,
                         on_file: Callable[[FileOutcome], None] | None = None) -> ProcessResult:
    """Apply each file in turn (each in its own transaction); see `process_return_file`."""
    result = ProcessResult(processed_on)
    for p in paths:
        outcome = process_return_file(sessions, keyring, p, processed_on, policy)
        result.files.append(outcome)
        if on_file:
            on_file(outcome)
    return result


def process_inbox(sessions: sessionmaker[Session], keyring: Keyring, inbox: Path, processed_on: date,
                  policy: ReturnPolicy = ReturnPolicy(), *,
                  on_file: Callable[[FileOutcome], None] | None = None) -> ProcessResult:
    """Apply every inbox file the inbound ledger lists as received and not yet processed (oldest
    first), marking each processed in the same transaction that applies (or rejects) it."""
    from ..bank.inbound import mark_inbound_processed, pending_inbound

    result = ProcessResult(processed_on)
    for pending in pending_inbound(sessions, inbox):
        def mark(s: Session, out: FileOutcome, _id=pending.id) -> None:
            mark_inbound_processed(s, _id, outcome_words(out))

        outcome = process_return_file(sessions, keyring, pending.path, processed_on, policy, mark=mark)
        result.files.append(outcome)
        if on_file:
            on_file(outcome)
    return result


def outcome_words(out: FileOutcome) -> str:
    """A short outcome for ledgers and logs."""
    if out.status == "duplicate":
        return f"duplicate: applied before on {out.previously_processed_on}"
    if out.status == "rejected":
        return f"rejected: invalid file ({counted(len(out.errors), 'error')})"
    prenotes = ""
    if out.prenotes_returned or out.prenotes_corrected:
        prenotes = (f" (prenotes: {out.prenotes_returned} returned, account blocked; {out.prenotes_corrected} "
                    "corrected by a NOC, account validated)")
    return (f"applied: {out.returns_applied} of {counted(out.returns, 'return')}, "
            f"{out.nocs_applied} of {counted(out.nocs, 'NOC')}, "
            f"{out.review_items} for review{prenotes}")


def process_return_file(sessions: sessionmaker[Session], keyring: Keyring, path: str | os.PathLike,
                        processed_on: date, policy: ReturnPolicy = ReturnPolicy(), *,
                        mark: Mark | None = None, set_based: bool = True) -> FileOutcome:
    """Apply one return/NOC file in one transaction. The same bytes twice: applied once (status
    'duplicate' the second time). A file with validation errors: nothing applied, the file recorded
    as rejected with its located errors (status 'rejected', again on every re-run). `mark(session,
    outcome)` runs inside the transaction that records the outcome (the inbound ledger uses it).
    An unreadable file is reported (status 'rejected') but neither recorded nor marked.
    `set_based=False`: the coverage rule is asked about every re-presentment (see
    `_Applier._verdicts_set_based`; tests compare the two)."""
    path = Path(path)
    out = FileOutcome(str(path))
    try:
        out.sha256 = file_sha256(path)
    except OSError as e:
        out.status = "rejected"
        out.errors = [f"{path}: cannot read file: {e.strerror or e}"]
        return out
    try:
        with sessions() as s, s.begin():
            _lock(s)
            custom_plans(s.connection())  # PostgreSQL: no generic plans for the file's repeated look-ups
            prior = s.scalar(select(ReturnFile).where(ReturnFile.sha256 == out.sha256))
            if prior is not None:
                _seen_before(out, prior)
                if mark:
                    mark(s, out)
                return out
            rf = ReturnFile(sha256=out.sha256, file_name=path.name[:500], status="applied",
                            processed_on=processed_on, returns=0, nocs=0, applied=0, review_items=0)
            s.add(rf)
            s.flush()
            applier = _Applier(s, keyring, rf, processed_on, policy, out)
            applier.set_based = set_based
            reader = Reader(path, policy.profile, name=path.name)
            julian = ""  # the current batch's settlement date (Julian day), for what the bank debits us
            settles: list[str] = []
            for item in reader:
                if isinstance(item, EntryItem):
                    if reader.issues:
                        # The file will be rejected whole: read on only to list every problem.
                        applier.items.clear()
                        continue
                    before = out.returns
                    applier.add(item)
                    if out.returns > before:
                        applier.return_total += int(item.record.amount)
                        settles.append(julian)
                elif isinstance(item, BatchStart):
                    julian = (getattr(item.header, "settlement_date", "") or "").strip()
                elif isinstance(item, FileStart):
                    rf.file_creation_date = _yymmdd(item.header.file_creation_date)
            out.warnings = [str(w) for w in reader.warnings]
            rf.warnings = dump_errors(reader.warnings) if reader.warnings else None  # recorded with the file
            if reader.issues:
                raise _Rejected(reader.issues, reader.warnings)  # rolls the whole file back
            applier.finish()
            if out.review_items:
                _keep_bytes(s, keyring, rf, path, out.sha256)
            rf.returns, rf.nocs = out.returns, out.nocs
            if out.returns:
                rf.return_total_cents = applier.return_total
                days = [d for d in (return_settlement_day(j, rf.file_creation_date or processed_on) for j in settles) if d]
                rf.settlement_date = max(days) if days else None
            rf.applied = out.returns_applied + out.nocs_applied
            rf.review_items = out.review_items
            out.return_file_id = rf.id
            if mark:
                mark(s, out)
    except _Rejected as r:
        return _record_rejection(sessions, path, out, processed_on, r.issues, mark, r.warnings)
    return out


def _keep_bytes(s: Session, keyring: Keyring, rf: ReturnFile, path: Path, sha256: str) -> None:
    """Keep (encrypted) the bytes of a file that opened review items: a person deciding one reads
    the entry again (`achbatch review show`, `apply_to_payment`). Bytes that no longer match the
    hash the file was applied under (the file changed meanwhile) are not kept."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() == sha256:
        s.add(ReturnFileContent(return_file_id=rf.id, content_enc=keyring.encrypt(data, RETURN_FILE_CONTEXT)))


def _seen_before(out: FileOutcome, prior: ReturnFile) -> FileOutcome:
    out.return_file_id = prior.id
    out.previously_processed_on = prior.processed_on
    out.warnings = load_errors(prior.warnings, prior.file_name)[0]  # as recorded with the file
    if prior.status == "rejected":
        out.status = "rejected"
        out.errors, out.issues = load_errors(prior.errors, prior.file_name)
    else:
        out.status = "duplicate"
    return out


def _record_rejection(sessions, path: Path, out: FileOutcome, processed_on: date, issues: list[Issue],
                      mark: Mark | None, warnings: list[Issue] = ()) -> FileOutcome:
    fresh = FileOutcome(out.path, out.sha256, "rejected")
    fresh.issues = list(issues)
    fresh.errors = [str(i) for i in issues]
    fresh.warnings = [str(w) for w in warnings]
    with sessions() as s, s.begin():
        prior = s.scalar(select(ReturnFile).where(ReturnFile.sha256 == out.sha256))
        if prior is not None:  # another run recorded it meanwhile
            _seen_before(fresh, prior)
        else:
            rf = ReturnFile(sha256=out.sha256, file_name=path.name[:500], status="rejected",
                            processed_on=processed_on, returns=0, nocs=0, applied=0, review_items=0,
                            errors=dump_errors(fresh.issues),
                            warnings=dump_errors(warnings) if warnings else None)
            s.add(rf)
            s.flush()
            fresh.return_file_id = rf.id
        if mark:
            mark(s, fresh)
    return fresh


def _lock(s: Session) -> None:
    """Serialise with origination (the same PostgreSQL advisory lock): a payment the return
    processing stops must not be claimed by a file being built. SQLite: BEGIN IMMEDIATE."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})


def _in(column, values, dialect: str = "sqlite"):
    """`column IN (values)` for long lists: on PostgreSQL `column = ANY(array)`, one parameter
    (thousands of IN parameters are slow to send and plan). On SQLite a list of ids is one JSON
    parameter too (`db.in_set`: `IN (SELECT value FROM json_each(?))`; every statement here that
    takes one was checked to search its index by it, and SQLAlchemy names no parameter per id:
    half the time of a 5,000-id look-up); other values (trace numbers, member ids) take one
    expanding parameter, so the list is not coerced element by element when the statement is built
    (json_each was once seen to make SQLite's planner scan a table; only the statements by id
    were checked)."""
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    if values and all(type(v) is int for v in values):
        return in_set(column, values)
    return column.in_(bindparam(None, values, expanding=True))


def _insert_rows(conn, model, rows: list[dict]) -> None:
    """Insert many rows that share their keys, stamped created_at now, as one driver-level bulk
    load (`db.bulk_insert`: COPY on PostgreSQL, the driver's executemany on SQLite; SQLAlchemy's
    own executemany built every row's parameters: a tenth of the CPU of 100,000 returns). The
    stamp: the database's transaction time on PostgreSQL, the clock of this machine (the
    database's own) on SQLite."""
    if not rows:
        return
    now = conn.execute(select(_NOW)).scalar_one() if conn.dialect.name == "postgresql" else utcnow()
    for r in rows:
        r["created_at"] = now
    bulk_insert(conn, model.__table__, rows)


def _yymmdd(v: str) -> date | None:
    try:
        return date(2000 + int(v[0:2]), int(v[2:4]), int(v[4:6]))
    except (ValueError, TypeError):
        return None




@dataclass
class _Item:
    line: int
    entry: tuple
    addenda: tuple  # the 98 or 99 addenda record
    kind: str  # '99' | '98' | ''
    addenda_line: int | None = None


def _location_json(kind: str, it: _Item) -> str | None:
    where = review_location(kind, (it.line, it.entry), (it.addenda_line, it.addenda) if it.addenda else None)
    return json.dumps(where) if where else None


class _Applier:
    """Applies a file's returns and NOCs a chunk at a time inside the file's transaction."""

    def __init__(self, s: Session, keyring: Keyring, rf: ReturnFile, processed_on: date, policy: ReturnPolicy,
                 out: FileOutcome):
        self.s = s
        self.conn = s.connection()
        self.keyring = keyring
        self.rf = rf
        self.on = processed_on
        self.policy = policy
        self.out = out
        self.items: list[_Item] = []
        self.return_total = 0  # cents of the file's return entries (what the bank debits us)
        self.now = utcnow()
        self.submitted_at = datetime.combine(processed_on, time(0), tzinfo=timezone.utc)
        self.hashes: dict[tuple[str, str], tuple[str, ...]] = {}
        self.prenote_of: dict[str, tuple[int, str]] = {}  # original trace -> (prenote id, its state)
        # A person's match (`apply_to_payment`): an entry that would go to the review list is refused
        # instead; `force` lets the mismatches of MISMATCH_KINDS through (listed in `overridden`).
        self.manual = False
        self.force = False
        self.overridden: list[str] = []
        # Re-presentments: the coverage rule is asked only of the policies SQL cannot vouch for
        # (`_verdicts_set_based`); False: of every one (tests compare the two).
        self.set_based = True
        dialect = self.conn.dialect.name
        self._in = lambda column, values: _in(column, values, dialect)

    # -- intake -----------------------------------------------------------------------------------
    def add(self, item: EntryItem) -> None:
        kind, addenda, addenda_line = "", None, None
        for a in item.addenda:
            if a is None:
                continue
            t = a[1].addenda_type_code
            if t in ("98", "99"):
                kind, addenda, addenda_line = t, a[1], a[0]
                break
        if kind == "99":
            self.out.returns += 1
        elif kind == "98":
            self.out.nocs += 1
        self.items.append(_Item(item.line, item.record, addenda, kind, addenda_line))
        if len(self.items) >= CHUNK:
            self._flush()

    def finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        traces = sorted({it.addenda.original_entry_trace_number for it in items if it.addenda is not None})
        self._apply_items(items, self._lookup(traces))

    def _apply_items(self, items: list[_Item], origs: dict[str, OriginalFacts]) -> None:
        """Apply returns and NOCs to the originals `origs` names by original trace number: the
        entries' own matches (`_lookup`), or the payment a person matched an entry to
        (`apply_to_payment`). One code path for both."""
        self.reviews: list[dict] = []
        nocs = [it for it in items if it.kind == "98"]
        rets = [it for it in items if it.kind == "99"]
        if self.prenote_of:
            prenote_rets = [it for it in rets if it.addenda.original_entry_trace_number in self.prenote_of]
            if prenote_rets:
                rets = [it for it in rets if it.addenda.original_entry_trace_number not in self.prenote_of]
                self._apply_prenote_returns(prenote_rets, origs)
        for it in items:
            if it.kind == "":
                self._review(it, "not_return_or_noc", "", "", "a forward entry, neither a return nor a NOC")
        if nocs:
            self._apply_nocs(nocs, origs)
        if rets:
            self._apply_returns(rets, origs)
        if self.reviews:
            _insert_rows(self.conn, ReviewItem, self.reviews)
            self.out.review_items += len(self.reviews)

    @staticmethod
    def _facts_query():
        """The facts of original entries (OriginalFacts after the trace number), to be filtered."""
        return (select(FileEntry.trace_number, FileEntry.id, FileEntry.amount_cents, FileEntry.payment_id,
                       NachaFile.file_date, Payment.state, Payment.channel, Payment.member_id, Payment.plan_id,
                       Payment.coverage_month, Payment.premium_id, Payment.amount_cents, Payment.bank_account_id,
                       Payment.sec_code, Payment.payment_type_code, Payment.retry_of_id, Payment.retry_number,
                       BankAccount.routing_number, BankAccount.account_hash)
                .join(NachaFile, NachaFile.id == FileEntry.file_id)
                .outerjoin(Payment, Payment.id == FileEntry.payment_id)
                .outerjoin(BankAccount, BankAccount.id == Payment.bank_account_id))

    def _lookup(self, traces: list[str]) -> dict[str, OriginalFacts]:
        out: dict[str, OriginalFacts] = {}
        if not traces:
            return out
        rows = self.conn.execute(self._facts_query().where(self._in(FileEntry.trace_number, traces))).all()
        for r in rows:
            out[r[0]] = OriginalFacts(*r[1:])
        no_payment = [r[0] for r in rows if r[3] is None]
        if no_payment:  # prenotes: the account they validate (an offset entry has none)
            for trace, fe_id, fdate, prenote_id, state, acct, routing, h in self.conn.execute(
                    select(FileEntry.trace_number, FileEntry.id, NachaFile.file_date, Prenote.id, Prenote.state,
                           BankAccount.id, BankAccount.routing_number, BankAccount.account_hash)
                    .join(NachaFile, NachaFile.id == FileEntry.file_id)
                    .join(Prenote, Prenote.id == FileEntry.prenote_id)
                    .join(BankAccount, BankAccount.id == Prenote.bank_account_id)
                    .where(self._in(FileEntry.trace_number, no_payment) & (FileEntry.kind == "prenote"))):
                out[trace] = OriginalFacts(fe_id, 0, None, fdate, bank_account_id=acct, sec_code="WEB",
                                           routing_number=routing, account_hash=h)
                self.prenote_of[trace] = (prenote_id, state)
        return out

    def _payment_facts(self, payment_id: int) -> OriginalFacts | None:
        """The facts of the entry that carried payment `payment_id` (None: never in a file)."""
        r = self.conn.execute(self._facts_query().where(FileEntry.payment_id == payment_id)).first()
        return OriginalFacts(*r[1:]) if r is not None else None

    def _review(self, it: _Item, kind: str, code: str, original_trace: str, detail: str,
                expected: int | None = None, payment_id: int | None = None, *, related_payment_id: int | None = None,
                subject: str = "file", dedupe_key: str | None = None) -> None:
        # Every row carries every key: PostgreSQL loads them by COPY with the first row's columns.
        self.reviews.append({
            "return_file_id": self.rf.id, "line": it.line, "subject": subject, "subject_ref": None, "kind": kind,
            "code": code[:3], "original_trace_number": original_trace[:15], "trace_number": it.entry.trace_number[:15],
            "amount_cents": it.entry.amount if type(it.entry.amount) is int else 0,
            "expected_amount_cents": expected, "payment_id": payment_id, "related_payment_id": related_payment_id,
            "dedupe_key": dedupe_key, "detail": cut(detail, 300), "status": "open",
            "location": _location_json(kind, it),
        })

    def _account_hashes(self, rdfi: str, account: str) -> tuple[str, ...]:
        key = (rdfi, account)
        h = self.hashes.get(key)
        if h is None:
            h = tuple(self.keyring.account_hashes(rdfi + check_digit(rdfi), account))
            if len(self.hashes) > 50_000:
                self.hashes.clear()
            self.hashes[key] = h
        return h

    # -- returns ----------------------------------------------------------------------------------
    def _return_line(self, it: _Item) -> ReturnLine:
        a = it.addenda
        account = it.entry.dfi_account_number
        rdfi = a.original_receiving_dfi_identification
        seen = ReturnSeen(a[2], a.original_entry_trace_number, it.entry.trace_number, it.entry.amount, rdfi,
                          self._account_hashes(rdfi, account) if account else None)
        return ReturnLine(it.line, seen, mask(account))

    def _apply_returns(self, rets: list[_Item], origs: dict[str, OriginalFacts]) -> None:
        """Load the facts, plan (`plan_returns`), and carry the plan out set-based."""
        conn, on = self.conn, self.on
        lines = [self._return_line(it) for it in rets]
        need_accounts, need_history = return_facts_needed(lines, on)
        past_accounts: dict = {}
        history: dict = {}
        if need_accounts:
            acct_ids = {o.bank_account_id for o in origs.values() if o.bank_account_id is not None}
            past_accounts = self._past_accounts(acct_ids)
            if need_history:
                history = self._return_history([o.payment_id for o in origs.values() if o.payment_id is not None])
        plan = plan_returns(lines, origs, past_accounts, history, on)
        if self.manual:
            plan = self._manual_plan(plan, lines, origs, past_accounts, history)
        item_of = {it.line: it for it in rets}
        for r in plan.reviews:
            self._review(item_of[r.line], r.kind, r.code, r.original_trace, r.detail, r.expected, r.payment_id)
        if not plan.applied:
            return
        # 1. the payments' new states
        for st, ids in plan.new_states.items():
            for i in range(0, len(ids), PART):
                conn.execute(update(Payment).where(self._in(Payment.id, ids[i:i + PART]))
                             .values(state=st, updated_at=self.now))
        events = [self._event(*e) for e in plan.events]
        self.out.payments_failed += plan.payments_failed
        # 2. account and mandate effects
        blocked_counts = self._block_accounts(plan.blocks, events)
        revoked_counts = self._revoke_mandates(plan.revokes, events)
        # 3. re-presentments
        retry_ids: dict[int, int] = {}
        retry_words = self._schedule_retries([(a.line.line, a.orig) for a in plan.retries], retry_ids)
        # 4. dishonored and contested returns
        dishonor_words: dict[int, str] = {}
        if plan.dishonored:
            self._set_return_status([a.orig.payment_id for a in plan.dishonored], "applied", "dishonored")
            for it, o, words in self._settle_excess([(item_of[a.line.line], a.rc, a.orig) for a in plan.dishonored],
                                                    events):
                dishonor_words[it.line] = words
        if plan.contested:
            self._set_return_status([a.orig.payment_id for a in plan.contested], "dishonored", "applied")
        actions = return_actions(plan, blocked_counts, revoked_counts, retry_words, dishonor_words)
        self.out.returns_applied += len(plan.applied)
        # 5. the return records and events
        rows = []
        for ar in plan.applied:
            it, rc, o = item_of[ar.line.line], ar.rc, ar.orig
            a = it.addenda
            rows.append({
                "return_file_id": self.rf.id, "line": it.line, "payment_id": o.payment_id,
                "file_entry_id": o.file_entry_id, "original_trace_number": a.original_entry_trace_number,
                "return_trace_number": it.entry.trace_number, "return_code": rc.code,
                "return_title": cut(rc.title, 200), "category": rc.category, "disposition": rc.disposition,
                "kind": rc.kind, "status": "applied", "amount_cents": it.entry.amount, "returned_on": on,
                "action": cut(actions.get(it.line, ar.decision.detail), 200), "retry_payment_id": retry_ids.get(it.line),
                "addenda_information": (getattr(a, "addenda_information", "") or "")[:44],
            })
        _insert_rows(conn, PaymentReturn, rows)
        if events:
            _insert_rows(conn, PaymentEvent, events)

    def _manual_plan(self, plan: ReturnPlan, lines: list[ReturnLine], origs: dict[str, OriginalFacts],
                     past_accounts: dict, history: dict) -> ReturnPlan:
        """A person matched these returns to a payment: a return the plan does not apply is refused
        (`ManualRefusal`), except a mismatch of amount or account under `--force`, which is planned
        again with that mismatch overridden (each one listed in `self.overridden`). A state rule is
        never overridden, and neither is a second open re-presentment of one payment."""
        overridden: dict[int, frozenset[str]] = {}
        while True:
            applied = {a.line.line for a in plan.applied}
            refused = [r for r in plan.reviews if r.line not in applied]
            if not refused:
                break
            r = refused[0]
            if r.kind not in MISMATCH_KINDS or not self.force:
                raise ManualRefusal(r.kind, r.detail, overridable=r.kind in MISMATCH_KINDS)
            self.overridden.append(f"{r.kind}: {r.detail}")
            overridden[r.line] = overridden.get(r.line, frozenset()) | {r.kind}
            plan = plan_returns(lines, origs, past_accounts, history, self.on, overridden)
        for a in plan.retries:
            root = a.orig.retry_of_id or a.orig.payment_id
            open_retry = self.conn.execute(select(Payment.id, Payment.state).where(
                (Payment.retry_of_id == root) & Payment.state.in_(OPEN_RETRY_STATES))).first()
            if open_retry is not None:
                raise ManualRefusal("open_representment",
                                    f"payment #{root} already has an open re-presentment (#{open_retry.id}, "
                                    f"{open_retry.state}); a second one cannot be scheduled")
        return plan

    def _event(self, payment_id: int, event: str, old: str, new: str, reason: str) -> dict:
        return {"payment_id": payment_id, "event": event, "old_state": old, "new_state": new,
                "reason": cut(reason, 200), "occurred_on": self.on, "return_file_id": self.rf.id}

    def _past_accounts(self, acct_ids: set[int]) -> dict[int, set[tuple[str, str]]]:
        """(RDFI, hash) pairs of accounts as they were before a NOC corrected them."""
        out: dict[int, set[tuple[str, str]]] = defaultdict(set)
        ids = sorted(acct_ids)
        for i in range(0, len(ids), PART):
            for acct, routing, h in self.conn.execute(
                select(AccountChange.bank_account_id, AccountChange.old_routing_number, AccountChange.old_account_hash)
                .where(self._in(AccountChange.bank_account_id, ids[i:i + PART]) & (AccountChange.status == "applied"))
            ):
                if routing and h:
                    out[acct].add((routing[:8], h))
        return out

    def _return_history(self, pay_ids: list[int]) -> dict[int, dict]:
        """Per payment: whether it carries an applied or a dishonored return, and the state it gave."""
        out: dict[int, dict] = {}
        for i in range(0, len(pay_ids), PART):
            # by the disposition stored with the return, not by looking its code up again
            for pid, status, disposition in self.conn.execute(
                select(PaymentReturn.payment_id, PaymentReturn.status, PaymentReturn.disposition)
                .where(self._in(PaymentReturn.payment_id, pay_ids[i:i + PART]) & (PaymentReturn.kind == "return"))
                .order_by(PaymentReturn.id)
            ):
                out[pid] = {"applied": status == "applied", "dishonored": status == "dishonored",
                            "state": state_for_disposition(disposition)}
        return out

    def _set_return_status(self, pay_ids: list[int], old: str, new: str) -> None:
        self.conn.execute(update(PaymentReturn).where(
            PaymentReturn.payment_id.in_(pay_ids) & (PaymentReturn.kind == "return") & (PaymentReturn.status == old)
        ).values(status=new))

    def _block_accounts(self, blocks: dict[int, str], events: list[dict]) -> dict[int, int]:
        """Block each account and suspend its active AutoPay mandates (until the member gives a new
        account: a new mandate replaces the suspended one); pending payments on it cannot succeed
        and fail. Returns suspended mandates per account."""
        conn = self.conn
        counts: dict[int, int] = {}
        by_reason: dict[str, list[int]] = defaultdict(list)
        for acct, reason in blocks.items():
            by_reason[reason].append(acct)
        for reason, ids in by_reason.items():
            n = conn.execute(update(BankAccount).where(BankAccount.id.in_(ids) & (BankAccount.status == "active"))
                             .values(status="blocked", status_reason=reason, updated_at=self.now)).rowcount
            self.out.accounts_blocked += n
            for mid, acct in conn.execute(select(AutopayMandate.id, AutopayMandate.bank_account_id).where(
                    AutopayMandate.bank_account_id.in_(ids) & (AutopayMandate.status == "active"))).all():
                counts[acct] = counts.get(acct, 0) + 1
            n = conn.execute(update(AutopayMandate).where(
                AutopayMandate.bank_account_id.in_(ids) & (AutopayMandate.status == "active"))
                .values(status="suspended", status_reason=cut(f"account blocked: {reason}", 100),
                        updated_at=self.now)).rowcount
            self.out.mandates_suspended += n
            pending = list(conn.scalars(select(Payment.id).where(
                self._in(Payment.bank_account_id, ids) & (Payment.state == "pending"))))
            self._fail_pending(pending, f"bank account blocked: {reason}", events)
            held = list(conn.scalars(select(Payment.id).where(
                self._in(Payment.bank_account_id, ids) & (Payment.state == "held"))))
            self._fail_pending(held, f"bank account blocked: {reason}", events, state="held")
        return counts

    def _revoke_mandates(self, revokes: dict[tuple[str, int], str], events: list[dict]) -> dict[tuple[str, int], int]:
        """Revoke the member's live AutoPay mandates on the account (unauthorized return: a new
        authorization is needed); pending AutoPay pulls and re-presentments on it are stopped."""
        conn = self.conn
        counts: dict[tuple[str, int], int] = {}
        if not revokes:
            return counts
        members = sorted({m for m, _a in revokes})
        mandates: dict[str, list[int]] = defaultdict(list)  # reason -> mandate ids
        pending: dict[str, list[int]] = defaultdict(list)  # reason -> payment ids
        for i in range(0, len(members), PART):
            part = members[i:i + PART]
            for mid, member, acct in conn.execute(
                    select(AutopayMandate.id, AutopayMandate.member_id, AutopayMandate.bank_account_id)
                    .where(self._in(AutopayMandate.member_id, part) & AutopayMandate.status.in_(MANDATE_LIVE_STATUSES))):
                reason = revokes.get((member, acct))
                if reason is not None:
                    mandates[reason].append(mid)
                    counts[(member, acct)] = counts.get((member, acct), 0) + 1
            for pid, member, acct in conn.execute(
                    select(Payment.id, Payment.member_id, Payment.bank_account_id)
                    .where(self._in(Payment.member_id, part) & (Payment.state == "pending")
                           & Payment.channel.in_(_MANDATE_CHANNELS))).all():
                reason = revokes.get((member, acct))
                if reason is not None:
                    pending[reason].append(pid)
        for reason, ids in mandates.items():
            for i in range(0, len(ids), 1000):
                n = conn.execute(update(AutopayMandate).where(
                    AutopayMandate.id.in_(ids[i:i + 1000]) & AutopayMandate.status.in_(MANDATE_LIVE_STATUSES))
                    .values(status="revoked", status_reason=cut(f"unauthorized return: {reason}", 100),
                            active_key=None, ended_at=self.now, updated_at=self.now)).rowcount
                self.out.mandates_revoked += n
        for reason, ids in pending.items():
            self._fail_pending(ids, f"AutoPay authorization revoked: {reason}", events)
        return counts

    def _fail_pending(self, ids: list[int], reason: str, events: list[dict], state: str = "pending") -> None:
        if not ids:
            return
        self.conn.execute(update(Payment).where(self._in(Payment.id, ids) & (Payment.state == state))
                          .values(state="failed", updated_at=self.now))
        for pid in ids:
            events.append(self._event(pid, "stopped", state, "failed", reason))
        self.out.payments_failed += len(ids)

    def _settle_excess(self, dishonored: list[tuple[_Item, codes.ReturnCode, OriginalFacts]],
                       events: list[dict]) -> list[tuple[_Item, OriginalFacts, str]]:
        """A dishonored return put a payment back to settled: the premium month may now be collected
        twice. The debits of that month beyond what is owed are cancelled while still pending; any
        already in a file, sent or settled opens a `double_collection` review item naming both
        payments (a refund is finance's decision, never ours to make silently). Per payment: the
        words for the return's action."""
        due, debits = self._months({(o.member_id, o.plan_id, o.coverage_month) for _it, _rc, o in dishonored})
        restored = {o.payment_id for _it, _rc, o in dishonored}
        cancel: list[int] = []
        reviews: dict[tuple[int, int], tuple[_Item, OriginalFacts, debit_rules.Debit]] = {}
        out = []
        for it, _rc, o in dishonored:
            key = (o.member_id, o.plan_id, o.coverage_month)
            month = debits[key]
            if key in due:
                plan = debit_rules.excess_debits(due[key], month, keep=restored)
            else:  # no premium on record: at least the copies of this very payment must not go out too
                root = o.retry_of_id or o.payment_id
                plan = debit_rules.Excess(tuple(d.id for d in month if d.state == "pending" and d.channel == "retry"
                                                and (d.retry_of_id == root or d.id == root)
                                                and d.id not in restored))
            gone = set(plan.cancel)
            debits[key] = [debit_rules.Debit(d.id, d.channel, "failed" if d.id in gone else d.state, d.amount_cents,
                                             d.retry_of_id) for d in month]
            cancel += plan.cancel
            by_id = {d.id: d for d in month}
            for other in plan.review:
                reviews.setdefault((o.payment_id, other), (it, o, by_id[other]))
            words = ""
            if plan.cancel:
                words += f"; {counted(len(plan.cancel), 'pending debit')} of the same premium month cancelled"
            if plan.review:
                words += (f"; {'payment' if len(plan.review) == 1 else 'payments'} "
                          f"{', '.join('#' + str(x) for x in plan.review)} already collect the same month: "
                          "double collection for review")
            out.append((it, o, words))
        self._fail_pending(cancel, "cancelled: a dishonored return restored the original payment", events)
        if reviews:
            self._double_collections(reviews)
        return out

    def _double_collections(self, pairs: dict[tuple[int, int], tuple[_Item, OriginalFacts, debit_rules.Debit]]) -> None:
        keys = {f"double_collection|{a}|{b}": ab for ab in pairs for a, b in [sorted(ab)]}
        seen = set(self.conn.scalars(select(ReviewItem.dedupe_key).where(ReviewItem.dedupe_key.in_(list(keys)))))
        for key, (restored, other) in keys.items():
            if key in seen:
                continue
            it, o, d = pairs[(restored, other)]
            self._review(it, "double_collection", it.addenda[2], it.addenda.original_entry_trace_number,
                         f"payment #{restored} was settled again by a dishonored return while payment #{other} "
                         f"({d.channel}, {d.state}, {dollars(d.amount_cents)}) collects the same premium "
                         f"({o.member_id} {o.plan_id} {o.coverage_month:%Y-%m}): refund or not is finance's decision",
                         expected=o.pay_amount, payment_id=restored, related_payment_id=other, subject="payment",
                         dedupe_key=key)

    def _schedule_retries(self, items: list[tuple[int, OriginalFacts]], retry_ids: dict[int, int]) -> dict[int, str]:
        """Load the facts of this chunk's R01/R09 returns ((line, original)), plan their
        re-presentments (`plan_retries`, `keep_retries`) and insert them."""
        actions: dict[int, str] = {}
        if not items:
            return actions
        conn = self.conn
        roots = {o.payment_id: (o.retry_of_id or o.payment_id) for _line, o in items}
        root_ids = sorted(set(roots.values()))
        retries: dict[int, int] = {}
        # A returned original's own file date came with the lookup; only a returned
        # re-presentment needs its original's.
        settle: dict[int, date] = {o.payment_id: _settles(o.file_date) for _line, o in items
                                   if o.retry_of_id is None}
        other_roots = sorted({root for pid, root in roots.items() if root != pid})
        # Each root's re-presentments so far, in one read: how many (the next one's number) and
        # which are still open (pending, in a file, sent).
        open_retries: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for i in range(0, len(root_ids), 5000):
            part = root_ids[i:i + 5000]
            for pid, root, n, state in conn.execute(
                    select(Payment.id, Payment.retry_of_id, Payment.retry_number, Payment.state)
                    .where(self._in(Payment.retry_of_id, part))).all():
                retries[root] = max(retries.get(root, 0), int(n))
                if state in OPEN_RETRY_STATES:
                    open_retries[root].append((pid, int(n)))
        for i in range(0, len(other_roots), 5000):
            for pid, fdate in conn.execute(select(FileEntry.payment_id, NachaFile.file_date)
                                           .join(NachaFile, NachaFile.id == FileEntry.file_id)
                                           .where(self._in(FileEntry.payment_id, other_roots[i:i + 5000]))).all():
                settle[pid] = _settles(fdate)
        owed = self._owed([(o.member_id, o.plan_id, o.coverage_month) for _line, o in items])
        actions, planned = plan_retries(items, roots=roots, settlement=settle, retries_so_far=retries, owed=owed,
                                        processed_on=self.on, policy=self.policy)
        # The debit rules, for the re-presentments planned: coverage that can still exist on their
        # day, and the reinitiation limit per premium month and account across channels.
        refused = self._refused(planned)
        # A debit whose earlier re-presentment is still open (pending, in a file, sent) gets no
        # other: that one already collects the premium month (say the original was returned, re-
        # presented, then settled again by a dishonored return, and now returned once more). The
        # database would refuse the second (ux_payments_open_retry) and with it the whole file.
        for p in planned:
            for pid, n in open_retries.get(p.root, ()):
                if pid != p.orig.payment_id and p.orig.payment_id not in refused:
                    refused[p.orig.payment_id] = debit_rules.Verdict(
                        False, f"re-presentment #{n} (payment #{pid}) of this debit is still open")
        # (retry number, originate_on) -> the returned payments to copy; (root, n) -> file line
        copies, line_of = keep_retries(planned, refused, actions)
        if not copies:
            return actions
        # The re-presentment is a copy of the returned payment (same member, plan, month, premium,
        # amount, account, SEC and payment type), made by INSERT ... SELECT: no per-row round trip
        # through Python. Its confirmation id is RT-<root>-<n> (channels.RETRY_CONFIRMATION_PREFIX).
        P = Payment
        root_expr = func.coalesce(P.retry_of_id, P.id)
        for (n, when), ids in copies.items():
            for i in range(0, len(ids), 5000):
                cols = select(
                    literal(RETRY_CONFIRMATION_PREFIX) + cast(root_expr, String) + literal(f"-{n}"), literal("retry"), P.member_id,
                    P.plan_id, P.coverage_month, P.premium_id, P.amount_cents, P.bank_account_id,
                    literal(self.submitted_at, UTCDateTime), P.sec_code, P.payment_type_code, literal(when, Date),
                    literal("pending"), root_expr, literal(n, SmallInteger), _NOW, _NOW,
                ).where(self._in(P.id, ids[i:i + 5000]))
                made = conn.execute(insert(P).from_select(
                    ["confirmation_id", "channel", "member_id", "plan_id", "coverage_month", "premium_id",
                     "amount_cents", "bank_account_id", "submitted_at", "sec_code", "payment_type_code",
                     "originate_on", "state", "retry_of_id", "retry_number", "created_at", "updated_at"], cols)
                    .returning(P.id, P.retry_of_id, P.retry_number)).all()
                self.out.retries_scheduled += len(ids[i:i + 5000])
                for pid, root, rn in made:
                    line = line_of.get((root, rn))
                    if line is not None:
                        retry_ids[line] = pid
        return actions

    def _refused(self, planned: list[PlannedRetry]) -> dict[int, debit_rules.Verdict]:
        """Refusals by the debit rules of the planned re-presentments, by returned payment id."""
        out: dict[int, debit_rules.Verdict] = {}
        by_day: dict[date, list] = defaultdict(list)
        for entry in planned:
            by_day[entry.plan.originate_on].append(entry)
        returned: dict[date, debit_rules.PriorReturn] = {}
        for day, group in by_day.items():
            now: dict[tuple, list[debit_rules.PriorReturn]] = defaultdict(list)  # this chunk's returns
            cands = []
            for p in group:
                o = p.orig
                cand = debit_guard.Candidate(-o.payment_id, "retry", o.member_id, o.plan_id, o.coverage_month,
                                             o.bank_account_id)
                ret = returned.get(o.file_date)
                if ret is None:  # (one value per file date: these are compared and hashed, never changed)
                    ret = returned[o.file_date] = debit_rules.PriorReturn(self.on, _settles(o.file_date))
                now[(o.member_id, o.plan_id, o.coverage_month, o.bank_account_id)].append(ret)
                cands.append(cand)
            if self.set_based:
                found = self._verdicts_set_based(cands, day, dict(now))
            else:
                found = debit_guard.verdicts(self.conn, cands, day, self.policy.guard, exclude=frozenset(),
                                             extra_prior=dict(now))
            for cid, v in found.items():
                out[-cid] = v
        return out

    def _verdicts_set_based(self, cands: list[debit_guard.Candidate], day: date,
                            now: dict[debit_guard.Key, list[debit_rules.PriorReturn]]) -> dict[int, debit_rules.Verdict]:
        """`debit_guard.verdicts` of re-presentments going out on `day`, without asking the
        coverage rule about the policies one SQL statement vouches for
        (`coverage.policies_past_due_unclear`: no month past its due date unpaid or returned, so
        coverage allows any re-presentment); the others take `debit_guard.verdicts` whole. The
        reinitiation limit is asked of every candidate: its authorization day is loaded only for
        those the limit would refuse were every prior return counted (a later authorization only
        counts fewer of them, and fewer never refuse where more allow)."""
        guard = self.policy.guard
        members = sorted({c.member_id for c in cands})
        unclear: set[tuple[str, str]] = set()
        for i in range(0, len(members), PART):
            unclear |= policies_past_due_unclear(self.conn, members[i:i + PART], day,
                                                 guard.coverage.payment_threshold_cents, self._in)
        judged = [c for c in cands if (c.member_id, c.plan_id) in unclear]
        vouched = [c for c in cands if (c.member_id, c.plan_id) not in unclear]
        out = debit_guard.verdicts(self.conn, judged, day, guard, exclude=frozenset(), extra_prior=now) if judged else {}
        if not vouched:
            return out
        prior = debit_guard.prior_returns(self.conn, {c.key for c in vouched})
        settles = debit_rules.settlement_of(day)

        def limit(returns: tuple[debit_rules.PriorReturn, ...], authorized_on: date) -> debit_rules.Verdict:
            return debit_rules.reinitiation_allows(returns, authorized_on, settles, guard.max_reinitiations,
                                                   guard.window_days)

        every_one: dict[tuple, bool] = {}  # the limit's answer were every prior return counted, by returns
        doubtful: list[tuple[debit_guard.Candidate, tuple]] = []
        for c in vouched:
            key = c.key
            returns = tuple(prior.get(key, ())) + tuple(now.get(key, ()))
            if not returns:
                continue
            ok = every_one.get(returns)
            if ok is None:
                ok = every_one[returns] = limit(returns, date.min).ok
            if not ok:
                doubtful.append((c, returns))
        if doubtful:
            auth = debit_guard.authorizations(self.conn, [abs(c.id) for c, _r in doubtful], guard.tz)
            for c, returns in doubtful:
                v = limit(returns, auth.get(abs(c.id), day))
                if not v.ok:
                    out[c.id] = v
        return out

    def _months(self, keys: set[tuple[str, str, date]]
                ) -> tuple[dict[tuple, int], dict[tuple, list[debit_rules.Debit]]]:
        """Per (member, plan, coverage month) of `keys`: the amount due, for those with a premium on
        record, and every payment toward it. Loaded by member only (its index), the rest filtered
        here: SQLite would otherwise pick the state index and scan every payment in flight."""
        due: dict[tuple, int] = {}
        debits: dict[tuple, list[debit_rules.Debit]] = defaultdict(list)
        members = sorted({k[0] for k in keys})
        for i in range(0, len(members), PART):
            part = members[i:i + PART]
            for m, p, month, cents in self.conn.execute(
                    select(Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.amount_due_cents)
                    .where(self._in(Premium.member_id, part))):
                if (m, p, month) in keys:
                    due[(m, p, month)] = int(cents)
            for pid, m, p, month, channel, state, cents, root in self.conn.execute(
                    select(Payment.id, Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.channel,
                           Payment.state, Payment.amount_cents, Payment.retry_of_id)
                    .where(self._in(Payment.member_id, part))):
                if (m, p, month) in keys:
                    debits[(m, p, month)].append(debit_rules.Debit(pid, channel, state, int(cents), root))
        return due, debits

    def _owed(self, keys: list[tuple[str, str, date]]) -> dict[tuple[str, str, date], int]:
        """Cents still owed per (member, plan, coverage month) with a premium on record: the amount
        due less what counting payments (paid, or on their way) cover."""
        wanted = set(keys)
        members = sorted({k[0] for k in wanted})
        Q = aliased(Payment)
        covered = (select(func.coalesce(func.sum(Q.amount_cents), 0))
                   .where((Q.member_id == Premium.member_id) & (Q.plan_id == Premium.plan_id)
                          & (Q.coverage_month == Premium.coverage_month) & Q.state.in_(COUNTING_STATES))
                   .scalar_subquery())
        out: dict[tuple[str, str, date], int] = {}
        for i in range(0, len(members), PART):  # by member (its index); each month summed in SQL
            for m, p, month, owed in self.conn.execute(
                    select(Premium.member_id, Premium.plan_id, Premium.coverage_month,
                           Premium.amount_due_cents - covered).where(self._in(Premium.member_id, members[i:i + PART]))):
                if (m, p, month) in wanted:
                    out[(m, p, month)] = int(owed)
        return out

    # -- NOCs -------------------------------------------------------------------------------------
    def _apply_nocs(self, nocs: list[_Item], origs: dict[str, OriginalFacts]) -> None:
        """A chunk's NOCs: the accounts they name are loaded once, the corrections planned in file
        order (two NOCs for one account apply one after the other), then written together."""
        changes: list[dict] = []
        todo: list[tuple[_Item, OriginalFacts, str, dict, dict]] = []
        for it in nocs:
            a = it.addenda
            code = a[2]
            trace = a.original_entry_trace_number
            cc = codes.CHANGE_CODES[code]
            o = origs.get(trace)
            if o is None:
                self._review(it, "unknown_trace", code, trace, f"NOC {code}: no entry of ours has trace number {trace}")
                continue
            if o.bank_account_id is None:  # no payment, no prenote: our offset entry
                self._review(it, "offset_entry", code, trace, f"NOC {code} for our own settlement offset entry")
                continue
            rec = {"return_file_id": self.rf.id, "line": it.line, "bank_account_id": o.bank_account_id,
                   "payment_id": o.payment_id, "original_trace_number": trace,
                   "noc_trace_number": it.entry.trace_number, "change_code": code, "refused_code": None,
                   "applied_on": self.on}
            for k in ("old_routing_number", "new_routing_number", "old_account_masked", "new_account_masked",
                      "old_account_type", "new_account_type", "old_holder_name", "new_holder_name",
                      "old_account_hash"):
                rec[k] = None
            if cc.refused:
                # A refused NOC (C61-C69): the ODFI refused a NOC on our behalf; recorded, nothing changes.
                rec.update(change_code=(a.change_code or "")[:3], refused_code=code, status="refused",
                           detail=cut(f"refused NOC {code} {cc.title} (of {a.change_code})", 300))
                changes.append(rec)
                self.out.nocs_refused += 1
            elif not cc.applies_to_us or codes.PART_INDIVIDUAL_ID in {p.name for p in cc.parts}:
                # C08/C14 are for IAT entries, which we never send; C09 would change a member id,
                # which is the enrollment system's: both for review.
                rec.update(status="noted", detail=cut(f"{code} {cc.title}: not applied automatically", 300))
                changes.append(rec)
                self._review(it, "noc_for_review", code, trace, f"NOC {code} {cc.title}: needs a person",
                             payment_id=o.payment_id)
            elif not cc.parts:
                # C13 Addenda Format Error: the entry posted; our debits carry no addenda to fix.
                rec.update(status="noted", detail=cut(f"{code} {cc.title}: nothing to correct", 300))
                changes.append(rec)
                self.out.nocs_applied += 1
            else:
                parts = codes.parse_corrected_data(code, a.corrected_data.ljust(codes.CORRECTED_DATA_LENGTH))
                changes.append(rec)
                todo.append((it, o, code, parts, rec))
        if todo:
            self._correct_accounts(todo)
        if changes:
            _insert_rows(self.conn, AccountChange, changes)
        if self.prenote_of:
            self._validate_by_noc([c for c in changes if c["original_trace_number"] in self.prenote_of])

    def _validate_by_noc(self, changes: list[dict]) -> None:
        """A NOC answering a prenote: the account, corrected, counts as validated (docs/validation.md)."""
        for rec in changes:
            if rec["status"] not in ("applied", "unchanged"):
                continue
            prenote_id, _state = self.prenote_of[rec["original_trace_number"]]
            self.conn.execute(update(Prenote).where((Prenote.id == prenote_id) & (Prenote.state != "returned"))
                              .values(state="corrected", resolved_on=self.on, return_code=rec["change_code"],
                                      return_reason=cut(f"NOC {rec['change_code']}: {rec['detail']}", 200),
                                      return_file_id=self.rf.id, updated_at=self.now))
            self.conn.execute(update(BankAccount).where(
                (BankAccount.id == rec["bank_account_id"]) & (BankAccount.status == "active"))
                .values(validation_result="valid", validation_method="prenote_noc", validated_on=self.on,
                        updated_at=self.now))
            self.out.prenotes_corrected += 1

    # -- prenote returns ----------------------------------------------------------------------------
    def _apply_prenote_returns(self, rets: list[_Item], origs: dict[str, OriginalFacts]) -> None:
        """A returned prenote (R02, R03, R04, ...) blocks its account with the return's reason: its
        AutoPay mandates are suspended and its pending and held payments fail (`_block_accounts`)."""
        events: list[dict] = []
        blocks: dict[int, str] = {}
        for it in rets:
            a = it.addenda
            trace = a.original_entry_trace_number
            code = a[2]
            prenote_id, state = self.prenote_of[trace]
            o = origs[trace]
            rc = codes.RETURN_CODES.get(code)
            title = rc.title if rc is not None else "unknown return code"
            if state == "returned":
                self._review(it, "return_for_review", code, trace, f"prenote return {code}: the prenote was "
                             "already returned")
                continue
            if rc is None or rc.kind != codes.KIND_RETURN:
                self._review(it, "return_for_review", code, trace, f"{code} {title} answering a prenote: "
                             "needs a person")
                continue
            reason = cut(f"prenote returned {code} {title}", 100)
            self.conn.execute(update(Prenote).where(Prenote.id == prenote_id).values(
                state="returned", return_code=code, return_reason=cut(f"{code} {title}", 200),
                return_file_id=self.rf.id, resolved_on=self.on, updated_at=self.now))
            self.conn.execute(update(BankAccount).where(BankAccount.id == o.bank_account_id).values(
                validation_result="invalid", validation_method="prenote", validated_on=self.on, updated_at=self.now))
            self.prenote_of[trace] = (prenote_id, "returned")
            blocks[o.bank_account_id] = reason
            self.out.prenotes_returned += 1
        if blocks:
            self._block_accounts(blocks, events)
        if events:
            _insert_rows(self.conn, PaymentEvent, events)

    def _correct_accounts(self, todo: list[tuple[_Item, OriginalFacts, str, dict, dict]]) -> None:
        conn = self.conn
        ids = sorted({o.bank_account_id for _it, o, _c, _p, _r in todo})
        accounts: dict[int, dict] = {}
        for row in conn.execute(select(BankAccount.id, BankAccount.routing_number, BankAccount.account_number_enc,
                                       BankAccount.account_hash, BankAccount.account_type, BankAccount.holder_name)
                                .where(self._in(BankAccount.id, ids))).all():
            accounts[row.id] = {"routing_number": row.routing_number,
                                "account_number": self.keyring.decrypt_account(row.account_number_enc),
                                "account_type": row.account_type, "holder_name": row.holder_name,
                                "account_hash": row.account_hash, "changed": False, "number_changed": False,
                                "merged_into": None}
        for it, o, code, parts, rec in todo:
            acct = accounts[o.bank_account_id]
            current = AccountState(acct["routing_number"], acct["account_number"], acct["account_type"],
                                   acct["holder_name"])
            plan = plan_noc(code, parts, current)
            rec.update(old_routing_number=current.routing_number, old_account_masked=mask(current.account_number),
                       old_account_type=current.account_type, old_holder_name=current.holder_name,
                       old_account_hash=acct["account_hash"], status=plan.status, detail=cut(plan.detail, 300))
            if plan.status == "rejected" or acct["merged_into"] is not None:
                if plan.status == "rejected":
                    self._review(it, "noc_rejected", code, rec["original_trace_number"], plan.detail,
                                 payment_id=o.payment_id)
                else:
                    rec.update(status="noted", detail=cut(f"{plan.detail}; the account was already replaced", 300))
                continue
            new = plan.new
            rec.update(new_routing_number=new.routing_number, new_account_masked=mask(new.account_number),
                       new_account_type=new.account_type, new_holder_name=new.holder_name)
            self.out.nocs_applied += 1
            if plan.status != "applied":
                continue
            if (new.routing_number, new.account_number) != (current.routing_number, current.account_number):
                other = self._account_on_record(new, o.bank_account_id)
                if other is not None:
                    self._merge_account(o.bank_account_id, other, new, code)
                    acct["merged_into"] = other
                    rec["detail"] = cut(f"{plan.detail}; the corrected account was already on record (#{other}): "
                                         "payments and AutoPay moved to it", 300)
                    continue
                acct["number_changed"] = True
                acct["account_hash"] = self.keyring.account_hash(new.routing_number, new.account_number)
            acct.update(routing_number=new.routing_number, account_number=new.account_number,
                        account_type=new.account_type, holder_name=new.holder_name, changed=True)
        rows = []
        for aid, acct in accounts.items():
            if not acct["changed"] or acct["merged_into"] is not None:
                continue
            blob = self.keyring.encrypt_account(acct["account_number"])
            rows.append({"b_id": aid, "routing_number": acct["routing_number"],
                         "account_number_enc": blob, "key_id": self.keyring.key_id_of(blob),
                         "account_hash": acct["account_hash"], "last4": acct["account_number"][-4:],
                         "account_type": acct["account_type"], "holder_name": acct["holder_name"]})
        if rows:
            conn.execute(update(BankAccount).where(BankAccount.id == bindparam("b_id"))
                         .values(updated_at=self.now), rows)

    def _account_on_record(self, new: AccountState, own_id: int) -> int | None:
        hashes = self.keyring.account_hashes(new.routing_number, new.account_number)
        return self.conn.execute(select(BankAccount.id).where(
            (BankAccount.routing_number == new.routing_number) & BankAccount.account_hash.in_(hashes)
            & (BankAccount.id != own_id))).scalar()

    def _merge_account(self, acct_id: int, other_id: int, new: AccountState, code: str) -> None:
        """The corrected account is already on record as another row: pending payments and live
        mandates move to it and this row is blocked (two rows must not hold one account)."""
        conn = self.conn
        conn.execute(update(Payment).where((Payment.bank_account_id == acct_id) & (Payment.state == "pending"))
                     .values(bank_account_id=other_id, updated_at=self.now))
        conn.execute(update(AutopayMandate).where(
            (AutopayMandate.bank_account_id == acct_id) & AutopayMandate.status.in_(MANDATE_LIVE_STATUSES))
            .values(bank_account_id=other_id, updated_at=self.now))
        conn.execute(update(BankAccount).where(BankAccount.id == acct_id).values(
            status="blocked", updated_at=self.now,
            status_reason=cut(merged_account_reason(code, new.account_number[-4:], other_id), 100)))


_MERGED_REASON = re.compile(r"NOC (C[0-9]{2}): corrected to account \*\*\*\*([0-9A-Za-z-]{1,4}) \(record ([0-9]+)\)")


def merged_account_reason(code: str, last4: str, other_id: int) -> str:
    """The status_reason of an account a NOC merged into another record (see `_merge_account`)."""
    return f"NOC {code}: corrected to account {mask_last4(last4)} (record {other_id})"


def merged_into(status_reason: str | None) -> tuple[str, str, int] | None:
    """(change code, last four of the corrected account, id of the record it was merged into) when
    `status_reason` is a `merged_account_reason`; None for any other reason (or one cut short)."""
    m = _MERGED_REASON.fullmatch(status_reason or "")
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


# =============================================================================================
# A person's match: one entry of a bank file applied to the payment a person identified
# =============================================================================================

class ManualRefusal(Exception):
    """A person's match cannot be applied: `kind` says why (a review kind, or `not_sent`,
    `open_representment`); `overridable` when `--force` would let it through (an amount or account
    mismatch, never a state rule)."""

    def __init__(self, kind: str, reason: str, *, overridable: bool = False):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.overridable = overridable


@dataclass
class ManualApplication:
    """What applying one bank entry to a payment did."""

    record: str  # 'return' | 'noc'
    code: str
    payment_id: int
    old_state: str
    new_state: str
    action: str  # in words: the payment_returns action, or the NOC's audit detail
    retry_payment_id: int | None
    overridden: list[str]
    outcome: FileOutcome
    prenote_id: int | None = None  # `apply_to_prenote`: the prenote (payment_id None, states the prenote's)


def _manual_applier(s: Session, keyring: Keyring, rf: ReturnFile, item: EntryItem, processed_on: date,
                    policy: ReturnPolicy, force: bool) -> tuple["_Applier", FileOutcome, "_Item"]:
    """The applier of a person's match (returns locked, `manual`, `force`), the file's outcome and
    the bank's entry read as a return or NOC item; refused when it is neither."""
    _lock(s)
    out = FileOutcome(rf.file_name)
    applier = _Applier(s, keyring, rf, processed_on, policy, out)
    applier.manual, applier.force = True, force
    applier.add(item)
    (it,) = applier.items
    applier.items = []
    if it.kind == "":
        raise ManualRefusal("not_return_or_noc", "the bank's entry is neither a return nor a NOC")
    return applier, out, it


def apply_to_payment(s: Session, keyring: Keyring, rf: ReturnFile, item: EntryItem, payment_id: int,
                     processed_on: date, policy: ReturnPolicy = ReturnPolicy(), *,
                     force: bool = False) -> ManualApplication:
    """Apply the bank's return or NOC entry `item` (read again from file `rf`) to payment
    `payment_id`, which a person identified, inside the caller's transaction: the entry is matched
    to the entry that carried the payment instead of by its own original trace number, and then
    takes the same path as an automatic match (`_Applier._apply_items`: states, re-presentments,
    blocked accounts, revoked mandates, dishonors, NOC corrections, review items it opens). What
    would have gone to the review list is refused (`ManualRefusal`); `force` overrides an amount or
    account mismatch only."""
    applier, out, it = _manual_applier(s, keyring, rf, item, processed_on, policy, force)
    o = applier._payment_facts(payment_id)
    if o is None:
        if s.get(Payment, payment_id) is None:
            raise ManualRefusal("no_payment", f"there is no payment #{payment_id}")
        raise ManualRefusal("not_sent", f"payment #{payment_id} was never sent in a NACHA file: "
                                        "there is no entry of ours to return or correct")
    if it.kind == "98":
        # The automatic path matches a NOC by trace number only; a person's match is checked
        # against the account the bank names, as a return's is.
        account = it.entry.dfi_account_number
        rdfi = it.addenda.original_receiving_dfi_identification
        pairs = set(applier._past_accounts({o.bank_account_id}).get(o.bank_account_id, ()))
        pairs.add((o.routing_number[:8], o.account_hash))
        problem = account_problem(rdfi, applier._account_hashes(rdfi, account) if account else None,
                                  frozenset(pairs))
        if problem is not None:
            if not force:
                raise ManualRefusal("account_mismatch", problem, overridable=True)
            applier.overridden.append(f"account_mismatch: {problem}")
    old_state = o.state
    applier._apply_items([it], {it.addenda.original_entry_trace_number: o})
    new_state = s.scalar(select(Payment.state).where(Payment.id == payment_id))
    code = it.addenda[2]
    if it.kind == "99":
        row = s.execute(select(PaymentReturn.action, PaymentReturn.retry_payment_id).where(
            (PaymentReturn.return_file_id == rf.id) & (PaymentReturn.line == it.line))).one()
        action, retry_id, record = row.action, row.retry_payment_id, "return"
    else:
        change = s.execute(select(AccountChange.status, AccountChange.detail).where(
            (AccountChange.return_file_id == rf.id) & (AccountChange.line == it.line))).one()
        action, retry_id, record = f"NOC {change.status}: {change.detail}", None, "noc"
    return ManualApplication(record, code, payment_id, old_state, new_state, action, retry_id,
                             list(applier.overridden), out)


def apply_to_prenote(s: Session, keyring: Keyring, rf: ReturnFile, item: EntryItem, prenote_id: int,
                     processed_on: date, policy: ReturnPolicy = ReturnPolicy(), *,
                     force: bool = False) -> ManualApplication:
    """Apply the bank's return or NOC entry `item` (read again from file `rf`) to prenote
    `prenote_id`, which a person identified (the entry's original trace matched nothing usable:
    mangled by the bank, or our offset entry's), inside the caller's transaction, by the same code
    path as an automatic match of that prenote (`_Applier._apply_items`): a return blocks the account
    with its reason, suspends its AutoPay and fails its held and pending payments, the prenote
    `returned`; a NOC corrects the account, which then counts as validated, the prenote `corrected`.
    Refused (`ManualRefusal`) when it does not fit (`prenote_match_problems`): a prenote never sent,
    already returned, a trace that is another entry's of ours, a code that is not a return; `force`
    overrides only an amount, an account or the ODFI prefix of the trace that differs."""
    applier, out, it = _manual_applier(s, keyring, rf, item, processed_on, policy, force)
    pn = s.get(Prenote, prenote_id)
    if pn is None:
        raise ManualRefusal("no_prenote", f"there is no prenote #{prenote_id}")
    fe = s.execute(select(FileEntry.id, FileEntry.trace_number, NachaFile.file_date)
                   .join(NachaFile, NachaFile.id == FileEntry.file_id)
                   .where(FileEntry.prenote_id == prenote_id)).first()
    acct = s.get(BankAccount, pn.bank_account_id)
    trace = it.addenda.original_entry_trace_number
    owner = None
    if fe is not None and trace != fe.trace_number:
        other = s.execute(select(FileEntry.kind, FileEntry.payment_id, FileEntry.prenote_id)
                          .where(FileEntry.trace_number == trace)).first()
        if other is not None and other.kind == "payment":
            owner = f"payment #{other.payment_id}"
        elif other is not None and other.kind == "prenote":
            owner = f"prenote #{other.prenote_id}"
    account = it.entry.dfi_account_number
    rdfi = it.addenda.original_receiving_dfi_identification
    pairs = set(applier._past_accounts({acct.id}).get(acct.id, ()))
    pairs.add((acct.routing_number[:8], acct.account_hash))
    problems = prenote_match_problems(
        "return" if it.kind == "99" else "noc", it.addenda[2], prenote_id=prenote_id, prenote_state=pn.state,
        prenote_trace=fe.trace_number if fe is not None else None, original_trace=trace, trace_owner=owner,
        amount_cents=it.entry.amount if type(it.entry.amount) is int else None,
        account=account_problem(rdfi, applier._account_hashes(rdfi, account) if account else None, frozenset(pairs)))
    for p in problems:
        if not p.overridable or not force:
            raise ManualRefusal(p.kind, p.reason, overridable=p.overridable)
        applier.overridden.append(f"{p.kind}: {p.reason}")
    old_state = pn.state
    applier.prenote_of[trace] = (prenote_id, pn.state)
    origs = {trace: OriginalFacts(fe.id, 0, None, fe.file_date, bank_account_id=acct.id, sec_code=pn.sec_code,
                                  routing_number=acct.routing_number, account_hash=acct.account_hash)}
    applier._apply_items([it], origs)
    s.expire_all()
    new_state = s.scalar(select(Prenote.state).where(Prenote.id == prenote_id))
    code = it.addenda[2]
    if it.kind == "99":
        a = s.get(BankAccount, acct.id)
        action = (f"account {mask_last4(a.last4)} {a.status} ({a.status_reason}); "
                  f"{counted(out.mandates_suspended, 'AutoPay mandate')} suspended, "
                  f"{counted(out.payments_failed, 'payment')} failed")
        record = "return"
    else:
        change = s.execute(select(AccountChange.status, AccountChange.detail).where(
            (AccountChange.return_file_id == rf.id) & (AccountChange.line == it.line))).one()
        a = s.get(BankAccount, acct.id)
        action = f"NOC {change.status}: {change.detail}; account {mask_last4(a.last4)} {a.validation_result}"
        record = "noc"
    return ManualApplication(record, code, None, old_state, new_state, action, None, list(applier.overridden), out,
                             prenote_id=prenote_id)


# =============================================================================================
# Re-presentments no longer needed
# =============================================================================================

def cancel_unneeded_retries(sessions: sessionmaker[Session], as_of: date) -> int:
    """Stop pending re-presentments whose premium the member has since paid another way (a
    re-presentment carries the original amount and must not overpay). Returns how many."""
    with sessions() as s, s.begin():
        _lock(s)
        conn = s.connection()
        retries = conn.execute(select(Payment.id, Payment.member_id, Payment.plan_id, Payment.coverage_month,
                                      Payment.amount_cents)
                               .where((Payment.channel == "retry") & (Payment.state == "pending"))).all()
        if not retries:
            return 0
        keys = {(r[1], r[2], r[3]) for r in retries}
        due: dict[tuple, int] = {}
        paid: dict[tuple, int] = defaultdict(int)
        members = sorted({k[0] for k in keys})
        for i in range(0, len(members), 1000):
            part = members[i:i + 1000]
            for m, p, month, cents in conn.execute(select(Premium.member_id, Premium.plan_id, Premium.coverage_month,
                                                          Premium.amount_due_cents).where(_in(Premium.member_id, part))):
                if (m, p, month) in keys:
                    due[(m, p, month)] = int(cents)
            for m, p, month, state, channel, cents in conn.execute(
                    select(Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.state,
                           Payment.channel, Payment.amount_cents).where(_in(Payment.member_id, part))):
                if state in COUNTING_STATES and channel != "retry":
                    paid[(m, p, month)] += int(cents)
        stop = []
        for pid, m, p, month, amount in retries:
            key = (m, p, month)
            if key in due and due[key] - paid[key] < amount:
                stop.append(pid)
        if stop:
            now = utcnow()
            conn.execute(update(Payment).where(Payment.id.in_(stop) & (Payment.state == "pending"))
                         .values(state="failed", updated_at=now))
            conn.execute(insert(PaymentEvent), [{
                "payment_id": pid, "event": "cancelled", "old_state": "pending", "new_state": "failed",
                "reason": "re-presentment cancelled: premium paid by other means", "occurred_on": as_of,
                "return_file_id": None, "created_at": now} for pid in stop])
        return len(stop)
