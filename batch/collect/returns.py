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
`plan_retries` / `return_actions`, which plan a chunk of returns with them) are pure functions of
their inputs; `process_return_files` does the I/O around them, streaming the file a chunk at a time.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import (
    Date, SmallInteger, String, any_, bindparam, cast, func, insert, literal, select, text, update,
)
from sqlalchemy.types import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from nacha import codes
from nacha.calendar import add_banking_days
from nacha.errors import Issue
from nacha.reader import EntryItem, FileStart, Reader
from nacha.routing import check_digit, is_valid_routing

from . import debit_guard

from ..rules import debit_rules
from ..rules.channels import RETRY_CONFIRMATION_PREFIX
from ..store.crypto import Keyring, mask
from ..store.db import copy_rows
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
    ReturnFile,
    ReviewItem,
    utcnow,
)
from ..rules.money import dollars
from .origination import ADVISORY_LOCK_KEY

__all__ = [
    "COUNTING_STATES", "IN_FLIGHT_STATES", "AccountState", "AppliedReturn", "FileOutcome", "NocPlan", "OriginalEntry",
    "PlannedRetry", "ProcessResult", "ReturnDecision", "ReturnLine", "ReturnPlan", "ReturnPolicy", "ReturnSeen",
    "RetryPlan", "ReviewPlan", "cancel_unneeded_retries", "decide_return", "file_sha256", "keep_retries",
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
# States in which an originated debit can be returned.
IN_FLIGHT_STATES = ("in_file", "sent", "settled")
# Dispositions whose return leaves the payment 'returned'; every other one marks it 'failed'.
_RETURNED_DISPOSITIONS = frozenset({codes.RETRY_FUNDS, codes.BLOCK_ACCOUNT, codes.REVOKE_AUTH})
_NO_HISTORY: dict = {}
# Pending payments that a revoked AutoPay authorization stops (a one-time payment carries its own).
_MANDATE_CHANNELS = ("autopay", "retry")


# =============================================================================================
# Pure decisions
# =============================================================================================

@dataclass(frozen=True)
class ReturnPolicy:
    """How returns are handled. Defaults: NACHA's reinitiation limits (ref §2.4) and the
    configurable delay before a re-presentment (origination.retry_delay_banking_days)."""

    retry_delay_banking_days: int = 2
    max_retries: int = codes.MAX_REINITIATIONS
    retry_window_days: int = codes.REINITIATION_WINDOW_DAYS
    profile: str = "bank"
    guard: debit_guard.GuardSettings = debit_guard.GuardSettings()  # coverage rules, time zone


@dataclass(frozen=True)
class ReturnSeen:
    """What a return entry says: its code, traces, amount, the original RDFI, and the keyed hashes
    of the account number it carries (None when the bank left that field blank)."""

    code: str
    original_trace_number: str
    trace_number: str
    amount_cents: int
    rdfi: str  # 8 digits (addenda 99 positions 28-35)
    account_hashes: tuple[str, ...] | None


@dataclass(frozen=True)
class OriginalEntry:
    """What we know of the entry a return answers. `accounts`: the (RDFI, account hash) pairs the
    entry may have been sent to (the account now, and before any NOC corrected it)."""

    file_entry_id: int
    payment_id: int | None  # None: a balanced file's offset entry
    amount_cents: int
    payment_state: str | None
    accounts: frozenset[tuple[str, str]] = frozenset()
    applied_return: bool = False  # the payment carries an applied (not dishonored) return
    dishonored_return: bool = False  # ... a return that our ODFI dishonored
    returned_state: str | None = None  # the state the applied/dishonored return gave the payment


@dataclass(frozen=True)
class ReturnDecision:
    apply: bool
    new_state: str | None = None
    event: str = ""
    review_kind: str | None = None
    detail: str = ""


def _review(kind: str, detail: str) -> ReturnDecision:
    return ReturnDecision(False, review_kind=kind, detail=detail)


def returned_state_for(rc: codes.ReturnCode) -> str:
    """'returned' for the dispositions with a follow-up (re-present, block, revoke); 'failed' with
    the code's title for every other one."""
    return _state_for_disposition(rc.disposition)


def _state_for_disposition(disposition: str) -> str:
    return "returned" if disposition in _RETURNED_DISPOSITIONS else "failed"


def return_code_review(code: str, processed_on: date) -> ReturnDecision | None:
    """A review decision for a return whose code we must not act on: one the tables do not know
    (NACHA adds codes; the reader only warns about a well-formed one), or one not in effect yet on
    the processing date (R90 from 2028-03-17, NACHA-R90). None when the code can be applied."""
    rc = codes.return_code(code)
    if rc is None:
        return _review("unknown_return_code",
                       f"Return reason code {code} is not in our return code table, so the return was not "
                       "applied; a person must decide what it means for the payment.")
    if rc.effective_from is not None and processed_on < rc.effective_from:
        return _review("code_not_effective",
                       f"Return reason code {code} ({rc.title}) takes effect on {rc.effective_from.isoformat()}, "
                       f"after this file was processed on {processed_on.isoformat()}, so the return was not "
                       "applied; a person must decide what it means for the payment.")
    return None


def decide_return(rc: codes.ReturnCode, seen: ReturnSeen, original: OriginalEntry | None) -> ReturnDecision:
    """Whether a return entry can be applied to our original, and the payment's new state."""
    if original is None:
        return _review("unknown_trace", f"no entry of ours has trace number {seen.original_trace_number}")
    if original.payment_id is None:
        return _review("offset_entry", "the return names our own settlement offset entry")
    if seen.amount_cents != original.amount_cents:
        return _review("amount_mismatch", f"returned amount {dollars(seen.amount_cents)} differs from the "
                                          f"{dollars(original.amount_cents)} we debited")
    if original.accounts:
        rdfis = {r for r, _h in original.accounts}
        if seen.rdfi not in rdfis:
            return _review("account_mismatch", f"original RDFI {seen.rdfi} is not the routing number we debited "
                                               f"({', '.join(sorted(rdfis))})")
        if seen.account_hashes is not None and not any(
                (seen.rdfi, h) in original.accounts for h in seen.account_hashes):
            return _review("account_mismatch", "the account number returned is not the account we debited")
    if rc.kind == codes.KIND_RETURN:
        if original.payment_state not in IN_FLIGHT_STATES:
            return _review("duplicate_return", f"the payment is already {original.payment_state}")
        new = returned_state_for(rc)
        return ReturnDecision(True, new, new, detail=f"{rc.code} {rc.title}")
    if rc.kind == codes.KIND_DISHONORED:
        # Our ODFI dishonored the RDFI's return (ref §1.7, §2.2): the debit stands again, pending a
        # possible contest.
        if not original.applied_return:
            return _review("no_prior_return", "dishonored return for a payment with no applied return")
        return ReturnDecision(True, "settled", "reinstated", detail=f"return dishonored: {rc.code} {rc.title}")
    # contested dishonored return: the RDFI contests the dishonor, the return stands again
    if not original.dishonored_return:
        return _review("no_prior_return", "contested dishonored return for a payment with no dishonored return")
    return ReturnDecision(True, original.returned_state or "returned", "return_restored",
                          detail=f"dishonor contested: {rc.code} {rc.title}")


@dataclass(frozen=True)
class RetryPlan:
    originate_on: date | None  # None: no re-presentment
    retry_number: int
    reason: str


@lru_cache(maxsize=1024)
def retry_date(processed_on: date, delay_banking_days: int) -> date:
    """The first banking day at least `delay_banking_days` banking days after the return was
    processed (the day's origination picks it up)."""
    return add_banking_days(processed_on, delay_banking_days)


def plan_retry(*, processed_on: date, original_settlement: date, retries_so_far: int,
               premium_owed_cents: int | None, amount_cents: int, policy: ReturnPolicy) -> RetryPlan:
    """Re-present an R01/R09 return? At most `max_retries` per original payment, the new entry
    settling within `retry_window_days` of the original's settlement (ref §2.4, NR2013 OR28), and
    only while the premium is still unpaid: at least the same amount still owed (a re-presentment
    carries the original amount; it must not overpay)."""
    n = retries_so_far + 1
    if retries_so_far >= policy.max_retries:
        return RetryPlan(None, n, f"no re-presentment: {retries_so_far} already made "
                                  f"(at most {policy.max_retries})")
    if premium_owed_cents is None:
        return RetryPlan(None, n, "no re-presentment: no premium on record for this payment")
    if premium_owed_cents < amount_cents:
        return RetryPlan(None, n, "no re-presentment: premium paid by other means")
    when = retry_date(processed_on, policy.retry_delay_banking_days)
    limit = original_settlement + timedelta(days=policy.retry_window_days)
    if _settles(when) > limit:
        return RetryPlan(None, n, f"no re-presentment: past {policy.retry_window_days} days after the "
                                  f"original settlement on {original_settlement}")
    return RetryPlan(when, n, f"re-presentment {n} of {policy.max_retries} scheduled for {when}")


# The settlement date of a file date (debit_rules.settlement_of), cached: asked once per entry.
_settles = lru_cache(maxsize=4096)(debit_rules.settlement_of)


@dataclass(frozen=True)
class AccountState:
    routing_number: str
    account_number: str
    account_type: str
    holder_name: str


@dataclass(frozen=True)
class NocPlan:
    status: str  # 'applied' | 'unchanged' | 'rejected'
    new: AccountState | None
    detail: str


_ACCOUNT_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


def plan_noc(code: str, parts: dict[str, str], current: AccountState) -> NocPlan:
    """The stored account after a NOC's corrected values (ref §2.5): account number (C01, C03,
    C06, C07), routing number (C02, C03, C07), account type from the transaction code (C05-C07),
    holder name (C04). A value we cannot store (routing check digit wrong, a transaction code of
    neither a checking nor a savings account) is rejected, nothing changed."""
    new = dict(routing_number=current.routing_number, account_number=current.account_number,
               account_type=current.account_type, holder_name=current.holder_name)
    routing = parts.get(codes.PART_ROUTING_NUMBER)
    if routing is not None:
        if not is_valid_routing(routing):
            return NocPlan("rejected", None, f"{code}: corrected routing number {routing} fails its check digit")
        new["routing_number"] = routing
    account = parts.get(codes.PART_ACCOUNT_NUMBER)
    if account is not None:
        if not (1 <= len(account) <= 17 and set(account) <= _ACCOUNT_CHARS):
            return NocPlan("rejected", None, f"{code}: corrected account number {mask(account)} is not storable")
        new["account_number"] = account
    tc = parts.get(codes.PART_TRANSACTION_CODE)
    if tc is not None:
        account_type = codes.account_type_of(tc)
        if account_type not in (codes.ACCOUNT_CHECKING, codes.ACCOUNT_SAVINGS):
            return NocPlan("rejected", None, f"{code}: corrected transaction code {tc} is not a checking or savings code")
        new["account_type"] = account_type
    name = parts.get(codes.PART_INDIVIDUAL_NAME)
    if name is not None:
        new["holder_name"] = name[:100]
    after = AccountState(**new)
    if after == current:
        return NocPlan("unchanged", after, f"{code}: the stored account already carries the correction")
    changed = [k.replace("_", " ") for k in new if getattr(current, k) != getattr(after, k)]
    return NocPlan("applied", after, f"{code}: corrected {', '.join(changed)}")


# =============================================================================================
# The plan of a chunk of returns (pure: plain values in, a plan out; `_Applier` carries it out)
# =============================================================================================

@dataclass(frozen=True)
class ReturnLine:
    """A return entry of the file: its line, what it says, and (for the action words) the account
    number it carries, masked."""

    line: int
    seen: ReturnSeen
    account_masked: str  # the account the bank returned, masked (nacha.fields.mask)


@dataclass(frozen=True)
class ReviewPlan:
    """A review item to open for a line (the line's own trace number and amount are added)."""

    line: int
    kind: str
    code: str
    original_trace: str
    detail: str
    expected: int | None = None
    payment_id: int | None = None


@dataclass(frozen=True)
class AppliedReturn:
    line: ReturnLine
    rc: codes.ReturnCode
    orig: "_Orig"
    decision: ReturnDecision
    old_state: str


@dataclass
class ReturnPlan:
    """What a chunk of returns does: reviews to open (in order), returns applied (in file order)
    with each payment's new state, the payments by new state, the events of dishonors and contests
    (payment id, event, old state, new state, reason), the accounts to block and the (member,
    account) authorizations to revoke (with the reason), the returns whose re-presentment is to be
    planned, the dishonored and contested ones, and the action words decided so far, per line."""

    reviews: list[ReviewPlan] = field(default_factory=list)
    applied: list[AppliedReturn] = field(default_factory=list)
    new_states: dict[str, list[int]] = field(default_factory=dict)
    events: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    payments_failed: int = 0
    blocks: dict[int, str] = field(default_factory=dict)
    revokes: dict[tuple[str, int], str] = field(default_factory=dict)
    retries: list[AppliedReturn] = field(default_factory=list)
    dishonored: list[AppliedReturn] = field(default_factory=list)
    contested: list[AppliedReturn] = field(default_factory=list)
    actions: dict[int, str] = field(default_factory=dict)


def return_facts_needed(lines: Iterable[ReturnLine], processed_on: date) -> tuple[bool, bool]:
    """Which facts `plan_returns` needs loaded: the accounts' past (RDFI, hash) pairs (any return
    whose code can be applied), and the payments' return history (a dishonored or contested one)."""
    accounts = history = False
    for ln in lines:
        if return_code_review(ln.seen.code, processed_on) is None:
            accounts = True
            if codes.RETURN_CODES[ln.seen.code].kind != codes.KIND_RETURN:
                history = True
                break
    return accounts, history


def plan_returns(lines: list[ReturnLine], origs: dict[str, "_Orig"], past_accounts: dict[int, set],
                 history: dict[int, dict], processed_on: date) -> ReturnPlan:
    """Decide a chunk of returns (file order) against what we know of their originals: `origs` by
    original trace number, the accounts' (RDFI, hash) pairs before any NOC corrected them, and
    (when a dishonor or contest is in the chunk) each payment's return history. A later line sees
    what an earlier one of the chunk did to the same payment. `history` is not changed."""
    plan = ReturnPlan()
    known_codes = []
    for ln in lines:
        code = ln.seen.code
        d = return_code_review(code, processed_on)
        if d is None:
            known_codes.append((ln, codes.RETURN_CODES[code]))
            continue
        trace = ln.seen.original_trace_number
        o = origs.get(trace)
        plan.reviews.append(ReviewPlan(ln.line, d.review_kind, code, trace, d.detail,
                                       o.amount_cents if o is not None else None,
                                       o.payment_id if o is not None else None))
    if not known_codes:
        return plan
    track_history = any(rc.kind != codes.KIND_RETURN for _ln, rc in known_codes)
    history = dict(history) if track_history else {}
    known: dict[int | None, frozenset] = {}
    state: dict[int, str] = {}
    applied = plan.applied
    for ln, rc in known_codes:
        seen = ln.seen
        trace = seen.original_trace_number
        o = origs.get(trace)
        original = None
        if o is not None:
            accounts = known.get(o.bank_account_id)
            if accounts is None:  # the account now, and as it was before any NOC corrected it
                pairs = set(past_accounts.get(o.bank_account_id, ()))
                if o.routing_number is not None:
                    pairs.add((o.routing_number[:8], o.account_hash))
                accounts = known[o.bank_account_id] = frozenset(pairs)
            h = history.get(o.payment_id, _NO_HISTORY) if history else _NO_HISTORY
            original = OriginalEntry(o.file_entry_id, o.payment_id, o.amount_cents,
                                     state.get(o.payment_id, o.state) if o.payment_id else None,
                                     accounts, h.get("applied", False), h.get("dishonored", False),
                                     h.get("state"))
        d = decide_return(rc, seen, original)
        if not d.apply:
            plan.reviews.append(ReviewPlan(ln.line, d.review_kind, rc.code, trace, d.detail,
                                           o.amount_cents if o is not None else None,
                                           o.payment_id if o is not None else None))
            continue
        old = state.get(o.payment_id, o.state)
        state[o.payment_id] = d.new_state
        if track_history:  # a later dishonor or contest in this chunk must see this change
            before = history.get(o.payment_id, _NO_HISTORY)
            if rc.kind == codes.KIND_DISHONORED:
                history[o.payment_id] = {"applied": False, "dishonored": True, "state": before.get("state")}
            else:
                history[o.payment_id] = {"applied": True, "dishonored": False, "state": d.new_state}
        applied.append(AppliedReturn(ln, rc, o, d, old))
    # 1. the payments' new states
    for a in applied:
        plan.new_states.setdefault(a.decision.new_state, []).append(a.orig.payment_id)
    for a in applied:
        d = a.decision
        if a.rc.kind != codes.KIND_RETURN:  # a return is recorded by its payment_returns row
            plan.events.append((a.orig.payment_id, d.event, a.old_state, d.new_state, d.detail))
        if d.new_state == "failed":
            plan.payments_failed += 1
    # 2. account and mandate effects, by disposition (never by raw code); re-presentments to plan
    for a in applied:
        rc, o, ln = a.rc, a.orig, a.line
        if rc.kind == codes.KIND_DISHONORED:
            plan.dishonored.append(a)
            continue
        if rc.kind == codes.KIND_CONTESTED:
            plan.contested.append(a)
            plan.actions[ln.line] = "dishonor contested: the return stands again"
            continue
        reason = _cut(f"{rc.code} {rc.title}", 100)
        if rc.blocks_account and o.bank_account_id is not None:
            plan.blocks.setdefault(o.bank_account_id, reason)
        if rc.revokes_authorization and o.bank_account_id is not None:
            plan.revokes.setdefault((o.member_id, o.bank_account_id), reason)
        trace = ln.seen.original_trace_number
        if rc.retry_allowed:
            plan.retries.append(a)
        elif rc.blocks_account or rc.revokes_authorization:
            pass  # the words name the mandates changed: `return_actions`
        elif rc.disposition == codes.FORMAT_ERROR:
            plan.actions[ln.line] = f"payment failed: {rc.title} (our file: ops alerted)"
            plan.reviews.append(ReviewPlan(ln.line, "format_error", rc.code, trace,
                                           f"{rc.code} {rc.title}: the entry we sent was faulty",
                                           payment_id=o.payment_id))
        elif rc.disposition == codes.REVIEW:
            # No automatic follow-up for these codes (ref §2.1 [DESIGN] "Other / ODFI-driven":
            # case-by-case ops review): the payment stays failed and a person decides the rest.
            plan.actions[ln.line] = f"payment failed: {rc.title} (on the review list)"
            plan.reviews.append(ReviewPlan(ln.line, "return_for_review", rc.code, trace,
                                           f"{rc.code} {rc.title}: the payment is marked failed; a person must "
                                           "decide what follows.", payment_id=o.payment_id))
        else:
            plan.actions[ln.line] = f"payment failed: {rc.title}"
    return plan


def return_actions(plan: ReturnPlan, blocked: dict[int, int], revoked: dict[tuple[str, int], int],
                   retry_words: dict[int, str], dishonor_words: dict[int, str]) -> dict[int, str]:
    """The action words per line, once the executor knows how many mandates each block suspended
    and each revocation revoked, what each planned re-presentment came to, and what each dishonor
    cancelled or put on review."""
    actions = dict(plan.actions)
    for a in plan.applied:
        rc, o, line = a.rc, a.orig, a.line.line
        if rc.kind == codes.KIND_DISHONORED:
            actions[line] = "return dishonored: payment settled again" + dishonor_words.get(line, "")
        elif rc.kind != codes.KIND_RETURN:
            continue
        elif rc.retry_allowed:
            actions[line] = retry_words[line]
        elif rc.blocks_account:
            n = blocked.get(o.bank_account_id, 0)
            actions[line] = f"bank account {a.line.account_masked} blocked; " \
                            f"AutoPay suspended ({n} mandate{'s' if n != 1 else ''}) until a new account"
        elif rc.revokes_authorization:
            n = revoked.get((o.member_id, o.bank_account_id), 0)
            actions[line] = f"AutoPay authorization revoked ({n} mandate{'s' if n != 1 else ''})"
    return actions


@dataclass(frozen=True)
class PlannedRetry:
    line: int
    orig: "_Orig"
    root: int
    plan: RetryPlan


def plan_retries(items: list[tuple[int, "_Orig"]], *, roots: dict[int, int], settlement: dict[int, date],
                 retries_so_far: dict[int, int], owed: dict[tuple, int], processed_on: date,
                 policy: ReturnPolicy) -> tuple[dict[int, str], list[PlannedRetry]]:
    """The re-presentments of a chunk's R01/R09 returns ((line, original) in file order), given
    each returned payment's root (the original payment), the roots' settlement dates, the
    re-presentments made so far per root and the cents still owed per (member, plan, coverage
    month): `plan_retry` for each in turn, a planned one counting as covering its amount. Returns
    the words per line and the re-presentments planned (the debit rules may still refuse them)."""
    owed = dict(owed)
    actions: dict[int, str] = {}
    planned: list[PlannedRetry] = []
    for line, o in items:
        root = roots[o.payment_id]
        key = (o.member_id, o.plan_id, o.coverage_month)
        plan = plan_retry(processed_on=processed_on,
                          original_settlement=settlement.get(root) or _settles(o.file_date),
                          retries_so_far=retries_so_far.get(root, 0), premium_owed_cents=owed.get(key),
                          amount_cents=o.pay_amount, policy=policy)
        actions[line] = plan.reason
        if plan.originate_on is None:
            continue
        planned.append(PlannedRetry(line, o, root, plan))
        owed[key] = owed[key] - o.pay_amount  # the re-presentment would cover it
    return actions, planned


def keep_retries(planned: list[PlannedRetry], refused: dict[int, debit_rules.Verdict],
                 actions: dict[int, str]) -> tuple[dict[tuple[int, date], list[int]], dict[tuple[int, int], int]]:
    """The planned re-presentments the debit rules did not refuse (`refused` by returned payment
    id; their words are set in `actions`): the returned payments to copy per (retry number, day),
    and the file line of each (root, retry number)."""
    copies: dict[tuple[int, date], list[int]] = defaultdict(list)
    line_of: dict[tuple[int, int], int] = {}
    for p in planned:
        v = refused.get(p.orig.payment_id)
        if v is not None:
            actions[p.line] = f"no re-presentment: {v.reason}"
            continue
        copies[(p.plan.retry_number, p.plan.originate_on)].append(p.orig.payment_id)
        line_of[(p.root, p.plan.retry_number)] = p.line
    return copies, line_of


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
    payments_failed: int = 0  # returned payments marked failed, and pending ones stopped
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
        return f"rejected: invalid file ({len(out.errors)} error{'s' if len(out.errors) != 1 else ''})"
    return (f"applied: {out.returns_applied} of {out.returns} returns, {out.nocs_applied} of {out.nocs} NOCs, "
            f"{out.review_items} for review")


def process_return_file(sessions: sessionmaker[Session], keyring: Keyring, path: str | os.PathLike,
                        processed_on: date, policy: ReturnPolicy = ReturnPolicy(), *,
                        mark: Mark | None = None) -> FileOutcome:
    """Apply one return/NOC file in one transaction. The same bytes twice: applied once (status
    'duplicate' the second time). A file with validation errors: nothing applied, the file recorded
    as rejected with its located errors (status 'rejected', again on every re-run). `mark(session,
    outcome)` runs inside the transaction that records the outcome (the inbound ledger uses it).
    An unreadable file is reported (status 'rejected') but neither recorded nor marked."""
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
            reader = Reader(path, policy.profile, name=path.name)
            for item in reader:
                if isinstance(item, EntryItem):
                    if reader.issues:
                        # The file will be rejected whole: read on only to list every problem.
                        applier.items.clear()
                        continue
                    applier.add(item)
                elif isinstance(item, FileStart):
                    rf.file_creation_date = _yymmdd(item.header.file_creation_date)
            out.warnings = [str(w) for w in reader.warnings]
            if reader.issues:
                raise _Rejected(reader.issues, reader.warnings)  # rolls the whole file back
            applier.finish()
            rf.returns, rf.nocs = out.returns, out.nocs
            rf.applied = out.returns_applied + out.nocs_applied
            rf.review_items = out.review_items
            out.return_file_id = rf.id
            if mark:
                mark(s, out)
    except _Rejected as r:
        return _record_rejection(sessions, path, out, processed_on, r.issues, mark, r.warnings)
    return out


def _seen_before(out: FileOutcome, prior: ReturnFile) -> FileOutcome:
    out.return_file_id = prior.id
    out.previously_processed_on = prior.processed_on
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
    fresh.warnings = [str(w) for w in warnings]  # shown, not stored: the errors say why it was rejected
    with sessions() as s, s.begin():
        prior = s.scalar(select(ReturnFile).where(ReturnFile.sha256 == out.sha256))
        if prior is not None:  # another run recorded it meanwhile
            _seen_before(fresh, prior)
        else:
            rf = ReturnFile(sha256=out.sha256, file_name=path.name[:500], status="rejected",
                            processed_on=processed_on, returns=0, nocs=0, applied=0, review_items=0,
                            errors=dump_errors(fresh.issues))
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
    (thousands of IN parameters are slow to send and plan); elsewhere one expanding parameter, so
    the list is not coerced element by element when the statement is built. (SQLite's
    `IN (SELECT value FROM json_each(?))` was tried: its planner then scans the table.)"""
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(bindparam(None, values, expanding=True))


def _insert_rows(conn, model, rows: list[dict]) -> None:
    """Insert many rows that share their keys, stamped created_at now: by COPY on PostgreSQL (one
    stream instead of a statement per row: several times faster for 100,000 returns), by
    executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(model).values(created_at=_NOW), rows)
        return
    cols = list(rows[0])
    now = conn.execute(select(_NOW)).scalar_one()
    copy_rows(conn, model.__tablename__, cols + ["created_at"], ([r[c] for c in cols] + [now] for r in rows))


def _yymmdd(v: str) -> date | None:
    try:
        return date(2000 + int(v[0:2]), int(v[2:4]), int(v[4:6]))
    except (ValueError, TypeError):
        return None


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


@dataclass
class _Item:
    line: int
    entry: tuple
    addenda: tuple  # the 98 or 99 addenda record
    kind: str  # '99' | '98' | ''


@dataclass
class _Orig:
    file_entry_id: int
    amount_cents: int
    payment_id: int | None
    file_date: date
    state: str | None = None
    channel: str | None = None
    member_id: str | None = None
    plan_id: str | None = None
    coverage_month: date | None = None
    premium_id: int | None = None
    pay_amount: int | None = None
    bank_account_id: int | None = None
    sec_code: str | None = None
    payment_type_code: str | None = None
    retry_of_id: int | None = None
    retry_number: int = 0
    routing_number: str | None = None
    account_hash: str | None = None


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
        self.now = utcnow()
        self.submitted_at = datetime.combine(processed_on, time(0), tzinfo=timezone.utc)
        self.hashes: dict[tuple[str, str], tuple[str, ...]] = {}
        dialect = self.conn.dialect.name
        self._in = lambda column, values: _in(column, values, dialect)

    # -- intake -----------------------------------------------------------------------------------
    def add(self, item: EntryItem) -> None:
        kind, addenda = "", None
        for a in item.addenda:
            if a is None:
                continue
            t = a[1].addenda_type_code
            if t in ("98", "99"):
                kind, addenda = t, a[1]
                break
        if kind == "99":
            self.out.returns += 1
        elif kind == "98":
            self.out.nocs += 1
        self.items.append(_Item(item.line, item.record, addenda, kind))
        if len(self.items) >= CHUNK:
            self._flush()

    def finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        traces = sorted({it.addenda.original_entry_trace_number for it in items if it.addenda is not None})
        origs = self._lookup(traces)
        self.reviews: list[dict] = []
        nocs = [it for it in items if it.kind == "98"]
        rets = [it for it in items if it.kind == "99"]
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

    def _lookup(self, traces: list[str]) -> dict[str, _Orig]:
        out: dict[str, _Orig] = {}
        if not traces:
            return out
        rows = self.conn.execute(
            select(FileEntry.trace_number, FileEntry.id, FileEntry.amount_cents, FileEntry.payment_id,
                   NachaFile.file_date, Payment.state, Payment.channel, Payment.member_id, Payment.plan_id,
                   Payment.coverage_month, Payment.premium_id, Payment.amount_cents, Payment.bank_account_id,
                   Payment.sec_code, Payment.payment_type_code, Payment.retry_of_id, Payment.retry_number,
                   BankAccount.routing_number, BankAccount.account_hash)
            .join(NachaFile, NachaFile.id == FileEntry.file_id)
            .outerjoin(Payment, Payment.id == FileEntry.payment_id)
            .outerjoin(BankAccount, BankAccount.id == Payment.bank_account_id)
            .where(self._in(FileEntry.trace_number, traces))
        ).all()
        for r in rows:
            out[r[0]] = _Orig(*r[1:])
        return out

    def _review(self, it: _Item, kind: str, code: str, original_trace: str, detail: str,
                expected: int | None = None, payment_id: int | None = None, *, related_payment_id: int | None = None,
                subject: str = "file", dedupe_key: str | None = None) -> None:
        # Every row carries every key: PostgreSQL loads them by COPY with the first row's columns.
        self.reviews.append({
            "return_file_id": self.rf.id, "line": it.line, "subject": subject, "subject_ref": None, "kind": kind,
            "code": code[:3], "original_trace_number": original_trace[:15], "trace_number": it.entry.trace_number[:15],
            "amount_cents": it.entry.amount if type(it.entry.amount) is int else 0,
            "expected_amount_cents": expected, "payment_id": payment_id, "related_payment_id": related_payment_id,
            "dedupe_key": dedupe_key, "detail": _cut(detail, 300), "status": "open",
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

    def _apply_returns(self, rets: list[_Item], origs: dict[str, _Orig]) -> None:
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
                "return_title": _cut(rc.title, 200), "category": rc.category, "disposition": rc.disposition,
                "kind": rc.kind, "status": "applied", "amount_cents": it.entry.amount, "returned_on": on,
                "action": _cut(actions.get(it.line, ar.decision.detail), 200), "retry_payment_id": retry_ids.get(it.line),
                "addenda_information": (getattr(a, "addenda_information", "") or "")[:44],
            })
        _insert_rows(conn, PaymentReturn, rows)
        if events:
            _insert_rows(conn, PaymentEvent, events)

    def _event(self, payment_id: int, event: str, old: str, new: str, reason: str) -> dict:
        return {"payment_id": payment_id, "event": event, "old_state": old, "new_state": new,
                "reason": _cut(reason, 200), "occurred_on": self.on, "return_file_id": self.rf.id}

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
                            "state": _state_for_disposition(disposition)}
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
                .values(status="suspended", status_reason=_cut(f"account blocked: {reason}", 100),
                        updated_at=self.now)).rowcount
            self.out.mandates_suspended += n
            pending = list(conn.scalars(select(Payment.id).where(
                self._in(Payment.bank_account_id, ids) & (Payment.state == "pending"))))
            self._fail_pending(pending, f"bank account blocked: {reason}", events)
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
                    .values(status="revoked", status_reason=_cut(f"unauthorized return: {reason}", 100),
                            active_key=None, ended_at=self.now, updated_at=self.now)).rowcount
                self.out.mandates_revoked += n
        for reason, ids in pending.items():
            self._fail_pending(ids, f"AutoPay authorization revoked: {reason}", events)
        return counts

    def _fail_pending(self, ids: list[int], reason: str, events: list[dict]) -> None:
        if not ids:
            return
        self.conn.execute(update(Payment).where(self._in(Payment.id, ids) & (Payment.state == "pending"))
                          .values(state="failed", updated_at=self.now))
        for pid in ids:
            events.append(self._event(pid, "stopped", "pending", "failed", reason))
        self.out.payments_failed += len(ids)

    def _settle_excess(self, dishonored: list[tuple[_Item, codes.ReturnCode, _Orig]],
                       events: list[dict]) -> list[tuple[_Item, _Orig, str]]:
        """A dishonored return put a payment back to settled: the premium month may now be collected
        twice. The debits of that month beyond what is owed are cancelled while still pending; any
        already in a file, sent or settled opens a `double_collection` review item naming both
        payments (a refund is finance's decision, never ours to make silently). Per payment: the
        words for the return's action."""
        keys = {(o.member_id, o.plan_id, o.coverage_month) for _it, _rc, o in dishonored}
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
        restored = {o.payment_id for _it, _rc, o in dishonored}
        cancel: list[int] = []
        reviews: dict[tuple[int, int], tuple[_Item, _Orig, debit_rules.Debit]] = {}
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
                words += f"; {len(plan.cancel)} pending debit(s) of the same premium month cancelled"
            if plan.review:
                words += (f"; payment(s) {', '.join('#' + str(x) for x in plan.review)} already collect the same month: "
                          "double collection for review")
            out.append((it, o, words))
        self._fail_pending(cancel, "cancelled: a dishonored return restored the original payment", events)
        if reviews:
            self._double_collections(reviews)
        return out

    def _double_collections(self, pairs: dict[tuple[int, int], tuple[_Item, _Orig, debit_rules.Debit]]) -> None:
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

    def _schedule_retries(self, items: list[tuple[int, _Orig]], retry_ids: dict[int, int]) -> dict[int, str]:
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
        for i in range(0, len(root_ids), 5000):
            part = root_ids[i:i + 5000]
            for root, n in conn.execute(select(Payment.retry_of_id, func.max(Payment.retry_number))
                                        .where(self._in(Payment.retry_of_id, part)).group_by(Payment.retry_of_id)).all():
                retries[root] = int(n or 0)
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
        for day, group in by_day.items():
            now: dict[tuple, list[debit_rules.PriorReturn]] = defaultdict(list)  # this chunk's returns
            cands = []
            for p in group:
                o = p.orig
                cand = debit_guard.Candidate(-o.payment_id, "retry", o.member_id, o.plan_id, o.coverage_month,
                                             o.bank_account_id)
                now[cand.key].append(debit_rules.PriorReturn(self.on, _settles(o.file_date)))
                cands.append(cand)
            found = debit_guard.verdicts(self.conn, cands, day, self.policy.guard, exclude=frozenset(),
                                         extra_prior=dict(now))
            for cid, v in found.items():
                out[-cid] = v
        return out

    def _owed(self, keys: list[tuple[str, str, date]]) -> dict[tuple[str, str, date], int]:
        """Cents still owed per (member, plan, coverage month) with a premium on record: the amount
        due less what counting payments (paid, or on their way) cover."""
        wanted = set(keys)
        out: dict[tuple, int] = {}
        members = sorted({k[0] for k in wanted})
        for i in range(0, len(members), 5000):
            part = members[i:i + 5000]
            for m, p, month, due in self.conn.execute(
                    select(Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.amount_due_cents)
                    .where(self._in(Premium.member_id, part))).all():
                if (m, p, month) in wanted:
                    out[(m, p, month)] = int(due)
            # by member only (its index), the state filtered here: SQLite would otherwise pick the
            # state index and scan every payment in flight
            for m, p, month, state, cents in self.conn.execute(
                    select(Payment.member_id, Payment.plan_id, Payment.coverage_month, Payment.state,
                           Payment.amount_cents).where(self._in(Payment.member_id, part))).all():
                if state in COUNTING_STATES and (m, p, month) in out:
                    out[(m, p, month)] -= int(cents)
        return out

    # -- NOCs -------------------------------------------------------------------------------------
    def _apply_nocs(self, nocs: list[_Item], origs: dict[str, _Orig]) -> None:
        """A chunk's NOCs: the accounts they name are loaded once, the corrections planned in file
        order (two NOCs for one account apply one after the other), then written together."""
        changes: list[dict] = []
        todo: list[tuple[_Item, _Orig, str, dict, dict]] = []
        for it in nocs:
            a = it.addenda
            code = a[2]
            trace = a.original_entry_trace_number
            cc = codes.CHANGE_CODES[code]
            o = origs.get(trace)
            if o is None:
                self._review(it, "unknown_trace", code, trace, f"NOC {code}: no entry of ours has trace number {trace}")
                continue
            if o.payment_id is None or o.bank_account_id is None:
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
                           detail=_cut(f"refused NOC {code} {cc.title} (of {a.change_code})", 300))
                changes.append(rec)
                self.out.nocs_refused += 1
            elif not cc.applies_to_us or codes.PART_INDIVIDUAL_ID in {p.name for p in cc.parts}:
                # C08/C14 are for IAT entries, which we never send; C09 would change a member id,
                # which is the enrollment system's: both for review.
                rec.update(status="noted", detail=_cut(f"{code} {cc.title}: not applied automatically", 300))
                changes.append(rec)
                self._review(it, "noc_for_review", code, trace, f"NOC {code} {cc.title}: needs a person",
                             payment_id=o.payment_id)
            elif not cc.parts:
                # C13 Addenda Format Error: the entry posted; our debits carry no addenda to fix.
                rec.update(status="noted", detail=_cut(f"{code} {cc.title}: nothing to correct", 300))
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

    def _correct_accounts(self, todo: list[tuple[_Item, _Orig, str, dict, dict]]) -> None:
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
                       old_account_hash=acct["account_hash"], status=plan.status, detail=_cut(plan.detail, 300))
            if plan.status == "rejected" or acct["merged_into"] is not None:
                if plan.status == "rejected":
                    self._review(it, "noc_rejected", code, rec["original_trace_number"], plan.detail,
                                 payment_id=o.payment_id)
                else:
                    rec.update(status="noted", detail=_cut(f"{plan.detail}; the account was already replaced", 300))
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
                    rec["detail"] = _cut(f"{plan.detail}; the corrected account was already on record (#{other}): "
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
            rows.append({"b_id": aid, "routing_number": acct["routing_number"],
                         "account_number_enc": self.keyring.encrypt_account(acct["account_number"]),
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
            status_reason=_cut(merged_account_reason(code, new.account_number[-4:], other_id), 100)))


_MERGED_REASON = re.compile(r"NOC (C[0-9]{2}): corrected to account \*\*\*\*([0-9A-Za-z-]{1,4}) \(record ([0-9]+)\)")


def merged_account_reason(code: str, last4: str, other_id: int) -> str:
    """The status_reason of an account a NOC merged into another record (see `_merge_account`)."""
    return f"NOC {code}: corrected to account ****{last4} (record {other_id})"


def merged_into(status_reason: str | None) -> tuple[str, str, int] | None:
    """(change code, last four of the corrected account, id of the record it was merged into) when
    `status_reason` is a `merged_account_reason`; None for any other reason (or one cut short)."""
    m = _MERGED_REASON.fullmatch(status_reason or "")
    return (m.group(1), m.group(2), int(m.group(3))) if m else None


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
