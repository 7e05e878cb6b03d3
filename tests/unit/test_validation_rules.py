"""WEB account validation, the pure rules (batch/rules/validation.py) and the `[validation]` settings."""
from __future__ import annotations

from datetime import date

import pytest

from batch.config import Settings
from batch.rules.validation import ValidationPolicy, expected_release, misses_due_date, needs_validation, prenote_valid_from


def test_defaults_prenote_and_hold_with_three_banking_days():
    v = Settings().validation
    assert (v.method, v.first_use, v.prenote_wait_banking_days) == ("prenote", "hold", 3)
    p = ValidationPolicy.from_settings(v)
    assert p.active and p.holds
    assert not ValidationPolicy(first_use="send").holds and not ValidationPolicy(method="none").active


@pytest.mark.parametrize("section, field", [({"method": "micro"}, "method"), ({"first_use": "later"}, "first_use"),
                                            ({"prenote_wait_banking_days": 2}, "prenote_wait_banking_days")])
def test_bad_settings_are_refused(section, field):
    with pytest.raises(ValueError, match=field):
        Settings.model_validate({"validation": section})


def test_only_web_first_uses_need_validation():
    assert needs_validation("portal", "WEB") and needs_validation("guest", "WEB") and needs_validation("autopay", "WEB")
    assert not needs_validation("autopay", "PPD") and not needs_validation("phone", "TEL")
    assert not needs_validation("retry", "WEB")  # a re-presentment reuses an account already debited


def test_live_entries_wait_three_banking_days_after_the_prenote_settled():
    assert prenote_valid_from(date(2026, 12, 2)) == date(2026, 12, 7)  # Wed -> Mon (weekend skipped)
    assert prenote_valid_from(date(2026, 12, 23)) == date(2026, 12, 29)  # Christmas is not a banking day
    assert prenote_valid_from(date(2026, 12, 2), 5) == date(2026, 12, 9)
    # a prenote not in a file yet: as if it went out in tonight's file (effective the next banking day)
    assert expected_release(date(2026, 12, 1), None, 3) == date(2026, 12, 7)
    assert expected_release(date(2026, 12, 1), date(2026, 12, 10), 3) == date(2026, 12, 10)


def test_a_release_misses_the_due_date_when_it_settles_after_it():
    assert misses_due_date(date(2026, 12, 7), date(2026, 12, 7))  # released Monday settles Tuesday
    assert not misses_due_date(date(2026, 12, 7), date(2026, 12, 8))
    assert not misses_due_date(date(2026, 12, 7), None)
