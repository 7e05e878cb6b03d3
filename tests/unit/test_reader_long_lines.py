"""The reader on input with no line feeds (records run together, or one endless line): it reads in
fixed-size chunks and holds a bounded amount of text whatever the line structure, so its time is
linear in the size (issue 13: a 1.9 GB file with no newline never finished). Timings are not
asserted (benchmarks/bench_nacha_long_line.py prints them); memory is, structurally."""
from __future__ import annotations

import io
import tracemalloc
from datetime import date

import pytest

from nacha.layouts import BATCH_HEADER, ENTRY_WEB, FILE_HEADER
from nacha.reader import Reader, read_file, validate_file
from nacha.routing import check_digit
from nacha.writer import FileWriter

RDFI = "02100002"


def nacha_text(n: int) -> str:
    """A valid one-batch WEB debit file of `n` entries, one record per line."""
    fh = FILE_HEADER.make(immediate_destination=" 021000021", immediate_origin="1234567890",
                          file_creation_date="261130", file_creation_time="2300", file_id_modifier="A",
                          immediate_destination_name="TEST BANK", immediate_origin_name="HEALTH CONNECTOR")
    bh = BATCH_HEADER.make(service_class_code="225", company_name="HEALTH CONNECT",
                           company_identification="1234567890", standard_entry_class_code="WEB",
                           company_entry_description="PREMIUM", effective_entry_date="261201",
                           originator_status_code="1", originating_dfi_identification=RDFI, batch_number=1)
    sink = io.StringIO()
    w = FileWriter(sink, fh)
    w.start_batch(bh)
    for i in range(n):
        w.add_entry(ENTRY_WEB.make(
            transaction_code="27", receiving_dfi_identification=RDFI, check_digit=check_digit(RDFI),
            dfi_account_number=f"{i:012d}", amount=1000 + i, individual_identification_number=f"M{i:09d}",
            individual_name=f"MEMBER {i}", payment_type_code="S", trace_number=f"{RDFI}{i + 1:07d}"))
    w.end_batch()
    w.finish()
    return sink.getvalue()


class Recording(io.RawIOBase):
    """A read-only file over `data` that records the size of every read and, at each read, how many
    items the reader had yielded by then (`progress` is set by the consumer)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.reads: list[int] = []
        self.progress = 0
        self.items_at_read: list[tuple[int, int]] = []  # (bytes read before this read, items yielded)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.reads.append(n)
        self.items_at_read.append((self.pos, self.progress))
        end = len(self.data) if n is None or n < 0 else self.pos + n
        out = self.data[self.pos:end]
        self.pos += len(out)
        return out


@pytest.fixture(scope="module")
def lines() -> str:
    return nacha_text(60_000)  # about 5.6 MB


def test_records_run_together_read_as_the_same_records(lines):
    together = lines.replace("\n", "").encode("ascii")
    assert len(together) > 5 * Reader._LONG_LINE  # the long-line path, not the one-chunk one
    a = read_file(lines.encode("ascii"), "bank")
    b = read_file(together, "bank")
    assert len(b.batches[0].entries) == 60_000
    assert [e.record for e in b.batches[0].entries] == [e.record for e in a.batches[0].entries]
    assert b.control == a.control and b.header == a.header
    assert b.issues == [] and b.warnings == []


def test_run_together_with_crlf_ending_and_a_short_last_piece(lines):
    together = lines.replace("\n", "")
    ok = validate_file((together + "\r\n").encode("ascii"), "bank")
    assert ok.issues == [] and ok.summary.records == 60_000 + 4 + (len(together) // 94 - 60_004)
    short = validate_file((together + "X" * 10).encode("ascii"), "bank")
    msgs = [i.message for i in short.issues]
    assert any("record is 10 characters long, expected 94" in m and f"{len(together) + 10}-character line" in m
               for m in msgs), msgs


def test_strict_reports_one_long_line_with_its_full_length(lines):
    together = lines.replace("\n", "").encode("ascii")
    r = validate_file(together, "strict")
    first = r.issues[0]
    assert first.line == 1 and f"record is {len(together)} characters long, expected 94" in first.message
    assert "records run together" in first.message


def test_reads_in_fixed_chunks_and_keeps_up_with_what_it_read(lines):
    """Records come out while the file is being read: at every read, the records yielded account
    for all but a bounded amount of what was read before it (no waiting for a line feed that never
    comes, which held the whole file and copied it again at every chunk)."""
    together = lines.replace("\n", "").encode("ascii")
    src = Recording(together)
    r = Reader(src, "bank")
    for _ in r:
        src.progress = r._n
    assert set(src.reads) == {Reader._CHUNK}
    bound = Reader._LONG_LINE + 2 * Reader._CHUNK
    for read_before, records in src.items_at_read:
        assert read_before - records * 94 <= bound, (read_before, records)
    assert r.issues == []


@pytest.mark.parametrize("profile", ["bank", "strict"])
def test_memory_stays_bounded_on_a_file_without_line_feeds(profile):
    """Peak memory allocated while reading 24 MB with no line feed stays a few chunks, whatever the
    size (before: the whole line was held, then copied at every chunk)."""
    data = ("6" + "2" * 93).encode("ascii") * 260_000  # about 24 MB of one long line
    src = Recording(data)
    tracemalloc.start()
    try:
        r = Reader(src, profile)
        for _ in r:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * Reader._CHUNK, peak
    assert r.issues  # not a valid file: reported, not hung
