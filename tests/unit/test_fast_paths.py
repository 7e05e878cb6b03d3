"""The compiled hot paths agree with the slow, explanatory ones for every layout: the reader's
`parse_checked`/`parse_trusted` with `quick_ok` + `parse` (+ `problems`), and the writer's `render`
with `format` + `quick_ok` (+ `value_problems`). A line or record one path accepts, the other must."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples import examples

from nacha_strategies import PRINTABLE, all_layouts, record

LAYOUTS = all_layouts()
IDS = [layout.name for layout in LAYOUTS]


def _mutations():
    """(position, replacement) edits that break lines in the ways files break."""
    return st.lists(st.tuples(st.integers(0, 93), st.sampled_from(list(PRINTABLE) + ["\x00", "\xe9", "\r", "0", " "])),
                    min_size=0, max_size=3)


def _mutate(line: str, edits) -> str:
    chars = list(line)
    for pos, ch in edits:
        chars[pos] = ch
    return "".join(chars)


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), edits=_mutations())
def test_parse_checked_agrees_with_quick_ok_and_parse(layout, data, edits):
    rec = data.draw(record(layout))
    line = _mutate(layout.format(rec), edits)
    got = layout.parse_checked(line)
    if layout.quick_ok(line):
        assert got == layout.parse(line)
        assert layout.problems(line) == []
    else:
        assert got is None
        assert layout.problems(line), "the slow path must explain what the fast path refused"
    if len(line) == 94 and line.isascii() and line.isprintable():
        assert layout.parse_trusted(line) == got


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_render_agrees_with_format(layout, data):
    rec = data.draw(record(layout))
    assert layout.render(rec) == layout.format(rec)
    # A value too long for its field, or a number that does not fit, is refused.
    for i, f in enumerate(layout.fields):
        if f.fixed is not None:
            continue
        bad = list(rec)
        if f.kind == "N":
            bad[i] = 10 ** f.width
        elif f.kind == "B":
            continue
        else:
            bad[i] = "9" * (f.width + 1)
        bad = tuple.__new__(layout.record_class, bad)
        assert layout.render(bad) is None
        assert layout.value_problems(bad)
