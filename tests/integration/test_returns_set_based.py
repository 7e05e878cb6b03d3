"""The set-based coverage voucher of return processing (batch/collect/returns.py,
`_Applier._verdicts_set_based`, and its SQL, `coverage.policies_past_due_unclear`) against the path
that asks the pure rules about every re-presentment (`process_return_file(..., set_based=False)`):
random ledgers of several policies (premiums past and due, binders, payments of every channel and
state, paid on time, late or in part, earlier R01 returns of the same premium month and account,
authorizations old and new), each with a payment returned R01 or R09 by a bank file processed on a
random day, applied both ways on the same data, must leave the same payments, re-presentments,
returns, events, review items and counts. The SQL is also checked against the rule itself: a policy
it vouches for is one `assess_policy` finds in a standing where `coverage_allows` allows every
month."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from batch.collect.coverage import assess_policy, policies_past_due_unclear, policy_facts
from batch.collect.debit_guard import GuardSettings
from batch.collect.returns import ReturnPolicy, process_return_file, retry_date
from batch.rules import debit_rules
from batch.rules.coverage import CoverageRules
from batch.store.models import (
    AccountChange, AutopayMandate, BankAccount, FileEntry, NachaFile, Payment, PaymentEvent, PaymentReturn, ReturnFile,
    ReturnFileContent, ReviewItem,
)
from nacha.layouts import ADDENDA_99, BATCH_HEADER, ENTRY_WEB, FILE_HEADER
from nacha.routing import check_digit
from nacha.writer import write_file

from test_autopay_set_based import MONTHS, PLAN, _build, policy

JAN = date(2027, 1, 1)
ODFI = "011000015"
RDFI = "02100002"
ROUTING = "011000015"  # the accounts' routing number (test_autopay_set_based._build)
FILE_DAY = date(2026, 12, 1)  # the NACHA file that carried the payments now returned


def _account(i: int) -> str:
    return f"1234567{i}"  # as test_autopay_set_based._build encrypts it


@st.composite
def returned(draw, i: int):
    """Policy i's January payment that the bank returns: its channel, amount, authorization hour
    (from 2026-12-23 00:00 UTC), code, and the earlier R01 returns of January on the same account
    (each: days from 2026-11-01 of its file, days after it of its return, and whether it was an
    earlier try of the same payment (the returned one is then its re-presentment) or another
    payment of the month)."""
    channel = draw(st.sampled_from(["portal", "phone", "autopay"]))
    cents = draw(st.sampled_from([5000, 10000, 20000, 25000]))
    hours = draw(st.integers(-24 * 60, 24 * 20))
    code = draw(st.sampled_from(["R01", "R01", "R09"]))
    prior = draw(st.lists(st.tuples(st.integers(0, 25), st.integers(2, 20), st.booleans()), max_size=3))
    return channel, cents, hours, code, prior


@st.composite
def simple(draw, i: int):
    """A policy with nothing past due but, perhaps, December paid on time: the SQL vouches for it
    (until January is past due, or a payment of it returned then)."""
    premiums = [(JAN, draw(st.sampled_from([10000, 20000, 25000])), False, draw(st.sampled_from(["none", "aptc"])))]
    payments = []
    if draw(st.booleans()):
        premiums.insert(0, (date(2026, 12, 1), 10000, False, "none"))
        payments.append((date(2026, 12, 1), "portal", "settled", 80, 10, 10000))
    return i, premiums, ("active", "web", draw(st.integers(-24 * 80, 24 * 3)), None), payments, None, False


def _clear(s) -> None:
    for table in (ReturnFileContent, ReviewItem, AccountChange, PaymentReturn, ReturnFile, PaymentEvent, FileEntry,
                  NachaFile):
        s.execute(delete(table))


def _ledger(sessions, keyring, policies, returns) -> list[tuple[str, int, str, str]]:
    """The policies' ledgers (test_autopay_set_based._build), then each one's January payment in
    the file of FILE_DAY (and its earlier returned tries in files of November): the bank's
    returns to write, (original trace, cents, code, account number)."""
    with sessions() as s, s.begin():
        _clear(s)
    _build(sessions, keyring, policies)
    out = []
    with sessions() as s, s.begin():
        files: dict[date, NachaFile] = {}

        def nacha_file(day: date) -> NachaFile:
            if day not in files:
                f = NachaFile(file_date=day, file_id_modifier="A", file_name=f"ACH-{day:%Y%m%d}-A.ach",
                              sha256="0" * 64, batch_count=1, entry_count=1, total_debit_cents=0,
                              total_credit_cents=0, state="sent")
                s.add(f)
                s.flush()
                files[day] = f
            return files[day]

        rf = ReturnFile(sha256="1" * 64, file_name="earlier.ach", status="applied", processed_on=date(2026, 11, 1),
                        returns=0, nocs=0, applied=0, review_items=0)
        s.add(rf)
        s.flush()
        seq = iter(range(1, 10**6))
        for (i, *_rest), (channel, cents, hours, code, prior) in zip(policies, returns):
            member = f"M{i}"
            acct = s.scalar(select(BankAccount.id).where(BankAccount.holder_name == "Avery Sample")
                            .where(BankAccount.last4 == f"567{i}"))
            mandate = s.scalar(select(AutopayMandate).where(AutopayMandate.member_id == member))
            at = datetime(2026, 12, 23, tzinfo=timezone.utc) + timedelta(hours=hours)
            if channel == "autopay" and mandate is not None:
                mandate.authorized_at = at
            root, tries = None, 0
            for k, (file_day, after, chained) in enumerate(sorted(prior)):
                day = date(2026, 11, 1) + timedelta(days=file_day)
                retry = chained and root is not None
                p = Payment(confirmation_id=f"P{i}-{k}", channel="retry" if retry else channel if chained else "portal",
                            member_id=member, plan_id=PLAN, coverage_month=JAN, amount_cents=cents,
                            bank_account_id=acct, submitted_at=at, sec_code="WEB", payment_type_code="S",
                            originate_on=day, state="returned", retry_of_id=root.id if retry else None,
                            retry_number=tries if retry else 0)
                s.add(p)
                s.flush()
                if chained:
                    root, tries = root or p, tries + 1
                fe = FileEntry(file_id=nacha_file(day).id, batch_number=1, trace_number=f"{ODFI[:8]}{next(seq):07d}",
                               payment_id=p.id, amount_cents=cents, transaction_code="27", sec_code="WEB")
                s.add(fe)
                s.flush()
                s.add(PaymentReturn(return_file_id=rf.id, line=next(seq), payment_id=p.id, file_entry_id=fe.id,
                                    original_trace_number=fe.trace_number, return_trace_number=f"{RDFI}{k:07d}",
                                    return_code="R01", return_title="Insufficient Funds", category="funds",
                                    disposition="retry_funds", kind="return", status="applied", amount_cents=cents,
                                    returned_on=day + timedelta(days=after), action="earlier"))
            p = Payment(confirmation_id=f"J{i}", channel="retry" if root else channel, member_id=member, plan_id=PLAN,
                        coverage_month=JAN, amount_cents=cents, bank_account_id=acct, submitted_at=at,
                        sec_code="WEB", payment_type_code="S", originate_on=FILE_DAY, state="in_file",
                        retry_of_id=root.id if root else None, retry_number=tries)
            s.add(p)
            s.flush()
            trace = f"{ODFI[:8]}{next(seq):07d}"
            s.add(FileEntry(file_id=nacha_file(FILE_DAY).id, batch_number=1, trace_number=trace, payment_id=p.id,
                            amount_cents=cents, transaction_code="27", sec_code="WEB"))
            out.append((trace, cents, code, _account(i)))
    return out


def _bank_file(path, entries, created: date) -> None:
    seq = iter(range(1, 10**6))

    def items():
        for trace, cents, code, account in entries:
            own = f"{RDFI}{next(seq):07d}"
            rec = ENTRY_WEB.make(transaction_code="26", receiving_dfi_identification=ODFI[:8], check_digit=ODFI[8],
                                 dfi_account_number=account, amount=cents, individual_identification_number="M",
                                 individual_name="AVERY SAMPLE", payment_type_code="S", trace_number=own)
            add = ADDENDA_99.make(return_reason_code=code, original_entry_trace_number=trace,
                                  original_receiving_dfi_identification=ROUTING[:8], trace_number=own)
            yield rec, [add]

    header = FILE_HEADER.make(immediate_destination=" " + ODFI, immediate_origin=" " + RDFI + check_digit(RDFI),
                              file_creation_date=created.strftime("%y%m%d"), file_creation_time="0600",
                              file_id_modifier="A", immediate_destination_name="HEALTH CONNECTOR",
                              immediate_origin_name="SIMULATED BANK")
    batch = BATCH_HEADER.make(service_class_code="225", company_name="HEALTH CONNECTOR",
                              company_identification="9000000001", standard_entry_class_code="WEB",
                              company_entry_description="PREMIUM", effective_entry_date="261202",
                              originator_status_code="1", originating_dfi_identification=RDFI, batch_number=1)
    write_file(str(path), header, [(batch, items())])


def _snapshot(sessions) -> dict:
    """What processing wrote, by natural keys (two runs on PostgreSQL do not number rows alike)."""
    P = Payment
    with sessions() as s:
        name = dict(s.execute(select(P.id, P.confirmation_id)).all())
        last4 = dict(s.execute(select(BankAccount.id, BankAccount.last4)).all())

        def n(pid):
            if pid is None or pid not in name:
                return pid
            c = name[pid]
            if c.startswith("RT-"):  # a re-presentment made here: RT-<root id>-<n>
                root, k = c[3:].rsplit("-", 1)
                return f"RT-{name[int(root)]}-{k}"
            return c

        pays = sorted((n(r.id), r.channel, r.member_id, r.coverage_month, r.amount_cents, last4.get(r.bank_account_id),
                       r.originate_on, r.state, n(r.retry_of_id), r.retry_number, r.sec_code, r.payment_type_code)
                      for r in s.execute(select(P)).scalars())
        rets = sorted((r.line, n(r.payment_id), r.return_code, r.status, r.action, n(r.retry_payment_id))
                      for r in s.execute(select(PaymentReturn).where(PaymentReturn.action != "earlier")).scalars())
        events = sorted((n(e.payment_id), e.event, e.old_state, e.new_state, e.reason, e.occurred_on)
                        for e in s.execute(select(PaymentEvent)).scalars())
        reviews = sorted((r.kind, r.line, n(r.payment_id), r.detail) for r in s.execute(select(ReviewItem)).scalars())
        mandates = sorted((m.member_id, m.status, m.status_reason) for m in s.execute(select(AutopayMandate)).scalars())
        accounts = sorted((a.last4, a.status, a.status_reason) for a in s.execute(select(BankAccount)).scalars())
    return {"payments": pays, "returns": rets, "events": events, "reviews": reviews, "mandates": mandates,
            "accounts": accounts}


def _counts(out) -> tuple:
    return (out.status, out.returns, out.returns_applied, out.retries_scheduled, out.accounts_blocked,
            out.mandates_revoked, out.payments_failed, out.review_items, tuple(out.errors))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 5), day=st.integers(0, 45), threshold=st.sampled_from([0, 0, 500]),
       retries=st.sampled_from([1, 2]), window=st.sampled_from([180, 20]))
def test_set_based_verdicts_decide_like_the_rules(sessions, keyring, tmp_path, data, n, day, threshold, retries,
                                                  window):
    policies = [data.draw(st.one_of(policy(i), simple(i))) for i in range(n)]
    rets = [data.draw(returned(i)) for i in range(n)]
    processed_on = date(2026, 12, 3) + timedelta(days=day)
    pol = ReturnPolicy(max_retries=retries, retry_window_days=window,
                       guard=GuardSettings(CoverageRules(payment_threshold_cents=threshold), max_reinitiations=retries,
                                           window_days=window))
    path = tmp_path / "RET.ach"
    seen = []
    for set_based in (False, True):
        entries = _ledger(sessions, keyring, policies, rets)
        _bank_file(path, entries, processed_on)
        out = process_return_file(sessions, keyring, path, processed_on, pol, set_based=set_based)
        seen.append((_counts(out), _snapshot(sessions)))
    assert seen[1][0] == seen[0][0]
    assert seen[1][1] == seen[0][1]
    assert seen[0][0][2] == n  # every return applied: the comparison is about what follows
    actions = [r[4] for r in seen[0][1]["returns"]]
    event(f"refused for coverage: {any('no re-presentment: coverage' in a for a in actions)}")
    with sessions() as s:  # (the policies the SQL vouches for on the re-presentments' day, about)
        unclear = policies_past_due_unclear(s.connection(), [f"M{i}" for i in range(n)],
                                            retry_date(processed_on, pol.retry_delay_banking_days), threshold)
    limited = {r[1] for r in seen[0][1]["returns"] if "without a new authorization" in r[4]}
    event(f"refused by the reinitiation limit: {bool(limited)}")
    event(f"... one the SQL vouched for: {any((f'M{c[1:]}', PLAN) not in unclear for c in limited)}")
    event(f"re-presentments scheduled: {seen[0][0][3] > 0}")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 6), as_of_day=st.integers(0, 180), threshold=st.sampled_from([0, 500]))
def test_a_policy_the_sql_vouches_for_is_one_the_rule_lets_collect(sessions, keyring, data, n, as_of_day, threshold):
    """Where `policies_past_due_unclear` does not name a policy, assess_policy (the rule) finds it
    `ok`, `pending_activation` or `at_risk` (nothing past due), and `coverage_allows` allows a pull
    or re-presentment of any month; the SQL may name a policy the rule would allow (conservative)."""
    policies = [data.draw(policy(i)) for i in range(n)]
    with sessions() as s, s.begin():
        _clear(s)
    _build(sessions, keyring, policies)
    as_of = date(2026, 9, 1) + timedelta(days=as_of_day)
    keys = [(f"M{i}", PLAN) for i in range(n)]
    rules = CoverageRules(payment_threshold_cents=threshold)
    with sessions() as s:
        conn = s.connection()
        unclear = policies_past_due_unclear(conn, [k[0] for k in keys], as_of, threshold)
        facts = policy_facts(conn, keys, ZoneInfo("America/New_York"))
    assert unclear <= set(keys)
    event(f"vouched for: {len(keys) - len(unclear) > 0}; left to the rule: {len(unclear) > 0}")
    for key in keys:
        if key not in unclear:
            st_ = assess_policy(*facts[key], as_of, rules)
            assert st_.status in ("ok", "pending_activation", "at_risk"), (key, as_of, st_)
            assert all(debit_rules.coverage_allows(m, st_.status, st_.coverage_ends_on, st_.first_unpaid_month).ok
                       for m in MONTHS), (key, st_)


DEC = date(2026, 12, 1)
DEC_DUE_DAY = (date(2026, 11, 23) - date(2026, 9, 1)).days  # payment day offsets (from 2026-09-01)


def _one(premiums, payments=()):
    return (0, premiums, ("active", "web", -24 * 30, None), list(payments), None, False)


VOUCHER_EDGES = {
    # name: (policy, as_of, left to the rule)
    "nothing due yet": (_one([(JAN, 20000, False, "none")]), date(2026, 12, 10), False),
    "January due, unpaid, on its due date": (_one([(JAN, 20000, False, "none")]), date(2026, 12, 23), False),
    "January unpaid the day after its due date": (_one([(JAN, 20000, False, "none")]), date(2026, 12, 24), True),
    "December paid on its due date": (_one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
                                           [(DEC, "portal", "settled", DEC_DUE_DAY, 10, 10000)]),
                                      date(2026, 12, 10), False),
    "December paid a day late": (_one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
                                      [(DEC, "portal", "settled", DEC_DUE_DAY + 1, 10, 10000)]),
                                 date(2026, 12, 10), True),
    "December paid in part": (_one([(DEC, 10000, False, "none")], [(DEC, "portal", "settled", DEC_DUE_DAY - 5, 10, 5000)]),
                              date(2026, 12, 10), True),
    "December returned, then paid on time": (
        _one([(DEC, 10000, False, "none")], [(DEC, "portal", "returned", DEC_DUE_DAY - 9, 10, 10000),
                                             (DEC, "portal", "settled", DEC_DUE_DAY - 5, 10, 10000)]),
        date(2026, 12, 10), True),
    "December by mail the day before (UTC)": (_one([(DEC, 10000, False, "none")],
                                                   [(DEC, "mail", "settled", DEC_DUE_DAY - 1, 23, 10000)]),
                                              date(2026, 12, 10), False),
    "December by mail on its due date": (_one([(DEC, 10000, False, "none")],
                                              [(DEC, "mail", "settled", DEC_DUE_DAY, 1, 10000)]),
                                         date(2026, 12, 10), True),
    "December held": (_one([(DEC, 10000, False, "none")], [(DEC, "portal", "held", DEC_DUE_DAY - 5, 10, 10000)]),
                      date(2026, 12, 10), True),
}


@pytest.mark.parametrize("name", list(VOUCHER_EDGES))
def test_edges_of_the_voucher(sessions, keyring, name):
    pol, as_of, left = VOUCHER_EDGES[name]
    with sessions() as s, s.begin():
        _clear(s)
    _build(sessions, keyring, [pol])
    with sessions() as s:
        assert (policies_past_due_unclear(s.connection(), ["M0"], as_of, 0) == {("M0", PLAN)}) is left
