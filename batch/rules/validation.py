"""WEB debit account validation (NACHA WEB rule, in force since 2021-03-19): an Originator's fraud
screening of WEB debits includes validating the account for its first use and for each change to
it. Pure: plain values and dates (docs/validation.md).

  * An account is validated by a prenote (zero-dollar entry, code 28 checking / 38 savings, the
    SEC code the live debits will use) with no return by `prenote_wait_banking_days` banking days
    after its settlement date (`prenote_valid_from`); by a NOC answering the prenote (the account
    is corrected and counts as validated); or by a live debit that cleared (settlement + 2 banking
    days with no return: `premium_calendar.cleared_on`).
  * A return of the prenote blocks the account with its reason.
  * Only WEB debits need it: PPD (paper AutoPay) and TEL (phone) debits follow their own rules; a
    re-presentment reuses an account already debited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from nacha.calendar import add_banking_days, effective_entry_date

__all__ = ["FIRST_USE_CHANNELS", "ValidationPolicy", "expected_release", "misses_due_date", "needs_validation",
           "prenote_valid_from"]

# The channels whose debits are WEB first uses of an account a member gave us online.
FIRST_USE_CHANNELS = ("portal", "guest", "autopay")
NACHA_PRENOTE_WAIT = 3  # banking days after the prenote's settlement date (NACHA OR: at least 3)


@dataclass(frozen=True)
class ValidationPolicy:
    """`[validation]`: `method` "prenote" | "none"; `first_use` "hold" | "send"."""

    method: str = "prenote"
    first_use: str = "hold"
    prenote_wait_banking_days: int = NACHA_PRENOTE_WAIT

    def __post_init__(self) -> None:
        if self.method not in ("prenote", "none"):
            raise ValueError(f"validation method {self.method!r}: \"prenote\" or \"none\"")
        if self.first_use not in ("hold", "send"):
            raise ValueError(f"validation first_use {self.first_use!r}: \"hold\" or \"send\"")
        if self.prenote_wait_banking_days < NACHA_PRENOTE_WAIT:
            raise ValueError(f"prenote_wait_banking_days is at least {NACHA_PRENOTE_WAIT}")

    @property
    def active(self) -> bool:
        return self.method == "prenote"

    @property
    def holds(self) -> bool:
        return self.active and self.first_use == "hold"

    @classmethod
    def from_settings(cls, v) -> "ValidationPolicy":
        return cls(v.method, v.first_use, v.prenote_wait_banking_days)


def needs_validation(channel: str, sec_code: str | None) -> bool:
    """Whether a debit of this channel and SEC code is a WEB first use that needs a validated account."""
    return sec_code == "WEB" and channel in FIRST_USE_CHANNELS


def prenote_valid_from(settlement_date: date, wait_banking_days: int = NACHA_PRENOTE_WAIT) -> date:
    """The first banking day live entries may follow a prenote settled on `settlement_date`."""
    return add_banking_days(settlement_date, wait_banking_days)


def expected_release(file_date: date, prenote_valid: date | None, wait_banking_days: int) -> date:
    """When a held payment can go out: its account's prenote's `valid_from`, or, for a prenote not
    in a file yet, that of a prenote sent in tonight's file."""
    if prenote_valid is not None:
        return prenote_valid
    return prenote_valid_from(effective_entry_date(file_date), wait_banking_days)


def misses_due_date(release_on: date, due_date: date | None) -> bool:
    """Whether a payment released (originated) on `release_on` settles after the premium's due date."""
    return due_date is not None and effective_entry_date(release_on) > due_date
