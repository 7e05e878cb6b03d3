"""The review queue end to end through the CLI, on SQLite and PostgreSQL: three members are debited
(a portal payment, an online AutoPay pull, a paper AutoPay pull), the bank's sample return file
`sample_files/returns.ach` names original traces of another originator's file (so `returns process`
puts its three returns on the review list, $1,620.85), and finance works them with `achbatch review`:
list, show (accounts masked), apply to the payment they identified (R01: a re-presentment is
scheduled; R10: the AutoPay authorization is revoked; coverage re-assessed, the notice written: the
same effects as an automatic match), a refusal for an amount that differs, the same with --force
(recorded), --force refused by a state rule, a second resolution refused, dismiss, and the audit
rows."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from batch.store.models import (
    AutopayMandate,
    CoverageFlag,
    Notice,
    Payment,
    PaymentEvent,
    PaymentReturn,
    ReviewItem,
    ReviewResolution,
)
from jobs.cli import cli

from test_returns import cli_env  # noqa: F401  (fixture: settings from the environment)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
# The accounts of sample_files/returns.ach (its entries carry them in full: the bank's file does).
ALICE_ACCOUNT, DIANA_ACCOUNT, FAITH_ACCOUNT = "4417305529", "7001234098", "9020117735"
ALL_ACCOUNTS = (ALICE_ACCOUNT, DIANA_ACCOUNT, FAITH_ACCOUNT)


def _setup(tmp_path: Path) -> None:
    (tmp_path / "premiums.csv").write_text(
        "member_id,member_name,plan_id,coverage_month,amount_due,subsidy,binder\n"
        "M100234567,Alice Example,HLTH-SILVER-01,2026-02,452.10,aptc,no\n"
        "M100567890,Diana Placeholder,HLTH-GOLD-02,2026-02,528.75,none,no\n"
        "M100789012,Faith Dummy,HLTH-BRONZE-03,2026-02,600.00,aptc,no\n")
    (tmp_path / "autopay.csv").write_text(
        "member_id,plan_id,routing_number,account_number,account_type,account_holder,authorized_at,channel\n"
        f"M100567890,HLTH-GOLD-02,261073371,{DIANA_ACCOUNT},checking,Diana Placeholder,2025-12-02T09:15:00-05:00,web\n"
        f"M100789012,HLTH-BRONZE-03,053000015,{FAITH_ACCOUNT},savings,Faith Dummy,2025-11-20,paper\n")
    (tmp_path / "payments.csv").write_text(
        "confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,routing_number,"
        "account_number,account_type,account_holder\n"
        f"PC-1,2026-01-21T10:42:05-05:00,portal,M100234567,HLTH-SILVER-01,2026-02,452.10,011000015,{ALICE_ACCOUNT},"
        "checking,Alice Example\n")
    run = CliRunner()
    for args in (["import", "premiums", "premiums.csv"], ["import", "autopay", "autopay.csv"],
                 ["import", "payments", "payments.csv"], ["autopay", "schedule", "--date", "2026-01-22"],
                 ["originate", "--date", "2026-01-22"]):
        r = run.invoke(cli, args)
        assert r.exit_code == 0, (args, r.output)


def _payments(sessions) -> dict[str, Payment]:
    with sessions() as s:
        return {p.member_id: p for p in s.scalars(select(Payment).where(Payment.retry_of_id.is_(None)))}


def _no_account_number(text: str) -> None:
    for number in ALL_ACCOUNTS:
        assert number not in text, f"account ending {number[-4:]} in the output"


def test_review_queue_list_show_apply_refuse_force_dismiss(cli_env, sessions, tmp_path):  # noqa: F811
    _setup(tmp_path)
    pays = _payments(sessions)
    assert {m: (p.state, p.amount_cents) for m, p in pays.items()} == {
        "M100234567": ("in_file", 45210), "M100567890": ("in_file", 52875), "M100789012": ("in_file", 60000)}
    alice, diana, faith = pays["M100234567"].id, pays["M100567890"].id, pays["M100789012"].id
    run = CliRunner()

    # -- the bank's file: none of its original traces is ours, so three items for review ----------
    r = run.invoke(cli, ["returns", "process", str(SAMPLES / "returns.ach"), "--date", "2026-01-26"])
    assert r.exit_code == 1 and "applied: 0 of 3 returns, 0 of 0 NOCs, 3 for review" in r.output, r.output

    # -- list ---------------------------------------------------------------------------------------
    r = run.invoke(cli, ["review", "list", "--json", "--date", "2026-01-28"])
    assert r.exit_code == 0, r.output
    _no_account_number(r.output)
    listed = json.loads(r.output)
    assert listed["count"] == 3 and listed["status"] == "open"
    items = listed["items"]
    assert [(i["kind"], i["code"], i["code_title"], i["amount_cents"], i["original_trace_number"], i["member_id"],
             i["file"], i["line"], i["actions"]) for i in items] == [
        ("unknown_trace", "R01", "Insufficient Funds", 45210, "021000020000001", "M100234567", "returns.ach", 3,
         ["apply", "dismiss"]),
        ("unknown_trace", "R10", items[1]["code_title"], 52875, "021000020000004", "M100567890", "returns.ach", 7,
         ["apply", "dismiss"]),
        ("unknown_trace", "R02", "Account Closed", 64000, "021000020000006", "M100789012", "returns.ach", 11,
         ["apply", "dismiss"])]
    assert "Unauthorized" in items[1]["code_title"] or "Not Authorized" in items[1]["code_title"]
    assert all(i["age_days"] == 2 and i["status"] == "open" and "trace number" in i["reason"] for i in items)
    assert sum(i["amount_cents"] for i in items) == 162085
    r_ids = [i["id"] for i in items]
    text = run.invoke(cli, ["review", "list", "--date", "2026-01-28"])
    assert text.exit_code == 0 and "3 open items, $1,620.85" in text.output
    assert "returns.ach line 3" in text.output
    assert json.loads(run.invoke(cli, ["review", "list", "--json", "--kind", "amount_mismatch"]).output)["count"] == 0

    # -- show: the bank record (masked), the actions --------------------------------------------------
    r = run.invoke(cli, ["review", "show", str(r_ids[0]), "--json"])
    assert r.exit_code == 0, r.output
    _no_account_number(r.output)
    shown = json.loads(r.output)
    b = shown["bank_record"]
    assert (b["record"], b["code"], b["account_masked"], b["amount_cents"], b["individual_id"], b["original_rdfi"],
            b["original_trace_number"]) == ("return", "R01", "****5529", 45210, "M100234567", "01100001",
                                            "021000020000001")
    assert set(shown["action_words"]) == {"apply", "dismiss"} and shown["payment"] is None
    loc = shown["location"]  # the field of the bank record the item is about: the addenda's original trace
    assert (loc["record"], loc["field"], loc["columns"]) == ("addenda_99", "original_entry_trace_number", [7, 21])
    sample_line = (SAMPLES / "returns.ach").read_text().splitlines()[loc["line"] - 1]
    assert sample_line[6:21] == b["original_trace_number"]
    assert f"points at: line {loc['line']}, columns 7-21" in run.invoke(cli, ["review", "show", str(r_ids[0])]).output
    assert run.invoke(cli, ["review", "show", "999"]).exit_code == 2

    # -- apply the R01 to Alice's portal payment: a re-presentment, coverage re-assessed, a notice --
    r = run.invoke(cli, ["review", "resolve", str(r_ids[0]), "--action", "apply", "--payment", str(alice),
                         "--note", "member confirmed by phone", "--by", "pat.finance", "--date", "2026-01-26"])
    assert r.exit_code == 0, r.output
    _no_account_number(r.output)
    assert "return R01 applied to payment" in r.output and "re-presentment 1 of 2 scheduled for" in r.output
    assert "policies re-assessed" in r.output and "notices: 2 written (1 returned_payment, 1 termination_warning)" in r.output
    with sessions() as s:
        assert s.get(Payment, alice).state == "returned"
        (retry,) = s.scalars(select(Payment).where(Payment.retry_of_id == alice))
        assert (retry.channel, retry.state, retry.amount_cents, retry.retry_number) == ("retry", "pending", 45210, 1)
        ret = s.scalar(select(PaymentReturn).where(PaymentReturn.payment_id == alice))
        assert (ret.return_code, ret.original_trace_number, ret.retry_payment_id, ret.line) == \
            ("R01", "021000020000001", retry.id, 3)
        flag = s.scalar(select(CoverageFlag).where((CoverageFlag.member_id == "M100234567")
                                                   & CoverageFlag.current_key.is_not(None)))
        # no month of the year paid in full before: no APTC grace period (45 CFR 156.270(d))
        assert flag is not None and flag.status == "termination_pending" and "R01" in flag.reason
        assert s.scalar(select(Notice).where(Notice.member_id == "M100234567")) is not None
        res = s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == r_ids[0]))
        assert (res.action, res.resolved_by, res.note, res.payment_id, res.forced, res.business_date) == \
            ("apply", "pat.finance", "member confirmed by phone", alice, False, date(2026, 1, 26))
        assert json.loads(res.before_state)["payment_state"] == "in_file"
        after = json.loads(res.after_state)
        assert after["payment_state"] == "returned" and after["open_representments"] == [retry.id]
        assert after["item_status"] == "resolved"
        assert s.get(ReviewItem, r_ids[0]).status == "resolved"

    # -- resolved once only -------------------------------------------------------------------------
    r = run.invoke(cli, ["review", "resolve", str(r_ids[0]), "--action", "dismiss", "--note", "again"])
    assert r.exit_code == 1 and "already resolved by pat.finance" in r.output

    # -- apply the R10 to Diana's AutoPay pull: the authorization is revoked ---------------------------
    r = run.invoke(cli, ["review", "resolve", str(r_ids[1]), "--action", "apply", "--payment", str(diana),
                         "--note", "bank called", "--date", "2026-01-26"])
    assert r.exit_code == 0, r.output
    assert "AutoPay authorization revoked (1 mandate)" in r.output
    with sessions() as s:
        assert s.get(Payment, diana).state == "returned"
        (m,) = s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == "M100567890"))
        assert m.status == "revoked" and "R10" in m.status_reason
        res = s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == r_ids[1]))
        assert res.resolved_by  # the login name by default
        assert json.loads(res.before_state)["mandates"] == {str(m.id): "active"}
        assert json.loads(res.after_state)["mandates"] == {str(m.id): "revoked"}

    # -- the R02 ($640.00) to Faith's $600.00 pull: refused, nothing changes ------------------------
    r = run.invoke(cli, ["review", "resolve", str(r_ids[2]), "--action", "apply", "--payment", str(faith),
                         "--note", "same member", "--date", "2026-01-26"])
    assert r.exit_code == 1
    assert "refused" in r.output and "$640.00 differs from the $600.00 we debited" in r.output
    assert "--force" in r.output
    with sessions() as s:
        assert s.get(Payment, faith).state == "in_file" and s.get(ReviewItem, r_ids[2]).status == "open"
        assert s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == r_ids[2])) is None

    # -- --force never overrides a state rule: Alice's payment is already returned ---------------------
    r = run.invoke(cli, ["review", "resolve", str(r_ids[2]), "--action", "apply", "--payment", str(alice),
                         "--force", "--note", "wrong payment", "--date", "2026-01-26"])
    assert r.exit_code == 1 and "already returned" in r.output
    assert "--force" not in r.output.split("already returned")[1]  # no hint: force cannot help
    with sessions() as s:
        assert s.scalar(select(PaymentReturn.id).where(PaymentReturn.line == 11)) is None

    # -- with --force: applied, the override recorded; R02 blocks the account ---------------------------
    r = run.invoke(cli, ["review", "resolve", str(r_ids[2]), "--action", "apply", "--payment", str(faith),
                         "--force", "--note", "bank confirmed the amount", "--by", "lee", "--date", "2026-01-26",
                         "--json"])
    assert r.exit_code == 0, r.output
    _no_account_number(r.output)
    out = json.loads(r.output)
    assert out["forced"] is True and out["overridden"] == [
        "amount_mismatch: returned amount $640.00 differs from the $600.00 we debited"]
    assert out["before"]["payment_state"] == "in_file" and out["after"]["payment_state"] == "returned"
    assert out["after"]["account_status"] == "blocked"
    with sessions() as s:
        res = s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == r_ids[2]))
        assert (res.forced, res.resolved_by) == (True, "lee") and "amount_mismatch" in res.overridden
        ret = s.scalar(select(PaymentReturn).where(PaymentReturn.payment_id == faith))
        assert (ret.return_code, ret.amount_cents) == ("R02", 64000)

    # -- dismiss: an item of a kind that has no apply, from another bank file ---------------------------
    r = run.invoke(cli, ["returns", "process", str(SAMPLES / "warning-unknown-return-code.ach"), "--date", "2026-01-26"])
    assert r.exit_code == 1, r.output
    unknown = json.loads(run.invoke(cli, ["review", "list", "--json", "--kind", "unknown_return_code"]).output)
    (item,) = unknown["items"]
    assert item["actions"] == ["dismiss"] and item["code"] == "R99"
    r = run.invoke(cli, ["review", "resolve", str(item["id"]), "--action", "apply", "--payment", str(alice),
                         "--note", "x"])
    assert r.exit_code == 2 and "allows dismiss, not apply" in r.output
    r = run.invoke(cli, ["review", "resolve", str(item["id"]), "--action", "dismiss", "--note", "bank re-sent it as R01",
                         "--by", "pat.finance"])
    assert r.exit_code == 0 and "dismissed" in r.output, r.output
    r = run.invoke(cli, ["review", "resolve", str(item["id"]), "--action", "dismiss", "--note", "twice"])
    assert r.exit_code == 1

    # -- the audit: one row per resolution; list --status resolved shows who and why ---------------------
    with sessions() as s:
        rows = s.scalars(select(ReviewResolution).order_by(ReviewResolution.id)).all()
        assert [(x.review_item_id, x.action, x.forced) for x in rows] == [
            (r_ids[0], "apply", False), (r_ids[1], "apply", False), (r_ids[2], "apply", True),
            (item["id"], "dismiss", False)]
        assert rows[-1].payment_id is None and json.loads(rows[-1].after_state) == {"item_status": "resolved"}
        # The applied returns took the same path as automatic ones: no event beyond what the codes do
        # (origination recorded the first use of her WEB account sent unvalidated: first_use = send)
        assert s.scalars(select(PaymentEvent.event).where(PaymentEvent.payment_id == alice)).all() == ["risk_accepted"]
    resolved = json.loads(run.invoke(cli, ["review", "list", "--status", "resolved", "--json"]).output)
    assert resolved["count"] == 4
    assert resolved["items"][2]["resolution"]["forced"] is True
    assert resolved["items"][3]["resolution"]["note"] == "bank re-sent it as R01"
    r = run.invoke(cli, ["review", "show", str(r_ids[0])])
    assert r.exit_code == 0 and "resolved: apply by pat.finance" in r.output and "returned" in r.output
    _no_account_number(r.output)


def test_force_never_schedules_a_second_open_representment(cli_env, sessions, tmp_path):  # noqa: F811
    """A dishonored return put M1's original back to settled while its re-presentment is already in a
    file (a double_collection item, which has no apply). A later R01 naming an entry we do not know
    is matched by finance to the original: applying it would schedule a second open re-presentment
    of one payment, a state rule that --force does not override. Nothing changes."""
    from dataclasses import replace

    from nacha.calendar import add_banking_days
    from test_money_rules import Night

    night = Night(tmp_path, sessions)
    night.premiums("M1,Avery One,HLTH-1,2027-01,412.37,aptc,no")
    night.mandate("M1")
    night.cli("autopay", "schedule", "--date", "2026-12-22")
    night.originate(date(2026, 12, 22))
    p1 = night.payments("M1")[0]
    o1 = night.entry_of(p1.id)
    night.returns(date(2026, 12, 24), [(o1, "R01")])
    night.originate(add_banking_days(date(2026, 12, 24), 2))
    night.returns(date(2026, 12, 30), [(o1, "R68", "R01")], kind="dishonored")
    original, retry = night.payments("M1")
    assert (original.state, retry.state) == ("settled", "in_file")
    (double,) = night.reviews("double_collection")

    # the double collection: dismiss only
    out = night.cli("review", "resolve", double.id, "--action", "apply", "--payment", original.id, "--note", "x",
                    code=2)
    assert "allows dismiss, not apply" in out

    # an R01 whose original trace is not ours, for the same amount and account
    stranger = replace(o1, entry=o1.entry._replace(trace_number="011000019999999"))
    out = night.returns(date(2027, 1, 4), [(stranger, "R01")])
    assert "1 for review" in out
    (item,) = night.reviews("unknown_trace")
    out = night.cli("review", "resolve", item.id, "--action", "apply", "--payment", original.id, "--force",
                    "--note", "finance matched it", "--date", "2027-01-04", code=1)
    assert "refused" in out and "already has an open re-presentment" in out and f"#{retry.id}" in out
    assert [p.state for p in night.payments("M1")] == ["settled", "in_file"]
    with sessions() as s:
        assert s.scalar(select(ReviewResolution.id)) is None
        assert s.get(ReviewItem, item.id).status == "open"
    # without --force the same refusal (no mismatch to override)
    out = night.cli("review", "resolve", item.id, "--action", "apply", "--payment", original.id,
                    "--note", "finance matched it", "--date", "2027-01-04", code=1)
    assert "already has an open re-presentment" in out and "--force" not in out
    # dismissing the double collection is recorded
    night.cli("review", "resolve", double.id, "--action", "dismiss", "--note", "refund made by check", "--by", "pat")
    with sessions() as s:
        (res,) = s.scalars(select(ReviewResolution))
        assert (res.review_item_id, res.action, res.payment_id, res.forced) == (double.id, "dismiss", None, False)


def test_a_noc_applied_by_hand_corrects_the_account_like_an_automatic_match(cli_env, sessions, tmp_path):  # noqa: F811
    """nocs.ach names entries we never sent: three items. Finance identifies the C01 as one of
    Alice's: the NOC entry names another bank (RDFI), so `apply` is refused until `--force`; then the
    correction is applied by the same path as an automatic NOC (an account change recorded, the
    account corrected), the audit row records the override, and the item cannot be resolved again."""
    from batch.store.models import AccountChange, BankAccount, ReviewResolution

    _setup(tmp_path)
    alice = _payments(sessions)["M100234567"]
    run = CliRunner()
    r = run.invoke(cli, ["returns", "process", str(SAMPLES / "nocs.ach"), "--date", "2026-01-26"])
    assert r.exit_code == 1 and "3 for review" in r.output, r.output
    items = json.loads(run.invoke(cli, ["review", "list", "--json", "--date", "2026-01-26"]).output)["items"]
    c01 = next(i for i in items if i["code"] == "C01")
    assert c01["kind"] == "unknown_trace" and c01["actions"] == ["apply", "dismiss"]
    args = ["review", "resolve", str(c01["id"]), "--action", "apply", "--payment", str(alice.id),
            "--note", "the bank's trace was mistyped", "--by", "pat.finance", "--date", "2026-01-26"]
    refused = run.invoke(cli, args)
    assert refused.exit_code == 1 and "is not the routing number we debited" in refused.output, refused.output
    with sessions() as s:
        assert s.scalars(select(AccountChange)).all() == []
    r = run.invoke(cli, args + ["--force"])
    assert r.exit_code == 0, r.output
    _no_account_number(r.output)
    assert "88120044791" not in r.output  # the corrected number is shown masked too
    with sessions() as s:
        change = s.scalars(select(AccountChange)).one()
        assert (change.change_code, change.payment_id, change.new_account_masked) == ("C01", alice.id, "****4791")
        account = s.get(BankAccount, change.bank_account_id)
        assert account.last4 == "4791"
        resolution = s.scalars(select(ReviewResolution)).one()
        assert (resolution.action, resolution.forced, resolution.resolved_by) == ("apply", True, "pat.finance")
        assert "routing number we debited" in resolution.overridden, resolution.overridden
    assert run.invoke(cli, args + ["--force"]).exit_code == 1  # resolved once


def test_a_prenote_answer_not_matched_is_applied_by_hand_like_an_automatic_match(cli_env, sessions, tmp_path,
                                                                                 monkeypatch):  # noqa: F811
    """Two WEB AutoPay accounts are prenoted (first_use = hold: M1's portal payment waits). The bank
    answers with original traces we never sent (its software changed them): an R03 for M1's prenote
    and a C01 for M2's, so both go to review as unknown_trace. Finance applies them with
    `--prenote`: refused for the wrong prenote (the account differs) and for a trace outside our
    ODFI (until --force, recorded); applied, they take the automatic path: the R03 blocks M1's
    account with its reason, suspends AutoPay, fails the held payment and writes the member's
    notice; the C01 corrects M2's account, which counts as validated. A second R03 for the returned
    prenote is refused, --force or not."""
    from batch.store.models import BankAccount, FileEntry, Prenote
    from test_money_rules import Night
    from test_returns_simbank import Original

    monkeypatch.setenv("ACHBATCH_VALIDATION__FIRST_USE", "hold")
    night = Night(tmp_path, sessions)
    night.premiums("M1,Avery One,HLTH-1,2027-01,412.37,none,no", "M2,Blake Two,HLTH-1,2027-01,100.00,none,no")
    night.mandate("M1", account="4004001234")
    night.mandate("M2", account="4004005678")
    night.portal("PC-1", "M1", "2027-01", "412.37", "2026-12-01T09:00:00-05:00", account="4004001234")
    out = night.originate(date(2026, 12, 1))
    with sessions() as s:
        prenotes = {p.member_id: p for p in s.scalars(select(Prenote))}
        traces = dict(s.execute(select(FileEntry.prenote_id, FileEntry.trace_number)
                                .where(FileEntry.kind == "prenote")).all())
    p1, p2 = prenotes["M1"], prenotes["M2"]
    assert (p1.state, p2.state) == ("in_file", "in_file"), out
    (held,) = night.payments("M1")
    assert held.state == "held"

    def mangled(prenote, trace):  # our entry as the bank's software named it
        orig = night.sent[traces[prenote.id]]
        return Original(orig.header, orig.entry._replace(trace_number=trace))

    out = night.returns(date(2026, 12, 3), [(mangled(p1, traces[p1.id][:8] + "9999991"), "R03")])
    assert "1 for review" in out, out
    out = night.returns(date(2026, 12, 3), [(mangled(p2, "091000019999992"), "C01", {"account_number": "4444333322"})],
                        kind="nocs")
    assert "1 for review" in out, out
    r03, c01 = night.reviews("unknown_trace")
    assert (r03.code, c01.code) == ("R03", "C01")

    r = night.run.invoke(cli, ["review", "show", str(r03.id)])
    assert r.exit_code == 0 and "--prenote ID" in r.output, r.output

    base = ["review", "resolve", str(r03.id), "--action", "apply", "--note", "the bank mistyped the trace", "--by",
            "pat.finance", "--date", "2026-12-03"]
    # usage: both targets, or none
    r = night.run.invoke(cli, base + ["--prenote", str(p1.id), "--payment", str(held.id)])
    assert r.exit_code == 2 and "exclude each other" in r.output, r.output
    r = night.run.invoke(cli, base)
    assert r.exit_code == 2 and "--prenote ID" in r.output, r.output
    # the wrong prenote: the bank's account is M1's, not M2's
    r = night.run.invoke(cli, base + ["--prenote", str(p2.id)])
    assert r.exit_code == 1, r.output
    assert f"refused: prenote #{p2.id}: the account number returned is not the account we debited" in r.output
    assert "--force" in r.output and "4004001234" not in r.output
    assert night.run.invoke(cli, base + ["--prenote", "999"]).exit_code == 1  # no such prenote
    with sessions() as s:
        assert s.get(Prenote, p2.id).state == "in_file" and s.get(ReviewItem, r03.id).status == "open"

    # the right one: the automatic path of a prenote return
    r = night.run.invoke(cli, base + ["--prenote", str(p1.id)])
    assert r.exit_code == 0, r.output
    assert (f"return R03 applied to prenote #{p1.id}: in_file -> returned; account ****1234 blocked (prenote returned "
            "R03 No Account / Unable to Locate Account); 1 AutoPay mandate suspended, 1 payment failed") in r.output
    assert "1 account_not_validated" in r.output and "4004001234" not in r.output
    with sessions() as s:
        pn = s.get(Prenote, p1.id)
        assert (pn.state, pn.return_code) == ("returned", "R03")
        acct = s.get(BankAccount, pn.bank_account_id)
        assert (acct.status, acct.validation_result) == ("blocked", "invalid")
        assert s.scalars(select(AutopayMandate.status).where(AutopayMandate.member_id == "M1")).all() == ["suspended"]
        assert s.get(Payment, held.id).state == "failed"
        assert s.scalars(select(PaymentEvent.event).where(PaymentEvent.payment_id == held.id)).all()[-1] == "stopped"
        assert s.scalars(select(PaymentReturn)).all() == []  # not a live return
        (notice,) = s.scalars(select(Notice).where(Notice.kind == "account_not_validated"))
        assert (notice.member_id, notice.prenote_id, notice.amount_owed_cents) == ("M1", p1.id, 41237)
        res = s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == r03.id))
        assert (res.action, res.prenote_id, res.payment_id, res.forced, res.resolved_by) == (
            "apply", p1.id, None, False, "pat.finance")
        before, after = json.loads(res.before_state), json.loads(res.after_state)
        assert (before["prenote_state"], after["prenote_state"]) == ("in_file", "returned")
        assert (before["account_status"], after["account_status"]) == ("active", "blocked")
        assert (before["payments"], after["payments"]) == ({str(held.id): "held"}, {str(held.id): "failed"})
    assert night.run.invoke(cli, base + ["--prenote", str(p1.id)]).exit_code == 1  # resolved once
    r = night.run.invoke(cli, ["review", "show", str(r03.id)])
    assert r.exit_code == 0, r.output
    assert (f"prenote #{p1.id}: M1, returned (R03 No Account / Unable to Locate Account), account ****1234 at "
            "011000015 (blocked, invalid)") in r.output and "4004001234" not in r.output

    # the C01 names a trace outside our ODFI: refused until --force, then the NOC path
    noc = ["review", "resolve", str(c01.id), "--action", "apply", "--prenote", str(p2.id), "--note", "bank confirmed",
           "--by", "lee", "--date", "2026-12-03", "--json"]
    r = night.run.invoke(cli, noc)
    assert r.exit_code == 1 and "does not start with our ODFI" in r.output and "--force" in r.output, r.output
    r = night.run.invoke(cli, noc + ["--force"])
    assert r.exit_code == 0, r.output
    assert "4444333322" not in r.output and "4004005678" not in r.output
    done = json.loads(r.output)
    assert (done["prenote_id"], done["payment_id"], done["forced"]) == (p2.id, None, True)
    assert done["overridden"][0].startswith("trace_mismatch: the bank's original trace 091000019999992")
    assert (done["before"]["account_validation"], done["after"]["account_validation"]) == ("pending", "valid")
    assert done["after"]["prenote_state"] == "corrected"
    with sessions() as s:
        acct = s.get(BankAccount, p2.bank_account_id)
        assert (acct.validation_method, acct.last4) == ("prenote_noc", "3322")
        assert cli_env.decrypt_account(acct.account_number_enc) == "4444333322"

    # a second R03 for M1's prenote, already returned: a state rule --force does not override
    night.returns(date(2026, 12, 4), [(mangled(p1, traces[p1.id][:8] + "9999993"), "R03")])
    again = night.reviews("unknown_trace")[-1]
    r = night.run.invoke(cli, ["review", "resolve", str(again.id), "--action", "apply", "--prenote", str(p1.id),
                               "--force", "--note", "x", "--date", "2026-12-04"])
    assert r.exit_code == 1 and f"prenote #{p1.id} is already returned" in r.output, r.output
    assert "use --force" not in r.output
