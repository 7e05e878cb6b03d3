"""The SEC codes beyond PPD/WEB/TEL/CCD/COR: for each, a well-formed file reads with its fields
landing where /work/shared/reference/nacha-other-sec-codes.md puts them ("other-sec §x"), and a
rule of its own is enforced, located on the right record and field. Files are built here from
records made with the layouts' `make` (controls computed by `build`, as the writer does); the
positions asserted are typed in from the reference, never read from the layouts."""
from __future__ import annotations

import io

import pytest

from nacha import sec
from nacha.layouts import ADDENDA_05, ADDENDA_99, BATCH_HEADER, ENTRY_PPD, ENTRY_WEB, FILE_HEADER
from nacha.layouts_other import (
    ADDENDA_02,
    ADDENDA_02_MTE,
    ENTRY_ACK,
    ENTRY_ADV,
    ENTRY_ARC,
    ENTRY_ATX,
    ENTRY_BOC,
    ENTRY_CIE,
    ENTRY_CTX,
    ENTRY_DNE,
    ENTRY_ENR,
    ENTRY_MTE,
    ENTRY_POP,
    ENTRY_POS,
    ENTRY_RCK,
    ENTRY_SHR,
    ENTRY_TRC,
    ENTRY_TRX,
    ENTRY_XCK,
)
from nacha.model import Entry
from nacha.reader import read_file, validate_file
from nacha.writer import FileWriter

ODFI = "12104288"
RDFI, RDFI_CD = "23138010", "4"  # 231380104: a valid routing number
SEC_CODES_COVERED = ("ACK", "ADV", "ARC", "ATX", "BOC", "CIE", "CTX", "DNE", "ENR", "MTE", "POP", "POS",
                     "RCK", "SHR", "TRC", "TRX", "XCK")


# -- building files ------------------------------------------------------------------------------------
def file_header():
    return FILE_HEADER.make(immediate_destination=" 231380104", immediate_origin="1210428821",
                            file_creation_date="260116", file_creation_time="2215", file_id_modifier="A",
                            immediate_destination_name="FIRST SYNTHETIC BANK", immediate_origin_name="ACME")


def batch_header(sec_code, scc="225", **kw):
    values = dict(service_class_code=scc, company_name="ACME CORP", company_identification="1210428821",
                  standard_entry_class_code=sec_code, company_entry_description="PAYMENT",
                  effective_entry_date="260120", originator_status_code="1",
                  originating_dfi_identification=ODFI)
    values.update(kw)
    return BATCH_HEADER.make(**values)


def entry(layout, seq, tc="27", amount=12345, **fields):
    values = dict(transaction_code=tc, receiving_dfi_identification=RDFI, check_digit=RDFI_CD,
                  dfi_account_number="987654321", amount=amount)
    if "trace_number" in layout.index:
        values["trace_number"] = f"{ODFI}{seq:07d}"
    values.update(fields)
    return layout.make(**values)


def addenda_02(layout=ADDENDA_02, **fields):
    values = dict(terminal_identification_code="TERM02", transaction_serial_number="100049",
                  transaction_date="0614", terminal_location="200 MAIN STREET", terminal_city="BOSTON",
                  terminal_state="MA")
    if layout is ADDENDA_02_MTE:
        values.update(transaction_description="CHK-WDL", transaction_time="143015")
    else:
        values.update(reference_information_1="REFONE", authorization_code_or_card_expiration_date="A1B2C3")
    values.update(fields)
    return layout.make(**values)


def addenda_05(text="REMITTANCE"):
    return ADDENDA_05.make(payment_related_information=text)


def build(batches, derive_addenda=True) -> bytes:
    """A whole file from (batch header, [Entry]) pairs. Derived fields are computed as the writer
    computes them: addenda record indicator, addenda 05 sequence numbers and entry detail sequence
    numbers, addenda 02/98/99 traces (unless derive_addenda is False), batch numbers, controls in
    the SEC format's layouts, block count, 9-filler."""
    from nacha import codes

    lines = [file_header().to_line()]
    file_fmt = None
    n_batches = count_f = hash_f = debit_f = credit_f = 0
    for bi, (bh, entries) in enumerate(batches, 1):
        fmt = sec.batch_format(bh.standard_entry_class_code, bh.company_name)
        file_fmt = file_fmt or fmt
        bh = bh._replace(batch_number=bi)
        lines.append(bh.to_line())
        count = hash_ = debit = credit = 0
        for e in entries:
            rec = e.record._replace(addenda_record_indicator="1" if e.addenda else "0")
            lines.append(rec.to_line())
            trace = rec.trace_number if "trace_number" in rec.layout.index else None
            seq = 0
            for a in e.addenda:
                if derive_addenda and a.addenda_type_code == "05":
                    seq += 1
                    a = a._replace(addenda_sequence_number=seq, entry_detail_sequence_number=trace[-7:])
                elif derive_addenda and "trace_number" in a.layout.index:
                    a = a._replace(trace_number=trace)
                lines.append(a.to_line())
            count += 1 + len(e.addenda)
            hash_ += int(rec.receiving_dfi_identification)
            if codes.transaction_code(rec.transaction_code).is_debit:
                debit += rec.amount
            else:
                credit += rec.amount
        ctl = dict(service_class_code=bh.service_class_code, entry_addenda_count=count,
                   entry_hash=hash_ % 10 ** 10, total_debit_amount=debit, total_credit_amount=credit,
                   originating_dfi_identification=bh.originating_dfi_identification, batch_number=bi)
        if "company_identification" in fmt.batch_control.index:
            ctl["company_identification"] = bh.company_identification
        lines.append(fmt.batch_control.make(**ctl).to_line())
        n_batches += 1
        count_f += count
        hash_f += hash_
        debit_f += debit
        credit_f += credit
    records = len(lines) + 1
    lines.append(file_fmt.file_control.make(
        batch_count=n_batches, block_count=-(-records // 10), entry_addenda_count=count_f,
        entry_hash=hash_f % 10 ** 10, total_debit_amount=debit_f, total_credit_amount=credit_f).to_line())
    lines += ["9" * 94] * ((-len(lines)) % 10)
    return ("\n".join(lines) + "\n").encode("ascii")


def one_batch(bh, *entries) -> bytes:
    return build([(bh, list(entries))])


def issues(data: bytes, profile="strict"):
    return validate_file(data, profile, name="t.ach").issues


def where(data: bytes, profile="strict"):
    """(line, record, field) of every issue."""
    return {(i.line, i.record, i.field) for i in issues(data, profile)}


def lines(data: bytes) -> list[str]:
    return data.decode("ascii").split("\n")


def read_ok(data: bytes):
    found = issues(data)
    assert found == [], [str(i) for i in found]
    return read_file(data, "strict", name="t.ach")


# -- the coverage of this module -------------------------------------------------------------------
def test_every_other_sec_code_is_registered_and_covered_here():
    registered = set(sec.SEC_FORMATS) - {"PPD", "WEB", "TEL", "CCD", "COR", "IAT"}
    assert registered == set(SEC_CODES_COVERED)
    for code in SEC_CODES_COVERED:
        assert any(name.startswith(f"test_{code.lower()}_") for name in globals()), code


# -- ACK (other-sec §4.2) --------------------------------------------------------------------------------
def ack_file(**kw):
    e = entry(ENTRY_ACK, 1, tc="24", amount=0, original_entry_trace_number="031300010000001",
              receiving_company_name="ACME SUPPLY", **kw)
    return one_batch(batch_header("ACK", "220"), Entry(e))


def test_ack_reads_the_original_trace_from_40_54():
    data = ack_file()
    f = read_ok(data)
    rec = f.batches[0].entries[0].record
    assert lines(data)[2][39:54] == "031300010000001"
    assert rec.original_entry_trace_number == "031300010000001"
    assert rec.receiving_company_name == "ACME SUPPLY"  # 55-76
    assert rec.layout.name == "entry_ack"


def test_ack_amount_must_be_zero_and_code_24_or_34():
    data = one_batch(batch_header("ACK", "220"), Entry(entry(
        ENTRY_ACK, 1, tc="22", amount=100, original_entry_trace_number="031300010000001",
        receiving_company_name="ACME SUPPLY")))
    assert {(3, "entry_ack", "amount"), (3, "entry_ack", "transaction_code")} <= where(data)


def test_ack_service_class_200_is_taken_225_is_not():
    bh = batch_header("ACK", "200")
    e = Entry(entry(ENTRY_ACK, 1, tc="24", amount=0, original_entry_trace_number="031300010000001",
                    receiving_company_name="ACME SUPPLY"))
    assert issues(one_batch(bh, e)) == []
    assert (2, "batch_header", "service_class_code") in where(one_batch(bh._replace(service_class_code="225"), e))


# -- ATX (other-sec §4.3) --------------------------------------------------------------------------------
def atx_entry(n_addenda_field=1, addenda=1):
    e = entry(ENTRY_ATX, 1, tc="34", amount=0, original_entry_trace_number="031300010000007",
              number_of_addenda_records=n_addenda_field, receiving_company_name="RECEIVER CO")
    return Entry(e, [addenda_05("REF*TN*1234\\")] * addenda)


def test_atx_reads_the_corporate_layout():
    data = one_batch(batch_header("ATX", "220"), atx_entry())
    rec = read_ok(data).batches[0].entries[0].record
    line = lines(data)[2]
    assert line[54:58] == "0001" and rec.number_of_addenda_records == 1
    assert line[58:74] == "RECEIVER CO     " and rec.receiving_company_name == "RECEIVER CO"
    assert rec.original_entry_trace_number == "031300010000007"


def test_atx_addenda_count_must_match_and_one_addenda_at_most():
    assert (3, "entry_atx", "number_of_addenda_records") in where(
        one_batch(batch_header("ATX", "220"), atx_entry(n_addenda_field=2, addenda=1)))
    # NACHA: one optional addenda (NR OR185); moov allows 9,999 (other-sec §7 #14).
    assert (3, "entry_atx", "addenda_record_indicator") in where(
        one_batch(batch_header("ATX", "220"), atx_entry(n_addenda_field=2, addenda=2)))


# -- ADV (other-sec §4.1) --------------------------------------------------------------------------------
def adv_entry(seq, tc, amount):
    return Entry(entry(ENTRY_ADV, seq, tc=tc, amount=amount, dfi_account_number="744-5678-99",
                       advice_routing_number="121042882", file_identification="11131",
                       individual_name="FIRST SYNTHETIC BANK", ach_operator_routing_number="01100001",
                       julian_date="050", sequence_number=seq))


def adv_header(**kw):
    values = dict(originator_status_code="0", company_entry_description="ACCOUNTING")
    values.update(kw)
    return batch_header("ADV", "280", **values)


def test_adv_reads_its_entry_batch_control_and_file_control():
    data = one_batch(adv_header(), adv_entry(1, "81", 50000), adv_entry(2, "84", 250000))
    f = read_ok(data)
    rec = f.batches[0].entries[0].record
    ls = lines(data)
    assert ls[2][12:27] == "744-5678-99    " and rec.dfi_account_number == "744-5678-99"  # 13-27
    assert ls[2][27:39] == "000000050000" and rec.amount == 50000  # 28-39, 12 digits
    assert rec.advice_routing_number == "121042882" and rec.julian_date == "050" and rec.sequence_number == 1
    assert not hasattr(rec, "trace_number")
    ctl = f.batches[0].control
    assert ls[4][20:40] == "00000000000000250000" and ctl.total_debit_amount == 250000  # 84 is a debit
    assert ls[4][40:60] == "00000000000000050000" and ctl.total_credit_amount == 50000  # 81 a credit
    assert ls[5][31:51] == "00000000000000250000" and f.control.total_debit_amount == 250000  # file 32-51
    assert f.control.layout.name == "file_control_adv"


def test_adv_originator_status_code_must_be_0_and_codes_81_to_88():
    data = one_batch(adv_header(originator_status_code="1"), adv_entry(1, "81", 50000))
    assert (2, "batch_header", "originator_status_code") in where(data)
    assert (3, "entry_adv", "transaction_code") in where(one_batch(adv_header(), adv_entry(1, "27", 50000)))


def test_adv_entries_carry_no_addenda():
    a = ADDENDA_99.make(return_reason_code="R01", original_entry_trace_number="021000020000001",
                        original_receiving_dfi_identification=RDFI)
    data = build([(adv_header(), [Entry(adv_entry(1, "81", 50000).record, [a])])], derive_addenda=False)
    assert (4, "addenda", "addenda_type_code") in where(data)


def test_adv_batches_cannot_share_a_file_with_other_sec_codes():
    ppd = (batch_header("PPD"), [Entry(entry(ENTRY_PPD, 1, individual_name="JANE DOE"))])
    data = build([(adv_header(), [adv_entry(1, "81", 50000)]), ppd])
    assert (5, "batch_header", "standard_entry_class_code") in where(data)


# -- ARC, BOC (other-sec §4.5, §4.6) ---------------------------------------------------------------------
def test_arc_reads_the_check_serial_number_from_40_54():
    data = one_batch(batch_header("ARC"), Entry(entry(ENTRY_ARC, 1, check_serial_number="123879654",
                                                      individual_name="ABC COMPANY")))
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][39:54] == "123879654      " and rec.check_serial_number == "123879654"
    assert rec.individual_name == "ABC COMPANY"


@pytest.mark.parametrize("amount, ok", [(2_500_000, True), (2_500_001, False)])
def test_arc_amount_over_25000_dollars_is_rejected(amount, ok):
    data = one_batch(batch_header("ARC"), Entry(entry(ENTRY_ARC, 1, amount=amount, check_serial_number="1001")))
    assert ((3, "entry_arc", "amount") not in where(data)) == ok
    assert (issues(data) == []) == ok


def test_arc_check_serial_all_zeros_and_credits_are_rejected():
    data = one_batch(batch_header("ARC", "200"),
                     Entry(entry(ENTRY_ARC, 1, check_serial_number="000000000000000")),
                     Entry(entry(ENTRY_ARC, 2, tc="22", check_serial_number="1002")))
    assert {(3, "entry_arc", "check_serial_number"), (4, "entry_arc", "transaction_code")} <= where(data)


def test_boc_reads_like_arc():
    data = one_batch(batch_header("BOC"), Entry(entry(ENTRY_BOC, 1, check_serial_number="5550001")))
    rec = read_ok(data).batches[0].entries[0].record
    assert rec.layout.name == "entry_boc" and rec.check_serial_number == "5550001"


def test_boc_blank_check_serial_number_is_rejected():
    data = one_batch(batch_header("BOC"), Entry(entry(ENTRY_BOC, 1, check_serial_number="")))
    assert where(data) == {(3, "entry_boc", "check_serial_number")}


# -- POP (other-sec §4.7) --------------------------------------------------------------------------------
def pop_entry(seq=1, **kw):
    values = dict(check_serial_number="123456789", terminal_city="PHIL", terminal_state="PA",
                  individual_name="WADE ARNOLD")
    values.update(kw)
    return Entry(entry(ENTRY_POP, seq, **values))


def test_pop_reads_serial_city_and_state_from_40_54():
    data = one_batch(batch_header("POP"), pop_entry())
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][39:54] == "123456789PHILPA"
    assert (rec.check_serial_number, rec.terminal_city, rec.terminal_state) == ("123456789", "PHIL", "PA")


def test_pop_terminal_state_must_be_a_us_state_and_amount_at_most_25000():
    assert (3, "entry_pop", "terminal_state") in where(one_batch(batch_header("POP"), pop_entry(terminal_state="ZZ")))
    assert (3, "entry_pop", "amount") in where(one_batch(batch_header("POP"), pop_entry(amount=2_600_000)))
    assert (3, "entry_pop", "terminal_city") in where(one_batch(batch_header("POP"), pop_entry(terminal_city="")))


# -- RCK, XCK (other-sec §4.8, §4.9) ---------------------------------------------------------------------
def rck_file(description="REDEPCHECK", amount=2400):
    return one_batch(batch_header("RCK", company_entry_description=description),
                     Entry(entry(ENTRY_RCK, 1, amount=amount, check_serial_number="123123123",
                                 individual_name="WADE ARNOLD")))


def test_rck_reads():
    rec = read_ok(rck_file()).batches[0].entries[0].record
    assert rec.check_serial_number == "123123123" and rec.individual_name == "WADE ARNOLD"


def test_rck_description_must_be_redepcheck():
    assert where(rck_file(description="PAYMENT")) == {(2, "batch_header", "company_entry_description")}


@pytest.mark.parametrize("amount, ok", [(249_999, True), (250_000, False)])
def test_rck_amount_must_be_less_than_2500_dollars(amount, ok):
    # NR OR17 §2.5.13.3(d): less than $2,500; moov accepts exactly $2,500.00 (other-sec §7 #4).
    assert (issues(rck_file(amount=amount)) == []) == ok


def xck_file(**kw):
    values = dict(check_serial_number="123879654", process_control_field="CHECK1",
                  item_research_number="1182726", amount=100000)
    values.update(kw)
    bh = batch_header("XCK", company_name="CHECK DESTROYED", company_entry_description="NO CHECK")
    return one_batch(bh, Entry(entry(ENTRY_XCK, 1, **values)))


def test_xck_reads_process_control_and_item_research_number():
    data = xck_file()
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][54:60] == "CHECK1" and rec.process_control_field == "CHECK1"
    assert lines(data)[2][60:76] == "1182726         " and rec.item_research_number == "1182726"  # 61-76


def test_xck_requires_its_reserved_names_and_item_research_number():
    assert where(xck_file(item_research_number="")) == {(3, "entry_xck", "item_research_number")}
    data = one_batch(batch_header("XCK"), Entry(entry(ENTRY_XCK, 1, check_serial_number="1",
                                                      process_control_field="P", item_research_number="R")))
    assert where(data) == {(2, "batch_header", "company_name"), (2, "batch_header", "company_entry_description")}
    assert where(xck_file(amount=250_000)) == {(3, "entry_xck", "amount")}


# -- TRC, TRX (other-sec §4.10, §4.11) -------------------------------------------------------------------
def test_trc_reads_its_fields():
    data = one_batch(batch_header("TRC"), Entry(entry(
        ENTRY_TRC, 1, check_serial_number="123879654", process_control_field="CHECK1",
        item_research_number="1182726", item_type_indicator="01")))
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][76:78] == "01" and rec.item_type_indicator == "01"
    assert rec.process_control_field == "CHECK1" and rec.item_research_number == "1182726"


def test_trc_debits_only_and_process_control_required():
    data = one_batch(batch_header("TRC", "200"), Entry(entry(
        ENTRY_TRC, 1, tc="22", process_control_field="", item_research_number="1182726")))
    assert where(data) == {(3, "entry_trc", "transaction_code"), (3, "entry_trc", "process_control_field")}


def trx_entry(count=2, addenda=2):
    e = entry(ENTRY_TRX, 1, identification_number="45689033", number_of_addenda_records=count,
              receiving_company_name="RECEIVER COMPANY", item_type_indicator="01")
    return Entry(e, [addenda_05(f"CHECK {i}") for i in range(addenda)])


def test_trx_reads_with_its_addenda():
    data = one_batch(batch_header("TRX"), trx_entry())
    e = read_ok(data).batches[0].entries[0]
    assert e.record.number_of_addenda_records == 2 and len(e.addenda) == 2
    assert [a.addenda_sequence_number for a in e.addenda] == [1, 2]


def test_trx_needs_addenda_and_a_matching_count():
    assert where(one_batch(batch_header("TRX"), trx_entry(count=0, addenda=0))) == {
        (3, "entry_trx", "addenda_record_indicator")}
    assert where(one_batch(batch_header("TRX"), trx_entry(count=3, addenda=2))) == {
        (3, "entry_trx", "number_of_addenda_records")}


# -- CTX (other-sec §4.12) -------------------------------------------------------------------------------
def ctx_entry(tc="22", amount=100000, addenda=2, count=None):
    e = entry(ENTRY_CTX, 1, tc=tc, amount=amount, identification_number="INV-0001",
              number_of_addenda_records=addenda if count is None else count,
              receiving_company_name="RECEIVER COMPANY")
    return Entry(e, [addenda_05("BPR*C*1000*C*ACH\\"), addenda_05("RMR*IV*0001**1000\\")][:addenda])


def test_ctx_reads_the_corporate_layout():
    data = one_batch(batch_header("CTX", "220"), ctx_entry())
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][54:58] == "0002" and rec.number_of_addenda_records == 2
    assert lines(data)[2][74:76] == "  "  # reserved 75-76


def test_ctx_zero_dollar_remittance_is_allowed_with_addenda_only():
    # NACHA allows zero-dollar CTX remittance entries (other-sec §4.12; moov does not, §7 #16).
    assert issues(one_batch(batch_header("CTX", "200"), ctx_entry(tc="24", amount=0))) == []
    assert where(one_batch(batch_header("CTX", "200"), ctx_entry(tc="24", amount=0, addenda=0))) == {
        (3, "entry_ctx", "addenda_record_indicator")}
    assert where(one_batch(batch_header("CTX", "220"), ctx_entry(count=5))) == {
        (3, "entry_ctx", "number_of_addenda_records")}


# -- CIE (other-sec §4.13) -------------------------------------------------------------------------------
def cie_file(tc="22", **kw):
    values = dict(individual_name="JANE PAYOR", individual_identification_number="POLICY 55-1234")
    values.update(kw)
    return one_batch(batch_header("CIE", "200"), Entry(entry(ENTRY_CIE, 1, tc=tc, **values)))


def test_cie_individual_name_is_40_54_and_identification_55_76():
    data = cie_file()
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][39:54] == "JANE PAYOR     " and rec.individual_name == "JANE PAYOR"
    assert lines(data)[2][54:76] == "POLICY 55-1234        " and rec.individual_identification_number == "POLICY 55-1234"


def test_cie_credits_only_and_identification_number_mandatory():
    assert where(cie_file(tc="27")) == {(3, "entry_cie", "transaction_code")}
    assert where(cie_file(individual_identification_number="")) == {(3, "entry_cie", "individual_identification_number")}
    assert where(cie_file(individual_identification_number="0000")) == {
        (3, "entry_cie", "individual_identification_number")}


# -- MTE, POS, SHR (other-sec §4.14-§4.16, §5) -----------------------------------------------------------
def mte_file(tc="27", amount=10000, addenda=True, **addenda_fields):
    e = entry(ENTRY_MTE, 1, tc=tc, amount=amount, individual_name="JANE DOE",
              individual_identification_number="CARD 4421")
    return one_batch(batch_header("MTE", "200"), Entry(e, [addenda_02(ADDENDA_02_MTE, **addenda_fields)] if addenda else []))


def test_mte_reads_swapped_names_and_its_addenda_02_variant():
    data = mte_file()
    e = read_ok(data).batches[0].entries[0]
    assert lines(data)[2][39:54] == "JANE DOE       " and e.record.individual_name == "JANE DOE"
    assert e.record.individual_identification_number == "CARD 4421"
    a = e.addenda[0]
    assert lines(data)[3][3:10] == "CHK-WDL" and a.transaction_description == "CHK-WDL"
    assert lines(data)[3][29:35] == "143015" and a.transaction_time == "143015"
    assert a.trace_number == e.record.trace_number


def test_mte_missing_addenda_02_is_rejected_but_a_prenote_needs_none():
    assert where(mte_file(addenda=False)) == {(3, "entry_mte", "addenda_record_indicator")}
    assert issues(mte_file(tc="28", amount=0, addenda=False)) == []  # NACHA; moov rejects (§7 #7)


def test_mte_transaction_time_and_description_are_required():
    assert where(mte_file(transaction_time="256000")) == {(4, "addenda_02_mte", "transaction_time")}
    assert where(mte_file(transaction_description="")) == {(4, "addenda_02_mte", "transaction_description")}


def pos_file(card_type="01", addenda=None, tc="27"):
    e = entry(ENTRY_POS, 1, tc=tc, individual_name="RECEIVER ACCOUNT", card_transaction_type_code=card_type)
    return build([(batch_header("POS", "200"), [Entry(e, [addenda_02()] if addenda is None else addenda)])],
                 derive_addenda=addenda is None)


def test_pos_reads_card_transaction_type_and_addenda_02():
    data = pos_file()
    e = read_ok(data).batches[0].entries[0]
    assert lines(data)[2][76:78] == "01" and e.record.card_transaction_type_code == "01"
    a = e.addenda[0]
    assert lines(data)[3][13:19] == "TERM02" and a.terminal_identification_code == "TERM02"
    assert (a.terminal_city, a.terminal_state, a.transaction_date) == ("BOSTON", "MA", "0614")


def test_pos_invalid_card_transaction_type_code_is_rejected():
    assert where(pos_file(card_type="05")) == {(3, "entry_pos", "card_transaction_type_code")}


def test_pos_addenda_02_trace_must_be_the_entrys():
    bad = addenda_02(trace_number=f"{ODFI}0000009")
    assert where(pos_file(addenda=[bad])) == {(4, "addenda_02", "trace_number")}  # R27
    assert (4, "addenda", "addenda_type_code") in where(pos_file(addenda=[addenda_05()]))


def shr_file(expiration="0728", addenda=True):
    e = entry(ENTRY_SHR, 1, card_expiration_date=expiration, document_reference_number="12345678910",
              individual_card_account_number="0001234567891123456789", card_transaction_type_code="02")
    return one_batch(batch_header("SHR"), Entry(e, [addenda_02()] if addenda else []))


def test_shr_reads_card_data():
    data = shr_file()
    rec = read_ok(data).batches[0].entries[0].record
    assert lines(data)[2][39:43] == "0728" and rec.card_expiration_date == "0728"
    assert rec.document_reference_number == "12345678910"  # 44-54
    assert rec.individual_card_account_number == "0001234567891123456789"  # 55-76
    assert "0001234567891123456789" not in repr(rec)  # a card number is masked like an account


def test_shr_card_expiration_month_and_addenda_02_are_checked():
    assert where(shr_file(expiration="1328")) == {(3, "entry_shr", "card_expiration_date")}
    assert where(shr_file(addenda=False)) == {(3, "entry_shr", "addenda_record_indicator")}


# -- DNE (other-sec §4.17) -------------------------------------------------------------------------------
DNE_INFO = "DATE OF DEATH*010218*CUSTOMER SSN*123456789*AMOUNT*1234.56\\"


def dne_file(status="2", tc="23", amount=0, addenda=True):
    e = entry(ENTRY_DNE, 1, tc=tc, amount=amount, individual_identification_number="031300010000001",
              individual_name="JOHN DOE")
    return one_batch(batch_header("DNE", "220", originator_status_code=status),
                     Entry(e, [addenda_05(DNE_INFO)] if addenda else []))


def test_dne_reads():
    e = read_ok(dne_file()).batches[0].entries[0]
    assert e.record.individual_name == "JOHN DOE" and e.addenda[0].payment_related_information == DNE_INFO


def test_dne_originator_status_must_be_2():
    assert where(dne_file(status="1")) == {(2, "batch_header", "originator_status_code")}


def test_dne_is_non_monetary_with_one_addenda():
    assert where(dne_file(amount=100)) == {(3, "entry_dne", "amount")}
    assert where(dne_file(addenda=False)) == {(3, "entry_dne", "addenda_record_indicator")}
    assert where(dne_file(tc="22")) == {(3, "entry_dne", "transaction_code")}


# -- ENR (other-sec §4.18) -------------------------------------------------------------------------------
ENR_INFO = "22*12200004*3*123987654321*777777777*DOE*JOHN*0\\"


def enr_file(effective="", description="AUTOENROLL", info=ENR_INFO, count=1):
    e = entry(ENTRY_ENR, 1, tc="23", amount=0, number_of_addenda_records=count,
              receiving_company_name="SOC SEC ADMIN")
    bh = batch_header("ENR", "220", effective_entry_date=effective, company_entry_description=description)
    return one_batch(bh, Entry(e, [addenda_05(info)]))


def test_enr_reads_its_corporate_layout_with_a_blank_effective_date():
    data = enr_file()
    f = read_ok(data)
    assert lines(data)[1][69:75] == "      " and f.batches[0].header.effective_entry_date == ""
    rec = f.batches[0].entries[0].record
    assert lines(data)[2][54:58] == "0001" and rec.number_of_addenda_records == 1
    assert lines(data)[2][58:74] == "SOC SEC ADMIN   " and rec.receiving_company_name == "SOC SEC ADMIN"


def test_enr_effective_date_must_be_blank_and_description_autoenroll():
    assert where(enr_file(effective="260120")) == {(2, "batch_header", "effective_entry_date")}
    assert where(enr_file(description="ENROLL")) == {(2, "batch_header", "company_entry_description")}


def test_enr_payment_related_information_and_addenda_count():
    assert where(enr_file(info="")) == {(4, "addenda_05", "payment_related_information")}
    assert where(enr_file(count=2)) == {(3, "entry_enr", "number_of_addenda_records")}


# -- across SEC codes ------------------------------------------------------------------------------------
WRITER_CASES = {
    "ACK": lambda: ack_file(),
    "ATX": lambda: one_batch(batch_header("ATX", "220"), atx_entry()),
    "ARC": lambda: one_batch(batch_header("ARC"), Entry(entry(ENTRY_ARC, 1, check_serial_number="1001"))),
    "CIE": lambda: cie_file(),
    "CTX": lambda: one_batch(batch_header("CTX", "220"), ctx_entry()),
    "DNE": lambda: dne_file(),
    "ENR": lambda: enr_file(),
    "MTE": lambda: mte_file(),
    "POS": lambda: pos_file(),
    "RCK": lambda: rck_file(),
    "SHR": lambda: shr_file(),
    "TRX": lambda: one_batch(batch_header("TRX"), trx_entry()),
    "XCK": lambda: xck_file(),
}


@pytest.mark.parametrize("code", sorted(WRITER_CASES))
def test_the_writer_writes_the_same_bytes_and_the_reader_reads_them_back(code):
    data = WRITER_CASES[code]()
    f = read_ok(data)
    buf = io.StringIO()
    w = FileWriter(buf, f.header)
    for b in f.batches:
        w.start_batch(b.header)
        for e in b.entries:
            w.add_entry(e.record, e.addenda)
        w.end_batch()
    w.finish()
    assert buf.getvalue().encode("ascii") == data


def test_web_credits_are_read_p2p_rule():
    e = entry(ENTRY_WEB, 1, tc="22", individual_name="JANE DOE", payment_type_code="S")
    assert issues(one_batch(batch_header("WEB", "220"), Entry(e))) == []


def _web_return(payment_type):
    e = entry(ENTRY_WEB, 1, tc="26", individual_name="JANE DOE", payment_type_code=payment_type)
    a = ADDENDA_99.make(return_reason_code="R01", original_entry_trace_number="021000020000001",
                        original_receiving_dfi_identification=RDFI)
    return one_batch(batch_header("WEB"), Entry(e, [a]))


def test_blank_payment_type_on_a_returned_web_entry_is_forgiven_by_the_bank_profile_only():
    data = _web_return("")
    assert issues(data, "bank") == []
    assert where(data, "strict") == {(3, "entry_web", "payment_type_code")}
    forward = one_batch(batch_header("WEB"), Entry(entry(ENTRY_WEB, 1, individual_name="JANE DOE")))
    assert where(forward, "bank") == {(3, "entry_web", "payment_type_code")}
    assert where(_web_return("X"), "bank") == {(3, "entry_web", "payment_type_code")}  # only blank


def _iat_batch_lines():
    """An IAT batch as moov's test/ach-iat-read/iat-credit.ach has it (header, entry, addenda 10-18, control)."""
    return [
        "5220                FF3               US123456789 IATTRADEPAYMTCADUSD181219   1231380100000001",
        "6221210428820007             0000100000123456789                              1231380100000001",
        "710ANN000000000000100000928383-23938          BEK Enterprises                          0000001",
        "711BEK Solutions                      15 West Place Street                             0000001",
        "82200000020012104288000000000000000000100000                                   231380100000001",
    ]


def test_an_iat_batch_is_reported_unsupported_where_its_header_is_and_the_rest_is_read():
    good = lines(xck_file())  # file header, batch header, entry, batch control, file control, filler
    ls = good[:4] + _iat_batch_lines()
    fc = good[4][:1] + "000002" + good[4][7:]  # two batches
    fc = fc[:7] + f"{-(-(len(ls) + 1) // 10):06d}" + fc[13:]  # block count
    ls += [fc] + ["9" * 94] * ((-(len(ls) + 1)) % 10)
    found = issues(("\n".join(ls) + "\n").encode("ascii"))
    assert [(i.line, i.columns, i.record, i.field) for i in found] == [
        (5, (51, 53), "batch_header", "standard_entry_class_code")]
    assert "IAT" in found[0].message and "not supported" in found[0].message
