"""`achbatch demo`: two nights of the real pipeline on embedded defaults (SQLite, a local-folder
bank) in a folder of their own, with the sample premiums, mandates and payments and a simulated
bank that answers the first night's file with returns and a notification of change.

  1. create the schema and the account key; drop the sample CSVs into <dir>/drop (paths.drop_dir);
  2. night 1 (Friday 2026-01-23, the premiums' due date): import, AutoPay pulls (their draft day,
     the 22nd, has passed: originated at once), one NACHA file, sent to the bank folder;
  3. the bank answers overnight (`simulate_bank`): it reads the file it received and writes, with
     the NACHA writer, a return file (R01 insufficient funds, R10 not authorized) and a NOC file
     (C01 corrected account number) into achbatch-data/bank/outgoing;
  4. night 2 (Saturday 2026-01-24, not a Fed banking day: no file is built): fetches and applies
     them (a re-presentment scheduled, an AutoPay mandate revoked, an account corrected),
     re-assesses coverage (the returned premiums are now due for termination: neither member
     paid a full month in 2026 before, so no APTC grace period), writes reports and notices.

Running it again in the same folder is idempotent and says so: the ledger finds both nights done,
the bank's answer already there, and nothing is debited twice. The dates are fixed so that every
run tells the same story. Nothing here prints: lines go to the `say` callback.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time as dtime
from pathlib import Path

from sqlalchemy import func, select

from nacha import codes
from nacha.layouts import ADDENDA_98, ADDENDA_99, ENTRY_COR, FILE_HEADER
from nacha.model import Batch, Entry, NachaFile
from nacha.reader import read_file
from nacha.writer import format_file

from nacha.calendar import is_banking_day, next_banking_day

from ..rules.bank_statement import file_settlement_day, return_settlement_day
from ..rules.counts import counted
from ..rules.money import dollars
from .outcome import ExitCodes, Outcome

__all__ = ["DEMO_ACCOUNT", "DEMO_ANSWERS", "DEMO_MORNING", "DEMO_NIGHTS", "DEMO_STATEMENT_DAY", "BankAnswer",
           "DemoResult", "demo_data_dir", "demo_settings", "run_demo", "simulate_bank", "simulate_statement"]

DEMO_NIGHTS = (date(2026, 1, 23), date(2026, 1, 24))  # Friday (due date), Saturday (not a banking day)
# The bank's prior-day report of Monday 2026-01-26 (night 1's file and the returns settle that day),
# fetched and tied out on the morning of Tuesday 2026-01-27 (the returns poll).
DEMO_STATEMENT_DAY = date(2026, 1, 26)
DEMO_MORNING = date(2026, 1, 27)
DEMO_ACCOUNT = "000123456789"  # the collection account at the simulated bank (synthetic)
DEMO_FILES = ("premiums.csv", "autopay.csv", "payments.csv")
# What the simulated bank says about which entry (member id, amount in cents) of the file it got:
# a return reason code (R..) or a change code (C..).
DEMO_ANSWERS: dict[tuple[str, int], str] = {
    ("M100003", 13150): "R01",  # guest payment: insufficient funds -> re-presented later
    ("M100005", 25000): "R10",  # AutoPay (WEB R): not authorized -> mandate revoked
    ("M100001", 41237): "C01",  # AutoPay (WEB R): corrected account number
}


def demo_data_dir() -> Path:
    """The sample CSVs shipped inside the package (copies of sample_files/)."""
    return Path(__file__).resolve().parent / "demo_data"


def demo_settings(folder: Path):
    """Embedded defaults, with the data folder (and a drop folder) inside `folder`, the bank's BAI2
    statements fetched (`BAI-*.bai`), and `[validation] first_use = "send"`: the demo's members pay
    from accounts it has never seen, and two nights are too short for a prenote's three banking days;
    so the first-use WEB debits go out at once, each recording the accepted risk
    (docs/validation.md); every WEB account of the demo has a debit that night, so no prenote is
    needed."""
    from ..config import BankSettings, PathsSettings, Settings, ValidationSettings

    folder = Path(folder).absolute()
    return Settings(paths=PathsSettings(data_dir=folder / "achbatch-data", drop_dir=folder / "drop"),
                    bank=BankSettings(statements="BAI-*.bai"), validation=ValidationSettings(first_use="send"))


# -- the simulated bank -------------------------------------------------------------------------------

@dataclass
class BankAnswer:
    files: list[Path] = field(default_factory=list)  # written now
    existing: list[Path] = field(default_factory=list)  # written by an earlier run
    returns: list[tuple[str, str, str, int]] = field(default_factory=list)  # (code, member, trace, cents)
    nocs: list[tuple[str, str, str, str]] = field(default_factory=list)  # (code, member, trace, corrected)


def _corrected_account(account: str) -> str:
    """A plausible correction: the last two digits swapped (or a 9 appended)."""
    if len(account) >= 2 and account[-1] != account[-2]:
        return account[:-2] + account[-1] + account[-2]
    return (account + "9")[-17:]


def simulate_bank(incoming: Path, outgoing: Path, answer_date: date,
                  answers: dict[tuple[str, int], str] = DEMO_ANSWERS) -> BankAnswer:
    """Answer each file in `incoming` as an RDFI would, for the entries named in `answers`: a
    return file (addenda 99, reference §1.13) and a NOC file (COR batch, addenda 98, §1.12) per file
    received, written with the NACHA writer (validated strict) into `outgoing` under a temporary
    dot name, then renamed. A file already answered is left alone."""
    out = BankAnswer()
    outgoing.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(incoming).glob("*.ach")):
        f = read_file(path, "strict")
        h = f.header
        odfi_routing = h.immediate_destination.strip()
        ret_name, noc_name = f"RET-{path.stem}.ach", f"NOC-{path.stem}.ach"
        if (outgoing / ret_name).exists() or (outgoing / noc_name).exists():
            out.existing += [p for p in (outgoing / ret_name, outgoing / noc_name) if p.exists()]
            continue
        bank_header = FILE_HEADER.make(
            immediate_destination=h.immediate_origin, immediate_origin=" " + odfi_routing,
            file_creation_date=answer_date.strftime("%y%m%d"), file_creation_time="0600", file_id_modifier="A",
            immediate_destination_name=h.immediate_origin_name, immediate_origin_name=h.immediate_destination_name)
        # The answer settles on the original entries' settlement day (or the next banking day after
        # the answer, if later): the settlement date field carries its Julian day.
        original = file_settlement_day(_yymmdd(h.file_creation_date))
        settles = max(original, answer_date if is_banking_day(answer_date) else next_banking_day(answer_date))
        julian = f"{settles.timetuple().tm_yday:03d}"
        ret_batches: list[Batch] = []
        noc_entries: dict[str, list[Entry]] = {}
        seq = 100
        for b in f.batches:
            by_rdfi: dict[str, list[Entry]] = {}
            for e in b.entries:
                r = e.record
                code = answers.get((r.individual_identification_number.strip(), r.amount))
                if code is None:
                    continue
                seq += 1
                rdfi = r.receiving_dfi_identification
                trace = f"{rdfi}{seq:07d}"
                return_tc = str(int(r.transaction_code) - 1)  # 27 -> 26, 37 -> 36 (ref §1.5)
                if code.startswith("R"):
                    rec = r._replace(transaction_code=return_tc, receiving_dfi_identification=odfi_routing[:8],
                                     check_digit=odfi_routing[8], addenda_record_indicator="1", trace_number=trace)
                    add = ADDENDA_99.make(return_reason_code=code, original_entry_trace_number=r.trace_number,
                                          original_receiving_dfi_identification=rdfi)
                    by_rdfi.setdefault(rdfi, []).append(Entry(rec, [add]))
                    out.returns.append((code, r.individual_identification_number.strip(), r.trace_number, r.amount))
                else:
                    corrected = _corrected_account(r.dfi_account_number.strip())
                    tail = getattr(r, "payment_type_code", "") or ""
                    rec = ENTRY_COR.make(transaction_code=return_tc, receiving_dfi_identification=odfi_routing[:8],
                                         check_digit=odfi_routing[8], dfi_account_number=r.dfi_account_number,
                                         amount=0, individual_identification_number=r.individual_identification_number,
                                         individual_name=r.individual_name, discretionary_data=tail,
                                         trace_number=trace)
                    add = ADDENDA_98.make(change_code=code, original_entry_trace_number=r.trace_number,
                                          original_receiving_dfi_identification=rdfi,
                                          corrected_data=codes.format_corrected_data(code, account_number=corrected))
                    noc_entries.setdefault(rdfi, []).append(Entry(rec, [add]))
                    out.nocs.append((code, r.individual_identification_number.strip(), r.trace_number, corrected))
            for rdfi, entries in by_rdfi.items():
                ret_batches.append(Batch(b.header._replace(originating_dfi_identification=rdfi, settlement_date=julian),
                                         entries))
        proto = f.batches[0].header if f.batches else None
        noc_batches = [Batch(proto._replace(standard_entry_class_code="COR", originating_dfi_identification=rdfi,
                                            settlement_date=julian, company_entry_description="PREMIUM"), entries)
                       for rdfi, entries in noc_entries.items()]
        for name, batches in ((ret_name, ret_batches), (noc_name, noc_batches)):
            if not batches:
                continue
            text = format_file(NachaFile(bank_header, batches))
            tmp = outgoing / f".{name}.tmp"
            tmp.write_text(text, encoding="ascii")
            tmp.replace(outgoing / name)
            out.files.append(outgoing / name)
    return out


def _yymmdd(v: str) -> date:
    return date(2000 + int(v[0:2]), int(v[2:4]), int(v[4:6]))


def simulate_statement(incoming: Path, outgoing: Path, as_of: date, account: str = DEMO_ACCOUNT) -> Path | None:
    """The bank's BAI2 final prior-day report of `as_of`, written with the `bai2` package into
    `outgoing` as BAI-<yymmdd>.bai: an ACH settlement credit (166) for each file in `incoming` that
    settles that day (its debit total; the customer reference carries its file id, creation date +
    File ID Modifier) and an ACH return settlement debit (468) for each return file in `outgoing`
    settling that day (its total). None when already written (the bank writes it once)."""
    from bai2 import bai2 as bai2_writer
    from bai2.constants import AsOfDateModifier, FundsType, GroupStatus, TypeCodes
    from bai2.models import (Account, AccountIdentifier, Bai2File, Bai2FileHeader, Group, GroupHeader,
                             TransactionDetail)

    target = Path(outgoing) / f"BAI-{as_of:%y%m%d}.bai"
    if target.exists():
        return None
    details = []
    seq = 0

    def detail(code: str, cents: int, customer_ref: str, text: str) -> TransactionDetail:
        nonlocal seq
        seq += 1
        return TransactionDetail(type_code=TypeCodes[code], amount=cents, funds_type=FundsType.immediate_availability,
                                 bank_reference=f"{as_of:%y%m%d}{seq:06d}", customer_reference=customer_ref, text=text)

    odfi = company = ""
    for path in sorted(Path(incoming).glob("*.ach")):
        f = read_file(path, "strict")
        h = f.header
        odfi, company = h.immediate_destination.strip(), h.immediate_origin.strip()
        if file_settlement_day(_yymmdd(h.file_creation_date)) == as_of and f.control is not None:
            file_id = f"{h.file_creation_date}{h.file_id_modifier}"
            details.append(detail("166", int(f.control.total_debit_amount), file_id, f"ACH SETTLEMENT FILE {file_id}"))
    for path in sorted(Path(outgoing).glob("RET-*.ach")):
        f = read_file(path, "strict")
        h = f.header
        days = {return_settlement_day(b.header.settlement_date, _yymmdd(h.file_creation_date)) for b in f.batches}
        if as_of in days:
            total = sum(int(e.record.amount) for e in f.entries())
            details.append(detail("468", total, "", f"ACH RETURN SETTLEMENT {path.name}"))
    acct = Account(header=AccountIdentifier(customer_account_number=account, currency="USD", summary_items=[]),
                   children=details)
    group = Group(header=GroupHeader(ultimate_receiver_id=company or "1", originator_id=odfi or "1",
                                     group_status=GroupStatus.update, as_of_date=as_of, as_of_time=dtime.max,
                                     currency="USD", as_of_date_modifier=AsOfDateModifier.final_previous_day),
                  children=[acct])
    f = Bai2File(header=Bai2FileHeader(sender_id=odfi or "1", receiver_id=company or "1",
                                       creation_date=next_banking_day(as_of), creation_time=dtime(6, 0),
                                       file_id=f"{as_of:%y%m%d}", physical_record_length=80, version_number=2),
                 children=[group])
    text = bai2_writer.write(f) + "\n"
    tmp = Path(outgoing) / f".{target.name}.tmp"
    tmp.write_text(text, encoding="ascii")
    tmp.replace(target)
    return target


# -- the demo --------------------------------------------------------------------------------------------

@dataclass
class DemoResult:
    folder: Path
    nights: list = field(default_factory=list)  # batch.run.nightly.RunResult per night (None when locked)
    answer: BankAnswer | None = None
    fresh: bool = True
    outcome: Outcome = Outcome.DONE  # data problems (the demo's returns cause some on purpose) count as done


def _concise(say: Callable[[str], None]):
    """The pipeline's events as short indented lines (consecutive skipped steps on one line)."""
    skipped: list[tuple[str, int]] = []

    def flush() -> None:
        if skipped:
            by = sorted({r for _s, r in skipped})
            say(f"    {', '.join(s for s, _r in skipped)}: already done by run {', '.join(map(str, by))}: skipped")
            skipped.clear()

    def emit(event: str, f: dict) -> None:
        if event != "step_skipped":
            flush()
        if event == "step_finished":
            mark = {"done": "ok", "failed": "FAILED", "tempfail": "RETRY", "unavailable": "NOT AVAILABLE"}
            text = f"    {f['step']:<16} {mark.get(f['status'], f['status'])}"
            if f.get("note"):
                text += f"  {f['note']}"
            if f.get("error"):
                text += f"  error: {f['error']}"
            say(text)
            for p in f.get("problems") or []:
                say(f"    {'':<16}    note: {p}")
        elif event == "step_skipped":
            skipped.append((f["step"], f["done_by_run"]))
        elif event == "warning":
            say(f"    warning: {f['message']}")
    return emit


def _rel(p: Path, base: Path) -> str:
    try:
        return str(Path(p).relative_to(base))
    except ValueError:
        return str(p)


def run_demo(folder: Path, say: Callable[[str], None], exit_codes: ExitCodes) -> DemoResult:
    """Run the demo in `folder` (created); see the module docstring. `exit_codes` is what the nights
    record for each outcome (jobs/exitcodes.EXIT_CODES)."""
    from ..store.db import open_database, upgrade
    from . import wiring
    from ..store.models import FileEntry, Run
    from .nightly import run_pipeline
    from ..store.runlock import LockHeld

    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder)
    res = DemoResult(folder)
    data = settings.data_dir
    say(f"achbatch demo in {folder} (embedded defaults: SQLite, a local-folder bank; dates fixed to "
        f"{DEMO_NIGHTS[0]} and {DEMO_NIGHTS[1]})")
    before, after = upgrade(settings.database_url)
    say(f"  database {_rel(data / 'achbatch.db', folder)}: " +
        ("created" if before is None else "already there") + f" (schema {after})")
    loaded = wiring.keyring(settings)
    if loaded.created:
        say(f"  account-number key created at {_rel(loaded.created, folder)} (mode 0600)")
    keyring = loaded.keyring

    with open_database(settings.database_url) as sessions:
        with sessions() as s:
            earlier = s.scalar(select(func.count()).select_from(Run).where(Run.kind == "nightly"))
        res.fresh = not earlier
        drop = settings.paths.drop_dir
        drop.mkdir(parents=True, exist_ok=True)
        if res.fresh:
            for name in DEMO_FILES:
                shutil.copyfile(demo_data_dir() / name, drop / name)
            say(f"  sample premiums, AutoPay mandates and payments dropped into {_rel(drop, folder)}/ "
                f"({', '.join(DEMO_FILES)})")
        else:
            say(f"  found an earlier demo here ({counted(earlier, 'nightly run')} in the ledger): "
                "running it again shows "
                "that nothing is done twice")

        outcomes = []

        def run(day: date, kind: str) -> bool:
            """One run of the pipeline, recorded in `res`; False when another run holds the lock."""
            try:
                r = run_pipeline(settings, sessions, keyring, day, exit_codes=exit_codes, kind=kind,
                                 emit=_concise(say))
            except LockHeld as e:
                say(f"  skipped: {e}")
                res.nights.append(None)
                res.outcome = Outcome.LOCKED
                return False
            res.nights.append(r)
            outcomes.append(r.outcome)
            say(f"  {r.summary}")
            return True

        for i, night in enumerate(DEMO_NIGHTS, start=1):
            if i == 2:
                answer = simulate_bank(settings.bank_folder / settings.bank.outbound_dir,
                                       settings.bank_folder / settings.bank.inbound_dir, night)
                res.answer = answer
                say("")
                say("the bank answers the file it received (simulated RDFIs, written with the NACHA writer):")
                for code, member, trace, cents in answer.returns:
                    title = codes.RETURN_CODES[code].title if code in codes.RETURN_CODES else ""
                    say(f"  return {code} ({title}) for {member}, {dollars(cents)}, original trace {trace}")
                for code, member, trace, corrected in answer.nocs:
                    say(f"  NOC {code} for {member}, original trace {trace}: corrected account ending "
                        f"{corrected[-4:]}")
                for p in answer.files:
                    say(f"  -> {_rel(p, folder)}")
                for p in answer.existing:
                    say(f"  already answered earlier: {_rel(p, folder)}")
            say("")
            say(f"night {i}: achbatch nightly --date {night}")
            if not run(night, "nightly"):
                return res
        statement = simulate_statement(settings.bank_folder / settings.bank.outbound_dir,
                                       settings.bank_folder / settings.bank.inbound_dir, DEMO_STATEMENT_DAY)
        say("")
        say(f"the bank's BAI2 prior-day report of {DEMO_STATEMENT_DAY} (written with the bai2 package): " +
            (f"-> {_rel(statement, folder)}" if statement else "already written earlier"))
        say("")
        say(f"morning of {DEMO_MORNING}: achbatch nightly --returns-only --date {DEMO_MORNING} "
            "(fetches the report and ties it out)")
        if not run(DEMO_MORNING, "returns"):
            return res
        with sessions() as s:
            entries = s.scalar(select(func.count()).select_from(FileEntry))
            debited = s.scalar(select(func.count(func.distinct(FileEntry.payment_id))))
        say("")
        say(f"exactly once: {counted(entries, 'entry')} originated for {counted(debited, 'payment')} in all "
            f"({'no payment debited twice' if entries == debited else 'DUPLICATES FOUND'})")
        _where(say, settings, folder)
    # A temporary failure of either night is reported before a configuration problem (as the demo always has).
    res.outcome = next((o for o in (Outcome.TEMPORARY, Outcome.CONFIG) if o in outcomes), Outcome.DONE)
    return res


def _where(say, settings, folder: Path) -> None:
    data = settings.data_dir
    say("")
    say("where things are:")
    rows = [
        ("database (SQLite)", data / "achbatch.db"),
        ("NACHA files sent (archive)", settings.archive_dir),
        ("the bank: what it received", settings.bank_folder / settings.bank.outbound_dir),
        ("the bank: returns and NOCs it left", settings.bank_folder / settings.bank.inbound_dir),
        ("reports (html, csv)", settings.reports_dir),
        ("member notices + manifest.csv", settings.notices_dir),
        ("Prometheus metrics", settings.metrics_file),
        ("imported CSVs", settings.archive_dir / "imported"),
    ]
    for label, p in rows:
        listing = ""
        if p.is_dir():
            names = sorted(x.name for x in p.iterdir() if not x.name.startswith("."))
            listing = ": " + (", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "(empty)")
        say(f"  {label:<36} {_rel(p, folder)}{listing}")
    say("")
    say(f"look around: cd {folder} && achbatch status   (or: achbatch report returns --date {DEMO_NIGHTS[1]})")
