"""Column-wise checks of a run of entry detail records: the reader's and the writer's fast lane.

A run of m entry records, each 94 characters plus a line feed, sits in one bytes object at a stride
of 95. `raw[start + c : end : 95]` is then column c of every record in the run, and one C-level call
on that column (`isdigit`, `count`, `translate`, `int.from_bytes`) checks it for the whole run.
Everything the record-by-record path checks on a clean entry without addenda is checked here, for
the whole run:

- every field of the layout: numeric columns ASCII digits, fixed values, reserved fields blank,
  required text present, values from the field's allowed set;
- transaction codes known, allowed in the batch and all of one direction and one amount rule
  (the caller says which codes qualify: `rule_of`);
- amounts zero or non-zero as the rule says; addenda record indicator 0;
- routing check digits: the weighted digit sum (3 7 1) of every record, computed for all records
  at once as one big integer with one byte per record (no carries: each byte stays below 256);
- trace numbers: prefixed by the ODFI identification, the first after the batch's last trace
  number, and strictly ascending: the 7-digit sequence numbers are packed into 4-byte slots of one
  big integer, and next-minus-previous is computed for every pair at once, with a bias that keeps
  each slot non-negative so no borrow crosses slots;

and it computes the run's amount total and entry hash (sums of digit columns, weighted by their
place). `check_run` returns None at the first thing it cannot vouch for; the caller then takes the
record-by-record path, which reports or refuses with the exact line and field. A run is never
partly accepted. The run's characters must already be known to be printable ASCII (`printable`).
"""
from __future__ import annotations

from itertools import product
from typing import Callable

from .fields import BLANK, TEXT, Layout

STRIDE = 95  # 94 characters and a line feed
_ZERO_BIT = bytes(1 if b == 0x30 else 0 for b in range(256))
_PRODUCT_LIMIT = 64  # column-set products larger than this are checked value by value

# Byte tables: an ASCII digit to (w * digit) mod 10 for the routing weights, to its value, and a
# weighted sum to 0 when it is a multiple of 10.
_WEIGHT_TABLES = {w: bytes(((w * (b - 0x30)) % 10) if 0x30 <= b <= 0x39 else 0 for b in range(256))
                  for w in (1, 3, 7)}
_ROUTING_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7, 1)
_MOD10_NONZERO = bytes(0 if b % 10 == 0 else 1 for b in range(256))
_PRINTABLE = bytes(range(0x20, 0x7F))
_PRINTABLE_OR_LF = _PRINTABLE + b"\n"


def printable(raw: bytes) -> bool:
    """Every byte printable ASCII or a line feed."""
    return not raw.translate(None, _PRINTABLE_OR_LF)


def printable_lines(raw: bytes, m: int) -> bool:
    """m records of 94 printable ASCII characters, each followed by a line feed, and nothing else
    (the caller has checked the length is 95 * m)."""
    return raw[94::STRIDE] == b"\n" * m and raw.translate(None, _PRINTABLE) == b"\n" * m


class RunResult:
    __slots__ = ("total", "is_debit", "hash", "last_trace")

    def __init__(self, total: int, is_debit: bool, hash_: int, last_trace: str):
        self.total = total
        self.is_debit = is_debit
        self.hash = hash_
        self.last_trace = last_trace


_BIT_MASKS: dict[int, tuple[int, int, int, int]] = {}


def _digit_sum(col: bytes) -> int:
    """Sum of the digits of a column of ASCII digits. The low four bits of '0'..'9' are the
    digit's value, so the sum is the number of 1-bits in each of those four bit planes of the
    column (read as one big integer), weighted 1, 2, 4, 8."""
    m = len(col)
    masks = _BIT_MASKS.get(m)
    if masks is None:
        if len(_BIT_MASKS) > 64:
            _BIT_MASKS.clear()
        masks = _BIT_MASKS[m] = tuple(int.from_bytes(bytes([bit]) * m, "big") for bit in (1, 2, 4, 8))
    v = int.from_bytes(col, "big")
    m1, m2, m4, m8 = masks
    return ((v & m1).bit_count() + 2 * (v & m2).bit_count() + 4 * (v & m4).bit_count()
            + 8 * (v & m8).bit_count())


def routing_check_digits_ok(cols: list[bytes]) -> bool:
    """The nine routing-number columns of a run: every record's check digit is right."""
    m = len(cols[0])
    total = 0
    for w, c in zip(_ROUTING_WEIGHTS, cols):
        total += int.from_bytes(c.translate(_WEIGHT_TABLES[w]), "big")  # each byte <= 81 in the end
    return total.to_bytes(m, "big").translate(_MOD10_NONZERO).count(1) == 0


def strictly_ascending(cols: list[bytes]) -> bool:
    """The digit columns of a fixed-width number (most significant first): every record's number
    is greater than the one before."""
    m = len(cols[0])
    if len(cols) > 7:
        raise ValueError("at most 7 digits per number (4-byte slots)")
    if m < 2:
        return True
    value = 0
    for c in cols:  # value = sum of column * 10^place, one 4-byte slot per record (< 10^7 < 2^24)
        slots = bytearray(4 * m)
        slots[3::4] = c.translate(_WEIGHT_TABLES[1])
        value = value * 10 + int.from_bytes(slots, "big")
    prev = value >> 32  # records 0..m-2, aligned with records 1..m-1
    nxt = value & ((1 << (32 * (m - 1))) - 1)
    bias = int.from_bytes(b"\x00\xff\xff\xff" * (m - 1), "big")
    # Each slot: next - previous + 2^24 - 1, in (0, 2^25): no borrow crosses a slot, and the slot
    # reaches 2^24 (top byte 1) exactly when next > previous.
    diff = (nxt - prev + bias).to_bytes(4 * (m - 1), "big")
    return diff[0::4].count(0) == 0


class EntryPlan:
    """What to check, column by column, for one entry layout (see `plan_for`)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        digit_cols: list[int] = []
        fixed: list[tuple[int, int]] = []
        blank_cols: list[int] = []
        allowed: list[tuple[int, int, bool, frozenset]] = []
        required: list[tuple[int, int]] = []
        for f in layout.fields:
            a, e = f.start - 1, f.end
            if f.fixed is not None:
                fixed.extend((a + k, ord(ch)) for k, ch in enumerate(f.fixed))
            elif f.digits_only:
                digit_cols.extend(range(a, e))
            if f.kind == BLANK:
                blank_cols.extend(range(a, e))
            if f.allowed is not None:
                allowed.append((a, e, f.kind == TEXT, f.allowed))
            if f.required and f.kind == TEXT:
                required.append((a, e))
        self.digit_cols = tuple(digit_cols)
        self.fixed = tuple(fixed)
        self.blank_cols = tuple(blank_cols)
        self.allowed = tuple(allowed)
        self.required = tuple(required)
        self.indicator_col = layout.by_name["addenda_record_indicator"].start - 1
        needed = set(self.digit_cols) | {c for c, _ in self.fixed} | set(self.blank_cols)
        needed |= {self.indicator_col} | set(range(1, 12)) | set(range(29, 39)) | set(range(79, 94))
        needed |= {a for a, _ in self.required}
        for a, e, _, _ in self.allowed:
            needed |= set(range(a, e))
        self.needed = tuple(sorted(needed))

    @staticmethod
    def supports(layout: Layout) -> bool:
        b = layout.by_name
        try:
            standard = (b["transaction_code"].columns == (2, 3)
                        and b["receiving_dfi_identification"].columns == (4, 11)
                        and b["check_digit"].columns == (12, 12)
                        and b["amount"].columns == (30, 39)
                        and b["trace_number"].columns == (80, 94)
                        and b["addenda_record_indicator"].width == 1)
        except KeyError:
            return False
        return standard and not any(f.check or f.blank_ok for f in layout.fields)

    # -- the run ----------------------------------------------------------------------------------
    def check_run(self, raw: bytes, start: int, m: int, odfi: str, last_trace: str,
                  rule_of: Callable[[str], tuple | None]) -> RunResult | None:
        """Check the m records at raw[start : start + 95*m] (see the module doc).

        `rule_of(tc)` gives (is_debit, amount_rule) for a transaction code that may appear in
        this batch without addenda (amount_rule 1 = non-zero, 2 = zero, 3 = any), or None."""
        end = start + STRIDE * m
        if len(odfi) != 8 or not odfi.isascii():
            return None
        cols: list = [None] * 94
        for c in self.needed:
            cols[c] = raw[start + c:end:STRIDE]
        for c in self.digit_cols:
            if not cols[c].isdigit():
                return None
        for c, ch in self.fixed:
            if cols[c].count(ch) != m:
                return None
        for c in self.blank_cols:
            if cols[c].count(32) != m:
                return None
        if cols[self.indicator_col].count(48) != m:
            return None
        for k in range(8):
            if cols[79 + k].count(ord(odfi[k])) != m:
                return None
        for a, e in self.required:
            if 32 in cols[a] and not all(raw[p:p + e - a].strip() for p in range(start + a, end, STRIDE)):
                return None
        for a, e, is_text, allowed in self.allowed:
            if not _values_allowed(raw, start, end, cols, a, e, is_text, allowed):
                return None

        # Transaction codes: one direction and one amount rule across the run. The candidate set
        # may be wider than the codes present; only when it does not settle it are they listed.
        rules = {rule_of(tc) for tc in _distinct(raw, start, end, cols, 1, 3)}
        if len(rules) != 1 or None in rules:
            rules = {rule_of(tc) for tc in _values(raw, start, end, 1, 3)}
            if len(rules) != 1 or None in rules:
                return None
        is_debit, amount_rule = rules.pop()

        if amount_rule == 2:
            for c in range(29, 39):
                if cols[c].count(48) != m:
                    return None
        elif amount_rule == 1:
            # One bit per record and column for "this digit is 0"; a record whose ten amount
            # digits are all 0 keeps its bit through the AND.
            zeros = -1
            for c in range(29, 39):
                zeros &= int.from_bytes(cols[c].translate(_ZERO_BIT), "big")
                if not zeros:
                    break
            if zeros:
                return None

        if not routing_check_digits_ok(cols[3:12]):
            return None
        first = raw[start + 79:start + 94].decode("ascii")
        if first <= last_trace or not strictly_ascending(cols[87:94]):
            return None

        total = 0
        for c in range(29, 39):
            total = total * 10 + _digit_sum(cols[c])
        hash_ = 0
        for c in range(3, 11):
            hash_ = hash_ * 10 + _digit_sum(cols[c])
        return RunResult(total, is_debit, hash_, raw[end - 16:end - 1].decode("ascii"))


def _chars(col: bytes) -> set[str]:
    """The distinct characters of a column (most columns hold one, or a few digits)."""
    first = col[:1]
    if col.count(first) == len(col):
        return {first.decode("latin-1")}
    if col.isdigit():
        return {chr(d) for d in b"0123456789" if d in col}
    return set(col.decode("latin-1"))


def _values(raw: bytes, start: int, end: int, a: int, e: int) -> set[str]:
    return {raw[p:p + e - a].decode("ascii") for p in range(start + a, end, STRIDE)}


def _distinct(raw: bytes, start: int, end: int, cols: list[bytes], a: int, e: int) -> set[str]:
    """A superset of the values of columns a..e-1 in the run: the product of each column's
    characters when that is small, else the values themselves."""
    sets = [_chars(cols[c]) for c in range(a, e)]
    size = 1
    for s in sets:
        size *= len(s)
    if size <= _PRODUCT_LIMIT:
        return {"".join(p) for p in product(*sets)}
    return _values(raw, start, end, a, e)


def _values_allowed(raw, start, end, cols, a, e, is_text, allowed) -> bool:
    if all((v.rstrip() if is_text else v) in allowed for v in _distinct(raw, start, end, cols, a, e)):
        return True
    return all((v.rstrip() if is_text else v) in allowed for v in _values(raw, start, end, a, e))


_PLANS: dict[int, EntryPlan | None] = {}


def plan_for(layout: Layout) -> EntryPlan | None:
    """The (cached) column plan of an entry layout, or None when the layout has a check this lane
    does not do (dates, blank-or-digits fields): its batches take the record-by-record path."""
    key = id(layout)
    try:
        return _PLANS[key]
    except KeyError:
        plan = EntryPlan(layout) if EntryPlan.supports(layout) else None
        _PLANS[key] = plan
        return plan
