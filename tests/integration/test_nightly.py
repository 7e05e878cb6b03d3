"""The nightly run (batch/run/nightly.py, jobs/cmd_nightly.py): the CLI end to end in subprocesses (exit
codes, summary line, JSON logs, files), the run ledger and resuming, a crash at a step boundary
followed by a re-run with no duplicate debit, SIGTERM between steps, the lock, a non-banking day,
the dry run, and the pure parts (exit code precedence, summary line)."""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from batch.run.demo import simulate_bank
from batch.store.models import FileEntry, NachaFile, Payment, PaymentReturn, Run, RunStep
from batch.run.nightly import (
    NIGHTLY_STEPS,
    STEPS,
    RunResult,
    Step,
    StepResult,
    run_pipeline,
    summary_line,
)
from batch.run.outcome import Outcome
from batch.store.runlock import RunLock
from jobs.exitcodes import EXIT_CODES, exit_code_for
from nacha.reader import read_file
from test_nightly_support import SAMPLES, Folder

THURSDAY = date(2026, 1, 22)  # a Fed banking day; the AutoPay pulls for the 23rd are due
FRIDAY = date(2026, 1, 23)
SATURDAY = date(2026, 1, 24)  # not a banking day
ENTRIES = 5  # the sample data originates 5 debits: 3 one-time payments + 2 AutoPay pulls, $1,122.97


def _debits_once(f: Folder) -> None:
    """Every debit payment is in exactly one entry; one file; the bank has exactly that file."""
    with f.sessions() as sessions, sessions() as s:
        per_payment = dict(s.execute(select(FileEntry.payment_id, func.count()).group_by(FileEntry.payment_id)).all())
        debits = s.scalars(select(Payment.id).where(Payment.channel != "mail")).all()
        files = s.scalars(select(NachaFile.file_name)).all()
    assert sorted(per_payment) == sorted(debits) and set(per_payment.values()) == {1}
    assert len(debits) == ENTRIES and files == ["ACH-20260122-A.ach"]
    incoming = sorted(p.name for p in (f.data / "bank" / "incoming").iterdir() if not p.name.startswith("."))
    assert incoming == ["ACH-20260122-A.ach"]
    assert len(list(read_file(f.data / "bank" / "incoming" / incoming[0], "strict").entries())) == ENTRIES


# -- the CLI end to end -----------------------------------------------------------------------------

def test_nightly_cli_end_to_end_then_rerun_resumes_nothing(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    for kind in ("premiums", "autopay", "payments"):
        shutil.copyfile(SAMPLES / f"{kind}.csv", drop / f"{kind}.csv")
    f = Folder(tmp_path, paths__drop_dir=drop)
    f.setup(load=False)
    p = f.run("nightly", "--date", THURSDAY.isoformat(), "--log-format", "json", check_code=0)
    # one summary line on stdout: files, entries, dollars, returns, flags
    assert p.stdout.strip().splitlines() == [p.stdout.strip()]
    line = p.stdout.strip()
    assert line.startswith("nightly 2026-01-22: done in ")
    assert "files 1 built, 1 sent; entries 5, $1,122.97; returns 0 (0 NOCs); flags 0 at risk; exit 0" in line
    # structured logs: every stderr line is a JSON object (the key file notice aside)
    records = [json.loads(x) for x in p.stderr.splitlines() if x.startswith("{")]
    assert [r["event"] for r in records if r["event"] == "step_finished"] == ["step_finished"] * len(NIGHTLY_STEPS)
    assert all(r["status"] == "done" for r in records if r["event"] == "step_finished")
    fin = [r for r in records if r["event"] == "run_finished"]
    assert len(fin) == 1 and fin[0]["exit_code"] == 0 and fin[0]["totals"]["entries"] == 5
    assert all(line.startswith("{") or "account-number key" in line for line in p.stderr.splitlines())
    # the files: imported CSVs moved to the archive, the NACHA file at the bank, reports, metrics
    assert list(drop.iterdir()) == []
    archived = f.data / "archive" / "imported" / "2026-01-22"
    assert sorted(p.name for p in archived.iterdir()) == [
        "autopay.csv", "autopay.csv.sha256", "payments.csv", "payments.csv.sha256", "premiums.csv",
        "premiums.csv.sha256"]
    # at rest: account numbers masked, the original's sha256 kept, files 0600 (issue 13)
    for kind in ("premiums", "autopay", "payments"):
        original = (SAMPLES / f"{kind}.csv").read_bytes()
        assert (archived / f"{kind}.csv.sha256").read_text() == f"{hashlib.sha256(original).hexdigest()}  {kind}.csv\n"
        for p in (archived / f"{kind}.csv", archived / f"{kind}.csv.sha256"):
            assert p.stat().st_mode & 0o777 == 0o600
    for number in ("4004001234", "55550001234", "31002009876"):  # in sample_files/autopay.csv, payments.csv
        assert number in (SAMPLES / "autopay.csv").read_text() + (SAMPLES / "payments.csv").read_text()
        assert not any(number in p.read_text() for p in archived.iterdir())
    assert "****1234" in (archived / "autopay.csv").read_text()
    assert (archived / "premiums.csv").read_bytes() == (SAMPLES / "premiums.csv").read_bytes()  # no account numbers
    _debits_once(f)
    assert {p.name for p in (f.data / "reports").iterdir()} >= {"reconciliation-2026-01-22.csv",
                                                                "returns-2026-01-22.html", "coverage-2026-01-22.csv"}
    assert "achbatch_last_run_entries{kind=\"nightly\"} 5" in (f.data / "metrics.prom").read_text()
    # the ledger: one run, eight steps done, in order
    with f.sessions() as sessions, sessions() as s:
        run = s.scalars(select(Run)).one()
        steps = s.scalars(select(RunStep).order_by(RunStep.position)).all()
    assert run.status == "done" and run.exit_code == 0 and run.summary == line
    assert [x.step for x in steps] == list(NIGHTLY_STEPS) and {x.status for x in steps} == {"done"}
    assert json.loads(steps[2].counts)["entries"] == 5 and steps[2].done_key == "nightly|2026-01-22|originate"
    # a re-run of the same date finds every step done and changes nothing
    again = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    assert "nothing to do, every step was already done for 2026-01-22 by run 1" in again.stdout
    _debits_once(f)
    with f.sessions() as sessions, sessions() as s:
        second = s.scalars(select(RunStep).where(RunStep.run_id == 2)).all()
    assert len(second) == len(NIGHTLY_STEPS) and {x.status for x in second} == {"skipped"} and all(x.done_key is None for x in second)


def test_data_problems_exit_1_and_the_night_goes_on(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copyfile(SAMPLES / "payments-rejected-rows.csv", drop / "payments-portal.csv")
    (drop / "notes.csv").write_text("not an export\n")
    (drop / ".payments-partial.csv").write_text("being written\n")
    f = Folder(tmp_path, paths__drop_dir=drop)
    f.setup()
    p = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=1)
    assert "done with data problems" in p.stdout and p.stdout.rstrip().endswith("exit 1")
    assert "rejected" in p.stderr and "notes.csv: not imported" in p.stderr
    assert (drop / "notes.csv").exists() and (drop / ".payments-partial.csv").exists()  # left alone
    assert not (drop / "payments-portal.csv").exists()  # imported (good rows loaded), archived
    with f.sessions() as sessions, sessions() as s:
        statuses = dict(s.execute(select(RunStep.step, RunStep.status)).all())
        run = s.scalars(select(Run)).one()
    assert set(statuses.values()) == {"done"} and run.status == "problems" and run.exit_code == 1
    assert f.count(NachaFile) == 1
    # every rejected row is in <name>.rejects.csv beside the archived input; the summary and log name it
    import stat

    rejects = tmp_path / "achbatch-data" / "archive" / "imported" / THURSDAY.isoformat() / "payments-portal.rejects.csv"
    assert rejects.exists() and stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert len(rejects.read_text().splitlines()) == 1 + 5 and "4111111111111111" not in rejects.read_text()
    assert f"rejected rows in {rejects}" in p.stdout and f"all in {rejects}" in p.stderr


def test_configuration_error_exit_2_other_steps_still_run(tmp_path):
    f = Folder(tmp_path, paths__drop_dir=tmp_path / "no-such-folder")
    f.setup()
    p = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=2)
    assert "FAILED" in p.stdout and "failed: import" in p.stdout
    with f.sessions() as sessions, sessions() as s:
        statuses = dict(s.execute(select(RunStep.step, RunStep.status)).all())
    assert statuses["import"] == "failed" and statuses["originate"] == "done" and statuses["reports"] == "done"
    # the failed step is not done: once the folder exists, the re-run does just that step
    (tmp_path / "no-such-folder").mkdir()
    again = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    assert "already done: autopay, originate" in again.stdout
    with f.sessions() as sessions, sessions() as s:
        redone = dict(s.execute(select(RunStep.step, RunStep.status).where(RunStep.run_id == 2)).all())
    assert redone["import"] == "done" and redone["originate"] == "skipped"


def _unreachable_bank(tmp_path: Path) -> dict[str, str]:
    """SFTP settings for a bank that refuses connections (a closed port on this machine)."""
    key = ed25519.Ed25519PrivateKey.generate()
    kf = tmp_path / "id_ed25519"
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                     serialization.NoEncryption()))
    kf.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return {"bank__transport": "sftp", "bank__host": "127.0.0.1", "bank__port": "9", "bank__username": "hix",
            "bank__private_key": str(kf), "bank__pinned_host_key": pub, "bank__retry_attempts": "1",
            "bank__retry_wait_initial": "0", "bank__retry_wait_max": "0", "bank__connect_timeout": "3"}


def test_bank_unreachable_exit_75_after_finishing_what_can_be_finished(tmp_path):
    f = Folder(tmp_path, **_unreachable_bank(tmp_path))
    f.setup()
    p = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=75)
    assert "to retry: send, returns_fetch" in p.stdout and p.stdout.rstrip().endswith("exit 75")
    with f.sessions() as sessions, sessions() as s:
        statuses = dict(s.execute(select(RunStep.step, RunStep.status)).all())
        run = s.scalars(select(Run)).one()
        state = s.scalar(select(NachaFile.state))
        unsent = sorted(s.scalars(select(Payment.state).join(FileEntry, FileEntry.payment_id == Payment.id)))
    assert unsent and set(unsent) == {"in_file"}  # built, not at the bank
    assert statuses == {"import": "done", "autopay": "done", "originate": "done", "send": "tempfail",
                        "returns_fetch": "tempfail", "returns_process": "done", "bank_statement": "done", "coverage": "done", "reports": "done"}
    assert run.status == "tempfail" and run.exit_code == 75 and state != "sent"
    # The bank is back (here: the folder bank): the re-run sends the file and does nothing else again.
    f.vars = {k: v for k, v in f.vars.items() if not k.startswith("ACHBATCH_BANK__")}
    again = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    assert "1 sent" in again.stdout
    with f.sessions() as sessions, sessions() as s:
        redone = dict(s.execute(select(RunStep.step, RunStep.status).where(RunStep.run_id == 2)).all())
        sent = sorted(s.scalars(select(Payment.state).join(FileEntry, FileEntry.payment_id == Payment.id)))
    assert len(sent) == len(unsent) and set(sent) == {"sent"}  # confirmed at the bank: the file's payments too
    assert redone == {"import": "skipped", "autopay": "skipped", "originate": "skipped", "send": "done",
                      "returns_fetch": "done", "returns_process": "skipped", "bank_statement": "skipped",
                      "coverage": "skipped",
                      "reports": "skipped"}
    _debits_once(f)


# -- crash and resume ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_at", [
    "originate:originate:committed",  # the file is committed in the database, still a temporary file
    "originate:end",                  # origination finished, the ledger not yet told
    "send:send:renamed",              # the file is at the bank under its final name, not yet confirmed
])
def test_crash_mid_night_then_rerun_completes_without_duplicate_debit(tmp_path, kill_at):
    f = Folder(tmp_path)
    f.setup()
    crashed = f.run("nightly", "--date", THURSDAY.isoformat(), hook={"TEST_KILL_AT": kill_at})
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL: no cleanup of any kind ran
    step = kill_at.split(":")[0]
    with f.sessions() as sessions, sessions() as s:
        run = s.scalars(select(Run)).one()
        running = s.scalars(select(RunStep).where(RunStep.status == "running")).all()
    assert run.status == "running" and [x.step for x in running] == [step]
    again = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    assert "done in" in again.stdout
    assert "stopped without finishing" in again.stderr  # the dead run was found and marked
    with f.sessions() as sessions, sessions() as s:
        runs = {r.id: r.status for r in s.scalars(select(Run))}
        crashed_step = s.scalars(select(RunStep).where(RunStep.run_id == 1, RunStep.step == step)).one()
        redone = s.scalars(select(RunStep).where(RunStep.run_id == 2, RunStep.step == step)).one()
        skipped = s.scalars(select(RunStep.step).where(RunStep.run_id == 2, RunStep.status == "skipped")
                               .order_by(RunStep.position)).all()
    assert runs == {1: "crashed", 2: "done"}
    assert crashed_step.status == "crashed" and redone.status == "done"
    assert skipped == list(NIGHTLY_STEPS[:NIGHTLY_STEPS.index(step)])  # finished work is not redone
    _debits_once(f)
    outbox = f.data / "outbox"
    assert not outbox.exists() or not [p for p in outbox.iterdir()]  # delivered: nothing left to send


def test_sigterm_stops_after_the_current_step_and_the_rerun_resumes(tmp_path):
    f = Folder(tmp_path)
    f.setup()
    p = f.run("nightly", "--date", THURSDAY.isoformat(), hook={"TEST_TERM_AT": "autopay:start"}, check_code=75)
    assert "interrupted (SIGTERM)" in p.stdout and "not run: originate, send" in p.stdout
    with f.sessions() as sessions, sessions() as s:
        statuses = dict(s.execute(select(RunStep.step, RunStep.status)).all())
        run = s.scalars(select(Run)).one()
    assert statuses["import"] == "done" and statuses["autopay"] == "done"  # the current step finished
    assert {statuses[x] for x in NIGHTLY_STEPS[2:]} == {"not_run"}
    assert run.status == "interrupted" and run.exit_code == 75 and f.count(NachaFile) == 0
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    _debits_once(f)


# -- the lock -------------------------------------------------------------------------------------------

def test_second_run_exits_3_and_changes_nothing(tmp_path):
    f = Folder(tmp_path)
    f.setup()
    before = (f.count(Run), f.count(RunStep), f.count(Payment), f.count(NachaFile))
    with f.sessions() as sessions:
        engine = sessions.kw["bind"]
        with RunLock(engine) as lock:
            with sessions() as s, s.begin():
                lock.record(s, None)
            p = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=3)
    assert "another run holds the lock since 20" in p.stdout and "nothing changed" in p.stdout
    assert (f.count(Run), f.count(RunStep), f.count(Payment), f.count(NachaFile)) == before
    assert not (f.data / "outbox").exists() and not (f.data / "metrics.prom").exists()
    # the lock is free again: the night runs
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)


@pytest.mark.postgres
def test_two_nightly_processes_against_postgresql_exactly_one_works(tmp_path, pg_url):
    f = Folder(tmp_path, db_url=pg_url)
    f.setup()
    # Both start at once; whichever takes the lock holds it a few seconds at its first step.
    hold = {"TEST_SLEEP_AT": "import:start=6"}
    procs = [f.popen("nightly", "--date", THURSDAY.isoformat(), hook=hold) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outs
    loser = outs[[p.returncode for p in procs].index(3)]
    assert "another run holds the lock since" in loser[0] + loser[1]
    with f.sessions() as sessions, sessions() as s:
        runs = s.scalars(select(Run)).all()
    assert len(runs) == 1 and runs[0].status == "done"
    assert runs[0].pid in [p.pid for p in procs]
    _debits_once(f)


# -- in-process: both databases -----------------------------------------------------------------------

def _settings_for(tmp_path: Path, db_url: str):
    return Folder(tmp_path, db_url=db_url)


def test_non_banking_day_builds_nothing_but_returns_are_processed(tmp_path, db_url):
    f = _settings_for(tmp_path, db_url)
    keyring = f.setup()
    settings = f.settings
    with f.sessions() as sessions:
        first = run_pipeline(settings, sessions, keyring, FRIDAY, exit_codes=EXIT_CODES)
        assert first.exit_code == 0 and first.totals()["files_built"] == 1
        answer = simulate_bank(settings.bank_folder / "incoming", settings.bank_folder / "outgoing", FRIDAY)
        assert len(answer.returns) == 2 and len(answer.nocs) == 1
        # a payment made on Saturday waits for Monday: nothing is built on a Saturday
        with sessions() as s, s.begin():
            model = s.scalars(select(Payment).where(Payment.channel == "portal")).first()
            s.add(Payment(confirmation_id="PC-SATURDAY", channel="portal", member_id=model.member_id,
                          plan_id=model.plan_id, coverage_month=model.coverage_month, amount_cents=1000,
                          bank_account_id=model.bank_account_id, submitted_at=model.submitted_at, sec_code="WEB",
                          payment_type_code="S", originate_on=SATURDAY, state="pending"))
        sat = run_pipeline(settings, sessions, keyring, SATURDAY, exit_codes=EXIT_CODES)
        steps = {x.step: x for x in sat.steps}
        assert "not a Federal Reserve banking day" in steps["originate"].note
        assert steps["originate"].counts["files"] == 0
        assert steps["returns_fetch"].counts["received"] == 2
        assert steps["returns_process"].counts["returns"] == 2 and steps["returns_process"].counts["nocs"] == 1
        with sessions() as s:
            assert s.scalar(select(func.count()).select_from(NachaFile)) == 1
            assert s.scalar(select(func.count()).select_from(PaymentReturn)) == 2
            assert s.scalar(select(Payment.state).where(Payment.confirmation_id == "PC-SATURDAY")) == "pending"


def test_dry_run_changes_nothing(tmp_path, db_url):
    f = _settings_for(tmp_path, db_url)
    keyring = f.setup()
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copyfile(SAMPLES / "premiums.csv", drop / "premiums-extra.csv")
    f.vars["ACHBATCH_PATHS__DROP_DIR"] = str(drop)

    def snapshot():
        tables = (Run, RunStep, Payment, NachaFile, FileEntry)
        counts = tuple(f.count(t) for t in tables)
        with f.sessions() as sessions, sessions() as s:
            states = sorted(s.execute(select(Payment.id, Payment.state)).all())
        files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "achbatch.db" not in p.name)
        return counts, states, files

    before = snapshot()
    with f.sessions() as sessions:
        r = run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES, dry_run=True)
    assert r.exit_code == 0 and r.run_id is None
    steps = {x.step: x for x in r.steps}
    assert steps["autopay"].counts["pulls"] == 2  # really computed ...
    assert steps["originate"].counts["entries"] == 5 and "would build ACH-20260122-A.ach" in steps["originate"].note
    assert "would write" in steps["reports"].note
    assert snapshot() == before  # ... and rolled back: no row, no file, no lock file, no metrics


def test_a_step_whose_service_is_missing_is_reported_not_available(tmp_path, db_url, monkeypatch):
    f = _settings_for(tmp_path, db_url)
    keyring = f.setup()

    def missing(ctx):
        raise ImportError("No module named 'batch.bank.delivery'")  # a broken installation

    monkeypatch.setitem(STEPS, "send", Step("send", "send", "batch.bank.delivery.send_files", missing))
    with f.sessions() as sessions:
        r = run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
        with sessions() as s:
            row = s.scalars(select(RunStep).where(RunStep.step == "send")).one()
    assert r.status == "failed" and r.exit_code == 2
    assert row.status == "unavailable" and "not available in this build" in row.error and row.done_key is None
    assert "not available: send" in r.summary
    assert {x.status for x in r.steps if x.step != "send"} == {"done"}


def test_an_unexpected_error_fails_the_step_only(tmp_path, db_url, monkeypatch):
    f = _settings_for(tmp_path, db_url)
    keyring = f.setup()

    def boom(ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(STEPS, "coverage", Step("coverage", "coverage", "x", boom))
    events = []
    with f.sessions() as sessions:
        r = run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES,
                         emit=lambda e, fields: events.append((e, fields)))
    cov = next(x for x in r.steps if x.step == "coverage")
    assert cov.status == "failed" and "RuntimeError: disk on fire" in cov.error and r.exit_code == 1
    assert next(x for x in r.steps if x.step == "reports").status == "done"
    assert any(e == "step_error" and "disk on fire" in fl["traceback"] for e, fl in events)


# -- pure parts -----------------------------------------------------------------------------------------

def test_exit_code_precedence():
    assert exit_code_for([]) == 0
    assert exit_code_for([0, 1, 0]) == 1
    assert exit_code_for([1, 75, 0]) == 75  # a retry may finish the night; data problems stay reported
    assert exit_code_for([75, 2, 1]) == 2  # a human must act first


def test_summary_line_names_files_entries_dollars_returns_flags():
    r = RunResult("nightly", THURSDAY, False, run_id=7, status="tempfail", outcome=Outcome.TEMPORARY,
                  exit_codes=EXIT_CODES)
    r.steps = [
        StepResult("originate", "done", counts={"files": 2, "entries": 1234, "cents": 123456789}),
        StepResult("send", "tempfail", outcome=Outcome.TEMPORARY, counts={"sent": 1, "unsent": 1}),
        StepResult("returns_process", "done", counts={"returns": 3, "nocs": 2, "review_items": 1},
                   problems=["x"]),
        StepResult("coverage", "done", counts={"at_risk": 4}),
        StepResult("reports", "unavailable", outcome=Outcome.CONFIG),
    ]
    line = summary_line(r)
    assert line.startswith("nightly 2026-01-22: incomplete (temporary failure) in 0.0s (run 7): ")
    assert "files 2 built, 1 sent, 1 unsent; entries 1,234, $1,234,567.89; returns 3 (2 NOCs, 1 for review); " \
           "flags 4 at risk; not available: reports; to retry: send; 1 data problem; exit 75" in line
    assert "\n" not in line


def test_summary_line_counts_a_balanced_files_offset_entry_and_says_so():
    r = RunResult("nightly", THURSDAY, False, run_id=8, status="done", outcome=Outcome.DONE,
                  exit_codes=EXIT_CODES)
    r.steps = [StepResult("originate", "done", counts={"files": 1, "entries": 3, "payments": 2,
                                                      "offset_entries": 1, "cents": 2000})]
    assert "files 1 built, 0 sent; entries 3 (1 offset), $20.00;" in summary_line(r)


def test_progress_redraws_on_a_terminal_and_logs_plain_lines_otherwise():
    import io
    import logging

    from jobs.logging_setup import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    logger = logging.getLogger("test-progress")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    tty = Tty()
    p = Progress(logger, stream=tty)
    p("originate", 10000, "entries")
    p("originate", 20000, "entries")
    p.clear()
    assert tty.getvalue().count("\r  originate: ") == 2 and "20,000 entries" in tty.getvalue() and records == []
    plain = io.StringIO()
    q = Progress(logger, stream=plain, every_s=3600)
    q("import", 1000, "rows")
    q("import", 2000, "rows")  # within the interval: not repeated
    assert plain.getvalue() == ""
    assert [r.getMessage() for r in records] == ["import: 1,000 rows so far"]


def test_database_unreachable_exit_75_and_no_schema_exit_2(tmp_path):
    down = Folder(tmp_path / "a", db_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    (tmp_path / "a").mkdir()
    p = down.run("nightly", "--date", THURSDAY.isoformat())
    assert p.returncode == 75 and "cannot open the database" in p.stderr
    assert down.run("status").returncode == 75
    fresh = Folder(tmp_path / "b")
    (tmp_path / "b").mkdir()
    p = fresh.run("nightly", "--date", THURSDAY.isoformat())
    assert p.returncode == 2 and "achbatch db upgrade" in p.stderr


# -- PGP through the nightly pipeline -------------------------------------------------------------------

def test_nightly_with_pgp_encrypts_the_sent_file_and_decrypts_the_fetched_returns(tmp_path, gpg_pair):
    """`achbatch nightly` with `[bank] pgp_recipient`, `pgp_home` and `pgp_decrypt_inbound` set: the
    send step encrypts to the bank's key, the fetch step decrypts what the bank encrypted to ours."""
    from batch.collect.origination import stored_bytes
    from batch.bank.pgp import Pgp

    bank_key, our_key = gpg_pair
    f = Folder(tmp_path, bank__pgp_recipient=bank_key.fingerprint, bank__pgp_home=our_key.path,
               bank__pgp_decrypt_inbound="true")
    keyring = f.setup()
    p = f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    assert "files 1 built, 1 sent" in p.stdout
    bank = f.data / "bank"
    assert sorted(x.name for x in (bank / "incoming").iterdir()) == ["ACH-20260122-A.ach.pgp"]
    sent = (bank / "incoming" / "ACH-20260122-A.ach.pgp").read_bytes()
    assert Pgp.looks_encrypted(sent) and b"PREMIUM" not in sent
    plain = bank_key.gpg.decrypt(sent)
    assert plain.ok, plain.status
    with f.sessions() as sessions, sessions() as s:
        row = s.scalars(select(NachaFile)).one()
        assert plain.data == stored_bytes(keyring, row)  # our NACHA bytes, encrypted to the bank's key

    # The bank answers (R01, R10, C01) and encrypts each answer file to our key.
    (tmp_path / "bank-plain" / "in").mkdir(parents=True)
    (tmp_path / "bank-plain" / "in" / "ACH-20260122-A.ach").write_bytes(plain.data)
    answer = simulate_bank(tmp_path / "bank-plain" / "in", tmp_path / "bank-plain" / "out", FRIDAY)
    assert len(answer.files) == 2 and len(answer.returns) == 2 and len(answer.nocs) == 1
    for path in answer.files:
        enc = bank_key.gpg.encrypt(path.read_bytes(), [our_key.fingerprint], armor=False, always_trust=True)
        assert enc.ok, enc.status
        (bank / "outgoing" / f"{path.name}.pgp").write_bytes(enc.data)

    # exit 1: the reports warn that the R10 puts the unauthorized return rate over its threshold
    p = f.run("nightly", "--date", FRIDAY.isoformat(), check_code=1)
    assert "returns 2 (1 NOC); flags 2 at risk; 2 data problems; exit 1" in p.stdout
    with f.sessions() as sessions, sessions() as s:
        steps = {x.step: x for x in s.scalars(select(RunStep).where(RunStep.business_date == FRIDAY))}
        assert steps["returns_fetch"].status == "done" and json.loads(steps["returns_fetch"].counts)["received"] == 2
        assert steps["returns_process"].status == "done"
        assert json.loads(steps["returns_process"].counts)["rejected_files"] == 0
        assert {x.step for x in steps.values() if x.status != "done"} == set()
        assert "returns report: " in steps["reports"].note and "unauthorized" in steps["reports"].note
        assert s.scalar(select(func.count()).select_from(PaymentReturn)) == 2
    inbox = {x.name: x.read_bytes() for x in (f.data / "inbox").iterdir() if x.is_file()}
    for path in answer.files:  # decrypted into the inbox under the plain name
        assert inbox.get(path.name) == path.read_bytes()
