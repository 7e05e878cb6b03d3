"""Returns and NOCs, the rules: pure functions of what a return or NOC entry says and what we know
of the entry it answers (no clock, no database). `batch.collect.returns` loads those facts for a
chunk of a bank file, asks these functions, and carries out the plan they make (reference §1.7,
§2.1-§2.5; the dispositions of nacha/codes.py, never raw codes)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Iterable

from nacha import codes
from nacha.calendar import add_banking_days
from nacha.fields import mask
from nacha.routing import is_valid_routing

from . import debit_rules
from .counts import counted
from .money import dollars

# States in which an originated debit can be returned.
IN_FLIGHT_STATES = ("in_file", "sent", "settled")
# States of a re-presentment still open (at most one per payment: index ux_payments_open_retry).
OPEN_RETRY_STATES = ("pending", "in_file", "sent")
# Dispositions whose return leaves the payment 'returned'; every other one marks it 'failed'.
_RETURNED_DISPOSITIONS = frozenset({codes.RETRY_FUNDS, codes.BLOCK_ACCOUNT, codes.REVOKE_AUTH})
_NO_HISTORY: dict = {}


def cut(s: str, n: int) -> str:
    """`s` cut to `n` characters for a column of that width, an ellipsis saying so."""
    return s if len(s) <= n else s[: n - 1] + "…"


@dataclass
class OriginalFacts:
    """What the database says of the entry a return names, and of its payment and account (a
    row of the lookup by trace number)."""

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
    guard: debit_rules.GuardSettings = debit_rules.GuardSettings()  # coverage rules, time zone


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
    return state_for_disposition(rc.disposition)


def state_for_disposition(disposition: str) -> str:
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


# The review kinds of a return that does not match the entry it names (amount, account): a person
# who matched it by hand may override them (`achbatch review resolve --force`); every other reason a
# return is not applied is a state rule that nothing overrides.
MISMATCH_KINDS = ("amount_mismatch", "account_mismatch")


def account_problem(rdfi: str, account_hashes: tuple[str, ...] | None,
                    accounts: frozenset[tuple[str, str]]) -> str | None:
    """Why an entry the bank names by (RDFI, keyed hashes of its account number) is not one sent to
    `accounts` (the (RDFI, hash) pairs of the account, now and before any NOC corrected it); None
    when it is, or when we know no account (an offset entry). Hashes None: the bank left the
    account field blank, so only the RDFI is compared."""
    if not accounts:
        return None
    rdfis = {r for r, _h in accounts}
    if rdfi not in rdfis:
        return f"original RDFI {rdfi} is not the routing number we debited ({', '.join(sorted(rdfis))})"
    if account_hashes is not None and not any((rdfi, h) in accounts for h in account_hashes):
        return "the account number returned is not the account we debited"
    return None


def decide_return(rc: codes.ReturnCode, seen: ReturnSeen, original: OriginalEntry | None,
                  overridden: frozenset[str] = frozenset()) -> ReturnDecision:
    """Whether a return entry can be applied to our original, and the payment's new state.
    `overridden`: the `MISMATCH_KINDS` a person chose to override for this entry (never a state rule)."""
    if original is None:
        return _review("unknown_trace", f"no entry of ours has trace number {seen.original_trace_number}")
    if original.payment_id is None:
        return _review("offset_entry", "the return names our own settlement offset entry")
    if seen.amount_cents != original.amount_cents and "amount_mismatch" not in overridden:
        return _review("amount_mismatch", f"returned amount {dollars(seen.amount_cents)} differs from the "
                                          f"{dollars(original.amount_cents)} we debited")
    problem = account_problem(seen.rdfi, seen.account_hashes, original.accounts)
    if problem is not None and "account_mismatch" not in overridden:
        return _review("account_mismatch", problem)
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


# The field of the bank's record each kind of review item is about: of the entry, or of its return
# or NOC addenda. `review_location` turns it into the reader's location (line, columns, record,
# field), so a person is shown exactly where to look.
REVIEW_FIELDS: dict[str, tuple[str, str]] = {
    "unknown_trace": ("addenda", "original_entry_trace_number"),
    "offset_entry": ("addenda", "original_entry_trace_number"),
    "duplicate_return": ("addenda", "original_entry_trace_number"),
    "no_prior_return": ("addenda", "original_entry_trace_number"),
    "amount_mismatch": ("entry", "amount"),
    "account_mismatch": ("entry", "dfi_account_number"),
    "not_return_or_noc": ("entry", "transaction_code"),
    "noc_for_review": ("addenda", "change_code"),
    "noc_rejected": ("addenda", "corrected_data"),
    "format_error": ("addenda", "return_reason_code"),
    "return_for_review": ("addenda", "return_reason_code"),
    "unknown_return_code": ("addenda", "return_reason_code"),
    "code_not_effective": ("addenda", "return_reason_code"),
    "double_collection": ("addenda", "dishonored_return_reason_code"),
}


def review_location(kind: str, entry: tuple[int, object], addenda: tuple[int, object] | None) -> dict | None:
    """Where in the bank file an item of `kind` points: `{"line", "columns", "record", "field"}` of
    the field `REVIEW_FIELDS` names, in the entry `(line, record)` or its addenda; None when the
    kind names no field or the record lacks it (a refused NOC's addenda has no `change_code`...)."""
    on, name = REVIEW_FIELDS.get(kind, ("", ""))
    line, record = addenda if on == "addenda" and addenda is not None else entry if on == "entry" else (None, None)
    layout = getattr(record, "layout", None)
    f = layout.by_name.get(name) if layout is not None else None
    if f is None and layout is not None and name == "change_code":
        f = layout.by_name.get("refused_change_code")
    if f is None:
        return None
    return {"line": line, "columns": [f.start, f.end], "record": layout.name, "field": f.name}


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
    orig: "OriginalFacts"
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


def plan_returns(lines: list[ReturnLine], origs: dict[str, "OriginalFacts"], past_accounts: dict[int, set],
                 history: dict[int, dict], processed_on: date,
                 overridden: dict[int, frozenset[str]] | None = None) -> ReturnPlan:
    """Decide a chunk of returns (file order) against what we know of their originals: `origs` by
    original trace number, the accounts' (RDFI, hash) pairs before any NOC corrected them, and
    (when a dishonor or contest is in the chunk) each payment's return history. A later line sees
    what an earlier one of the chunk did to the same payment. `history` is not changed.
    `overridden`: per line, the mismatches a person overrode (`decide_return`)."""
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
        d = decide_return(rc, seen, original, overridden.get(ln.line, frozenset()) if overridden else frozenset())
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
        reason = cut(f"{rc.code} {rc.title}", 100)
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
                            f"AutoPay suspended ({counted(n, 'mandate')}) until a new account"
        elif rc.revokes_authorization:
            n = revoked.get((o.member_id, o.bank_account_id), 0)
            actions[line] = f"AutoPay authorization revoked ({counted(n, 'mandate')})"
    return actions


@dataclass(frozen=True)
class PlannedRetry:
    line: int
    orig: "OriginalFacts"
    root: int
    plan: RetryPlan


def plan_retries(items: list[tuple[int, "OriginalFacts"]], *, roots: dict[int, int], settlement: dict[int, date],
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
# A person's match of a bank entry to a prenote (`review resolve N --action apply --prenote ID`)
# =============================================================================================

@dataclass(frozen=True)
class PrenoteRefusal:
    """Why a bank entry cannot be applied to the prenote a person named: `kind` (a review kind, or
    `not_sent`, `trace_mismatch`, `prenote_returned`), the reason in words, and whether `--force`
    lets it through (an amount, account or ODFI trace prefix that differs; never a state rule, nor
    a trace that is another entry's of ours)."""

    kind: str
    reason: str
    overridable: bool = False


def prenote_match_problems(record: str, code: str, *, prenote_id: int, prenote_state: str, prenote_trace: str | None,
                           original_trace: str, trace_owner: str | None, amount_cents: int | None,
                           account: str | None) -> list[PrenoteRefusal]:
    """Why the bank's `record` ('return' or 'noc', code `code`) naming `original_trace` is not an
    answer to prenote `prenote_id` (its state, its entry's trace; None: never in a file), in the
    order a person should hear them. `trace_owner`: the other entry of ours with that trace, in
    words ('payment #5', 'prenote #3'; None when it is no entry of ours, or our offset entry);
    `amount_cents`: the bank entry's amount (a prenote is zero dollars); `account`: the account
    problem (`account_problem`) or None. Empty: it fits, and is applied as an automatic match of
    that prenote would be."""
    out: list[PrenoteRefusal] = []
    if prenote_trace is None:
        return [PrenoteRefusal("not_sent", f"prenote #{prenote_id} ({prenote_state}) was never sent in a NACHA file: "
                                           "there is no entry of ours to return or correct")]
    if trace_owner is not None:
        out.append(PrenoteRefusal("trace_mismatch", f"the bank's original trace {original_trace} is {trace_owner}'s "
                                                    f"entry, not prenote #{prenote_id}'s ({prenote_trace})"))
    if record == "return":
        if prenote_state == "returned":
            out.append(PrenoteRefusal("prenote_returned", f"prenote #{prenote_id} is already returned"))
        rc = codes.return_code(code)
        if rc is None or rc.kind != codes.KIND_RETURN:
            what = "a return code our tables do not know" if rc is None else f"a {rc.kind} return, not a return"
            out.append(PrenoteRefusal("return_for_review", f"{code} is {what}: it cannot answer a prenote"))
    elif prenote_state == "returned":
        out.append(PrenoteRefusal("prenote_returned", f"prenote #{prenote_id} was returned: its account is "
                                                      "blocked, a NOC cannot validate it"))
    if original_trace[:8] != prenote_trace[:8] and trace_owner is None:
        out.append(PrenoteRefusal("trace_mismatch", f"the bank's original trace {original_trace} does not start with "
                                                    f"our ODFI {prenote_trace[:8]} as prenote #{prenote_id}'s does",
                                  overridable=True))
    if amount_cents:
        out.append(PrenoteRefusal("amount_mismatch", f"the bank's entry carries {dollars(amount_cents)}; a prenote is "
                                                     "zero dollars", overridable=True))
    if account is not None:
        out.append(PrenoteRefusal("account_mismatch", account, overridable=True))
    # state rules first, then what --force may override
    return sorted(out, key=lambda p: p.overridable)
