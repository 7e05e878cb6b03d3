"""A simulated bank for the returns tests: it reads the NACHA files we originated and answers with
return files (addenda 99, transaction codes 26/36), dishonored and contested returns, and NOC files
(COR batches, addenda 98) built with OUR NACHA writer, the way an ODFI passes the RDFIs' answers
back (reference §1.6, §1.7, §1.13). The tests at the bottom check the simulator itself: what it
writes is valid under the strict profile and says what it was asked to say."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from nacha import codes
from nacha.layouts import (
    ADDENDA_98,
    ADDENDA_98_REFUSED,
    ADDENDA_99,
    ADDENDA_99_CONTESTED,
    ADDENDA_99_DISHONORED,
    ENTRY_COR,
    FILE_HEADER,
)
from nacha.model import Batch, Entry, NachaFile
from nacha.reader import read_file
from nacha.routing import check_digit
from nacha.writer import format_file

OUR_ROUTING = "011000015"  # the ODFI of the test company (origination tests use it too)
BANK_RDFI = "02100002"  # the returning institution's identification (its trace numbers start with it)


@dataclass(frozen=True)
class Original:
    """One entry of a file we originated, with its batch header."""

    header: tuple
    entry: tuple

    @property
    def trace(self) -> str:
        return self.entry.trace_number

    @property
    def member_id(self) -> str:
        return self.entry.individual_identification_number


def originals(*paths: str | Path) -> dict[str, Original]:
    """Every entry of the given originated files, by trace number."""
    out = {}
    for p in paths:
        f = read_file(p, "strict")
        for b in f.batches:
            for e in b.entries:
                out[e.record.trace_number] = Original(b.header, e.record)
    return out


def _return_tc(tc: str) -> str:
    """The return/NOC transaction code answering a forward code (27 and prenote 28 -> 26, 37 and 38 -> 36)."""
    return {"27": "26", "37": "36", "28": "26", "38": "36", "22": "21", "32": "31"}[tc]


class SimBank:
    def __init__(self, our_routing: str = OUR_ROUTING, rdfi: str = BANK_RDFI):
        self.our_routing = our_routing
        self.rdfi = rdfi
        self.seq = 0

    def _trace(self) -> str:
        self.seq += 1
        return f"{self.rdfi}{self.seq:07d}"

    def _header(self, file_date: date, modifier: str):
        return FILE_HEADER.make(
            immediate_destination=" " + self.our_routing, immediate_origin=" " + self.rdfi + check_digit(self.rdfi),
            file_creation_date=file_date.strftime("%y%m%d"), file_creation_time="0600", file_id_modifier=modifier,
            immediate_destination_name="HEALTH CONNECTOR", immediate_origin_name="SIMULATED BANK")

    def _batches(self, items, make_entry, sec: str | None = None) -> list[Batch]:
        """Group answers by original batch header (the return batch keeps it, NR2013 OR147)."""
        batches: dict[tuple, Batch] = {}
        for item in items:
            orig: Original = item[0]
            h = orig.header._replace(originating_dfi_identification=self.rdfi, batch_number=1)
            if sec:
                h = h._replace(standard_entry_class_code=sec)
            key = tuple(h)
            b = batches.setdefault(key, Batch(h, []))
            b.entries.append(make_entry(item))
        return list(batches.values())

    def _returned_entry(self, orig: Original, amount: int | None, account: str | None, trace: str):
        r = orig.entry
        return r._replace(transaction_code=_return_tc(r.transaction_code),
                          receiving_dfi_identification=self.our_routing[:8], check_digit=self.our_routing[8],
                          amount=r.amount if amount is None else amount,
                          dfi_account_number=r.dfi_account_number if account is None else account,
                          trace_number=trace)

    def returns(self, answers: list[tuple[Original, str]], file_date: date, modifier: str = "A", *,
                amounts: dict[str, int] | None = None, accounts: dict[str, str] | None = None,
                rdfis: dict[str, str] | None = None, info: str = "") -> str:
        """A return file: (original, return code) pairs. `amounts`, `accounts` and `rdfis` (by
        original trace) make the bank return something that does not match our entry."""
        amounts, accounts, rdfis = amounts or {}, accounts or {}, rdfis or {}

        def make(item):
            orig, code = item
            trace = self._trace()
            rec = self._returned_entry(orig, amounts.get(orig.trace), accounts.get(orig.trace), trace)
            add = ADDENDA_99.make(return_reason_code=code, original_entry_trace_number=orig.trace,
                                  original_receiving_dfi_identification=rdfis.get(
                                      orig.trace, orig.entry.receiving_dfi_identification),
                                  addenda_information=info, trace_number=trace)
            return Entry(rec, [add])

        return format_file(NachaFile(self._header(file_date, modifier), self._batches(answers, make)))

    def dishonored(self, answers: list[tuple[Original, str, str]], file_date: date, modifier: str = "A") -> str:
        """Dishonored returns: (original, dishonor code R61-R70, original return code)."""

        def make(item):
            orig, code, returned = item
            trace = self._trace()
            rec = self._returned_entry(orig, None, None, trace)
            add = ADDENDA_99_DISHONORED.make(
                dishonored_return_reason_code=code, original_entry_trace_number=orig.trace,
                original_receiving_dfi_identification=orig.entry.receiving_dfi_identification,
                return_trace_number=f"{self.rdfi}{9000000 + self.seq:07d}", return_settlement_date="",
                return_reason_code=returned[1:], addenda_information="", trace_number=trace)
            return Entry(rec, [add])

        return format_file(NachaFile(self._header(file_date, modifier), self._batches(answers, make)))

    def contested(self, answers: list[tuple[Original, str, str]], file_date: date, modifier: str = "A") -> str:
        """Contested dishonored returns: (original, contest code R71-R77, original return code)."""

        def make(item):
            orig, code, returned = item
            trace = self._trace()
            rec = self._returned_entry(orig, None, None, trace)
            add = ADDENDA_99_CONTESTED.make(
                contested_return_reason_code=code, original_entry_trace_number=orig.trace,
                date_original_entry_returned="", original_receiving_dfi_identification=orig.entry.receiving_dfi_identification,
                original_settlement_date="", return_trace_number=f"{self.rdfi}{9000000 + self.seq:07d}",
                return_settlement_date="", return_reason_code=returned[1:],
                dishonored_return_trace_number=f"{self.our_routing[:8]}{8000000 + self.seq:07d}",
                dishonored_return_settlement_date="", dishonored_return_reason_code="69", trace_number=trace)
            return Entry(rec, [add])

        return format_file(NachaFile(self._header(file_date, modifier), self._batches(answers, make)))

    def nocs(self, answers: list[tuple[Original, str, dict]], file_date: date, modifier: str = "A", *,
             refused: dict[str, str] | None = None) -> str:
        """A NOC file (COR batches): (original, change code, corrected values as
        codes.format_corrected_data takes them). `refused` maps an original trace to a refused code
        C61-C69: that entry then carries a refused NOC addenda instead."""
        refused = refused or {}

        def make(item):
            orig, code, parts = item
            trace = self._trace()
            r = orig.entry
            rec = ENTRY_COR.make(
                transaction_code=_return_tc(r.transaction_code), receiving_dfi_identification=self.our_routing[:8],
                check_digit=self.our_routing[8], dfi_account_number=r.dfi_account_number, amount=0,
                individual_identification_number=r.individual_identification_number,
                individual_name=r.individual_name, discretionary_data="", trace_number=trace)
            corrected = codes.format_corrected_data(code, **parts)
            if not corrected.strip():  # C13 defines no corrected value, but the field is mandatory
                corrected = "ADDENDA FORMAT ERROR"
            if orig.trace in refused:
                add = ADDENDA_98_REFUSED.make(
                    refused_change_code=refused[orig.trace], original_entry_trace_number=orig.trace,
                    original_receiving_dfi_identification=r.receiving_dfi_identification, corrected_data=corrected,
                    change_code=code, trace_sequence_number=trace[-7:], trace_number=trace)
            else:
                add = ADDENDA_98.make(change_code=code, original_entry_trace_number=orig.trace,
                                      original_receiving_dfi_identification=r.receiving_dfi_identification,
                                      corrected_data=corrected, trace_number=trace)
            return Entry(rec, [add])

        return format_file(NachaFile(self._header(file_date, modifier), self._batches(answers, make, sec="COR")))


# -- the simulator itself ---------------------------------------------------------------------------

def _sample_original() -> Original:
    from nacha.layouts import BATCH_HEADER, ENTRY_WEB

    h = BATCH_HEADER.make(service_class_code="225", company_name="HEALTH CONNECTOR", company_identification="9000000001",
                          standard_entry_class_code="WEB", company_entry_description="PREMIUM",
                          effective_entry_date="261202", originator_status_code="1",
                          originating_dfi_identification="01100001", batch_number=1)
    e = ENTRY_WEB.make(transaction_code="27", receiving_dfi_identification="02600959", check_digit="3",
                       dfi_account_number="7300007919", amount=12345, individual_identification_number="M000001",
                       individual_name="MEMBER ONE", payment_type_code="S", trace_number="011000010000001")
    return Original(h, e)


def test_simulated_return_file_is_strictly_valid_and_names_our_trace(tmp_path):
    orig = _sample_original()
    text = SimBank().returns([(orig, "R01")], date(2026, 12, 3))
    p = tmp_path / "ret.ach"
    p.write_text(text)
    f = read_file(p, "strict")
    (entry,) = list(f.entries())
    assert entry.record.transaction_code == "26" and entry.record.amount == 12345
    assert entry.record.receiving_dfi_identification == OUR_ROUTING[:8]
    a = entry.addenda[0]
    assert a.return_reason_code == "R01" and a.original_entry_trace_number == orig.trace
    assert a.original_receiving_dfi_identification == "02600959"
    assert f.batches[0].header.company_entry_description == "PREMIUM"


def test_simulated_noc_file_carries_the_corrected_data(tmp_path):
    orig = _sample_original()
    text = SimBank().nocs([(orig, "C03", {"routing_number": "021000021", "account_number": "998877"})],
                          date(2026, 12, 3))
    f = read_file(text.encode(), "strict")
    (entry,) = list(f.entries())
    assert f.batches[0].header.standard_entry_class_code == "COR" and entry.record.amount == 0
    a = entry.addenda[0]
    assert a.change_code == "C03"
    assert codes.parse_corrected_data("C03", a.corrected_data) == {"routing_number": "021000021",
                                                                   "account_number": "998877"}


def test_simulated_dishonored_and_contested_returns_are_valid():
    orig = _sample_original()
    bank = SimBank()
    for text in (bank.dishonored([(orig, "R69", "R01")], date(2026, 12, 8)),
                 bank.contested([(orig, "R74", "R01")], date(2026, 12, 9))):
        f = read_file(text.encode(), "strict")
        (entry,) = list(f.entries())
        assert entry.addenda[0].original_entry_trace_number == orig.trace
