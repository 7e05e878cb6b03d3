"""NACHA writer: computes every derived field (addenda indicator, counts, totals, entry hash mod
10^10, batch numbers, block count, 9-filler) and refuses invalid records.

`FileWriter` streams records to a text sink; `write_file` streams into a temporary file beside the
target and renames it into place only when the whole file is valid (mode 0600), so an invalid or
interrupted write never leaves a file under the target name. `format_file` renders a `NachaFile`
in memory and re-reads the result with the strict reader before returning it.
"""
from __future__ import annotations

import io
import os
import tempfile
from operator import itemgetter
from typing import IO, Iterable

from . import codes
from .columns import STRIDE, plan_for, printable_lines
from .errors import Issue, WriteError
from .fields import BLANK, NUMBER, TEXT, Layout
from .layouts import BATCH_CONTROL, BATCH_HEADER, FILE_CONTROL, FILE_HEADER, FILLER_LINE
from .model import Entry, NachaFile
from .routing import is_valid_routing
from .sec import AMOUNT_NONZERO, AMOUNT_ZERO, CREDIT, DEBIT, sec_format

_MAX_HASH = 10 ** 10

# A file being written is named `.tmp-...` until it is complete (batch.store.fsutil uses the same
# prefix for every file achbatch writes, and the steps clean up `.tmp-*` left by a crash).
from .tempfiles import TMP_PREFIX  # noqa: E402  (re-exported)


class FileWriter:
    """Write one NACHA file record by record.

        w = FileWriter(sink, file_header)
        w.start_batch(batch_header)       # batch_number assigned 1, 2, ...
        w.add_entry(entry_record, [addenda...])
        w.end_batch()
        w.finish()                        # file control + 9-filler

    Plain entries (no addenda) are checked in blocks: up to `block_size` of them are buffered, then
    formatted and checked together column by column (nacha.columns) with every check the record
    path makes. A block that is not clean is replayed record by record, which refuses the first bad
    entry naming its line and field. So a bad entry is refused at the latest when its batch ends
    (`end_batch`), never written, not even in part; `block_size = 1` refuses it in its own
    `add_entry` call.
    """

    block_size = 4096

    def __init__(self, sink: IO[str], header, name: str = "<output>"):
        self.sink = sink
        self.name = name
        self.records = 0
        self.batch_count = 0
        self.entry_addenda_count = 0
        self.entry_hash = 0
        self.total_debit = 0
        self.total_credit = 0
        self._batch = None
        self._finished = False
        self._routing_ok: dict[str, bool] = {}
        self._buf: list[str] = []
        self._block_records: list = []  # plain entries not yet checked (see _check_block)
        self._emit(FILE_HEADER, header)

    # -- helpers ---------------------------------------------------------------------------------
    def _fail(self, layout: Layout, fld: str | None, message: str, value=None):
        f = layout.by_name.get(fld) if fld else None
        issue = Issue(self.name, self.records + 1, f.columns if f else None, layout.name, fld, message,
                      None if value is None else str(value))
        raise WriteError([issue])

    def _render(self, layout: Layout, record) -> str:
        if getattr(record, "layout", None) is not layout:
            raise WriteError([Issue(self.name, self.records + 1, None, layout.name, None,
                                    f"expected a {layout.name} record, got {type(record).__name__}")])
        line = layout.render(record)
        if line is None:
            try:
                line = layout.format(record)
            except (TypeError, ValueError):
                line = None
            problems = layout.value_problems(record)
            if not problems and line is not None:
                problems = layout.problems(line)
            if problems:
                raise WriteError([
                    Issue(self.name, self.records + 1, p.field.columns, layout.name, p.field.name, p.message, p.value)
                    for p in problems
                ])
            raise WriteError([Issue(self.name, self.records + 1, None, layout.name, None, "record cannot be written")])
        return line

    def _emit(self, layout: Layout, record) -> None:
        line = self._render(layout, record)
        self._flush()
        self.sink.write(line + "\n")
        self.records += 1

    # -- batches ---------------------------------------------------------------------------------
    def start_batch(self, header) -> int:
        """Open a batch; the batch number is assigned here. Returns it."""
        if self._batch is not None:
            raise WriteError("start_batch called while a batch is open")
        fmt = sec_format(header.standard_entry_class_code)
        if fmt is None or not fmt.supported:
            self._fail(BATCH_HEADER, "standard_entry_class_code",
                       f"cannot write SEC code {header.standard_entry_class_code!r}")
        self.batch_count += 1
        header = header._replace(batch_number=self.batch_count)
        self._emit(BATCH_HEADER, header)
        self._batch = b = _OpenBatch(header, fmt)
        if b.plan is not None and self.block_size > 1:
            self.add_entry = _adder_factory(fmt.entry)(
                b.cls, FileWriter.add_entry.__get__(self), self._block_records, self.block_size, self._check_block)
        return self.batch_count

    def add_entry(self, record, addenda: Iterable = ()) -> None:
        """Append an entry with its addenda; the addenda record indicator, and each addenda's
        sequence and trace fields, are set here."""
        b = self._batch
        if b is None:
            raise WriteError("add_entry called outside a batch")
        # While a batch whose entries can be checked column by column is open, `add_entry` is
        # that batch's compiled adder (see _adder_factory); it comes here for anything else.
        self._check_block()
        self._add_checked(record, addenda)

    def _check_block(self) -> None:
        """Check the buffered plain entries column by column; replay them record by record when
        the block is not clean (which refuses the first bad one)."""
        recs = self._block_records
        if not recs:
            return
        b = self._batch
        m = len(recs)
        try:
            body = "\n".join(map(b.line_format.__mod__, recs)) + "\n"
        except (TypeError, ValueError):
            body = ""
        res = None
        if len(body) == STRIDE * m and b.max_amount is None:
            try:
                raw = body.encode("ascii")
            except UnicodeEncodeError:
                raw = None
            if raw is not None and printable_lines(raw, m):
                res = b.plan.check_run(raw, 0, m, b.odfi, b.last_trace, lambda tc: self._run_rule(b, tc))
        if res is None:
            records = recs.copy()
            recs.clear()  # in place: the batch's adder holds this list
            for rec in records:
                self._add_checked(rec, ())
            return
        recs.clear()
        self.records += m
        b.count += m
        if res.is_debit:
            b.debit += res.total
        else:
            b.credit += res.total
        b.hash += res.hash
        b.last_trace = res.last_trace
        self._flush()
        self.sink.write(body)

    def _run_rule(self, b, tc: str):
        """(is_debit, amount rule) of a transaction code for the column check: 1 = non-zero,
        2 = zero, 3 = any; None when the record path must decide (and refuse)."""
        rule = b.rules.get(tc)
        if rule is None:
            try:
                rule = b.rules[tc] = self._tx_rule(b, tc, False)
            except WriteError:
                return None
        is_debit, zero = rule
        return is_debit, (2 if zero else 1 if zero is False else 3)

    def _add_checked(self, record, addenda: Iterable = ()) -> None:
        """The record path: every check on this one entry, refusing it at once."""
        b = self._batch
        if type(record) is not b.cls:
            self._render(b.fmt.entry, record)  # not this batch's entry record: raises a WriteError
        if addenda:
            addenda = list(addenda)
            if record.addenda_record_indicator != "1":
                record = record._replace(addenda_record_indicator="1")
        elif record.addenda_record_indicator != "0":
            record = record._replace(addenda_record_indicator="0")
        line = b.render(record) if type(record) is b.cls else None
        if line is None:
            line = self._render(b.fmt.entry, record)  # raises, naming the field
        tc = record.transaction_code
        rule = b.rules.get(tc)
        if rule is None:
            rule = b.rules[tc] = self._tx_rule(b, tc, bool(addenda))
        is_debit, zero = rule
        amount = record.amount
        if zero:
            if amount:
                self._fail(b.fmt.entry, "amount", f"transaction code {tc} ({b.fmt.code}) requires a zero amount", amount)
        elif not amount and zero is not None:
            self._fail(b.fmt.entry, "amount", "a live entry must have a non-zero amount", amount)
        if b.max_amount is not None and amount > b.max_amount:
            self._fail(b.fmt.entry, "amount", f"{b.fmt.code} entries are limited to {b.max_amount} cents", amount)
        rdfi = record.receiving_dfi_identification
        r9 = rdfi + record.check_digit
        ok = self._routing_ok.get(r9)
        if ok is None:
            ok = self._routing_ok[r9] = is_valid_routing(r9)
        if not ok:
            self._fail(b.fmt.entry, "check_digit", f"routing check digit is wrong for {r9}", record.check_digit)
        trace = record.trace_number
        if trace <= b.last_trace or trace[:8] != b.odfi:
            if trace[:8] != b.odfi:
                self._fail(b.fmt.entry, "trace_number",
                           f"trace number must start with the ODFI identification {b.odfi}", trace)
            self._fail(b.fmt.entry, "trace_number", "trace numbers must be ascending within a batch", trace)
        b.last_trace = trace
        b.hash += int(rdfi)
        if is_debit:
            b.debit += amount
        else:
            b.credit += amount
        if addenda:
            line = "\n".join([line] + self._addenda_lines(b, trace, addenda))
            n = line.count("\n") + 1
        else:
            n = 1
        buf = self._buf
        buf.append(line)
        if len(buf) >= 4096:
            self._flush()
        self.records += n
        b.count += n

    def _addenda_lines(self, b, trace: str, addenda: list) -> list[str]:
        fmt = b.fmt
        special = any(a.addenda_type_code in ("98", "99") for a in addenda)
        if len(addenda) > fmt.max_forward_addenda and not special:
            self._fail(fmt.entry, "addenda_record_indicator",
                       f"{fmt.code} entries carry at most {fmt.max_forward_addenda} addenda")
        lines = []
        seq = 0
        for a in addenda:
            al = a.layout
            if a.addenda_type_code == "05":
                seq += 1
                a = a._replace(addenda_sequence_number=seq, entry_detail_sequence_number=trace[-7:])
            elif "trace_number" in al.index:
                a = a._replace(trace_number=trace)
            lines.append(self._render(al, a))
        return lines

    def _flush(self) -> None:
        if self._buf:
            self._buf.append("")
            self.sink.write("\n".join(self._buf))
            self._buf.clear()

    def _tx_rule(self, b, tc: str, has_addenda: bool):
        """(is_debit, zero) for a transaction code in this batch: zero True = amount must be 0,
        False = must be non-zero, None = any. Raises when the code does not belong here."""
        fmt = b.fmt
        tx = codes.transaction_code(tc)
        if tx is None:
            self._fail(fmt.entry, "transaction_code", f"unknown transaction code {tc!r}", tc)
        self._check_tx(fmt.entry, fmt, b.header.service_class_code, tx, has_addenda)
        if tx.is_prenote or tx.zero_amount or fmt.amount_rule == AMOUNT_ZERO:
            zero = True
        elif tx.is_return or fmt.amount_rule != AMOUNT_NONZERO:
            zero = None
        else:
            zero = False
        return tx.is_debit, zero

    def _check_tx(self, layout, fmt, scc, tx, has_addenda):
        tc = tx.code
        if not codes.service_class_allows(scc, tx):
            self._fail(layout, "transaction_code", f"transaction code {tc} does not fit service class {scc}", tc)
        if tx.is_return and not has_addenda:
            self._fail(layout, "transaction_code", f"transaction code {tc} is for returns and NOCs", tc)
        if not tx.is_return:
            if fmt.tx_codes is not None and tc not in fmt.tx_codes:
                self._fail(layout, "transaction_code", f"transaction code {tc} is not allowed in {fmt.code}", tc)
            if fmt.direction == DEBIT and not tx.is_debit:
                self._fail(layout, "transaction_code", f"{fmt.code} batches carry debits only", tc)
            if fmt.direction == CREDIT and tx.is_debit:
                self._fail(layout, "transaction_code", f"{fmt.code} batches carry credits only", tc)

    def end_batch(self):
        """Close the batch; returns its computed control record."""
        b = self._batch
        if b is None:
            raise WriteError("end_batch called with no open batch")
        self._check_block()
        self.__dict__.pop("add_entry", None)  # the batch's adder goes with it
        if b.count == 0:
            raise WriteError([Issue(self.name, self.records + 1, None, "batch_control", None,
                                    "a batch must hold at least one entry")])
        h = b.header
        ctl = BATCH_CONTROL.make(
            service_class_code=h.service_class_code,
            entry_addenda_count=b.count,
            entry_hash=b.hash % _MAX_HASH,
            total_debit_amount=b.debit,
            total_credit_amount=b.credit,
            company_identification=h.company_identification,
            originating_dfi_identification=h.originating_dfi_identification,
            batch_number=h.batch_number,
        )
        self._emit(BATCH_CONTROL, ctl)
        self.entry_addenda_count += b.count
        self.entry_hash += b.hash
        self.total_debit += b.debit
        self.total_credit += b.credit
        self._batch = None
        return ctl

    def finish(self):
        """Write the file control and the 9-filler; returns the file control record."""
        if self._batch is not None:
            raise WriteError("finish called while a batch is open")
        if self._finished:
            raise WriteError("finish called twice")
        records = self.records + 1
        ctl = FILE_CONTROL.make(
            batch_count=self.batch_count,
            block_count=-(-records // 10),
            entry_addenda_count=self.entry_addenda_count,
            entry_hash=self.entry_hash % _MAX_HASH,
            total_debit_amount=self.total_debit,
            total_credit_amount=self.total_credit,
        )
        self._emit(FILE_CONTROL, ctl)
        filler = (-self.records) % 10
        if filler:
            self.sink.write((FILLER_LINE + "\n") * filler)
            self.records += filler
        self._finished = True
        return ctl


class _OpenBatch:
    __slots__ = ("header", "fmt", "odfi", "count", "hash", "debit", "credit", "last_trace", "rules", "render",
                 "max_amount", "cls", "plan", "line_format")

    def __init__(self, header, fmt):
        self.header = header
        self.fmt = fmt
        self.odfi = header.originating_dfi_identification
        self.count = 0
        self.hash = 0
        self.debit = 0
        self.credit = 0
        self.last_trace = ""
        self.rules: dict = {}
        self.render = fmt.entry.render
        self.cls = fmt.entry.record_class
        self.max_amount = fmt.max_amount_cents
        self.plan = plan_for(fmt.entry)
        self.line_format = line_format(fmt.entry)


_ADDERS: dict[int, object] = {}


def line_format(layout: Layout) -> str:
    """The %-format of a layout's record as a whole tuple: every field formatted to at least its
    width (text left-justified, numbers zero-filled, digit fields right-justified so that a short
    one shows spaces, reserved fields as spaces), so a line of exactly 94 characters proves every
    value had exactly its width."""
    specs = []
    for f in layout.fields:
        if f.kind == NUMBER:
            specs.append(f"%0{f.width}d")
        elif f.kind == TEXT:
            specs.append(f"%-{f.width}s")
        elif f.kind == BLANK:
            specs.append("%.0s" + " " * f.width)  # the value is not written
        else:
            specs.append(f"%{f.width}s")
    return "".join(specs)


def _adder_factory(layout: Layout):
    """A factory of `add_entry` functions for batches of this entry layout, compiled once.

    The adder buffers a plain entry, unchecked, for the block check (which formats it with
    `line_format` and checks the block column by column); anything else goes to `slow` (the record
    path) at once: addenda, another record type, a number field that is not an int, another field
    that is not a str."""
    fn = _ADDERS.get(id(layout))
    if fn is None:
        ints = [f"type(record[{i}]) is int" for i, f in enumerate(layout.fields) if f.kind == NUMBER]
        strs = [i for i, f in enumerate(layout.fields) if f.kind != NUMBER]
        src = "\n".join([
            "def factory(_cls, _slow, _recs, _size, _check):",
            "    _rappend = _recs.append",
            "    def add_entry(record, addenda=()):",
            "        if addenda or type(record) is not _cls or not (" + (" and ".join(ints) or "True") + "):",
            "            return _slow(record, addenda)",
            "        try:",
            "            _join(_strs(record))  # TypeError unless every other field is a str",
            "        except TypeError:",
            "            return _slow(record, addenda)",
            "        _rappend(record)",
            "        if len(_recs) >= _size:",
            "            _check()",
            "    return add_entry",
            "",
        ])
        ns: dict = {"_join": "".join, "_strs": itemgetter(*strs)}
        exec(compile(src, f"<layout {layout.name} adder>", "exec"), ns)
        fn = _ADDERS[id(layout)] = ns["factory"]
    return fn


def _write_model(w: FileWriter, f: NachaFile) -> None:
    for batch in f.batches:
        w.start_batch(batch.header)
        for e in batch.entries:
            w.add_entry(e.record, e.addenda)
        batch.control = w.end_batch()
    f.control = w.finish()


def format_file(f: NachaFile) -> str:
    """Render a whole file in memory (derived fields computed), re-checked by the strict reader."""
    from .reader import validate_file

    buf = io.StringIO()
    _write_model(FileWriter(buf, f.header), f)
    text = buf.getvalue()
    r = validate_file(text.encode("ascii"), "strict", name="<output>")
    if r.issues:
        raise WriteError(r.issues)
    return text


def write_file(path: str | os.PathLike, header, batches: Iterable[tuple[object, Iterable[Entry]]]) -> FileWriter:
    """Stream a file to `path` atomically: `batches` yields (batch_header, entries) pairs, entries
    being `Entry` objects or (record, addenda) pairs. Returns the finished writer (counts, totals)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".ach", dir=d)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii", newline="\n", buffering=1 << 20) as sink:
            w = FileWriter(sink, header, name=path)
            for bh, entries in batches:
                w.start_batch(bh)
                for e in entries:
                    if isinstance(e, Entry):
                        w.add_entry(e.record, e.addenda)
                    else:
                        w.add_entry(*e)
                w.end_batch()
            w.finish()
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return w


def write_nacha_file(path: str | os.PathLike, f: NachaFile) -> FileWriter:
    """Write an in-memory NachaFile to `path` atomically."""
    return write_file(path, f.header, ((b.header, b.entries) for b in f.batches))
