"""`achbatch demo` (batch/run/demo.py, jobs/cmd_demo.py): two nights with the sample data and a
simulated bank, in a temporary folder, twice (the second run idempotent), each under a minute; the
simulated bank's files are valid NACHA answering entries of the file it received; the demo data
shipped in the package is the repository's sample data."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from batch.run.demo import DEMO_FILES, demo_data_dir, simulate_bank
from datetime import date

from sqlalchemy import func, select

from batch.store.models import FileEntry, PaymentReturn, ReturnFile, ReviewItem, Run, StatementFile, StatementLine
from nacha.reader import read_file, validate_file
from test_nightly_support import SAMPLES, Folder


def test_demo_runs_in_a_fresh_folder_twice(tmp_path):
    f = Folder(tmp_path)
    t0 = time.monotonic()
    first = f.run("demo", "--dir", "d", timeout=120, check_code=0)
    took = time.monotonic() - t0
    assert took < 60, f"demo took {took:.1f}s"
    out = first.stdout
    for text in ("night 1: achbatch nightly --date 2026-01-23", "built ACH-20260123-A.ach: 5 entries, $1,122.97",
                 "return R01 (Insufficient Funds) for M100003", "return R10", "NOC C01 for M100001",
                 "night 2: achbatch nightly --date 2026-01-24",
                 "2026-01-24 is not a Federal Reserve banking day: no file is built",
                 "applied: 2 of 2 returns", "1 of 1 NOC,", "2 termination_pending",
                 "exactly once: 5 entries originated for 5 payments in all (no payment debited twice)",
                 "where things are:", "achbatch-data/reports", "achbatch-data/bank/outgoing",
                 "the bank's BAI2 prior-day report of 2026-01-26",
                 "morning of 2026-01-27: achbatch nightly --returns-only --date 2026-01-27",
                 "BAI-260126.bai: as of 2026-01-26: 2 matched, 0 expected and not posted ($0.00), 0 posted and "
                 "unexplained ($0.00)"):
        assert text in out, f"{text!r} missing from:\n{out}"
    d = tmp_path / "d" / "achbatch-data"
    assert (d / "bank" / "incoming" / "ACH-20260123-A.ach").is_file()
    assert {p.name for p in (d / "bank" / "outgoing").iterdir()} == {"RET-ACH-20260123-A.ach",
                                                                      "NOC-ACH-20260123-A.ach", "BAI-260126.bai"}
    # the bank's answer settles on the day night 1's file settles (Monday 2026-01-26, Julian 026), not
    # before the file was sent; the prior-day report of that day ties out whole
    ret = read_file(d / "bank" / "outgoing" / "RET-ACH-20260123-A.ach", "strict")
    assert {b.header.settlement_date for b in ret.batches} == {"026"}
    demo = Folder(tmp_path / "d")
    with demo.sessions() as sessions, sessions() as s:
        [rf] = [r for r in s.scalars(select(ReturnFile)) if r.returns]
        assert (rf.settlement_date, rf.return_total_cents) == (date(2026, 1, 26), 13150 + 25000)
        lines = s.scalars(select(StatementLine).order_by(StatementLine.line)).all()
        assert [(x.type_code, x.amount_cents, x.nacha_file_id is not None, x.return_file_id == rf.id)
                for x in lines] == [("166", 112297, True, False), ("468", 38150, False, True)]
        assert s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.kind == "bank_unmatched")) == 0
    assert (d / "reports" / "returns-2026-01-24.html").is_file() and (d / "notices" / "manifest.csv").is_file()
    assert (d / "metrics.prom").is_file()
    # again in the same folder: found, nothing done twice
    t0 = time.monotonic()
    second = f.run("demo", "--dir", "d", timeout=120, check_code=0)
    assert time.monotonic() - t0 < 60
    assert "found an earlier demo here" in second.stdout
    assert "nothing to do, every step was already done for 2026-01-23 by run 1" in second.stdout
    assert "already answered earlier" in second.stdout
    assert "exactly once: 5 entries originated for 5 payments" in second.stdout
    assert "already written earlier" in second.stdout and "bank_statement   ok  no new statement" in second.stdout
    # two nights and a morning each time; the statement tied out once
    assert demo.count(FileEntry) == 5 and demo.count(PaymentReturn) == 2 and demo.count(Run) == 6
    assert demo.count(StatementFile) == 1


def test_demo_data_is_the_sample_data():
    for name in DEMO_FILES:
        assert (demo_data_dir() / name).read_bytes() == (SAMPLES / name).read_bytes(), name


def test_demo_data_ships_with_the_package():
    import batch.run.demo_data

    assert Path(batch.run.demo_data.__file__).parent == demo_data_dir()


def test_simulated_bank_answers_entries_of_the_file_it_received(tmp_path):
    incoming, outgoing = tmp_path / "incoming", tmp_path / "outgoing"
    incoming.mkdir()
    (incoming / "debits.ach").write_bytes((SAMPLES / "debits-web-ppd-tel.ach").read_bytes())
    sent = read_file(incoming / "debits.ach", "strict")
    by_trace = {e.record.trace_number: e.record for e in sent.entries()}
    answers = {("M100234567", 45210): "R01", ("M100789012", 64000): "R02", ("M100345678", 31877): "C01"}
    a = simulate_bank(incoming, outgoing, __import__("datetime").date(2026, 1, 20), answers)
    assert [p.name for p in a.files] == ["RET-debits.ach", "NOC-debits.ach"]
    for p in a.files:
        r = validate_file(p, "strict")
        assert r.issues == [], r.issues
    ret = read_file(outgoing / "RET-debits.ach", "strict")
    got = {}
    for e in ret.entries():
        add = e.addenda[0]
        orig = by_trace[add.original_entry_trace_number]
        assert e.record.amount == orig.amount and e.record.dfi_account_number == orig.dfi_account_number
        assert e.record.transaction_code == str(int(orig.transaction_code) - 1)
        assert e.record.receiving_dfi_identification == "02100002"  # back to the ODFI
        got[orig.individual_identification_number.strip()] = add.return_reason_code
    assert got == {"M100234567": "R01", "M100789012": "R02"}
    [noc] = list(read_file(outgoing / "NOC-debits.ach", "strict").entries())
    assert noc.record.amount == 0 and noc.addenda[0].change_code == "C01"
    assert noc.addenda[0].corrected_data.strip() == "88120044791"  # last two digits swapped
    again = simulate_bank(incoming, outgoing, __import__("datetime").date(2026, 1, 20), answers)
    assert again.files == [] and len(again.existing) == 2  # answered once


INSTALLED_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import batch, jobs
assert batch.__file__.startswith(sys.argv[1]), batch.__file__
assert jobs.__file__.startswith(sys.argv[1]), jobs.__file__
from jobs.cli import cli
cli.main(sys.argv[2:], prog_name="achbatch")
"""


@pytest.mark.slow
def test_an_installed_copy_finds_its_demo_data_and_templates(tmp_path):
    """Build the wheel, install it into a folder of its own, and run the demo and the unit rendering
    from there, outside the repository: the demo data and the templates travel as package data."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                        str(root)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    [wheel] = list((tmp_path / "dist").glob("achbatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"batch/run/demo_data/{n}" for n in DEMO_FILES} <= names
    assert {"jobs/templates/achbatch-nightly.service.j2", "jobs/templates/achbatch.crontab.j2",
            "jobs/templates/install.sh.j2", "jobs/templates/uninstall.sh.j2",
            "batch/store/migrations/versions/0004_runs.py"} <= names
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ACHBATCH_") and k != "PYTHONPATH"}
    demo = subprocess.run([sys.executable, "-c", INSTALLED_RUN, str(site), "demo", "--dir", "d"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "exactly once: 5 entries originated for 5 payments" in demo.stdout
    units = subprocess.run([sys.executable, "-c", INSTALLED_RUN, str(site), "deploy", "systemd", "--exe", "/bin/true",
                            "--workdir", "/srv/achbatch"],  # not under /tmp: the units' PrivateTmp would hide it
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert units.returncode == 0 and "OnCalendar=*-*-* 20:00:00 America/New_York" in units.stdout
