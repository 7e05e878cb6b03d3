"""Hypothesis strategies for NACHA records and files, derived from the layout tables.

`record(layout)` walks `layout.fields` and draws a value for each field from its kind and its
constraints (`fixed`, `allowed`, `required`, `check`, `blank_ok`), so a field or layout added to the
tables is covered without touching this module (`sensitive` fields get ordinary values; the round
trip checks they are masked in repr). `all_layouts()` finds every `Layout` object the
nacha package declares (module attributes of `nacha.layouts` and `nacha.layouts_other` when it
exists, and the layouts the SEC formats select). `debit_files()` builds whole valid debit files
(PPD, WEB, TEL) as a `NachaFile` together with what the reader must give back.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import date

from hypothesis import strategies as st

from nacha import layouts as L
from nacha import sec
from nacha.fields import (
    BLANK,
    CHECK_HHMM,
    CHECK_JULIAN,
    CHECK_MMDD,
    CHECK_MMYY,
    CHECK_YYMMDD,
    DIGITS,
    NUMBER,
    TEXT,
    Field,
    Layout,
)
from nacha.model import Batch, Entry, NachaFile
from nacha.routing import check_digit

# Printable ASCII (0x20-0x7E): the NACHA character set as the layouts check it.
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
DIGIT_CHARS = "0123456789"

LAYOUT_MODULES = ("nacha.layouts", "nacha.layouts_other")


# -- layouts --------------------------------------------------------------------------------------
def all_layouts() -> list[Layout]:
    """Every Layout object declared by the nacha package, each once, in a stable order."""
    found: dict[int, Layout] = {}

    def add(obj):
        if isinstance(obj, Layout):
            found.setdefault(id(obj), obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                add(v)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                add(v)

    for modname in LAYOUT_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:  # the module exists but is broken: that must fail loudly
                raise
            continue
        for attr in dir(mod):
            add(getattr(mod, attr))
    for fmt in sec.SEC_FORMATS.values():
        add(fmt.entry)
        add(fmt.forward_addenda)
        add(fmt.batch_control)
        add(fmt.file_control)
    return sorted(found.values(), key=lambda lay: lay.name)


# -- field values ---------------------------------------------------------------------------------
_DATES = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


def _digits_with_check(f: Field) -> st.SearchStrategy[str]:
    """Valid values of a DIGITS field that names a value check."""
    c = f.check
    if c == CHECK_YYMMDD:
        s = _DATES.map(lambda d: d.strftime("%y%m%d"))
    elif c == CHECK_MMDD:
        s = st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)).map(lambda d: d.strftime("%m%d"))
    elif c == CHECK_MMYY:
        s = st.tuples(st.integers(1, 12), st.integers(0, 99)).map(lambda t: f"{t[0]:02d}{t[1]:02d}")
    elif c == CHECK_HHMM:
        s = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda t: f"{t[0]:02d}{t[1]:02d}")
    elif c == CHECK_JULIAN:
        s = st.integers(1, 366).map(lambda n: f"{n:03d}")
    else:  # a check this module does not know yet: fail loudly rather than draw invalid values
        raise NotImplementedError(f"{f.name}: no strategy for check {c!r}; add one to tests/nacha_strategies.py")
    return s


def field_values(f: Field) -> st.SearchStrategy:
    """The values `Layout.parse` returns for valid text of this field."""
    if f.fixed is not None:
        return st.just(int(f.fixed) if f.kind == NUMBER else (f.fixed.rstrip() if f.kind == TEXT else f.fixed))
    if f.kind == BLANK:
        return st.just("")
    if f.kind == NUMBER:
        s = st.integers(0, 10 ** f.width - 1)
        if f.allowed is not None:
            s = st.sampled_from(sorted(int(a) for a in f.allowed))
        return s
    if f.kind == DIGITS:
        if f.allowed is not None:
            s = st.sampled_from(sorted(a for a in f.allowed if len(a) == f.width))
        elif f.check is not None:
            s = _digits_with_check(f)
        else:
            s = st.text(DIGIT_CHARS, min_size=f.width, max_size=f.width)
        if f.required:
            s = s.filter(lambda v: v.strip("0") != "")
        if f.blank_ok:
            s = st.one_of(st.just(""), s)
        return s
    if f.kind == TEXT:
        if f.allowed is not None:
            choices = sorted(a for a in f.allowed if len(a) <= f.width and a == a.rstrip())
            if f.required:
                choices = [a for a in choices if a.strip()]
            return st.sampled_from(choices)
        s = st.text(PRINTABLE, max_size=f.width).map(str.rstrip)
        if f.required:
            s = s.filter(lambda v: v.strip() != "")
        return s
    raise NotImplementedError(f"{f.name}: unknown kind {f.kind!r}")


def record(layout: Layout, **overrides) -> st.SearchStrategy:
    """Valid records of `layout`; an override is a value or a strategy for that field."""
    unknown = set(overrides) - set(layout.index)
    if unknown:
        raise TypeError(f"{layout.name}: unknown field(s) {sorted(unknown)}")
    parts = {}
    for f in layout.fields:
        if f.name in overrides:
            v = overrides[f.name]
            parts[f.name] = v if isinstance(v, st.SearchStrategy) else st.just(v)
        else:
            parts[f.name] = field_values(f)
    return st.fixed_dictionaries(parts).map(lambda d: layout.make(**d))


# -- routing numbers, traces ------------------------------------------------------------------------
rdfi_ids = st.text(DIGIT_CHARS, min_size=8, max_size=8)


def routing_numbers() -> st.SearchStrategy[str]:
    """Nine-digit ABA routing numbers with a valid check digit."""
    return rdfi_ids.map(lambda r: r + check_digit(r))


# -- whole files --------------------------------------------------------------------------------------
@dataclass
class FileCase:
    """A file to write and what the reader must give back."""

    model: NachaFile  # what we hand to the writer (derived fields left arbitrary)
    expected: NachaFile  # header, batch headers (batch numbers 1..n), entries, addenda as written
    batch_totals: list  # per batch: (entry_addenda_count, entry_hash, debit_cents, credit_cents)


# Debit transaction codes of this system: live 27/37, prenotes 28/38 (reference §1.12).
_LIVE = ("27", "37")
_PRENOTE = ("28", "38")
_SEC_DEBIT_FILES = ("PPD", "WEB", "TEL")


@st.composite
def debit_files(draw, max_batches: int = 3, max_entries: int = 6) -> FileCase:
    """Valid debit files: a file header, 1-3 batches (service class 225) of PPD/WEB/TEL debits to
    routing numbers with valid check digits, ascending traces with the ODFI prefix, optional
    addenda 05 on PPD and WEB entries."""
    odfi_routing = draw(routing_numbers())
    odfi = odfi_routing[:8]
    header = draw(record(L.FILE_HEADER, immediate_destination=" " + odfi_routing))
    n_batches = draw(st.integers(1, max_batches))
    seq = draw(st.integers(1, 1000))
    model_batches, expected_batches, totals = [], [], []
    for bi in range(n_batches):
        sec_code = draw(st.sampled_from(_SEC_DEBIT_FILES))
        fmt = sec.sec_format(sec_code)
        bh = draw(record(
            L.BATCH_HEADER,
            service_class_code="225",
            standard_entry_class_code=sec_code,
            originating_dfi_identification=odfi,
            originator_status_code=st.sampled_from(sorted(fmt.originator_status_codes)),
            effective_entry_date=_DATES.map(lambda d: d.strftime("%y%m%d")),
            batch_number=st.integers(0, 9_999_999),  # the writer assigns 1..n
        ))
        m_entries, x_entries = [], []
        count = hash_ = debit = 0
        for _ in range(draw(st.integers(1, max_entries))):
            seq += draw(st.integers(1, 50))
            trace = f"{odfi}{seq:07d}"
            prenote = draw(st.integers(0, 9)) == 0  # about one entry in ten is a prenote
            tc = draw(st.sampled_from(_PRENOTE if prenote else _LIVE))
            amount = 0 if prenote else draw(st.integers(1, 9_999_999_999))
            rdfi = draw(rdfi_ids)
            rec = draw(record(
                fmt.entry,
                transaction_code=tc,
                receiving_dfi_identification=rdfi,
                check_digit=check_digit(rdfi),
                amount=amount,
                trace_number=trace,
            ))
            addenda_in, addenda_out = [], []
            if fmt.max_forward_addenda and "05" in fmt.forward_addenda and draw(st.booleans()):
                a = draw(record(fmt.forward_addenda["05"]))
                addenda_in.append(a)
                addenda_out.append(a._replace(addenda_sequence_number=1, entry_detail_sequence_number=trace[-7:]))
            m_entries.append(Entry(rec, addenda_in))
            x_entries.append(Entry(rec._replace(addenda_record_indicator="1" if addenda_in else "0"), addenda_out))
            count += 1 + len(addenda_in)
            hash_ += int(rdfi)
            debit += amount
        model_batches.append(Batch(bh, m_entries))
        expected_batches.append(Batch(bh._replace(batch_number=bi + 1), x_entries))
        totals.append((count, hash_ % 10 ** 10, debit, 0))
    return FileCase(NachaFile(header, model_batches), NachaFile(header, expected_batches), totals)
