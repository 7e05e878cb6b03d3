"""The validation pass's set-based prenote request (one INSERT ... SELECT, issue 17) against the
rule written out row by row in Python: random ledgers of accounts, mandates, payments and open
prenotes must ask for the same prenotes (account, member, payment type, reason) and mark the same
accounts pending, under `first_use = "hold"` and `"send"`; on SQLite and PostgreSQL."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from batch.collect import validation
from batch.rules.validation import FIRST_USE_CHANNELS, ValidationPolicy
from batch.store.models import AutopayMandate, BankAccount, Payment, Prenote

FILE_DATE = date(2026, 12, 1)
NOW = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
SEC = {"portal": "WEB", "guest": "WEB", "autopay": "WEB", "phone": "TEL", "retry": "WEB"}


def _ledger(s, keyring, rng: random.Random, tag: str) -> None:
    accounts = []
    for i in range(rng.randint(6, 20)):
        number = f"{5100000000 + i * 7919 + rng.randint(0, 999)}"
        ba = BankAccount(routing_number="021000021", account_number_enc=keyring.encrypt_account(number),
                         account_hash=keyring.account_hash("021000021", f"{tag}{number}"), last4=number[-4:],
                         account_type=rng.choice(("checking", "savings")), holder_name=f"HOLDER {i}",
                         status=rng.choice(("active", "active", "active", "blocked")),
                         validation_result=rng.choice(("unvalidated",) * 4 + ("pending", "valid", "invalid")))
        s.add(ba)
        accounts.append(ba)
    s.flush()
    for ba in accounts:
        if rng.random() < 0.25:
            s.add(Prenote(bank_account_id=ba.id, member_id="OLD", sec_code="WEB", payment_type_code="S",
                          reason="earlier", state=rng.choice(("pending", "in_file", "validated", "returned",
                                                              "cancelled")),
                          requested_on=FILE_DATE - timedelta(days=5)))
    for j in range(rng.randint(1, 8)):
        member = f"{tag}A{j}"
        status = rng.choice(("active", "active", "active", "suspended", "revoked"))
        s.add(AutopayMandate(member_id=member, plan_id="HLTH-1", bank_account_id=rng.choice(accounts).id,
                             channel=rng.choice(("web", "web", "paper")), authorized_at=NOW, status=status,
                             active_key=None if status == "revoked" else AutopayMandate.key_for(member, "HLTH-1"),
                             ended_at=NOW if status == "revoked" else None))
    for k in range(rng.randint(2, 24)):
        channel = rng.choice(("portal", "guest", "autopay", "phone", "retry"))  # mail: no account
        sec = SEC[channel] if rng.random() < 0.85 else rng.choice(("WEB", "PPD", "TEL"))
        s.add(Payment(confirmation_id=f"{tag}-{k}", channel=channel, member_id=f"{tag}M{k % 5}", plan_id="HLTH-1",
                      coverage_month=date(2027, 1, 1), amount_cents=1000 + k, bank_account_id=rng.choice(accounts).id,
                      submitted_at=NOW, sec_code=sec, payment_type_code=rng.choice(("S", "R", "")),
                      originate_on=FILE_DATE + timedelta(days=rng.choice((-2, 0, 3, 5))),
                      state=rng.choice(("pending", "pending", "held", "in_file", "sent", "settled", "returned",
                                        "failed"))))
    s.flush()


def _expected(s, policy: ValidationPolicy) -> tuple[set, set]:
    """The rule, one row at a time: the prenotes to ask for and the accounts to mark pending."""
    accounts = {a.id: a for a in s.scalars(select(BankAccount))}
    open_ = {p.bank_account_id for p in s.scalars(select(Prenote)) if p.state in ("pending", "in_file")}
    usable = {i for i, a in accounts.items()
              if a.status == "active" and a.validation_result == "unvalidated" and i not in open_}
    wanted: dict[int, tuple] = {}
    for m in s.scalars(select(AutopayMandate).order_by(AutopayMandate.id)):
        if m.channel == "web" and m.status == "active" and m.bank_account_id in usable:
            wanted.setdefault(m.bank_account_id, (m.member_id, "R", "first use by a WEB AutoPay mandate"))
    going = set()
    payments = list(s.scalars(select(Payment).order_by(Payment.id)))
    for p in payments:
        if (p.sec_code == "WEB" and p.channel in FIRST_USE_CHANNELS and p.state in ("pending", "held")
                and p.bank_account_id in usable):
            if p.originate_on <= FILE_DATE:
                going.add(p.bank_account_id)
            wanted.setdefault(p.bank_account_id, (p.member_id, p.payment_type_code or "S",
                                                  f"first use by a {p.channel} payment"))
    if not policy.holds:
        going |= {p.bank_account_id for p in payments if p.state in ("in_file", "sent", "settled")}
        wanted = {a: w for a, w in wanted.items() if a not in going}
    return {(a, *w) for a, w in wanted.items()}, set(wanted)


def _actual(s) -> tuple[set, set]:
    new = {(p.bank_account_id, p.member_id, p.payment_type_code, p.reason)
           for p in s.scalars(select(Prenote).where(Prenote.requested_on == FILE_DATE))}
    for p in s.scalars(select(Prenote).where(Prenote.requested_on == FILE_DATE)):
        assert (p.sec_code, p.state) == ("WEB", "pending")
    pending = {a.id for a in s.scalars(select(BankAccount).where(BankAccount.validation_method == "prenote"))}
    return new, pending


@pytest.mark.parametrize("first_use", ["hold", "send"])
def test_set_based_prenote_request_agrees_with_the_rule_row_by_row(sessions, keyring, first_use):
    policy = ValidationPolicy(first_use=first_use)
    rng = random.Random(f"prenotes-{first_use}")
    reasons = set()
    for case in range(60):
        with sessions() as s:
            _ledger(s, keyring, rng, f"c{case}{first_use[0]}")
            want_prenotes, want_pending = _expected(s, policy)
            before = {a.id: a.validation_result for a in s.scalars(select(BankAccount))}
            out = validation.ValidationOutcome()
            validation._request_prenotes(s.connection(), FILE_DATE, policy, NOW, out)
            s.expire_all()
            got_prenotes, got_pending = _actual(s)
            assert got_prenotes == want_prenotes, f"case {case}"
            assert got_pending == want_pending, f"case {case}"
            assert out.prenotes_requested == len(want_prenotes)
            after = {a.id: a.validation_result for a in s.scalars(select(BankAccount))}
            assert {i for i in after if after[i] != before[i]} == want_pending
            assert all(after[i] == "pending" for i in want_pending)
            reasons |= {w[3] for w in want_prenotes}
            s.rollback()
    # the random ledgers asked for prenotes of every kind
    assert reasons == {"first use by a WEB AutoPay mandate", "first use by a portal payment",
                       "first use by a guest payment", "first use by a autopay payment"}
