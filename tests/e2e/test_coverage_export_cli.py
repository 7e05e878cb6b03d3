"""`achbatch coverage export` through the CLI on SQLite and PostgreSQL, after a nightly run: the
nightly's file beside the reports, an export, a second one empty, `--since` a date or a run
re-exporting, bad `--since` values (exit 2 naming them), the export ledger."""
from __future__ import annotations

import csv
import io

from sqlalchemy import select

from batch.collect.coverage_export import EXPORT_COLUMNS
from batch.store.models import CoverageExport
from test_nightly_support import Folder


def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_cli_coverage_export_and_the_nightly_file(tmp_path, db_url):
    f = Folder(tmp_path, db_url=db_url)
    f.setup()
    f.run("nightly", "--date", "2026-01-22", check_code=0)
    reports = f.settings.reports_dir
    nightly_file = reports / "coverage-export-2026-01-22.csv"
    # the three binders went out tonight (not cleared: pending activation); the others were active
    # before achbatch knew them: nothing to tell yet, the file holds the header
    assert nightly_file.read_text().splitlines() == [",".join(EXPORT_COLUMNS)]
    # their debits (file of Thu 01-22) settle Fri 01-23 and clear Tue 01-27
    f.run("coverage", "assess", "--date", "2026-01-27", check_code=0)
    p = f.run("coverage", "export", "--date", "2026-01-27", check_code=0)
    out = reports / "coverage-export-2026-01-27.csv"
    assert f"3 changes (3 activated); 3 new -> {out}" in p.stdout
    rows = _csv_rows(out.read_text())
    assert sorted((r["member_id"], r["plan_id"], r["change"], r["coverage_month"], r["changed_on"]) for r in rows) == [
        ("M100001", "DENT-BASIC-01", "activated", "2026-02", "2026-01-27"),
        ("M100001", "HLTH-SILVER-01", "activated", "2026-02", "2026-01-27"),
        ("M100004", "HLTH-SILVER-01", "activated", "2026-03", "2026-01-27"),
    ]
    assert {r["previous_status"] for r in rows} == {"pending_activation"}
    p = f.run("coverage", "export", "--date", "2026-01-27", check_code=0)
    assert "0 changes; 0 new" in p.stdout
    second = sorted(reports.glob("coverage-export-2026-01-27.*.csv"))
    assert len(second) == 1 and second[0].read_text().splitlines() == [",".join(EXPORT_COLUMNS)]
    assert out.exists() and len(_csv_rows(out.read_text())) == 3  # never replaced
    p = f.run("coverage", "export", "--date", "2026-01-28", "--since", "2026-01-27", "--out", "-", check_code=0)
    assert len(_csv_rows(p.stdout)) == 3 and "3 changes (3 activated); 0 new, 3 exported again" in p.stderr
    p = f.run("coverage", "export", "--since", "1", "--out", str(tmp_path / "again.csv"), check_code=0)
    assert len(_csv_rows((tmp_path / "again.csv").read_text())) == 3  # run 1: the night of 01-22, and since
    for bad, words in (("2026-02-30", "'2026-02-30' is neither a date"), ("999", "no run 999"),
                       ("yesterday", "'yesterday' is neither a date")):
        p = f.run("coverage", "export", "--since", bad, check_code=2)
        assert words in p.stderr, p.stderr
    with f.sessions() as sessions, sessions() as s:
        ledger = s.execute(select(CoverageExport.row_count, CoverageExport.new_count, CoverageExport.since_run_id)
                           .order_by(CoverageExport.id)).all()
    assert [tuple(r) for r in ledger] == [(0, 0, None), (3, 3, None), (0, 0, None), (3, 0, None), (3, 0, 1)]
