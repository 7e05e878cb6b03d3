"""CSV imports (batch/collect/imports.py, `achbatch import`), premium due dates and AutoPay draft dates
(batch/rules/premium_calendar.py). Database tests run on SQLite and PostgreSQL (`sessions` fixture)."""
from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from batch.collect.imports import (
    CARD_MESSAGE,
    HEADERS,
    ImportFileError,
    RowError,
    autopay_confirmation_id,
    import_autopay,
    import_file,
    import_payments,
    import_premiums,
    is_card_number,
    parse_amount,
    parse_payment_row,
    write_rejects,
)
from batch.store.models import AutopayMandate, BankAccount, ImportRun, Payment, Premium
from batch.rules.premium_calendar import autopay_draft_date, autopay_settlement_date, due_date, parse_coverage_month
from jobs.cli import cli
from nacha.calendar import effective_entry_date, is_banking_day

D = date.fromisoformat
NY = ZoneInfo("America/New_York")
SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"

PREMIUM_HEADER = ",".join(HEADERS["premiums"])
AUTOPAY_HEADER = ",".join(HEADERS["autopay"])
PAYMENT_HEADER = ",".join(HEADERS["payments"])


def write(tmp_path: Path, name: str, header: str, *rows: str, newline: str = "\n") -> Path:
    p = tmp_path / name
    p.write_bytes((newline.join([header, *rows]) + newline).encode("utf-8"))
    return p


def count(sessions, model, *where) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def reasons(result) -> dict[int, str]:
    return {r.line: r.reason for r in result.rejected}


# =============================================================================================
# Due dates and AutoPay draft dates
# =============================================================================================

@pytest.mark.parametrize("coverage, due", [
    ("2026-02", "2026-01-23"),
    ("2026-01", "2025-12-23"),  # January coverage: due in December of the year before
    ("2026-03", "2026-02-23"),
    ("2028-12", "2028-11-23"),
])
def test_due_date_is_23rd_of_month_before(coverage, due):
    assert due_date(parse_coverage_month(coverage)) == D(due)


def test_due_date_needs_first_of_month():
    with pytest.raises(ValueError):
        due_date(D("2026-02-15"))


# (due date, lead banking days, settlement date, draft = file date); weekdays and Fed holidays noted
DRAFT_TABLE = [
    ("2026-01-23", 0, "2026-01-23", "2026-01-22"),  # Fri: settles on the due date, file Thu
    ("2026-02-23", 0, "2026-02-23", "2026-02-20"),  # Mon: file the Friday before
    ("2026-05-23", 0, "2026-05-22", "2026-05-21"),  # Sat: settles Fri 22nd (on or before the 23rd)
    ("2026-08-23", 0, "2026-08-21", "2026-08-20"),  # Sun: settles Fri 21st
    ("2027-01-23", 0, "2027-01-22", "2027-01-21"),  # Sat
    ("2028-11-23", 0, "2028-11-22", "2028-11-21"),  # Thanksgiving Thu 2028-11-23: settles Wed
    ("2029-11-23", 0, "2029-11-23", "2029-11-21"),  # Fri after Thanksgiving: file Wed (Thu 22nd closed)
    ("2029-11-23", 1, "2029-11-21", "2029-11-20"),  # one lead day skips Thanksgiving too
    ("2026-05-23", 2, "2026-05-20", "2026-05-19"),  # Sat with two lead days: Fri 22 -> Wed 20
    ("2028-06-23", 4, "2028-06-16", "2028-06-15"),  # lead days skip Juneteenth (Mon 2028-06-19)
    ("2025-06-23", 0, "2025-06-23", "2025-06-20"),  # Mon, the Thursday before was Juneteenth
    ("2026-12-23", 0, "2026-12-23", "2026-12-22"),  # Wed before Christmas
]


@pytest.mark.parametrize("due, lead, settle, draft", DRAFT_TABLE)
def test_autopay_settlement_and_draft_dates(due, lead, settle, draft):
    assert autopay_settlement_date(D(due), lead) == D(settle)
    assert autopay_draft_date(D(due), lead) == D(draft)
    assert effective_entry_date(D(draft)) == D(settle)  # a file on the draft date settles that day


@settings(max_examples=300, deadline=None)
@given(month=st.dates(min_value=date(1991, 1, 1), max_value=date(2099, 12, 1)), lead=st.integers(0, 10))
def test_draft_date_properties(month, lead):
    due = due_date(date(month.year, month.month, 1))
    settle = autopay_settlement_date(due, lead)
    draft = autopay_draft_date(due, lead)
    assert is_banking_day(settle) and is_banking_day(draft)
    assert draft < settle <= due
    assert effective_entry_date(draft) == settle
    if lead == 0:  # the LAST banking day on or before the due date
        assert all(not is_banking_day(date.fromordinal(d)) for d in range(settle.toordinal() + 1, due.toordinal() + 1))


def test_negative_lead_days_refused():
    with pytest.raises(ValueError):
        autopay_settlement_date(D("2026-01-23"), -1)


# =============================================================================================
# Pure field checks
# =============================================================================================

@pytest.mark.parametrize("text, cents", [
    ("12", 1200), ("12.5", 1250), ("12.50", 1250), ("0.01", 1), ("412.37", 41237), ("99999999.99", 9_999_999_999),
    ("0007.10", 710),
])
def test_amounts_parse_to_cents_without_floats(text, cents):
    assert parse_amount(text) == cents


@pytest.mark.parametrize("text", ["", "12.345", "1,200.00", "-5.00", "+5", "$5", "0", "0.00", "1e3", "12.", ".5",
                                  "١٢", "12 .00", "100000000.00", "NaN"])
def test_bad_amounts_are_rejected(text):
    with pytest.raises(RowError):
        parse_amount(text)


@pytest.mark.parametrize("number, card", [
    ("4111111111111111", True), ("4111 1111 1111 1111", True), ("4111-1111-1111-1111", True),
    ("378282246310005", True), ("6011111111111117", True), ("4222222222222", True),
    ("4111111111111112", False),  # fails Luhn
    ("123456789012", False),  # too short to be a card (Luhn-valid 12 digits)
    ("79927398713", False),  # Luhn-valid but 11 digits
    ("12345678", False),
])
def test_card_numbers(number, card):
    assert is_card_number(number) is card


def _payment_row(**kw):
    row = dict(confirmation_id="PC-1", submitted_at="2026-01-15T10:00:00-05:00", channel="portal", member_id="M1",
               plan_id="P1", coverage_month="2026-02", amount="10.00", routing_number="011000015",
               account_number="12345678", account_type="checking", account_holder="Pat Q")
    row.update(kw)
    return row


@pytest.mark.parametrize("changes, reason", [
    ({"account_number": "4111111111111111"}, CARD_MESSAGE),
    ({"account_number": "4111 1111 1111 1111"}, CARD_MESSAGE),
    ({"account_type": "card"}, CARD_MESSAGE),
    ({"account_type": "Debit"}, CARD_MESSAGE),
    ({"account_type": "credit"}, CARD_MESSAGE),
    ({"account_type": "credit card"}, CARD_MESSAGE),
    ({"account_type": "prepaid"}, CARD_MESSAGE),
    ({"channel": "mail", "routing_number": "", "account_number": "4111111111111111"}, CARD_MESSAGE),
])
def test_cards_rejected_with_exact_message(changes, reason):
    with pytest.raises(RowError) as exc:
        parse_payment_row(_payment_row(**changes), NY)
    assert str(exc.value) == reason


@pytest.mark.parametrize("changes, words", [
    ({"routing_number": "011000016"}, "check digit should be 5"),
    ({"routing_number": "01100001"}, "9 digits"),
    ({"routing_number": ""}, "routing_number is empty"),
    ({"account_number": "123"}, "4 to 17 digits"),
    ({"account_number": "123456789012345678"}, "4 to 17 digits"),
    ({"account_number": "12AB5678"}, "4 to 17 digits"),
    ({"account_number": "１２３４５６７８"}, "4 to 17 digits"),  # full-width digits are not ASCII 0-9
    ({"account_type": "money market"}, "checking or savings"),
    ({"account_holder": ""}, "account_holder is empty"),
    ({"channel": "autopay"}, "channel must be"),
    ({"channel": "card"}, "channel must be"),
    ({"coverage_month": "2026-2"}, "YYYY-MM"),
    ({"coverage_month": "2026-13"}, "01-12"),
    ({"coverage_month": "02/2026"}, "YYYY-MM"),
    ({"amount": "0.00"}, "more than 0.00"),
    ({"amount": "10.001"}, "two decimals"),
    ({"submitted_at": "01/15/2026"}, "ISO"),
    ({"submitted_at": "2026-02-30T10:00:00"}, "not a valid date-time"),
    ({"member_id": "M 1"}, "only letters, digits"),
    ({"member_id": "M1234567890123456"}, "at most 15"),
    ({"confirmation_id": "AP-17"}, "reserved"),
    ({"channel": "mail", "routing_number": "011000015", "account_number": ""}, "leave routing_number"),
])
def test_payment_row_checks(changes, words):
    with pytest.raises(RowError) as exc:
        parse_payment_row(_payment_row(**changes), NY)
    assert words in str(exc.value)
    assert "12345678" not in str(exc.value) or changes.get("account_number") == "12345678"


def test_account_numbers_never_in_reasons():
    with pytest.raises(RowError) as exc:
        parse_payment_row(_payment_row(account_number="123456789012345678"), NY)
    assert "123456789012345678" not in str(exc.value) and "5678" in str(exc.value)


def test_payment_row_mapping():
    portal = parse_payment_row(_payment_row(), NY)
    assert (portal.sec_code, portal.payment_type_code, portal.state) == ("WEB", "S", "pending")
    guest = parse_payment_row(_payment_row(channel="guest", submitted_at="2026-01-16T03:10:00Z"), NY)
    assert guest.originate_on == D("2026-01-15")  # 22:10 on the 15th in New York
    assert guest.submitted_at == datetime(2026, 1, 16, 3, 10, tzinfo=timezone.utc)
    phone = parse_payment_row(_payment_row(channel="phone", submitted_at="2026-01-15 23:59"), NY)
    assert (phone.sec_code, phone.payment_type_code, phone.originate_on) == ("TEL", "S", D("2026-01-15"))
    assert phone.submitted_at == datetime(2026, 1, 16, 4, 59, tzinfo=timezone.utc)  # local time without offset
    mail = parse_payment_row(_payment_row(channel="mail", routing_number="", account_number="", account_type="",
                                          account_holder=""), NY)
    assert (mail.sec_code, mail.payment_type_code, mail.state, mail.bank, mail.originate_on) == (None, "", "paid",
                                                                                                 None, None)
    assert "12345678" not in repr(portal)  # the bank fields repr masks the number


def test_reserved_confirmation_ids():
    assert autopay_confirmation_id(42) == "AP-42"


# =============================================================================================
# Premiums
# =============================================================================================

def test_premiums_good_and_bad_rows(sessions, tmp_path):
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER,
                 "M1,Avery Sample,HLTH-1,2026-02,412.37,aptc,yes",
                 "M2,Jordan Example,HLTH-2,2026-02,12.345,none,no",  # line 3: three decimals
                 "M3,Riley P,HLTH-1,2026-13,100.00,none,no",  # line 4: month 13
                 "M4,Casey F,HLTH-1,2026-03,100.00,medicaid,no",  # line 5: subsidy
                 "M5,Morgan T,HLTH-1,2026-03,100.00,none,maybe",  # line 6: binder
                 "M6,Sam R,HLTH-1,2026-03,0.00,connectorcare,no",  # line 7: nothing to collect
                 "M7,Too,Many,Fields,2026-03,1.00,none,no",  # line 8
                 "M8,Lee W,DENT-1,2026-03,24.10,connectorcare,NO")
    result = import_premiums(sessions, path)
    assert (result.rows_total, result.loaded, result.updated, result.unchanged) == (8, 2, 0, 0)
    r = reasons(result)
    assert sorted(r) == [3, 4, 5, 6, 7, 8]
    assert "two decimals" in r[3] and "01-12" in r[4] and "subsidy" in r[5] and "binder" in r[6]
    assert "more than 0.00" in r[7] and "expected 7 fields, got 8" in r[8]
    with sessions() as s:
        p = s.scalars(select(Premium).where(Premium.member_id == "M1")).one()
        assert (p.amount_due_cents, p.subsidy, p.binder, p.coverage_month, p.due_date) == (
            41237, "aptc", True, D("2026-02-01"), D("2026-01-23"))
        assert s.scalars(select(Premium).where(Premium.member_id == "M8")).one().binder is False


def test_premium_reimport_changes_nothing_and_changed_amount_updates(sessions, tmp_path):
    rows = ["M1,Avery Sample,HLTH-1,2026-02,412.37,aptc,yes", "M2,Jordan Example,HLTH-2,2026-02,689.00,none,no"]
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER, *rows)
    assert import_premiums(sessions, path).loaded == 2
    with sessions() as s:
        before = {p.member_id: (p.id, p.updated_at) for p in s.scalars(select(Premium))}
    again = import_premiums(sessions, path)
    assert (again.loaded, again.updated, again.unchanged, again.rejected) == (0, 0, 2, [])
    assert again.previous_run_id is not None
    with sessions() as s:
        assert {p.member_id: (p.id, p.updated_at) for p in s.scalars(select(Premium))} == before

    changed = write(tmp_path, "premiums2.csv", PREMIUM_HEADER, rows[0], "M2,Jordan Example,HLTH-2,2026-02,700.00,none,no")
    result = import_premiums(sessions, changed)
    assert (result.loaded, result.updated, result.unchanged) == (0, 1, 1)
    with sessions() as s:
        m2 = s.scalars(select(Premium).where(Premium.member_id == "M2")).one()
        assert m2.amount_due_cents == 70000 and m2.id == before["M2"][0]
        assert m2.updated_at > before["M2"][1]
        assert s.scalars(select(Premium).where(Premium.member_id == "M1")).one().updated_at == before["M1"][1]
    assert count(sessions, Premium) == 2
    with sessions() as s:
        runs = s.scalars(select(ImportRun).order_by(ImportRun.id)).all()
    assert [(r.rows_loaded, r.rows_updated, r.rows_unchanged) for r in runs] == [(2, 0, 0), (0, 0, 2), (0, 1, 1)]


def test_repeated_key_in_one_file_and_small_chunks(sessions, tmp_path):
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER,
                 *[f"M{i},Name {i},P1,2026-02,{i}.00,none,no" for i in range(1, 8)],
                 "M3,Name 3,P1,2026-02,33.00,none,no")  # the later row wins, like a later file
    seen = []
    result = import_premiums(sessions, path, chunk_size=3, progress=seen.append)
    assert (result.rows_total, result.loaded, result.updated) == (8, 7, 1)
    assert seen == sorted(seen) and seen[-1] == 8 and len(seen) >= 3
    with sessions() as s:
        assert s.scalar(select(Premium.amount_due_cents).where(Premium.member_id == "M3")) == 3300


# =============================================================================================
# File-level problems and CSV details
# =============================================================================================

def test_bad_header_and_unreadable_files(sessions, keyring, tmp_path):
    with pytest.raises(ImportFileError, match="no such file"):
        import_premiums(sessions, tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ImportFileError, match="empty file"):
        import_premiums(sessions, tmp_path / "empty.csv")
    bad = write(tmp_path, "bad.csv", "member_id,member_name,plan,coverage_month,amount_due,subsidy,binder",
                "M1,A,P1,2026-02,1.00,none,no")
    with pytest.raises(ImportFileError) as exc:
        import_premiums(sessions, bad)
    assert "missing plan_id" in str(exc.value) and "unknown 'plan'" in str(exc.value) and "line 1" in str(exc.value)
    no_header = write(tmp_path, "noheader.csv", "M1,A,P1,2026-02,1.00,none,no")
    with pytest.raises(ImportFileError):
        import_premiums(sessions, no_header)
    wrong_kind = write(tmp_path, "wrong.csv", PREMIUM_HEADER, "M1,A,P1,2026-02,1.00,none,no")
    with pytest.raises(ImportFileError):
        import_file("payments", sessions, wrong_kind, keyring=keyring)
    assert count(sessions, Premium) == 0 and count(sessions, ImportRun) == 0


def test_csv_details_line_numbers(sessions, tmp_path):
    # BOM, CRLF, columns in another order, a quoted field with a line break, blank lines, bad UTF-8
    header = "binder,subsidy,amount_due,coverage_month,plan_id,member_name,member_id"
    body = (
        "\ufeff" + header + "\r\n"
        "yes,aptc,412.37,2026-02,P1,Avery Sample,M1\r\n"  # line 2
        "\r\n"  # line 3 blank
        'no,none,10.00,2026-02,P1,"Jordan\r\nExample",M2\r\n'  # lines 4-5: control character in a name
        "no,none,1.5,2026-02,P1,\"Riley, P\",M3\r\n"  # line 6
    ).encode("utf-8") + b"no,none,2.00,2026-02,P1,Caf\xe9,M4\r\n" + b"no,none,x,2026-02,P1,Lee,M5\r\n"
    path = tmp_path / "p.csv"
    path.write_bytes(body)
    result = import_premiums(sessions, path)
    assert result.loaded == 2 and result.rows_total == 5
    assert reasons(result) == {4: "member_name contains control characters", 7: "not valid UTF-8 text",
                               8: "amount_due must be dollars with at most two decimals (e.g. 123.45), got 'x'"}
    with sessions() as s:
        assert s.scalar(select(Premium.member_name).where(Premium.member_id == "M3")) == "Riley, P"


# =============================================================================================
# AutoPay mandates
# =============================================================================================

def test_autopay_good_and_bad_rows(sessions, keyring, tmp_path):
    path = write(tmp_path, "autopay.csv", AUTOPAY_HEADER,
                 "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02T09:15:00-05:00,web",
                 "M2,P1,021000021,55550001234,savings,Jordan Example,2025-11-20,paper",
                 "M3,P1,011000016,12345678,checking,Riley P,2025-11-20,web",  # line 4: routing
                 "M4,P1,026009593,4111111111111111,checking,Casey F,2025-11-20,web",  # line 5: card
                 "M5,P1,026009593,12345678,debit card,Morgan T,2025-11-20,web",  # line 6: card type
                 "M6,P1,026009593,12345678,checking,Sam R,2025-11-20,email",  # line 7: channel
                 "M7,P1,026009593,12345678,checking,Lee W,yesterday,web")  # line 8: date
    result = import_autopay(sessions, path, keyring=keyring)
    assert (result.loaded, len(result.rejected)) == (2, 5)
    r = reasons(result)
    assert "check digit" in r[4] and r[5] == CARD_MESSAGE and r[6] == CARD_MESSAGE
    assert "channel must be web or paper" in r[7] and "ISO" in r[8]
    with sessions() as s:
        m1 = s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == "M1")).one()
        assert (m1.status, m1.channel, m1.active_key) == ("active", "web", "M1|P1")
        assert m1.authorized_at == datetime(2025, 12, 2, 14, 15, tzinfo=timezone.utc)
        m2 = s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == "M2")).one()
        assert m2.authorized_at == datetime(2025, 11, 20, 5, 0, tzinfo=timezone.utc)  # midnight in New York
        acct = s.get(BankAccount, m1.bank_account_id)
        assert (acct.last4, acct.account_type, acct.validation_result, acct.status) == (
            "1234", "checking", "unvalidated", "active")
        assert keyring.decrypt_account(acct.account_number_enc) == "4004001234"
    again = import_autopay(sessions, path, keyring=keyring)
    assert (again.loaded, again.updated, again.unchanged, len(again.rejected)) == (0, 0, 2, 5)
    assert count(sessions, AutopayMandate) == 2 and count(sessions, BankAccount) == 2


def test_mandate_account_change_supersedes(sessions, keyring, tmp_path):
    first = write(tmp_path, "a1.csv", AUTOPAY_HEADER,
                  "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02T09:15:00-05:00,web")
    assert import_autopay(sessions, first, keyring=keyring).loaded == 1
    with sessions() as s, s.begin():  # the first account was validated meanwhile
        acct = s.scalars(select(BankAccount)).one()
        acct.validation_result, acct.validation_method, acct.validated_on = "valid", "prenote", D("2025-12-05")
        old_account_id = acct.id

    changed = write(tmp_path, "a2.csv", AUTOPAY_HEADER,
                    "M1,P1,021000021,987654321,savings,Avery Sample,2026-01-10T12:00:00-05:00,web")
    result = import_autopay(sessions, changed, keyring=keyring)
    assert (result.loaded, result.updated, result.rejected) == (0, 1, [])
    with sessions() as s:
        mandates = s.scalars(select(AutopayMandate).order_by(AutopayMandate.id)).all()
        assert [(m.status, m.status_reason, m.active_key) for m in mandates] == [
            ("revoked", "replaced", None), ("active", None, "M1|P1")]
        assert mandates[0].ended_at is not None
        new_acct = s.get(BankAccount, mandates[1].bank_account_id)
        assert new_acct.id != old_account_id
        assert (new_acct.routing_number, new_acct.last4, new_acct.account_type) == ("021000021", "4321", "savings")
        assert new_acct.validation_result == "unvalidated"  # a changed account must be validated again
        assert s.get(BankAccount, old_account_id).validation_result == "valid"

    # The old file again: that authorization was replaced and must not come back.
    stale = import_autopay(sessions, first, keyring=keyring)
    assert (stale.loaded, stale.updated, stale.unchanged, stale.rejected) == (0, 0, 1, [])
    # An older authorization on yet another account is refused, not applied.
    older = write(tmp_path, "a3.csv", AUTOPAY_HEADER,
                  "M1,P1,026009593,55501234,checking,Avery Sample,2025-12-20,web")
    r = import_autopay(sessions, older, keyring=keyring)
    assert len(r.rejected) == 1 and "not later than the current mandate" in r.rejected[0].reason
    # A renewed authorization on the same account updates the live mandate in place.
    renewed = write(tmp_path, "a4.csv", AUTOPAY_HEADER,
                    "M1,P1,021000021,987654321,savings,Avery Sample,2026-02-01T08:00:00-05:00,paper")
    r = import_autopay(sessions, renewed, keyring=keyring)
    assert (r.updated, r.rejected) == (1, [])
    with sessions() as s:
        live = s.scalars(select(AutopayMandate).where(AutopayMandate.status == "active")).one()
        assert live.channel == "paper" and live.authorized_at == datetime(2026, 2, 1, 13, 0, tzinfo=timezone.utc)
    assert count(sessions, AutopayMandate) == 2
    assert count(sessions, AutopayMandate, AutopayMandate.status == "active") == 1


def test_autopay_authorized_amount_column(sessions, keyring, tmp_path):
    """The optional `authorized_amount_cents` column: stored on the mandate; a bad value rejects the
    row with its column and reason (the others load); a later row with another value updates the
    live mandate; a row without it (empty, or a file without the column) keeps the stored amount."""
    header = AUTOPAY_HEADER + ",authorized_amount_cents"
    path = write(tmp_path, "amounts.csv", header,
                 "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02,web,15000",
                 "M2,P1,021000021,55550001234,savings,Jordan Example,2025-11-20,paper,",  # empty: none
                 "M3,P1,026009593,12345678,checking,Riley P,2025-11-20,web,0",  # line 4
                 "M4,P1,026009593,22345678,checking,Casey F,2025-11-20,web,150.00",  # line 5
                 "M5,P1,026009593,32345678,checking,Sam R,2025-11-20,web,-5")  # line 6
    result = import_autopay(sessions, path, keyring=keyring)
    assert (result.loaded, len(result.rejected)) == (2, 3)
    assert [(r.line, r.column) for r in result.rejected] == [(4, "authorized_amount_cents")] * 1 + [
        (5, "authorized_amount_cents"), (6, "authorized_amount_cents")]
    r = reasons(result)
    assert r[4] == "authorized_amount_cents must be more than 0"
    assert "whole number of cents" in r[5] and "is negative" in r[6]
    rejects = write_rejects(result, tmp_path / "rejects.csv").read_text().splitlines()
    assert rejects[0].endswith(",channel,authorized_amount_cents") and rejects[1].endswith(",web,0")
    assert "12345678" not in "".join(rejects)  # account numbers masked

    def amounts():
        with sessions() as s:
            return dict(s.execute(select(AutopayMandate.member_id, AutopayMandate.authorized_amount_cents)
                                  .where(AutopayMandate.status == "active")).all())

    assert amounts() == {"M1": 15000, "M2": None}
    again = import_autopay(sessions, path, keyring=keyring)
    assert (again.loaded, again.updated, again.unchanged) == (0, 0, 2)
    # the enrollment system raises M1's authorized range: the live mandate is updated in place
    raised = write(tmp_path, "raised.csv", header,
                   "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02,web,17500",
                   "M2,P1,021000021,55550001234,savings,Jordan Example,2025-11-20,paper,9000")
    assert import_autopay(sessions, raised, keyring=keyring).updated == 2
    assert amounts() == {"M1": 17500, "M2": 9000}
    # an old-format file (no column) changes nothing, and keeps the amounts
    old = write(tmp_path, "old.csv", AUTOPAY_HEADER,
                "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02,web")
    r = import_autopay(sessions, old, keyring=keyring)
    assert (r.loaded, r.updated, r.unchanged, r.rejected) == (0, 0, 1, [])
    assert amounts() == {"M1": 17500, "M2": 9000}
    # an unknown extra column still rejects the whole file
    with pytest.raises(ImportFileError, match="unknown 'authorised_amount'"):
        import_autopay(sessions, write(tmp_path, "bad.csv", AUTOPAY_HEADER + ",authorised_amount",
                                       "M1,P1,011000015,4004001234,checking,Avery Sample,2025-12-02,web,1"),
                       keyring=keyring)


def test_two_mandate_changes_in_one_file(sessions, keyring, tmp_path):
    path = write(tmp_path, "a.csv", AUTOPAY_HEADER,
                 "M1,P1,011000015,11112222,checking,Avery Sample,2026-01-01,web",
                 "M1,P1,021000021,33334444,checking,Avery Sample,2026-01-02,web",
                 "M1,P1,026009593,55556666,checking,Avery Sample,2026-01-03,web")
    result = import_autopay(sessions, path, keyring=keyring)
    assert (result.loaded, result.updated, result.rejected) == (1, 2, [])
    with sessions() as s:
        assert [m.status for m in s.scalars(select(AutopayMandate).order_by(AutopayMandate.id))] == [
            "revoked", "revoked", "active"]


def test_mandates_replaced_together_in_one_chunk(sessions, keyring, tmp_path):
    """Several mandates of one chunk replaced at once (each revocation frees its member's live slot
    before the chunk's new mandates are loaded), two of them onto one account new to the ledger
    (created once), one onto an account already recorded, next to a member new to AutoPay."""
    first = write(tmp_path, "a1.csv", AUTOPAY_HEADER,
                  "M1,P1,011000015,11110001,checking,Avery Sample,2026-01-01,web",
                  "M2,P1,011000015,22220002,checking,Jordan Example,2026-01-01,web",
                  "M3,P1,011000015,33330003,checking,Riley P,2026-01-01,paper")
    assert import_autopay(sessions, first, keyring=keyring).loaded == 3
    second = write(tmp_path, "a2.csv", AUTOPAY_HEADER,
                   "M1,P1,021000021,99990009,savings,Avery Sample,2026-02-01,web",
                   "M2,P1,021000021,99990009,savings,Avery Sample,2026-02-01,web",
                   "M3,P1,011000015,11110001,checking,Avery Sample,2026-02-01,paper",
                   "M4,P1,021000021,99990009,savings,Avery Sample,2026-02-01,web")
    result = import_autopay(sessions, second, keyring=keyring)
    assert (result.loaded, result.updated, result.unchanged, result.rejected) == (1, 3, 0, [])
    assert count(sessions, BankAccount) == 4  # 99990009 recorded once
    with sessions() as s:
        rows = s.execute(select(AutopayMandate.member_id, AutopayMandate.status, AutopayMandate.status_reason,
                                AutopayMandate.active_key, AutopayMandate.bank_account_id,
                                AutopayMandate.authorized_at).order_by(AutopayMandate.id)).all()
        number = {a.id: keyring.decrypt_account(a.account_number_enc) for a in s.scalars(select(BankAccount))}
    assert [(m, st, why, key, number[acct]) for m, st, why, key, acct, _ in rows] == [
        ("M1", "revoked", "replaced", None, "11110001"),
        ("M2", "revoked", "replaced", None, "22220002"),
        ("M3", "revoked", "replaced", None, "33330003"),
        ("M1", "active", None, "M1|P1", "99990009"),
        ("M2", "active", None, "M2|P1", "99990009"),
        ("M3", "active", None, "M3|P1", "11110001"),
        ("M4", "active", None, "M4|P1", "99990009"),
    ]
    assert {at for *_, at in rows[3:]} == {datetime(2026, 2, 1, 5, 0, tzinfo=timezone.utc)}
    again = import_autopay(sessions, second, keyring=keyring)
    assert (again.loaded, again.updated, again.unchanged, again.rejected) == (0, 0, 4, [])
    assert count(sessions, AutopayMandate) == 7


def test_blocked_account_refused_for_new_mandate(sessions, keyring, tmp_path):
    path = write(tmp_path, "a.csv", AUTOPAY_HEADER, "M1,P1,011000015,11112222,checking,Avery Sample,2026-01-01,web")
    import_autopay(sessions, path, keyring=keyring)
    with sessions() as s, s.begin():
        acct = s.scalars(select(BankAccount)).one()
        acct.status, acct.status_reason = "blocked", "R02 account closed"
    other = write(tmp_path, "b.csv", AUTOPAY_HEADER, "M2,P1,011000015,11112222,checking,Avery Sample,2026-01-05,web")
    r = import_autopay(sessions, other, keyring=keyring)
    assert len(r.rejected) == 1 and "blocked (R02 account closed)" in r.rejected[0].reason
    assert "****2222" in r.rejected[0].reason and "11112222" not in r.rejected[0].reason


# =============================================================================================
# Payments
# =============================================================================================

def _premiums(sessions, tmp_path):
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER,
                 "M1,Avery Sample,P1,2026-02,412.37,aptc,yes",
                 "M2,Jordan Example,P2,2026-02,689.00,none,no")
    assert import_premiums(sessions, path).loaded == 2


def test_payments_good_and_bad_rows(sessions, keyring, tmp_path):
    _premiums(sessions, tmp_path)
    path = write(tmp_path, "payments.csv", PAYMENT_HEADER,
                 "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,412.37,011000015,4004001234,checking,Avery Sample",
                 "GP-2,2026-01-16T03:10:00Z,guest,M2,P2,2026-02,689.00,021000021,55550001234,savings,Jordan Example",
                 "PH-3,2026-01-15T16:05:00-05:00,phone,M9,P9,2026-03,20.00,091000019,88812345,savings,Casey F",
                 "ML-4,2026-01-15,mail,M2,P2,2026-02,100.00,,,,",
                 "PC-5,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,10.00,011000015,4111111111111111,checking,A S",
                 "PC-6,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,10.00,011000016,4004001234,checking,A S",
                 "GP-7,2026-01-15T10:00:00-05:00,guest,M404,P1,2026-02,10.00,011000015,4004001234,checking,A S",
                 "GP-8,2026-01-15T10:00:00-05:00,guest,M1,P1,2026-03,10.00,011000015,4004001234,checking,A S",
                 "PC-9,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,-10.00,011000015,4004001234,checking,A S",
                 "PC-10,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,10.00,011000015,4004001234,credit,A S",
                 "PC-11,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,10.00,011000015,123,checking,A S",
                 "PC-12,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,10.00,011000015,4004001234,brokerage,A S")
    result = import_payments(sessions, path, keyring=keyring, timezone="America/New_York")
    assert (result.rows_total, result.loaded) == (12, 4)
    r = reasons(result)
    assert sorted(r) == [6, 7, 8, 9, 10, 11, 12, 13]
    assert r[6] == CARD_MESSAGE and r[11] == CARD_MESSAGE
    assert "check digit" in r[7]
    assert "unknown member and plan" in r[8] and "M404" in r[8]
    assert "unknown member and plan" in r[9] and "2026-03" in r[9]  # known member, no premium for that month
    assert "amount is negative (-10.00)" in r[10] and "4 to 17 digits" in r[12] and "checking or savings" in r[13]
    with sessions() as s:
        got = {p.confirmation_id: p for p in s.scalars(select(Payment))}
        premium = {p.member_id: p.id for p in s.scalars(select(Premium))}
    pc1, gp2, ph3, ml4 = got["PC-1"], got["GP-2"], got["PH-3"], got["ML-4"]
    assert (pc1.sec_code, pc1.payment_type_code, pc1.state, pc1.originate_on, pc1.amount_cents) == (
        "WEB", "S", "pending", D("2026-01-15"), 41237)
    assert pc1.premium_id == premium["M1"]
    assert (gp2.sec_code, gp2.payment_type_code, gp2.originate_on, gp2.premium_id) == (
        "WEB", "S", D("2026-01-15"), premium["M2"])
    assert (ph3.sec_code, ph3.payment_type_code, ph3.premium_id) == ("TEL", "S", None)  # no premium: still loads
    assert (ml4.state, ml4.bank_account_id, ml4.sec_code, ml4.payment_type_code, ml4.originate_on) == (
        "paid", None, None, "", None)
    assert pc1.submitted_at == datetime(2026, 1, 15, 15, 42, 5, tzinfo=timezone.utc)
    assert count(sessions, BankAccount) == 3


def test_new_accounts_every_column(sessions, keyring, tmp_path):
    """Accounts created by a payments import and an AutoPay import (bulk-loaded, several per chunk)
    carry every column as a new account should: the number encrypted under the current key (its
    key id), the keyed hash of routing and number, the last four digits, the row's type and holder,
    active and unvalidated, nothing validated yet; a later row of the same chunk on the same new
    account gives it that row's type and holder (AutoPay)."""
    _premiums(sessions, tmp_path)
    payments = write(tmp_path, "p.csv", PAYMENT_HEADER,
                     "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,412.37,011000015,4004001234,checking,Avery Sample",
                     "PC-2,2026-01-15T10:43:00-05:00,phone,M2,P2,2026-02,20.00,021000021,55550001234,savings,Jordan Example")
    assert import_payments(sessions, payments, keyring=keyring).loaded == 2
    mandates = write(tmp_path, "a.csv", AUTOPAY_HEADER,
                     "M7,P1,026009593,777700077,checking,Casey F,2026-01-02,web",
                     "M8,P1,026009593,777700077,savings,Casey And Lee F,2026-01-02,paper")
    assert import_autopay(sessions, mandates, keyring=keyring, chunk_size=10).loaded == 2
    with sessions() as s:
        accounts = s.scalars(select(BankAccount).order_by(BankAccount.routing_number)).all()
        got = [(keyring.decrypt_account(a.account_number_enc), a.routing_number, a.account_hash, a.key_id, a.last4,
                a.account_type, a.holder_name, a.status, a.status_reason, a.validation_method, a.validated_on,
                a.validation_result, a.created_at is not None, a.updated_at is not None) for a in accounts]
        mandate_accounts = set(s.scalars(select(AutopayMandate.bank_account_id)))
    kid = keyring.key_id_of(keyring.encrypt_account("1234"))  # the current key's id
    assert got == [
        ("4004001234", "011000015", keyring.account_hash("011000015", "4004001234"), kid, "1234", "checking",
         "Avery Sample", "active", None, None, None, "unvalidated", True, True),
        ("55550001234", "021000021", keyring.account_hash("021000021", "55550001234"), kid, "1234", "savings",
         "Jordan Example", "active", None, None, None, "unvalidated", True, True),
        ("777700077", "026009593", keyring.account_hash("026009593", "777700077"), kid, "0077", "savings",
         "Casey And Lee F", "active", None, None, None, "unvalidated", True, True),
    ]
    assert mandate_accounts == {accounts[2].id}


def test_payment_confirmation_id_is_idempotent(sessions, keyring, tmp_path):
    _premiums(sessions, tmp_path)
    row = "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,412.37,011000015,4004001234,checking,Avery Sample"
    path = write(tmp_path, "p1.csv", PAYMENT_HEADER, row, "ML-2,2026-01-15,mail,M2,P2,2026-02,100.00,,,,")
    assert import_payments(sessions, path, keyring=keyring).loaded == 2
    with sessions() as s:
        before = [(p.id, p.updated_at, p.state) for p in s.scalars(select(Payment).order_by(Payment.id))]

    again = import_payments(sessions, path, keyring=keyring)
    assert (again.loaded, again.unchanged, again.rejected) == (0, 2, [])
    # Another export carrying the same payment (same confirmation id and details): unchanged.
    other = write(tmp_path, "p2.csv", PAYMENT_HEADER, row,
                  "PC-3,2026-01-16T09:00:00-05:00,portal,M2,P2,2026-02,5.00,011000015,4004001234,checking,Avery Sample")
    r = import_payments(sessions, other, keyring=keyring)
    assert (r.loaded, r.unchanged) == (1, 1)
    # The same confirmation id with different details changes nothing and is reported.
    conflict = write(tmp_path, "p3.csv", PAYMENT_HEADER,
                     "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,400.00,011000015,7001234,checking,Avery S")
    r = import_payments(sessions, conflict, keyring=keyring)
    assert r.loaded == 0 and len(r.rejected) == 1
    assert "already recorded with a different amount, bank account" in r.rejected[0].reason
    with sessions() as s:
        after = [(p.id, p.updated_at, p.state) for p in s.scalars(select(Payment).order_by(Payment.id))]
        assert after[:2] == before
        assert s.scalar(select(Payment.amount_cents).where(Payment.confirmation_id == "PC-1")) == 41237
    assert count(sessions, Payment) == 3
    assert count(sessions, BankAccount) == 1  # PC-3 reused the same account; the conflict created none


def test_payment_reimport_after_premium_arrives(sessions, keyring, tmp_path):
    row = "GP-1,2026-01-15T10:00:00-05:00,guest,M1,P1,2026-02,412.37,011000015,4004001234,checking,Avery Sample"
    path = write(tmp_path, "p.csv", PAYMENT_HEADER, row)
    first = import_payments(sessions, path, keyring=keyring)
    assert first.loaded == 0 and len(first.rejected) == 1
    assert count(sessions, BankAccount) == 0  # a rejected row leaves nothing behind
    _premiums(sessions, tmp_path)
    second = import_payments(sessions, path, keyring=keyring)
    assert (second.loaded, second.rejected) == (1, [])
    assert second.previous_run_id == first.import_run_id


def test_payment_shares_account_with_mandate_and_blocked_refused(sessions, keyring, tmp_path):
    _premiums(sessions, tmp_path)
    import_autopay(sessions, write(tmp_path, "a.csv", AUTOPAY_HEADER,
                                   "M1,P1,011000015,4004001234,checking,Avery Sample,2026-01-01,web"), keyring=keyring)
    pay = write(tmp_path, "p.csv", PAYMENT_HEADER,
                "PC-1,2026-01-15T10:00:00-05:00,portal,M1,P1,2026-02,1.00,011000015,4004001234,checking,Avery Sample")
    assert import_payments(sessions, pay, keyring=keyring).loaded == 1
    with sessions() as s, s.begin():
        mandate = s.scalars(select(AutopayMandate)).one()
        payment = s.scalars(select(Payment)).one()
        assert payment.bank_account_id == mandate.bank_account_id
        s.get(BankAccount, payment.bank_account_id).status = "blocked"
    pay2 = write(tmp_path, "p2.csv", PAYMENT_HEADER,
                 "PC-2,2026-01-16T10:00:00-05:00,portal,M1,P1,2026-02,1.00,011000015,4004001234,checking,Avery Sample")
    r = import_payments(sessions, pay2, keyring=keyring)
    assert r.loaded == 0 and "is blocked" in r.rejected[0].reason


# =============================================================================================
# The sample files and the CLI
# =============================================================================================

def test_sample_files_load_as_documented(sessions, keyring):
    assert import_premiums(sessions, SAMPLES / "premiums.csv").loaded == 6
    assert import_autopay(sessions, SAMPLES / "autopay.csv", keyring=keyring).loaded == 3
    pay = import_payments(sessions, SAMPLES / "payments.csv", keyring=keyring)
    assert (pay.loaded, pay.rejected) == (4, [])
    assert count(sessions, BankAccount) == 5  # 3 AutoPay + guest + phone: the portal payment reused M100001's
    bad = import_payments(sessions, SAMPLES / "payments-rejected-rows.csv", keyring=keyring)
    assert bad.loaded == 1 and sorted(reasons(bad)) == [2, 3, 4, 5, 7]
    assert reasons(bad)[2] == CARD_MESSAGE and reasons(bad)[7] == CARD_MESSAGE
    for path in (SAMPLES / "premiums.csv", SAMPLES / "payments.csv"):
        again = import_file("premiums" if "premiums" in path.name else "payments", sessions, path, keyring=keyring)
        assert again.loaded == again.updated == 0 and not again.rejected


def test_cli_import_exit_codes_and_masked_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ACHBATCH_") and "__" in n]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    ok = runner.invoke(cli, ["import", "premiums", str(SAMPLES / "premiums.csv")])
    assert ok.exit_code == 0 and "6 loaded" in ok.stdout
    assert runner.invoke(cli, ["import", "autopay", str(SAMPLES / "autopay.csv")]).exit_code == 0
    assert runner.invoke(cli, ["import", "payments", str(SAMPLES / "payments.csv")]).exit_code == 0
    bad = runner.invoke(cli, ["import", "payments", str(SAMPLES / "payments-rejected-rows.csv")])
    assert bad.exit_code == 1
    assert f"line 2, account_number: {CARD_MESSAGE}" in bad.stdout and "line 3, routing_number:" in bad.stdout
    assert "1 loaded" in bad.stdout
    for number in ("4111111111111111", "700100555", "12345678", "55550001234", "4004001234"):
        assert number not in bad.output
    again = runner.invoke(cli, ["import", "payments", str(SAMPLES / "payments.csv")])
    assert again.exit_code == 0 and "4 unchanged" in again.stdout and "imported before" in again.stdout
    header = write(tmp_path, "h.csv", "confirmation_id,amount")
    assert runner.invoke(cli, ["import", "payments", str(header)]).exit_code == 2
    assert runner.invoke(cli, ["import", "payments", str(tmp_path / "nope.csv")]).exit_code == 2
    assert runner.invoke(cli, ["import", "cards", str(header)]).exit_code == 2  # no such kind


def test_large_import_keeps_postgresql_statistics_fresh(sessions, engine, tmp_path):
    # Past 5,000 new rows the import runs ANALYZE on PostgreSQL, so chunk look-ups keep using the
    # indexes (without statistics the planner scans the whole table for every chunk).
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER,
                 *[f"M{i},Member {i},P1,2026-02,{1 + i % 500}.00,none,no" for i in range(6000)])
    result = import_premiums(sessions, path)
    assert (result.loaded, result.rejected) == (6000, [])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            analyzed = conn.execute(text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'premiums'"))
            assert analyzed.scalar() is not None


# =============================================================================================
# Every rejected row is visible (issue 14)
# =============================================================================================

def test_cli_import_prints_50_rejects_then_the_count_and_writes_them_all(tmp_path, monkeypatch):
    import csv
    import re
    import stat

    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ACHBATCH_") and "__" in n]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["import", "premiums", str(SAMPLES / "premiums.csv")]).exit_code == 0
    rows = [f"PC-X{i:03d},2026-01-16T09:00:00-05:00,portal,M100001,HLTH-SILVER-01,2026-02,-{i}.00,"
            f"011000015,98765432{i:03d},checking,Avery Sample" for i in range(1, 61)]
    path = write(tmp_path, "payments-bad.csv", PAYMENT_HEADER, *rows)
    bad = runner.invoke(cli, ["import", "payments", str(path)])
    assert bad.exit_code == 1
    shown = [line for line in bad.stdout.splitlines() if line.startswith("  rejected line ")]
    assert len(shown) == 50
    assert shown[0] == ("  rejected line 2, amount: amount is negative (-1.00): give the amount to collect "
                        "as a positive number of dollars")
    m = re.search(r"60 rows rejected \(10 more not shown\); all of them \(account numbers masked\) in (\S+)",
                  bad.stdout)
    assert m, bad.stdout
    rejects = Path(m.group(1))
    assert rejects.name == "payments-bad.rejects.csv" and rejects.parent.parent.name == "imported"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    text = rejects.read_text()
    assert "98765432" not in text  # no full account number
    table = list(csv.DictReader(text.splitlines()))
    assert len(table) == 60 and [r["line"] for r in table] == [str(i) for i in range(2, 62)]
    assert table[59]["column"] == "amount" and "negative (-60.00)" in table[59]["reason"]
    assert table[0]["account_number"] == "****2001" and table[0]["confirmation_id"] == "PC-X001"


def test_an_identical_row_repeated_in_one_file_is_a_duplicate(sessions, tmp_path):
    path = write(tmp_path, "premiums.csv", PREMIUM_HEADER, "M1,A,P1,2026-02,10.00,none,no",
                 "M2,B,P1,2026-02,20.00,none,no", "M1,A,P1,2026-02,10.00,none,no")
    result = import_premiums(sessions, path)
    assert (result.loaded, result.unchanged, result.duplicates) == (2, 0, 1)
    [dup] = result.rejected
    assert dup.line == 4 and dup.duplicate_of == 2 and dup.reason.startswith("duplicate of line 2")
    # across chunks too
    path = write(tmp_path, "premiums2.csv", PREMIUM_HEADER, *[f"M{i},A,P1,2026-03,1.00,none,no" for i in range(5)],
                 "M0,A,P1,2026-03,1.00,none,no")
    result = import_premiums(sessions, path, chunk_size=2)
    assert result.duplicates == 1 and result.rejected[0].line == 7 and result.loaded == 5


def test_a_negative_amount_says_it_is_negative():
    with pytest.raises(RowError, match=r"amount is negative \(-12.50\)"):
        parse_amount("-12.50")
    with pytest.raises(RowError, match="two decimals"):
        parse_amount("-12.505")


# =============================================================================================
# Nothing we write can attack the person who opens it (issue 13)
# =============================================================================================

def test_identifiers_hold_only_letters_digits_and_dash_underscore_dot(sessions, keyring, tmp_path):
    """Confirmation, member and plan ids with any other character are rejected with the reason;
    names that start like a spreadsheet formula are stored exactly as imported."""
    prem = write(tmp_path, "p.csv", PREMIUM_HEADER,
                 "M-1_a.b,=1+2,HLTH.SILVER_01-X,2026-02,100.00,aptc,no",  # line 2: loads, name as-is
                 "=1+2,Ann,HLTH-1,2026-02,100.00,aptc,no",  # line 3
                 "M2,Ann,HLTH/1,2026-02,100.00,aptc,no",  # line 4
                 "M3,Ann,@SUM(A1),2026-02,100.00,aptc,no",  # line 5
                 "M4;x,Ann,HLTH-1,2026-02,100.00,aptc,no",  # line 6
                 'M5,"+cmd|\' /C calc\'!A0",HLTH-1,2026-02,100.00,aptc,no',  # line 7: loads
                 "M\u00e96,Ann,HLTH-1,2026-02,100.00,aptc,no")  # line 8: not ASCII
    r = import_premiums(sessions, prem)
    why = reasons(r)
    assert r.loaded == 2 and set(why) == {3, 4, 5, 6, 8}
    assert why[3] == "member_id may hold only letters, digits, '-', '_' and '.', got '=1+2' (character '=')"
    assert why[4] == "plan_id may hold only letters, digits, '-', '_' and '.', got 'HLTH/1' (character '/')"
    assert "plan_id" in why[5] and "(character '@')" in why[5]
    assert "member_id" in why[6] and "(character ';')" in why[6]
    assert "member_id" in why[8] and "(character '\u00e9')" in why[8]
    with sessions() as s:
        names = dict(s.execute(select(Premium.member_id, Premium.member_name)).all())
    assert names == {"M-1_a.b": "=1+2", "M5": "+cmd|' /C calc'!A0"}

    pays = write(tmp_path, "pay.csv", PAYMENT_HEADER,
                 "=HYPERLINK(1),2026-01-15T10:00:00-05:00,mail,M-1_a.b,HLTH.SILVER_01-X,2026-02,10.00,,,,",
                 "PC 1,2026-01-15T10:00:00-05:00,mail,M-1_a.b,HLTH.SILVER_01-X,2026-02,10.00,,,,",
                 "PC-1.a_b,2026-01-15T10:00:00-05:00,mail,M-1_a.b,HLTH.SILVER_01-X,2026-02,10.00,,,,")
    r = import_payments(sessions, pays, keyring=keyring)
    why = reasons(r)
    assert r.loaded == 1 and set(why) == {2, 3}
    assert why[2].startswith("confirmation_id may hold only letters") and "(character '=')" in why[2]
    assert "(character ' ')" in why[3]
