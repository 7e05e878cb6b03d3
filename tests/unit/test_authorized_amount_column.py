"""The AutoPay CSV's optional column `authorized_amount_cents` (issue 16, recurring debits of
varying amount): a whole positive number of cents, the most the member authorized per pull. Absent
or empty: None (the first pull sets it, as before)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from batch.collect.imports import HEADERS, OPTIONAL_HEADERS, RowError, columns_of, parse_autopay_row, parse_cents

NY = ZoneInfo("America/New_York")
ROW = {"member_id": "M1", "plan_id": "P1", "routing_number": "011000015", "account_number": "4004001234",
       "account_type": "checking", "account_holder": "Avery Sample", "authorized_at": "2026-12-01",
       "channel": "web"}


@pytest.mark.parametrize("text, cents", [("12500", 12500), ("1", 1), ("0012500", 12500),
                                         ("9999999999", 99_999_999_99), ("", None)])
def test_cents_accepted(text, cents):
    assert parse_cents(text, "authorized_amount_cents") == cents


@pytest.mark.parametrize("text, words", [
    ("0", "must be more than 0"),
    ("-100", "is negative (-100)"),
    ("125.00", "must be a whole number of cents (12500 is $125.00), got '125.00'"),
    ("$125", "must be a whole number of cents"),
    ("1,000", "must be a whole number of cents"),
    ("1e4", "must be a whole number of cents"),
    ("10000000000", "more than a NACHA entry can carry"),
    ("9" * 5000, "more than a NACHA entry can carry"),  # no int() of 5000 digits
    ("١٢٣", "must be a whole number of cents"),  # Arabic-Indic digits are not ASCII digits
])
def test_cents_rejected_with_the_reason(text, words):
    with pytest.raises(RowError) as e:
        parse_cents(text, "authorized_amount_cents")
    assert str(e.value).startswith("authorized_amount_cents ")
    assert words in str(e.value)


def test_the_row_carries_it_when_given_and_none_when_absent_or_empty():
    assert parse_autopay_row(ROW, NY).authorized_amount_cents is None  # an old file: no such column
    assert parse_autopay_row({**ROW, "authorized_amount_cents": ""}, NY).authorized_amount_cents is None
    assert parse_autopay_row({**ROW, "authorized_amount_cents": "15000"}, NY).authorized_amount_cents == 15000
    with pytest.raises(RowError, match="^authorized_amount_cents must be more than 0$"):
        parse_autopay_row({**ROW, "authorized_amount_cents": "0"}, NY)


def test_the_column_is_optional_and_after_the_contract_columns():
    assert "authorized_amount_cents" not in HEADERS["autopay"]  # the contract header is unchanged
    assert OPTIONAL_HEADERS["autopay"] == ("authorized_amount_cents",)
    assert columns_of("autopay") == HEADERS["autopay"] + ("authorized_amount_cents",)
    assert columns_of("payments") == HEADERS["payments"]
