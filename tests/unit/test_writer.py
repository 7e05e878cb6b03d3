"""The writer computes every derived field and refuses invalid input before writing it.
Expected values are worked out here from the reference (§1.8-§1.10), never read back from nacha."""
from __future__ import annotations

import io
import os
import stat

import pytest

from nacha import FileWriter, WriteError, format_file, read_file, write_file, write_nacha_file
from nacha.layouts import (
    ADDENDA_05,
    BATCH_CONTROL,
    BATCH_HEADER,
    ENTRY_PPD,
    ENTRY_TEL,
    ENTRY_WEB,
    FILE_HEADER,
)
from nacha.model import Batch, Entry, NachaFile

ODFI = "02100002"
FILLER = "9" * 94


def header(**kw):
    base = dict(immediate_destination=" 021000021", immediate_origin="1987654321", file_creation_date="260116",
                file_creation_time="2215", file_id_modifier="A", immediate_destination_name="FIRST SYNTHETIC BANK",
                immediate_origin_name="COMMONWEALTH HIX")
    return FILE_HEADER.make(**{**base, **kw})


def bh(sec="PPD", **kw):
    base = dict(service_class_code="225", company_name="COMMONWEALTH HIX", company_identification="1987654321",
                standard_entry_class_code=sec, company_entry_description="PREMIUM", effective_entry_date="260120",
                originator_status_code="1", originating_dfi_identification=ODFI, batch_number=0)
    return BATCH_HEADER.make(**{**base, **kw})


def entry(seq=1, tc="27", rdfi="01100001", cd="5", amount=1000, layout=ENTRY_PPD, **kw):
    base = dict(transaction_code=tc, receiving_dfi_identification=rdfi, check_digit=cd,
                dfi_account_number="4417305529", amount=amount, individual_identification_number="M100234567",
                individual_name="ALICE EXAMPLE", trace_number=f"{ODFI}{seq:07d}")
    if layout in (ENTRY_WEB, ENTRY_TEL):
        base["payment_type_code"] = "S"
    return layout.make(**{**base, **kw})


def lines_of(text):
    assert text.endswith("\n")
    return text[:-1].split("\n")


# -- derived fields -------------------------------------------------------------------------------------
def test_derived_fields_of_a_small_file():
    # Deliberately wrong derived values in the input: the writer must replace all of them.
    e1 = entry(1, addenda_record_indicator="1")  # no addenda: must become 0
    e2 = entry(2, rdfi="23138010", cd="4", amount=2500, addenda_record_indicator="0")  # addenda: must become 1
    a2 = ADDENDA_05.make(payment_related_information="REF 1", addenda_sequence_number=7,
                         entry_detail_sequence_number="1234567")
    f = NachaFile(header(), [Batch(bh(batch_number=42), [Entry(e1), Entry(e2, [a2])]),
                             Batch(bh("WEB", batch_number=42), [Entry(entry(3, layout=ENTRY_WEB, amount=99))])])
    lines = lines_of(format_file(f))
    assert len(lines) == 10  # 1 + (1+3+1) + (1+1+1) + 1 = 10 records: no filler needed
    assert lines[2][78] == "0" and lines[3][78] == "1"
    assert lines[4][83:87] == "0001" and lines[4][87:94] == "0000002"
    assert lines[1][87:94] == "0000001" and lines[5][87:94] == "0000001"  # batch numbers 1, 2
    assert lines[6][87:94] == "0000002" and lines[8][87:94] == "0000002"
    # batch 1 control: 3 entry/addenda records, hash 01100001+23138010, debits 1000+2500
    assert lines[5][4:10] == "000003"
    assert lines[5][10:20] == "0024238011"
    assert lines[5][20:32] == "000000003500" and lines[5][32:44] == "000000000000"
    assert lines[5][44:54] == "1987654321" and lines[5][79:87] == ODFI
    # file control: 2 batches, 1 block, 4 records, hash 24238011+01100001, debits 3599
    fc = lines[9]
    assert fc[1:7] == "000002" and fc[7:13] == "000001" and fc[13:21] == "00000004"
    assert fc[21:31] == "0025338012" and fc[31:43] == "000000003599" and fc[43:55] == "000000000000"


@pytest.mark.parametrize("n_entries,records,blocks", [(1, 5, 1), (6, 10, 1), (7, 11, 2), (16, 20, 2), (17, 21, 3)])
def test_block_count_and_filler(n_entries, records, blocks):
    f = NachaFile(header(), [Batch(bh(), [Entry(entry(i + 1)) for i in range(n_entries)])])
    lines = lines_of(format_file(f))
    assert len(lines) == blocks * 10
    assert lines[records:] == [FILLER] * (blocks * 10 - records)
    assert lines[records - 1][0] == "9" and lines[records - 1] != FILLER
    assert int(lines[records - 1][7:13]) == blocks


def test_entry_hash_keeps_the_rightmost_10_digits():
    # 101 entries to RDFI 99999999 (check digit 9*3+9*7+9+9*3+9*7+9+9*3+9*7 = 288 -> 2):
    # 99999999 * 101 = 10,099,999,899 -> rightmost ten digits 0099999899.
    entries = [Entry(entry(i + 1, rdfi="99999999", cd="2")) for i in range(101)]
    f = NachaFile(header(), [Batch(bh(), entries[:60]), Batch(bh(), entries[60:])])
    lines = lines_of(format_file(f))
    ctl1, ctl2 = [ln for ln in lines if ln[0] == "8"]
    assert ctl1[10:20] == "5999999940"  # 99999999 * 60 = 5,999,999,940
    assert ctl2[10:20] == "4099999959"  # 99999999 * 41 = 4,099,999,959
    fc = next(ln for ln in lines if ln[0] == "9" and ln != FILLER)
    assert fc[21:31] == "0099999899"  # (5999999940 + 4099999959) mod 10^10
    assert read_file("".join(ln + "\n" for ln in lines).encode()).control.entry_hash == 99999899


def test_entry_hash_of_one_batch_over_ten_digits():
    entries = [Entry(entry(i + 1, rdfi="99999999", cd="2")) for i in range(101)]
    lines = lines_of(format_file(NachaFile(header(), [Batch(bh(), entries)])))
    assert next(ln for ln in lines if ln[0] == "8")[10:20] == "0099999899"


def test_streaming_writer_returns_the_controls_it_wrote():
    buf = io.StringIO()
    w = FileWriter(buf, header())
    assert w.start_batch(bh()) == 1
    w.add_entry(entry(1, amount=150))
    ctl = w.end_batch()
    assert ctl.layout is BATCH_CONTROL and ctl.total_debit_amount == 150 and ctl.batch_number == 1
    assert w.start_batch(bh()) == 2
    w.add_entry(entry(5, amount=50))
    w.end_batch()
    fctl = w.finish()
    assert (fctl.batch_count, fctl.block_count, fctl.entry_addenda_count, fctl.total_debit_amount) == (2, 1, 2, 200)
    assert len(lines_of(buf.getvalue())) == 10
    with pytest.raises(WriteError):
        w.finish()


# -- refusals -------------------------------------------------------------------------------------------------
REFUSALS = {
    "bad check digit": ([entry(1, cd="6")], "check_digit"),
    "descending trace": ([entry(2), entry(1)], "trace_number"),
    "equal traces": ([entry(1), entry(1)], "trace_number"),
    "trace without ODFI prefix": ([entry(1, trace_number="011000010000001")], "trace_number"),
    "credit in 225": ([entry(1, tc="22")], "transaction_code"),
    "non-zero prenote": ([entry(1, tc="28", amount=100)], "amount"),
    "text too long": ([entry(1, individual_name="X" * 23)], "individual_name"),
    "account too long": ([entry(1, dfi_account_number="1" * 18)], "dfi_account_number"),
    "negative amount": ([entry(1, amount=-1)], "amount"),
    "amount over 10 digits": ([entry(1, amount=10 ** 10)], "amount"),
    "float amount": ([entry(1, amount=10.5)], "amount"),
    "non-digit routing": ([entry(1, rdfi="0110000A")], "receiving_dfi_identification"),
    "unknown transaction code": ([entry(1, tc="99")], "transaction_code"),
    "wrong record type code": ([entry(1, record_type_code="7")], "record_type_code"),
    "control character in text": ([entry(1, individual_name="ALICE\x07")], "individual_name"),
}


@pytest.mark.parametrize("block", [1, FileWriter.block_size])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_add_entry_refuses_and_names_the_field_without_writing(case, block):
    # Plain entries are checked in blocks: the refusal comes at the latest from end_batch, and
    # with a block of one from the add_entry call itself.
    records, fld = REFUSALS[case]
    buf = io.StringIO()
    w = FileWriter(buf, header())
    w.block_size = block
    w.start_batch(bh())
    before = buf.getvalue()
    added = 0
    with pytest.raises(WriteError) as exc:
        for r in records:
            w.add_entry(r)
            added += 1
        w.end_batch()
    if block == 1:
        assert added == len(records) - 1, "with a block of one, the bad entry's own add_entry refuses it"
    assert buf.getvalue() == before, "a refused entry must not be written, not even in part"
    issues = exc.value.issues
    assert issues and any(i.field == fld for i in issues), [str(i) for i in issues]
    assert fld in str(exc.value)


def test_sensitive_value_is_masked_in_the_refusal():
    w = FileWriter(io.StringIO(), header())
    w.start_batch(bh())
    with pytest.raises(WriteError) as exc:
        w.add_entry(entry(1, dfi_account_number="123456789012345678"))
        w.end_batch()
    text = str(exc.value) + " ".join(str(i.value) for i in exc.value.issues)
    assert "123456789012345678" not in text


def test_wrong_record_type_is_refused():
    w = FileWriter(io.StringIO(), header())
    w.start_batch(bh())
    with pytest.raises(WriteError) as exc:
        w.add_entry(bh())  # a batch header where an entry belongs
    assert "entry_ppd" in str(exc.value)
    with pytest.raises(WriteError):
        FileWriter(io.StringIO(), bh())  # a batch header as the file header
    with pytest.raises(WriteError):
        w.add_entry(entry(1, layout=ENTRY_WEB))  # a WEB entry in a PPD batch


def test_web_entry_without_payment_type_is_refused():
    w = FileWriter(io.StringIO(), header())
    w.start_batch(bh("WEB"))
    with pytest.raises(WriteError) as exc:
        w.add_entry(entry(1, layout=ENTRY_WEB, payment_type_code=""))
        w.end_batch()
    assert any(i.field == "payment_type_code" for i in exc.value.issues)


def test_credit_in_tel_batch_is_refused_even_in_200():
    # TEL forward batches are debit-only (reference §1.4; MOOV-SRC batchTEL.go).
    w = FileWriter(io.StringIO(), header())
    w.start_batch(bh("TEL", service_class_code="200"))
    with pytest.raises(WriteError) as exc:
        w.add_entry(entry(1, layout=ENTRY_TEL, tc="22"))
        w.end_batch()
    assert any(i.field == "transaction_code" for i in exc.value.issues)


def test_header_problems_are_refused():
    with pytest.raises(WriteError) as exc:
        FileWriter(io.StringIO(), header(file_id_modifier="a"))
    assert any(i.field == "file_id_modifier" for i in exc.value.issues)
    w = FileWriter(io.StringIO(), header())
    with pytest.raises(WriteError) as exc:
        w.start_batch(bh(effective_entry_date="261332"))
    assert any(i.field == "effective_entry_date" for i in exc.value.issues)


def test_empty_batch_is_refused():
    w = FileWriter(io.StringIO(), header())
    w.start_batch(bh())
    with pytest.raises(WriteError):
        w.end_batch()


def test_format_file_refuses_an_invalid_model():
    f = NachaFile(header(), [Batch(bh(), [Entry(entry(2)), Entry(entry(1))])])
    with pytest.raises(WriteError) as exc:
        format_file(f)
    assert any(i.field == "trace_number" for i in exc.value.issues)


# -- write_file --------------------------------------------------------------------------------------------
def _listing(d):
    return sorted(os.listdir(d))


def test_write_file_writes_mode_0600_and_the_same_bytes_as_format_file(tmp_path):
    target = tmp_path / "out.ach"
    old = os.umask(0o022)
    try:
        w = write_file(target, header(), [(bh(), [Entry(entry(1)), (entry(2), [])])])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert _listing(tmp_path) == ["out.ach"]
    assert w.total_debit == 2000
    expected = format_file(NachaFile(header(), [Batch(bh(), [Entry(entry(1)), Entry(entry(2))])]))
    assert target.read_bytes() == expected.encode("ascii")


def test_write_nacha_file_mode_0600(tmp_path):
    target = tmp_path / "model.ach"
    write_nacha_file(target, NachaFile(header(), [Batch(bh(), [Entry(entry(1))])]))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_write_file_leaves_nothing_when_it_refuses(tmp_path, case):
    records, _ = REFUSALS[case]
    target = tmp_path / "out.ach"
    # Good entries first, so the refusal comes after bytes were already streamed.
    good = [Entry(entry(i + 1)) for i in range(3)]
    bad = [Entry(r._replace(trace_number=f"{ODFI}{int(r.trace_number[8:]) + 10:07d}")
                 if r.trace_number.startswith(ODFI) else r) for r in records]
    with pytest.raises(WriteError):
        write_file(target, header(), [(bh(), good), (bh(), bad)])
    assert _listing(tmp_path) == []


def test_write_file_refusal_keeps_an_existing_target_untouched(tmp_path):
    target = tmp_path / "out.ach"
    target.write_bytes(b"previous file\n")
    with pytest.raises(WriteError):
        write_file(target, header(), [(bh(), [Entry(entry(1, cd="0"))])])
    assert target.read_bytes() == b"previous file\n"
    assert _listing(tmp_path) == ["out.ach"]


def test_write_file_interrupted_by_a_failing_source_leaves_nothing(tmp_path):
    def batches():
        yield bh(), [Entry(entry(1))]
        raise RuntimeError("database went away")
    with pytest.raises(RuntimeError):
        write_file(tmp_path / "out.ach", header(), batches())
    assert _listing(tmp_path) == []
