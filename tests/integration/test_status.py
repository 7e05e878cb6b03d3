"""`achbatch status` (batch/report/status.py, jobs/cmd_status.py) and the Prometheus metrics textfile
(batch/report/metrics.py): JSON keys, what needs attention (a file unsent past the cut-off, a failed last
run, a run whose process died) and the exit code that makes status a health check; the metrics
parsed by the Prometheus client's own parser, written atomically, the last success time kept
across a failed run."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from batch.report.metrics import collect, render, write_atomic
from batch.store.models import NachaFile, ReviewItem, Run, RunLockHolder, RunStep
from batch.run.nightly import run_pipeline
from jobs.exitcodes import EXIT_CODES
from batch.report.status import collect_status
from test_nightly_support import SAMPLES, Folder

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
    # the three binders (M100001's two plans, M100004) went out tonight: paid, not cleared yet
    assert data["coverage_by_status"] == {"ok": 3, "pending_activation": 3}
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
    assert _sample(fams, "achbatch_coverage_flags", status="ok") == 3
    assert _sample(fams, "achbatch_coverage_flags", status="pending_activation") == 3
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


# -- attention and warnings (issue 14): each reason ------------------------------------------------

def _reasons(items) -> list[str]:
    return [i["reason"] for i in items]


def test_a_night_with_rejected_rows_needs_attention_until_a_later_night_succeeds(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    f = Folder(tmp_path, paths__drop_dir=drop)
    f.setup()
    (drop / "payments-portal.csv").write_bytes((SAMPLES / "payments-rejected-rows.csv").read_bytes())
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=1)
    p = f.run("status", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 1 and data["ok"] is False
    assert _reasons(data["attention"]) == ["last_run_problems"]
    [item] = data["attention"]
    assert "run 1, 2026-01-22" in item["message"] and "exited 1" in item["message"]
    assert data["needs_attention"] == [item["message"]]  # the contract's list of sentences stays
    f.run("nightly", "--date", "2026-01-23", check_code=0)  # the next night succeeds
    data = json.loads(f.run("status", "--json", check_code=0).stdout)
    assert data["attention"] == [] and data["ok"] is True


def test_an_open_review_item_needs_attention(tmp_path):
    f = Folder(tmp_path)
    keyring = f.setup()
    with f.sessions() as sessions:
        run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
        with sessions() as s, s.begin():
            s.add(ReviewItem(kind="debit_stopped", subject="payment", detail="stopped for the test"))
        report = collect_status(sessions, f.settings)
    assert not report.ok and _reasons(report.attention_items) == ["review_items_open"]
    assert report.attention == ["1 review item is open (listed in the returns report)."]
    p = f.run("status")
    assert p.returncode == 1 and "[review_items_open]" in p.stdout


def test_a_bank_file_received_and_not_processed_needs_attention(tmp_path):
    f = Folder(tmp_path)
    f.setup()
    outgoing = f.data / "bank" / "outgoing"
    outgoing.mkdir(parents=True)
    (outgoing / "RET-1.ach").write_bytes((SAMPLES / "returns.ach").read_bytes())
    f.run("returns", "fetch", check_code=0)
    p = f.run("status", "--json")
    data = json.loads(p.stdout)
    assert p.returncode == 1 and _reasons(data["attention"]) == ["bank_file_unprocessed"]
    assert "RET-1.ach" in data["attention"][0]["message"]


def test_a_lock_held_longer_than_run_timeout_needs_attention(tmp_path):
    import os
    import socket

    f = Folder(tmp_path, schedule__run_timeout="2h")
    f.setup(load=False)
    now = datetime(2026, 1, 22, 23, 0, tzinfo=timezone.utc)
    with f.sessions() as sessions:
        with sessions() as s, s.begin():  # a live process (this one) on this host holds it since 20:00
            s.add(RunLockHolder(name="nightly", host=socket.gethostname(), pid=os.getpid(),
                                since=now - timedelta(hours=3), heartbeat_at=now))
        late = collect_status(sessions, f.settings, now=now)
        within = collect_status(sessions, f.settings, now=now - timedelta(minutes=61))
    assert _reasons(late.attention_items) == ["lock_held_too_long"] and not late.ok
    assert "since 2026-01-22T15:00:00-05:00" in late.attention[0] and "(2h)" in late.attention[0]
    assert within.ok and within.attention_items == []


def test_return_rates_and_coverage_changes_are_warnings_not_alarms(tmp_path):
    # the demo: night 2 applies an R01 and an R10 (rates over the thresholds) and 2 flags change;
    # the night exits 1 only for the rate warning, which stays crossed for 60 days: not an alarm
    f = Folder(tmp_path)
    f.run("demo", "--dir", "d", timeout=120, check_code=0)
    p = subprocess.run([sys.executable, "-m", "jobs", "status", "--json"], cwd=tmp_path / "d",
                       env={k: v for k, v in f.env().items() if not k.startswith("ACHBATCH_PATHS")},
                       capture_output=True, text=True, timeout=120)
    data = json.loads(p.stdout)
    # the demo ends with the morning poll of 2026-01-27 (the bank statement tied out: exit 0)
    assert [(r["kind"], r["business_date"], r["exit_code"]) for r in data["last_runs"][:2]] == [
        ("returns", "2026-01-27", 0), ("nightly", "2026-01-24", 1)]
    assert p.returncode == 0 and data["ok"] is True and data["attention"] == []
    assert _reasons(data["warnings"]) == ["return_rate_over_threshold", "return_rate_over_threshold",
                                          "coverage_flags_changed"]
    assert "unauthorized return rate is 20.00% (1 of 5 entries" in data["warnings"][0]["message"]
    assert data["warnings"][2]["message"].startswith("2 coverage flags changed in the last nightly run")
    fams = _families((tmp_path / "d" / "achbatch-data" / "metrics.prom").read_text())
    assert _sample(fams, "achbatch_warnings", reason="return_rate_over_threshold") == 2
    assert _sample(fams, "achbatch_warnings", reason="coverage_flags_changed") == 1
    assert _sample(fams, "achbatch_attention_items", reason="last_run_problems") == 0


def test_a_returns_poll_that_exited_75_and_leftover_temporaries_are_warnings(tmp_path):
    f = Folder(tmp_path)
    keyring = f.setup()
    with f.sessions() as sessions:
        run_pipeline(f.settings, sessions, keyring, THURSDAY, exit_codes=EXIT_CODES)
        t = datetime(2026, 1, 23, 11, 0, tzinfo=timezone.utc)
        with sessions() as s, s.begin():
            s.add(Run(kind="returns", business_date=date(2026, 1, 23), status="tempfail", exit_code=75, host="h",
                      pid=1, started_at=t, finished_at=t, error="returns_fetch: bank unreachable"))
        (f.data / "outbox").mkdir(exist_ok=True)
        (f.data / "outbox" / ".tmp-ACH-20260123-A.ach.4242").write_bytes(b"half")
        report = collect_status(sessions, f.settings)
    assert report.ok and report.attention_items == []
    assert _reasons(report.warnings) == ["returns_poll_tempfail", "temporary_files_left"]
    assert "exited 75" in report.warnings[0]["message"]
    assert ".tmp-ACH-20260123-A.ach.4242" in report.warnings[1]["message"]
    text = f.run("status", check_code=0).stdout
    assert "warnings:" in text and "[temporary_files_left]" in text and "nothing needs attention" in text


def test_status_times_are_in_the_configured_zone_to_the_second(tmp_path):
    f = Folder(tmp_path, schedule__timezone="Asia/Tokyo")
    f.setup()
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=0)
    data = json.loads(f.run("status", "--json", check_code=0).stdout)
    run = data["last_runs"][0]
    for v in (data["generated_at"], data["last_success_at"], run["started_at"], run["finished_at"],
              run["steps"][0]["started_at"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", v), v
    text = f.run("status", check_code=0).stdout
    assert re.search(r"started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00 on ", text) and "(times in Asia/Tokyo)" in text


def test_metrics_count_attention_items_by_reason(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    f = Folder(tmp_path, paths__drop_dir=drop)
    f.setup()
    (drop / "payments-portal.csv").write_bytes((SAMPLES / "payments-rejected-rows.csv").read_bytes())
    f.run("nightly", "--date", THURSDAY.isoformat(), check_code=1)
    fams = _families((f.data / "metrics.prom").read_text())
    # written at the end of the run itself: the run just finished with exit 1
    assert _sample(fams, "achbatch_attention_items", reason="last_run_problems") == 1
    assert _sample(fams, "achbatch_attention_items", reason="review_items_open") == 0
    assert _sample(fams, "achbatch_warnings", reason="returns_poll_tempfail") == 0
