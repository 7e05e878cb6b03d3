"""Coverage standing: whether each policy (member + plan) is in good standing, its coverage never
started, or it is past due, facing termination or terminated for non-payment.

`assess_policy` is the rule, a pure function of the policy's premiums and payments and a date (no
clock, no database); `batch.collect.coverage.assess_coverage` is the service that feeds it from the
database and stores one current flag per policy, keeping the history.

The rules (reference §5; DESIGN.md "The rules it must get right"):
  * The binder (first month's premium) must be paid in full by its due date, the 23rd of the month
    before coverage (MAHC). Not paid in full by then, or paid and later returned: coverage does not
    start (`not_started`). A late payment does not start it either (enrollment moves the start).
  * A later month not paid in full by its due date, or whose payment is returned after it, makes
    the policy delinquent. APTC and ConnectorCare members who have paid at least one full month's
    premium during the benefit year (the calendar year of the first month missed; 45 CFR
    156.270(d)) get a grace period of `grace_months_subsidized` months (3); the others follow the
    non-grace rules below. ConnectorCare is treated as APTC (every ConnectorCare enrollee receives
    APTC; docs/coverage-rules.md). Grace month k = the number of due dates
    passed since the first missed one; `past_due` in months 1..G-1, `termination_pending` in month
    G, each with the next 23rd as deadline; past it, `terminated` with coverage ending the last day
    of the first grace month (45 CFR 156.270(g)). Others (`grace_months_unsubsidized`, default 0)
    go straight to `termination_pending` with the next 23rd as the notice's pay-by date, then
    `terminated` retroactively to the last day of the last month paid in full (956 CMR 12.12(2)-(3)).
  * Only a payment in full cures; partial payments neither end nor restart a delinquency (the
    grace clock runs from the first month missed until everything owed is paid). A month counts as
    paid in full when its unpaid balance is at most `payment_threshold_cents` (default 0).
  * A payment counts from the day it was made (`paid_on`: the day the member submitted it, or the
    day an AutoPay pull or re-presentment was originated) until the day a return or failure was
    processed (`returned_on`). A first-use WEB debit held for its account's validation (payment
    state `held`, docs/validation.md) has not been made: it counts for nothing while held, and once
    released from the day it was released (`batch.collect.coverage.policy_facts`). The 23rd is the
    calendar date: it does not move for weekends or Federal Reserve holidays (members pay online
    any day; AutoPay already settles on the last banking day on or before it).
  * A returned premium stays at risk until a payment for it has cleared (DESIGN.md; ref §5.4: a
    dishonored payment is non-payment). A debit has cleared on its settlement date + 2 banking days
    with no return (`premium_calendar.cleared_on`, ref §2.2); a mail payment the day it is paid.
    Once a month has a returned payment (its return processed on or before the day considered),
    its other payments count toward it only from the day they cleared: a re-presentment scheduled
    or in flight does not cure it. A payment originated by the due date still counts as paid on
    time; clearing only decides, after a return, whether the month stays paid. So a later month
    returned after its due date is delinquent (grace rules above) until a replacement has cleared.
  * Coverage is activated when the binder's payment clears (premium_calendar.cleared_on, the same
    definition as above): until the binder is due it is `pending_activation` (reason
    `binder_not_due`, the due date as deadline); paid on time but not cleared, it is
    `pending_activation` too (`binder_uncleared`); once what has cleared covers it, `ok`. Returned:
    `not_started` past its due date, `at_risk` before it or while a replacement originated by the
    due date has not cleared (below). `pending_activation` is not delinquent: it is not among the
    AT_RISK_STATUSES (no notice, not listed as at risk), and every other status outranks it.
  * `at_risk`: a month (binder or not) with a returned payment and no replacement cleared, where no
    delinquency applies yet: on or before its due date, or a binder whose replacement was
    originated by the due date but has not cleared (coverage starts, but is at risk). Its deadline
    is the month's due date (none for a binder already past due). `not_started`, `past_due`,
    `termination_pending` and `terminated` outrank it; it outranks `pending_activation` and `ok`.
  * The amount owed on a month is its premium less the payments counting toward it (after a
    return: the payments that have cleared). Once terminated, only the months that start on or
    before the coverage end date are owed (a retroactive termination owes nothing after it).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

from nacha import codes

from .money import dollars

__all__ = [
    "AT_RISK_STATUSES", "COVERAGE_CHANGES", "COVERAGE_STATUSES", "SUBSIDIZED", "CoverageRules", "PaymentFact",
    "PremiumFact", "Standing", "assess_policy", "coverage_change", "months_later",
]

# A policy's standings, from good to worst (the schema's CHECK carries the same list: store/models.py).
COVERAGE_STATUSES = ("ok", "pending_activation", "at_risk", "not_started", "past_due", "termination_pending",
                     "terminated")
SUBSIDIZED = ("aptc", "connectorcare")
# The statuses of a policy at risk, from the least to the most severe: every status but 'ok' and
# 'pending_activation' (coverage not started yet, nothing missed: not delinquent, no notice).
AT_RISK_STATUSES = tuple(s for s in COVERAGE_STATUSES if s not in ("ok", "pending_activation"))
# What the enrollment system is told of a change of standing (`coverage_change`).
COVERAGE_CHANGES = ("activated", "at_risk", "not_started", "terminated", "reinstated")
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class CoverageRules:
    grace_months_subsidized: int = 3
    grace_months_unsubsidized: int = 0
    payment_threshold_cents: int = 0

    @classmethod
    def from_settings(cls, c) -> "CoverageRules":
        return cls(c.grace_months_subsidized, c.grace_months_unsubsidized, c.payment_threshold_cents)


@dataclass(frozen=True)
class PremiumFact:
    coverage_month: date
    amount_due_cents: int
    subsidy: str = "none"
    binder: bool = False
    due_date: date | None = None  # default: the 23rd of the month before

    @property
    def due(self) -> date:
        if self.due_date is not None:
            return self.due_date
        m = self.coverage_month
        return date(m.year - 1, 12, 23) if m.month == 1 else date(m.year, m.month - 1, 23)


@dataclass(frozen=True)
class PaymentFact:
    """One payment toward a premium month, as the rules see it.

    `returned_on`: the day a return (or failure) was processed; None: it stands. A return carries
    its `return_code`; `returned_on` without one is a payment stopped or cancelled before it reached
    the bank (never debited: it stops counting, but the month had no payment returned).
    `cleared_on`: the day it has cleared (premium_calendar.cleared_on of its settlement date; a mail
    payment: its paid_on); None: not known to clear, it never counts as cleared.
    `pending`: not in a NACHA file yet; its cleared_on is when it would clear if originated on its
    day, and it does not count as cleared until it has gone out (a debit never sent has no
    settlement, so it cannot have cleared).
    `retry_number`: n for the n-th re-presentment of a returned payment, 0 otherwise."""

    coverage_month: date
    amount_cents: int
    paid_on: date
    returned_on: date | None = None
    return_code: str | None = None
    cleared_on: date | None = None
    retry_number: int = 0
    pending: bool = False
    payment_id: int | None = None

    @property
    def retry(self) -> bool:
        return self.retry_number > 0

    def counts_on(self, d: date) -> bool:
        """Made by `d` and not returned (or stopped) by then."""
        return self.paid_on <= d and (self.returned_on is None or self.returned_on > d)

    def returned_by(self, d: date) -> bool:
        """A return of this payment was processed on or before `d`."""
        return self.returned_on is not None and self.returned_on <= d and self.return_code is not None

    def cleared_by(self, d: date) -> bool:
        """Cleared on or before `d` (a payment returned since still stops counting: counts_on)."""
        return not self.pending and self.cleared_on is not None and self.cleared_on <= d


def _month_has_return(pays: list[PaymentFact], d: date) -> bool:
    return any(p.returned_by(d) for p in pays)


def _paid_toward(pays: list[PaymentFact], d: date) -> int:
    """What counts toward a month on day `d`: every payment made and not returned by then; once a
    payment of the month has been returned, only those that have cleared (a payment that had
    cleared before the return keeps counting)."""
    after_return = _month_has_return(pays, d)
    return sum(p.amount_cents for p in pays if p.counts_on(d) and (not after_return or p.cleared_by(d)))


@dataclass(frozen=True)
class Standing:
    status: str
    reason_code: str
    reason: str
    months_owed: int = 0
    amount_owed_cents: int = 0
    deadline: date | None = None
    grace_month: int = 0
    grace_months: int = 0
    first_unpaid_month: date | None = None
    coverage_ends_on: date | None = None
    subsidy: str = "none"


def months_later(d: date, n: int) -> date:
    """The same day of the month n months later (due dates are the 23rd: always valid)."""
    y, m = divmod(d.month - 1 + n, 12)
    return d.replace(year=d.year + y, month=m + 1)


def _month(d: date) -> str:
    return f"{d:%Y-%m}"


def _return_words(pays: list[PaymentFact], as_of: date) -> str:
    for p in sorted(pays, key=lambda p: p.returned_on or date.max, reverse=True):
        if p.returned_on is not None and p.returned_on <= as_of and p.return_code:
            rc = codes.return_code(p.return_code)
            return f"{p.return_code} {rc.title}" if rc else p.return_code
    return "payment failed"


def _retry_words(pays: list[PaymentFact], as_of: date) -> str:
    """'; re-presentment 1 scheduled for 2027-02-25' for each re-presentment still open (not
    returned or stopped, not cleared) on `as_of`. Worded from its scheduled day, so the reason stays
    the same from the return until the re-presentment clears (a changed reason is a new flag)."""
    return "".join(f"; re-presentment {p.retry_number} scheduled for {p.paid_on}"
                   for p in sorted(pays, key=lambda p: (p.paid_on, p.retry_number))
                   if p.retry and (p.returned_on is None or p.returned_on > as_of) and not p.cleared_by(as_of))


def _returned_reason(what: str, month: PremiumFact, pays: list[PaymentFact], as_of: date) -> str:
    """'premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for ...'"""
    return (f"{what} for {_month(month.coverage_month)} returned ({_return_words(pays, as_of)})"
            f"{_retry_words(pays, as_of)}")


def _outstanding(prem: PremiumFact, pays: list[PaymentFact], as_of: date, threshold: int) -> list[tuple[date, date]]:
    """The day ranges [start, end) after the due date, up to `as_of`, in which the month was not
    paid in full (end = the day it became paid, or as_of + 1 while it still is not)."""
    due = prem.due
    if due >= as_of:
        return []
    need = prem.amount_due_cents - threshold
    points = {due + _ONE_DAY}
    for p in pays:
        for d in (p.paid_on, p.returned_on, p.cleared_on):
            if d is not None and due + _ONE_DAY < d <= as_of:
                points.add(d)
    spans: list[tuple[date, date]] = []
    start = None
    for t in sorted(points):
        unpaid = _paid_toward(pays, t) < need
        if unpaid and start is None:
            start = t
        elif not unpaid and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, as_of + _ONE_DAY))
    return spans


def assess_policy(premiums: Iterable[PremiumFact], payments: Iterable[PaymentFact], as_of: date,
                  rules: CoverageRules = CoverageRules()) -> Standing:
    """The standing of one policy on `as_of` (see the module docstring for the rules)."""
    by_month: dict[date, PremiumFact] = {}
    for p in premiums:
        by_month[p.coverage_month] = p
    months = [by_month[m] for m in sorted(by_month)]
    if not months:
        return Standing("ok", "no_premiums", "no premiums billed")
    pays: dict[date, list[PaymentFact]] = defaultdict(list)
    for p in payments:
        pays[p.coverage_month].append(p)
    threshold = rules.payment_threshold_cents

    def paid_now(m: PremiumFact) -> int:
        return _paid_toward(pays[m.coverage_month], as_of)

    def returned_unpaid(m: PremiumFact) -> bool:
        """A payment of the month was returned and no replacement has cleared (in full)."""
        return _month_has_return(pays[m.coverage_month], as_of) and paid_now(m) < m.amount_due_cents - threshold

    at_risk: list[tuple[PremiumFact, date | None]] = []  # (month, deadline)
    uncleared: list[PaymentFact] | None = None  # the binder's payments not cleared yet (paid, not active)
    binder = next((m for m in months if m.binder), None)
    if binder is not None:
        bpays = pays[binder.coverage_month]
        due = binder.due
        need = binder.amount_due_cents - threshold
        if as_of <= due and paid_now(binder) < need:
            if not _month_has_return(bpays, as_of):
                return Standing("pending_activation", "binder_not_due",
                                f"binder for {_month(binder.coverage_month)} due {due}: coverage is activated once "
                                "it is paid and has cleared", deadline=due, subsidy=binder.subsidy)
            at_risk.append((binder, due))  # returned before its due date: still time to pay
        else:
            if as_of <= due:
                on_time = need  # paid, and it is not due yet
            else:  # originated by the due date and not returned (clearing decides only after a return)
                on_time = sum(p.amount_cents for p in bpays
                              if p.paid_on <= due and (p.returned_on is None or p.returned_on > as_of))
            if on_time < need:
                owed = max(0, binder.amount_due_cents - paid_now(binder))
                owed_months = 1 if owed > threshold else 0
                returned = [p for p in bpays
                            if p.paid_on <= due and p.returned_on is not None and p.returned_on <= as_of]
                partial = sum(p.amount_cents for p in bpays if p.paid_on <= due and p.counts_on(as_of))
                label = _month(binder.coverage_month)
                if returned:
                    code, why = "binder_returned", f"binder for {label} returned ({_return_words(returned, as_of)})"
                elif partial > 0:
                    code, why = "binder_partial", (f"binder for {label} only partly paid by {due}: "
                                                   f"{dollars(partial)} of {dollars(binder.amount_due_cents)}")
                else:
                    code, why = "binder_unpaid", f"binder for {label} not paid in full by {due}"
                if owed_months == 0:
                    why += " (paid since, after the due date)"
                return Standing("not_started", code, why + ": coverage does not start", owed_months, owed,
                                None, 0, 0, binder.coverage_month, None, binder.subsidy)
            if returned_unpaid(binder):  # replaced by the due date, the replacement not cleared yet
                at_risk.append((binder, None))
            else:
                uncleared = _uncleared(bpays, as_of, need)
        later = [m for m in months if m.coverage_month > binder.coverage_month]
    else:
        later = months

    spans: list[tuple[date, date, PremiumFact]] = []
    for m in later:
        for a, b in _outstanding(m, pays[m.coverage_month], as_of, threshold):
            spans.append((a, b, m))
    end_now = as_of + _ONE_DAY
    if not any(b == end_now for _a, b, _m in spans):
        at_risk += [(m, m.due) for m in later if as_of <= m.due and returned_unpaid(m)]
        if at_risk:
            return _at_risk_standing(at_risk, pays, as_of, paid_now)
        if uncleared and binder is not None:
            return _pending_standing(binder, uncleared)
        last = months[-1]
        return Standing("ok", "paid", "every premium due is paid", subsidy=last.subsidy)
    # The current delinquency: the run of overlapping or adjoining outstanding spans up to today.
    spans.sort(key=lambda s: (s[0], s[2].coverage_month))
    episode: list[tuple[date, date, PremiumFact]] = []
    reach = None
    for a, b, m in spans:
        if reach is None or a > reach:
            episode = []
            reach = b
        else:
            reach = max(reach, b)
        episode.append((a, b, m))
    first = min((m for _a, _b, m in episode), key=lambda m: m.coverage_month)
    owed_months = [m for m in later if m.due < as_of and m.amount_due_cents - paid_now(m) > threshold]
    owed = sum(m.amount_due_cents - paid_now(m) for m in owed_months)
    d1 = first.due
    k = 0
    while months_later(d1, k) < as_of:
        k += 1
    subsidized = first.subsidy in SUBSIDIZED
    # 45 CFR 156.270(d): the APTC grace period is for an enrollee who has paid at least one full
    # month's premium during the benefit year (the calendar year of the first month missed).
    year = first.coverage_month.year
    paid_a_month = any(m.coverage_month.year == year and m.coverage_month < first.coverage_month
                       and paid_now(m) >= m.amount_due_cents - threshold for m in months)
    grace = rules.grace_months_subsidized if subsidized and paid_a_month else rules.grace_months_unsubsidized
    oldest = owed_months[0] if owed_months else first  # the oldest month still owed
    opays = pays[oldest.coverage_month]
    label = _month(oldest.coverage_month)
    stopped = any(p.returned_on is not None and p.returned_on <= as_of for p in opays)
    if _month_has_return(opays, as_of) or (stopped and paid_now(oldest) == 0):
        code, why = "premium_returned", _returned_reason("premium", oldest, opays, as_of)
    elif 0 < paid_now(oldest) < oldest.amount_due_cents - threshold:
        code, why = "premium_partial", (f"premium for {label} only partly paid: {dollars(paid_now(oldest))} of "
                                        f"{dollars(oldest.amount_due_cents)}")
    else:
        code, why = "premium_unpaid", f"premium for {label} not paid in full by {oldest.due}"
    if len(owed_months) > 1:
        why += f"; {len(owed_months)} months owed"
    if oldest is not first:
        why += f"; delinquent since {d1} ({_month(first.coverage_month)} missed)"
    if subsidized and not paid_a_month:
        program = "APTC" if first.subsidy == "aptc" else "ConnectorCare"
        why += f"; no {program} grace period: no month paid in full in benefit year {year} (45 CFR 156.270(d))"
    n, cents = len(owed_months), owed

    def owed_until(ends: date) -> tuple[int, int]:
        """After a (retroactive) termination, only the months of coverage up to its end are owed."""
        kept = [m for m in owed_months if m.coverage_month <= ends]
        return len(kept), sum(m.amount_due_cents - paid_now(m) for m in kept)

    if grace >= 1:
        if k <= grace:
            status = "past_due" if k < grace else "termination_pending"
            return Standing(status, code, f"{why}; grace month {k} of {grace}", n, cents, months_later(d1, k),
                            k, grace, first.coverage_month, None, first.subsidy)
        ends = months_later(first.coverage_month, 1) - _ONE_DAY  # last day of grace month 1
        n, cents = owed_until(ends)
        return Standing("terminated", code, f"{why}; grace period ended {months_later(d1, grace)}", n, cents,
                        None, k, grace, first.coverage_month, ends, first.subsidy)
    if k == 1:
        return Standing("termination_pending", code, f"{why}; no grace period", n, cents, months_later(d1, 1),
                        1, 0, first.coverage_month, None, first.subsidy)
    ends = first.coverage_month - _ONE_DAY  # the last day of the last month paid in full
    n, cents = owed_until(ends)
    return Standing("terminated", code, f"{why}; not paid by {months_later(d1, 1)}", n, cents, None, k, 0,
                    first.coverage_month, ends, first.subsidy)


def _at_risk_standing(items: list[tuple[PremiumFact, date | None]], pays: dict[date, list[PaymentFact]],
                      as_of: date, paid_now) -> Standing:
    """`at_risk`: months with a payment returned and no replacement cleared, none delinquent yet.
    Named after the oldest; the deadline is the earliest due date still ahead (none for a binder
    whose replacement went out by its due date and has not cleared)."""
    items = sorted(items, key=lambda i: i[0].coverage_month)
    first = items[0][0]
    what = "binder" if first.binder else "premium"
    why = _returned_reason(what, first, pays[first.coverage_month], as_of)
    if len(items) > 1:
        why += f"; {len(items)} months at risk"
    why += "; at risk until a replacement clears"
    owed = sum(max(0, m.amount_due_cents - paid_now(m)) for m, _d in items)
    deadline = min((d for _m, d in items if d is not None), default=None)
    return Standing("at_risk", f"{what}_returned", why, len(items), owed, deadline, 0, 0, first.coverage_month,
                    None, first.subsidy)


def _uncleared(pays: list[PaymentFact], as_of: date, need: int) -> list[PaymentFact] | None:
    """The binder's counting payments that have not cleared, when those that have fall short of
    `need` (the binder is paid but its payment has not cleared: coverage is not activated yet);
    None when what has cleared covers it."""
    counting = [p for p in pays if p.counts_on(as_of)]
    if sum(p.amount_cents for p in counting if p.cleared_by(as_of)) >= need:
        return None
    return [p for p in counting if not p.cleared_by(as_of)]


def _pending_standing(binder: PremiumFact, uncleared: list[PaymentFact]) -> Standing:
    """`pending_activation`: the binder is paid (on time) and its payment has not cleared yet."""
    days = [p.cleared_on for p in uncleared if p.cleared_on is not None and not p.pending]
    when = f" (it clears on {max(days)})" if days and len(days) == len(uncleared) else ""
    why = (f"binder for {_month(binder.coverage_month)} paid, not cleared yet{when}: coverage is activated once "
           "it clears")
    return Standing("pending_activation", "binder_uncleared", why, subsidy=binder.subsidy)


def coverage_change(previous_status: str | None, previous_reason_code: str | None, status: str, *,
                    binder: bool = True) -> str | None:
    """What the enrollment system is told when a policy's standing goes from `previous_status`
    (None: its first flag) to `status`; None when nothing it acts on changed (the same status, or
    a policy awaiting activation).

    - `activated`: `ok` after `pending_activation` or `not_started`, after a binder's at-risk flag
      (reason `binder_...`: coverage was not active yet), or as the first flag of a policy with a
      binder (`binder`: e.g. a binder paid by mail clears the day it is paid); the first flag of a
      policy without one (its coverage began before achbatch knew it) tells nothing;
    - `reinstated`: `ok` after any other status at risk (`at_risk`, `past_due`,
      `termination_pending`, `terminated`);
    - `at_risk`: into `at_risk`, `past_due` or `termination_pending` (the status says which);
    - `not_started`: into `not_started` (the binder was not paid by its due date, or returned);
    - `terminated`: into `terminated`."""
    if status == previous_status:
        return None
    if status == "ok":
        if previous_status is None and not binder:
            return None
        if previous_status in (None, "pending_activation", "not_started") or (previous_reason_code or "").startswith(
                "binder_"):
            return "activated"
        return "reinstated"
    if status in ("at_risk", "past_due", "termination_pending"):
        return "at_risk"
    if status in ("not_started", "terminated"):
        return status
    return None
