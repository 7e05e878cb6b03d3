"""What an AutoPay night leaves behind, to compare the set-based pass with the per-row path
(batch/collect/autopay.py): the pulls, the mandates' authorized amounts, the events and review
items, and the result's counts."""
from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select

from batch.store.models import AutopayMandate, Payment, PaymentEvent, ReviewItem

# Fields of AutopayResult both paths must agree on (`judged` and `pulls` are the set-based pass's own).
COMPARED = ("due_date", "created", "created_cents", "already_scheduled", "covered", "not_due_yet", "account_blocked",
            "not_authorized", "refused", "amount_held", "amount_sent_late", "refusals")


def outcome(result) -> dict:
    d = asdict(result)
    return {k: d[k] for k in COMPARED}


def snapshot(sessions, after_payment_id: int = 0) -> dict:
    """The rows a night of AutoPay scheduling wrote (payments above `after_payment_id`), by their
    natural keys (not ids: the two runs need not number rows alike)."""
    P = Payment
    with sessions() as s:
        pays = s.execute(select(P.confirmation_id, P.channel, P.member_id, P.plan_id, P.coverage_month, P.premium_id,
                                P.amount_cents, P.bank_account_id, P.submitted_at, P.sec_code, P.payment_type_code,
                                P.originate_on, P.state, P.autopay_premium_id, P.retry_of_id, P.retry_number)
                         .where(P.id > after_payment_id).order_by(P.confirmation_id)).all()
        mandates = s.execute(select(AutopayMandate.id, AutopayMandate.authorized_amount_cents)
                             .order_by(AutopayMandate.id)).all()
        events = s.execute(select(P.confirmation_id, PaymentEvent.event, PaymentEvent.old_state, PaymentEvent.new_state,
                                  PaymentEvent.reason, PaymentEvent.occurred_on)
                           .join(P, P.id == PaymentEvent.payment_id).where(P.id > after_payment_id)
                           .order_by(P.confirmation_id, PaymentEvent.event)).all()
        reviews = s.execute(select(ReviewItem.kind, ReviewItem.dedupe_key, ReviewItem.amount_cents,
                                   ReviewItem.expected_amount_cents, ReviewItem.detail, ReviewItem.status,
                                   P.confirmation_id)
                            .join(P, P.id == ReviewItem.payment_id).where(P.id > after_payment_id)
                            .order_by(ReviewItem.dedupe_key)).all()
    return {"payments": [tuple(r) for r in pays], "mandates": [tuple(r) for r in mandates],
            "events": [tuple(r) for r in events], "reviews": [tuple(r) for r in reviews]}
