"""What a debit carries because of the channel it came through: its SEC code and payment type code
(the one table; DESIGN.md "The rules it must get right", NACHA WEB, PPD and TEL rules, reference §1)
and, for the debits achbatch makes itself, its confirmation id."""
from __future__ import annotations

__all__ = [
    "AUTOPAY_CONFIRMATION_PREFIX", "MANDATE_SEC", "PAYMENT_SEC", "RESERVED_CONFIRMATION_PREFIXES",
    "RETRY_CONFIRMATION_PREFIX", "autopay_confirmation_id", "sec_for_mandate", "sec_for_payment",
]

# Confirmation ids achbatch makes itself; the portal's ids must not collide with them.
AUTOPAY_CONFIRMATION_PREFIX = "AP-"  # AP-<premium id>
RETRY_CONFIRMATION_PREFIX = "RT-"  # RT-<first payment id>-<n>: made in SQL by batch/collect/returns.py
RESERVED_CONFIRMATION_PREFIXES = (AUTOPAY_CONFIRMATION_PREFIX, RETRY_CONFIRMATION_PREFIX)

# One-time payments (the portal's export), by payments.channel. A mailed check or money order is
# never debited: no SEC code.
PAYMENT_SEC: dict[str, tuple[str | None, str]] = {
    "portal": ("WEB", "S"),  # authorized online, single entry
    "guest": ("WEB", "S"),
    "phone": ("TEL", "S"),  # authorized by telephone, single entry
    "mail": (None, ""),
}

# AutoPay pulls, by the channel the mandate was signed through (autopay_mandates.channel).
MANDATE_SEC: dict[str, tuple[str, str]] = {
    "web": ("WEB", "R"),  # enrolled online: a recurring WEB entry
    "paper": ("PPD", ""),  # a signed paper form: PPD, which has no payment type code
}


def sec_for_payment(channel: str) -> tuple[str | None, str]:
    """(SEC code, payment type code) of a one-time payment's debit."""
    return PAYMENT_SEC[channel]


def sec_for_mandate(channel: str) -> tuple[str, str]:
    """(SEC code, payment type code) of an AutoPay pull under a mandate signed through `channel`."""
    return MANDATE_SEC[channel]


def autopay_confirmation_id(premium_id: int) -> str:
    """The deterministic confirmation id of the AutoPay pull for a premium."""
    return f"{AUTOPAY_CONFIRMATION_PREFIX}{premium_id}"
