"""`achbatch status` (batch/report/status.py, jobs/cmd_status.py) and the Prometheus metrics textfile
(batch/report/metrics.py): JSON keys, what needs attention (a file unsent past the cut-off, a failed last
run, a run whose process died) and the exit code that makes status a health check; the metrics
parsed by the Prometheus client's own parser, written atomically, the last success time kept
across a failed run."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from batch.report.metrics import collect, render, write_atomic
from batch.store.models import NachaFile, Run, RunStep
from batch.run.nightly import run_pipeline
from jobs.exitcodes import EXIT_CODES
from batch.report.status import collect_status
from test_nightly_support import Folder

THURSDAY = date(2026, 1, 22)
KEYS = {"generated_at", "database", "last_runs", "lock", "files_awaiting_delivery", "files_awaiting_processing",
        "payments_by_state", "coverage_by_status", "return_rates", "return_rates_as_of", "review_items_open",
        "needs_attention", "ok", "last_success_at"}


def test_status_json_keys_on_a_fresh_database(tmp_path):
    f = Folder(tmp_path)
    f.setup(load=False)
    p = f.run("status", "--json", check_code=0)
    data = json.loads(p.stdout)
    assert KEYS <= set(data)
    assert data["payments_by_state"] == {} and data["coverage_by_status"] == {} and data["last_runs"] == []
    assert data["lock"] == {"held": False, "holder": None} and data["ok"] is True and data["needs_attention"] == []


def test_status_after_a_night(tmp_path):
    f = Folder(tmp_path)
    f.setup()
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    p = f.run("status", "--json", check_code=0)
    data = json.loads(p.stdout)
    pays = data["payments_by_state"]
    assert pays.get("paid") == 1 and pays.get("in_file", 0) + pays.get("sent", 0) == 5 and sum(pays.values()) == 6
    assert data["coverage_by_status"] == {"ok": 6}
    run = data["last_runs"][0]
    assert run["status"] == "done" and run["exit_code"] == 0 and run["business_date"] == "2026-01-22"
    assert [s["step"] for s in run["steps"]][:3] == ["import", "autopay", "originate"]
    assert run["steps"][2]["counts"]["entries"] == 5 and run["totals"]["files_sent"] == 1
    assert data["files_awaiting_delivery"] == [] and data["files_awaiting_processing"] == []
    assert {r["category"] for r in data["return_rates"]} == {"unauthorized", "administrative", "overall"}
    text = f.run("status", check_code=0).stdout
    assert "run 1 nightly 2026-01-22: done (exit 0)" in text and "all well" in text


def test_a_file_unsent_past_the_cutoff_needs_attention(tmp_path):
    f = Folder(tmp_path)
    f.setup()
    f.run("originate", "--date", THURSDAY.isoformat(), check_code=0)  # built, never sent
    p = f.run("status", "--json")
    assert p.returncode == 1
    data = json.loads(p.stdout)
    [unsent] = data["files_awaiting_delivery"]
    assert unsent["file_name"] == "ACH-20260122-A.ach" and unsent["past_cutoff"] is True
    assert unsent["cutoff_at"] == "2026-01-22T21:00:00-05:00"
    assert any("ACH-20260122-A.ach" in a and "cut-off" in a for a in data["needs_attention"])
    # before the cut-off the same file is only waiting, not late
    with f.sessions() as sessions:
        early = collect_status(sessions, f.settings, now=datetime(2026, 1, 22, 20, 30, tzinfo=timezone(timedelta(hours=-5))))
    assert early.ok and early.data["files_awaiting_delivery"][0]["past_cutoff"] is False


def test_a_failed_or_crashed_last_run_needs_attention(tmp_path):
    f = Folder(tmp_path)
    keyring = f.setup()
    with f.sessions() as sessions:
        run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
        assert collect_status(sessions, f.settings).ok
        with sessions() as s, s.begin():
            s.execute(update(Run).values(status="failed", error="send: configuration: host key changed"))
        report = collect_status(sessions, f.settings)
        assert not report.ok and "ended failed: send: configuration: host key changed" in report.attention[0]
        # a run recorded as running whose process is gone (no one holds the lock)
        with sessions() as s, s.begin():
            s.execute(update(Run).values(status="running", pid=2 ** 22 + 7))
        report = collect_status(sessions, f.settings)
        assert any("no process holds the run lock" in a for a in report.attention)
    p = f.run("status")
    assert p.returncode == 1 and "NEEDS ATTENTION" in p.stdout


def test_status_without_schema_exits_2(tmp_path):
    f = Folder(tmp_path)
    p = f.run("status", "--json")
    assert p.returncode == 2 and "achbatch db upgrade" in p.stderr


# -- metrics ----------------------------------------------------------------------------------------

def _families(text: str) -> dict:
    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def _sample(fams, name, **labels):
    for s in fams[name].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(name, labels)


def test_metrics_after_runs(tmp_path):
    f = Folder(tmp_path)
    keyring = f.setup()
    with f.sessions() as sessions:
        first = run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
    text = (f.data / "metrics.prom").read_text()
    fams = _families(text)  # the Prometheus client's parser accepts the file
    assert text.endswith("\n") and text.count("# TYPE achbatch_last_run_entries gauge") == 1
    ok_at = _sample(fams, "achbatch_last_success_timestamp_seconds", kind="nightly")
    assert abs(ok_at - first.finished_at.timestamp()) < 1
    assert _sample(fams, "achbatch_last_run_exit_code", kind="nightly") == 0
    assert _sample(fams, "achbatch_last_run_entries", kind="nightly") == 5
    assert _sample(fams, "achbatch_last_run_originated_dollars", kind="nightly") == 1122.97
    assert _sample(fams, "achbatch_last_run_files_built", kind="nightly") == 1
    assert _sample(fams, "achbatch_last_run_duration_seconds", kind="nightly") >= 0
    assert _sample(fams, "achbatch_step_ok", kind="nightly", step="send") == 1
    assert _sample(fams, "achbatch_returns", category="administrative") == 0
    assert _sample(fams, "achbatch_payments", state="paid") == 1
    assert _sample(fams, "achbatch_coverage_flags", status="ok") == 6
    # a failed run: its exit code shows, the last success time stays that of the earlier run
    with f.sessions() as sessions:
        with sessions() as s, s.begin():
            s.execute(update(RunStep).values(done_key=None))  # make the next run do the steps again
        f.vars["ACHBATCH_PATHS__DROP_DIR"] = str(tmp_path / "missing")
        second = run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
    assert second.exit_code == 2
    fams = _families((f.data / "metrics.prom").read_text())
    assert _sample(fams, "achbatch_last_run_exit_code", kind="nightly") == 2
    assert _sample(fams, "achbatch_last_run_success", kind="nightly") == 0
    assert _sample(fams, "achbatch_last_success_timestamp_seconds", kind="nightly") == ok_at
    assert _sample(fams, "achbatch_step_ok", kind="nightly", step="import") == 0
    assert [p.name for p in f.data.iterdir() if p.name.startswith(".metrics")] == []  # no temporary left


def test_metrics_file_is_replaced_atomically(tmp_path, monkeypatch):
    target = tmp_path / "m" / "achbatch.prom"
    write_atomic(target, "old 1\n")
    import os

    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((str(src), str(dst), target.read_text()))  # the old content is intact until the rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_atomic(target, "new 2\n")
    [(src, dst, before)] = seen
    assert dst == str(target) and src != dst and src.endswith(".tmp") and before == "old 1\n"
    assert target.read_text() == "new 2\n" and sorted(p.name for p in target.parent.iterdir()) == ["achbatch.prom"]


def test_metrics_render_escapes_and_is_parseable():
    snap = {"runs": {}, "steps": {}, "returns_by_category": {'we"ird\\cat\n': 2}, "payments_by_state": {},
            "coverage_by_status": {}, "files_awaiting_delivery": 0}
    fams = _families(render(snap))
    assert _sample(fams, "achbatch_returns", category='we"ird\\cat\n') == 2
    assert _sample(fams, "achbatch_files_awaiting_delivery") == 0


def test_metrics_count_flags_at_risk_by_status():
    snap = {"runs": {}, "steps": {}, "returns_by_category": {}, "payments_by_state": {},
            "coverage_by_status": {"at_risk": 2, "ok": 5, "past_due": 1}, "files_awaiting_delivery": 0}
    fams = _families(render(snap))
    assert _sample(fams, "achbatch_coverage_flags", status="at_risk") == 2
    assert _sample(fams, "achbatch_coverage_flags", status="past_due") == 1


def test_collect_reads_only_what_exists(tmp_path):
    f = Folder(tmp_path)
    f.setup(load=False)
    with f.sessions() as sessions:
        snap = collect(sessions)
    assert snap["runs"] == {} and snap["payments_by_state"] == {}
    assert "achbatch_last_run_timestamp_seconds" not in render(snap)
    assert f.count(NachaFile) == 0
