"""Trace numbers are unique within a file, across batches (issue 16): the reader reports a trace
number an earlier batch used, on the record path and on the column-by-column path for long runs,
and keeps memory bounded (nacha.traces)."""
from __future__ import annotations

import pytest

from nacha.layouts import ENTRY_PPD
from nacha.model import Entry
from nacha.reader import Reader, validate_file
from nacha.traces import MAX_BYTES_PER_PREFIX, TraceSet

from test_sec_formats import batch_header, build, entry

DUP = "trace number already used by an earlier batch"


def ppd(seqs):
    return (batch_header("PPD"), [Entry(entry(ENTRY_PPD, s, individual_name="JANE DOE")) for s in seqs])


def duplicates(data: bytes, min_run: int) -> list:
    r = Reader(data, "strict")
    r.min_run = min_run
    for _ in r:
        pass
    return [i for i in r.issues if DUP in i.message]


@pytest.mark.parametrize("min_run", [0, Reader.MIN_RUN])
def test_a_trace_number_used_in_two_batches_is_reported(min_run):
    # batch 1: 1..10, batch 2: 11..19 and 5 again (ascending within the batch: 5 is last but sorted)
    data = build([ppd(range(1, 11)), ppd([5] + list(range(11, 20)))])
    dups = duplicates(data, min_run)
    assert len(dups) == 1
    (d,) = dups
    assert d.value == "121042880000005" and d.field == "trace_number"
    # line: file header 1, batch 1 header 2, 10 entries 3-12, control 13, batch 2 header 14, entry 15
    assert d.line == 15
    assert not validate_file(data, "bank").valid


@pytest.mark.parametrize("min_run", [0, Reader.MIN_RUN])
def test_a_duplicate_inside_a_long_run_with_gaps_is_found(min_run):
    data = build([ppd(range(2, 40, 2)), ppd(range(21, 41))])  # 22, 24, ... 38 used twice
    dups = duplicates(data, min_run)
    assert sorted(int(d.value[8:]) for d in dups) == list(range(22, 40, 2))


@pytest.mark.parametrize("min_run", [0, Reader.MIN_RUN])
def test_distinct_trace_numbers_across_batches_are_fine(min_run):
    data = build([ppd(range(1, 20)), ppd(range(20, 40)), ppd(range(100, 130, 3))])
    assert duplicates(data, min_run) == []
    assert validate_file(data, "strict").valid


def test_trace_set_memory_is_bounded_and_ranges_agree_with_single_adds():
    t = TraceSet()
    assert t.add("121042889999999")
    assert len(t.maps["12104288"]) == MAX_BYTES_PER_PREFIX == 1_250_000
    assert not t.add("121042889999999")
    assert t.add_range("12104288", 3, 21) and not t.add("121042880000010")
    assert not t.add_range("12104288", 21, 40)  # 21 seen: refused, nothing recorded
    assert t.add("121042880000022")
    small = TraceSet()
    assert small.add_range("02100002", 1, 1000)
    assert len(small.maps["02100002"]) <= 256  # grows with the highest number, not to the bound
    for p in range(40):
        small.add(f"{p:08d}0000001")
    assert small.overflow and len(small.maps) == 16
