"""Round trips built from the layout tables: every record of every layout, whole debit files, and
every valid sample file we write (byte for byte)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples import examples

from nacha import FileWriter, format_file, read_file
from nacha.reader import BatchEnd, BatchStart, EntryItem, FileEnd, FileStart, Reader
try:
    from nacha_strategies import all_layouts, debit_files, record
except ModuleNotFoundError:  # pytest run without the repository root on sys.path
    from nacha_strategies import all_layouts, debit_files, record

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
LAYOUTS = all_layouts()


# -- records ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS, ids=[lay.name for lay in LAYOUTS])
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_record_round_trip(layout, data):
    rec = data.draw(record(layout))
    line = layout.format(rec)
    assert layout.parse(line) == rec
    assert layout.parse_tolerant(line) == rec
    assert layout.quick_ok(line) is True
    assert layout.problems(line) == []
    assert rec.to_line() == line
    assert layout.make(**rec._asdict()) == rec
    for f in layout.fields:  # sensitive values are masked in repr (all but the last four characters)
        v = getattr(rec, f.name)
        if (f.sensitive and len(v.strip()) > 4 and "*" not in v
                and v.strip() not in repr(rec._replace(**{f.name: ""}))):
            assert v.strip() not in repr(rec), f.name


# -- whole files --------------------------------------------------------------------------------------
def _records(text: str) -> list[str]:
    assert text.endswith("\n")
    return text[:-1].split("\n")


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=debit_files())
def test_file_round_trip(case):
    text = format_file(case.model)
    lines = _records(text)
    assert all(len(line) == 94 for line in lines)
    assert len(lines) % 10 == 0

    f = read_file(text.encode("ascii"))
    assert f.header == case.expected.header
    assert len(f.batches) == len(case.expected.batches)
    for got, want, (count, ehash, debit, credit) in zip(f.batches, case.expected.batches, case.batch_totals):
        assert got.header == want.header  # batch numbers 1..n assigned by the writer
        assert [e.record for e in got.entries] == [e.record for e in want.entries]
        assert [e.addenda for e in got.entries] == [e.addenda for e in want.entries]
        c = got.control
        assert (c.entry_addenda_count, c.entry_hash, c.total_debit_amount, c.total_credit_amount) == (
            count, ehash, debit, credit)
        assert c.batch_number == want.header.batch_number
        assert c.service_class_code == "225"
    fc = f.control
    assert fc.batch_count == len(case.batch_totals)
    assert fc.entry_addenda_count == sum(t[0] for t in case.batch_totals)
    assert fc.entry_hash == sum(t[1] for t in case.batch_totals) % 10 ** 10
    assert fc.total_debit_amount == sum(t[2] for t in case.batch_totals)
    assert fc.total_credit_amount == 0
    real = 2 + sum(2 + t[0] for t in case.batch_totals)  # header, control, and each batch's 5 + 6/7 + 8
    assert fc.block_count == -(-real // 10)
    assert lines[real:] == ["9" * 94] * (len(lines) - real)

    # write(parse(f)) == f, byte for byte
    assert format_file(f) == text


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=debit_files())
def test_streaming_writer_and_reader_agree_with_the_in_memory_ones(case):
    text = format_file(case.model)
    buf = io.StringIO()
    w = FileWriter(buf, case.model.header)
    for b in case.model.batches:
        w.start_batch(b.header)
        for e in b.entries:
            w.add_entry(e.record, e.addenda)
        w.end_batch()
    w.finish()
    assert buf.getvalue() == text

    r = Reader(io.BytesIO(text.encode("ascii")))
    kinds = []
    entries = []
    for item in r:
        kinds.append(type(item).__name__)
        if isinstance(item, EntryItem):
            entries.append((item.record, [a[1] for a in item.addenda]))
    assert r.issues == []
    assert kinds[0] == FileStart.__name__ and kinds[-1] == FileEnd.__name__
    assert kinds.count(BatchStart.__name__) == kinds.count(BatchEnd.__name__) == len(case.expected.batches)
    assert entries == [(e.record, e.addenda) for b in case.expected.batches for e in b.entries]


# -- sample files ----------------------------------------------------------------------------------------
def _strict_valid_samples() -> list[Path]:
    out = []
    for exp in sorted(SAMPLES.glob("*.expected.json")):
        meta = json.loads(exp.read_text())
        if meta["profile"] == "strict" and meta["valid"]:
            out.append(exp.with_name(exp.name.replace(".expected.json", ".ach")))
    return out


def test_the_strict_valid_samples_are_there():
    names = {p.name for p in _strict_valid_samples()}
    assert {"debits-web-ppd-tel.ach", "returns.ach", "nocs.ach"} <= names


@pytest.mark.parametrize("path", _strict_valid_samples(), ids=lambda p: p.name)
def test_sample_file_round_trips_byte_for_byte(path):
    data = path.read_bytes()
    f = read_file(data, "strict", name=path.name)
    assert format_file(f).encode("ascii") == data


# The bank profile's physical relaxations change only the framing: read leniently and written
# again, each such sample is returns.ach byte for byte.
PHYSICAL = ["bank-crlf.ach", "bank-missing-final-newline.ach", "bank-missing-filler.ach", "bank-trimmed-lines.ach",
            "bank-unbroken-records.ach", "bank-blank-lines.ach"]


@pytest.mark.parametrize("name", PHYSICAL)
def test_bank_sample_normalises_to_the_strict_file(name):
    f = read_file((SAMPLES / name).read_bytes(), "bank", name=name)
    assert format_file(f).encode("ascii") == (SAMPLES / "returns.ach").read_bytes()
