"""Record layouts of the SEC codes other than PPD, WEB, TEL, CCD and COR: the entry detail records
whose positions 40-78 mean something else (ACK, ATX, ARC, BOC, POP, RCK, XCK, TRC, TRX, CTX, CIE,
MTE, POS, SHR, DNE, ENR), the ADV entry detail, batch control and file control records, and the
addenda 02 (POS/SHR and the MTE variant). Positions and inclusion from
/work/shared/reference/nacha-other-sec-codes.md ("other-sec §x"), which cites NR2013 page by page.
"""
from __future__ import annotations

from .fields import (
    BLANK,
    CHECK_JULIAN,
    CHECK_MMDD,
    CHECK_MMYY,
    DIGITS,
    NUMBER,
    TEXT,
    Field,
    Layout,
)
from .layouts import SERVICE_CLASS_CODES, entry_layout

F = Field

# Card Transaction Type Codes of POS and SHR entries (NR OR104; other-sec §4.15).
CARD_TRANSACTION_TYPE_CODES = frozenset({"01", "02", "03", "11", "12", "13", "21", "99"})

# US states and territories a terminal may sit in (other-sec §5.3: the list moov applies through
# internal/usabbrev; NACHA asks for "the US state" of the terminal, NR OR91/OR92/OR93/OR96).
US_STATE_CODES = frozenset({
    "AK", "AL", "AR", "AS", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "GU", "HI", "IA", "ID",
    "IL", "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MP", "MS", "MT", "NC", "ND",
    "NE", "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "PR", "RI", "SC", "SD", "TN", "TX",
    "UT", "VA", "VI", "VT", "WA", "WI", "WV", "WY",
})


# -- ADV: its own entry, batch control and file control (other-sec §4.1, NR OR77-OR78) -----------
# No trace number: positions 80-94 are the operator's routing number, the Julian day and a
# sequence number. Account 15 characters, amount 12 digits.
ENTRY_ADV = Layout("entry_adv", [
    F("record_type_code", 1, 1, DIGITS, fixed="6"),
    F("transaction_code", 2, 3, DIGITS),
    F("receiving_dfi_identification", 4, 11, DIGITS),
    F("check_digit", 12, 12, DIGITS),
    F("dfi_account_number", 13, 27, TEXT, required=True, sensitive=True),
    F("amount", 28, 39, NUMBER),
    F("advice_routing_number", 40, 48, DIGITS),
    F("file_identification", 49, 53, TEXT),
    F("ach_operator_data", 54, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
    F("addenda_record_indicator", 79, 79, DIGITS, allowed=frozenset({"0", "1"})),
    F("ach_operator_routing_number", 80, 87, DIGITS),
    F("julian_date", 88, 90, DIGITS, check=CHECK_JULIAN),
    F("sequence_number", 91, 94, NUMBER),
], "Entry Detail Record (ADV)")

# 20-digit totals; no Company Identification, no MAC (other-sec §4.1, NR OR78).
BATCH_CONTROL_ADV = Layout("batch_control_adv", [
    F("record_type_code", 1, 1, DIGITS, fixed="8"),
    F("service_class_code", 2, 4, DIGITS, allowed=SERVICE_CLASS_CODES),
    F("entry_addenda_count", 5, 10, NUMBER),
    F("entry_hash", 11, 20, NUMBER),
    F("total_debit_amount", 21, 40, NUMBER),
    F("total_credit_amount", 41, 60, NUMBER),
    F("ach_operator_data", 61, 79, TEXT),
    F("originating_dfi_identification", 80, 87, DIGITS),
    F("batch_number", 88, 94, NUMBER),
], "Company/Batch Control Record (ADV)")

# 20-digit totals, reserved 72-94 (other-sec §4.1, NR OR77).
FILE_CONTROL_ADV = Layout("file_control_adv", [
    F("record_type_code", 1, 1, DIGITS, fixed="9"),
    F("batch_count", 2, 7, NUMBER),
    F("block_count", 8, 13, NUMBER),
    F("entry_addenda_count", 14, 21, NUMBER),
    F("entry_hash", 22, 31, NUMBER),
    F("total_debit_amount", 32, 51, NUMBER),
    F("total_credit_amount", 52, 71, NUMBER),
    F("reserved", 72, 94, BLANK),
], "File Control Record (ADV)")


# -- entry details: positions 40-78 by SEC code (other-sec §2, §4.2-§4.18) ------------------------
# Inclusion M and R both make a text field required (as for PPD's Individual Name); O is free.

# ACK: Original Entry Trace Number (N, M) and the CCD layout's name (NR OR186; other-sec §4.2).
# 77-78 carries the Refused Acknowledgment Code on a refused ACK.
ENTRY_ACK = entry_layout("entry_ack", [
    F("original_entry_trace_number", 40, 54, DIGITS),
    F("receiving_company_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (ACK)")

# ATX: the CTX corporate layout with the original trace in 40-54 (NR OR188; other-sec §4.3).
ENTRY_ATX = entry_layout("entry_atx", [
    F("original_entry_trace_number", 40, 54, DIGITS),
    F("number_of_addenda_records", 55, 58, NUMBER),
    F("receiving_company_name", 59, 74, TEXT, required=True),
    F("reserved", 75, 76, BLANK),
    F("discretionary_data", 77, 78, TEXT),
], "Corporate Entry Detail Record (ATX)")

# ARC and BOC: Check Serial Number 40-54 (M), name optional (NR OR79, OR80; other-sec §4.5-§4.6).
ENTRY_ARC = entry_layout("entry_arc", [
    F("check_serial_number", 40, 54, TEXT, required=True),
    F("individual_name", 55, 76, TEXT),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (ARC)")

ENTRY_BOC = entry_layout("entry_boc", [
    F("check_serial_number", 40, 54, TEXT, required=True),
    F("individual_name", 55, 76, TEXT),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (BOC)")

# POP: serial 40-48, terminal city 49-52, terminal state 53-54, each M (NR OR92; other-sec §4.7).
ENTRY_POP = entry_layout("entry_pop", [
    F("check_serial_number", 40, 48, TEXT, required=True),
    F("terminal_city", 49, 52, TEXT, required=True),
    F("terminal_state", 53, 54, TEXT, required=True, allowed=US_STATE_CODES),
    F("individual_name", 55, 76, TEXT),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (POP)")

# RCK: serial M, name R (NR OR95; other-sec §4.8).
ENTRY_RCK = entry_layout("entry_rck", [
    F("check_serial_number", 40, 54, TEXT, required=True),
    F("individual_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (RCK)")

# XCK: serial M, process control field R, item research number R at 61-76 (NR OR101; other-sec §4.9).
ENTRY_XCK = entry_layout("entry_xck", [
    F("check_serial_number", 40, 54, TEXT, required=True),
    F("process_control_field", 55, 60, TEXT, required=True),
    F("item_research_number", 61, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (XCK)")

# TRC: as XCK but the serial is optional and 77-78 is the Item Type Indicator (NR OR98; other-sec §4.10).
ENTRY_TRC = entry_layout("entry_trc", [
    F("check_serial_number", 40, 54, TEXT),
    F("process_control_field", 55, 60, TEXT, required=True),
    F("item_research_number", 61, 76, TEXT, required=True),
    F("item_type_indicator", 77, 78, TEXT),
], "Entry Detail Record (TRC)")

# TRX: corporate layout, Item Type Indicator in 77-78 (NR OR99; other-sec §4.11).
ENTRY_TRX = entry_layout("entry_trx", [
    F("identification_number", 40, 54, TEXT),
    F("number_of_addenda_records", 55, 58, NUMBER),
    F("receiving_company_name", 59, 74, TEXT, required=True),
    F("reserved", 75, 76, BLANK),
    F("item_type_indicator", 77, 78, TEXT),
], "Corporate Entry Detail Record (TRX)")

# CTX: corporate layout (NR OR83; other-sec §4.12).
ENTRY_CTX = entry_layout("entry_ctx", [
    F("identification_number", 40, 54, TEXT),
    F("number_of_addenda_records", 55, 58, NUMBER),
    F("receiving_company_name", 59, 74, TEXT, required=True),
    F("reserved", 75, 76, BLANK),
    F("discretionary_data", 77, 78, TEXT),
], "Corporate Entry Detail Record (CTX)")

# CIE: name (15, R) and identification number (22, M) swapped relative to PPD (NR OR82; other-sec §4.13).
ENTRY_CIE = entry_layout("entry_cie", [
    F("individual_name", 40, 54, TEXT, required=True),
    F("individual_identification_number", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (CIE)")

# MTE: swapped like CIE, both M (NR OR91; other-sec §4.14).
ENTRY_MTE = entry_layout("entry_mte", [
    F("individual_name", 40, 54, TEXT, required=True),
    F("individual_identification_number", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (MTE)")

# POS: Card Transaction Type Code in 77-78 (M) (NR OR93; other-sec §4.15).
ENTRY_POS = entry_layout("entry_pos", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("card_transaction_type_code", 77, 78, TEXT, required=True, allowed=CARD_TRANSACTION_TYPE_CODES),
], "Entry Detail Record (POS)")

# SHR: card expiration MMYY, document reference and card account number (numeric, R), card
# transaction type code (N, M) (NR OR96; other-sec §4.16). The card number is masked like an account.
ENTRY_SHR = entry_layout("entry_shr", [
    F("card_expiration_date", 40, 43, DIGITS, check=CHECK_MMYY),
    F("document_reference_number", 44, 54, DIGITS),
    F("individual_card_account_number", 55, 76, DIGITS, sensitive=True),
    F("card_transaction_type_code", 77, 78, DIGITS, allowed=CARD_TRANSACTION_TYPE_CODES),
], "Entry Detail Record (SHR)")

# DNE: standard positions, name R (NR OR84; other-sec §4.17).
ENTRY_DNE = entry_layout("entry_dne", [
    F("individual_identification_number", 40, 54, TEXT),
    F("individual_name", 55, 76, TEXT, required=True),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (DNE)")

# ENR: CTX-like corporate layout, agency name 59-74 (NR OR85; other-sec §4.18).
ENTRY_ENR = entry_layout("entry_enr", [
    F("identification_number", 40, 54, TEXT),
    F("number_of_addenda_records", 55, 58, NUMBER),
    F("receiving_company_name", 59, 74, TEXT, required=True),
    F("reserved", 75, 76, BLANK),
    F("discretionary_data", 77, 78, TEXT),
], "Entry Detail Record (ENR)")


# -- addenda 02 (other-sec §5) ---------------------------------------------------------------------
# POS and SHR (NR OR93, OR96). The trace number is the entry's (R27).
ADDENDA_02 = Layout("addenda_02", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="02"),
    F("reference_information_1", 4, 10, TEXT),
    F("reference_information_2", 11, 13, TEXT),
    F("terminal_identification_code", 14, 19, TEXT, required=True),
    F("transaction_serial_number", 20, 25, TEXT, required=True),
    F("transaction_date", 26, 29, DIGITS, check=CHECK_MMDD),
    F("authorization_code_or_card_expiration_date", 30, 35, TEXT),
    F("terminal_location", 36, 62, TEXT, required=True),
    F("terminal_city", 63, 77, TEXT, required=True),
    F("terminal_state", 78, 79, TEXT, required=True, allowed=US_STATE_CODES),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (02, POS/SHR)")

# MTE variant (NR OR91): Transaction Description (R) in 04-10, Network ID in 11-13, Transaction
# Time HHMMSS (R) in 30-35 (its value range is the `mte_transaction_time` entry check).
ADDENDA_02_MTE = Layout("addenda_02_mte", [
    F("record_type_code", 1, 1, DIGITS, fixed="7"),
    F("addenda_type_code", 2, 3, DIGITS, fixed="02"),
    F("transaction_description", 4, 10, TEXT, required=True),
    F("network_identification_code", 11, 13, TEXT),
    F("terminal_identification_code", 14, 19, TEXT, required=True),
    F("transaction_serial_number", 20, 25, TEXT, required=True),
    F("transaction_date", 26, 29, DIGITS, check=CHECK_MMDD),
    F("transaction_time", 30, 35, DIGITS),
    F("terminal_location", 36, 62, TEXT, required=True),
    F("terminal_city", 63, 77, TEXT, required=True),
    F("terminal_state", 78, 79, TEXT, required=True, allowed=US_STATE_CODES),
    F("trace_number", 80, 94, DIGITS),
], "Addenda Record (02, MTE)")
