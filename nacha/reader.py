"""Streaming NACHA reader with validation: one pass over the file, one record in memory at a time
(plus the current entry's addenda), every problem of the file collected as a located `Issue`.

    reader = Reader("in.ach", profile="bank")
    for item in reader:            # FileHeader | BatchStart | EntryItem | BatchEnd | FileEnd
        ...
    reader.issues                  # every problem found, in file order
    reader.warnings                # what a person should know but does not make the file invalid

`read_file` builds the whole file as a `NachaFile` (for small files); `validate_file` only checks.
Each batch is read with the `sec.SecFormat` its header's SEC code selects (entry, addenda and
control layouts, rules as data, named ENTRY_CHECKS); an unsupported one (IAT) is reported at its
header and skipped, and the file's totals are then not compared.
"""
from __future__ import annotations

import io
import os
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from itertools import islice, repeat
from typing import IO, Iterator

from . import codes
from .columns import STRIDE, plan_for, printable
from .entry_rules import fast_rule
from .errors import InvalidFile, Issue
from .fields import FieldProblem, Layout, mask
from .layouts import (
    ADDENDA_98,
    ADDENDA_98_REFUSED,
    ADDENDA_99,
    ADDENDA_99_CONTESTED,
    ADDENDA_99_DISHONORED,
    BATCH_CONTROL,
    BATCH_HEADER,
    FILE_HEADER,
    FILLER_LINE,
    SERVICE_CLASS_CODES,
)
from .model import Batch, Entry, NachaFile
from .profile import STRICT, Profile, get_profile
from .routing import is_valid_routing
from .traces import TraceSet
from .sec import (
    AMOUNT_NONZERO,
    AMOUNT_ZERO,
    CREDIT,
    DEBIT,
    FALLBACK_SEC_CODE,
    SecFormat,
    batch_format,
    sec_format,
)

# Files larger than this are refused up front (a NACHA file of 10 million records is ~950 MB).
DEFAULT_MAX_BYTES = 2 * 1024 ** 3
MAX_ISSUES = 1000  # after this many, the reader stops collecting (and says so)


# -- stream items -------------------------------------------------------------------------------
@dataclass
class BatchStart:
    line: int
    header: tuple
    format: SecFormat | None


class EntryItem:
    """An entry detail record with its addenda, each addenda as (line, record)."""

    __slots__ = ("line", "_record", "addenda", "batch", "_text")

    def __init__(self, line: int, record: tuple, addenda: list | None = None, batch: BatchStart | None = None):
        self.line = line
        self._record = record
        self.addenda = [] if addenda is None else addenda
        self.batch = batch

    @property
    def record(self):
        r = self._record
        if r is None:  # an entry of a column-checked run (_RunEntry): its fields, parsed on first use
            r = self._record = self.batch.format.entry.parse(self._text)
        return r

    @record.setter
    def record(self, value):
        self._record = value

    def __repr__(self) -> str:
        return f"EntryItem(line={self.line}, record={self.record!r}, addenda={self.addenda!r})"


class _RunEntry(EntryItem):
    """An entry of a run the reader checked column by column (nacha.columns): valid, without
    addenda; its record is parsed from its text when first asked for."""

    __slots__ = ()

    def __init__(self, line: int, text: str, batch: BatchStart):
        self.line = line
        self._text = text
        self.batch = batch
        self._record = None
        self.addenda = ()


@dataclass
class BatchEnd:
    line: int
    control: tuple
    start: BatchStart | None


@dataclass
class FileStart:
    line: int
    header: tuple


@dataclass
class FileEnd:
    line: int | None
    control: tuple | None


@dataclass
class Summary:
    """Totals computed from the entries themselves (not copied from the control records)."""

    batches: int = 0
    entries: int = 0
    addenda: int = 0
    total_debit_cents: int = 0
    total_credit_cents: int = 0
    entry_hash: int = 0
    sec_codes: list = field(default_factory=list)
    file_id_modifier: str | None = None
    records: int = 0


# Addenda 98 and 99 have variants chosen by the code in positions 4-6 (reference §1.6, §1.7).
def _addenda_variant(type_code: str, code: str) -> Layout | None:
    if type_code == "99":
        if code in codes.DISHONORED_RETURN_CODES:
            return ADDENDA_99_DISHONORED
        if code in codes.CONTESTED_RETURN_CODES:
            return ADDENDA_99_CONTESTED
        return ADDENDA_99
    if type_code == "98":
        cc = codes.change_code(code)
        return ADDENDA_98_REFUSED if cc is not None and cc.refused else ADDENDA_98
    return None


class _BatchState:
    __slots__ = (
        "start", "fmt", "odfi", "scc", "count", "hash", "debit", "credit", "last_trace",
        "entry_layout", "is_debit", "tx_info", "returns", "nocs", "number", "indicator_index",
        "zero_checks", "return_blanks", "totals_known", "hash_known", "fast", "plan", "run_rules",
        "zero_date", "entries_before",
    )


class _TxInfo:
    """A transaction code as one batch sees it (see Reader._tx_info)."""

    __slots__ = ("tx", "forward", "scc_problem", "prenote", "zero_dollar")

    def __init__(self, tx, forward, scc_problem, prenote, zero_dollar):
        self.tx = tx
        self.forward = forward  # messages for a forward entry with this code
        self.scc_problem = scc_problem  # message when the service class does not allow the code
        self.prenote = prenote  # a prenote in this SEC code (DNE/ENR 23/33 are not)
        self.zero_dollar = zero_dollar  # a zero-dollar remittance code (24, 29, 34, ...)


_STANDARD = sec_format(FALLBACK_SEC_CODE)  # control layouts when no batch has said otherwise
_NO_KINDS = frozenset()
# Service classes whose entries are restricted by side; 200 takes any entry code.
_CHECKED_SERVICE_CLASSES = frozenset({"220", "225", "280"})
_NOT_ENTRY = re.compile("[^6]")  # in a chunk's column of record type codes: where a run of entries ends


class Reader:
    """Iterate a NACHA file as stream items while validating it."""

    def __init__(
        self,
        source: str | os.PathLike | bytes | IO[bytes],
        profile: str | Profile = STRICT,
        name: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.profile = get_profile(profile)
        self.source = source
        if name is None:
            name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<data>"
        self.name = name
        self.max_bytes = max_bytes
        self.issues: list[Issue] = []
        # Located like issues, but the file stays valid: a well-formed return reason code the
        # tables do not know, a known code used before it takes effect.
        self.warnings: list[Issue] = []
        self.summary = Summary()
        self.header = None
        self.control = None
        self._truncated = False
        self._warnings_truncated = False
        self._created_on = None  # the file header's File Creation Date, when it is a date
        self._unsupported_batches = 0  # batches skipped unread (IAT): file totals cannot be checked
        self._totals_known = True  # every amount read (else the amount totals are not compared)
        self._hash_known = True  # every RDFI identification read (else the entry hash is not compared)
        # Blank-field problems of the pending entry that the profile forgives on returns and NOCs.
        self._deferred: list[tuple[int, FieldProblem]] = []
        # Runs of at least this many plain entries in a regular chunk are checked column by column
        # (nacha.columns); 0 turns that off (tests compare both paths).
        self.min_run = self.MIN_RUN
        self.fast_lanes = True  # False: every entry takes the record path (tests compare the two)
        self._raw: bytes | None = None
        # Trace numbers must be unique within the file, across batches (bounded: nacha.traces).
        self._traces = TraceSet()

    MIN_RUN = 8

    # -- issues ----------------------------------------------------------------------------------
    def _issue(self, line, columns, record, fld, message, value=None):
        if len(self.issues) >= MAX_ISSUES:
            if not self._truncated:
                self._truncated = True
                self.issues.append(Issue(self.name, None, None, "file", None,
                                         f"more than {MAX_ISSUES} problems; stopped listing them"))
            return
        self.issues.append(Issue(self.name, line, columns, record, fld, message, value))

    def _field_issue(self, line: int, layout: Layout, p: FieldProblem):
        self._issue(line, p.field.columns, layout.name, p.field.name, p.message, p.value)

    def _rec_issue(self, line: int, layout: Layout, fname: str, message: str, value=None):
        f = layout.by_name.get(fname)
        if f is not None and f.sensitive and isinstance(value, str):
            value = mask(value)
        self._issue(line, f.columns if f else None, layout.name, fname, message, value)

    def _warning(self, line: int, layout: Layout, fname: str, message: str, value=None):
        """A located warning (the same location data as an issue), kept in `warnings`."""
        f = layout.by_name.get(fname)
        if f is not None and f.sensitive and isinstance(value, str):
            value = mask(value)
        if len(self.warnings) >= MAX_ISSUES:
            if not self._warnings_truncated:
                self._warnings_truncated = True
                self.warnings.append(Issue(self.name, None, None, "file", None,
                                           f"more than {MAX_ISSUES} warnings; stopped listing them"))
            return
        self.warnings.append(Issue(self.name, line, f.columns if f else None, layout.name, fname, message, value))

    @property
    def valid(self) -> bool:
        """No issue; warnings leave a file valid."""
        return not self.issues

    # -- lines -----------------------------------------------------------------------------------
    def _open(self) -> IO[bytes]:
        src = self.source
        if isinstance(src, (bytes, bytearray)):
            return io.BytesIO(src)
        if isinstance(src, (str, os.PathLike)):
            return open(src, "rb")
        return src

    _CHUNK = 1 << 20

    def _line_chunks(self) -> Iterator[list[str]]:
        """Lists of 94-character candidate records, in file order, with the profile's relaxations.

        Fast lane: a stretch of the file made only of 94-character records each ending in LF is
        recognised with a few C-level string operations and split at once; anything else (CR LF,
        short or long lines, blank lines, records run together) goes line by line through
        `_irregular`, which reports or relaxes it. The reader never holds more than about one
        chunk (1 MiB) of the file, whatever its size or shape."""
        prof = self.profile
        try:
            fp = self._open()
        except OSError as exc:  # a missing or unreadable file is a file-level problem, not a crash
            self._issue(None, None, "file", None, f"cannot read file: {exc.strerror or exc}")
            return
        close = fp is not self.source
        self._n = 0
        self._raw = None
        try:
            if isinstance(self.source, (str, os.PathLike)):
                size = os.fstat(fp.fileno()).st_size
                if size > self.max_bytes:
                    self._issue(None, None, "file", None,
                                f"file is {size} bytes, larger than the {self.max_bytes}-byte limit")
                    return
                if size == 0:
                    self._issue(None, None, "file", None, "file is empty")
                    return
            read_bytes = 0
            rest = ""
            saw_any = False
            last_had_newline = True
            max_bytes = self.max_bytes
            long: _LongLine | None = None  # a line too long to hold, being cut as it streams
            while True:
                data = fp.read(self._CHUNK)
                if data:
                    saw_any = True
                    read_bytes += len(data)
                    if read_bytes > max_bytes:
                        self._issue(self._n + 1, None, "file", None,
                                    f"file is larger than the {max_bytes}-byte limit")
                        return
                    # latin-1 keeps one character per byte, so columns stay byte columns.
                    text = rest + data.decode("latin-1")
                    cut = text.rfind("\n") + 1
                    if cut == 0:
                        if long is None and len(text) <= self._LONG_LINE:
                            rest = text
                            continue
                        # No line feed for a long stretch (records run together, or not NACHA at
                        # all): what is held stays under one chunk plus a record, so reading takes
                        # time linear in the size. At least one character stays for the line's
                        # end (a CR before its LF is the line ending, not a stray CR).
                        m = (len(text) - 1) // 94 * 94
                        if long is None:
                            long = _LongLine(self._n + 1)
                        self._raw = None
                        piece = self._long_piece(long, text[:m])
                        if piece:
                            yield piece
                        rest = text[m:]
                        continue
                    body, rest = text[:cut], text[cut:]
                else:
                    if not rest and long is None:
                        break
                    body, rest = rest, ""
                    last_had_newline = body.endswith("\n")
                if long is not None:
                    nl = body.find("\n")
                    self._raw = None
                    yield from self._long_end(long, body if nl < 0 else body[:nl])
                    long = None
                    body = "" if nl < 0 else body[nl + 1:]
                    if not body:
                        if not data:
                            break
                        continue
                k, r = divmod(len(body), 95)
                if r == 0 and body.count("\n") == k and body[94::95] == "\n" * k:
                    lines = body.split("\n")
                    lines.pop()  # the empty piece after the last LF
                    self._n += k
                    # Printable ASCII checked once for the whole stretch, not once per record.
                    raw = body.encode("latin-1")
                    self._raw = raw if printable(raw) else None
                    yield lines
                else:
                    self._raw = None
                    yield from self._irregular(body)
                if not data:
                    break
            if saw_any and not last_had_newline and not prof.missing_final_newline:
                self._issue(self._n, None, "file", None,
                            "last record has no line feed (the bank profile accepts that)")
            if not saw_any:
                self._issue(None, None, "file", None, "file is empty")
        except OSError as exc:
            self._issue(None, None, "file", None, f"cannot read file: {exc.strerror or exc}")
        finally:
            if close:
                fp.close()

    # A line longer than this is not held whole: it is cut every 94 characters as it is read
    # (`_long_piece`, `_long_end`).
    _LONG_LINE = 1 << 20

    def _long_piece(self, st: "_LongLine", piece: str) -> list[str]:
        """A stretch of a long line (a multiple of 94 characters, not its end): its records when
        the profile accepts records run together, else nothing (the line is one bad record whose
        first 94 characters are kept)."""
        if "\r" in piece:
            if not st.stray_cr:
                st.stray_cr = True
                self._issue(self._n + 1, None, "file", None, "stray carriage return inside a record")
            piece = piece.replace("\r", " ")
        if not st.first:
            st.first = piece[:94]
        st.length += len(piece)
        if not self.profile.unbroken_records:
            return []
        k = len(piece) // 94
        self._n += k
        return [piece[i:i + 94] for i in range(0, len(piece), 94)]

    def _long_end(self, st: "_LongLine", tail: str) -> Iterator[list[str]]:
        """The end of a long line (without its LF). Records run together (bank profile): cut every
        94 characters, a short last piece reported and padded; otherwise the line is one record
        reported with its full length, as `_irregular` reports a shorter one."""
        prof = self.profile
        if tail.endswith("\r"):
            tail = tail[:-1]
            if not prof.crlf:
                self._issue(self._n + 1, None, "file", None,
                            "line ends in CR LF; use LF (the bank profile accepts CR LF)")
        if "\r" in tail:
            if not st.stray_cr:
                self._issue(self._n + 1, None, "file", None, "stray carriage return inside a record")
            tail = tail.replace("\r", " ")
        length = st.length + len(tail)
        if prof.unbroken_records:
            whole = len(tail) // 94 * 94
            if whole:
                self._n += whole // 94
                yield [tail[i:i + 94] for i in range(0, whole, 94)]
            last = tail[whole:]
            if last:
                self._n += 1
                self._issue(self._n, (1, len(last)), "file", None,
                            f"record is {len(last)} characters long, expected 94 (the last piece of a "
                            f"{length}-character line of records run together)")
                yield [last.ljust(94)]
            return
        self._n += 1
        self._issue(st.line, (1, min(length, 999999)), "file", None,
                    f"record is {length} characters long, expected 94"
                    + ("; records run together without line breaks (the bank profile accepts that)"
                       if length % 94 == 0 else ""))
        yield [(st.first or tail)[:94].ljust(94)]

    def _irregular(self, body: str) -> Iterator[list[str]]:
        """Line by line (one-record lists, lazily, so problems stay in file order): report or
        relax what the profile says about each line's shape."""
        prof = self.profile
        pieces = body.split("\n")
        if pieces and pieces[-1] == "":
            pieces.pop()
        for line in pieces:
            n = self._n
            if line.endswith("\r"):
                line = line[:-1]
                if not prof.crlf:
                    self._issue(n + 1, None, "file", None,
                                "line ends in CR LF; use LF (the bank profile accepts CR LF)")
            if "\r" in line:
                self._issue(n + 1, None, "file", None, "stray carriage return inside a record")
                line = line.replace("\r", " ")
            if len(line) == 94:
                self._n += 1
                yield [line]
                continue
            if not line:
                if prof.blank_lines:
                    continue
                self._n += 1
                self._issue(self._n, None, "file", None, "blank line")
                continue
            if len(line) > 94 and len(line) % 94 == 0 and prof.unbroken_records:
                for i in range(0, len(line), 94):
                    self._n += 1
                    yield [line[i:i + 94]]
                continue
            if len(line) < 94 and prof.trimmed_lines:
                # Space-padded back to 94 whether or not the line still ends in spaces (a Fiserv
                # return file has a 91-character header that does: moov issue 702); a line cut
                # inside a numeric field still fails that field's check.
                self._n += 1
                yield [line.ljust(94)]
                continue
            self._n += 1
            if len(line) > 94 and len(line) % 94 == 0:
                hint = "; records run together without line breaks (the bank profile accepts that)"
            elif len(line) < 94:
                hint = "; trailing spaces trimmed? (the bank profile accepts that)"
            else:
                hint = ""
            self._issue(self._n, (1, min(len(line), 999999)), "file", None,
                        f"record is {len(line)} characters long, expected 94{hint}")
            # Still read what can be read, so later problems are reported too.
            yield [line[:94].ljust(94)]

    # -- records ---------------------------------------------------------------------------------
    def _parse(self, n: int, line: str, layout: Layout):
        if layout.quick_ok(line):
            return layout.parse(line)
        for p in layout.problems(line):
            self._field_issue(n, layout, p)
        return layout.parse_tolerant(line)

    def __iter__(self):
        return self._items()


    def _items(self):
        S = self.summary
        state = "start"  # start, file, batch, skip_batch (an unsupported batch), end
        filler_seen = 0
        b: _BatchState | None = None
        pending: EntryItem | None = None
        pending_clean = False
        fmt: SecFormat | None = None
        traced = True  # the current batch's entries carry trace numbers (all but ADV)
        skipped: BatchStart | None = None  # the unsupported batch being skipped
        routing_ok = {}
        seen_file_header = False
        seen_file_control = False
        last_batch_number = 0
        # The file control layout follows the file's batches (ADV files have their own, NR OR77):
        # the first batch decides, and a batch whose format needs another one is reported.
        file_fmt: SecFormat | None = None
        n = 0

        min_run = self.min_run
        for chunk in self._line_chunks():
            # A regular chunk (94-character printable records, LF each) can hold runs of entries
            # checked column by column: `types` is its column of record type codes.
            raw = self._raw if min_run else None
            types = raw[0::STRIDE].decode("ascii") if raw is not None else ""
            nlines = len(chunk)
            no_run_before = 0  # a run that failed the column checks is not tried again line by line
            idx = -1
            it = iter(chunk)
            for line in it:
                n += 1
                idx += 1
                S.records += 1
                t = line[0]
                if t == "6" and state == "batch" and b is not None:
                    if pending is not None:
                        if pending_clean and not pending.addenda:
                            pass  # a forward entry with nothing left to check (see _fast_rule)
                        else:
                            self._finish_entry(pending, b)
                        yield pending
                        pending = None
                    if raw is not None and idx >= no_run_before and b.plan is not None and traced \
                            and not self._deferred:
                        m_ = _NOT_ENTRY.search(types, idx)
                        j = m_.start() if m_ is not None else nlines
                        if j == nlines or types[j] == "7":
                            j -= 1  # the last entry may have addenda (here, or in the next chunk)
                        m = j - idx
                        res = None
                        if m >= min_run:
                            res = b.plan.check_run(raw, idx * STRIDE, m, b.odfi, b.last_trace,
                                                   lambda tc: self._run_rule(tc, b))
                        if res is not None:
                            if res.is_debit:
                                b.debit += res.total
                            else:
                                b.credit += res.total
                            b.hash += res.hash
                            b.count += m
                            self._mark_run(raw, idx * STRIDE, m, n, b, res.last_trace)
                            b.last_trace = res.last_trace
                            S.entries += m
                            S.records += m - 1
                            yield from map(_RunEntry, range(n, n + m), chunk[idx:j], repeat(b.start, m))
                            deque(islice(it, m - 1), maxlen=0)
                            n += m - 1
                            idx += m - 1
                            continue
                        no_run_before = max(j, idx + 1)
                    layout = b.entry_layout
                    rec = layout.parse_checked(line)
                    clean = rec is not None
                    if not clean:
                        for p in layout.problems(line):
                            if p.field.name in b.return_blanks and not p.value.strip():
                                self._deferred.append((n, p))  # decided once the addenda are known
                            else:
                                self._field_issue(n, layout, p)
                        rec = layout.parse_tolerant(line)
                    # transaction code, amount, totals (positions 1-39 mean the same in every layout)
                    tc = rec[1]
                    amount = rec[5]
                    if type(amount) is not int:
                        amount = 0
                        b.totals_known = False  # already reported; the control totals cannot be checked
                    isd = b.is_debit.get(tc)
                    if isd is None:
                        isd = self._classify_tx(n, layout, tc, b)
                    if isd:
                        b.debit += amount
                    else:
                        b.credit += amount
                    rdfi = rec[2]
                    if rdfi.isdigit() and rdfi.isascii():
                        b.hash += int(rdfi)
                        r9 = rdfi + rec[3]
                        ok = routing_ok.get(r9)
                        if ok is None:
                            ok = routing_ok[r9] = is_valid_routing(r9)
                        if not ok:
                            self._rec_issue(n, layout, "check_digit",
                                            f"routing check digit is wrong for {rdfi}{rec[3]}", rec[3])
                    else:
                        b.hash_known = False  # already reported; the entry hash cannot be checked
                    b.count += 1
                    S.entries += 1
                    if traced:
                        trace = rec[-1]
                        if trace <= b.last_trace:
                            self._rec_issue(n, layout, "trace_number",
                                            "trace numbers must be ascending within a batch", trace)
                        elif not self._traces.add(trace):
                            self._duplicate_trace(n, layout, trace)
                        if trace[:8] != b.odfi:
                            self._rec_issue(n, layout, "trace_number",
                                            f"trace number must start with the ODFI identification {b.odfi}", trace)
                        b.last_trace = trace
                    if clean:
                        fr = b.fast.get(tc)
                        if fr is None:
                            fr = b.fast[tc] = self._fast_rule(tc, b)
                        clean = (fr == 3 or (fr == 1 and amount != 0) or (fr == 2 and amount == 0)) \
                            and rec[b.indicator_index] == "0" and not self._deferred
                    pending_clean = clean
                    pending = EntryItem(n, rec, [], b.start)
                    continue

                if t == "7" and state == "batch" and b is not None:
                    b.count += 1
                    S.addenda += 1
                    if pending is None:
                        self._issue(n, (1, 1), "addenda", None, "addenda record without an entry before it")
                        continue
                    type_code = line[1:3]
                    layout = fmt.forward_addenda.get(type_code)
                    if layout is None and fmt.return_addenda:
                        layout = _addenda_variant(type_code, line[3:6])
                    if layout is None:
                        self._issue(n, (2, 3), "addenda", "addenda_type_code",
                                    f"addenda type {type_code!r} is not allowed in a {fmt.code} batch", type_code)
                        pending.addenda.append(None)
                        continue
                    pending.addenda.append((n, self._parse(n, line, layout)))
                    continue

                # Anything but an entry or addenda ends the pending entry.
                if pending is not None:
                    if not (pending_clean and not pending.addenda):
                        self._finish_entry(pending, b)
                    yield pending
                    pending = None

                if state == "skip_batch":
                    # Inside an unsupported batch: its entries and addenda are not read (another layout).
                    if t in ("6", "7"):
                        continue
                    if t == "8":
                        yield BatchEnd(n, None, skipped)
                        skipped = None
                        state = "file"
                        continue

                if t == "5":
                    if state in ("batch", "skip_batch"):
                        self._issue(n, (1, 1), "batch_header", None,
                                    "batch header before the previous batch's control record")
                        if state == "batch":
                            yield from self._end_batch(None, b)
                        else:
                            yield BatchEnd(None, None, skipped)
                        b = skipped = None
                    elif state == "end":
                        self._issue(n, (1, 1), "batch_header", None, "batch header after the file control record")
                    elif state == "start" and not seen_file_header:
                        if not self.profile.missing_file_envelope:
                            self._issue(n, (1, 1), "file_header", None,
                                        "file header record missing (the bank profile accepts that)")
                        seen_file_header = True
                    S.batches += 1
                    sec = line[50:53].rstrip()
                    fmt = batch_format(sec, line[4:20].rstrip())
                    if sec not in S.sec_codes:
                        S.sec_codes.append(sec)
                    if fmt is not None and not fmt.supported:
                        # Another header layout: not validated field by field, only reported.
                        self._rec_issue(n, BATCH_HEADER, "standard_entry_class_code", fmt.unsupported_reason, sec)
                        self._unsupported_batches += 1
                        skipped = BatchStart(n, BATCH_HEADER.parse_tolerant(line), fmt)
                        state = "skip_batch"
                        yield skipped
                        continue
                    zero_date = None
                    if self.profile.return_field_defects and not BATCH_HEADER.quick_ok(line):
                        # An Effective Entry Date of zeros is decided at the batch's end: a warning
                        # on a batch of returns or NOCs only (Profile.return_field_defects).
                        for p in BATCH_HEADER.problems(line):
                            if (p.field.name == "effective_entry_date" and zero_date is None
                                    and p.value and not p.value.strip("0")):
                                zero_date = p
                            else:
                                self._field_issue(n, BATCH_HEADER, p)
                        hdr = BATCH_HEADER.parse_tolerant(line)
                    else:
                        hdr = self._parse(n, line, BATCH_HEADER)
                    if fmt is None:
                        self._rec_issue(n, BATCH_HEADER, "standard_entry_class_code",
                                        f"unknown SEC code {sec!r}", sec)
                        fmt = sec_format(FALLBACK_SEC_CODE)
                    if file_fmt is None:
                        file_fmt = fmt
                    elif fmt.file_control is not file_fmt.file_control:
                        self._rec_issue(n, BATCH_HEADER, "standard_entry_class_code",
                                        f"{fmt.code} batches cannot share a file with {file_fmt.code} batches: "
                                        "their file control records differ (NR OR77)", sec)
                    b = self._start_batch(n, hdr, fmt, last_batch_number)
                    b.zero_date = (n, zero_date) if zero_date is not None else None
                    traced = fmt.has_trace_numbers
                    if type(hdr.batch_number) is int:
                        last_batch_number = max(last_batch_number, hdr.batch_number)
                    state = "batch"
                    yield b.start
                    continue

                if t == "8":
                    layout = (b.fmt if b is not None else file_fmt or _STANDARD).batch_control
                    ctl = self._parse(n, line, layout)
                    if state != "batch":
                        self._issue(n, (1, 1), layout.name, None, "batch control record without a batch header")
                        continue
                    yield from self._end_batch(ctl, b, n, layout)
                    b = None
                    state = "file"
                    continue

                if t == "1" and line != FILLER_LINE:
                    if seen_file_header or state != "start":
                        self._issue(n, (1, 1), "file_header", None, "a second file header record")
                        continue
                    seen_file_header = True
                    hdr = self._parse(n, line, FILE_HEADER)
                    self.header = hdr
                    self._created_on = _yymmdd(hdr.file_creation_date)
                    S.file_id_modifier = hdr.file_id_modifier
                    dest = hdr.immediate_destination.strip()
                    if len(dest) == 9 and dest.isdigit() and not is_valid_routing(dest):
                        self._rec_issue(n, FILE_HEADER, "immediate_destination",
                                        "routing check digit is wrong", hdr.immediate_destination)
                    state = "file"
                    yield FileStart(n, hdr)
                    continue

                if t == "9":
                    if line == FILLER_LINE and (state == "end" or (seen_file_control)):
                        filler_seen += 1
                        continue
                    if state in ("batch", "skip_batch"):
                        self._issue(n, (1, 1), "file_control", None, "file control before the last batch's control record")
                        if state == "batch":
                            yield from self._end_batch(None, b)
                        else:
                            yield BatchEnd(None, None, skipped)
                        b = skipped = None
                        state = "file"
                    if seen_file_control:
                        self._issue(n, (1, 1), "file_control", None, "a second file control record")
                        continue
                    if state == "start" and not seen_file_header:
                        if not self.profile.missing_file_envelope:
                            self._issue(n, (1, 1), "file_header", None, "file header record missing")
                    layout = (file_fmt or _STANDARD).file_control
                    ctl = self._parse(n, line, layout)
                    seen_file_control = True
                    self.control = ctl
                    self._check_file_control(n, ctl, layout)
                    state = "end"
                    continue

                # Unknown record type, or a record in the wrong place.
                if state == "end":
                    self._issue(n, (1, 1), "file", None, f"record after the file control record: type {t!r}")
                elif t in ("6", "7"):
                    self._issue(n, (1, 1), "entry_detail" if t == "6" else "addenda", None,
                                "entry or addenda record outside a batch")
                else:
                    self._issue(n, (1, 1), "file", "record_type_code",
                                f"unknown record type code {t!r}", t)

        # end of input
        if pending is not None:
            self._finish_entry(pending, b)
            yield pending
        if state in ("batch", "skip_batch"):
            self._issue(n or None, None, "batch_control", None, "file ends inside a batch (no batch control record)")
            if state == "batch":
                yield from self._end_batch(None, b)
            else:
                yield BatchEnd(None, None, skipped)
        if S.records == 0:
            if not self.issues:
                self._issue(None, None, "file", None, "file holds no records")
        if S.records and not seen_file_control:
            if not self.profile.missing_file_envelope:
                self._issue(None, None, "file_control", None, "file control record missing")
        elif S.records and not self.profile.missing_filler and S.records % 10 != 0:
            self._issue(None, None, "file", None,
                        f"file has {S.records} records; it must be filled with 9-records to a "
                        "multiple of 10 (the bank profile accepts a missing filler)")
        if self._traces.overflow:
            self._warning(None, FILE_HEADER, "file", "trace numbers of more than "
                          f"{len(self._traces.maps)} ODFI prefixes: those of the others were not compared "
                          "for uniqueness")
        S.entry_hash %= 10 ** 10
        yield FileEnd(n or None, self.control)

    def _return_trace_mismatch(self, an: int, alayout: Layout, value: str) -> None:
        """An addenda 98/99 trace number other than its entry's: an error, or under the bank
        profile a warning (returns and NOCs are matched by the original trace, 7-21)."""
        if self.profile.return_field_defects:
            self._warning(an, alayout, "trace_number",
                          "must equal the entry's trace number: read anyway (bank profile; matched by the "
                          "original trace)", value)
        else:
            self._rec_issue(an, alayout, "trace_number", "must equal the entry's trace number", value)

    def _duplicate_trace(self, n: int, layout: Layout, trace: str) -> None:
        self._rec_issue(n, layout, "trace_number",
                        "trace number already used by an earlier batch of this file: trace numbers must be "
                        "unique within a file", trace)

    def _mark_run(self, raw: bytes, start: int, m: int, n: int, b: _BatchState, last: str) -> None:
        """Record the trace numbers of a run of m entries checked column by column (ascending,
        one ODFI prefix). A run numbered without gaps is one range; otherwise, or when the range
        meets numbers seen before, entry by entry."""
        first = raw[start + 79:start + 94].decode("ascii")
        lo, hi = int(first[8:]), int(last[8:])
        if hi - lo == m - 1 and self._traces.add_range(first[:8], lo, hi):
            return
        layout = b.entry_layout
        for k in range(m):
            p = start + k * STRIDE
            trace = raw[p + 79:p + 94].decode("ascii")
            if not self._traces.add(trace):
                self._duplicate_trace(n + k, layout, trace)

    # -- batch ------------------------------------------------------------------------------------
    def _start_batch(self, n, hdr, fmt: SecFormat, last_batch_number) -> _BatchState:
        b = _BatchState()
        b.start = BatchStart(n, hdr, fmt)
        b.fmt = fmt
        b.odfi = hdr.originating_dfi_identification
        b.scc = hdr.service_class_code
        b.count = 0
        b.hash = 0
        b.debit = 0
        b.credit = 0
        b.totals_known = True
        b.hash_known = True
        b.last_trace = ""
        b.entry_layout = layout = fmt.entry
        b.is_debit = {}
        b.tx_info = {}
        b.fast = {}
        b.run_rules = {}
        b.plan = plan_for(layout)
        b.returns = 0
        b.nocs = 0
        b.number = hdr.batch_number
        b.indicator_index = layout.index["addenda_record_indicator"]
        b.zero_checks = tuple((layout.index[f], f) for f in fmt.not_all_zeros)
        b.return_blanks = frozenset(fmt.return_blank_ok) if self.profile.blank_fields_on_returns else _NO_KINDS
        b.zero_date = None
        b.entries_before = self.summary.entries
        L = BATCH_HEADER
        if type(hdr.batch_number) is int and hdr.batch_number <= last_batch_number:
            self._rec_issue(n, L, "batch_number", "batch numbers must be ascending within the file",
                            str(hdr.batch_number))
        if b.scc not in fmt.service_class_codes and b.scc in SERVICE_CLASS_CODES:
            self._rec_issue(n, L, "service_class_code",
                            f"service class code {b.scc} is not allowed for {fmt.code} "
                            f"(allowed: {', '.join(sorted(fmt.service_class_codes))})", b.scc)
        if hdr.originator_status_code not in fmt.originator_status_codes and hdr.originator_status_code in ("0", "1", "2"):
            self._rec_issue(n, L, "originator_status_code",
                            f"originator status code {hdr.originator_status_code!r} is not allowed for "
                            f"{fmt.code} (allowed: {', '.join(sorted(fmt.originator_status_codes))})",
                            hdr.originator_status_code)
        if fmt.entry_description is not None and hdr.company_entry_description != fmt.entry_description:
            self._rec_issue(n, L, "company_entry_description",
                            f"{fmt.code} batches must be described {fmt.entry_description!r}",
                            hdr.company_entry_description)
        if fmt.company_name is not None and hdr.company_name != fmt.company_name:
            self._rec_issue(n, L, "company_name", f"{fmt.code} batches must carry company name {fmt.company_name!r}",
                            hdr.company_name)
        if fmt.effective_date_blank:
            if hdr.effective_entry_date:
                self._rec_issue(n, L, "effective_entry_date", f"{fmt.code} batches leave the effective entry date blank",
                                hdr.effective_entry_date)
        elif not hdr.effective_entry_date:
            self._rec_issue(n, L, "effective_entry_date", "required: must not be blank", "")
        return b

    def _classify_tx(self, n, layout, tc, b: _BatchState):
        """Debit (True) or credit (False) for a transaction code first seen in this batch; reports
        an unknown code once per batch (what the code may do in this batch: _tx_info). Cached."""
        tx = codes.transaction_code(tc) if isinstance(tc, str) else None
        if tx is None:
            self._rec_issue(n, layout, "transaction_code", f"unknown transaction code {tc!r}", tc)
            b.is_debit[tc] = False
            return False
        b.is_debit[tc] = tx.is_debit
        return tx.is_debit

    def _tx_info(self, tc, b: _BatchState) -> _TxInfo:
        """What a transaction code means in this batch, worked out once per batch and code: the
        problems of a forward entry with this code (SEC code's codes and direction) and of any
        entry (service class)."""
        fmt = b.fmt
        tx = codes.transaction_code(tc) if isinstance(tc, str) else None
        forward: list[str] = []
        scc_problem = None
        if tx is not None:
            if fmt.tx_codes is not None:
                if tc not in fmt.tx_codes:
                    forward.append(f"transaction code {tc} is not allowed in a {fmt.code} batch")
            elif tx.is_return:
                forward.append(f"transaction code {tc} is for returns and NOCs, but this entry has no addenda 98/99")
            elif fmt.direction == DEBIT and not tx.is_debit:
                forward.append(f"{fmt.code} batches carry debits only; {tc} is a credit")
            elif fmt.direction == CREDIT and tx.is_debit:
                forward.append(f"{fmt.code} batches carry credits only; {tc} is a debit")
            if b.scc in _CHECKED_SERVICE_CLASSES and not codes.service_class_allows(b.scc, tx):
                scc_problem = f"transaction code {tc} does not fit service class {b.scc}"
        prenote = tx is not None and tx.is_prenote and fmt.has_prenotes
        zero_dollar = tx is not None and tx.zero_amount and not tx.is_prenote
        info = _TxInfo(tx, tuple(forward), scc_problem, prenote, zero_dollar)
        b.tx_info[tc] = info
        return info

    def _run_rule(self, tc, b: _BatchState):
        """(is_debit, fast rule) for a transaction code in a column-checked run, or None when its
        entries need the record-by-record path (unknown code, or more to check: `_fast_rule` 0)."""
        r = b.run_rules.get(tc, False)
        if r is False:
            r = None
            if codes.transaction_code(tc) is not None:
                isd = b.is_debit.get(tc)
                if isd is None:
                    isd = self._classify_tx(None, b.entry_layout, tc, b)  # a known code: no issue
                fr = b.fast.get(tc)
                if fr is None:
                    fr = b.fast[tc] = self._fast_rule(tc, b)
                if fr:
                    r = (isd, fr)
            b.run_rules[tc] = r
        return r

    def _fast_rule(self, tc, b: _BatchState) -> int:
        """For a clean entry of this transaction code with no addenda, what `_finish_entry` would
        still check, reduced to the amount: 1 = must be non-zero, 2 = must be zero, 3 = anything;
        0 = no shortcut (the entry goes through `_finish_entry`). Derived from the one list of entry
        checks (`entry_rules.fast_rule`); worked out once per batch and code."""
        info = b.tx_info.get(tc)
        if info is None:
            info = self._tx_info(tc, b)
        if not self.fast_lanes:
            return 0
        return fast_rule(b.fmt, info, b.zero_checks)

    def _finish_entry(self, e: EntryItem, b: _BatchState):
        """Checks that need the entry together with its addenda."""
        rec = e.record
        layout = b.entry_layout
        fmt = b.fmt
        n = e.line
        addenda = e.addenda
        tc = rec[1]
        info = b.tx_info.get(tc)
        if info is None:
            info = self._tx_info(tc, b)
        tx = info.tx
        indicator = rec[b.indicator_index]
        forward_count = 0
        is_return = is_noc = False
        kinds = _NO_KINDS
        if not addenda:
            if indicator == "1":
                self._rec_issue(n, layout, "addenda_record_indicator",
                                "addenda record indicator is 1 but no addenda follow", indicator)
        else:
            if indicator != "1":
                self._rec_issue(n, layout, "addenda_record_indicator",
                                "addenda follow but the addenda record indicator is not 1", indicator)
            kinds = set()
            traced = fmt.has_trace_numbers
            trace = rec[-1]
            for a in addenda:
                if a is None:
                    continue
                an, arec = a
                tcode = arec.addenda_type_code
                kinds.add(tcode)
                alayout = arec.layout
                if tcode in fmt.forward_addenda:
                    forward_count += 1
                    if alayout.name == "addenda_05":
                        if arec.addenda_sequence_number != forward_count:
                            self._rec_issue(an, alayout, "addenda_sequence_number",
                                            f"expected {forward_count} (consecutive from 1)",
                                            str(arec.addenda_sequence_number))
                        if traced and arec.entry_detail_sequence_number != trace[-7:]:
                            self._rec_issue(an, alayout, "entry_detail_sequence_number",
                                            f"must equal the last 7 digits of the entry's trace number ({trace[-7:]})",
                                            arec.entry_detail_sequence_number)
                    elif "trace_number" in alayout.index and traced and arec.trace_number != trace:
                        self._rec_issue(an, alayout, "trace_number",
                                        "must equal the entry's trace number", arec.trace_number)
                elif tcode == "99":
                    b.returns += 1
                    code = arec[2]
                    rc = codes.return_code(code)
                    if rc is None:
                        fname = alayout.fields[2].name
                        if codes.is_well_formed_return_code(code):
                            # NACHA adds return codes (R90 in 2028, ref §2.1) and a bank may use one
                            # before our table has it: the file is still well formed (`Rnn`, ref
                            # §1.7); the entry is for a person to decide (returns processing does
                            # not apply it).
                            self._warning(an, alayout, fname,
                                          f"unknown return reason code {code!r}: well formed, but not in the "
                                          "return code table", code)
                        else:
                            self._rec_issue(an, alayout, fname,
                                            f"malformed return reason code {code!r}: expected R and two digits",
                                            code)
                    elif (rc.effective_from is not None and self._created_on is not None
                          and self._created_on < rc.effective_from):
                        # The reader knows no processing date; the file's creation date stands in.
                        self._warning(an, alayout, alayout.fields[2].name,
                                      f"return reason code {code} takes effect on {rc.effective_from.isoformat()}; "
                                      f"the file was created on {self._created_on.isoformat()}", code)
                    if traced and arec.trace_number != trace:
                        self._return_trace_mismatch(an, alayout, arec.trace_number)
                elif tcode == "98":
                    b.nocs += 1
                    code = arec[2]
                    cc = codes.change_code(code)
                    if cc is None:
                        self._rec_issue(an, alayout, alayout.fields[2].name, f"unknown change code {code!r}", code)
                    elif not cc.refused:
                        try:
                            codes.parse_corrected_data(code, arec.corrected_data.ljust(29))
                        except ValueError as exc:
                            self._rec_issue(an, alayout, "corrected_data", f"{code}: {exc}", arec.corrected_data)
                    if traced and arec.trace_number != trace:
                        self._return_trace_mismatch(an, alayout, arec.trace_number)
            is_return = "99" in kinds
            # One return (99) or NOC (98) addenda per entry (NR2013 OR72): structural, every profile.
            for tc_, what in (("99", "return"), ("98", "notification of change")):
                if tc_ in kinds:
                    count = sum(1 for a in addenda if a is not None and a[1].addenda_type_code == tc_)
                    if count > 1:
                        self._issue(n, None, layout.name, None,
                                    f"an entry carries one {what} addenda ({tc_}), found {count}")
            is_noc = "98" in kinds
            if is_return and is_noc:
                self._issue(n, None, layout.name, None, "an entry cannot carry both return and NOC addenda")
        if self._deferred:
            if not (is_return or is_noc):
                for dn, p in self._deferred:
                    self._field_issue(dn, layout, p)
            self._deferred = []
        amount = rec.amount if type(rec.amount) is int else None
        if is_return or is_noc:
            # A dishonored or contested return answers a return entry (NR2013 OR72; reference §1.7):
            # it carries that entry's return transaction code. (A bank's plain return that keeps the
            # forward code, moov issue 1620, is read as it is.)
            if (tx is not None and is_return and not is_noc and not tx.is_return
                    and any(a is not None and a[1].layout in (ADDENDA_99_DISHONORED, ADDENDA_99_CONTESTED)
                            for a in addenda)):
                self._rec_issue(n, layout, "transaction_code",
                                "a dishonored or contested return carries a return transaction code "
                                f"(21, 26, 31, 36, ...), not {tc}", tc)
            if tx is not None and is_noc:
                if not tx.is_return and not tx.zero_amount:
                    self._rec_issue(n, layout, "transaction_code",
                                    f"a notification of change uses a return/NOC transaction code, not {tc}", tc)
                if amount:
                    self._rec_issue(n, layout, "amount", "a notification of change must have a zero amount", str(amount))
        else:
            # A forward entry.
            for message in info.forward:
                self._rec_issue(n, layout, "transaction_code", message, tc)
            prenote = info.prenote
            if tx is not None and amount is not None:
                if prenote and amount != 0:
                    self._rec_issue(n, layout, "amount", f"prenote ({tc}) amounts must be zero", str(amount))
                elif fmt.amount_rule == AMOUNT_ZERO and amount != 0:
                    self._rec_issue(n, layout, "amount", f"{fmt.code} entries must have a zero amount", str(amount))
                elif (fmt.amount_rule == AMOUNT_NONZERO and amount == 0 and not prenote
                      and not tx.zero_amount):
                    self._rec_issue(n, layout, "amount", "a live entry must have a non-zero amount", str(amount))
                if fmt.max_amount_cents is not None and amount > fmt.max_amount_cents:
                    self._rec_issue(n, layout, "amount",
                                    f"{fmt.code} entries are limited to {fmt.max_amount_cents} cents", str(amount))
            if forward_count > fmt.max_forward_addenda:
                self._rec_issue(n, layout, "addenda_record_indicator",
                                f"{fmt.code} entries carry at most {fmt.max_forward_addenda} addenda, found {forward_count}")
            if not forward_count and tx is not None:
                if fmt.addenda_required and not prenote:
                    self._rec_issue(n, layout, "addenda_record_indicator",
                                    f"{fmt.code} entries must carry an addenda record")
                elif info.zero_dollar and fmt.zero_dollar_addenda_required:
                    self._rec_issue(n, layout, "addenda_record_indicator",
                                    f"a zero-dollar entry ({tc}) must carry its remittance addenda")
            if fmt.addenda_count_field:
                stated = getattr(rec, fmt.addenda_count_field)
                if type(stated) is int and stated != forward_count:
                    self._rec_issue(n, layout, fmt.addenda_count_field,
                                    f"says {stated} addenda records, {forward_count} follow", str(stated))
        if info.scc_problem is not None:
            self._rec_issue(n, layout, "transaction_code", info.scc_problem, tc)
        for i, fname in b.zero_checks:
            v = rec[i]
            if v and not v.strip("0 "):
                self._rec_issue(n, layout, fname, "must not be all zeros (R26)", v)
        for check in fmt.entry_checks:
            ENTRY_CHECKS[check](self, e, b, kinds)

    def _end_batch(self, ctl, b: _BatchState, n=None, layout=BATCH_CONTROL):
        S = self.summary
        hdr = b.start.header
        if b.zero_date is not None:
            hn, p = b.zero_date
            entries = S.entries - b.entries_before
            if entries and b.returns + b.nocs == entries:
                self._warning(hn, BATCH_HEADER, p.field.name,
                              f"{p.message} on a batch of returns or NOCs: read anyway (bank profile; returns "
                              "are matched by the original trace)", p.value)
            else:
                self._field_issue(hn, BATCH_HEADER, p)
        S.total_debit_cents += b.debit
        S.total_credit_cents += b.credit
        S.entry_hash += b.hash
        if ctl is not None:
            L = layout
            if b.count == 0:
                self._issue(n, None, L.name, None, "a batch must hold at least one entry")
            if ctl.service_class_code != b.scc:
                self._rec_issue(n, L, "service_class_code",
                                f"must equal the batch header's service class code {b.scc}", ctl.service_class_code)
            # Compared without padding: banks justify this 10-character ID inconsistently.
            if ("company_identification" in L.index
                    and ctl.company_identification.strip() != hdr.company_identification.strip()):
                self._rec_issue(n, L, "company_identification",
                                f"must equal the batch header's company identification {hdr.company_identification!r}",
                                ctl.company_identification)
            if ctl.originating_dfi_identification != b.odfi:
                self._rec_issue(n, L, "originating_dfi_identification",
                                f"must equal the batch header's {b.odfi}", ctl.originating_dfi_identification)
            if ctl.batch_number != hdr.batch_number:
                self._rec_issue(n, L, "batch_number", f"must equal the batch header's {hdr.batch_number}",
                                str(ctl.batch_number))
            # A control value that could not be read, or a total over an entry that could not,
            # was reported already: comparing it would only repeat that problem.
            if type(ctl.entry_addenda_count) is int and ctl.entry_addenda_count != b.count:
                self._rec_issue(n, L, "entry_addenda_count", f"says {ctl.entry_addenda_count}, the batch holds {b.count}",
                                str(ctl.entry_addenda_count))
            h = b.hash % 10 ** 10
            if b.hash_known and type(ctl.entry_hash) is int and ctl.entry_hash != h:
                self._rec_issue(n, L, "entry_hash", f"says {ctl.entry_hash}, the entries hash to {h}", str(ctl.entry_hash))
            if b.totals_known and type(ctl.total_debit_amount) is int and ctl.total_debit_amount != b.debit:
                self._rec_issue(n, L, "total_debit_amount", f"says {ctl.total_debit_amount}, the debits add up to {b.debit}",
                                str(ctl.total_debit_amount))
            if b.totals_known and type(ctl.total_credit_amount) is int and ctl.total_credit_amount != b.credit:
                self._rec_issue(n, L, "total_credit_amount",
                                f"says {ctl.total_credit_amount}, the credits add up to {b.credit}",
                                str(ctl.total_credit_amount))
        self._totals_known = self._totals_known and b.totals_known
        self._hash_known = self._hash_known and b.hash_known
        yield BatchEnd(n, ctl, b.start)

    def _check_file_control(self, n, ctl, L):
        S = self.summary
        count = S.entries + S.addenda
        if type(ctl.batch_count) is int and ctl.batch_count != S.batches:
            self._rec_issue(n, L, "batch_count", f"says {ctl.batch_count}, the file holds {S.batches} batches",
                            str(ctl.batch_count))
        # Block count: every record up to and including the file control, in blocks of ten.
        blocks = -(-S.records // 10)
        if type(ctl.block_count) is int and ctl.block_count != blocks:
            self._rec_issue(n, L, "block_count", f"says {ctl.block_count}, the file needs {blocks} blocks",
                            str(ctl.block_count))
        if self._unsupported_batches:
            return  # the skipped batches' entries were not read: the totals cannot be compared
        if type(ctl.entry_addenda_count) is int and ctl.entry_addenda_count != count:
            self._rec_issue(n, L, "entry_addenda_count", f"says {ctl.entry_addenda_count}, the file holds {count}",
                            str(ctl.entry_addenda_count))
        h = S.entry_hash % 10 ** 10
        if self._hash_known and type(ctl.entry_hash) is int and ctl.entry_hash != h:
            self._rec_issue(n, L, "entry_hash", f"says {ctl.entry_hash}, the batches hash to {h}", str(ctl.entry_hash))
        if self._totals_known and type(ctl.total_debit_amount) is int and ctl.total_debit_amount != S.total_debit_cents:
            self._rec_issue(n, L, "total_debit_amount",
                            f"says {ctl.total_debit_amount}, the debits add up to {S.total_debit_cents}",
                            str(ctl.total_debit_amount))
        if (self._totals_known and type(ctl.total_credit_amount) is int
                and ctl.total_credit_amount != S.total_credit_cents):
            self._rec_issue(n, L, "total_credit_amount",
                            f"says {ctl.total_credit_amount}, the credits add up to {S.total_credit_cents}",
                            str(ctl.total_credit_amount))


def _noc_addenda_required(reader: Reader, e: EntryItem, b, kinds):
    if "98" not in kinds:
        reader._rec_issue(e.line, b.entry_layout, "addenda_record_indicator",
                          "a COR entry must carry an addenda 98 (notification of change)")


def _advice_routing_number(reader: Reader, e: EntryItem, b, kinds):
    """ADV: the Advice Routing Number is a routing number with its check digit (NR OR78)."""
    v = e.record.advice_routing_number
    if v.isascii() and v.isdigit() and not is_valid_routing(v):
        reader._rec_issue(e.line, b.entry_layout, "advice_routing_number",
                          f"routing check digit is wrong for {v}", v)


def _mte_transaction_time(reader: Reader, e: EntryItem, b, kinds):
    """MTE: the addenda 02 Transaction Time is a time of day, HHMMSS (NR OR91; other-sec §5.2)."""
    for a in e.addenda:
        if a is None or "transaction_time" not in a[1].layout.index:
            continue
        an, arec = a
        v = arec.transaction_time
        if len(v) == 6 and v.isascii() and v.isdigit():
            if not (int(v[0:2]) <= 23 and int(v[2:4]) <= 59 and int(v[4:6]) <= 59):
                reader._rec_issue(an, arec.layout, "transaction_time", f"not a valid HHMMSS time: {v!r}", v)


def _payment_related_information_required(reader: Reader, e: EntryItem, b, kinds):
    """ENR: the Addenda 05 Payment Related Information is Required (NR OR85; other-sec §6.1)."""
    for a in e.addenda:
        if a is None or a[1].layout.name != "addenda_05":
            continue
        an, arec = a
        if not arec.payment_related_information.strip():
            reader._rec_issue(an, arec.layout, "payment_related_information",
                              f"required for {b.fmt.code} entries: must not be blank", "")


# Named entry checks a SecFormat can ask for (data, not branches on SEC codes).
ENTRY_CHECKS = {
    "noc_addenda_required": _noc_addenda_required,
    "advice_routing_number": _advice_routing_number,
    "mte_transaction_time": _mte_transaction_time,
    "payment_related_information_required": _payment_related_information_required,
}


def _check_entry_checks() -> None:
    from .sec import SEC_FORMATS, HEADER_VARIANTS

    for fmt in (*SEC_FORMATS.values(), *HEADER_VARIANTS.values()):
        for name in fmt.entry_checks:
            if name not in ENTRY_CHECKS:
                raise AssertionError(f"SEC code {fmt.code}: unknown entry check {name!r}")


_check_entry_checks()


def _yymmdd(v) -> date | None:
    """A YYMMDD field as a date (years 2000-2099), or None when it is not one."""
    if not (isinstance(v, str) and len(v) == 6 and v.isascii() and v.isdigit()):
        return None
    try:
        return date(2000 + int(v[0:2]), int(v[2:4]), int(v[4:6]))
    except ValueError:
        return None


@dataclass
class _LongLine:
    """What is kept of a line too long to hold while it streams past."""

    line: int  # its line number (its first record's)
    first: str = ""  # its first 94 characters
    length: int = 0  # characters seen so far (the held tail not counted)
    stray_cr: bool = False  # a stray CR was reported


# -- convenience ----------------------------------------------------------------------------------
def validate_file(source, profile: str | Profile = STRICT, name: str | None = None) -> Reader:
    """Read the whole file, discarding records; returns the reader (issues, warnings, summary)."""
    r = Reader(source, profile, name)
    for _ in r:
        pass
    return r


def read_file(source, profile: str | Profile = STRICT, name: str | None = None,
              allow_invalid: bool = False) -> NachaFile:
    """The whole file as a NachaFile; raises InvalidFile listing every problem unless allow_invalid."""
    r = Reader(source, profile, name)
    f = NachaFile(header=None, batches=[], control=None)
    cur: Batch | None = None
    for item in r:
        if isinstance(item, FileStart):
            f.header = item.header
        elif isinstance(item, BatchStart):
            cur = Batch(item.header, [], None)
            f.batches.append(cur)
        elif isinstance(item, EntryItem):
            if cur is not None:
                cur.entries.append(Entry(item.record, [a[1] for a in item.addenda if a is not None]))
        elif isinstance(item, BatchEnd):
            if cur is not None:
                cur.control = item.control
            cur = None
        elif isinstance(item, FileEnd):
            f.control = item.control
    f.issues = r.issues
    f.warnings = r.warnings
    if r.issues and not allow_invalid:
        raise InvalidFile(r.issues)
    return f
