"""Business dates cannot go backwards by accident (`python -m jobs` in subprocesses, SQLite, embedded
defaults): a nightly run or `originate` for a date earlier than the latest already run, and not run
before, exits 2 naming both dates and changes nothing; `--allow-earlier-date` runs it and the run
ledger records it; a date already run stays a no-op; a non-existent day is named as such."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest


def run(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def ledger(cwd):
    con = sqlite3.connect(cwd / "achbatch-data" / "achbatch.db")
    try:
        runs = con.execute("SELECT business_date, status, summary FROM runs ORDER BY id").fetchall()
        steps = con.execute("SELECT count(*) FROM run_steps").fetchone()[0]
        return runs, steps
    finally:
        con.close()


def test_an_earlier_date_is_refused_unless_allowed(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0
    p = run(tmp_path, "nightly", "--date", "2026-12-28")
    assert p.returncode == 0, p.stderr
    before = ledger(tmp_path)

    p = run(tmp_path, "nightly", "--date", "2026-12-24")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "2026-12-24" in p.stderr and "2026-12-28" in p.stderr and "--allow-earlier-date" in p.stderr
    assert ledger(tmp_path) == before  # nothing changed: no run row, no step
    p = run(tmp_path, "nightly", "--date", "2026-12-24", "--dry-run")
    assert p.returncode == 2 and ledger(tmp_path) == before

    p = run(tmp_path, "originate", "--date", "2026-12-23")
    assert p.returncode == 2 and "2026-12-23" in p.stderr and "2026-12-28" in p.stderr
    assert ledger(tmp_path) == before

    # the date already run: a no-op, not refused
    p = run(tmp_path, "nightly", "--date", "2026-12-28")
    assert p.returncode == 0 and "nothing to do" in p.stdout, p.stdout + p.stderr

    p = run(tmp_path, "nightly", "--date", "2026-12-24", "--allow-earlier-date")
    assert p.returncode == 0, p.stderr
    runs, _steps = ledger(tmp_path)
    assert runs[-1][0] == "2026-12-24" and "earlier than 2026-12-28, allowed by --allow-earlier-date" in runs[-1][2]
    # 2026-12-24 is now a date already run: again, it is a no-op without the flag
    p = run(tmp_path, "nightly", "--date", "2026-12-24")
    assert p.returncode == 0 and "nothing to do" in p.stdout, p.stdout + p.stderr

    p = run(tmp_path, "originate", "--date", "2026-12-23", "--allow-earlier-date")
    assert p.returncode == 0, p.stderr
    assert "allowed by --allow-earlier-date" in p.stderr

    # polls, assessment and reports take any date
    for args in (["nightly", "--returns-only", "--date", "2026-12-01"], ["coverage", "assess", "--date", "2026-12-01"],
                 ["report", "coverage", "--date", "2026-12-01"]):
        p = run(tmp_path, *args)
        assert p.returncode == 0, (args, p.stderr)



def test_originate_by_itself_records_its_override_in_the_run_ledger(tmp_path):
    """issue 14: "the override is recorded in the run ledger": a nightly run did (runs.summary);
    `originate --allow-earlier-date` run by itself printed it on stderr only. Now it leaves a
    `runs` row of kind 'originate' naming both dates; a dry run, or an originate that needs no
    override, leaves none."""
    def originate_runs():
        con = sqlite3.connect(tmp_path / "achbatch-data" / "achbatch.db")
        try:
            return con.execute("SELECT business_date, status, exit_code, summary FROM runs "
                               "WHERE kind = 'originate' ORDER BY id").fetchall()
        finally:
            con.close()

    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "nightly", "--date", "2026-12-28").returncode == 0
    status_before = run(tmp_path, "status").returncode
    p = run(tmp_path, "originate", "--date", "2026-12-23", "--allow-earlier-date", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert originate_runs() == []
    p = run(tmp_path, "originate", "--date", "2026-12-23", "--allow-earlier-date")
    assert p.returncode == 0, p.stderr
    [(day, status, code, summary)] = originate_runs()
    assert (day, status, code) == ("2026-12-23", "done", 0)
    assert summary.startswith("originate 2026-12-23 (earlier than 2026-12-28, allowed by --allow-earlier-date): ")
    assert "run ledger (run " in p.stderr
    p = run(tmp_path, "originate", "--date", "2026-12-29")  # later: no override, nothing recorded
    assert p.returncode == 0, p.stderr
    assert len(originate_runs()) == 1
    assert run(tmp_path, "status").returncode == status_before  # status reads the ledger as before


@pytest.mark.parametrize("value, says", [("2026-02-30", "February 2026 has no day 30"),
                                         ("2026-13-01", "there is no month 13"),
                                         ("26-01-02", "is not a date (YYYY-MM-DD)")])
def test_a_date_that_does_not_exist_is_named(tmp_path, value, says):
    p = run(tmp_path, "report", "coverage", "--date", value)
    assert p.returncode == 2 and says in p.stderr, p.stderr
