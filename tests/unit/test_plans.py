"""The pure planners the executors carry out, without a database, a bank or a file system:
returns (`plan_returns`, `plan_retries`, `keep_retries`, `return_actions`), origination
(`FileSplit`, `file_id_modifiers`, `offset_cents`) and delivery (`plan_attempt`)."""
from __future__ import annotations

from datetime import date

from batch.rules import debit_rules
from batch.bank.delivery import CONFIRM, READ_BACK, REFUSE, UPLOAD, AttemptFacts, plan_attempt
from batch.collect.origination import (
    NEW_BATCH, NEW_FILE, SAME_BATCH, BatchKey, FileSplit, Limits, file_id_modifiers, offset_cents,
)
from batch.rules.returns import (
    ReturnLine, ReturnPolicy, ReturnSeen, OriginalFacts, keep_retries, plan_retries, plan_returns, return_actions,
    return_facts_needed,
)

ON = date(2026, 12, 2)
RDFI = "09100001"
HASH = "h-acct-1"


# -- returns ---------------------------------------------------------------------------------------
def _orig(pid: int, trace: str, *, state: str = "settled", amount: int = 10_000, acct: int = 7,
          member: str = "M1", retry_of: int | None = None) -> tuple[str, OriginalFacts]:
    return trace, OriginalFacts(file_entry_id=100 + pid, amount_cents=amount, payment_id=pid, file_date=date(2026, 11, 27),
                        state=state, channel="portal", member_id=member, plan_id="P1",
                        coverage_month=date(2027, 1, 1), premium_id=1, pay_amount=amount, bank_account_id=acct,
                        sec_code="WEB", payment_type_code="S", retry_of_id=retry_of, retry_number=0,
                        routing_number=RDFI + "1", account_hash=HASH)


def _line(n: int, code: str, trace: str, amount: int = 10_000, hashes=(HASH,)) -> ReturnLine:
    return ReturnLine(n, ReturnSeen(code, trace, f"0910000{n:08d}", amount, RDFI, hashes), "****6789")


def test_a_dishonor_after_a_return_of_the_same_payment_in_one_chunk():
    origs = dict([_orig(1, "T1")])
    lines = [_line(10, "R01", "T1"), _line(11, "R61", "T1")]
    assert return_facts_needed(lines, ON) == (True, True)
    history: dict = {}
    plan = plan_returns(lines, origs, {}, history, ON)
    assert [(a.line.line, a.old_state, a.decision.new_state) for a in plan.applied] == [
        (10, "settled", "returned"), (11, "returned", "settled")]
    assert plan.reviews == []
    assert [a.line.line for a in plan.retries] == [10]
    assert [a.line.line for a in plan.dishonored] == [11]
    assert [e[1:4] for e in plan.events] == [("reinstated", "returned", "settled")]  # the return: its own row
    assert plan.new_states == {"returned": [1], "settled": [1]}  # in file order: settled last
    assert history == {}  # the caller's facts are not changed


def test_a_dishonor_without_a_return_goes_to_review_and_a_second_return_is_a_duplicate():
    origs = dict([_orig(1, "T1"), _orig(2, "T2", state="returned")])
    plan = plan_returns([_line(1, "R61", "T1"), _line(2, "R01", "T2")], origs, {}, {}, ON)
    assert plan.applied == []
    assert [(r.line, r.kind, r.payment_id, r.expected) for r in plan.reviews] == [
        (1, "no_prior_return", 1, 10_000), (2, "duplicate_return", 2, 10_000)]


def test_unknown_codes_traces_and_mismatches_are_reviewed_in_file_order():
    origs = dict([_orig(1, "T1"), _orig(2, "T2")])
    lines = [_line(1, "R01", "T9"), _line(2, "R95", "T1"), _line(3, "R01", "T1", amount=9_999),
             _line(4, "R01", "T2", hashes=("other",))]
    assert return_facts_needed(lines[1:2], ON) == (False, False)
    plan = plan_returns(lines, origs, {}, {}, ON)
    assert [(r.line, r.kind) for r in plan.reviews] == [
        (2, "unknown_return_code"), (1, "unknown_trace"), (3, "amount_mismatch"), (4, "account_mismatch")]
    # the account as it was before a NOC corrected it still matches
    plan = plan_returns(lines[3:], origs, {7: {(RDFI, "other")}}, {}, ON)
    assert [a.line.line for a in plan.applied] == [4] and plan.reviews == []


def test_dispositions_block_revoke_and_words():
    origs = dict([_orig(1, "T1", acct=7), _orig(2, "T2", acct=8, member="M2"), _orig(3, "T3", acct=7)])
    plan = plan_returns([_line(1, "R02", "T1"), _line(2, "R10", "T2"), _line(3, "R03", "T3")], origs, {}, {}, ON)
    assert plan.blocks == {7: "R02 Account Closed"}  # the first reason per account
    assert list(plan.revokes) == [("M2", 8)]
    assert plan.retries == [] and plan.payments_failed == 0
    words = return_actions(plan, {7: 2}, {("M2", 8): 1}, {}, {})
    assert words[1] == "bank account ****6789 blocked; AutoPay suspended (2 mandates) until a new account"
    assert words[2] == "AutoPay authorization revoked (1 mandate)"


def test_retries_count_a_planned_one_as_covering_the_premium_and_refusals_are_kept_out():
    policy = ReturnPolicy()
    _t, o1 = _orig(1, "T1")
    _t, o2 = _orig(2, "T2")
    key = (o1.member_id, o1.plan_id, o1.coverage_month)
    actions, planned = plan_retries([(10, o1), (11, o2)], roots={1: 1, 2: 2}, settlement={},
                                    retries_so_far={}, owed={key: 10_000}, processed_on=ON, policy=policy)
    assert [p.line for p in planned] == [10]
    assert actions[11] == "no re-presentment: premium paid by other means"
    _actions, planned = plan_retries([(10, o1)], roots={1: 1}, settlement={}, retries_so_far={1: 2},
                                     owed={key: 10_000}, processed_on=ON, policy=policy)
    assert planned == []
    actions, planned = plan_retries([(10, o1), (11, o2)], roots={1: 1, 2: 2}, settlement={},
                                    retries_so_far={}, owed={key: 20_000}, processed_on=ON, policy=policy)
    copies, line_of = keep_retries(planned, {2: debit_rules.Verdict(False, "coverage ended")}, actions)
    day = planned[0].plan.originate_on
    assert copies == {(1, day): [1]} and line_of == {(1, 1): 10}
    assert actions[11] == "no re-presentment: coverage ended"


# -- origination -----------------------------------------------------------------------------------
WEB = BatchKey("WEB", "S", "PREMIUM")
PPD = BatchKey("PPD", "", "PREMIUM")


def _steps(limits: Limits, rows):
    split = FileSplit(limits)
    out = []
    for key, amount in rows:
        step = split.place(key, amount)
        out.append(step if step != NEW_FILE else (NEW_FILE, split.closed_entries, split.closed_cents))
    return out, (split.entries, split.cents)


def test_a_file_split_exactly_at_the_entry_limit():
    steps, last = _steps(Limits(max_entries_per_file=3), [(WEB, 1)] * 7)
    assert steps == [(NEW_FILE, 0, 0), SAME_BATCH, SAME_BATCH, (NEW_FILE, 3, 3), SAME_BATCH, SAME_BATCH,
                     (NEW_FILE, 3, 3)]
    assert last == (1, 1)


def test_a_file_split_exactly_at_the_cent_limit():
    steps, last = _steps(Limits(max_cents_per_file=100), [(WEB, 60), (WEB, 40), (WEB, 1), (WEB, 250), (PPD, 5)])
    # 60 + 40 = 100 fits exactly; 1 more does not; an entry over the limit still gets a file alone
    assert steps == [(NEW_FILE, 0, 0), SAME_BATCH, (NEW_FILE, 2, 100), (NEW_FILE, 1, 1), (NEW_FILE, 1, 250)]
    assert last == (1, 5)


def test_batches_follow_the_key_and_restart_in_a_new_file():
    steps, _ = _steps(Limits(max_entries_per_file=3), [(WEB, 1), (WEB, 1), (PPD, 1), (PPD, 1), (WEB, 1)])
    assert steps == [(NEW_FILE, 0, 0), SAME_BATCH, NEW_BATCH, (NEW_FILE, 3, 3), NEW_BATCH]


def test_offsets_and_modifiers():
    assert offset_cents(Limits(balanced=True), 12_345) == 12_345
    assert offset_cents(Limits(balanced=True), 0) == 0
    assert offset_cents(Limits(balanced=False), 12_345) == 0
    mods = list(file_id_modifiers({"A", "C", "0"}))
    assert mods[:3] == ["B", "D", "E"] and len(mods) == 33 and mods[-1] == "9"


# -- delivery --------------------------------------------------------------------------------------
def _facts(listing, *, rename=True, verify=False, earlier=(), attempt=1, **kw):
    return AttemptFacts(listing, 1000, "sha-ours", rename, verify, "ACH-A.ach" if rename else None, tuple(earlier),
                        attempt, lambda seq: f"ACH-A-{seq}.ach", **kw)


def test_a_delivery_attempt_finding_a_temp_leftover_removes_it_and_uploads():
    plan = plan_attempt(_facts({".ACH-A.ach.1.part": 400, "other.ach": 1000}, attempt=2))
    assert plan.action == UPLOAD
    assert (plan.name, plan.upload_name) == ("ACH-A.ach", ".ACH-A.ach.2.part")
    assert plan.cleanups == ((".ACH-A.ach.1.part", "stale temporary upload"),)


def test_a_delivery_attempt_finding_our_file_confirms_it_by_content_or_refuses_it():
    # Equal size proves nothing (issue 13): the content is read back first, whatever verify_read_back says.
    for verify in (False, True):
        facts = _facts({"ACH-A.ach": 1000, ".ACH-A.ach.1.part": 9}, verify=verify)
        plan = plan_attempt(facts)
        assert (plan.action, plan.name) == (READ_BACK, "ACH-A.ach")
        assert plan_attempt(facts.read_back("ACH-A.ach", "sha-ours")).action == CONFIRM
        assert plan_attempt(facts.read_back("ACH-A.ach", "sha-other")).action == REFUSE
        assert plan_attempt(facts.read_back("ACH-A.ach", "")).action == REFUSE  # could not be read back
    plan = plan_attempt(_facts({"ACH-A.ach": 999}))
    assert (plan.action, plan.name) == (REFUSE, "ACH-A.ach")  # another size: no read-back needed
    assert plan_attempt(_facts({})).cleanups == ()


def test_without_rename_partials_are_removed_and_a_fresh_name_is_chosen():
    plan = plan_attempt(_facts({"ACH-A-1.ach": 10, "ACH-A-3.ach": 1000}, rename=False,
                               earlier=["ACH-A-1.ach", "ACH-A-2.ach"], attempt=3))
    assert plan.action == UPLOAD
    assert plan.cleanups == (("ACH-A-1.ach", "partial upload"),)
    assert plan.name == plan.upload_name == "ACH-A-4.ach"  # 3 is listed (not ours): never overwritten
    facts = _facts({"ACH-A-1.ach": 10, "ACH-A-2.ach": 1000}, rename=False,
                   earlier=["ACH-A-1.ach", "ACH-A-2.ach"], attempt=3)
    assert (plan_attempt(facts).action, plan_attempt(facts).name) == (READ_BACK, "ACH-A-2.ach")
    plan = plan_attempt(facts.read_back("ACH-A-2.ach", "sha-ours"))
    assert (plan.action, plan.name) == (CONFIRM, "ACH-A-2.ach")  # the latest attempt's upload first
    assert plan.cleanups == ()
