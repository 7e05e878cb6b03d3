"""NOC corrections stick through imports (DESIGN.md "a NOC correction sticks through re-imports and
applies to every later payment from that account"; ref §2.5): a re-imported AutoPay or payments file
never undoes a correction of the account type or holder name, and a row carrying the account number
or routing a NOC corrected is debited to the corrected account (audited), never to a new account
row. On SQLite and PostgreSQL; the first two run through the `achbatch` CLI."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from batch.collect.imports import HEADERS, import_autopay, import_payments, import_premiums
from batch.store.models import AccountChange, AutopayMandate, BankAccount, NachaFile, Payment, PaymentEvent
from jobs.cli import cli

from test_returns import World, cli_env  # noqa: F401  (fixture: settings from the environment)
from test_returns_simbank import SimBank, originals

PLAN = "HLTH-SILVER-01"
NOC_DAY = date(2026, 12, 24)  # Thursday: the bank's NOC arrives and is processed
JAN_DRAFT = date(2026, 12, 22)  # January's AutoPay pull (due Wednesday 2026-12-23)
FEB_DRAFT = date(2027, 1, 21)  # February's (due Saturday 2027-01-23)
PREMIUMS = (",".join(HEADERS["premiums"]),
            f"M1,Avery Sample,{PLAN},2027-01,412.37,aptc,no",
            f"M1,Avery Sample,{PLAN},2027-02,412.37,aptc,no")
AUTOPAY_HEADER = ",".join(HEADERS["autopay"])
PAYMENT_HEADER = ",".join(HEADERS["payments"])
OLD_NUMBER, NEW_NUMBER = "4004001234", "4004009876"


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def autopay_row(number=OLD_NUMBER, routing="011000015", account_type="checking", holder="Avery Sample") -> str:
    return f"M1,{PLAN},{routing},{number},{account_type},{holder},2026-11-02T09:15:00-05:00,web"


def payment_row(cid: str, month: str, submitted: str, number=OLD_NUMBER, routing="011000015",
                account_type="checking") -> str:
    return f"{cid},{submitted},portal,M1,{PLAN},{month},412.37,{routing},{number},{account_type},Avery Sample"


def count(sessions, model, *where) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def entries_of(sessions, outbox: Path, file_date: date) -> dict[str, tuple]:
    """The entries of the files built for `file_date`, by confirmation's member id, read back from
    the bytes in the outbox."""
    with sessions() as s:
        names = [f.file_name for f in s.scalars(select(NachaFile).where(NachaFile.file_date == file_date))]
    assert names, f"no file built for {file_date}"
    return {o.member_id: o for o in originals(*[outbox / n for n in names]).values()}


# =============================================================================================
# Through the CLI
# =============================================================================================

def test_cli_c05_correction_survives_a_byte_identical_autopay_reimport(cli_env, sessions, tmp_path):  # noqa: F811
    run = CliRunner()
    prem = write(tmp_path / "premiums.csv", *PREMIUMS)
    auto = write(tmp_path / "autopay.csv", AUTOPAY_HEADER, autopay_row())
    outbox = tmp_path / "achbatch-data" / "outbox"
    assert run.invoke(cli, ["import", "premiums", str(prem)]).exit_code == 0
    r = run.invoke(cli, ["import", "autopay", str(auto)])
    assert r.exit_code == 0 and "1 loaded" in r.stdout, r.output
    assert run.invoke(cli, ["autopay", "schedule", "--date", JAN_DRAFT.isoformat()]).exit_code == 0
    r = run.invoke(cli, ["originate", "--date", JAN_DRAFT.isoformat()])
    assert r.exit_code == 0, r.output
    jan = entries_of(sessions, outbox, JAN_DRAFT)["M1"]
    assert jan.entry.transaction_code == "27"

    # The bank: the account is a savings account (C05).
    noc = write(tmp_path / "NOC-20261224.ach", SimBank().nocs([(jan, "C05", {"transaction_code": "37"})], NOC_DAY))
    r = run.invoke(cli, ["returns", "process", str(noc), "--date", NOC_DAY.isoformat()])
    assert r.exit_code == 0 and "1 of 1 NOC," in r.output, r.output
    with sessions() as s:
        account_id = s.scalars(select(AutopayMandate)).one().bank_account_id
        assert s.get(BankAccount, account_id).account_type == "savings"

    # The enrollment system sends the very same file again: the correction stays, and says so.
    r = run.invoke(cli, ["import", "autopay", str(auto)])
    assert r.exit_code == 0, r.output
    assert "0 updated, 1 unchanged, 0 rejected, 1 note" in r.stdout and "imported before" in r.stdout
    assert ("note line 2: account ****1234: account type checking not applied: the NOC correction of "
            "2026-12-24 (C05) to savings was kept (the row carries the value from before the correction)") in r.stdout
    assert OLD_NUMBER not in r.output
    with sessions() as s:
        acct = s.get(BankAccount, account_id)
        assert (acct.account_type, acct.holder_name) == ("savings", "Avery Sample")
    assert count(sessions, BankAccount) == 1 and count(sessions, AutopayMandate) == 1

    # February's pull goes out as a savings debit (37), to the same account.
    assert run.invoke(cli, ["autopay", "schedule", "--date", FEB_DRAFT.isoformat()]).exit_code == 0
    r = run.invoke(cli, ["originate", "--date", FEB_DRAFT.isoformat()])
    assert r.exit_code == 0, r.output
    feb = entries_of(sessions, outbox, FEB_DRAFT)["M1"].entry
    assert (feb.transaction_code, feb.dfi_account_number) == ("37", OLD_NUMBER)


def test_cli_payment_with_the_number_a_c01_corrected_is_debited_to_the_corrected_account(
        cli_env, sessions, tmp_path):  # noqa: F811
    run = CliRunner()
    outbox = tmp_path / "achbatch-data" / "outbox"
    assert run.invoke(cli, ["import", "premiums", str(write(tmp_path / "premiums.csv", *PREMIUMS))]).exit_code == 0
    first = write(tmp_path / "payments-1.csv", PAYMENT_HEADER,
                  payment_row("PC-1", "2027-01", "2026-12-21T10:42:05-05:00"))
    assert run.invoke(cli, ["import", "payments", str(first)]).exit_code == 0
    assert run.invoke(cli, ["originate", "--date", "2026-12-21"]).exit_code == 0
    jan = entries_of(sessions, outbox, date(2026, 12, 21))["M1"]
    noc = write(tmp_path / "NOC-20261224.ach",
                SimBank().nocs([(jan, "C01", {"account_number": NEW_NUMBER})], NOC_DAY))
    r = run.invoke(cli, ["returns", "process", str(noc), "--date", NOC_DAY.isoformat()])
    assert r.exit_code == 0 and "1 of 1 NOC," in r.output, r.output
    with sessions() as s:
        (account,) = s.scalars(select(BankAccount))
        account_id = account.id
        assert account.last4 == "9876"

    # The portal still has the old number on file: February's payment carries it.
    second = write(tmp_path / "payments-2.csv", PAYMENT_HEADER,
                   payment_row("PC-2", "2027-02", "2027-01-05T08:00:00-05:00"))
    r = run.invoke(cli, ["import", "payments", str(second)])
    assert r.exit_code == 0, r.output
    assert "1 loaded" in r.stdout and "1 note" in r.stdout
    assert ("note line 2: account ****1234 was corrected by the NOC correction of 2026-12-24 (C01): payment PC-2 "
            "is debited to the corrected account ****9876") in r.stdout
    assert OLD_NUMBER not in r.output and NEW_NUMBER not in r.output
    assert count(sessions, BankAccount) == 1  # no new account row for the old number
    with sessions() as s:
        pc2 = s.scalars(select(Payment).where(Payment.confirmation_id == "PC-2")).one()
        assert pc2.bank_account_id == account_id
        # (besides PC-1's record of its WEB account sent unvalidated: first_use = send in cli_env)
        (event,) = s.scalars(select(PaymentEvent).where(PaymentEvent.event != "risk_accepted"))
        assert (event.payment_id, event.event, event.old_state, event.new_state) == (
            pc2.id, "account_corrected", "pending", "pending")
        assert event.reason == ("NOC C01 applied 2026-12-24: debited to the corrected account ****9876 instead of "
                                "****1234 (6 banking days / before the next entry: NACHA)")
        assert event.return_file_id == s.scalars(select(AccountChange)).one().return_file_id

    # The same file again changes nothing and audits nothing twice.
    r = run.invoke(cli, ["import", "payments", str(second)])
    assert r.exit_code == 0 and "0 loaded, 0 updated, 1 unchanged, 0 rejected" in r.stdout, r.output
    assert count(sessions, BankAccount) == 1 and count(sessions, Payment) == 2 and count(sessions, PaymentEvent) == 2

    # The debit goes to the corrected number.
    assert run.invoke(cli, ["originate", "--date", "2027-01-05"]).exit_code == 0
    feb = entries_of(sessions, outbox, date(2027, 1, 5))["M1"].entry
    assert (feb.dfi_account_number, feb.amount) == (NEW_NUMBER, 41237)


# =============================================================================================
# The services
# =============================================================================================

@pytest.fixture
def world(sessions, keyring, tmp_path):
    w = World(sessions, keyring, tmp_path)
    assert import_premiums(sessions, write(tmp_path / "premiums.csv", *PREMIUMS)).loaded == 2
    return w


def _autopay(world, tmp_path, name, *rows):
    return import_autopay(world.sessions, write(tmp_path / name, AUTOPAY_HEADER, *rows), keyring=world.keyring)


def _pull_and_noc(world, tmp_path, code, parts):
    """AutoPay M1 on the old account, January's pull originated, the bank's NOC applied."""
    assert _autopay(world, tmp_path, "autopay.csv", autopay_row()).loaded == 1
    from batch.collect.autopay import schedule_autopay

    assert schedule_autopay(world.sessions, JAN_DRAFT).created == 1
    jan = world.originate(JAN_DRAFT)["M1"]
    out = world.process(world.bank.nocs([(jan, code, parts)], NOC_DAY), d=NOC_DAY)
    assert out.nocs_applied == 1
    with world.sessions() as s:
        return s.scalars(select(AutopayMandate)).one().bank_account_id


def test_c04_holder_name_survives_a_reimport_and_a_third_name_is_noted(world, tmp_path):
    account_id = _pull_and_noc(world, tmp_path, "C04", {"individual_name": "AVERY SAMPLE-JONES"})
    again = _autopay(world, tmp_path, "autopay.csv", autopay_row())
    assert (again.loaded, again.updated, again.unchanged, again.rejected) == (0, 0, 1, [])
    assert [str(n) for n in again.notes] == [
        "line 2: account ****1234: holder name not applied: the NOC correction of 2026-12-24 (C04) was kept "
        "(the row carries the value from before the correction)"]
    # A name that is neither: the correction is kept too, and the note asks a person to look.
    third = _autopay(world, tmp_path, "autopay-3.csv", autopay_row(holder="Avery Q Public"))
    assert (third.updated, third.unchanged) == (0, 1)
    assert [str(n) for n in third.notes] == [
        "line 2: account ****1234: holder name not applied: the NOC correction of 2026-12-24 (C04) was kept "
        "(the row carries a value that is neither the corrected one nor one it replaced: a person should confirm "
        "it with the member)"]
    # The corrected name (in the portal's letter case) is plainly unchanged.
    same = _autopay(world, tmp_path, "autopay-4.csv", autopay_row(holder="Avery Sample-Jones"))
    assert (same.updated, same.unchanged, same.notes) == (0, 1, [])
    with world.sessions() as s:
        assert s.get(BankAccount, account_id).holder_name == "AVERY SAMPLE-JONES"


def test_rows_carrying_the_corrected_values_are_plainly_unchanged(world, tmp_path):
    account_id = _pull_and_noc(world, tmp_path, "C06", {"account_number": NEW_NUMBER, "transaction_code": "37"})
    r = _autopay(world, tmp_path, "autopay-new.csv", autopay_row(number=NEW_NUMBER, account_type="savings"))
    assert (r.loaded, r.updated, r.unchanged, r.rejected, r.notes) == (0, 0, 1, [], [])
    with world.sessions() as s:
        acct = s.get(BankAccount, account_id)
        assert (acct.last4, acct.account_type) == ("9876", "savings")
    assert world.count(BankAccount) == 1 and world.count(AutopayMandate) == 1


@pytest.mark.parametrize("code, parts, routing, shown", [
    ("C01", {"account_number": NEW_NUMBER}, "011000015", "****9876 instead of ****1234"),
    ("C02", {"routing_number": "021000021"}, "021000021", "021000021 ****1234 instead of 011000015 ****1234"),
    ("C03", {"routing_number": "021000021", "account_number": NEW_NUMBER}, "021000021",
     "021000021 ****9876 instead of 011000015 ****1234"),
    ("C07", {"routing_number": "021000021", "account_number": NEW_NUMBER, "transaction_code": "37"}, "021000021",
     "021000021 ****9876 instead of 011000015 ****1234"),
])
def test_mandate_and_payment_rows_with_the_old_number_resolve_to_the_corrected_account(
        world, tmp_path, code, parts, routing, shown):
    account_id = _pull_and_noc(world, tmp_path, code, parts)
    # The mandate file again, still with the old routing and number: the mandate stays.
    r = _autopay(world, tmp_path, "autopay.csv", autopay_row())
    assert (r.loaded, r.updated, r.unchanged, r.rejected) == (0, 0, 1, [])
    assert any(f"was corrected by the NOC correction of 2026-12-24 ({code})" in n.text
               and "the AutoPay mandate is on the corrected account" in n.text for n in r.notes), r.notes
    with world.sessions() as s:
        (mandate,) = s.scalars(select(AutopayMandate))
        assert (mandate.bank_account_id, mandate.status) == (account_id, "active")
        assert s.get(BankAccount, account_id).routing_number == routing
    # A phone payment with the old number: debited to the corrected account, audited once.
    path = write(tmp_path / "payments.csv", PAYMENT_HEADER,
                 payment_row("PH-1", "2027-02", "2027-01-05T08:00:00-05:00").replace(",portal,", ",phone,"))
    p = import_payments(world.sessions, path, keyring=world.keyring)
    assert (p.loaded, p.rejected) == (1, [])
    again = import_payments(world.sessions, path, keyring=world.keyring)
    assert (again.loaded, again.unchanged, again.rejected) == (0, 1, [])
    assert world.count(BankAccount) == 1 and world.count(PaymentEvent) == 1
    with world.sessions() as s:
        ph1 = s.scalars(select(Payment).where(Payment.confirmation_id == "PH-1")).one()
        assert ph1.bank_account_id == account_id
        reason = s.scalars(select(PaymentEvent.reason)).one()
        assert reason.startswith(f"NOC {code} applied 2026-12-24: debited to the corrected account {shown}")
        assert OLD_NUMBER not in reason and NEW_NUMBER not in reason
    nxt = world.originate(date(2027, 1, 5))["M1"].entry
    assert nxt.receiving_dfi_identification + nxt.check_digit == routing
    assert nxt.dfi_account_number == (NEW_NUMBER if "account_number" in parts else OLD_NUMBER)


def test_a_row_with_the_number_of_an_account_merged_by_a_noc_goes_to_the_live_record(world, tmp_path):
    # The corrected account was already on record as another row: the NOC merged the old row into it.
    assert _autopay(world, tmp_path, "autopay.csv", autopay_row()).loaded == 1
    from batch.collect.autopay import schedule_autopay

    schedule_autopay(world.sessions, JAN_DRAFT)
    # and a one-time payment from the same account, debited with the pull (in a file: not moved)
    before = write(tmp_path / "payments-0.csv", PAYMENT_HEADER,
                   payment_row("PC-0", "2027-01", "2026-12-21T10:00:00-05:00").replace("412.37", "10.00"))
    assert import_payments(world.sessions, before, keyring=world.keyring).loaded == 1
    jan = world.originate(JAN_DRAFT)["M1"]
    with world.sessions() as s, s.begin():
        other_id = world.account(s, NEW_NUMBER, "011000015", holder="AVERY SAMPLE").id
    world.process(world.bank.nocs([(jan, "C01", {"account_number": NEW_NUMBER})], NOC_DAY), d=NOC_DAY)
    with world.sessions() as s:
        old = s.scalars(select(BankAccount).where(BankAccount.id != other_id)).one()
        assert old.status == "blocked" and s.scalars(select(AutopayMandate)).one().bank_account_id == other_id
    r = _autopay(world, tmp_path, "autopay.csv", autopay_row())
    assert (r.unchanged, r.rejected) == (1, [])
    assert f"to ****9876 (record {other_id}): the AutoPay mandate is on the corrected account" in r.notes[0].text
    path = write(tmp_path / "payments.csv", PAYMENT_HEADER,
                 payment_row("PC-1", "2027-02", "2027-01-05T08:00:00-05:00"))
    p = import_payments(world.sessions, path, keyring=world.keyring)
    assert (p.loaded, p.rejected) == (1, [])
    assert world.payments("M1")[-1].bank_account_id == other_id
    assert world.count(BankAccount) == 2 and world.count(PaymentEvent, PaymentEvent.event == "account_corrected") == 1
    assert import_payments(world.sessions, path, keyring=world.keyring).unchanged == 1
    # PC-0, debited from the old record before the merge, still matches it on a re-import.
    again = import_payments(world.sessions, before, keyring=world.keyring)
    assert (again.unchanged, again.rejected) == (1, [])
    assert world.count(BankAccount) == 2 and world.count(PaymentEvent, PaymentEvent.event == "account_corrected") == 1


def test_an_account_blocked_by_a_return_still_refuses_rows_with_its_number(world, tmp_path):
    _pull_and_noc(world, tmp_path, "C01", {"account_number": NEW_NUMBER})
    with world.sessions() as s, s.begin():
        s.scalars(select(BankAccount)).one().status = "blocked"
    path = write(tmp_path / "payments.csv", PAYMENT_HEADER,
                 payment_row("PC-1", "2027-02", "2027-01-05T08:00:00-05:00"))
    p = import_payments(world.sessions, path, keyring=world.keyring)
    assert p.loaded == 0 and "****9876" in p.rejected[0].reason and "is blocked" in p.rejected[0].reason
    assert world.count(BankAccount) == 1 and world.count(PaymentEvent) == 0
