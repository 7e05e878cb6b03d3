"""Per-SEC-code formats: which entry and addenda layouts a batch of that SEC code uses, and the
batch rules that differ by SEC code. The reader and validator look these up by the batch header's
SEC code; they never branch on SEC codes themselves."""
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

DEBIT = "debit"
CREDIT = "credit"
BOTH = "both"

# Amount rules for forward entries (prenotes are always zero; see codes.TransactionCode).
AMOUNT_NONZERO = "nonzero"  # live entries must carry an amount (R19, NR2013 OR70)
AMOUNT_ZERO = "zero"  # non-monetary SEC codes (ACK, ATX, DNE, ENR, COR)
AMOUNT_ANY = "any"


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
    effective_date_blank: bool = False  # ENR: the Effective Entry Date is space-filled
    addenda_count_field: str | None = None  # entry field that states its number of addenda
    batch_control: Layout = BATCH_CONTROL
    file_control: Layout = FILE_CONTROL
    has_trace_numbers: bool = True  # ADV entries carry no trace number
    # Rules only some SEC codes need, each a named check in validate.py's ENTRY_CHECKS table.
    entry_checks: tuple[str, ...] = ()
    supported: bool = True
    unsupported_reason: str = ""
    source: str = ""


SEC_FORMATS: dict[str, SecFormat] = {}


def register(fmt: SecFormat) -> SecFormat:
    if fmt.code in SEC_FORMATS:
        raise AssertionError(f"SEC code {fmt.code} registered twice")
    SEC_FORMATS[fmt.code] = fmt
    return fmt


def sec_format(code: str) -> SecFormat | None:
    return SEC_FORMATS.get(code)


_ONE_05 = {"05": ADDENDA_05}

# PPD, WEB, CCD: at most one Addenda 05; TEL none and debit-only (reference §1.4, MOOV-SRC batchPPD/
# batchWeb/batchCCD/batchTEL.go; NR2013 OR81, OR94, OR97, OR100).
register(SecFormat("PPD", ENTRY_PPD, _ONE_05, 1, source="NR2013 OR81"))
register(SecFormat("WEB", ENTRY_WEB, _ONE_05, 1, direction=DEBIT, source="NR2013 OR94; R36 NR2013 OR72"))
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
