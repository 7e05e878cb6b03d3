"""End to end, on SQLite and PostgreSQL: import premiums, AutoPay mandates and portal payments ->
AutoPay schedule -> originate -> the simulated bank answers with a return file (R01, R02, R10) and a
NOC file (C01, C02, C05) built with our NACHA writer -> `achbatch returns process` -> `achbatch
coverage assess` -> `achbatch report ...`; then the re-presentment goes out in a RETRY PYMT batch on
its day and next month's pulls use the corrected accounts. Every payment's final state, every flag,
the notices and the reconciliation totals are checked."""
from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import select

from batch.collect.autopay import schedule_autopay
from batch.collect.imports import import_autopay, import_payments, import_premiums
from batch.store.models import (
    AccountChange,
    AutopayMandate,
    BankAccount,
    CoverageFlag,
    NachaFile,
    Notice,
    Payment,
    PaymentReturn,
    ReviewItem,
)
from batch.collect.origination import Company, Limits, originate
from jobs.cli import cli
from nacha.reader import read_file

from test_returns import cli_env  # noqa: F401  (fixture: settings from the environment)
from test_returns_simbank import SimBank, originals

COMPANY = Company("HEALTH CONNECTOR", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK", "011000015")
PLAN = "HLTH-SILVER-01"

# member: (name, subsidy, binder, January premium, AutoPay account or None)
MEMBERS = {
    "M1": ("Avery Retry", "aptc", "no", "412.37", ("011000015", "4004001234", "checking")),
    "M2": ("Blake Closed", "aptc", "yes", "250.00", ("021000021", "55550001234", "checking")),
    "M3": ("Casey Unauth", "none", "no", "333.33", ("026009593", "7700112233", "savings")),
    "M4": ("Drew Account", "aptc", "no", "120.10", ("011401533", "31002009876", "checking")),
    "M5": ("Emery Routing", "connectorcare", "no", "99.99", ("091000019", "8080808080", "checking")),
    "M6": ("Finley Type", "aptc", "no", "150.00", ("021000021", "6060606060", "checking")),
    "M7": ("Gray Portal", "none", "no", "210.00", None),
    "M8": ("Harper Nopay", "aptc", "yes", "175.00", None),
    "M9": ("Indy Mail", "aptc", "no", "80.00", None),
}
JAN_AMOUNTS = {m: int(Decimal(v[3]) * 100) for m, v in MEMBERS.items()}


def _write_csvs(tmp_path):
    prem = ["member_id,member_name,plan_id,coverage_month,amount_due,subsidy,binder"]
    for m, (name, subsidy, binder, amount, _acct) in MEMBERS.items():
        prem.append(f"{m},{name},{PLAN},2027-01,{amount},{subsidy},{binder}")
        if m in ("M1", "M4", "M5", "M6"):
            prem.append(f"{m},{name},{PLAN},2027-02,{amount},{subsidy},no")
    auto = ["member_id,plan_id,routing_number,account_number,account_type,account_holder,authorized_at,channel"]
    for m, (name, _s, _b, _a, acct) in MEMBERS.items():
        if acct:
            auto.append(f"{m},{PLAN},{acct[0]},{acct[1]},{acct[2]},{name},2026-11-02T09:15:00-05:00,web")
    pays = ["confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,routing_number,"
            "account_number,account_type,account_holder",
            f"PC-1,2026-12-21T10:42:05-05:00,portal,M7,{PLAN},2027-01,210.00,011000015,1234567890,checking,Gray Portal",
            f"ML-1,2026-12-18T09:00:00-05:00,mail,M9,{PLAN},2027-01,80.00,,,,"]
    paths = {}
    for name, lines in (("premiums", prem), ("autopay", auto), ("payments", pays)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text("\n".join(lines) + "\n")
    return paths


def _csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _payments(sessions):
    with sessions() as s:
        out: dict[str, list[Payment]] = {}
        for p in s.scalars(select(Payment).order_by(Payment.id)):
            out.setdefault(p.member_id, []).append(p)
        return out


def test_a_night_with_returns_nocs_coverage_and_reports(cli_env, sessions, tmp_path):  # noqa: F811
    keyring = cli_env
    paths = _write_csvs(tmp_path)
    for kind, fn in (("premiums", import_premiums), ("autopay", import_autopay), ("payments", import_payments)):
        r = fn(sessions, paths[kind]) if kind == "premiums" else fn(sessions, paths[kind], keyring=keyring)
        assert r.ok, r.rejected

    # -- AutoPay and origination: January's premiums are due Wednesday 2026-12-23 -----------------
    draft = date(2026, 12, 22)
    a = schedule_autopay(sessions, draft)
    assert a.created == 6
    outbox = tmp_path / "outbox"
    built = originate(sessions, keyring, COMPANY, Limits(), draft, outbox, file_time="2100")
    assert built.payments == 7 and built.effective_date == date(2026, 12, 23)
    sent = originals(*[f.path for f in built.files])
    by_member = {o.member_id: o for o in sent.values()}
    assert set(by_member) == {"M1", "M2", "M3", "M4", "M5", "M6", "M7"}

    # -- the bank answers (Thursday 2026-12-24; the 25th is a Fed holiday) -------------------------
    bank = SimBank()
    day = date(2026, 12, 24)
    ret = tmp_path / "RET-20261224.ach"
    ret.write_text(bank.returns([(by_member["M1"], "R01"), (by_member["M2"], "R02"), (by_member["M3"], "R10")], day))
    noc = tmp_path / "NOC-20261224.ach"
    noc.write_text(bank.nocs([(by_member["M4"], "C01", {"account_number": "31002001111"}),
                              (by_member["M5"], "C02", {"routing_number": "011000015"}),
                              (by_member["M6"], "C05", {"transaction_code": "37"})], day, modifier="B"))
    run = CliRunner()
    r = run.invoke(cli, ["returns", "process", str(ret), str(noc), "--date", "2026-12-24"])
    assert r.exit_code == 0, r.output
    assert "RET-20261224.ach: applied: 3 of 3 returns" in r.output
    assert "NOC-20261224.ach: applied: 0 of 0 returns, 3 of 3 NOCs" in r.output
    r = run.invoke(cli, ["returns", "process", str(ret), "--date", "2026-12-24"])  # again: applied once
    assert r.exit_code == 0 and "duplicate" in r.output

    r = run.invoke(cli, ["coverage", "assess", "--date", "2026-12-24"])
    assert r.exit_code == 0, r.output
    with sessions() as s:
        flags = {f.member_id: f for f in s.scalars(select(CoverageFlag).where(CoverageFlag.current_key.is_not(None)))}
    expected = {
        # APTC, but no month of 2027 paid in full yet: no grace period (45 CFR 156.270(d))
        "M1": ("termination_pending", "premium_returned", 1, JAN_AMOUNTS["M1"], date(2027, 1, 23)),
        "M2": ("not_started", "binder_returned", 1, JAN_AMOUNTS["M2"], None),
        "M3": ("termination_pending", "premium_returned", 1, JAN_AMOUNTS["M3"], date(2027, 1, 23)),
        "M4": ("ok", "paid", 0, 0, None), "M5": ("ok", "paid", 0, 0, None), "M6": ("ok", "paid", 0, 0, None),
        "M7": ("ok", "paid", 0, 0, None),
        "M8": ("not_started", "binder_unpaid", 1, JAN_AMOUNTS["M8"], None),
        "M9": ("ok", "paid", 0, 0, None),
    }
    assert {m: (f.status, f.reason_code, f.months_owed, f.amount_owed_cents, f.deadline) for m, f in flags.items()} \
        == expected

    # -- reports -------------------------------------------------------------------------------------
    reports = tmp_path / "achbatch-data" / "reports"
    for kind in ("reconciliation", "returns", "coverage"):
        r = run.invoke(cli, ["report", kind, "--date", "2026-12-24", "--format", "csv"])
        assert r.exit_code == (1 if kind == "returns" else 0), r.output  # 3 returns of 7: over every threshold
        assert run.invoke(cli, ["report", kind, "--date", "2026-12-24"]).exit_code in (0, 1)
        assert (reports / f"{kind}-2026-12-24.html").exists()
    recon = _csv(reports / "reconciliation-2026-12-24.csv")
    with sessions() as s:
        (f,) = s.scalars(select(NachaFile))
    stored = read_file(outbox / f.file_name, "strict")
    assert sum(int(Decimal(r["debits"]) * 100) for r in recon) == f.total_debit_cents == \
        stored.control.total_debit_amount == sum(JAN_AMOUNTS[m] for m in by_member)
    assert sum(int(r["entries"]) for r in recon) == stored.control.entry_addenda_count == 7
    per_batch = {int(r["batch"]): r for r in recon}
    for b in stored.batches:
        row = per_batch[b.header.batch_number]
        assert int(Decimal(row["debits"]) * 100) == b.control.total_debit_amount
        assert int(row["entries"]) == b.control.entry_addenda_count
    returned = sum(int(Decimal(r["returned_amount"]) * 100) for r in recon)
    assert returned == JAN_AMOUNTS["M1"] + JAN_AMOUNTS["M2"] + JAN_AMOUNTS["M3"]
    assert sum(int(Decimal(r["net"]) * 100) for r in recon) == f.total_debit_cents - returned
    rets = _csv(reports / "returns-2026-12-24.csv")
    assert sorted((r["member_id"], r["return_code"], r["disposition"]) for r in rets) == [
        ("M1", "R01", "retry"), ("M2", "R02", "block_account"), ("M3", "R10", "revoke_authorization")]
    cov = _csv(reports / "coverage-2026-12-24.csv")
    assert sorted((r["member_id"], r["status"]) for r in cov) == [
        ("M1", "termination_pending"), ("M2", "not_started"), ("M3", "termination_pending"), ("M8", "not_started")]

    # -- accounts, mandates, NOC audit -------------------------------------------------------------
    pays = _payments(sessions)
    with sessions() as s:
        mandates = {m.member_id: m for m in s.scalars(select(AutopayMandate))}
        assert mandates["M2"].status == "suspended" and mandates["M3"].status == "revoked"
        assert s.get(BankAccount, pays["M2"][0].bank_account_id).status == "blocked"
        assert {c.change_code: c.status for c in s.scalars(select(AccountChange))} == \
            {"C01": "applied", "C02": "applied", "C05": "applied"}
        assert s.scalar(select(ReviewItem.id)) is None

    # -- the re-presentment: not on Monday 12-28, in a RETRY PYMT batch on Tuesday 12-29 -------------
    retry = pays["M1"][-1]
    assert (retry.channel, retry.retry_number, retry.originate_on, retry.amount_cents) == \
        ("retry", 1, date(2026, 12, 29), JAN_AMOUNTS["M1"])
    assert originate(sessions, keyring, COMPANY, Limits(), date(2026, 12, 28), outbox).payments == 0
    again = originate(sessions, keyring, COMPANY, Limits(), date(2026, 12, 29), outbox)
    assert again.payments == 1
    rf = read_file(again.files[0].path, "strict")
    assert [b.header.company_entry_description for b in rf.batches] == ["RETRY PYMT"]
    (entry,) = list(rf.entries())
    assert entry.record.amount == JAN_AMOUNTS["M1"] and entry.record.dfi_account_number == "4004001234"
    # A returned premium stays delinquent until its re-presentment has cleared: it settles Wednesday
    # 12-30 and clears two banking days later, Monday 2027-01-04 (New Year's Day is a Fed holiday).
    for d in ("2026-12-29", "2026-12-31"):
        r = run.invoke(cli, ["coverage", "assess", "--date", d])
        assert r.exit_code == 0
        with sessions() as s:
            m1 = s.scalars(select(CoverageFlag).where(CoverageFlag.member_id == "M1").order_by(CoverageFlag.id)).all()
        assert [f.status for f in m1] == ["termination_pending"], d
        assert "re-presentment 1 scheduled for 2026-12-29" in m1[0].reason and "R01" in m1[0].reason
    r = run.invoke(cli, ["coverage", "assess", "--date", "2027-01-04"])
    assert r.exit_code == 0
    with sessions() as s:
        m1 = s.scalars(select(CoverageFlag).where(CoverageFlag.member_id == "M1").order_by(CoverageFlag.id)).all()
    assert [f.status for f in m1] == ["termination_pending", "ok"] and m1[0].current_key is None

    # -- February's pulls (due Saturday 2027-01-23, drafted Thursday 01-21) use the corrected accounts --
    feb = schedule_autopay(sessions, date(2027, 1, 21))
    assert feb.created == 4  # M1, M4, M5, M6: M2's AutoPay is suspended, M3's revoked
    nxt = originate(sessions, keyring, COMPANY, Limits(), date(2027, 1, 21), outbox)
    pulls = {o.member_id: o.entry for o in originals(*[f.path for f in nxt.files]).values()}
    assert pulls["M4"].dfi_account_number == "31002001111"
    assert pulls["M5"].receiving_dfi_identification + pulls["M5"].check_digit == "011000015"
    assert pulls["M6"].transaction_code == "37"
    assert pulls["M1"].dfi_account_number == "4004001234" and pulls["M1"].transaction_code == "27"

    # -- every payment's final state -----------------------------------------------------------------
    states = {m: [(p.channel, p.coverage_month.month, p.state) for p in ps] for m, ps in _payments(sessions).items()}
    assert states == {
        "M1": [("autopay", 1, "returned"), ("retry", 1, "in_file"), ("autopay", 2, "in_file")],
        "M2": [("autopay", 1, "returned")],
        "M3": [("autopay", 1, "returned")],
        "M4": [("autopay", 1, "in_file"), ("autopay", 2, "in_file")],
        "M5": [("autopay", 1, "in_file"), ("autopay", 2, "in_file")],
        "M6": [("autopay", 1, "in_file"), ("autopay", 2, "in_file")],
        "M7": [("portal", 1, "in_file")],
        "M9": [("mail", 1, "paid")],
    }
    with sessions() as s:
        assert s.scalar(select(PaymentReturn.retry_payment_id).where(PaymentReturn.return_code == "R01")) == retry.id
        notices = sorted((n.member_id, n.kind) for n in s.scalars(select(Notice)))
    assert notices == [("M1", "returned_payment"), ("M1", "termination_warning"), ("M2", "coverage_not_started"),
                       ("M2", "returned_payment"), ("M3", "returned_payment"), ("M3", "termination_warning"),
                       ("M8", "coverage_not_started")]
    manifest = _csv(tmp_path / "achbatch-data" / "notices" / "manifest.csv")
    assert len(manifest) == 7 and all((tmp_path / "achbatch-data" / "notices" / m["file"]).exists() for m in manifest)
