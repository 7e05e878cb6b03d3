"""The nightly run: every step of the night, in order, under one lock, each recorded in the run
ledger (`runs`, `run_steps`) so that a re-run of the same business date resumes where the last one
stopped and never redoes a step it finished.

Steps (each a small adapter below, calling one service of batch/):
  import           CSV exports from paths.drop_dir      batch.collect.imports.import_file
  autopay          the AutoPay pulls due               batch.collect.autopay.schedule_autopay
  originate        the day's NACHA file(s)             batch.collect.origination.originate
  send             deliver built files to the bank     batch.bank.delivery.send_files
  returns_fetch    download the bank's files           batch.bank.inbound.fetch_files
  returns_process  apply returns and NOCs              batch.collect.returns.process_inbox
  bank_statement   fetch and tie out BAI2 statements  batch.bank.inbound.fetch_files,
                                                       batch.collect.bank_statement.process_statement_inbox
  coverage         coverage standing and flags         batch.collect.returns.cancel_unneeded_retries,
                                                       batch.collect.coverage.assess_coverage
  reports          reports and member notices          batch.report.reports.*, batch.collect.notices.issue_notices
The morning returns poll (`kind='returns'`) runs returns_fetch, returns_process and bank_statement only.

A step already recorded done for the business date is skipped (`run_steps.done_key` is unique);
the services are idempotent anyway, so a crash between a service's commit and the ledger's only
means the service runs again and finds nothing new to do. A failing step does not stop the night:
the steps after it work on what the database holds and are still worth doing (returns are applied
even when sending failed). The run's outcome is the most urgent of its steps' (batch/run/outcome.py):
configuration (a human must act) > temporary (retry later) > data problems > done; jobs/ turns it
into the exit code.

`--dry-run` takes no lock and writes no ledger: the database steps run inside one transaction that
is rolled back at the end (origination in its own dry-run mode, writing no file); the steps that
would touch the bank or write files only say what they would do.

Nothing here prints or reads the environment: progress and events go to callbacks (jobs/).
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from . import wiring
from .datecheck import check_business_date
from ..store.models import Run, RunStep, utcnow
from ..rules.money import dollars
from ..rules.counts import counted
from .outcome import ExitCodes, Outcome, most_urgent
from ..store.runlock import LockHeld, RunLock

__all__ = [
    "NIGHTLY_STEPS", "RETURNS_STEPS", "STEPS", "NightContext", "RunResult", "Step", "StepOutcome", "StepResult",
    "run_pipeline", "summary_line",
]


@dataclass
class StepOutcome:
    """What an adapter reports. A step is done unless `temporary` or `config` is set."""

    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    problems: list[str] = field(default_factory=list)  # data problems found and reported
    temporary: str | None = None  # bank (or database) unreachable: not done, retry
    config: str | None = None  # configuration problem: not done, a person must act
    rejects_files: list[str] = field(default_factory=list)  # import: the CSVs of rejected rows written


@dataclass
class StepResult:
    step: str
    status: str  # done | skipped | failed | tempfail | unavailable | not_run
    outcome: Outcome = Outcome.DONE
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    done_by_run: int | None = None  # skipped: the run that did it
    rejects_files: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0


@dataclass
class RunResult:
    kind: str
    business_date: date
    dry_run: bool
    run_id: int | None = None
    status: str = "running"
    outcome: Outcome = Outcome.DONE
    steps: list[StepResult] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    crashed_runs: list[int] = field(default_factory=list)  # earlier runs found dead and marked
    summary: str = ""
    metrics_file: Path | None = None
    exit_codes: ExitCodes = field(default_factory=dict, repr=False)  # given by jobs/ (run_pipeline)
    # set when the run's date is earlier than the latest already run, allowed by the caller
    # (--allow-earlier-date): that latest date; the summary (runs.summary) records the override
    earlier_than: date | None = None

    @property
    def exit_code(self) -> int:
        """The number the ledger records for the run's outcome (runs.exit_code): the exit code jobs/
        gave `run_pipeline` for it."""
        return self.exit_codes[self.outcome]

    @property
    def duration_s(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0

    def totals(self) -> dict[str, int]:
        """The figures of the summary line, from the steps this run did."""
        c: dict[str, int] = {}

        def add(name: str, step: str, key: str) -> None:
            for s in self.steps:
                if s.step == step and s.status in ("done", "tempfail", "failed"):
                    c[name] = c.get(name, 0) + int(s.counts.get(key, 0))
            c.setdefault(name, 0)

        add("rows_loaded", "import", "loaded")
        add("rows_rejected", "import", "rejected")
        add("pulls", "autopay", "pulls")
        add("files_built", "originate", "files")
        add("entries", "originate", "entries")
        add("offset_entries", "originate", "offset_entries")
        add("cents", "originate", "cents")
        add("files_sent", "send", "sent")
        add("files_unsent", "send", "unsent")
        add("files_fetched", "returns_fetch", "received")
        add("returns", "returns_process", "returns")
        add("nocs", "returns_process", "nocs")
        add("review_items", "returns_process", "review_items")
        add("flags", "coverage", "at_risk")
        add("notices", "reports", "notices")
        return c


@dataclass
class NightContext:
    """Everything a step adapter may use."""

    settings: Any  # batch.config.Settings
    sessions: sessionmaker[Session]
    keyring: Any  # batch.store.crypto.Keyring
    business_date: date
    dry_run: bool = False
    now: Callable[[], datetime] = utcnow
    progress: Callable[[int, str], None] = lambda n, unit: None
    info: Callable[[str], None] = lambda message: None
    hook: Callable[[str], None] = lambda point: None  # service step boundaries (tests crash there)


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    service: str  # what it calls, for the ledger's readers and the docs
    run: Callable[[NightContext], StepOutcome]


# =============================================================================================
# Step adapters: one service each
# =============================================================================================

IMPORT_KINDS = ("premiums", "autopay", "payments")  # import order: a payment may need its premium


def _drop_files(drop: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
    """CSV files of the drop folder by kind, in import order; and the CSV files no kind claims.
    Dot files and names ending .tmp/.part are being written: left for the next run."""
    todo: dict[str, list[Path]] = {k: [] for k in IMPORT_KINDS}
    unknown = []
    for p in sorted(drop.iterdir()):
        name = p.name.lower()
        if not p.is_file() or name.startswith(".") or name.endswith((".tmp", ".part")):
            continue
        if not name.endswith(".csv"):
            continue
        kind = next((k for k in IMPORT_KINDS if name.startswith(k)), None)
        if kind is None:
            unknown.append(p)
        else:
            todo[kind].append(p)
    return [(k, p) for k in IMPORT_KINDS for p in todo[k]], unknown


def step_import(ctx: NightContext) -> StepOutcome:
    from ..collect.import_archive import archive_imported
    from ..collect.imports import ImportFileError, import_file, rejects_path_for, write_rejects

    drop = ctx.settings.paths.drop_dir
    if drop is None:
        return StepOutcome(note="no drop folder configured (paths.drop_dir): nothing to import")
    drop = Path(drop)
    if not drop.is_dir():
        return StepOutcome(config=f"paths.drop_dir: {drop} is not a folder")
    files, unknown = _drop_files(drop)
    out = StepOutcome(counts={"files": 0, "rows": 0, "loaded": 0, "updated": 0, "unchanged": 0, "rejected": 0,
                              "notes": 0})
    for p in unknown:
        out.problems.append(f"{p.name}: not imported: the name must start with premiums, autopay or payments")
    archive = ctx.settings.archive_dir / "imported" / ctx.business_date.isoformat()
    notes = []
    for kind, path in files:
        try:
            r = import_file(kind, ctx.sessions, path, keyring=ctx.keyring if kind != "premiums" else None,
                            timezone=ctx.settings.origination.zone,
                            progress=lambda n: ctx.progress(n, "rows"))
        except ImportFileError as e:
            out.problems.append(f"{path.name}: not imported: {e}")
            continue
        c = out.counts
        c["files"] += 1
        c["rows"] += r.rows_total
        c["loaded"] += r.loaded
        c["updated"] += r.updated
        c["unchanged"] += r.unchanged
        c["rejected"] += len(r.rejected)
        c["notes"] += len(r.notes)
        # e.g. a NOC correction kept against a row: `achbatch import` lists them
        noted = f", {counted(len(r.notes), 'note')}" if r.notes else ""
        rejects = None
        if not ctx.dry_run:
            # account numbers masked, the original's sha256 beside it (docs/operations.md "Files at rest")
            moved = archive_imported(path, archive).path
            notes.append(f"{path.name} ({kind}: {r.loaded} loaded{noted}) -> {moved} (account numbers masked)")
            if r.rejected:  # beside the archived input: <name>.rejects.csv, 0600, accounts masked
                try:
                    rejects = write_rejects(r, rejects_path_for(moved, moved.parent))
                    out.rejects_files.append(str(rejects))
                except OSError as e:
                    out.problems.append(f"{path.name}: the rejects file could not be written: {e.strerror}")
        if r.rejected:
            first = r.rejected[0]
            dupes = (f", {r.duplicates} of them {'a duplicate' if r.duplicates == 1 else 'duplicates'}"
                     if r.duplicates else "")
            out.problems.append(f"{path.name}: {counted(len(r.rejected), kind + ' row')} rejected{dupes} "
                                f"(first: {first})"
                                + (f"; all in {rejects}" if rejects else ""))
        if ctx.dry_run:
            notes.append(f"{path.name} ({kind}: {r.loaded} would load{noted})")
    out.note = "; ".join(notes) if notes else f"no CSV files in {drop}"
    return out


def step_autopay(ctx: NightContext) -> StepOutcome:
    from ..collect.autopay import schedule_autopay

    r = schedule_autopay(ctx.sessions, ctx.business_date, ctx.settings.origination.autopay_lead_days,
                         wiring.guard(ctx.settings))
    note = (f"{counted(r.created, 'pull')} ({dollars(r.created_cents)}) for premiums due {r.due_date}; "
            f"{r.already_scheduled} already scheduled, {r.covered} already paid, {r.not_due_yet} not due yet, "
            f"{r.account_blocked} held (account blocked)")
    if r.not_authorized or r.refused:
        note += f"; {r.not_authorized} due before their authorization, {r.refused} refused by the debit rules"
    problems = []
    if r.amount_held:
        note += f"; {r.amount_held} held: above the authorized amount without 10 days' notice (for review)"
        problems.append(f"{counted(r.amount_held, 'AutoPay pull')} above the authorized amount held, for review")
    if r.amount_sent_late:
        note += f"; {r.amount_sent_late} sent above the authorized amount without 10 days' notice"
    return StepOutcome(counts={"pulls": r.created, "cents": r.created_cents, "already_scheduled": r.already_scheduled,
                               "covered": r.covered, "held": r.account_blocked, "not_authorized": r.not_authorized,
                               "refused": r.refused, "amount_held": r.amount_held,
                               "amount_sent_late": r.amount_sent_late}, note=note, problems=problems)


def step_originate(ctx: NightContext) -> StepOutcome:
    from ..collect.origination import originate

    s = ctx.settings
    try:
        r = originate(ctx.sessions, ctx.keyring, wiring.company(s), wiring.limits(s), ctx.business_date,
                      s.outbox_dir, dry_run=ctx.dry_run,
                      file_time=ctx.now().astimezone(s.origination.zone).strftime("%H%M"),
                      progress=lambda n: ctx.progress(n, "entries"),
                      on_step=lambda name: ctx.hook(f"originate:{name}"), guard=wiring.guard(s), validation=wiring.validation(s))
    except LockHeld as e:  # a standalone `achbatch originate` is running: this step again next run
        return StepOutcome(temporary=f"another origination holds the origination lock {e.holder.describe()}; "
                                     "nothing built")
    # entries: the entry records of the files built (a balanced file's offset entry included)
    counts = {"files": len(r.files), "entries": r.entries, "payments": r.payments,
              "offset_entries": r.offset_entries, "cents": r.total_cents,
              "held": r.held, "repaired": len(r.repaired), "stopped": len(r.stopped), "review_items": r.review_items}
    if r.skipped_reason:
        return StepOutcome(counts=counts, note=r.skipped_reason)
    verb = "would build" if ctx.dry_run else "built"
    if not r.files:
        note = "nothing to originate"
    else:
        names = ", ".join(f.file_name for f in r.files)
        note = f"{verb} {names}: {r.entries_words()}, {dollars(r.total_cents)}, effective {r.effective_date}"
    if r.held:
        note += f"; {counted(r.held, 'payment')} held (account blocked)"
    if r.stopped:
        note += (f"; {counted(len(r.stopped), 'debit')} stopped by the debit rules"
                 + (f" ({r.review_items} for review)" if r.review_items else ""))
    if r.repaired:
        note += f"; rewrote {', '.join(r.repaired)} in the outbox from the stored bytes"
    v = r.validation
    late = v.review_items if v is not None else 0
    if v is not None:
        counts.update(prenotes=r.prenotes, validated=v.validated, validation_held=v.still_held,
                      validation_released=v.released, risk_accepted=v.risk_accepted)
        if r.prenotes or v.still_held or v.released or v.risk_accepted or v.validated:
            note += (f"; WEB account validation: {r.prenotes} prenotes, {v.validated} accounts validated, "
                     f"{v.still_held} payments held, {v.released} released")
            if v.risk_accepted:
                note += f", {v.risk_accepted} sent unvalidated (first_use = send)"
    problems = []
    if r.review_items - late:
        problems.append(f"{counted(r.review_items - late, 'member payment')} stopped by the debit rules, for review")
    if late:
        problems.append(f"{counted(late, 'held payment')} would miss their premium's due date waiting for "
                        "account validation, for review")
    return StepOutcome(counts=counts, note=note, problems=problems)


# -- transport (batch/bank/delivery.py, batch/bank/inbound.py, batch/bank/transport.py) ----------------------------

def _transport(ctx: NightContext):
    """The bank connection (batch/run/wiring.py); returns (transport or None, configuration problem or None)."""
    try:
        return wiring.transport(ctx.settings), None
    except (wiring.ConfigurationError, OSError, ValueError) as e:
        return None, str(e)


def _pgp(ctx: NightContext, *, outbound: bool):
    """The PGP helper `[bank]` asks for (batch/run/wiring.py); returns (pgp or None, configuration problem or None)."""
    try:
        return wiring.pgp(ctx.settings, outbound=outbound), None
    except wiring.ConfigurationError as e:
        return None, str(e)


def step_send(ctx: NightContext) -> StepOutcome:
    from ..bank.delivery import pending_deliveries, send_files
    if ctx.dry_run:
        todo = pending_deliveries(ctx.sessions)
        names = ", ".join(f.file_name for f in todo)
        return StepOutcome(counts={"files": len(todo), "sent": 0, "unsent": len(todo)},
                           note=f"would send {counted(len(todo), 'file')}" + (f": {names}" if names else "")
                           + " (files this dry run would build are not counted)")
    transport, problem = _transport(ctx)
    if problem:
        return StepOutcome(config=problem)
    pgp, problem = _pgp(ctx, outbound=True)
    if problem:
        return StepOutcome(config=problem)
    s = ctx.settings
    r = send_files(ctx.sessions, ctx.keyring, transport, wiring.delivery_policy(s),
                   archive_dir=s.archive_dir, outbox=s.outbox_dir, file_date=None, pgp=pgp,
                   transport_kind=s.bank.transport, log=ctx.info,
                   on_step=lambda step, _name: ctx.hook(f"send:{step}"))
    if r.locked:
        return StepOutcome(temporary="another `achbatch send` holds the send lock; nothing sent")
    delivered = r.delivered
    out = StepOutcome(counts={"files": len(r.files), "sent": len(delivered), "unsent": len(r.files) - len(delivered),
                              "refused": len(r.refused)})
    words = []
    for f in r.files:
        if f.outcome == "sent":
            words.append(f"{f.file_name} sent as {f.remote_name}")
        elif f.outcome == "confirmed_elsewhere":
            words.append(f"{f.file_name} confirmed at the bank as {f.remote_name} by another run")
        elif f.outcome == "already_there":
            words.append(f"{f.file_name} already at the bank as {f.remote_name} (read back and confirmed, "
                         "not sent again)")
        else:
            words.append(f"{f.file_name} NOT delivered ({f.outcome})")
    out.note = (f"to {r.where}: " + "; ".join(words)) if words else "nothing to send"
    for f in r.refused:
        out.problems.append(f"{f.file_name}: {f.outcome}: {f.error}")
    if r.config_error:
        out.config = r.config_error
    elif r.conflicts:
        out.config = "; ".join(f"{f.file_name}: {f.error}" for f in r.conflicts)
    elif r.unreachable:
        out.temporary = (f"the bank is unreachable ({r.unreachable}); "
                         f"{counted(out.counts['unsent'], 'file')} left for the next run")
    elif r.temporary:
        out.temporary = (f"the bank could not take a file for now ({r.temporary}); "
                         f"{counted(out.counts['unsent'], 'file')} left for the next run")
    return out


def _fetch_inbound(ctx: NightContext, policy, hook: str, nothing: str):
    """Fetch the bank's new files that `policy` selects (return files, or statements) into the inbox
    over the configured transport: (the fetch result, None), or (None, the step's outcome when it
    stops here: a configuration problem, or the fetch lock held by another run, then `nothing`
    says what was not fetched)."""
    from ..bank.inbound import fetch_files

    transport, problem = _transport(ctx)
    if problem:
        return None, StepOutcome(config=problem)
    pgp, problem = _pgp(ctx, outbound=False)
    if problem:
        return None, StepOutcome(config=problem)
    s = ctx.settings
    r = fetch_files(ctx.sessions, transport, policy, inbox=s.inbox_dir, archive_dir=s.archive_dir, pgp=pgp,
                    log=ctx.info, on_step=lambda step, _name: ctx.hook(f"{hook}:{step}"))
    if r.locked:
        return None, StepOutcome(temporary=f"another `achbatch returns fetch` holds the fetch lock; {nothing}")
    return r, None


def step_returns_fetch(ctx: NightContext) -> StepOutcome:
    s = ctx.settings
    if ctx.dry_run:
        return StepOutcome(note=f"would fetch the bank's new files ({s.bank.transport} transport, folder "
                                f"{s.bank.inbound_dir!r}) into {s.inbox_dir}")
    r, stop = _fetch_inbound(ctx, wiring.inbound_policy(s), "fetch", "nothing fetched")
    if stop is not None:
        return stop
    received = r.received
    dup = [f for f in r.files if f.outcome == "duplicate"]
    out = StepOutcome(counts={"received": len(received), "duplicates": len(dup), "failed": len(r.failed),
                              "restored": len(r.restored)})
    names = ", ".join(f"{f.remote_name} -> inbox/{f.local_name}" for f in received)
    out.note = f"from {r.where}: {counted(len(received), 'new file')}" + (f": {names}" if names else "")
    if dup:
        out.note += f"; {counted(len(dup), 'duplicate')} of files fetched before (not processed again)"
    for w in r.warnings:
        ctx.info(f"warning: {w}")
    for f in r.failed:
        out.problems.append(f"{f.remote_name}: {f.error}")
    for name in r.bad_names:
        out.problems.append(f"\"{name}\": not a plain file name: skipped, see the review list")
    if r.config_error:
        out.config = r.config_error
    elif r.unreachable:
        out.temporary = f"the bank is unreachable ({r.unreachable})"
    return out


# -- returns, coverage, reports, notices (batch/collect/returns.py, coverage.py, reports.py, notices.py) -----

def step_returns_process(ctx: NightContext) -> StepOutcome:
    from ..collect.returns import outcome_words, process_inbox

    s = ctx.settings
    if ctx.dry_run:
        from ..bank.inbound import pending_inbound

        todo = pending_inbound(ctx.sessions, s.inbox_dir)
        return StepOutcome(counts={"files": len(todo)},
                           note=f"would apply {counted(len(todo), 'inbox file')}"
                           + (": " + ", ".join(p.local_name for p in todo) if todo else "")
                           + " (files a real fetch would bring are not counted)")
    r = process_inbox(ctx.sessions, ctx.keyring, s.inbox_dir, ctx.business_date, wiring.return_policy(s))
    files = r.files
    c = {"files": len(files),
         "returns": sum(f.returns_applied for f in files),
         "nocs": sum(f.nocs_applied for f in files),
         "review_items": sum(f.review_items for f in files),
         "rejected_files": sum(1 for f in files if f.status == "rejected"),
         "duplicates": sum(1 for f in files if f.status == "duplicate"),
         "retries_scheduled": sum(f.retries_scheduled for f in files),
         "accounts_blocked": sum(f.accounts_blocked for f in files),
         "mandates_revoked": sum(f.mandates_revoked for f in files),
         "payments_failed": sum(f.payments_failed for f in files)}
    out = StepOutcome(counts=c)
    out.note = "; ".join(f"{Path(f.path).name}: {outcome_words(f)}" for f in files) or "no inbox files to process"
    for f in files:
        if f.problems:
            detail = f"; first error: {f.errors[0]}" if f.errors else ""
            out.problems.append(f"{Path(f.path).name}: {outcome_words(f)}{detail}")
    return out


def step_bank_statement(ctx: NightContext) -> StepOutcome:
    """Fetch the bank's BAI2 statements (`[bank] statements`) and tie each out once."""
    from ..collect.bank_statement import StatementCodes, process_statement_inbox
    s = ctx.settings
    if not s.bank.statements:
        return StepOutcome(note="no BAI2 statements expected ([bank] statements is empty)")
    if ctx.dry_run:
        return StepOutcome(note=f"would fetch the bank's statements ({s.bank.statements!r} in folder "
                                f"{s.bank.inbound_dir!r}) and tie them out")
    r, stop = _fetch_inbound(ctx, wiring.statement_policy(s), "statement", "no statement fetched")
    if stop is not None:
        return stop
    out = StepOutcome()
    for f in r.failed:
        out.problems.append(f"{f.remote_name}: {f.error}")
    if r.config_error:
        out.config = r.config_error
        return out
    if r.unreachable:
        out.temporary = f"the bank is unreachable ({r.unreachable})"
    outs = process_statement_inbox(ctx.sessions, s.inbox_dir, ctx.business_date, StatementCodes.from_settings(s.bank))
    tied = [o for o in outs if o.tie is not None]
    out.counts = {"fetched": len(r.received), "statements": len(outs),
                  "rejected": sum(1 for o in outs if o.status == "rejected"),
                  "matched": sum(len(o.tie.matched) for o in tied),
                  "missing": sum(len(o.tie.missing) for o in tied),
                  "unexplained": sum(len(o.tie.unexplained) for o in tied),
                  "review_items": sum(o.review_items for o in outs)}
    out.note = "; ".join(f"{Path(o.path).name}: {o.words()}" for o in outs) or "no new statement"
    for o in outs:
        if o.problems:
            out.problems.append(f"{Path(o.path).name}: {o.words()}")
    return out


def step_coverage(ctx: NightContext) -> StepOutcome:
    from ..collect.coverage import AT_RISK_STATUSES, assess_coverage
    from ..collect.returns import cancel_unneeded_retries
    s = ctx.settings
    cancelled = cancel_unneeded_retries(ctx.sessions, ctx.business_date)
    r = assess_coverage(ctx.sessions, ctx.business_date, wiring.coverage_rules(s), tz=s.origination.zone)
    at_risk = sum(n for st, n in r.by_status.items() if st in AT_RISK_STATUSES)
    counts = {"policies": r.policies, "at_risk": at_risk, "new": r.new, "changed": r.changed,
              "retries_cancelled": cancelled}
    counts.update({f"status_{st}": n for st, n in sorted(r.by_status.items())})
    by = ", ".join(f"{n} {st}" for st, n in sorted(r.by_status.items())) or "none"
    note = f"{counted(r.policies, 'policy')} ({by}); {r.new} new, {r.changed} changed"
    if cancelled:
        note += f"; {cancelled} pending re-presentments cancelled (premium paid another way)"
    return StepOutcome(counts=counts, note=note)


REPORT_FORMATS = ("html", "csv")


def step_reports(ctx: NightContext) -> StepOutcome:
    import jinja2

    from ..collect.notices import issue_notices
    from ..report.reports import (KINDS, coverage_report, default_output_path, reconciliation_report, returns_report,
                          write_report)
    s, d = ctx.settings, ctx.business_date
    if ctx.dry_run:
        return StepOutcome(note=f"would write the {', '.join(KINDS)} reports ({', '.join(REPORT_FORMATS)}) and the "
                                f"coverage export to {s.reports_dir} and the member notices to {s.notices_dir}")
    builders = {"reconciliation": lambda: reconciliation_report(ctx.sessions, ctx.keyring, d),
                "returns": lambda: returns_report(ctx.sessions, d),
                "coverage": lambda: coverage_report(ctx.sessions, d, wiring.coverage_rules(s), tz=s.origination.zone)}
    out = StepOutcome(counts={"reports": 0, "notices": 0, "warnings": 0})
    written = []
    for kind in KINDS:
        report = builders[kind]()
        for fmt in REPORT_FORMATS:
            path = write_report(report, fmt, default_output_path(s.reports_dir, kind, d, fmt))
            written.append(path.name)
            out.counts["reports"] += 1
        for w in report.warnings:
            out.problems.append(f"{kind} report: {w}")
            out.counts["warnings"] += 1
            if kind == "returns" and " return rate " in w:  # a rate stays crossed for 60 days: status warns
                out.counts["return_rate_warnings"] = out.counts.get("return_rate_warnings", 0) + 1
    exported = _coverage_export(ctx)
    written.append(Path(exported.path).name)
    out.counts["coverage_changes"] = exported.rows
    try:
        notices = issue_notices(ctx.sessions, s.notices_dir, d, templates_dir=s.paths.notices_templates,
                                sender=wiring.sender_name(s))
    except jinja2.TemplateError as e:  # a notice template (most likely an override) is broken
        out.config = f"notice template error (paths.notices_templates): {e}"
        out.note = f"reports in {s.reports_dir}: {', '.join(written)}; notices NOT written"
        return out
    out.counts["notices"] = notices.created
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(notices.by_kind.items()))
    out.note = (f"reports in {s.reports_dir}: {', '.join(written)}; notices: {notices.created} written"
                + (f" ({kinds})" if kinds else "") + (f", manifest {notices.manifest}" if notices.manifest else ""))
    return out


def _coverage_export(ctx: NightContext):
    """The coverage changes not exported yet, for the enrollment system: coverage-export-<date>.csv
    beside the reports (batch.collect.coverage_export)."""
    from ..collect.coverage_export import default_export_path, export_changes
    from ..store.fsutil import write_atomic
    s = ctx.settings

    def deliver(export_id: int, data: bytes) -> str:
        path = default_export_path(s.reports_dir, ctx.business_date, export_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, mode=0o644)  # read by the enrollment system, as the reports are
        return str(path)

    return export_changes(ctx.sessions, ctx.business_date, deliver)


STEPS: dict[str, Step] = {s.name: s for s in (
    Step("import", "payments import", "batch.collect.imports.import_file", step_import),
    Step("autopay", "AutoPay schedule", "batch.collect.autopay.schedule_autopay", step_autopay),
    Step("originate", "originate", "batch.collect.origination.originate", step_originate),
    Step("send", "send", "batch.bank.delivery.send_files", step_send),
    Step("returns_fetch", "returns fetch", "batch.bank.inbound.fetch_files", step_returns_fetch),
    Step("returns_process", "returns process", "batch.collect.returns.process_inbox", step_returns_process),
    Step("bank_statement", "bank statement", "batch.bank.inbound.fetch_files, "
         "batch.collect.bank_statement.process_statement_inbox", step_bank_statement),
    Step("coverage", "coverage assess", "batch.collect.coverage.assess_coverage", step_coverage),
    Step("reports", "reports and notices", "batch.report.reports.write_report, "
         "batch.collect.coverage_export.export_changes, batch.collect.notices.issue_notices", step_reports),
)}
NIGHTLY_STEPS = ("import", "autopay", "originate", "send", "returns_fetch", "returns_process", "bank_statement",
                 "coverage", "reports")
RETURNS_STEPS = ("returns_fetch", "returns_process", "bank_statement")
PIPELINES = {"nightly": NIGHTLY_STEPS, "returns": RETURNS_STEPS}


# =============================================================================================
# The run's status and summary line (pure)
# =============================================================================================

def run_status_for(steps: list[StepResult], interrupted: bool) -> str:
    statuses = {s.status for s in steps}
    if statuses & {"failed", "unavailable"}:
        return "failed"
    if interrupted:
        return "interrupted"
    if "tempfail" in statuses:
        return "tempfail"
    if any(s.problems for s in steps):
        return "problems"
    return "done"


_STATUS_WORDS = {"done": "done", "problems": "done with data problems", "failed": "FAILED",
                 "tempfail": "incomplete (temporary failure)", "interrupted": "interrupted (SIGTERM)",
                 "running": "running"}


def summary_line(r: RunResult) -> str:
    """One line: files, entries, dollars, returns, flags; what was skipped, failed or unavailable."""
    t = r.totals()
    head = f"{r.kind} {r.business_date}" + (" (dry run)" if r.dry_run else "")
    if r.earlier_than is not None:
        head += f" (earlier than {r.earlier_than}, allowed by --allow-earlier-date)"
    head += f": {_STATUS_WORDS.get(r.status, r.status)} in {r.duration_s:.1f}s"
    if r.run_id is not None:
        head += f" (run {r.run_id})"
    if r.steps and all(s.status == "skipped" for s in r.steps):
        runs = sorted({s.done_by_run for s in r.steps if s.done_by_run is not None})
        return (f"{head}: nothing to do, every step was already done for {r.business_date} by run "
                f"{', '.join(map(str, runs))}; exit {r.exit_code}")
    parts = []
    if r.kind == "nightly":
        built = "would build" if r.dry_run else "built"
        parts.append(f"files {t['files_built']} {built}, {t['files_sent']} sent"
                     + (f", {t['files_unsent']} unsent" if t["files_unsent"] else ""))
        parts.append(f"entries {t['entries']:,}"
                     + (f" ({t['offset_entries']} offset)" if t["offset_entries"] else "")
                     + f", {dollars(t['cents'])}")
    else:
        parts.append(f"files {t['files_fetched']} fetched")
    parts.append(f"returns {t['returns']} ({counted(t['nocs'], 'NOC')}"
                 + (f", {t['review_items']} for review" if t["review_items"] else "") + ")")
    if r.kind == "nightly":
        parts.append(f"flags {t['flags']} at risk")
    bad = {}
    for s in r.steps:
        if s.status in ("failed", "tempfail", "unavailable", "not_run", "skipped"):
            bad.setdefault(s.status, []).append(s.step)
    for status, label in (("failed", "failed"), ("unavailable", "not available"), ("tempfail", "to retry"),
                          ("not_run", "not run"), ("skipped", "already done")):
        if status in bad:
            parts.append(f"{label}: {', '.join(bad[status])}")
    problems = sum(len(s.problems) for s in r.steps)
    if problems:
        parts.append(counted(problems, "data problem"))
    rejects = [f for s in r.steps for f in s.rejects_files]
    if rejects:
        parts.append(f"rejected rows in {', '.join(rejects)}")
    return f"{head}: " + "; ".join(parts) + f"; exit {r.exit_code}"


# =============================================================================================
# The runner
# =============================================================================================

Emit = Callable[[str, dict], None]


def _json(d: dict | None) -> str | None:
    return json.dumps(d, sort_keys=True) if d else None


def _brief_error(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@contextmanager
def rolled_back_sessions(sessions: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Sessions whose commits are savepoints of one outer transaction rolled back at the end: the
    dry run's database steps really run and then leave no trace."""
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            yield sessionmaker(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        finally:
            outer.rollback()


def run_pipeline(
    settings: Any,
    sessions: sessionmaker[Session],
    keyring: Any,
    business_date: date,
    *,
    exit_codes: ExitCodes,
    kind: str = "nightly",
    dry_run: bool = False,
    steps: tuple[str, ...] | None = None,
    emit: Emit = lambda event, fields: None,
    progress: Callable[[str, int, str], None] = lambda step, n, unit: None,
    hook: Callable[[str, str], None] = lambda step, point: None,
    should_stop: Callable[[], bool] = lambda: False,
    write_metrics: bool = True,
    now: Callable[[], datetime] = utcnow,
    allow_earlier_date: bool = False,
) -> RunResult:
    """Run the pipeline `kind` for `business_date` under the run lock (raises runlock.LockHeld
    when another run holds it, having changed nothing).

    A nightly run for a date earlier than the latest already run, and not run before, raises
    datecheck.EarlierDate having changed nothing, unless `allow_earlier_date` (then recorded in the
    run's summary, `runs.summary`).

    `emit(event, fields)` reports run_started, step_skipped, step_started, step_finished,
    run_finished and warning events; `progress(step, n, unit)` counts long steps; `hook(step, point)`
    is called at 'start' and 'end' of each step and at the services' own step boundaries (tests
    crash the process there); `should_stop()` is polled between steps (SIGTERM). `exit_codes` is the
    number to record for each outcome (jobs/exitcodes.EXIT_CODES)."""
    names = steps or PIPELINES[kind]
    result = RunResult(kind, business_date, dry_run, exit_codes=exit_codes)
    if dry_run:
        if kind == "nightly":
            with sessions() as s:
                result.earlier_than = check_business_date(s, kind, business_date, allow_earlier=allow_earlier_date)
        with rolled_back_sessions(sessions) as rb:
            result.started_at = now()
            emit("run_started", {"kind": kind, "business_date": business_date.isoformat(), "dry_run": True})
            _run_steps(settings, rb, keyring, result, names, emit, progress, hook, should_stop, now, ledger=None)
        result.finished_at = now()
        _finish(result, should_stop_seen=False)
        emit("run_finished", _finished_fields(result))
        return result

    engine = sessions.kw["bind"]
    with RunLock(engine, "nightly") as lock:
        if kind == "nightly":  # under the lock: no other run moves the latest date meanwhile
            with sessions() as s:
                result.earlier_than = check_business_date(s, kind, business_date, allow_earlier=allow_earlier_date)
        with sessions() as s, s.begin():
            result.crashed_runs = _mark_crashed(s)
            run = Run(kind=kind, business_date=business_date, status="running", host=lock.host, pid=lock.pid,
                      started_at=now())
            s.add(run)
            s.flush()
            result.run_id = run.id
            result.started_at = run.started_at
            lock.record(s, run.id)
        emit("run_started", {"run_id": result.run_id, "kind": kind, "business_date": business_date.isoformat(),
                             "dry_run": False, "host": lock.host, "pid": lock.pid,
                             "crashed_runs": result.crashed_runs})
        if result.earlier_than is not None:
            emit("warning", {"message": f"{business_date} is earlier than {result.earlier_than}, the latest business "
                                        "date already run: allowed by --allow-earlier-date"})
        if result.crashed_runs:
            crashed = ("run " if len(result.crashed_runs) == 1 else "runs ") + ", ".join(map(str, result.crashed_runs))
            emit("warning", {"message": f"{crashed} stopped without "
                                        "finishing (process gone): marked crashed; resuming"})
        stopped = False
        try:
            stopped = _run_steps(settings, sessions, keyring, result, names, emit, progress, hook, should_stop, now,
                                 ledger=(lock, kind))
        finally:
            result.finished_at = now()
            _finish(result, should_stop_seen=stopped)
            with sessions() as s, s.begin():
                s.execute(update(Run).where(Run.id == result.run_id).values(
                    status=result.status, exit_code=result.exit_code, finished_at=result.finished_at,
                    summary=result.summary[:1000], counts=_json(result.totals()),
                    error="; ".join(f"{x.step}: {x.error}" for x in result.steps if x.error)[:4000] or None))
        if write_metrics:
            result.metrics_file = _write_metrics(settings, sessions, emit)
    emit("run_finished", _finished_fields(result))
    return result


def _finished_fields(r: RunResult) -> dict:
    return {"run_id": r.run_id, "kind": r.kind, "business_date": r.business_date.isoformat(), "status": r.status,
            "exit_code": r.exit_code, "duration_s": round(r.duration_s, 3), "summary": r.summary,
            "totals": r.totals(), "dry_run": r.dry_run}


def _finish(r: RunResult, should_stop_seen: bool) -> None:
    r.status = run_status_for(r.steps, should_stop_seen)
    outcomes = [s.outcome for s in r.steps]
    if should_stop_seen:
        outcomes.append(Outcome.TEMPORARY)
    r.outcome = most_urgent(outcomes)
    r.summary = summary_line(r)


def _mark_crashed(s: Session) -> list[int]:
    """Runs still 'running' while we hold the lock cannot be running: their process died."""
    ids = list(s.scalars(select(Run.id).where(Run.status == "running")))
    if ids:
        now = utcnow()
        s.execute(update(Run).where(Run.id.in_(ids)).values(status="crashed", finished_at=now,
                                                              error="the process stopped without finishing"))
        s.execute(update(RunStep).where(RunStep.run_id.in_(ids) & (RunStep.status == "running"))
                  .values(status="crashed", finished_at=now, error="the process stopped during this step"))
    return ids


def _done_before(s: Session, kind: str, business_date: date, step: str) -> RunStep | None:
    return s.scalars(select(RunStep).where(RunStep.done_key == RunStep.key_for(kind, business_date, step))).first()


def _run_steps(settings, sessions, keyring, result: RunResult, names, emit, progress, hook, should_stop, now,
               ledger) -> bool:
    """Run each step in turn; returns True when stopped early by `should_stop`."""
    kind, d = result.kind, result.business_date
    ledger_sessions = sessions
    for position, name in enumerate(names, start=1):
        step = STEPS[name]
        if should_stop():
            for rest in names[position - 1:]:
                sr = StepResult(rest, "not_run", note="stopped (SIGTERM) before this step")
                result.steps.append(sr)
                if ledger is not None:
                    _ledger_insert(ledger_sessions, result, sr, names.index(rest) + 1, now)
            emit("warning", {"message": f"stopping: {counted(len(names) - position + 1, 'step')} not run"})
            return True
        if kind == "nightly":
            with ledger_sessions() as s:
                prior = _done_before(s, kind, d, name)
            if prior is not None:
                # counts stay empty: this run did none of that work
                sr = StepResult(name, "skipped", note=f"already done for {d} by run {prior.run_id}",
                                done_by_run=prior.run_id)
                result.steps.append(sr)
                if ledger is not None:
                    _ledger_insert(ledger_sessions, result, sr, position, now)
                emit("step_skipped", {"step": name, "run_id": result.run_id, "done_by_run": prior.run_id,
                                      "business_date": d.isoformat()})
                continue
        sr = StepResult(name, "running", started_at=now())
        row_id = None
        if ledger is not None:
            lock, _ = ledger
            with ledger_sessions() as s, s.begin():
                row = RunStep(run_id=result.run_id, kind=kind, business_date=d, step=name, position=position,
                              status="running", started_at=sr.started_at, note="")
                s.add(row)
                s.flush()
                row_id = row.id
                lock.heartbeat(s)
        emit("step_started", {"step": name, "title": step.title, "position": position, "of": len(names),
                              "run_id": result.run_id, "business_date": d.isoformat(), "service": step.service})
        hook(name, "start")
        ctx = NightContext(settings, sessions, keyring, d, result.dry_run, now=now,
                           progress=lambda n, unit, _name=name: progress(_name, n, unit),
                           info=lambda message, _name=name: emit("info", {"step": _name, "message": message}),
                           hook=lambda point, _name=name: hook(_name, point))
        try:
            outcome = step.run(ctx)
        except ImportError as e:  # a broken installation: a person must act
            sr.status, sr.outcome, sr.error = "unavailable", Outcome.CONFIG, f"not available in this build: {e}"
        except OperationalError as e:  # the database went away mid-step: safe to retry
            sr.status, sr.outcome, sr.error = "tempfail", Outcome.TEMPORARY, _brief_error(e)
        except Exception as e:  # noqa: BLE001 - a step's failure is recorded; the night goes on
            sr.status, sr.outcome, sr.error = "failed", Outcome.PROBLEMS, _brief_error(e)
            emit("step_error", {"step": name, "traceback": traceback.format_exc(limit=8)})
        else:
            sr.counts, sr.note, sr.problems = dict(outcome.counts), outcome.note, list(outcome.problems)
            sr.rejects_files = list(outcome.rejects_files)
            if outcome.config:
                sr.status, sr.outcome, sr.error = "failed", Outcome.CONFIG, f"configuration: {outcome.config}"
            elif outcome.temporary:
                sr.status, sr.outcome, sr.error = "tempfail", Outcome.TEMPORARY, outcome.temporary
            else:
                sr.status = "done"
                sr.outcome = Outcome.PROBLEMS if outcome.problems else Outcome.DONE
        hook(name, "end")
        sr.finished_at = now()
        result.steps.append(sr)
        if ledger is not None:
            _ledger_finish(ledger_sessions, result, sr, row_id)
        emit("step_finished", {"step": name, "status": sr.status, "exit_code": result.exit_codes[sr.outcome],
                               "counts": sr.counts, "note": sr.note, "problems": sr.problems, "error": sr.error,
                               "duration_s": round(sr.duration_s, 3), "run_id": result.run_id,
                               "business_date": d.isoformat()})
    return False


def _ledger_insert(sessions, result: RunResult, sr: StepResult, position: int, now) -> None:
    t = now()
    with sessions() as s, s.begin():
        s.add(RunStep(run_id=result.run_id, kind=result.kind, business_date=result.business_date, step=sr.step,
                      position=position, status=sr.status, started_at=t, finished_at=t, note=sr.note[:1000]))


def _ledger_finish(sessions, result: RunResult, sr: StepResult, row_id: int) -> None:
    note = sr.note
    counts = sr.counts
    if sr.problems:
        note = (note + "; " if note else "") + "; ".join(sr.problems)
        counts = {**counts, "problems": len(sr.problems)}  # `achbatch status` tells which step had them
    done_key = RunStep.key_for(result.kind, result.business_date, sr.step) \
        if sr.status == "done" and result.kind == "nightly" else None
    with sessions() as s, s.begin():
        s.execute(update(RunStep).where(RunStep.id == row_id).values(
            status=sr.status, finished_at=sr.finished_at, counts=_json(counts), note=note[:1000],
            error=sr.error, done_key=done_key))


def _write_metrics(settings, sessions, emit) -> Path | None:
    from ..report.metrics import collect, render, write_atomic

    path = Path(settings.metrics_file)
    try:
        write_atomic(path, render(collect(sessions, settings)))
    except (OSError, OperationalError) as e:
        emit("warning", {"message": f"metrics not written to {path}: {_brief_error(e)}"})
        return None
    return path
