"""Whether a debit may go out: the rules that keep achbatch from taking money it must not take.
Pure functions of plain values and a date (no clock, no database); AutoPay scheduling, return
processing and origination feed them and carry out what they say.

The rules (issue "Never take money that should not be taken"; reference §2.4, §5):
  * Never more in flight than is owed: the debits counting toward a premium month (pending, in a
    file, sent, settled, mail) never add up to more than its amount due (`excess_debits`).
  * AutoPay pulls the premium currently due, one month per mandate per run, never a backlog
    (`current_due_date`), and never a premium due before the mandate was authorized.
  * No AutoPay pull and no re-presentment once coverage cannot exist for the month: a binder whose
    due date passed unpaid (coverage never starts; the member re-enrolls), or a month after a
    terminated policy's coverage end (`coverage_allows`).
  * The reinitiation limit counts per premium month and account across channels: after the
    original and two re-presentments were returned R01/R09, no further debit for that month goes
    to that account under an authorization older than the last return; a new authorization (a
    portal payment or a mandate made after it) starts over; and a debit after a return settles
    within 180 days of the first returned entry's settlement (`reinitiation_allows`).
When a rule leaves a choice, the safe side is no debit, with a review item that says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Iterable, Sequence

from zoneinfo import ZoneInfo

from nacha import codes
from nacha.calendar import effective_entry_date

from .coverage import CoverageRules
from .premium_calendar import DUE_DAY, autopay_draft_date

__all__ = [
    "AUTOMATIC_CHANNELS", "COUNTING_STATES", "GuardSettings", "MEMBER_CHANNELS", "Debit", "Excess", "PriorReturn", "Verdict",
    "coverage_allows", "current_due_date", "excess_debits", "reinitiation_allows",
    "AMOUNT_CHANGE_LATE", "AMOUNT_CHANGE_NOTICE_DAYS", "AmountDecision", "amount_change",
]

# Payments that count toward a premium month: paid (mail), or debits not returned or failed (a
# held debit waits for its account's validation and counts as on its way).
COUNTING_STATES = ("pending", "held", "in_file", "sent", "settled", "paid")
# Debits achbatch makes on its own under a standing authorization, and those a member asked for.
AUTOMATIC_CHANNELS = ("autopay", "retry")
MEMBER_CHANNELS = ("portal", "guest", "phone")


@dataclass(frozen=True)
class GuardSettings:
    """What the rules need from settings: the coverage rules (grace periods decide coverage end),
    the reinitiation limits, and the zone of business dates."""

    coverage: CoverageRules = CoverageRules()
    max_reinitiations: int = codes.MAX_REINITIATIONS
    window_days: int = codes.REINITIATION_WINDOW_DAYS
    timezone: str = "America/New_York"
    # A pull above its mandate's authorized amount without 10 days' notice: 'hold' or 'send'
    amount_change_late: str = "hold"

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_settings(cls, settings) -> "GuardSettings":
        return cls(CoverageRules.from_settings(settings.coverage), timezone=settings.origination.timezone,
                   amount_change_late=settings.origination.amount_change_late)


@dataclass(frozen=True)
class Verdict:
    """`ok` False: the debit must not go out; `reason` says why in a sentence."""

    ok: bool
    reason: str = ""


ALLOWED = Verdict(True)


# -- AutoPay: the month currently due --------------------------------------------------------------

def _months_back(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 - n, 12)
    return date(y, m + 1, DUE_DAY)


def current_due_date(run_date: date, lead_banking_days: int = 0) -> date:
    """The due date of the premium AutoPay pulls on `run_date`: the latest due date (the 23rd of a
    month) whose draft date has come. A run that finds a draft date passed while the host was down
    still catches that month up; earlier months are a backlog AutoPay never sweeps (the member
    pays those by portal, phone or mail)."""
    for back in range(-2, 13):
        due = _months_back(run_date, back)
        if autopay_draft_date(due, lead_banking_days) <= run_date:
            return due
    raise ValueError(f"no due date with a draft date on or before {run_date}")  # unreachable for sane leads


def authorized_for(due: date, authorized_on: date) -> Verdict:
    """A mandate covers premiums due on or after the day it was authorized, never earlier ones."""
    if due < authorized_on:
        return Verdict(False, f"premium due {due} is before the AutoPay authorization of {authorized_on}")
    return ALLOWED


# -- coverage that can still exist ----------------------------------------------------------------

def coverage_allows(coverage_month: date, status: str, coverage_ends_on: date | None,
                    first_unpaid_month: date | None) -> Verdict:
    """May an AutoPay pull or re-presentment collect `coverage_month`, given the policy's standing
    on the file date (`batch.collect.coverage.assess_policy`)? Not once its binder lapsed unpaid
    (`not_started`: coverage never starts for the binder month or any later one), nor for a month
    after a terminated policy's coverage end."""
    if status == "not_started" and (first_unpaid_month is None or coverage_month >= first_unpaid_month):
        return Verdict(False, f"coverage never started: the binder for {first_unpaid_month or coverage_month:%Y-%m} "
                              "was not paid in full by its due date (the member re-enrolls)")
    if status == "terminated" and coverage_ends_on is not None and coverage_month > coverage_ends_on:
        return Verdict(False, f"coverage ended {coverage_ends_on}: no AutoPay pull or re-presentment "
                              f"for {coverage_month:%Y-%m}")
    return ALLOWED


# -- the reinitiation limit, per premium month and account ---------------------------------------

@dataclass(frozen=True)
class PriorReturn:
    """An R01/R09 return of a debit for the same premium month and account."""

    returned_on: date  # business date the return was processed
    settled_on: date  # settlement date of the returned entry


def reinitiation_allows(prior: Iterable[PriorReturn], authorized_on: date, settles_on: date,
                        max_reinitiations: int = codes.MAX_REINITIATIONS,
                        window_days: int = codes.REINITIATION_WINDOW_DAYS) -> Verdict:
    """May a debit authorized on `authorized_on`, settling on `settles_on`, go to an account whose
    debits for the same premium month were returned R01/R09 (`prior`)? Returns processed on or
    after the authorization day count against it (a same-day authorization is not taken to be
    newer); an authorization made after the last of them starts over (NR2013 OR28, reference §2.4).
    """
    counted = [r for r in prior if r.returned_on >= authorized_on]
    if not counted:
        return ALLOWED
    if len(counted) >= 1 + max_reinitiations:
        return Verdict(False, f"the original and {max_reinitiations} re-presentments of this premium were returned "
                              f"for funds (last on {max(r.returned_on for r in counted)}): no further debit to this "
                              "account without a new authorization")
    first = min(r.settled_on for r in counted)
    if (settles_on - first).days > window_days:
        return Verdict(False, f"past {window_days} days after the returned entry's settlement on {first}: "
                              "no further debit to this account without a new authorization")
    return ALLOWED


def settlement_of(file_date: date) -> date:
    """The settlement date of a debit in a file of `file_date` (next banking day, reference §3.1)."""
    return effective_entry_date(file_date)


# -- never more in flight than is owed ------------------------------------------------------------

@dataclass(frozen=True)
class Debit:
    """A payment toward one premium month, as the excess rule sees it."""

    id: int
    channel: str
    state: str
    amount_cents: int
    retry_of_id: int | None = None


@dataclass(frozen=True)
class Excess:
    """What to do when a premium month's counting payments exceed its amount due: cancel these
    pending debits (not yet in a file), lower a pending AutoPay pull to the remainder still owed
    (`reduce`: (id, new amount); a pull below the authorized amount needs no notice), and open a
    double-collection review for these others (already in a file, sent or settled: taking the
    money back is finance's decision)."""

    cancel: tuple[int, ...] = ()
    review: tuple[int, ...] = ()
    excess_cents: int = 0
    reduce: tuple[tuple[int, int], ...] = ()


def _cancel_order(d: Debit) -> tuple:
    # Re-presentments first, then AutoPay pulls, then member payments newest first: the debits we
    # make on our own yield to the one the member asked for.
    rank = {"retry": 0, "autopay": 1}.get(d.channel, 2)
    return (rank, -d.id)


def excess_debits(amount_due_cents: int | None, debits: Sequence[Debit], keep: Iterable[int] = ()) -> Excess:
    """For one premium month: which pending debits to cancel, and which others to send to review,
    so that the counting payments add up to no more than is owed. `keep`: payments that stand
    whatever (a payment whose return was just dishonored: it is collected). With no premium on
    record nothing can be judged and nothing changes."""
    if amount_due_cents is None:
        return Excess()
    total = sum(d.amount_cents for d in debits if d.state in COUNTING_STATES)
    over = total - amount_due_cents
    if over <= 0:
        return Excess()
    keep = set(keep)
    cancel: list[int] = []
    reduce: list[tuple[int, int]] = []
    for d in sorted((d for d in debits if d.state == "pending" and d.id not in keep), key=_cancel_order):
        if over <= 0:
            break
        if d.channel == "autopay" and d.amount_cents > over:
            # The pull of the remainder is fine; a re-presentment must carry the original amount.
            reduce.append((d.id, d.amount_cents - over))
            over = 0
            break
        cancel.append(d.id)
        over -= d.amount_cents
    review: list[int] = []
    if over > 0:
        collected = [d for d in debits if d.state in ("in_file", "sent", "settled", "paid") and d.id not in keep]
        for d in sorted(collected, key=lambda d: -d.id):
            if over <= 0:
                break
            review.append(d.id)
            over -= d.amount_cents
    return Excess(tuple(cancel), tuple(review), total - amount_due_cents, tuple(reduce))


# -- recurring debits of varying amount ---------------------------------------------------------------
AMOUNT_CHANGE_NOTICE_DAYS = 10  # NACHA Rules 2.3.2.6 (Reg E 1005.10(d)): notice of a varying amount
AMOUNT_CHANGE_LATE = ("hold", "send")


@dataclass(frozen=True)
class AmountDecision:
    """What an AutoPay pull of `amount` under a mandate that authorized `authorized` does.

    action: 'pull' (at or below the authorized amount, or its first pull: no notice needed),
    'pull_noticed' (above it, the member noticed at least `notice_days` calendar days before the
    settlement date: the authorized amount becomes `amount`), 'send_late' (above it, too late for
    the notice, and the setting accepts it: pulled, the notice goes out now, authorized becomes
    `amount`), 'hold' (above it, too late, the default: no pull, a review item)."""

    action: str
    reason: str = ""
    new_authorized: int | None = None


def amount_change(amount: int, authorized: int | None, settles_on: date, noticed_on: date | None,
                  noticed_cents: int | None, *, notice_days: int = AMOUNT_CHANGE_NOTICE_DAYS,
                  late: str = "hold") -> AmountDecision:
    """The varying-amount rule for one pull (see AmountDecision). `noticed_on`/`noticed_cents`: the
    day an `autopay_amount_change` notice for this premium went out and the amount it named."""
    if authorized is None:
        return AmountDecision("pull", "first pull: its amount is the amount authorized", amount)
    if amount <= authorized:
        return AmountDecision("pull")
    if (noticed_on is not None and noticed_cents is not None and noticed_cents >= amount
            and (settles_on - noticed_on).days >= notice_days):
        return AmountDecision("pull_noticed", f"member noticed on {noticed_on} of the new amount", amount)
    why = (f"pull of {amount} cents is above the {authorized} cents authorized and the member could not be "
           f"noticed {notice_days} calendar days before its settlement on {settles_on}")
    if late == "send":
        return AmountDecision("send_late", why + "; sent anyway (origination.amount_change_late = \"send\")", amount)
    return AmountDecision("hold", why + "; held for review (origination.amount_change_late = \"hold\")")
