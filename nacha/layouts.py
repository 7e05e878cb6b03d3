"""Record layouts of the records we write and read: file header and control, batch header and
control, the standard entry detail (PPD, WEB, TEL, CCD, COR), addenda 05, 98, 98 refused, 99,
99 dishonored and 99 contested. Positions and inclusion from reference §1.2-1.9 (NR2013 OR74-OR184).
Layouts of the other SEC codes live in `layouts_other.py`.
"""
from __future__ import annotations

from .fields import (
    BLANK,
    CHECK_HHMM,
    CHECK_JULIAN,
    CHECK_YYMMDD,
    DIGITS,
    NUMBER,
    TEXT,
    Field,
    Layout,
)

F = Field

# File ID Modifiers in the order a sender uses them within one file date: A-Z, then 0-9 (NR2013 OR109).
FILE_ID_MODIFIER_ORDER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
FILE_ID_MODIFIERS = frozenset(FILE_ID_MODIFIER_ORDER)
SERVICE_CLASS_CODES = frozenset({"200", "220", "225", "280"})

# §1.2 File Header Record, NR2013 OR74
FILE_HEADER = Layout("file_header", [
    F("record_type_code", 1, 1, DIGITS, fixed="1"),
    F("priority_code", 2, 3, DIGITS, fixed="01"),
    F("immediate_destination", 4, 13, TEXT, required=True),
    F("immediate_origin", 14, 23, TEXT, required=True),
    F("file_creation_date", 24, 29, DIGITS, check=CHECK_YYMMDD),
    F("file_creation_time", 30, 33, DIGITS, blank_ok=True, check=CHECK_HHMM),
    F("file_id_modifier", 34, 34, TEXT, required=True, allowed=FILE_ID_MODIFIERS),
    F("record_size", 35, 37, DIGITS, fixed="094"),
    F("blocking_factor", 38, 39, DIGITS, fixed="10"),
    F("format_code", 40, 40, DIGITS, fixed="1"),
    F("immediate_destination_name", 41, 63, TEXT),
    F("immediate_origin_name", 64, 86, TEXT),
    F("reference_code", 87, 94, TEXT),
], "File Header Record")

# §1.3 Company/Batch Header Record (all SEC codes but IAT), NR2013 OR75
BATCH_HEADER = Layout("batch_header", [
    F("record_type_code", 1, 1, DIGITS, fixed="5"),
    F("service_class_code", 2, 4, DIGITS, allowed=SERVICE_CLASS_CODES),
    F("company_name", 5, 20, TEXT, required=True),
    F("company_discretionary_data", 21, 40, TEXT),
    F("company_identification", 41, 50, TEXT, required=True),
    F("standard_entry_class_code", 51, 53, TEXT, required=True),
    F("company_entry_description", 54, 63, TEXT, required=True),
    F("company_descriptive_date", 64, 69, TEXT),
    # Blank only where the SEC code says so (ENR); the batch checks enforce that.
    F("effective_entry_date", 70, 75, DIGITS, blank_ok=True, check=CHECK_YYMMDD),
    # Inserted by the ACH Operator; blank on origination (NR2013 OR120).
    F("settlement_date", 76, 78, DIGITS, blank_ok=True, check=CHECK_JULIAN),
    F("originator_status_code", 79, 79, TEXT, required=True, allowed=frozenset({"0", "1", "2"})),
    F("originating_dfi_identification", 80, 87, DIGITS),
    F("batch_number", 88, 94, NUMBER),
], "Company/Batch Header Record")

# §1.4 Entry Detail Record: positions 1-39 and 79-94 are common to the standard layouts.
def _entry_head() -> list[Field]:
    return [
        F("record_type_code", 1, 1, DIGITS, fixed="6"),
        F("transaction_code", 2, 3, DIGITS),
        F("receiving_dfi_identification", 4, 11, DIGITS),
        F("check_digit", 12, 12, DIGITS),
        F("dfi_account_number", 13, 29, TEXT, required=True, sensitive=True),
        F("amount", 30, 39, NUMBER),
    ]


def _entry_tail() -> list[Field]:
    return [
        F("addenda_record_indicator", 79, 79, DIGITS, allowed=frozenset({"0", "1"})),
        F("trace_number", 80, 94, DIGITS),
    ]


def entry_layout(name: str, middle: list[Field], title: str) -> Layout:
    """An entry detail layout: the standard head and tail around SEC-specific positions 40-78."""
    return Layout(name, _entry_head() + middle + _entry_tail(), title)


PAYMENT_TYPE_CODES = frozenset({"R", "S"})

# PPD: Individual Name is R (NR2013 OR81).
ENTRY_PPD = entry_layout("entry_ppd", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (PPD)")

# WEB: Payment Type Code R/S is Required in 77-78 (NR2013 OR94, OR117).
ENTRY_WEB = entry_layout("entry_web", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("payment_type_code", 77, 78, TEXT, required=True, allowed=PAYMENT_TYPE_CODES),
], "Entry Detail Record (WEB)")

# TEL: Payment Type Code optional: R, S or spaces (NR2013 OR97, OR117).
ENTRY_TEL = entry_layout("entry_tel", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("payment_type_code", 77, 78, TEXT, allowed=PAYMENT_TYPE_CODES | {""}),
], "Entry Detail Record (TEL)")

# CCD: Identification Number and Receiving Company Name (NR2013 OR100).
ENTRY_CCD = entry_layout("entry_ccd", [
    F("identification_number", 40, 54, TEXT),
    F("receiving_company_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (CCD)")

# COR entries keep the original entry's standard positions (NR2013 OR167).
ENTRY_COR = entry_layout("entry_cor", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (COR)")

# §1.5 Addenda 05, NR2013 OR81/OR94/OR100
ADDENDA_05 = Layout("addenda_05", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="05"),
    F("payment_related_information", 4, 83, TEXT),
    F("addenda_sequence_number", 84, 87, NUMBER),
    F("entry_detail_sequence_number", 88, 94, DIGITS),
], "Addenda Record (05)")

# §1.6 Addenda 98, Notification of Change, NR2013 OR178
ADDENDA_98 = Layout("addenda_98", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="98"),
    F("change_code", 4, 6, TEXT, required=True),
    F("original_entry_trace_number", 7, 21, DIGITS),
    F("reserved_1", 22, 27, BLANK),
    F("original_receiving_dfi_identification", 28, 35, DIGITS),
    # May hold an account number (C01, C03, C06, C07): masked.
    F("corrected_data", 36, 64, TEXT, required=True, sensitive=True),
    F("reserved_2", 65, 79, BLANK),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (98, Notification of Change)")

# §1.6 Refused NOC addenda, NR2013 OR184
ADDENDA_98_REFUSED = Layout("addenda_98_refused", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="98"),
    F("refused_change_code", 4, 6, TEXT, required=True),
    F("original_entry_trace_number", 7, 21, DIGITS),
    F("reserved_1", 22, 27, BLANK),
    F("original_receiving_dfi_identification", 28, 35, DIGITS),
    F("corrected_data", 36, 64, TEXT, required=True, sensitive=True),
    F("change_code", 65, 67, TEXT, required=True),
    F("trace_sequence_number", 68, 74, DIGITS),
    F("reserved_2", 75, 79, BLANK),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (98, Refused Notification of Change)")

# §1.7 Addenda 99, Return, NR2013 OR151
ADDENDA_99 = Layout("addenda_99", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="99"),
    F("return_reason_code", 4, 6, TEXT, required=True),
    F("original_entry_trace_number", 7, 21, DIGITS),
    F("date_of_death", 22, 27, DIGITS, blank_ok=True, check=CHECK_YYMMDD),
    F("original_receiving_dfi_identification", 28, 35, DIGITS),
    F("addenda_information", 36, 79, TEXT),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (99, Return)")

# §1.7 Dishonored Return addenda, NR2013 OR161
ADDENDA_99_DISHONORED = Layout("addenda_99_dishonored", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="99"),
    F("dishonored_return_reason_code", 4, 6, TEXT, required=True),
    F("original_entry_trace_number", 7, 21, DIGITS),
    F("reserved_1", 22, 27, BLANK),
    F("original_receiving_dfi_identification", 28, 35, DIGITS),
    F("reserved_2", 36, 38, BLANK),
    F("return_trace_number", 39, 53, DIGITS),
    F("return_settlement_date", 54, 56, DIGITS, blank_ok=True, check=CHECK_JULIAN),
    F("return_reason_code", 57, 58, TEXT, required=True),
    F("addenda_information", 59, 79, TEXT),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (99, Dishonored Return)")

# §1.7 Contested Dishonored Return addenda, NR2013 OR166
ADDENDA_99_CONTESTED = Layout("addenda_99_contested", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="99"),
    F("contested_return_reason_code", 4, 6, TEXT, required=True),
    F("original_entry_trace_number", 7, 21, DIGITS),
    F("date_original_entry_returned", 22, 27, DIGITS, blank_ok=True, check=CHECK_YYMMDD),
    F("original_receiving_dfi_identification", 28, 35, DIGITS),
    F("original_settlement_date", 36, 38, DIGITS, blank_ok=True, check=CHECK_JULIAN),
    F("return_trace_number", 39, 53, DIGITS),
    F("return_settlement_date", 54, 56, DIGITS, blank_ok=True, check=CHECK_JULIAN),
    F("return_reason_code", 57, 58, TEXT, required=True),
    F("dishonored_return_trace_number", 59, 73, DIGITS),
    F("dishonored_return_settlement_date", 74, 76, DIGITS, blank_ok=True, check=CHECK_JULIAN),
    F("dishonored_return_reason_code", 77, 78, TEXT, required=True),
    F("reserved", 79, 79, BLANK),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (99, Contested Dishonored Return)")

# §1.8 Company/Batch Control Record, NR2013 OR75
BATCH_CONTROL = Layout("batch_control", [
    F("record_type_code", 1, 1, DIGITS, fixed="8"),
    F("service_class_code", 2, 4, DIGITS, allowed=SERVICE_CLASS_CODES),
    F("entry_addenda_count", 5, 10, NUMBER),
    F("entry_hash", 11, 20, NUMBER),
    F("total_debit_amount", 21, 32, NUMBER),
    F("total_credit_amount", 33, 44, NUMBER),
    F("company_identification", 45, 54, TEXT),
    F("message_authentication_code", 55, 73, TEXT),
    F("reserved", 74, 79, BLANK),
    F("originating_dfi_identification", 80, 87, DIGITS),
    F("batch_number", 88, 94, NUMBER),
], "Company/Batch Control Record")

# §1.9 File Control Record, NR2013 OR74
FILE_CONTROL = Layout("file_control", [
    F("record_type_code", 1, 1, DIGITS, fixed="9"),
    F("batch_count", 2, 7, NUMBER),
    F("block_count", 8, 13, NUMBER),
    F("entry_addenda_count", 14, 21, NUMBER),
    F("entry_hash", 22, 31, NUMBER),
    F("total_debit_amount", 32, 43, NUMBER),
    F("total_credit_amount", 44, 55, NUMBER),
    F("reserved", 56, 94, BLANK),
], "File Control Record")

FILLER_LINE = "9" * 94
