"""`achbatch schedule [--list] [--log-format text|json]`: the built-in scheduler (APScheduler 3.x,
BlockingScheduler) in the foreground. Jobs come from `[schedule]`: the nightly run at `nightly_at`
and the returns poll at each `returns_poll_at`, in `timezone`.

Run one scheduler process per host (a second one on the same host and data folder exits 3). Two
hosts may each run one for availability: the run lock in the database (not the scheduler) makes
sure only one of them works at a time, and the run ledger makes the later one find the night done.
SIGTERM stops it cleanly: a run in progress stops after its current step (the next run resumes it).
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime

import click
from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from . import exitcodes
from .cmd_nightly import StopFlag, execute_run
from .logging_setup import log_format_option, setup_logging
from .settings import open_keyring, settings_from_context

__all__ = ["JobSpec", "configure_scheduler", "job_specs", "make_scheduler"]


@dataclass(frozen=True)
class JobSpec:
    id: str
    kind: str  # the pipeline it runs: 'nightly' or 'returns'
    trigger: CronTrigger
    # How late (seconds) a missed fire may still run. APScheduler drops a fire it notices later than
    # this (process suspended, host busy, clock jump) instead of running it at a surprising hour.
    misfire_grace_time: int
    description: str


def job_specs(settings) -> list[JobSpec]:
    """The job table from `[schedule]` (pure: no scheduler, no clock)."""
    sch = settings.schedule
    zone = sch.zone
    # nightly_at + grace should stay before midnight: a run after midnight would take the next
    # business date's slot (its steps recorded done early, that evening's payments a day late).
    # The default hour of grace still makes a late run meet the usual cut-off; nothing is lost when a
    # night is skipped: the next run originates everything due up to its date and fetches every file.
    grace = sch.misfire_grace_minutes * 60
    t = sch.nightly_at
    specs = [JobSpec("nightly", "nightly",
                     CronTrigger(hour=t.hour, minute=t.minute, second=t.second, timezone=zone), grace,
                     f"nightly run every day at {t:%H:%M} {sch.timezone}")]
    for p in sch.returns_poll_at:
        specs.append(JobSpec(f"returns-{p:%H%M}", "returns",
                             CronTrigger(hour=p.hour, minute=p.minute, second=p.second, timezone=zone), grace,
                             f"returns poll every day at {p:%H:%M} {sch.timezone}"))
    return specs


def make_scheduler(settings, *, scheduler_cls=BlockingScheduler, executor=None):
    """A scheduler whose jobs never overlap in this process: one worker thread, one instance per
    job. coalesce=True: fires missed while the process was stopped or busy collapse into ONE run
    (running the same night five times in a row would only find it done four times)."""
    return scheduler_cls(
        timezone=settings.schedule.zone,
        executors={"default": executor or ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": settings.schedule.misfire_grace_minutes * 60},
    )


def configure_scheduler(scheduler, settings, run_job) -> list:
    """Add the jobs of `job_specs` to `scheduler`; `run_job(kind)` does the work."""
    jobs = []
    for spec in job_specs(settings):
        jobs.append(scheduler.add_job(run_job, spec.trigger, args=[spec.kind], id=spec.id, name=spec.description,
                                      misfire_grace_time=spec.misfire_grace_time, coalesce=True, max_instances=1,
                                      replace_existing=True))
    return jobs


def _one_per_host(settings) -> int | None:
    """flock on <data_dir>/scheduler.lock: None when another scheduler of this data folder runs."""
    path = settings.data_dir / "scheduler.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@click.command("schedule")
@click.option("--list", "list_only", is_flag=True, help="Print the jobs and their next run times, then exit.")
@log_format_option
@click.pass_context
def schedule_cmd(ctx: click.Context, list_only: bool, log_format: str) -> None:
    """Run the built-in scheduler in the foreground (nightly run and returns polls from [schedule]).
    SIGTERM or Ctrl-C stops it; a run in progress stops after its current step."""
    settings = settings_from_context(ctx)
    if list_only:
        now = datetime.now(settings.schedule.zone)
        for spec in job_specs(settings):
            nxt = spec.trigger.get_next_fire_time(None, now)
            click.echo(f"{spec.id}: {spec.description}; next {nxt.isoformat()}; "
                       f"misfire grace {spec.misfire_grace_time // 60} min, coalesce")
        sys.exit(exitcodes.OK)
    logger = setup_logging(log_format)
    fd = _one_per_host(settings)
    if fd is None:
        click.echo(f"achbatch: another scheduler is already running for {settings.data_dir} on this host "
                   "(one per host); nothing started", err=True)
        sys.exit(exitcodes.LOCKED)
    keyring = open_keyring(settings)
    stop = StopFlag()
    busy = threading.Lock()

    def run_job(kind: str) -> None:
        if stop():
            return
        with busy:
            d = datetime.now(settings.origination.zone).date()
            code, _ = execute_run(settings, keyring, d, kind=kind, logger=logger, should_stop=stop,
                                  echo=lambda line: None)
            logger.info("scheduled %s run for %s exited %s", kind, d, code,
                        extra={"event": "job_done", "kind": kind, "business_date": d.isoformat(), "exit_code": code})

    scheduler = make_scheduler(settings)
    configure_scheduler(scheduler, settings, run_job)

    main_done = threading.Event()

    def on_signal(signum, _frame):
        if stop():
            return
        stop.set()
        logger.info("%s received: stopping after the current step", signal.Signals(signum).name,
                    extra={"event": "stopping"})

    def stopper() -> None:
        # Not from inside the signal handler: shutdown takes the scheduler's locks. And the signal may
        # come before start() has set the scheduler running: try until it is, or until main is done.
        stop.event.wait()
        while not main_done.is_set():
            try:
                scheduler.shutdown(wait=False)
                return
            except SchedulerNotRunningError:
                main_done.wait(0.05)

    def on_started(_event) -> None:
        logger.info("scheduler started (pid %s); the database lock keeps runs on several hosts apart",
                    os.getpid(), extra={"event": "scheduler_started", "pid": os.getpid()})

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=stopper, name="achbatch-stopper", daemon=True).start()
    scheduler.add_listener(on_started, EVENT_SCHEDULER_STARTED)
    for job in scheduler.get_jobs():
        logger.info("job %s: %s", job.id, job.name, extra={"event": "job_added", "job": job.id})
    try:
        if not stop():
            scheduler.start()
    finally:
        main_done.set()
        with busy:  # wait for a run in progress to reach its step boundary
            pass
        os.close(fd)
    logger.info("scheduler stopped", extra={"event": "scheduler_stopped"})
    logging.shutdown()
    sys.exit(exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(schedule_cmd)
