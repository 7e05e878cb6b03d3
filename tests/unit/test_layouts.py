"""The layout tables: positions checked against the reference (typed in from
/work/shared/reference/nacha-and-premium-rules.md §1.2-§1.9, never computed from nacha), and, for
EVERY layout the package declares, properties derived from the table itself: a valid record
formats to 94 characters that parse back to it and pass `quick_ok` and `problems`; a field made
invalid is caught by both, and blamed on that field alone."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples import examples

from nacha import layouts as L
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
try:
    from nacha_strategies import all_layouts, record
except ModuleNotFoundError:  # pytest run without the repository root on sys.path
    from nacha_strategies import all_layouts, record

LAYOUTS = all_layouts()
IDS = [lay.name for lay in LAYOUTS]

# Reference §1.2-§1.9: (start, end) of every field, in order.
_ENTRY = [(1, 1), (2, 3), (4, 11), (12, 12), (13, 29), (30, 39), (40, 54), (55, 76), (77, 78), (79, 79), (80, 94)]
REFERENCE_POSITIONS = {
    "file_header": [(1, 1), (2, 3), (4, 13), (14, 23), (24, 29), (30, 33), (34, 34), (35, 37), (38, 39),
                    (40, 40), (41, 63), (64, 86), (87, 94)],
    "batch_header": [(1, 1), (2, 4), (5, 20), (21, 40), (41, 50), (51, 53), (54, 63), (64, 69), (70, 75),
                     (76, 78), (79, 79), (80, 87), (88, 94)],
    "entry_ppd": _ENTRY, "entry_web": _ENTRY, "entry_tel": _ENTRY, "entry_ccd": _ENTRY, "entry_cor": _ENTRY,
    "addenda_05": [(1, 1), (2, 3), (4, 83), (84, 87), (88, 94)],
    "addenda_98": [(1, 1), (2, 3), (4, 6), (7, 21), (22, 27), (28, 35), (36, 64), (65, 79), (80, 94)],
    "addenda_98_refused": [(1, 1), (2, 3), (4, 6), (7, 21), (22, 27), (28, 35), (36, 64), (65, 67), (68, 74),
                           (75, 79), (80, 94)],
    "addenda_99": [(1, 1), (2, 3), (4, 6), (7, 21), (22, 27), (28, 35), (36, 79), (80, 94)],
    "addenda_99_dishonored": [(1, 1), (2, 3), (4, 6), (7, 21), (22, 27), (28, 35), (36, 38), (39, 53),
                              (54, 56), (57, 58), (59, 79), (80, 94)],
    "addenda_99_contested": [(1, 1), (2, 3), (4, 6), (7, 21), (22, 27), (28, 35), (36, 38), (39, 53),
                             (54, 56), (57, 58), (59, 73), (74, 76), (77, 78), (79, 79), (80, 94)],
    "batch_control": [(1, 1), (2, 4), (5, 10), (11, 20), (21, 32), (33, 44), (45, 54), (55, 73), (74, 79),
                      (80, 87), (88, 94)],
    "file_control": [(1, 1), (2, 7), (8, 13), (14, 21), (22, 31), (32, 43), (44, 55), (56, 94)],
}

# Fields the rest of the system (and the tests) address by name, at their reference positions.
REFERENCE_NAMED = {
    "file_header": {"file_creation_date": (24, 29), "file_id_modifier": (34, 34), "immediate_destination": (4, 13)},
    "batch_header": {"service_class_code": (2, 4), "standard_entry_class_code": (51, 53),
                     "company_entry_description": (54, 63), "effective_entry_date": (70, 75),
                     "originating_dfi_identification": (80, 87), "batch_number": (88, 94)},
    "entry_web": {"transaction_code": (2, 3), "receiving_dfi_identification": (4, 11), "check_digit": (12, 12),
                  "dfi_account_number": (13, 29), "amount": (30, 39), "payment_type_code": (77, 78),
                  "addenda_record_indicator": (79, 79), "trace_number": (80, 94)},
    "addenda_98": {"change_code": (4, 6), "original_entry_trace_number": (7, 21), "corrected_data": (36, 64)},
    "addenda_99": {"return_reason_code": (4, 6), "original_entry_trace_number": (7, 21),
                   "original_receiving_dfi_identification": (28, 35)},
    "batch_control": {"entry_addenda_count": (5, 10), "entry_hash": (11, 20), "total_debit_amount": (21, 32),
                      "total_credit_amount": (33, 44)},
    "file_control": {"batch_count": (2, 7), "block_count": (8, 13), "entry_addenda_count": (14, 21),
                     "entry_hash": (22, 31), "total_debit_amount": (32, 43), "total_credit_amount": (44, 55)},
}


def test_discovery_finds_every_layout_of_the_reference():
    names = {lay.name for lay in LAYOUTS}
    assert set(REFERENCE_POSITIONS) <= names, set(REFERENCE_POSITIONS) - names
    # Every Layout attribute of nacha.layouts is among them (the loop is not hand-maintained).
    for attr in dir(L):
        obj = getattr(L, attr)
        if isinstance(obj, Layout):
            assert obj in LAYOUTS, attr


@pytest.mark.parametrize("name", sorted(REFERENCE_POSITIONS))
def test_positions_match_the_reference(name):
    lay = next(lay for lay in LAYOUTS if lay.name == name)
    assert [(f.start, f.end) for f in lay.fields] == REFERENCE_POSITIONS[name]


@pytest.mark.parametrize("name", sorted(REFERENCE_NAMED))
def test_named_fields_sit_where_the_reference_puts_them(name):
    lay = next(lay for lay in LAYOUTS if lay.name == name)
    for fname, cols in REFERENCE_NAMED[name].items():
        assert lay.by_name[fname].columns == cols, fname


def test_account_and_corrected_data_are_sensitive():
    for lay in LAYOUTS:
        if "dfi_account_number" in lay.by_name:
            assert lay.by_name["dfi_account_number"].sensitive, lay.name
        if "corrected_data" in lay.by_name:
            assert lay.by_name["corrected_data"].sensitive, lay.name


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_table_covers_1_to_94_without_gap_or_overlap(layout):
    pos = 1
    for f in layout.fields:
        assert f.start == pos, f.name
        assert f.end >= f.start
        pos = f.end + 1
    assert pos == 95
    assert len({f.name for f in layout.fields}) == len(layout.fields), "field names must be unique"


def test_a_table_with_a_gap_is_refused_at_import():
    with pytest.raises(AssertionError):
        Layout("broken", [Field("a", 1, 10), Field("b", 12, 94)])
    with pytest.raises(AssertionError):
        Layout("short", [Field("a", 1, 93)])


def test_a_sensitive_value_is_masked_in_repr():
    rec = L.ENTRY_WEB.make(dfi_account_number="9876543210123")
    assert "9876543210123" not in repr(rec)
    assert "0123" in repr(rec)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_maker_is_make_with_the_named_fields_by_position(layout):
    names = tuple(f.name for f in layout.fields if f.fixed is None)[::-1][:5]
    values = [f"v{i}" for i in range(len(names))]
    assert layout.maker(*names)(*values) == layout.make(**dict(zip(names, values)))
    assert layout.maker(*names) is layout.maker(*names)  # compiled once
    assert layout.maker()() == layout.make()
    with pytest.raises(ValueError, match="not its fields"):
        layout.maker("no_such_field")
    with pytest.raises(ValueError, match="given twice"):
        layout.maker(names[0], names[0])


# -- properties derived from the table, for every layout --------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_record_formats_to_94_characters_that_pass_validation(layout, data):
    rec = data.draw(record(layout))
    line = layout.format(rec)
    assert len(line) == 94
    assert layout.value_problems(rec) == []
    assert layout.quick_ok(line) is True
    assert [p.message for p in layout.problems(line)] == []


_BAD_CHECK = {CHECK_YYMMDD: "991332", CHECK_MMDD: "1301", CHECK_MMYY: "1399", CHECK_HHMM: "2460", CHECK_JULIAN: "367"}


def _invalid_raw(f: Field, draw) -> str | None:
    """A raw value for `f` (exactly its width) that the table says is invalid; None if every
    value of that width is valid (a free text field accepts any printable character)."""
    w = f.width
    if f.fixed is not None:
        i = draw(st.integers(0, w - 1))
        c = f.fixed[i]
        other = "0" if c != "0" else "1"
        return f.fixed[:i] + other + f.fixed[i + 1:]
    if f.kind == BLANK:
        i = draw(st.integers(0, w - 1))
        return " " * i + "X" + " " * (w - i - 1)
    if f.kind in (NUMBER, DIGITS):
        choice = draw(st.sampled_from(["letter", "check", "allowed"]))
        if choice == "check" and f.check is not None:
            return _BAD_CHECK[f.check]
        if choice == "allowed" and f.allowed is not None:
            for n in range(10 ** w):
                v = f"{n:0{w}d}"
                if v not in f.allowed:
                    return v
        i = draw(st.integers(0, w - 1))
        return "0" * i + "O" + "0" * (w - i - 1)  # letter O among zeros: the classic '00001O0000'
    if f.kind == TEXT:
        if f.allowed is not None:
            return "~".ljust(w)
        if f.required:
            return " " * w
        i = draw(st.integers(0, w - 1))
        return " " * i + "\x01" + " " * (w - i - 1)  # a control character
    raise AssertionError(f.kind)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_invalid_field_is_caught_and_blamed_on_that_field(layout, data):
    rec = data.draw(record(layout))
    f = data.draw(st.sampled_from(layout.fields))
    raw = _invalid_raw(f, data.draw)
    assert raw is not None and len(raw) == f.width
    line = layout.format(rec)
    line = line[:f.start - 1] + raw + line[f.end:]
    assert len(line) == 94
    assert layout.quick_ok(line) is False
    probs = layout.problems(line)
    assert probs, f"{layout.name}.{f.name}: {raw!r} not reported"
    assert {p.field.name for p in probs} == {f.name}
    assert all(p.message for p in probs)
    if f.sensitive:
        assert all(raw.strip() not in (p.message + str(p.value)) or len(raw.strip()) <= 4 for p in probs)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@settings(max_examples=examples(30), deadline=None)
@given(data=st.data(), cut=st.integers(0, 93))
def test_short_line_is_reported_on_the_cut_fields_only(layout, data, cut):
    line = layout.format(data.draw(record(layout)))[:cut]
    assert layout.quick_ok(line) is False
    probs = layout.problems(line)
    assert probs and all(p.field.end > cut for p in probs)
    assert any(p.field.start <= cut + 1 <= p.field.end for p in probs)
