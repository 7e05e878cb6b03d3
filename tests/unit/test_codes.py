"""Tests for nacha.codes. Expected values are typed in from /work/shared/reference
(nacha-and-premium-rules.md §1.11-§1.15, §2.1-§2.5; nacha-other-sec-codes.md §1, §4.1), never
computed from the module under test."""
from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from nacha import codes
from nacha.codes import (
    ADMINISTRATIVE_CODES,
    BLOCK_ACCOUNT,
    CATEGORY_ADMINISTRATIVE,
    CATEGORY_OTHER,
    CATEGORY_UNAUTHORIZED,
    CHANGE_CODES,
    CONTEST,
    CONTESTED_RETURN_CODES,
    DEBIT_CODE,
    DISHONOR,
    DISHONORED_RETURN_CODES,
    FORMAT_ERROR,
    MAX_REINITIATIONS,
    PRENOTE_DEBIT_CODE,
    REINITIATION_WINDOW_DAYS,
    RESERVED_DESCRIPTIONS,
    RETRY_FUNDS,
    RETURN_CODES,
    RETURN_RATE_THRESHOLDS,
    REVIEW,
    REVOKE_AUTH,
    SEC_CODES,
    SERVICE_CLASS_CODES,
    STOP_PAYMENT,
    TRANSACTION_CODES,
    UNAUTHORIZED_CODES,
    ChangeCode,
    CorrectedDataPart,
    ReturnCode,
    SecCode,
    TransactionCode,
    account_type_of,
    change_code,
    format_corrected_data,
    parse_corrected_data,
    return_code,
    service_class_allows,
    transaction_code,
)


def _codes(prefix: str, lo: int, hi: int) -> set[str]:
    return {f"{prefix}{n:02d}" for n in range(lo, hi + 1)}


# --------------------------------------------------------------------------------------------
# Transaction codes (ref §1.12; other-sec §4.1)
# --------------------------------------------------------------------------------------------


def test_transaction_code_set_is_exactly_the_assigned_codes():
    expected = (
        {"21", "22", "23", "24", "26", "27", "28", "29"}
        | {"31", "32", "33", "34", "36", "37", "38", "39"}
        | {"41", "42", "43", "44", "46", "47", "48", "49"}
        | {"51", "52", "53", "54", "55", "56"}
        | {"81", "82", "83", "84", "85", "86", "87", "88"}
    )
    assert set(TRANSACTION_CODES) == expected
    # Reserved / unassigned codes are absent.
    for code in ("20", "25", "30", "35", "45", "80", "89", "99", "00"):
        assert transaction_code(code) is None


def test_27_is_checking_debit():
    tx = transaction_code("27")
    assert isinstance(tx, TransactionCode)
    assert tx.code == "27"
    assert tx.account == "checking"
    assert tx.kind == "debit"
    assert tx.is_debit is True
    assert tx.is_prenote is False
    assert tx.is_return is False
    assert tx.zero_amount is False
    assert "NR2013 OR123" in tx.source


def test_22_is_checking_credit():
    tx = transaction_code("22")
    assert tx.account == "checking"
    assert tx.kind == "credit"
    assert tx.is_debit is False
    assert tx.is_prenote is False
    assert tx.zero_amount is False


def test_28_is_debit_prenote_with_zero_amount():
    tx = transaction_code("28")
    assert tx.account == "checking"
    assert tx.kind == "prenote_debit"
    assert tx.is_prenote is True
    assert tx.is_debit is True
    assert tx.zero_amount is True
    assert tx.is_return is False


@pytest.mark.parametrize("code", ["23", "28", "33", "38", "43", "48", "53"])
def test_prenotes(code):
    tx = transaction_code(code)
    assert tx.is_prenote is True
    assert tx.zero_amount is True


def test_prenote_set_exact():
    assert {c for c, t in TRANSACTION_CODES.items() if t.is_prenote} == {
        "23", "28", "33", "38", "43", "48", "53"
    }


def test_return_set_exact():
    assert {c for c, t in TRANSACTION_CODES.items() if t.is_return} == {
        "21", "26", "31", "36", "41", "46", "51", "56"
    }


def test_zero_amount_set_exact():
    prenotes = {"23", "28", "33", "38", "43", "48", "53"}
    zero_dollar_remittance = {"24", "29", "34", "39", "44", "49", "54"}
    assert {c for c, t in TRANSACTION_CODES.items() if t.zero_amount} == (
        prenotes | zero_dollar_remittance
    )


def test_loan_debit_reversal_55():
    tx = transaction_code("55")
    assert tx.account == "loan"
    assert tx.kind == "loan_reversal"
    assert tx.is_debit is True
    assert tx.zero_amount is False


@pytest.mark.parametrize(
    "code,is_debit",
    [("21", False), ("22", False), ("23", False), ("24", False),
     ("26", True), ("27", True), ("28", True), ("29", True),
     ("32", False), ("37", True), ("42", False), ("47", True), ("52", False), ("56", True)],
)
def test_ones_digit_rule_for_standard_codes(code, is_debit):
    assert transaction_code(code).is_debit is is_debit


@pytest.mark.parametrize(
    "code,is_debit",
    [("81", False), ("82", True), ("83", False), ("84", True),
     ("85", False), ("86", True), ("87", False), ("88", True)],
)
def test_adv_codes_odd_credit_even_debit(code, is_debit):
    tx = transaction_code(code)
    assert tx.is_debit is is_debit
    assert tx.account == "accounting"
    assert tx.kind == ("adv_debit" if is_debit else "adv_credit")


def test_adv_84_is_debit_and_81_is_credit():
    # other-sec §4.1: the ones-digit rule would wrongly class 84 as a credit.
    assert transaction_code("84").is_debit is True
    assert transaction_code("84").title == "Debit for ACH debits received"
    assert transaction_code("81").is_debit is False
    assert transaction_code("81").title == "Credit for ACH debits originated"


def test_debit_and_prenote_code_maps():
    assert DEBIT_CODE == {"checking": "27", "savings": "37"}
    assert PRENOTE_DEBIT_CODE == {"checking": "28", "savings": "38"}


@pytest.mark.parametrize(
    "code,account",
    [("26", "checking"), ("27", "checking"), ("28", "checking"), ("22", "checking"),
     ("36", "savings"), ("37", "savings"), ("38", "savings"), ("32", "savings"),
     ("47", "general_ledger"), ("55", "loan"), ("84", "accounting")],
)
def test_account_type_of(code, account):
    assert account_type_of(code) == account


@pytest.mark.parametrize("code", ["25", "99", "", "2", "270", "x7", "２７"])
def test_account_type_of_unknown(code):
    assert account_type_of(code) is None


# --------------------------------------------------------------------------------------------
# Service class codes (ref §1.11; other-sec §1)
# --------------------------------------------------------------------------------------------


def test_service_class_codes():
    assert set(SERVICE_CLASS_CODES) == {"200", "220", "225", "280"}
    assert "debits only" in SERVICE_CLASS_CODES["225"]
    assert "credits only" in SERVICE_CLASS_CODES["220"]
    assert "mixed" in SERVICE_CLASS_CODES["200"]
    assert "accounting advices" in SERVICE_CLASS_CODES["280"]


def test_225_rejects_22_and_accepts_27():
    assert service_class_allows("225", transaction_code("22")) is False
    assert service_class_allows("225", transaction_code("27")) is True


@pytest.mark.parametrize(
    "scc,code,allowed",
    [
        ("225", "37", True), ("225", "28", True), ("225", "26", True), ("225", "32", False),
        ("220", "22", True), ("220", "27", False), ("220", "23", True),
        ("200", "22", True), ("200", "27", True), ("200", "55", True),
        ("280", "81", True), ("280", "84", True), ("280", "27", False), ("280", "22", False),
        ("200", "81", False), ("220", "81", False), ("225", "84", False), ("220", "83", False),
        ("999", "27", False), ("", "27", False),
    ],
)
def test_service_class_allows(scc, code, allowed):
    assert service_class_allows(scc, transaction_code(code)) is allowed


# --------------------------------------------------------------------------------------------
# SEC codes (ref §1.15; other-sec §1)
# --------------------------------------------------------------------------------------------


def test_sec_code_set():
    assert set(SEC_CODES) == {
        "PPD", "WEB", "TEL", "CCD", "CTX", "COR", "ACK", "ATX", "ADV", "ARC", "BOC", "POP",
        "RCK", "XCK", "TRC", "TRX", "CIE", "MTE", "POS", "SHR", "DNE", "ENR", "IAT",
    }
    for key, sec in SEC_CODES.items():
        assert isinstance(sec, SecCode)
        assert sec.code == key
        assert sec.source


def test_we_originate_only_ppd_web_tel():
    assert {c for c, s in SEC_CODES.items() if s.we_originate} == {"PPD", "WEB", "TEL"}


def test_sec_consumer_flags_from_reference():
    for code in ("PPD", "WEB", "TEL"):
        assert SEC_CODES[code].consumer is True
    # CCD: non-consumer account (ref §1.15); CTX between organizations (other-sec §4.12).
    assert SEC_CODES["CCD"].consumer is False
    assert SEC_CODES["CTX"].consumer is False


def test_sec_titles_from_other_sec_reference():
    assert SEC_CODES["ADV"].title == "Automated Accounting Advice"
    assert SEC_CODES["CTX"].title == "Corporate Trade Exchange"
    assert SEC_CODES["DNE"].title == "Death Notification Entry"


# --------------------------------------------------------------------------------------------
# Reserved Company Entry Descriptions (ref §1.14; other-sec §3.2)
# --------------------------------------------------------------------------------------------


def test_reserved_descriptions():
    assert set(RESERVED_DESCRIPTIONS) == {
        "RETRY PYMT", "RETURN FEE", "REVERSAL", "RECLAIM", "NONSETTLED", "ACCTVERIFY",
        "PAYROLL", "PURCHASE", "AUTOENROLL", "REDEPCHECK", "NO CHECK",
    }
    for word, when in RESERVED_DESCRIPTIONS.items():
        assert len(word) <= 10  # Company Entry Description is 10 characters (pos 54-63)
        assert when
    assert "reinitiated" in RESERVED_DESCRIPTIONS["RETRY PYMT"]


def test_reserved_description_sources():
    assert codes.RESERVED_DESCRIPTION_SOURCES["RETRY PYMT"].startswith("REINIT")
    assert "NACHA-MICRO" in codes.RESERVED_DESCRIPTION_SOURCES["ACCTVERIFY"]


# --------------------------------------------------------------------------------------------
# Return reason codes (ref §2.1-§2.4)
# --------------------------------------------------------------------------------------------


def test_return_code_set_is_every_assigned_code():
    expected = (
        _codes("R", 1, 47)
        | _codes("R", 50, 53)
        | {"R61", "R62"}
        | _codes("R", 67, 77)
        | _codes("R", 80, 85)
        | {"R90"}
    )
    assert set(RETURN_CODES) == expected
    assert len(RETURN_CODES) == 71
    for unassigned in ("R00", "R48", "R49", "R54", "R60", "R63", "R66", "R78", "R79", "R86", "R89", "R91"):
        assert return_code(unassigned) is None
    assert return_code("r01") is None
    assert return_code("") is None


def test_return_code_rows_are_return_code_objects():
    for key, rc in RETURN_CODES.items():
        assert isinstance(rc, ReturnCode)
        assert rc.code == key
        assert rc.source


# §2.3: unauthorized numerator R05, R07, R10, R11, R29, R51; administrative R02, R03, R04;
# everything else counts only toward the overall rate.
def test_unauthorized_and_administrative_sets():
    assert UNAUTHORIZED_CODES == frozenset({"R05", "R07", "R10", "R11", "R29", "R51"})
    assert ADMINISTRATIVE_CODES == frozenset({"R02", "R03", "R04"})


@pytest.mark.parametrize("code", ["R05", "R07", "R10", "R11", "R29", "R51"])
def test_unauthorized_category(code):
    assert return_code(code).category == CATEGORY_UNAUTHORIZED == "unauthorized"


@pytest.mark.parametrize("code", ["R02", "R03", "R04"])
def test_administrative_category(code):
    assert return_code(code).category == CATEGORY_ADMINISTRATIVE == "administrative"


def test_every_other_code_is_category_other():
    named = {"R05", "R07", "R10", "R11", "R29", "R51", "R02", "R03", "R04"}
    for key, rc in RETURN_CODES.items():
        if key not in named:
            assert rc.category == CATEGORY_OTHER == "other", key


@pytest.mark.parametrize("code", ["R01", "R09"])
def test_funds_returns_retry(code):
    rc = return_code(code)
    assert rc.disposition == RETRY_FUNDS == "retry"
    assert rc.retry_allowed is True
    assert rc.reinitiation == "Y2"
    assert rc.blocks_account is False
    assert rc.revokes_authorization is False
    assert rc.time_frame == "2BD"


def test_retry_allowed_only_for_r01_r09():
    assert {c for c, r in RETURN_CODES.items() if r.retry_allowed} == {"R01", "R09"}


def test_r08_stop_payment():
    rc = return_code("R08")
    assert rc.disposition == STOP_PAYMENT == "stop_payment"
    assert rc.reinitiation == "Y*"
    assert rc.retry_allowed is False


@pytest.mark.parametrize("code", ["R02", "R03", "R04"])
def test_closed_or_invalid_account_blocks(code):
    rc = return_code(code)
    assert rc.disposition == BLOCK_ACCOUNT == "block_account"
    assert rc.blocks_account is True
    assert rc.reinitiation == "C"


def test_block_account_set_matches_design_table():
    assert {c for c, r in RETURN_CODES.items() if r.blocks_account} == {
        "R02", "R03", "R04", "R12", "R13", "R14", "R15", "R16", "R20", "R28"
    }


@pytest.mark.parametrize("code", ["R05", "R07", "R10", "R11", "R29", "R51"])
def test_unauthorized_returns_revoke(code):
    rc = return_code(code)
    assert rc.disposition == REVOKE_AUTH == "revoke_authorization"
    assert rc.revokes_authorization is True
    assert rc.retry_allowed is False


def test_revoke_set_exact():
    assert {c for c, r in RETURN_CODES.items() if r.revokes_authorization} == {
        "R05", "R07", "R10", "R11", "R29", "R51"
    }


def test_format_error_set_matches_design_table():
    assert {c for c, r in RETURN_CODES.items() if r.disposition == FORMAT_ERROR} == {
        "R17", "R18", "R19", "R24", "R25", "R26", "R27", "R30", "R32", "R34", "R35", "R36"
    }


@pytest.mark.parametrize("code", ["R06", "R23", "R31", "R33", "R37", "R38", "R39", "R40",
                                  "R47", "R50", "R53", "R80", "R85", "R90"])
def test_other_codes_review(code):
    assert return_code(code).disposition == REVIEW == "review"


def test_dishonored_and_contested():
    assert DISHONORED_RETURN_CODES == frozenset({"R61", "R62", "R67", "R68", "R69", "R70"})
    assert CONTESTED_RETURN_CODES == frozenset(
        {"R71", "R72", "R73", "R74", "R75", "R76", "R77"}
    )
    for code in DISHONORED_RETURN_CODES:
        assert return_code(code).kind == "dishonored"
        assert return_code(code).disposition == DISHONOR == "dishonor"
        assert return_code(code).initiated_by == "ODFI"
        assert return_code(code).time_frame == "5BD"
    for code in CONTESTED_RETURN_CODES:
        assert return_code(code).kind == "contested"
        assert return_code(code).disposition == CONTEST == "contest"
        assert return_code(code).initiated_by == "RDFI"
        assert return_code(code).time_frame == "2BD"
    assert return_code("R01").kind == "return"


@pytest.mark.parametrize(
    "code,time_frame",
    [("R01", "2BD"), ("R05", "60CD"), ("R07", "60CD"), ("R10", "60CD"), ("R11", "60CD"),
     ("R51", "60CD"), ("R29", "2BD"), ("R13", "Op"), ("R19", "Op"), ("R06", "undefined"),
     ("R31", "undefined"), ("R40", "N/A"), ("R61", "5BD"), ("R71", "2BD")],
)
def test_time_frames(code, time_frame):
    assert return_code(code).time_frame == time_frame


@pytest.mark.parametrize(
    "code,reinit",
    [("R01", "Y2"), ("R09", "Y2"), ("R08", "Y*"), ("R02", "C"), ("R11", "C"), ("R05", "N"),
     ("R07", "N"), ("R10", "N"), ("R15", "N"), ("R24", "N"), ("R29", "N"), ("R51", "N"),
     ("R30", "-"), ("R61", "-")],
)
def test_reinitiation_column(code, reinit):
    assert return_code(code).reinitiation == reinit


@pytest.mark.parametrize(
    "code,initiated_by",
    [("R01", "RDFI"), ("R13", "ACH Operator"), ("R16", "RDFI/Gateway"),
     ("R40", "Federal Government Agency"), ("R80", "Gateway"), ("R90", "RDFI/Gateway")],
)
def test_initiated_by(code, initiated_by):
    assert return_code(code).initiated_by == initiated_by


def test_r90_effective_date():
    rc = return_code("R90")
    assert rc.effective_from == date(2028, 3, 17)
    assert "Sanctions" in rc.title
    assert "NACHA-R90" in rc.source
    assert [c for c, r in RETURN_CODES.items() if r.effective_from is not None] == ["R90"]


def test_titles_from_reference():
    assert return_code("R01").title == "Insufficient Funds"
    assert return_code("R02").title == "Account Closed"
    assert return_code("R07").title == "Authorization Revoked by Customer"
    assert return_code("R11").title == (
        "Customer Advises Entry Not in Accordance with the Terms of the Authorization"
    )
    assert "NR2013 OR127" in return_code("R01").source


def test_return_rate_thresholds_exact():
    assert RETURN_RATE_THRESHOLDS == {
        "unauthorized": (5, 1000),
        "administrative": (3, 100),
        "overall": (15, 100),
    }
    for numerator, denominator in RETURN_RATE_THRESHOLDS.values():
        assert type(numerator) is int and type(denominator) is int


def test_reinitiation_limits():
    assert MAX_REINITIATIONS == 2
    assert REINITIATION_WINDOW_DAYS == 180


def test_rows_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        return_code("R01").retry_allowed = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        transaction_code("27").is_debit = False  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Change codes (ref §2.5)
# --------------------------------------------------------------------------------------------


def test_change_code_set():
    expected = {"C01", "C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C13", "C14"}
    expected |= _codes("C", 61, 69)
    assert set(CHANGE_CODES) == expected
    for removed in ("C10", "C11", "C12"):
        assert change_code(removed) is None
    for key, cc in CHANGE_CODES.items():
        assert isinstance(cc, ChangeCode)
        assert cc.code == key
        assert cc.source


def test_refused_codes_have_no_parts():
    assert {c for c, cc in CHANGE_CODES.items() if cc.refused} == _codes("C", 61, 69)
    for code in _codes("C", 61, 69):
        assert change_code(code).parts == ()
        assert change_code(code).applies_to_us is False


def _layout(code: str) -> list[tuple[str, int, int]]:
    return [(p.name, p.start, p.end) for p in change_code(code).parts]


def test_corrected_data_layouts_from_reference():
    assert _layout("C01") == [("account_number", 1, 17)]
    assert _layout("C02") == [("routing_number", 1, 9)]
    assert _layout("C03") == [("routing_number", 1, 9), ("account_number", 13, 29)]
    assert _layout("C04") == [("individual_name", 1, 22)]
    assert _layout("C05") == [("transaction_code", 1, 2)]
    assert _layout("C06") == [("account_number", 1, 17), ("transaction_code", 21, 22)]
    assert _layout("C07") == [
        ("routing_number", 1, 9), ("account_number", 10, 26), ("transaction_code", 27, 28)
    ]
    assert _layout("C08") == [("rdfi_id", 1, 29)]
    assert _layout("C09") == [("individual_id", 1, 22)]
    assert _layout("C13") == []
    assert _layout("C14") == [("sec_code", 1, 3)]
    assert isinstance(change_code("C01").parts[0], CorrectedDataPart)


def test_applies_to_us():
    assert change_code("C01").applies_to_us is True
    assert change_code("C05").applies_to_us is True
    assert change_code("C08").applies_to_us is False  # IAT only
    assert change_code("C14").applies_to_us is False  # Gateway only


# Hand-built 29-character fields, positions per ref §2.5.
ROUND_TRIPS = [
    ("C01", "12345678901234567            ", {"account_number": "12345678901234567"}),
    ("C01", "987654                       ", {"account_number": "987654"}),
    ("C02", "011000015                    ", {"routing_number": "011000015"}),
    ("C03", "011000015   ACCT-55          ", {"routing_number": "011000015", "account_number": "ACCT-55"}),
    ("C04", "JANE Q MEMBER                ", {"individual_name": "JANE Q MEMBER"}),
    ("C05", "37                           ", {"transaction_code": "37"}),
    ("C06", "1234567890          37       ", {"account_number": "1234567890", "transaction_code": "37"}),
    ("C07", "011000015123456789        27 ", {"routing_number": "011000015", "account_number": "123456789", "transaction_code": "27"}),
    ("C08", "FOREIGN BANK ID 0042         ", {"rdfi_id": "FOREIGN BANK ID 0042"}),
    ("C09", "MEMBER-000123                ", {"individual_id": "MEMBER-000123"}),
    ("C14", "IAT                          ", {"sec_code": "IAT"}),
]


def test_round_trip_fixtures_are_29_chars():
    # Guard the hand-typed fixtures themselves.
    for code, field, _ in ROUND_TRIPS:
        assert len(field) == 29, (code, field)


@pytest.mark.parametrize("code,field,values", ROUND_TRIPS)
def test_parse_then_format_round_trip(code, field, values):
    assert parse_corrected_data(code, field) == values
    assert format_corrected_data(code, **values) == field


def test_c07_full_width_account():
    field = "011000015" + "12345678901234567" + "38" + " "
    assert len(field) == 29
    values = {"routing_number": "011000015", "account_number": "12345678901234567",
              "transaction_code": "38"}
    assert parse_corrected_data("C07", field) == values
    assert format_corrected_data("C07", **values) == field


def test_every_non_refused_code_with_parts_round_trips():
    covered = {code for code, _, _ in ROUND_TRIPS}
    with_parts = {c for c, cc in CHANGE_CODES.items() if cc.parts and not cc.refused}
    assert with_parts == {"C01", "C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C14"}
    assert with_parts <= covered


def test_format_then_parse_round_trip():
    values = {"routing_number": "021000021", "account_number": "00998877"}
    field = format_corrected_data("C03", **values)
    assert len(field) == 29
    assert field == "021000021   00998877         "
    assert parse_corrected_data("C03", field) == values


def test_parse_accepts_trailing_spaces_removed():
    assert parse_corrected_data("C05", "37") == {"transaction_code": "37"}
    assert parse_corrected_data("C01", "987654") == {"account_number": "987654"}


def test_parts_are_stripped():
    assert parse_corrected_data("C04", "  JANE DOE           ") == {"individual_name": "JANE DOE"}
    assert format_corrected_data("C01", account_number=" 12345 ") == "12345" + " " * 24


def test_no_part_codes():
    assert parse_corrected_data("C13", "") == {}
    assert parse_corrected_data("C13", "anything the RDFI sent") == {}
    assert format_corrected_data("C13") == " " * 29
    assert parse_corrected_data("C65", "011000015") == {}
    assert format_corrected_data("C61") == " " * 29


@pytest.mark.parametrize(
    "code,field",
    [
        ("C10", "ACME"),                      # removed in 2024
        ("C99", "123"),
        ("c01", "123"),
        ("", "123"),
        ("C01", " " * 29),                    # account blank
        ("C01", ""),
        ("C01", "1" * 30),                    # longer than the field
        ("C01", "12345678901234567X"),        # non-blank at position 18
        ("C02", "01100001"),                  # 8 digits
        ("C02", "01100001X"),
        ("C02", "０１１０００００１５"),               # full-width digits: not ASCII
        ("C02", "011000015   9"),             # junk after the routing number
        ("C03", "011000015                    "),  # account missing
        ("C03", "011000015XYZ1234567890"),    # positions 10-12 must be spaces
        ("C04", " " * 29),
        ("C05", "3"),                         # 1 digit
        ("C05", "3A"),
        ("C05", "٣٧"),                        # Arabic-Indic digits: str.isdigit() but not ASCII
        ("C05", "99"),                        # not an assigned transaction code
        ("C06", "1234567890"),                # tran code missing
        ("C06", "1234567890          3X"),
        ("C07", "011000015123456789"),        # tran code missing
        ("C07", "         123456789       27"),  # routing missing
        ("C09", ""),
        ("C14", "XYZ"),
        ("C14", ""),
        ("C01", "123\x00456"),                # control character
    ],
)
def test_parse_errors(code, field):
    with pytest.raises(ValueError):
        parse_corrected_data(code, field)


@pytest.mark.parametrize(
    "code,values",
    [
        ("C12", {"account_number": "1"}),
        ("C01", {}),                                                    # missing
        ("C01", {"account_number": ""}),                                # blank
        ("C01", {"account_number": "   "}),
        ("C01", {"account_number": "1" * 18}),                          # too long
        ("C01", {"account_number": "1", "routing_number": "011000015"}),  # unexpected
        ("C02", {"routing_number": "1234"}),
        ("C02", {"routing_number": "0110000150"}),
        ("C02", {"routing_number": "01100001A"}),
        ("C03", {"routing_number": "011000015"}),
        ("C04", {"individual_name": "N" * 23}),
        ("C05", {"transaction_code": "7"}),
        ("C05", {"transaction_code": "٣٧"}),
        ("C05", {"transaction_code": "25"}),
        ("C06", {"account_number": "1", "transaction_code": "377"}),
        ("C07", {"routing_number": "011000015", "account_number": "1" * 18, "transaction_code": "27"}),
        ("C09", {"individual_id": "I" * 23}),
        ("C13", {"account_number": "1"}),
        ("C14", {"sec_code": "IATX"}),
        ("C61", {"account_number": "1"}),
    ],
)
def test_format_errors(code, values):
    with pytest.raises(ValueError):
        format_corrected_data(code, **values)


def test_format_rejects_non_string():
    with pytest.raises(ValueError):
        format_corrected_data("C01", account_number=12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Import-time consistency check
# --------------------------------------------------------------------------------------------


def test_consistency_check_passes_on_shipped_tables():
    codes._check_tables()


@pytest.mark.parametrize(
    "table,key,changes",
    [
        ("RETURN_CODES", "R02", {"retry_allowed": True}),       # retry only where Y2
        ("RETURN_CODES", "R01", {"category": "bogus"}),
        ("RETURN_CODES", "R03", {"code": "R04"}),               # key != .code
        ("TRANSACTION_CODES", "27", {"is_debit": False}),
        ("CHANGE_CODES", "C61", {"applies_to_us": True}),
    ],
)
def test_consistency_check_catches_bad_rows(monkeypatch, table, key, changes):
    patched = dict(getattr(codes, table))
    patched[key] = dataclasses.replace(patched[key], **changes)
    monkeypatch.setattr(codes, table, patched)
    with pytest.raises(AssertionError):
        codes._check_tables()
