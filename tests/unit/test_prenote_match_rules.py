"""The pure rules of a person's match of a bank entry to a prenote (`review resolve N --action
apply --prenote ID`): which review kinds allow it (batch/rules/review.py) and why an entry does not
fit a prenote (batch/rules/returns.prenote_match_problems)."""
from __future__ import annotations

import pytest

from batch.rules import review as R
from batch.rules.returns import PrenoteRefusal, prenote_match_problems

TRACE = "011000010000042"  # our prenote's entry


def problems(record="return", code="R03", *, state="in_file", prenote_trace=TRACE, original=TRACE[:8] + "9999999",
             owner=None, amount=0, account=None):
    return prenote_match_problems(record, code, prenote_id=7, prenote_state=state, prenote_trace=prenote_trace,
                                  original_trace=original, trace_owner=owner, amount_cents=amount, account=account)


def test_apply_targets():
    assert R.apply_targets("unknown_trace") == (R.PAYMENT, R.PRENOTE)
    assert R.apply_targets("offset_entry") == (R.PAYMENT, R.PRENOTE)
    for kind in ("amount_mismatch", "account_mismatch", "duplicate_return", "no_prior_return"):
        assert R.apply_targets(kind) == (R.PAYMENT,), kind
    for kind in ("return_for_review", "validation_hold", "some_later_kind"):
        assert R.apply_targets(kind) == (), kind
    # every kind that allows apply names its targets
    assert {k for k, a in R.ACTIONS.items() if R.APPLY in a} == set(R.APPLY_TARGETS)
    assert "--prenote ID" in R.action_words("unknown_trace", R.APPLY)
    assert "--prenote" not in R.action_words("amount_mismatch", R.APPLY)
    assert "validated" in R.action_words("offset_entry", R.APPLY, is_noc=True)


@pytest.mark.parametrize("record, code, state", [("return", "R03", "in_file"), ("return", "R02", "validated"),
                                                 ("noc", "C01", "in_file"), ("noc", "C03", "corrected")])
def test_an_answer_that_fits(record, code, state):
    assert problems(record, code, state=state) == []


def test_never_sent():
    assert problems(prenote_trace=None, state="pending") == [PrenoteRefusal(
        "not_sent", "prenote #7 (pending) was never sent in a NACHA file: there is no entry of ours to return or "
                    "correct")]


@pytest.mark.parametrize("kwargs, kind, words", [
    ({"state": "returned"}, "prenote_returned", "prenote #7 is already returned"),
    ({"record": "noc", "code": "C01", "state": "returned"}, "prenote_returned", "a NOC cannot validate it"),
    ({"code": "R68"}, "return_for_review", "R68 is a dishonored return, not a return"),
    ({"code": "R98"}, "return_for_review", "R98 is a return code our tables do not know"),
    ({"owner": "payment #5", "original": "011000010000005"}, "trace_mismatch",
     "the bank's original trace 011000010000005 is payment #5's entry, not prenote #7's (011000010000042)"),
])
def test_state_rules_are_never_overridable(kwargs, kind, words):
    first = problems(**kwargs)[0]
    assert (first.kind, first.overridable) == (kind, False) and words in first.reason


@pytest.mark.parametrize("kwargs, kind, words", [
    ({"original": "091000019999999"}, "trace_mismatch", "does not start with our ODFI 01100001"),
    ({"amount": 1234}, "amount_mismatch", "carries $12.34; a prenote is zero dollars"),
    ({"account": "the account number returned is not the account we debited"}, "account_mismatch",
     "the account number returned is not the account we debited"),
])
def test_mismatches_are_overridable(kwargs, kind, words):
    (p,) = problems(**kwargs)
    assert (p.kind, p.overridable, p.reason.endswith(words) or words in p.reason) == (kind, True, True)


def test_state_rules_come_before_what_force_may_override():
    got = problems(state="returned", amount=5, account="differs")
    assert [(p.kind, p.overridable) for p in got] == [
        ("prenote_returned", False), ("amount_mismatch", True), ("account_mismatch", True)]
