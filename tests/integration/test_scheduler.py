"""The built-in scheduler (jobs/cmd_schedule.py): the job table from [schedule], the cron trigger
math across daylight saving time, firing at the configured time under a controlled clock (the
scheduler's own job-processing loop turned by hand, datetime.now replaced: no real waiting),
misfire grace and coalescing, and the `achbatch schedule` process: --list, one per host, a real
run when its time comes, SIGTERM."""
from __future__ import annotations

import signal
import subprocess
import sys
import time as _time
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import apscheduler.executors.base
import apscheduler.schedulers.base
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select

from batch.config import Settings
from batch.store.models import Run
from jobs.cmd_schedule import configure_scheduler, job_specs, make_scheduler
from test_nightly_support import Folder

NY = ZoneInfo("America/New_York")


def settings(**schedule) -> Settings:
    return Settings.model_validate({"schedule": schedule})


class ManualScheduler(BaseScheduler):
    """A scheduler without a thread: the test turns its job-processing loop (`_process_jobs`)."""

    def shutdown(self, wait=True):
        super().shutdown(wait)

    def wakeup(self):
        pass


class Clock:
    def __init__(self, now: datetime):
        self.now = now


@pytest.fixture
def clock(monkeypatch):
    c = Clock(datetime(2026, 3, 6, 19, 59, 59, tzinfo=NY))

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return c.now.astimezone(tz) if tz else c.now.astimezone(timezone.utc).replace(tzinfo=None)

    # APScheduler reads the time only through these two modules' `datetime.now`.
    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", FakeDatetime)
    monkeypatch.setattr(apscheduler.executors.base, "datetime", FakeDatetime)
    return c


def _scheduler(s: Settings, calls: list, events: list):
    sched = make_scheduler(s, scheduler_cls=ManualScheduler, executor=DebugExecutor())
    configure_scheduler(sched, s, lambda kind: calls.append(kind))
    sched.add_listener(lambda e: events.append(e.code), EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    sched.start()
    return sched


# -- the job table and the trigger math ------------------------------------------------------------

def test_job_table_from_settings():
    s = settings(nightly_at="19:30", timezone="America/Chicago", returns_poll_at=["13:00", "06:15"],
                 misfire_grace_minutes=45)
    specs = job_specs(s)
    assert [(x.id, x.kind) for x in specs] == [("nightly", "nightly"), ("returns-0615", "returns"),
                                               ("returns-1300", "returns")]
    assert all(x.misfire_grace_time == 45 * 60 for x in specs)
    assert all(str(x.trigger.timezone) == "America/Chicago" for x in specs)
    sched = make_scheduler(s, scheduler_cls=ManualScheduler, executor=DebugExecutor())
    jobs = configure_scheduler(sched, s, lambda kind: None)
    assert [(j.id, j.args, j.coalesce, j.max_instances, j.misfire_grace_time) for j in jobs] == [
        ("nightly", ("nightly",), True, 1, 2700), ("returns-0615", ("returns",), True, 1, 2700),
        ("returns-1300", ("returns",), True, 1, 2700)]


def test_environment_gives_several_poll_times():
    from jobs.settings import load_settings

    s = load_settings(None, environ={"ACHBATCH_SCHEDULE__RETURNS_POLL_AT": "13:00, 06:00"})
    assert s.schedule.returns_poll_at == (time(6), time(13))


@pytest.mark.parametrize("now, expected", [
    # an ordinary evening, before and after the run
    (datetime(2026, 3, 6, 12, 0, tzinfo=NY), datetime(2026, 3, 6, 20, 0, tzinfo=NY)),
    (datetime(2026, 3, 6, 20, 0, 1, tzinfo=NY), datetime(2026, 3, 7, 20, 0, tzinfo=NY)),
    # the day clocks spring forward: 20:00 EDT is 00:00 UTC, not 01:00
    (datetime(2026, 3, 8, 12, 0, tzinfo=NY), datetime(2026, 3, 9, 0, 0, tzinfo=timezone.utc)),
    # the day clocks fall back: 20:00 EST is 01:00 UTC
    (datetime(2026, 11, 1, 12, 0, tzinfo=NY), datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)),
])
def test_nightly_fires_at_20_00_new_york_time_whatever_the_offset(now, expected):
    trigger = job_specs(settings())[0].trigger
    nxt = trigger.get_next_fire_time(None, now)
    assert nxt == expected and nxt.astimezone(NY).hour == 20


# -- firing under a controlled clock ---------------------------------------------------------------

def test_the_job_fires_at_its_time_and_not_before(clock):
    calls, events = [], []
    sched = _scheduler(settings(), calls, events)
    job = sched.get_job("nightly")
    assert job.next_run_time == datetime(2026, 3, 6, 20, 0, tzinfo=NY)
    wait = sched._process_jobs()  # 19:59:59: nothing due; it would sleep about a second
    assert calls == [] and 0 < wait <= 1
    clock.now = datetime(2026, 3, 6, 20, 0, 0, 500000, tzinfo=NY)
    sched._process_jobs()
    assert calls == ["nightly"] and events == [EVENT_JOB_EXECUTED]
    assert sched.get_job("nightly").next_run_time == datetime(2026, 3, 7, 20, 0, tzinfo=NY)
    clock.now = datetime(2026, 3, 7, 6, 0, 0, tzinfo=NY)  # the morning returns poll
    sched._process_jobs()
    assert calls == ["nightly", "returns"]
    sched.shutdown()


def test_a_fire_missed_by_more_than_the_grace_is_skipped(clock):
    calls, events = [], []
    sched = _scheduler(settings(misfire_grace_minutes=60), calls, events)
    sched.remove_job("returns-0600")
    clock.now = datetime(2026, 3, 6, 20, 59, tzinfo=NY)  # 59 minutes late: still runs
    sched._process_jobs()
    assert calls == ["nightly"]
    clock.now = datetime(2026, 3, 7, 21, 30, tzinfo=NY)  # the next night, 90 minutes late: skipped
    sched._process_jobs()
    assert calls == ["nightly"] and events == [EVENT_JOB_EXECUTED, EVENT_JOB_MISSED]
    assert sched.get_job("nightly").next_run_time == datetime(2026, 3, 8, 20, 0, tzinfo=NY)
    sched.shutdown()


def test_missed_fires_coalesce_into_one_run(clock):
    calls, events = [], []
    s = settings(misfire_grace_minutes=720, returns_poll_at="06:00")
    sched = _scheduler(s, calls, events)
    sched.remove_job("returns-0600")
    # the process was frozen from Friday 19:59:59 to Saturday 21:00: two nightly fires passed; the
    # first is 25 hours late (beyond the 12-hour grace), the second one hour late
    clock.now = datetime(2026, 3, 7, 21, 0, tzinfo=NY)
    sched._process_jobs()
    assert calls == ["nightly"]
    assert events == [EVENT_JOB_EXECUTED]  # coalesced: the stale fire is not even reported missed
    sched.shutdown()


# -- the `achbatch schedule` process -----------------------------------------------------------------

def test_schedule_list_prints_the_jobs_and_next_times(tmp_path):
    f = Folder(tmp_path, schedule__nightly_at="21:15", schedule__returns_poll_at="05:30,12:00")
    p = f.run("schedule", "--list", check_code=0)
    lines = p.stdout.strip().splitlines()
    assert [x.split(":")[0] for x in lines] == ["nightly", "returns-0530", "returns-1200"]
    assert "every day at 21:15 America/New_York" in lines[0] and "misfire grace 60 min, coalesce" in lines[0]
    nxt = datetime.fromisoformat(lines[0].split("; next ")[1].split(";")[0])
    assert nxt.astimezone(NY).time() == time(21, 15) and nxt > datetime.now(timezone.utc)


def _wait_for(stream, text: str, timeout: float = 60) -> str:
    seen = []
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} not seen; got:\n{''.join(seen)}")


def test_scheduler_runs_the_night_when_due_one_per_host_and_stops_on_sigterm(tmp_path):
    start = datetime.now(timezone.utc) + timedelta(seconds=15)  # after the process is up
    f = Folder(tmp_path, schedule__timezone="UTC", schedule__nightly_at=start.strftime("%H:%M:%S"),
               schedule__returns_poll_at=(start - timedelta(hours=12)).strftime("%H:%M:%S"))
    f.setup()
    p = f.popen("schedule")
    try:
        _wait_for(p.stderr, "scheduler started")
        second = f.run("schedule", timeout=60)
        assert second.returncode == 3 and "another scheduler is already running" in second.stderr
        out = _wait_for(p.stderr, "scheduled nightly run", timeout=90)
        assert "step 9/9 reports" in out
        with f.sessions() as sessions, sessions() as s:
            run = s.scalars(select(Run)).one()
        assert run.status == "done" and run.pid == p.pid
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "scheduler stopped" in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_scheduler_stops_cleanly_on_sigterm_when_idle(tmp_path):
    f = Folder(tmp_path)
    f.setup(load=False)
    p = f.popen("schedule", "--log-format", "json")
    try:
        _wait_for(p.stderr, "scheduler_started")
        t0 = _time.monotonic()
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and _time.monotonic() - t0 < 15
        assert '"event": "scheduler_stopped"' in err and '"event": "stopping"' in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_scheduler_module_builds_nothing_at_import():
    code = ("import jobs.cmd_schedule, apscheduler.schedulers.base as b, gc; "
            "print(sum(isinstance(o, b.BaseScheduler) for o in gc.get_objects()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"
