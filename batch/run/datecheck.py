"""Business dates do not go backwards by accident: a nightly run or an origination for a date
earlier than the latest one already worked, and not itself worked before, is refused
(`EarlierDate`) unless the caller allows it (`--allow-earlier-date`); the nightly ledger then
records the override in the run's summary, and `originate` run by itself records it as a `runs`
row of kind 'originate' (`record_override`). A date already worked stays allowed (its re-run finds
its steps done). Returns polls, coverage assessment and reports take any date: they do not come here.

What counts as worked for a date: a step of a nightly run recorded done for it (`run_steps`,
kind 'nightly', `done_key` set), or a NACHA file built for it (`nacha_files.file_date`: `achbatch
originate` run by itself)."""
from __future__ import annotations

import os
import socket
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ..store.models import NachaFile, Run, RunStep, utcnow

__all__ = ["EarlierDate", "check_business_date", "latest_worked_date", "override_words", "record_override"]


class EarlierDate(Exception):
    """The requested business date is earlier than the latest one already worked."""

    def __init__(self, what: str, requested: date, latest: date):
        self.what, self.requested, self.latest = what, requested, latest
        super().__init__(
            f"{what} {requested}: refused, {requested} is earlier than {latest}, the latest business date "
            f"already run (nightly or originate), and was not run before; nothing changed. If this is "
            f"meant (a missed day caught up), run it again with --allow-earlier-date")


def latest_worked_date(s: Session) -> date | None:
    """The latest business date a nightly run did a step for, or a NACHA file was built for."""
    step = s.scalar(select(func.max(RunStep.business_date)).where(
        (RunStep.kind == "nightly") & RunStep.done_key.is_not(None)))
    built = s.scalar(select(func.max(NachaFile.file_date)))
    dates = [d for d in (step, built) if d is not None]
    return max(dates) if dates else None


def _worked_on(s: Session, what: str, d: date) -> bool:
    steps = select(RunStep.id).where((RunStep.kind == "nightly") & (RunStep.business_date == d)
                                     & RunStep.done_key.is_not(None))
    if what == "originate":  # by itself: its own files, or the nightly's originate step
        if s.scalar(select(NachaFile.id).where(NachaFile.file_date == d).limit(1)) is not None:
            return True
        steps = steps.where(RunStep.step == "originate")
    return s.scalar(steps.limit(1)) is not None


def check_business_date(s: Session, what: str, d: date, *, allow_earlier: bool = False) -> date | None:
    """Raise EarlierDate when `what` ('nightly' or 'originate') for `d` would go back before the
    latest worked date and `d` was not worked before. Returns that latest date when `d` is earlier
    and allowed (the caller records the override), else None."""
    latest = latest_worked_date(s)
    if latest is None or d >= latest or _worked_on(s, what, d):
        return None
    if not allow_earlier:
        raise EarlierDate(what, d, latest)
    return latest


def override_words(latest: date) -> str:
    """How a run for a date earlier than `latest` says it was allowed (the nightly summary's words)."""
    return f"(earlier than {latest}, allowed by --allow-earlier-date)"


def record_override(sessions: sessionmaker[Session], what: str, d: date, latest: date, *, outcome: str,
                    exit_code: int, started_at: datetime) -> int:
    """The run ledger's record of `what` ('originate') run by itself for `d`, earlier than `latest`,
    allowed by --allow-earlier-date: a finished `runs` row of kind `what`, status 'done' (exit 0) or
    'problems', whose summary names both dates and what the run did. Returns its id."""
    summary = f"{what} {d} {override_words(latest)}: {outcome}; exit {exit_code}"
    with sessions() as s, s.begin():
        run = Run(kind=what, business_date=d, status="done" if exit_code == 0 else "problems", exit_code=exit_code,
                  host=socket.gethostname()[:255], pid=os.getpid(), started_at=started_at, finished_at=utcnow(),
                  summary=summary[:1000])
        s.add(run)
        s.flush()
        return run.id
