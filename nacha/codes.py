"""NACHA code tables as data (transaction, service class, SEC, reserved descriptions, return and
change codes), each entry naming its source key from /work/shared/reference; no I/O, no clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Source keys are those of the reference documents:
#   nacha-and-premium-rules.md  (keys NR2013, MOOV-SRC, REINIT, RATES, NACHA-R90, ...; "ref §x.y")
#   nacha-other-sec-codes.md    (keys "NR ORnn", "AAP", "moov <file>";          "other-sec §x.y")


def _is_digits(s: str) -> bool:
    """ASCII 0-9 only (str.isdigit alone also accepts other Unicode digits)."""
    return s.isascii() and s.isdigit()


def _is_nacha_text(s: str) -> bool:
    """NACHA character set: ASCII above 0x1F, control characters invalid (ref §1.1)."""
    return all(0x20 <= ord(ch) < 0x7F for ch in s)


# ---------------------------------------------------------------------------------------------
# Transaction codes (ref §1.12, NR2013 OR123-124; ADV: other-sec §4.1, NR OR124)
# ---------------------------------------------------------------------------------------------

ACCOUNT_CHECKING = "checking"
ACCOUNT_SAVINGS = "savings"
ACCOUNT_GENERAL_LEDGER = "general_ledger"
ACCOUNT_LOAN = "loan"
ACCOUNT_ACCOUNTING = "accounting"  # ADV automated accounting advices
ACCOUNTS = frozenset(
    {ACCOUNT_CHECKING, ACCOUNT_SAVINGS, ACCOUNT_GENERAL_LEDGER, ACCOUNT_LOAN, ACCOUNT_ACCOUNTING}
)

KIND_RETURN_OR_NOC = "return_or_noc"
KIND_CREDIT = "credit"
KIND_DEBIT = "debit"
KIND_PRENOTE_CREDIT = "prenote_credit"
KIND_PRENOTE_DEBIT = "prenote_debit"
KIND_ZERO_CREDIT = "zero_credit"
KIND_ZERO_DEBIT = "zero_debit"
KIND_ADV_CREDIT = "adv_credit"
KIND_ADV_DEBIT = "adv_debit"
KIND_LOAN_REVERSAL = "loan_reversal"
TRANSACTION_KINDS = frozenset(
    {
        KIND_RETURN_OR_NOC,
        KIND_CREDIT,
        KIND_DEBIT,
        KIND_PRENOTE_CREDIT,
        KIND_PRENOTE_DEBIT,
        KIND_ZERO_CREDIT,
        KIND_ZERO_DEBIT,
        KIND_ADV_CREDIT,
        KIND_ADV_DEBIT,
        KIND_LOAN_REVERSAL,
    }
)


@dataclass(frozen=True)
class TransactionCode:
    """One Entry Detail transaction code (positions 02-03).

    is_debit: ADV 81-88 odd = credit, even = debit (other-sec §4.1); every other code by its ones
    digit, 1-4 credit and 5-9 debit (ref §1.10, MOOV-SRC entryDetail.go `creditOrDebit`). For a
    return/NOC code this is the side of the original entry it answers (26 answers debits 27/28/29),
    which is also the side the service class code checks.
    """

    code: str
    account: str
    kind: str
    is_debit: bool
    is_prenote: bool
    is_return: bool
    zero_amount: bool  # amount must be zero
    title: str
    source: str


_TX_SOURCE = "NR2013 OR123-124 (ref §1.12)"
# 41-56: ref §1.12 gives "41-49 GL, 51-56 loan (55 loan debit reversals only)"; the forward code
# list 42-44, 47-49, 52-55 with zero-dollar 44/49/54 is in other-sec §4.12 (NR OR124).
_TX_SOURCE_GL_LOAN = "NR2013 OR123-124 (ref §1.12); NR OR124 (other-sec §4.12 forward code list)"
_TX_SOURCE_ADV = "NR OR124; moov batch.go calculateADVBatchAmounts (other-sec §4.1)"

# (code, account, kind, title, source)
_TX_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("21", ACCOUNT_CHECKING, KIND_RETURN_OR_NOC, "Return or NOC for original 22/23/24", _TX_SOURCE),
    ("22", ACCOUNT_CHECKING, KIND_CREDIT, "Checking credit", _TX_SOURCE),
    ("23", ACCOUNT_CHECKING, KIND_PRENOTE_CREDIT, "Prenote of checking credit (also DNE/ENR non-dollar)", _TX_SOURCE),
    ("24", ACCOUNT_CHECKING, KIND_ZERO_CREDIT, "Zero-dollar checking credit with remittance (CCD/CTX/IAT); ACK/ATX", _TX_SOURCE),
    ("26", ACCOUNT_CHECKING, KIND_RETURN_OR_NOC, "Return or NOC for original 27/28/29", _TX_SOURCE),
    ("27", ACCOUNT_CHECKING, KIND_DEBIT, "Checking debit", _TX_SOURCE),
    ("28", ACCOUNT_CHECKING, KIND_PRENOTE_DEBIT, "Prenote of checking debit", _TX_SOURCE),
    ("29", ACCOUNT_CHECKING, KIND_ZERO_DEBIT, "Zero-dollar checking debit with remittance (CCD/CTX/IAT)", _TX_SOURCE),
    ("31", ACCOUNT_SAVINGS, KIND_RETURN_OR_NOC, "Return or NOC for original 32/33/34", _TX_SOURCE),
    ("32", ACCOUNT_SAVINGS, KIND_CREDIT, "Savings credit", _TX_SOURCE),
    ("33", ACCOUNT_SAVINGS, KIND_PRENOTE_CREDIT, "Prenote of savings credit (also DNE/ENR non-dollar)", _TX_SOURCE),
    ("34", ACCOUNT_SAVINGS, KIND_ZERO_CREDIT, "Zero-dollar savings credit with remittance; ACK/ATX", _TX_SOURCE),
    ("36", ACCOUNT_SAVINGS, KIND_RETURN_OR_NOC, "Return or NOC for original 37/38/39", _TX_SOURCE),
    ("37", ACCOUNT_SAVINGS, KIND_DEBIT, "Savings debit", _TX_SOURCE),
    ("38", ACCOUNT_SAVINGS, KIND_PRENOTE_DEBIT, "Prenote of savings debit", _TX_SOURCE),
    ("39", ACCOUNT_SAVINGS, KIND_ZERO_DEBIT, "Zero-dollar savings debit with remittance (CCD/CTX/IAT)", _TX_SOURCE),
    ("41", ACCOUNT_GENERAL_LEDGER, KIND_RETURN_OR_NOC, "Return or NOC for original 42/43/44", _TX_SOURCE_GL_LOAN),
    ("42", ACCOUNT_GENERAL_LEDGER, KIND_CREDIT, "General ledger credit", _TX_SOURCE_GL_LOAN),
    ("43", ACCOUNT_GENERAL_LEDGER, KIND_PRENOTE_CREDIT, "Prenote of general ledger credit", _TX_SOURCE_GL_LOAN),
    ("44", ACCOUNT_GENERAL_LEDGER, KIND_ZERO_CREDIT, "Zero-dollar general ledger credit with remittance", _TX_SOURCE_GL_LOAN),
    ("46", ACCOUNT_GENERAL_LEDGER, KIND_RETURN_OR_NOC, "Return or NOC for original 47/48/49", _TX_SOURCE_GL_LOAN),
    ("47", ACCOUNT_GENERAL_LEDGER, KIND_DEBIT, "General ledger debit", _TX_SOURCE_GL_LOAN),
    ("48", ACCOUNT_GENERAL_LEDGER, KIND_PRENOTE_DEBIT, "Prenote of general ledger debit", _TX_SOURCE_GL_LOAN),
    ("49", ACCOUNT_GENERAL_LEDGER, KIND_ZERO_DEBIT, "Zero-dollar general ledger debit with remittance", _TX_SOURCE_GL_LOAN),
    ("51", ACCOUNT_LOAN, KIND_RETURN_OR_NOC, "Return or NOC for original 52/53/54", _TX_SOURCE_GL_LOAN),
    ("52", ACCOUNT_LOAN, KIND_CREDIT, "Loan account credit", _TX_SOURCE_GL_LOAN),
    ("53", ACCOUNT_LOAN, KIND_PRENOTE_CREDIT, "Prenote of loan account credit", _TX_SOURCE_GL_LOAN),
    ("54", ACCOUNT_LOAN, KIND_ZERO_CREDIT, "Zero-dollar loan account credit with remittance", _TX_SOURCE_GL_LOAN),
    ("55", ACCOUNT_LOAN, KIND_LOAN_REVERSAL, "Loan account debit (reversals only)", _TX_SOURCE_GL_LOAN),
    ("56", ACCOUNT_LOAN, KIND_RETURN_OR_NOC, "Return or NOC for original 55", _TX_SOURCE_GL_LOAN),
    ("81", ACCOUNT_ACCOUNTING, KIND_ADV_CREDIT, "Credit for ACH debits originated", _TX_SOURCE_ADV),
    ("82", ACCOUNT_ACCOUNTING, KIND_ADV_DEBIT, "Debit for ACH credits originated", _TX_SOURCE_ADV),
    ("83", ACCOUNT_ACCOUNTING, KIND_ADV_CREDIT, "Credit for ACH credits received", _TX_SOURCE_ADV),
    ("84", ACCOUNT_ACCOUNTING, KIND_ADV_DEBIT, "Debit for ACH debits received", _TX_SOURCE_ADV),
    ("85", ACCOUNT_ACCOUNTING, KIND_ADV_CREDIT, "Credit for ACH credits in rejected batches", _TX_SOURCE_ADV),
    ("86", ACCOUNT_ACCOUNTING, KIND_ADV_DEBIT, "Debit for ACH debits in rejected batches", _TX_SOURCE_ADV),
    ("87", ACCOUNT_ACCOUNTING, KIND_ADV_CREDIT, "Summary credit for respondent ACH activity", _TX_SOURCE_ADV),
    ("88", ACCOUNT_ACCOUNTING, KIND_ADV_DEBIT, "Summary debit for respondent ACH activity", _TX_SOURCE_ADV),
)

_ADV_KINDS = frozenset({KIND_ADV_CREDIT, KIND_ADV_DEBIT})
_PRENOTE_KINDS = frozenset({KIND_PRENOTE_CREDIT, KIND_PRENOTE_DEBIT})
_ZERO_KINDS = _PRENOTE_KINDS | {KIND_ZERO_CREDIT, KIND_ZERO_DEBIT}


def _is_debit(code: str, kind: str) -> bool:
    if kind in _ADV_KINDS:
        return int(code) % 2 == 0  # ADV: odd = credit, even = debit (other-sec §4.1)
    return code[1] in "56789"  # ones digit 5-9 debit, 1-4 credit (ref §1.10)


TRANSACTION_CODES: dict[str, TransactionCode] = {
    code: TransactionCode(
        code=code,
        account=account,
        kind=kind,
        is_debit=_is_debit(code, kind),
        is_prenote=kind in _PRENOTE_KINDS,
        is_return=kind == KIND_RETURN_OR_NOC,
        zero_amount=kind in _ZERO_KINDS,
        title=title,
        source=source,
    )
    for code, account, kind, title, source in _TX_ROWS
}

ADV_TRANSACTION_CODES = frozenset(c for c, t in TRANSACTION_CODES.items() if t.kind in _ADV_KINDS)

# What this system sends (ref §1.12): live premium debits and debit prenotes.
DEBIT_CODE = {ACCOUNT_CHECKING: "27", ACCOUNT_SAVINGS: "37"}
PRENOTE_DEBIT_CODE = {ACCOUNT_CHECKING: "28", ACCOUNT_SAVINGS: "38"}


def transaction_code(code: str) -> TransactionCode | None:
    """The table row for a two-digit transaction code, or None if it is not assigned."""
    return TRANSACTION_CODES.get(code)


def account_type_of(code: str) -> str | None:
    """Account type of a transaction code ('26'/'27'/'28' -> 'checking', '36'/'37'/'38' ->
    'savings', GL/loan/ADV codes -> their account); None for an unknown code."""
    tx = TRANSACTION_CODES.get(code)
    return tx.account if tx is not None else None


# ---------------------------------------------------------------------------------------------
# Service class codes (ref §1.11, NR2013 OR120; MOOV-SRC batch.go ValidTranCodeForServiceClassCode)
# ---------------------------------------------------------------------------------------------

SERVICE_CLASS_MIXED = "200"
SERVICE_CLASS_CREDITS = "220"
SERVICE_CLASS_DEBITS = "225"
SERVICE_CLASS_ADV = "280"

SERVICE_CLASS_CODES: dict[str, str] = {
    SERVICE_CLASS_MIXED: "ACH entries mixed debits and credits",
    SERVICE_CLASS_CREDITS: "ACH credits only",
    SERVICE_CLASS_DEBITS: "ACH debits only",
    SERVICE_CLASS_ADV: "ACH automated accounting advices (operator only)",
}
SERVICE_CLASS_SOURCE = (
    "NR2013 OR120 (ref §1.11; other-sec §1); MOOV-SRC batch.go ValidTranCodeForServiceClassCode"
)


def service_class_allows(scc: str, tx: TransactionCode) -> bool:
    """Whether an entry with this transaction code may sit in a batch of this service class:
    220 credit-side only, 225 debit-side only, 200 either, 280 only ADV codes 81-88; ADV codes
    only in 280. Unknown service class codes allow nothing."""
    is_adv = tx.kind in _ADV_KINDS
    if scc == SERVICE_CLASS_ADV:
        return is_adv
    if is_adv:
        return False
    if scc == SERVICE_CLASS_MIXED:
        return True
    if scc == SERVICE_CLASS_CREDITS:
        return not tx.is_debit
    if scc == SERVICE_CLASS_DEBITS:
        return tx.is_debit
    return False


# ---------------------------------------------------------------------------------------------
# Standard Entry Class codes (ref §1.15; other-sec §1 and §4)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecCode:
    """consumer: True only where the reference's definition names a consumer account, consumer
    check or consumer account holder (False also covers "not stated"). we_originate: this system
    sends entries of this SEC code (PPD, WEB, TEL; ref §1.15)."""

    code: str
    title: str
    consumer: bool
    we_originate: bool
    source: str


# (code, title, consumer, we_originate, source). The references give no expanded names for PPD,
# WEB, TEL, CCD, COR and IAT; their titles describe them in the references' own words.
_SEC_ROWS: tuple[tuple[str, str, bool, bool, str], ...] = (
    ("PPD", "Consumer credit or debit under a standing or single-entry written authorization", True, True, "NR2013 OR6-OR7, OR17 (ref §1.15)"),
    ("WEB", "Consumer debit authorized via the Internet or a wireless network", True, True, "NR2013 OR21-OR22 (ref §1.15)"),
    ("TEL", "Consumer debit authorized orally by telephone", True, True, "NR2013 OR19-OR21 (ref §1.15)"),
    ("CCD", "Corporate credit or debit to/from a non-consumer account", False, False, "NR2013 OR127; MOOV-SRC batchCCD.go (ref §1.15)"),
    ("CTX", "Corporate Trade Exchange", False, False, "NR OR121, OR83 (other-sec §4.12)"),
    ("COR", "Notification of Change / refused Notification of Change", False, False, "NR2013 OR167 (ref §1.15, §1.6)"),
    ("ACK", "ACH Payment Acknowledgment (of a CCD credit)", False, False, "NR OR120, OR185-OR187 (other-sec §4.2)"),
    ("ATX", "Financial EDI Acknowledgment (of a CTX credit)", False, False, "NR OR121, OR188 (other-sec §4.3)"),
    ("ADV", "Automated Accounting Advice", False, False, "NR OR120-OR121, OR77-OR78 (other-sec §4.1)"),
    ("ARC", "Accounts Receivable entry", True, False, "NR OR121, OR79 (other-sec §4.5)"),
    ("BOC", "Back Office Conversion", True, False, "NR OR121, OR80 (other-sec §4.6: identical to ARC)"),
    ("POP", "Point-of-Purchase", False, False, "NR OR121-OR122, OR92 (other-sec §4.7)"),
    ("RCK", "Re-presented Check entry", True, False, "NR OR122, OR95, OR17 §2.5.13.3 (other-sec §4.8)"),
    ("XCK", "Destroyed Check entry", False, False, "NR OR122, OR101 (other-sec §4.9)"),
    ("TRC", "Check Truncation entry", False, False, "NR OR122, OR98 (other-sec §4.10)"),
    ("TRX", "Check Truncation Entries Exchange", False, False, "NR OR122, OR99 (other-sec §4.11)"),
    ("CIE", "Customer-Initiated Entry", True, False, "NR OR121, OR82 (other-sec §4.13)"),
    ("MTE", "Machine Transfer Entry", True, False, "NR OR121, OR91 (other-sec §4.14)"),
    ("POS", "Point of Sale entry", False, False, "NR OR122, OR93 (other-sec §4.15)"),
    ("SHR", "Shared Network transaction", False, False, "NR OR122, OR96 (other-sec §4.16)"),
    ("DNE", "Death Notification Entry", False, False, "NR OR121, OR84 (other-sec §4.17)"),
    ("ENR", "Automated Enrollment entry", False, False, "NR OR121, OR85 (other-sec §4.18)"),
    ("IAT", "International entry (outbound international payments via Gateway; layout not in the references)", False, False, "NR2013 OR168-OR170 (ref §2.5 C08, C14); NR2013 OR143-OR145 (ref §2.1 R80-R85)"),
)

SEC_CODES: dict[str, SecCode] = {
    code: SecCode(code=code, title=title, consumer=consumer, we_originate=we, source=source)
    for code, title, consumer, we, source in _SEC_ROWS
}

# ---------------------------------------------------------------------------------------------
# Reserved Company Entry Description values (ref §1.14; other-sec §3.2)
# ---------------------------------------------------------------------------------------------

RESERVED_DESCRIPTIONS: dict[str, str] = {
    "RETRY PYMT": "Batch of reinitiated entries (replaces the original description)",
    "RETURN FEE": "Batch of return-fee entries",
    "REVERSAL": "Batch of reversing entries",
    "RECLAIM": "Reclamation entries",
    "NONSETTLED": "Entries that could not settle",
    "ACCTVERIFY": "Micro-entries used for account validation (since 2022-09-16)",
    "PAYROLL": "PPD credits for wages (since 2026-03-20); not used by premium collection",
    "PURCHASE": "Consumer e-commerce WEB debits for goods (since 2026-03-20); premiums are services, not required",
    "AUTOENROLL": "ENR batches (Automated Enrollment entries)",
    "REDEPCHECK": "RCK batches (Re-presented Check entries)",
    "NO CHECK": "XCK batches (Destroyed Check entries)",
}
RESERVED_DESCRIPTION_SOURCES: dict[str, str] = {
    "RETRY PYMT": "REINIT (epcor 2021) (ref §1.14, §2.4)",
    "RETURN FEE": "NR2013 OR105, OR29 (ref §1.14)",
    "REVERSAL": "NR2013 OR105 (ref §1.14)",
    "RECLAIM": "NR2013 OR105 (ref §1.14)",
    "NONSETTLED": "NR2013 OR105 (ref §1.14)",
    "ACCTVERIFY": "NACHA-MICRO (ref §1.14)",
    "PAYROLL": "NACHA-DESC (ref §1.14)",
    "PURCHASE": "NACHA-DESC (ref §1.14)",
    "AUTOENROLL": "AAP slide 7; NR OR105-OR106 (other-sec §3.2, §4.18)",
    "REDEPCHECK": "AAP slide 7; NR OR105-OR106 (other-sec §3.2, §4.8)",
    "NO CHECK": "AAP slide 7; NR OR105-OR106 (other-sec §3.2, §4.9)",
}

# ---------------------------------------------------------------------------------------------
# Return reason codes (ref §2.1-§2.4)
# ---------------------------------------------------------------------------------------------

# Return-rate categories (ref §2.1 "Cat." column, §2.3; RATES).
CATEGORY_UNAUTHORIZED = "unauthorized"
CATEGORY_ADMINISTRATIVE = "administrative"
CATEGORY_OTHER = "other"
CATEGORIES = frozenset({CATEGORY_UNAUTHORIZED, CATEGORY_ADMINISTRATIVE, CATEGORY_OTHER})

# Dispositions: what this business does with a return (ref §2.1 [DESIGN] handling classes).
# Business code switches on these, never on raw return codes.
RETRY_FUNDS = "retry"  # re-present up to MAX_REINITIATIONS times within 180 days ("RETRY PYMT")
STOP_PAYMENT = "stop_payment"  # unpaid; retry only after the member re-authorizes
BLOCK_ACCOUNT = "block_account"  # account invalid: block it, suspend AutoPay until a new account
REVOKE_AUTH = "revoke_authorization"  # unauthorized: revoke the AutoPay mandate
FORMAT_ERROR = "format_error"  # our file/format error: ops alert, fix the generator
REVIEW = "review"  # case-by-case ops review
DISHONOR = "dishonor"  # dishonored return (ODFI)
CONTEST = "contest"  # contested dishonored return (RDFI)
DISPOSITIONS = frozenset(
    {RETRY_FUNDS, STOP_PAYMENT, BLOCK_ACCOUNT, REVOKE_AUTH, FORMAT_ERROR, REVIEW, DISHONOR, CONTEST}
)

# Reinitiation legend (ref §2.1).
REINIT_RETRY = "Y2"  # may be reinitiated up to 2 times within 180 days of original settlement
REINIT_REAUTHORIZED = "Y*"  # only after the Receiver separately authorizes reinitiation
REINIT_CORRECTED = "C"  # only after corrective action remedies the reason for return
REINIT_NO = "N"  # needs new authorization / do not retry
REINIT_NONE = "-"  # no reinitiation value given in the reference table
REINITIATIONS = frozenset(
    {REINIT_RETRY, REINIT_REAUTHORIZED, REINIT_CORRECTED, REINIT_NO, REINIT_NONE}
)

# Time frames (ref §2.1 legend, §2.2).
TIME_FRAMES: dict[str, str] = {
    "2BD": "by opening of business on the 2nd banking day after the Settlement Date of the entry "
    "being returned (R23: after the RDFI learns of the refusal; contested dishonored returns: "
    "after the Settlement Date of the dishonored return)",
    "60CD": "by opening of business on the banking day after the 60th calendar day after the "
    "Settlement Date (extended return)",
    "Op": "ACH Operator reject/return, next file delivery after processing",
    "undefined": "not defined by the Rules (ODFI/RDFI agreement)",
    "5BD": "within 5 banking days after the Settlement Date of the return (dishonored returns)",
    "N/A": "not applicable (returned by a federal government agency)",
    "TBD": "own time frame, not yet published",
}

KIND_RETURN = "return"
KIND_DISHONORED = "dishonored"
KIND_CONTESTED = "contested"
RETURN_KINDS = frozenset({KIND_RETURN, KIND_DISHONORED, KIND_CONTESTED})


@dataclass(frozen=True)
class ReturnCode:
    code: str
    title: str
    initiated_by: str
    time_frame: str  # a TIME_FRAMES key
    category: str  # CATEGORY_*: for the 0.5% / 3% / 15% return-rate watch
    reinitiation: str  # REINIT_*: 'Y2' | 'Y*' | 'C' | 'N' | '-'
    disposition: str  # one of DISPOSITIONS
    retry_allowed: bool  # reinitiation for funds: R01, R09
    blocks_account: bool  # account invalid/closed: block the stored account
    revokes_authorization: bool  # unauthorized: revoke the AutoPay mandate
    kind: str  # 'return' | 'dishonored' | 'contested'
    effective_from: date | None  # first day the code may be used; None = already in force
    source: str


_RDFI = "RDFI"
_OPERATOR = "ACH Operator"
_GATEWAY = "Gateway"
_RDFI_GATEWAY = "RDFI/Gateway"
_AGENCY = "Federal Government Agency"
_ODFI = "ODFI"

# (code, title, initiated_by, time_frame, reinitiation, source) -- ref §2.1 table.
_RETURN_ROWS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("R01", "Insufficient Funds", _RDFI, "2BD", "Y2", "NR2013 OR127; REINIT"),
    ("R02", "Account Closed", _RDFI, "2BD", "C", "NR2013 OR127"),
    ("R03", "No Account / Unable to Locate Account", _RDFI, "2BD", "C", "NR2013 OR127"),
    ("R04", "Invalid Account Number Structure", _RDFI, "2BD", "C", "NR2013 OR127"),
    ("R05", "Unauthorized Debit to Consumer Account Using Corporate SEC Code", _RDFI, "60CD", "N", "NR2013 OR127"),
    ("R06", "Returned per ODFI's Request", _RDFI, "undefined", "C", "NR2013 OR127"),
    ("R07", "Authorization Revoked by Customer", _RDFI, "60CD", "N", "NR2013 OR128"),
    ("R08", "Payment Stopped", _RDFI, "2BD", "Y*", "NR2013 OR128; NR2013 OR28"),
    ("R09", "Uncollected Funds", _RDFI, "2BD", "Y2", "NR2013 OR128"),
    ("R10", "Customer Advises Originator is Not Known to Receiver and/or Not Authorized to Debit", _RDFI, "60CD", "N", "NR2013 OR128; MOOV-SRC addenda99.go"),
    ("R11", "Customer Advises Entry Not in Accordance with the Terms of the Authorization", _RDFI, "60CD", "C", "MOOV-SRC addenda99.go; RATES (icba); REINIT (epcor Corporate-User)"),
    ("R12", "Account Sold to Another DFI", _RDFI, "2BD", "C", "NR2013 OR129"),
    ("R13", "Invalid ACH Routing Number", _OPERATOR, "Op", "C", "NR2013 OR129"),
    ("R14", "Representative Payee Deceased or Unable to Continue", _RDFI, "2BD", "C", "NR2013 OR129"),
    ("R15", "Beneficiary or Account Holder (Other Than Representative Payee) Deceased", _RDFI, "2BD", "N", "NR2013 OR129"),
    ("R16", "Account Frozen / Entry Returned per OFAC Instruction", _RDFI_GATEWAY, "2BD", "C", "NR2013 OR130; NACHA-R90"),
    ("R17", "File Record Edit Criteria / Entry with Invalid Account Number Initiated Under Questionable Circumstances / Return of Improperly-Initiated Reversal", _RDFI, "2BD", "C", "NR2013 OR130; MOOV-SRC addenda99.go; R17Q"),
    ("R18", "Improper Effective Entry Date", _OPERATOR, "Op", "C", "NR2013 OR130"),
    ("R19", "Amount Field Error", _OPERATOR, "Op", "C", "NR2013 OR131"),
    ("R20", "Non-Transaction Account", _RDFI, "2BD", "C", "NR2013 OR131"),
    ("R21", "Invalid Company Identification", _RDFI, "2BD", "C", "NR2013 OR131"),
    ("R22", "Invalid Individual ID Number", _RDFI, "2BD", "C", "NR2013 OR131"),
    ("R23", "Credit Entry Refused by Receiver", _RDFI, "2BD", "C", "NR2013 OR132"),
    ("R24", "Duplicate Entry", _RDFI, "2BD", "N", "NR2013 OR132"),
    ("R25", "Addenda Error", _OPERATOR, "Op", "C", "NR2013 OR132"),
    ("R26", "Mandatory Field Error", _OPERATOR, "Op", "C", "NR2013 OR132"),
    ("R27", "Trace Number Error", _OPERATOR, "Op", "C", "NR2013 OR133"),
    ("R28", "Routing Number Check Digit Error", _OPERATOR, "Op", "C", "NR2013 OR133"),
    ("R29", "Corporate Customer Advises Not Authorized", _RDFI, "2BD", "N", "NR2013 OR133"),
    ("R30", "RDFI Not Participant in Check Truncation Program", _OPERATOR, "Op", "-", "NR2013 OR133"),
    ("R31", "Permissible Return Entry (CCD/CTX)", _RDFI, "undefined", "-", "NR2013 OR133"),
    ("R32", "RDFI Non-Settlement", _OPERATOR, "Op", "C", "NR2013 OR133"),
    ("R33", "Return of XCK Entry", _RDFI, "60CD", "-", "NR2013 OR133"),
    ("R34", "Limited Participation DFI", _OPERATOR, "Op", "C", "NR2013 OR134"),
    ("R35", "Return of Improper Debit Entry", _OPERATOR, "Op", "C", "NR2013 OR134"),
    ("R36", "Return of Improper Credit Entry", _OPERATOR, "Op", "C", "NR2013 OR134"),
    ("R37", "Source Document Presented for Payment", _RDFI, "60CD", "-", "NR2013 OR134"),
    ("R38", "Stop Payment on Source Document", _RDFI, "60CD", "-", "NR2013 OR134"),
    ("R39", "Improper Source Document / Source Document Presented for Payment", _RDFI, "2BD", "-", "NR2013 OR135"),
    ("R40", "Return of ENR Entry by Federal Government Agency", _AGENCY, "N/A", "-", "NR2013 OR136"),
    ("R41", "Invalid Transaction Code (ENR)", _AGENCY, "N/A", "-", "NR2013 OR136"),
    ("R42", "Routing Number/Check Digit Error (ENR)", _AGENCY, "N/A", "-", "NR2013 OR136"),
    ("R43", "Invalid DFI Account Number (ENR)", _AGENCY, "N/A", "-", "NR2013 OR136-OR137"),
    ("R44", "Invalid Individual ID Number (ENR)", _AGENCY, "N/A", "-", "NR2013 OR136-OR137"),
    ("R45", "Invalid Individual Name (ENR)", _AGENCY, "N/A", "-", "NR2013 OR137"),
    ("R46", "Invalid Representative Payee Indicator (ENR)", _AGENCY, "N/A", "-", "NR2013 OR137"),
    ("R47", "Duplicate Enrollment (ENR)", _AGENCY, "N/A", "-", "NR2013 OR137"),
    ("R50", "State Law Affecting RCK Acceptance", _RDFI, "2BD", "-", "NR2013 OR138"),
    ("R51", "Item Related to RCK Entry is Ineligible or RCK Entry is Improper", _RDFI, "60CD", "N", "NR2013 OR138"),
    ("R52", "Stop Payment on Item Related to RCK Entry", _RDFI, "60CD", "-", "NR2013 OR138"),
    ("R53", "Item and RCK Entry Presented for Payment", _RDFI, "60CD", "-", "NR2013 OR138"),
    ("R61", "Misrouted Return", _ODFI, "5BD", "-", "NR2013 OR139"),
    ("R62", "Return of Erroneous or Reversing Debit", _ODFI, "5BD", "-", "MOOV-SRC addenda99.go (5BD assumed as for other dishonors)"),
    ("R67", "Duplicate Return", _ODFI, "5BD", "-", "NR2013 OR139"),
    ("R68", "Untimely Return", _ODFI, "5BD", "-", "NR2013 OR139"),
    ("R69", "Field Error(s)", _ODFI, "5BD", "-", "NR2013 OR140, OR161"),
    ("R70", "Permissible Return Entry Not Accepted / Return Not Requested by ODFI", _ODFI, "5BD", "-", "NR2013 OR140"),
    ("R71", "Misrouted Dishonored Return", _RDFI, "2BD", "-", "NR2013 OR141"),
    ("R72", "Untimely Dishonored Return", _RDFI, "2BD", "-", "NR2013 OR141"),
    ("R73", "Timely Original Return", _RDFI, "2BD", "-", "NR2013 OR141"),
    ("R74", "Corrected Return", _RDFI, "2BD", "-", "NR2013 OR142"),
    ("R75", "Return Not a Duplicate", _RDFI, "2BD", "-", "NR2013 OR142"),
    ("R76", "No Errors Found", _RDFI, "2BD", "-", "NR2013 OR142"),
    ("R77", "Non-Acceptance of R62 Dishonored Return", _RDFI, "2BD", "-", "MOOV-SRC addenda99.go (2BD assumed as for other contests)"),
    ("R80", "IAT Coding Error", _GATEWAY, "2BD", "-", "NR2013 OR143-OR145"),
    ("R81", "Non-Participant in IAT Program", _GATEWAY, "2BD", "-", "NR2013 OR143-OR145"),
    ("R82", "Invalid Foreign RDFI Identification", _GATEWAY, "2BD", "-", "NR2013 OR143-OR145"),
    ("R83", "Foreign RDFI Unable to Settle", _GATEWAY, "2BD", "-", "NR2013 OR143-OR145"),
    ("R84", "Entry Not Processed by Gateway", _GATEWAY, "2BD", "-", "NR2013 OR143-OR145"),
    ("R85", "Incorrectly Coded Outbound International Payment", _GATEWAY, "2BD", "-", "NR2013 OR145"),
    ("R90", "Entry Returned Due to RDFI's Sanctions Compliance Obligations", _RDFI_GATEWAY, "TBD", "-", "NACHA-R90; MOOV-SRC commit 15ee79f4"),
)

_RETURN_CATEGORY_CODES: dict[str, frozenset[str]] = {  # ref §2.1 Cat. column, §2.3 (RATES)
    CATEGORY_UNAUTHORIZED: frozenset({"R05", "R07", "R10", "R11", "R29", "R51"}),
    CATEGORY_ADMINISTRATIVE: frozenset({"R02", "R03", "R04"}),
}

_DISPOSITION_CODES: dict[str, frozenset[str]] = {  # ref §2.1 [DESIGN] suggested handling classes
    RETRY_FUNDS: frozenset({"R01", "R09"}),
    STOP_PAYMENT: frozenset({"R08"}),
    BLOCK_ACCOUNT: frozenset({"R02", "R03", "R04", "R12", "R13", "R14", "R15", "R16", "R20", "R28"}),
    REVOKE_AUTH: frozenset({"R05", "R07", "R10", "R11", "R29", "R51"}),
    FORMAT_ERROR: frozenset(
        {"R17", "R18", "R19", "R24", "R25", "R26", "R27", "R30", "R32", "R34", "R35", "R36"}
    ),
    DISHONOR: frozenset({"R61", "R62", "R67", "R68", "R69", "R70"}),
    CONTEST: frozenset({"R71", "R72", "R73", "R74", "R75", "R76", "R77"}),
}
# Everything else is REVIEW. R21 and R22 are in none of the reference's [DESIGN] classes.

_EFFECTIVE_FROM: dict[str, date] = {"R90": date(2028, 3, 17)}  # NACHA-R90


def _disposition_of(code: str) -> str:
    for disposition, codes in _DISPOSITION_CODES.items():
        if code in codes:
            return disposition
    return REVIEW


def _category_of(code: str) -> str:
    for category, codes in _RETURN_CATEGORY_CODES.items():
        if code in codes:
            return category
    return CATEGORY_OTHER


def _return_kind_of(disposition: str) -> str:
    if disposition == DISHONOR:
        return KIND_DISHONORED
    if disposition == CONTEST:
        return KIND_CONTESTED
    return KIND_RETURN


def _make_return(row: tuple[str, str, str, str, str, str]) -> ReturnCode:
    code, title, initiated_by, time_frame, reinitiation, source = row
    disposition = _disposition_of(code)
    return ReturnCode(
        code=code,
        title=title,
        initiated_by=initiated_by,
        time_frame=time_frame,
        category=_category_of(code),
        reinitiation=reinitiation,
        disposition=disposition,
        retry_allowed=disposition == RETRY_FUNDS,
        blocks_account=disposition == BLOCK_ACCOUNT,
        revokes_authorization=disposition == REVOKE_AUTH,
        kind=_return_kind_of(disposition),
        effective_from=_EFFECTIVE_FROM.get(code),
        source=source,
    )


RETURN_CODES: dict[str, ReturnCode] = {row[0]: _make_return(row) for row in _RETURN_ROWS}


def return_code(code: str) -> ReturnCode | None:
    """The table row for a return reason code ('R01'), or None if the code is not assigned."""
    return RETURN_CODES.get(code)


def is_well_formed_return_code(code: str) -> bool:
    """'R' and two ASCII digits, the shape of the Return Reason Code field (ref §1.7 field 3,
    `Rnn`), whether or not the table knows the code: NACHA adds codes (R90 in 2028), and a bank
    may send one before this table has it."""
    return isinstance(code, str) and len(code) == 3 and code[0] == "R" and _is_digits(code[1:])


DISHONORED_RETURN_CODES = frozenset(c for c, r in RETURN_CODES.items() if r.kind == KIND_DISHONORED)
CONTESTED_RETURN_CODES = frozenset(c for c, r in RETURN_CODES.items() if r.kind == KIND_CONTESTED)
UNAUTHORIZED_CODES = frozenset(
    c for c, r in RETURN_CODES.items() if r.category == CATEGORY_UNAUTHORIZED
)
ADMINISTRATIVE_CODES = frozenset(
    c for c, r in RETURN_CODES.items() if r.category == CATEGORY_ADMINISTRATIVE
)

# Originator-level debit return-rate thresholds as exact fractions (numerator, denominator):
# unauthorized 0.5%, administrative 3.0%, overall 15.0% (any reason, excluding RCK), over the
# preceding 60 days or two calendar months. Ref §2.3 (RATES).
RETURN_RATE_THRESHOLDS: dict[str, tuple[int, int]] = {
    CATEGORY_UNAUTHORIZED: (5, 1000),
    CATEGORY_ADMINISTRATIVE: (3, 100),
    "overall": (15, 100),
}
RETURN_RATE_SOURCE = "RATES (ref §2.3)"

# Reinitiation (ref §2.4; NR2013 OR28, REINIT): R01/R09 no more than 2 reinitiations, within 180
# days after the Settlement Date of the original entry.
MAX_REINITIATIONS = 2
REINITIATION_WINDOW_DAYS = 180
REINITIATION_SOURCE = "NR2013 OR28 (2.12.4); REINIT (ref §2.4)"

# ---------------------------------------------------------------------------------------------
# Change codes (ref §2.5, §1.6; NR2013 OR168-OR172; MOOV-SRC addenda98.go)
# ---------------------------------------------------------------------------------------------

CORRECTED_DATA_LENGTH = 29  # Addenda 98 positions 36-64 (ref §1.6)

PART_ACCOUNT_NUMBER = "account_number"
PART_ROUTING_NUMBER = "routing_number"
PART_TRANSACTION_CODE = "transaction_code"
PART_INDIVIDUAL_NAME = "individual_name"
PART_INDIVIDUAL_ID = "individual_id"
PART_RDFI_ID = "rdfi_id"
PART_SEC_CODE = "sec_code"
PART_NAMES = frozenset(
    {
        PART_ACCOUNT_NUMBER,
        PART_ROUTING_NUMBER,
        PART_TRANSACTION_CODE,
        PART_INDIVIDUAL_NAME,
        PART_INDIVIDUAL_ID,
        PART_RDFI_ID,
        PART_SEC_CODE,
    }
)


@dataclass(frozen=True)
class CorrectedDataPart:
    """One value inside the 29-character Corrected Data field; positions 1-based, inclusive,
    relative to the start of that field."""

    name: str
    start: int
    end: int

    @property
    def width(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class ChangeCode:
    code: str
    title: str
    parts: tuple[CorrectedDataPart, ...]
    refused: bool  # C61-C69: refused NOC, sent by the ODFI
    applies_to_us: bool  # a NOC this system must act on for its PPD/WEB/TEL debits
    source: str


def _p(name: str, start: int, end: int) -> CorrectedDataPart:
    return CorrectedDataPart(name, start, end)


_NOC_SOURCE = "NR2013 OR168-OR170; MOOV-SRC addenda98.go (ref §2.5)"
_REFUSED_SOURCE = "NR2013 OR171-OR172; MOOV-SRC IsRefusedChangeCode (ref §2.5)"

# (code, title, parts, refused, applies_to_us, source)
_CHANGE_ROWS: tuple[tuple[str, str, tuple[CorrectedDataPart, ...], bool, bool, str], ...] = (
    ("C01", "Incorrect DFI Account Number", (_p(PART_ACCOUNT_NUMBER, 1, 17),), False, True, _NOC_SOURCE),
    ("C02", "Incorrect Routing Number", (_p(PART_ROUTING_NUMBER, 1, 9),), False, True, _NOC_SOURCE),
    ("C03", "Incorrect Routing Number and DFI Account Number", (_p(PART_ROUTING_NUMBER, 1, 9), _p(PART_ACCOUNT_NUMBER, 13, 29)), False, True, _NOC_SOURCE),
    ("C04", "Incorrect Individual Name / Receiving Company Name", (_p(PART_INDIVIDUAL_NAME, 1, 22),), False, True, _NOC_SOURCE),
    ("C05", "Incorrect Transaction Code", (_p(PART_TRANSACTION_CODE, 1, 2),), False, True, _NOC_SOURCE),
    ("C06", "Incorrect DFI Account Number and Transaction Code", (_p(PART_ACCOUNT_NUMBER, 1, 17), _p(PART_TRANSACTION_CODE, 21, 22)), False, True, _NOC_SOURCE),
    ("C07", "Incorrect Routing Number, DFI Account Number and Transaction Code", (_p(PART_ROUTING_NUMBER, 1, 9), _p(PART_ACCOUNT_NUMBER, 10, 26), _p(PART_TRANSACTION_CODE, 27, 28)), False, True, _NOC_SOURCE),
    ("C08", "Incorrect Receiving DFI Identification (IAT only)", (_p(PART_RDFI_ID, 1, 29),), False, False, _NOC_SOURCE),
    ("C09", "Incorrect Individual Identification Number", (_p(PART_INDIVIDUAL_ID, 1, 22),), False, True, _NOC_SOURCE),
    ("C13", "Addenda Format Error", (), False, True, _NOC_SOURCE),
    ("C14", "Incorrect SEC Code for Outbound International Payment (Gateway only)", (_p(PART_SEC_CODE, 1, 3),), False, False, _NOC_SOURCE),
    ("C61", "Misrouted Notification of Change", (), True, False, _REFUSED_SOURCE),
    ("C62", "Incorrect Trace Number", (), True, False, _REFUSED_SOURCE),
    ("C63", "Incorrect Company Identification Number", (), True, False, _REFUSED_SOURCE),
    ("C64", "Incorrect Individual Identification Number/Identification Number", (), True, False, _REFUSED_SOURCE),
    ("C65", "Incorrectly Formatted Corrected Data", (), True, False, _REFUSED_SOURCE),
    ("C66", "Incorrect Discretionary Data", (), True, False, _REFUSED_SOURCE),
    ("C67", "Routing Number Not From Original Entry Detail Record", (), True, False, _REFUSED_SOURCE),
    ("C68", "DFI Account Number Not From Original Entry Detail Record", (), True, False, _REFUSED_SOURCE),
    ("C69", "Incorrect Transaction Code", (), True, False, _REFUSED_SOURCE),
)

CHANGE_CODES: dict[str, ChangeCode] = {
    code: ChangeCode(
        code=code, title=title, parts=parts, refused=refused, applies_to_us=ours, source=source
    )
    for code, title, parts, refused, ours, source in _CHANGE_ROWS
}
REFUSED_CHANGE_CODES = frozenset(c for c, cc in CHANGE_CODES.items() if cc.refused)


def change_code(code: str) -> ChangeCode | None:
    """The table row for a change code ('C01'), or None (C10-C12 were removed in 2024)."""
    return CHANGE_CODES.get(code)


def _check_part(code: str, name: str, value: str) -> None:
    """Raise ValueError unless value (already stripped) is a valid corrected value for `name`."""
    if not value:
        raise ValueError(f"{code}: corrected {name} is blank")
    if not _is_nacha_text(value):
        raise ValueError(f"{code}: corrected {name} has characters outside the NACHA character set")
    if name == PART_ROUTING_NUMBER:
        if len(value) != 9 or not _is_digits(value):
            raise ValueError(f"{code}: corrected routing number must be 9 digits")
    elif name == PART_TRANSACTION_CODE:
        if len(value) != 2 or not _is_digits(value):
            raise ValueError(f"{code}: corrected transaction code must be 2 digits")
        if value not in TRANSACTION_CODES:
            raise ValueError(f"{code}: corrected transaction code {value!r} is not assigned")
    elif name == PART_SEC_CODE:
        if value not in SEC_CODES:
            raise ValueError(f"{code}: corrected SEC code {value!r} is not a SEC code")


def _change_code_or_raise(code: str) -> ChangeCode:
    cc = CHANGE_CODES.get(code)
    if cc is None:
        raise ValueError(f"unknown change code {code!r}")
    return cc


def parse_corrected_data(code: str, corrected: str) -> dict[str, str]:
    """Split an Addenda 98 Corrected Data field into its named values (spaces stripped).

    `corrected` may come with its trailing spaces already removed; it must not exceed 29
    characters. Positions outside the code's parts must be blank. Codes without parts (C13 and
    the refused codes C61-C69) give {}. Raises ValueError for an unknown code or a missing or
    invalid value.
    """
    cc = _change_code_or_raise(code)
    if not isinstance(corrected, str):
        raise ValueError(f"{code}: corrected data must be a string")
    if len(corrected) > CORRECTED_DATA_LENGTH:
        raise ValueError(f"{code}: corrected data longer than {CORRECTED_DATA_LENGTH} characters")
    if not cc.parts:
        return {}
    field = corrected.ljust(CORRECTED_DATA_LENGTH)
    values: dict[str, str] = {}
    covered: set[int] = set()
    for part in cc.parts:
        value = field[part.start - 1 : part.end].strip(" ")
        _check_part(code, part.name, value)
        values[part.name] = value
        covered.update(range(part.start - 1, part.end))
    for i, ch in enumerate(field):
        if i not in covered and ch != " ":
            raise ValueError(f"{code}: position {i + 1} of the corrected data must be blank")
    return values


def format_corrected_data(code: str, **parts: str) -> str:
    """Build the 29-character Corrected Data field for a change code from its named values
    (the inverse of parse_corrected_data). Raises ValueError for an unknown code, a missing or
    unexpected value, or a value that is invalid or too long for its positions."""
    cc = _change_code_or_raise(code)
    expected = {part.name for part in cc.parts}
    missing = expected - parts.keys()
    extra = parts.keys() - expected
    if missing:
        raise ValueError(f"{code}: missing corrected value(s) {sorted(missing)}")
    if extra:
        raise ValueError(f"{code}: unexpected corrected value(s) {sorted(extra)}")
    field = [" "] * CORRECTED_DATA_LENGTH
    for part in cc.parts:
        raw = parts[part.name]
        if not isinstance(raw, str):
            raise ValueError(f"{code}: corrected {part.name} must be a string")
        value = raw.strip(" ")
        _check_part(code, part.name, value)
        if len(value) > part.width:
            raise ValueError(
                f"{code}: corrected {part.name} longer than {part.width} characters"
            )
        field[part.start - 1 : part.start - 1 + len(value)] = value
    return "".join(field)


# ---------------------------------------------------------------------------------------------
# Table consistency, checked at import (explicit raises, so `python -O` keeps them).
# ---------------------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"nacha.codes table inconsistency: {message}")


def _check_tables() -> None:
    _require(len(TRANSACTION_CODES) == len(_TX_ROWS), "duplicate transaction code")
    for key, tx in TRANSACTION_CODES.items():
        _require(key == tx.code, f"transaction key {key} != {tx.code}")
        _require(len(key) == 2 and _is_digits(key), f"transaction code {key} not 2 digits")
        _require(tx.account in ACCOUNTS, f"{key}: account {tx.account}")
        _require(tx.kind in TRANSACTION_KINDS, f"{key}: kind {tx.kind}")
        _require(bool(tx.title) and bool(tx.source), f"{key}: title/source missing")
        _require(not (tx.is_prenote and tx.is_return), f"{key}: prenote and return")
        _require(not tx.is_prenote or tx.zero_amount, f"{key}: prenote must be zero amount")
        is_adv = tx.kind in _ADV_KINDS
        _require(is_adv == (tx.account == ACCOUNT_ACCOUNTING), f"{key}: ADV account")
        _require(is_adv == ("81" <= key <= "88"), f"{key}: ADV range")
        if not is_adv:
            _require(tx.is_debit == (key[1] in "56789"), f"{key}: ones-digit side")
    _require(ADV_TRANSACTION_CODES == {str(n) for n in range(81, 89)}, "ADV codes 81-88")
    for table in (DEBIT_CODE, PRENOTE_DEBIT_CODE):
        for account, code in table.items():
            tx = TRANSACTION_CODES[code]
            _require(tx.account == account and tx.is_debit, f"{code}: debit code for {account}")
    for account, code in PRENOTE_DEBIT_CODE.items():
        _require(TRANSACTION_CODES[code].is_prenote, f"{code}: prenote debit code")

    for key, sec in SEC_CODES.items():
        _require(key == sec.code and len(key) == 3 and key.isascii() and key.isupper(), f"SEC {key}")
        _require(bool(sec.title) and bool(sec.source), f"SEC {key}: title/source missing")
        _require(not sec.we_originate or sec.consumer, f"SEC {key}: we only originate consumer SECs")
    _require(RESERVED_DESCRIPTIONS.keys() == RESERVED_DESCRIPTION_SOURCES.keys(), "description sources")
    for word in RESERVED_DESCRIPTIONS:
        _require(len(word) <= 10 and word == word.upper(), f"reserved description {word!r}")

    _require(len(RETURN_CODES) == len(_RETURN_ROWS), "duplicate return code")
    for key, rc in RETURN_CODES.items():
        _require(key == rc.code, f"return key {key} != {rc.code}")
        _require(is_well_formed_return_code(key), f"return code {key}")
        _require(rc.category in CATEGORIES, f"{key}: category {rc.category}")
        _require(rc.disposition in DISPOSITIONS, f"{key}: disposition {rc.disposition}")
        _require(rc.reinitiation in REINITIATIONS, f"{key}: reinitiation {rc.reinitiation}")
        _require(rc.time_frame in TIME_FRAMES, f"{key}: time frame {rc.time_frame}")
        _require(rc.kind in RETURN_KINDS, f"{key}: kind {rc.kind}")
        _require(bool(rc.title) and bool(rc.source) and bool(rc.initiated_by), f"{key}: text missing")
        _require(rc.retry_allowed == (rc.reinitiation == REINIT_RETRY), f"{key}: retry vs Y2")
        _require(rc.retry_allowed == (rc.disposition == RETRY_FUNDS), f"{key}: retry disposition")
        _require(rc.blocks_account == (rc.disposition == BLOCK_ACCOUNT), f"{key}: block")
        _require(
            rc.revokes_authorization == (rc.category == CATEGORY_UNAUTHORIZED),
            f"{key}: revocation vs unauthorized category",
        )
        _require(rc.disposition != STOP_PAYMENT or rc.reinitiation == REINIT_REAUTHORIZED, f"{key}: Y*")
    seen: set[str] = set()
    for codes in _DISPOSITION_CODES.values():
        _require(not (codes & seen), "a return code has two dispositions")
        _require(codes <= RETURN_CODES.keys(), "disposition names an unknown return code")
        seen |= codes
    for codes in _RETURN_CATEGORY_CODES.values():
        _require(codes <= RETURN_CODES.keys(), "category names an unknown return code")
    _require(not (UNAUTHORIZED_CODES & ADMINISTRATIVE_CODES), "categories overlap")
    _require(not (DISHONORED_RETURN_CODES & CONTESTED_RETURN_CODES), "dishonor/contest overlap")
    _require(set(RETURN_RATE_THRESHOLDS) == {CATEGORY_UNAUTHORIZED, CATEGORY_ADMINISTRATIVE, "overall"}, "rates")
    for numerator, denominator in RETURN_RATE_THRESHOLDS.values():
        _require(isinstance(numerator, int) and isinstance(denominator, int), "rates not exact")
        _require(0 < numerator < denominator, "rate out of range")

    _require(len(CHANGE_CODES) == len(_CHANGE_ROWS), "duplicate change code")
    for key, cc in CHANGE_CODES.items():
        _require(key == cc.code, f"change key {key} != {cc.code}")
        _require(len(key) == 3 and key[0] == "C" and _is_digits(key[1:]), f"change code {key}")
        _require(bool(cc.title) and bool(cc.source), f"{key}: title/source missing")
        _require(cc.refused == ("C61" <= key <= "C69"), f"{key}: refused range")
        _require(not (cc.refused and cc.parts), f"{key}: refused code with parts")
        _require(not (cc.refused and cc.applies_to_us), f"{key}: refused codes are ODFI-only")
        last_end = 0
        names: set[str] = set()
        for part in cc.parts:
            _require(part.name in PART_NAMES, f"{key}: part {part.name}")
            _require(part.name not in names, f"{key}: part {part.name} twice")
            _require(last_end < part.start <= part.end <= CORRECTED_DATA_LENGTH, f"{key}: positions")
            names.add(part.name)
            last_end = part.end
    _require(not ({"C10", "C11", "C12"} & CHANGE_CODES.keys()), "C10-C12 were removed in 2024")


_check_tables()
