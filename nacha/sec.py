"""Per-SEC-code formats: which entry, addenda and control layouts a batch of that SEC code uses, and
the batch and entry rules that differ by SEC code, as data. The reader and writer look these up by
the batch header's SEC code; they never branch on SEC codes themselves. Rules that cannot be data
are named checks in `reader.ENTRY_CHECKS`, listed here by name."""
from __future__ import annotations

from dataclasses import dataclass, field

from .fields import Layout
from .layouts import (
    ADDENDA_05,
    BATCH_CONTROL,
    ENTRY_CCD,
    ENTRY_COR,
    ENTRY_PPD,
    ENTRY_TEL,
    ENTRY_WEB,
    FILE_CONTROL,
)
from .layouts_other import (
    ADDENDA_02,
    ADDENDA_02_MTE,
    BATCH_CONTROL_ADV,
    ENTRY_ACK,
    ENTRY_ADV,
    ENTRY_ARC,
    ENTRY_ATX,
    ENTRY_BOC,
    ENTRY_CIE,
    ENTRY_CTX,
    ENTRY_DNE,
    ENTRY_ENR,
    ENTRY_MTE,
    ENTRY_POP,
    ENTRY_POS,
    ENTRY_RCK,
    ENTRY_SHR,
    ENTRY_TRC,
    ENTRY_TRX,
    ENTRY_XCK,
    FILE_CONTROL_ADV,
)

DEBIT = "debit"
CREDIT = "credit"
BOTH = "both"

# Amount rules for forward entries (prenotes are always zero; see codes.TransactionCode).
AMOUNT_NONZERO = "nonzero"  # live entries must carry an amount (R19, NR2013 OR70)
AMOUNT_ZERO = "zero"  # non-monetary SEC codes (ACK, ATX, DNE, ENR, COR)
AMOUNT_ANY = "any"

# Service classes of ACH entries; 280 is the ACH Operator's advices only (NR2013 OR120).
ENTRY_SERVICE_CLASSES = frozenset({"200", "220", "225"})


@dataclass(frozen=True)
class SecFormat:
    code: str
    entry: Layout
    # Addenda type codes a forward entry of this SEC code may carry, with their layouts.
    forward_addenda: dict[str, Layout] = field(default_factory=dict)
    max_forward_addenda: int = 0
    addenda_required: bool = False  # a forward, non-prenote entry must carry addenda
    direction: str = BOTH  # forward entries: debits only, credits only, or both
    tx_codes: frozenset[str] | None = None  # forward transaction codes allowed (None: by direction)
    amount_rule: str = AMOUNT_NONZERO
    max_amount_cents: int | None = None  # inclusive upper bound
    entry_description: str | None = None  # reserved Company Entry Description the batch must carry
    company_name: str | None = None  # reserved Company Name the batch must carry
    originator_status_codes: frozenset[str] = frozenset({"1", "2"})
    service_class_codes: frozenset[str] = ENTRY_SERVICE_CLASSES  # batch header SCCs allowed
    effective_date_blank: bool = False  # ENR: the Effective Entry Date is space-filled
    addenda_count_field: str | None = None  # entry field that states its number of addenda
    # False where the prenote codes 23/33 mean the SEC code's own non-dollar entry (DNE, ENR:
    # NR OR124): those entries then follow the SEC code's addenda rules like any other.
    has_prenotes: bool = True
    # Zero-dollar entries (codes 24/29/34/39/44/49/54) carry their remittance in addenda: R26,
    # "indicator not 1 on a zero-dollar entry" (NR OR71). Not for ACK/ATX, whose addenda is optional.
    zero_dollar_addenda_required: bool = True
    # Entry fields that must not be all zeros (R26, NR OR71); all spaces is the layout's `required`.
    not_all_zeros: tuple[str, ...] = ()
    # Entry fields a bank may leave blank on a returned or NOC'd entry, forgiven only by a profile
    # with `blank_fields_on_returns` (NACHA wants the original entry's values copied).
    return_blank_ok: tuple[str, ...] = ()
    batch_control: Layout = BATCH_CONTROL
    file_control: Layout = FILE_CONTROL
    has_trace_numbers: bool = True  # ADV entries carry no trace number
    # Entries may be returned or corrected (addenda 99 / 98). Not ADV: an advice is the ACH
    # Operator's accounting record, and NACHA defines no addenda for it (other-sec §4.1, §7 #20).
    return_addenda: bool = True
    # Rules only some SEC codes need, each a named check in reader.ENTRY_CHECKS.
    entry_checks: tuple[str, ...] = ()
    supported: bool = True
    unsupported_reason: str = ""
    source: str = ""


SEC_FORMATS: dict[str, SecFormat] = {}


def register(fmt: SecFormat) -> SecFormat:
    if fmt.code in SEC_FORMATS:
        raise AssertionError(f"SEC code {fmt.code} registered twice")
    for name in (fmt.addenda_count_field, *fmt.not_all_zeros, *fmt.return_blank_ok):
        if name is not None and name not in fmt.entry.index:
            raise AssertionError(f"SEC code {fmt.code}: {fmt.entry.name} has no field {name!r}")
    SEC_FORMATS[fmt.code] = fmt
    return fmt


def sec_format(code: str) -> SecFormat | None:
    return SEC_FORMATS.get(code)


# A batch of an unknown SEC code is read with this format (the standard entry layout), so that its
# other problems are still found; the unknown code itself is reported.
FALLBACK_SEC_CODE = "PPD"


# Formats chosen by a batch header's IAT Indicator (positions 5-20) together with its SEC code: an
# IAT notification of change keeps SEC code COR but uses the IAT batch header, marked "IATCOR"
# there (moov test/testdata/iat-addenda98.ach). Filled below, after the formats are declared.
HEADER_VARIANTS: dict[tuple[str, str], SecFormat] = {}


def batch_format(code: str, iat_indicator: str) -> SecFormat | None:
    """The format of a batch from its header's SEC code and positions 5-20 (right-trimmed)."""
    fmt = HEADER_VARIANTS.get((code, iat_indicator))
    return fmt if fmt is not None else SEC_FORMATS.get(code)


_ONE_05 = {"05": ADDENDA_05}
_ONE_02 = {"02": ADDENDA_02}
MAX_ADDENDA_05 = 9999  # CTX, TRX, ENR (R25, NR OR70)
CHECK_LIMIT_CENTS = 2_500_000  # ARC, BOC, POP: $25,000.00 or less (NR OR55 §8.32; R19 NR OR70)
RCK_XCK_LIMIT_CENTS = 249_999  # RCK, XCK: less than $2,500 (NR OR17 §2.5.13.3(d), OR22 §2.5.18.2(c))

# PPD, WEB, CCD: at most one Addenda 05; TEL none and debit-only (reference §1.4, MOOV-SRC batchPPD/
# batchWeb/batchCCD/batchTEL.go; NR2013 OR81, OR94, OR97, OR100).
register(SecFormat("PPD", ENTRY_PPD, _ONE_05, 1, source="NR2013 OR81"))
# WEB carries credits too since the P2P rule (credit WEB entries permitted 2014-03-21, required for
# P2P 2015-03-20); NR2013 predates it and lists WEB among the debit-only codes (R36, OR72).
# Fiserv return files leave the Payment Type Code of returned WEB entries blank (moov issues 702
# and 751); the bank profile forgives that on returns only.
register(SecFormat(
    "WEB", ENTRY_WEB, _ONE_05, 1, return_blank_ok=("payment_type_code",),
    source="NR2013 OR94; NACHA P2P credit WEB amendment (2014-03-21)",
))
register(SecFormat("TEL", ENTRY_TEL, {}, 0, direction=DEBIT, source="NR2013 OR97"))
register(SecFormat("CCD", ENTRY_CCD, _ONE_05, 1, source="NR2013 OR100"))
# COR: NOC and refused NOC entries; amount zero, addenda 98 required (NR2013 OR167, OR178).
register(SecFormat(
    "COR", ENTRY_COR, {}, 0, amount_rule=AMOUNT_ZERO,
    tx_codes=frozenset({"21", "26", "31", "36", "41", "46", "51", "56"}),
    entry_checks=("noc_addenda_required",), source="NR2013 OR167",
))
# IAT has its own batch header and seven mandatory addenda; reading it is not supported yet, and
# the reader reports it with a located error rather than misparse it.
register(SecFormat(
    "IAT", ENTRY_PPD, supported=False,
    unsupported_reason="IAT batches are not supported (IAT uses its own batch header and addenda 10-18)",
    source="NR2013 OR86",
))
HEADER_VARIANTS[("COR", "IATCOR")] = SecFormat(
    "COR", ENTRY_COR, supported=False,
    unsupported_reason="IAT notifications of change (COR batch with the IAT header, IATCOR) are not "
                       "supported (IAT uses its own batch header and addenda 10-18)",
    source="NR2013 OR86",
)

# -- the other SEC codes (other-sec §1, §4) -----------------------------------------------------------
# Where NACHA and moov-io/ach differ (other-sec §7), these formats follow NACHA:
#   #1-#3 check serial numbers (and POP terminal city/state) must not be all spaces or zeros, each
#         field on its own (`required`, `not_all_zeros`); #4 RCK/XCK items less than $2,500;
#   #5 ARC/BOC/POP Individual Name optional; #6 CIE Individual Identification Number mandatory;
#   #7/#8 MTE/POS/SHR prenotes need no Addenda 02; #9/#10 the Addenda 02 fields NACHA marks R
#         are required; #11 the Addenda 02 trace is the entry's; #12 DNE takes 21/23/31/33;
#   #13 ENR's corporate layout with its addenda count; #14 ATX at most one addenda;
#   #16 zero-dollar CTX remittance entries allowed; #17 XCK/TRC Item Research Number is 61-76;
#   #19 XCK Company Name / Entry Description reserved; #20 no ADV addenda;
#   #22 ADV sides by code (codes.py). #18 and #21 are generic reader rules.
# Files of moov's corpus that differ for these reasons are listed in tests/test_conformance.py.
# ADV: ACH Operator advices, SCC 280, originator status 0, codes 81-88 (odd credit, even debit in
# codes.py), no trace numbers, no addenda defined, 20-digit control totals (other-sec §4.1, NR
# OR77-OR78, OR115, OR124). Its file control differs, so ADV batches fill a file of their own.
register(SecFormat(
    "ADV", ENTRY_ADV, {}, 0,
    tx_codes=frozenset({"81", "82", "83", "84", "85", "86", "87", "88"}),
    originator_status_codes=frozenset({"0"}),
    service_class_codes=frozenset({"280"}),
    batch_control=BATCH_CONTROL_ADV, file_control=FILE_CONTROL_ADV,
    has_trace_numbers=False, return_addenda=False,
    entry_checks=("advice_routing_number",),
    source="NR OR77-OR78, OR120-OR121, OR124 (other-sec §4.1)",
))
# ACK / ATX: non-monetary acknowledgments, codes 24/34, amount zero, at most one optional Addenda
# 05 (NR OR185-OR188; other-sec §4.2-§4.4). NR OR186's footnote shows SCC 200; 220 (credits only)
# describes a batch of 24/34 entries as truly and no operator edit rejects it, so both are taken.
# ATX states its addenda count in 55-58.
_ACK_CODES = frozenset({"24", "34"})
register(SecFormat(
    "ACK", ENTRY_ACK, _ONE_05, 1, tx_codes=_ACK_CODES, amount_rule=AMOUNT_ZERO,
    service_class_codes=frozenset({"200", "220"}), zero_dollar_addenda_required=False,
    source="NR OR185-OR187 (other-sec §4.2)",
))
register(SecFormat(
    "ATX", ENTRY_ATX, _ONE_05, 1, tx_codes=_ACK_CODES, amount_rule=AMOUNT_ZERO,
    service_class_codes=frozenset({"200", "220"}), zero_dollar_addenda_required=False,
    addenda_count_field="number_of_addenda_records",
    source="NR OR185, OR188 (other-sec §4.3)",
))
# ARC, BOC, POP: check conversion debits, no addenda, $25,000.00 at most; the check serial number
# (and POP's terminal city and state) not all spaces or zeros (R26) (other-sec §4.5-§4.7).
register(SecFormat(
    "ARC", ENTRY_ARC, {}, 0, direction=DEBIT, max_amount_cents=CHECK_LIMIT_CENTS,
    not_all_zeros=("check_serial_number",), source="NR OR79, OR121 (other-sec §4.5)",
))
register(SecFormat(
    "BOC", ENTRY_BOC, {}, 0, direction=DEBIT, max_amount_cents=CHECK_LIMIT_CENTS,
    not_all_zeros=("check_serial_number",), source="NR OR80, OR121 (other-sec §4.6)",
))
register(SecFormat(
    "POP", ENTRY_POP, {}, 0, direction=DEBIT, max_amount_cents=CHECK_LIMIT_CENTS,
    not_all_zeros=("check_serial_number", "terminal_city"), source="NR OR92, OR121-OR122 (other-sec §4.7)",
))
# RCK: re-presented check, less than $2,500, described REDEPCHECK (other-sec §4.8).
register(SecFormat(
    "RCK", ENTRY_RCK, {}, 0, direction=DEBIT, max_amount_cents=RCK_XCK_LIMIT_CENTS,
    entry_description="REDEPCHECK", not_all_zeros=("check_serial_number",),
    source="NR OR95, OR17 §2.5.13.3, OR106 (other-sec §4.8)",
))
# XCK: destroyed check, less than $2,500, company CHECK DESTROYED, described NO CHECK (other-sec §4.9).
register(SecFormat(
    "XCK", ENTRY_XCK, {}, 0, direction=DEBIT, max_amount_cents=RCK_XCK_LIMIT_CENTS,
    entry_description="NO CHECK", company_name="CHECK DESTROYED", not_all_zeros=("check_serial_number",),
    source="NR OR101, OR22 §2.5.18.2, OR106 (other-sec §4.9)",
))
# TRC / TRX: check truncation debits (the NR definition; AAP's "Both" is unconfirmed), no amount
# limit; TRC has no addenda, TRX 1-9,999 Addenda 05 with the count in 55-58 (other-sec §4.10-§4.11).
register(SecFormat(
    "TRC", ENTRY_TRC, {}, 0, direction=DEBIT, source="NR OR98, OR122 (other-sec §4.10)",
))
register(SecFormat(
    "TRX", ENTRY_TRX, _ONE_05, MAX_ADDENDA_05, addenda_required=True, direction=DEBIT,
    addenda_count_field="number_of_addenda_records", source="NR OR99, OR122 (other-sec §4.11)",
))
# CTX: 0-9,999 Addenda 05, count in 55-58; zero-dollar remittance entries allowed (other-sec §4.12).
register(SecFormat(
    "CTX", ENTRY_CTX, _ONE_05, MAX_ADDENDA_05, addenda_count_field="number_of_addenda_records",
    source="NR OR83, OR121 (other-sec §4.12)",
))
# CIE: credits only (R35), 0-1 Addenda 05, identification number not all zeros (other-sec §4.13).
register(SecFormat(
    "CIE", ENTRY_CIE, _ONE_05, 1, direction=CREDIT, not_all_zeros=("individual_identification_number",),
    source="NR OR82, OR121 (other-sec §4.13)",
))
# MTE / POS / SHR: exactly one Addenda 02, except on prenotes (NR OR103, R25/R26 OR71); the
# addenda's trace is the entry's (R27) (other-sec §4.14-§4.16, §5).
register(SecFormat(
    "MTE", ENTRY_MTE, {"02": ADDENDA_02_MTE}, 1, addenda_required=True,
    not_all_zeros=("individual_name", "individual_identification_number"),
    entry_checks=("mte_transaction_time",), source="NR OR91, OR121 (other-sec §4.14, §5.2)",
))
register(SecFormat(
    "POS", ENTRY_POS, _ONE_02, 1, addenda_required=True, source="NR OR93, OR122 (other-sec §4.15, §5.1)",
))
register(SecFormat(
    "SHR", ENTRY_SHR, _ONE_02, 1, addenda_required=True, source="NR OR96, OR122 (other-sec §4.16, §5.1)",
))
# DNE: from a federal agency (originator status 2, NR OR69), codes 21/23/31/33 (R25, NR OR70),
# amount zero, exactly one Addenda 05 (other-sec §4.17).
register(SecFormat(
    "DNE", ENTRY_DNE, _ONE_05, 1, addenda_required=True,
    tx_codes=frozenset({"21", "23", "31", "33"}), amount_rule=AMOUNT_ZERO,
    originator_status_codes=frozenset({"2"}), has_prenotes=False,
    source="NR OR84, OR121, OR69-OR70 (other-sec §4.17)",
))
# ENR: AUTOENROLL, effective date blank, codes 23/33, amount zero, 1-9,999 Addenda 05 whose
# Payment Related Information is required, count in 55-58 (other-sec §4.18, §6.3).
register(SecFormat(
    "ENR", ENTRY_ENR, _ONE_05, MAX_ADDENDA_05, addenda_required=True,
    tx_codes=frozenset({"23", "33"}), amount_rule=AMOUNT_ZERO,
    entry_description="AUTOENROLL", effective_date_blank=True, has_prenotes=False,
    addenda_count_field="number_of_addenda_records",
    entry_checks=("payment_related_information_required",),
    source="NR OR85, OR106, OR108, OR116-OR117, OR121 (other-sec §4.18)",
))


def _check_registry() -> None:
    from .codes import SEC_CODES

    unknown = set(SEC_FORMATS) - set(SEC_CODES)
    if unknown:
        raise AssertionError(f"SEC formats without a row in codes.SEC_CODES: {sorted(unknown)}")


_check_registry()
