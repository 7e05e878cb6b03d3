"""The review queue, the rules: which actions each kind of review item allows, and what each one
does, in words (pure data; `batch.collect.review` carries the decisions out).

- `apply` (`achbatch review resolve ID --action apply --payment N`): the bank's return or NOC entry
  the item came from is applied to payment N, which a person identified, by the same code path as
  an automatic match (batch.collect.returns). Only for items about a bank file's return or NOC
  entry that was NOT applied (no match, a mismatch, a payment in the wrong state).
  `--prenote ID` instead applies it to prenote ID (a WEB account validation entry), as an
  automatic match of that prenote would: only for an entry whose original trace matched no entry
  of ours, or our offset entry (`APPLY_TARGETS`); a trace that is a payment's entry belongs to it.
- `dismiss`: nothing is to be done; the decision and its note are recorded.

A kind not in the table (one added later) allows `dismiss` only.
"""
from __future__ import annotations

from .returns import MISMATCH_KINDS

__all__ = ["ACTIONS", "APPLY", "APPLY_TARGETS", "DISMISS", "MISMATCH_KINDS", "PAYMENT", "PRENOTE", "STATUSES",
           "action_words", "actions_for", "apply_targets", "kind_words"]

APPLY = "apply"
DISMISS = "dismiss"
PAYMENT = "payment"  # `apply --payment N`
PRENOTE = "prenote"  # `apply --prenote ID`
STATUSES = ("open", "resolved", "all")  # the `review list --status` filter

# kind -> the actions it allows
ACTIONS: dict[str, tuple[str, ...]] = {
    # an entry of a bank file that was not applied: a person may match it to a payment
    "unknown_trace": (APPLY, DISMISS),
    "offset_entry": (APPLY, DISMISS),
    "amount_mismatch": (APPLY, DISMISS),
    "account_mismatch": (APPLY, DISMISS),
    "duplicate_return": (APPLY, DISMISS),
    "no_prior_return": (APPLY, DISMISS),
    # nothing to apply: a forward entry, a code we must not act on, a NOC we cannot apply
    "not_return_or_noc": (DISMISS,),
    "unknown_return_code": (DISMISS,),
    "code_not_effective": (DISMISS,),
    "noc_for_review": (DISMISS,),
    "noc_rejected": (DISMISS,),
    # already applied automatically; the item asks what follows
    "format_error": (DISMISS,),
    "return_for_review": (DISMISS,),
    # about payments or the bank statement, not a bank file's entry
    "double_collection": (DISMISS,),
    "debit_stopped": (DISMISS,),
    "bank_unmatched": (DISMISS,),
    "autopay_amount_change": (DISMISS,),
    "validation_hold": (DISMISS,),
}

# kind -> what `apply` may apply the bank's entry to. A prenote only where the entry's original trace
# matched nothing usable (the bank changed it, or named our offset entry): a trace of a payment's
# entry is that payment's, and a dishonor or contest answers a live return, never a prenote.
APPLY_TARGETS: dict[str, tuple[str, ...]] = {
    "unknown_trace": (PAYMENT, PRENOTE),
    "offset_entry": (PAYMENT, PRENOTE),
    "amount_mismatch": (PAYMENT,),
    "account_mismatch": (PAYMENT,),
    "duplicate_return": (PAYMENT,),
    "no_prior_return": (PAYMENT,),
}

# kind -> what the item is, in a few words (for lists and reports)
_KIND_WORDS: dict[str, str] = {
    "unknown_trace": "no entry of ours has the original trace number",
    "offset_entry": "names our own settlement offset entry",
    "amount_mismatch": "amount differs from the entry we sent",
    "account_mismatch": "account differs from the entry we sent",
    "duplicate_return": "the payment is already returned or failed",
    "no_prior_return": "dishonor or contest with no return to act on",
    "not_return_or_noc": "neither a return nor a NOC",
    "unknown_return_code": "return code not in our table",
    "code_not_effective": "return code not in effect yet",
    "noc_for_review": "NOC we do not apply automatically",
    "noc_rejected": "NOC whose corrected data cannot be stored",
    "format_error": "return for a faulty entry of ours",
    "return_for_review": "return whose follow-up a person decides",
    "double_collection": "premium month collected twice",
    "debit_stopped": "member payment stopped to avoid overcollection",
    "validation_hold": "held for account validation past its due date",
    "bank_unmatched": "bank statement item we cannot explain",
    "autopay_amount_change": "AutoPay pull above the authorized amount held (no 10 days' notice)",
}


def actions_for(kind: str) -> tuple[str, ...]:
    """The actions a review item of `kind` allows (`dismiss` only for a kind not in the table)."""
    return ACTIONS.get(kind, (DISMISS,))


def apply_targets(kind: str) -> tuple[str, ...]:
    """What `apply` may name for an item of `kind` (`payment`, `prenote`); none when it allows no apply."""
    return APPLY_TARGETS.get(kind, ()) if APPLY in actions_for(kind) else ()


def kind_words(kind: str) -> str:
    return _KIND_WORDS.get(kind, kind.replace("_", " "))


def action_words(kind: str, action: str, *, is_noc: bool = False) -> str:
    """What `action` would do to an item of `kind`, in a sentence."""
    if action == DISMISS:
        if kind == "double_collection":
            return ("record that nothing is to be done (a refund, if any, is made outside achbatch); "
                    "the returns report stops warning about it")
        return "record that nothing is to be done; no payment, account or mandate changes"
    if action == APPLY:
        what = "the NOC corrects the payment's bank account (audited)" if is_noc else (
            "the return takes effect on payment N exactly as an automatic match would: its state, a "
            "re-presentment for R01/R09, the account blocked or the AutoPay authorization revoked as the "
            "code says, then coverage re-assessed and the member's notice written")
        words = (f"--payment N: {what}. Refused when N's amount or account differs from the bank's entry "
                 "(unless --force, recorded), and always when N's state forbids it (already returned, "
                 "a re-presentment still open)")
        if PRENOTE in apply_targets(kind):
            prenote = ("the NOC corrects the prenote's account, which then counts as validated" if is_noc else
                       "the return blocks the prenote's account with its reason: AutoPay on it suspended, its held "
                       "and pending payments failed, the member's notice written")
            words += (f". Or --prenote ID: {prenote}, exactly as an automatic match of the prenote would. Refused "
                      "when its amount (a prenote is $0.00), account or trace prefix differs (unless --force, "
                      "recorded), and always when the prenote was never sent or is already returned, the trace is "
                      "another entry's of ours, or the code is not a return")
        return words
    return f"{action}: not an action"
