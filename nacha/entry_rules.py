"""The checks of one entry detail record, declared once, with how each path of the reader does it.

The reader checks an entry on one of three paths: record by record (`Reader._finish_entry` after
the field checks), the per-record fast finish (a clean entry without addenda skips
`_finish_entry`), and the column lane (`columns.EntryPlan.check_run`, a run of such entries at
once). Both fast lanes skip only what this list lets them: a check is

- COLUMNS: done on every path (the record's fields, routing check digit, trace numbers: the
  record path and the fast finish parse and check them one by one, the column lane column-wise);
- AMOUNT: reduced, for an entry of one transaction code in one batch, to an amount rule both
  fast lanes apply (`fast_rule`: 1 non-zero, 2 zero, 3 anything);
- LEAVE: not done on the fast lanes: when `leaves(fmt, info, zero_checks)` says it can apply to a
  clean entry of that code in that batch, those entries take the record path (`fast_rule` 0);
- ADDENDA: about an entry's addenda; an entry with addenda always takes the record path.

A check added to the record path is added here; one declared LEAVE without a `leaves` keeps every
entry off the fast lanes (safe, slow), and tests/test_entry_rules.py reads a file breaking each
check on every path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .sec import AMOUNT_NONZERO, AMOUNT_ZERO

COLUMNS = "columns"
AMOUNT = "amount"
LEAVE = "leave"
ADDENDA = "addenda"


def _always(fmt, info, zero_checks) -> bool:
    return True


@dataclass(frozen=True)
class EntryCheck:
    name: str
    lanes: str  # COLUMNS | AMOUNT | LEAVE | ADDENDA
    record_path: str  # where the record-by-record path does it
    fast_lanes: str  # how the fast lanes honour it
    # LEAVE: (SecFormat, reader._TxInfo, batch zero_checks) -> entries of that code take the record path
    leaves: Callable[..., bool] = _always


ENTRY_CHECKS: tuple[EntryCheck, ...] = (
    EntryCheck("field_format", COLUMNS, "Layout.parse_checked / problems",
               "parse_checked (fast finish); digit, fixed, blank, required and allowed columns (check_run)"),
    EntryCheck("return_blank_fields", COLUMNS, "deferred field problems, reported by _finish_entry",
               "a blank field fails parse_checked / the column checks: the entry takes the record path"),
    EntryCheck("routing_check_digit", COLUMNS, "is_valid_routing per record", "routing_check_digits_ok"),
    EntryCheck("trace_ascending", COLUMNS, "trace > the batch's last trace", "first > last_trace, strictly_ascending"),
    EntryCheck("trace_odfi_prefix", COLUMNS, "trace[:8] == the batch's ODFI", "the ODFI columns of the trace"),
    EntryCheck("addenda_indicator", COLUMNS, "_finish_entry: indicator 1 without addenda",
               "indicator 0 required (fast finish; check_run's indicator column)"),
    EntryCheck("amount_rule", AMOUNT, "_finish_entry: prenote / zero / non-zero amounts", "fast_rule 1/2/3"),
    EntryCheck("transaction_code_known", LEAVE, "_classify_tx", "unknown codes leave",
               lambda fmt, info, zc: info.tx is None),
    EntryCheck("forward_transaction_code", LEAVE, "_finish_entry: _TxInfo.forward", "codes with a problem leave",
               lambda fmt, info, zc: bool(info.forward)),
    EntryCheck("service_class", LEAVE, "_finish_entry: _TxInfo.scc_problem", "codes with a problem leave",
               lambda fmt, info, zc: info.scc_problem is not None),
    EntryCheck("not_all_zeros", LEAVE, "_finish_entry: batch zero_checks (R26)", "batches with such fields leave",
               lambda fmt, info, zc: bool(zc)),
    EntryCheck("sec_entry_checks", LEAVE, "_finish_entry: reader.ENTRY_CHECKS named by the SecFormat",
               "batches with named checks leave", lambda fmt, info, zc: bool(fmt.entry_checks)),
    EntryCheck("addenda_count_field", LEAVE, "_finish_entry: the stated number of addenda",
               "formats stating it leave", lambda fmt, info, zc: bool(fmt.addenda_count_field)),
    EntryCheck("max_amount", LEAVE, "_finish_entry: SecFormat.max_amount_cents", "formats with a limit leave",
               lambda fmt, info, zc: fmt.max_amount_cents is not None),
    EntryCheck("addenda_required", LEAVE, "_finish_entry: SecFormat.addenda_required", "such formats leave",
               lambda fmt, info, zc: fmt.addenda_required),
    EntryCheck("zero_dollar_addenda", LEAVE, "_finish_entry: zero-dollar entries need remittance addenda",
               "zero-dollar codes leave", lambda fmt, info, zc: info.zero_dollar and fmt.zero_dollar_addenda_required),
    EntryCheck("max_forward_addenda", ADDENDA, "_finish_entry: at most max_forward_addenda", "entries with addenda"),
    EntryCheck("addenda_records", ADDENDA, "_finish_entry: sequence, trace, return and change codes",
               "entries with addenda"),
)

_LEAVING = tuple(c for c in ENTRY_CHECKS if c.lanes == LEAVE)


def fast_rule(fmt, info, zero_checks) -> int:
    """For a clean entry without addenda of this transaction code (`info`, reader._TxInfo) in a
    batch of this format: 0 = it takes the record path (a LEAVE check may apply), else the amount
    rule the fast lanes apply instead of the record path: 1 = must be non-zero, 2 = must be zero,
    3 = anything."""
    for check in _LEAVING:
        if check.leaves(fmt, info, zero_checks):
            return 0
    if info.prenote or fmt.amount_rule == AMOUNT_ZERO:
        return 2
    if fmt.amount_rule == AMOUNT_NONZERO and not info.tx.zero_amount:
        return 1
    return 3
