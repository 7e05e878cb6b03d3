"""What ops need to know at a glance (`achbatch status`) and whether something needs attention:
the last runs and their steps, the run lock, files built but not confirmed sent (and whether the
bank's cut-off has passed), files received but not processed, payments by state, coverage flags by
status, return rates, the review list.

Read only, and defensive: a table another step owns (delivery, inbound, returns, coverage) is used
when the database has it, and reported as unknown otherwise, so status works on any schema
revision that has the ledger (`achbatch db upgrade` otherwise).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from ..collect.validation import awaiting_validation
from ..rules.counts import counted as _plural
from ..store.fsutil import TMP_PREFIX
from ..store.models import Base, Run, RunStep
from ..store.runlock import lock_is_held, read_holder

__all__ = ["StatusReport", "collect_status", "payments_by_state", "coverage_by_status", "table_names"]


@dataclass
class StatusReport:
    data: dict[str, Any]
    attention: list[str]  # the messages of attention_items
    attention_items: list[dict[str, str]] = field(default_factory=list)  # {"reason", "message"}
    warnings: list[dict[str, str]] = field(default_factory=list)  # shown; `ok` does not depend on them

    @property
    def ok(self) -> bool:
        return not self.attention


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def table(name: str):
    return Base.metadata.tables[name]


def _iso(v) -> str | None:
    if v is None:
        return None
    return v.isoformat()


def payments_by_state(s: Session, tables: set[str]) -> dict[str, int] | None:
    if "payments" not in tables:
        return None
    p = table("payments")
    return {state: int(n) for state, n in s.execute(select(p.c.state, func.count()).group_by(p.c.state))}


def coverage_by_status(s: Session, tables: set[str]) -> dict[str, int] | None:
    """Current coverage flags (one per policy) by status."""
    if "coverage_flags" not in tables:
        return None
    c = table("coverage_flags")
    return {st: int(n) for st, n in s.execute(
        select(c.c.status, func.count()).where(c.c.current_key.is_not(None)).group_by(c.c.status))}


def _cutoff(file_date: date, settings) -> datetime:
    o = settings.origination
    return datetime.combine(file_date, o.file_cutoff, tzinfo=ZoneInfo(o.timezone))


def _unsent_files(s: Session, tables: set[str], settings, now: datetime) -> list[dict] | None:
    if "nacha_files" not in tables:
        return None
    f = table("nacha_files")
    rows = s.execute(select(f.c.file_name, f.c.file_date, f.c.state, f.c.entry_count, f.c.total_debit_cents,
                            f.c.created_at).where(f.c.state != "sent").order_by(f.c.file_date, f.c.file_id_modifier))
    out = []
    deliveries = {}
    if "deliveries" in tables:
        d = table("deliveries")
        deliveries = {r.file_name: r for r in s.execute(
            select(f.c.file_name, d.c.attempts, d.c.last_error, d.c.last_attempt_at)
            .join(d, d.c.file_id == f.c.id).where(f.c.state != "sent"))}
    for r in rows:
        cutoff = _cutoff(r.file_date, settings)
        dl = deliveries.get(r.file_name)
        out.append({"file_name": r.file_name, "file_date": r.file_date.isoformat(), "state": r.state,
                    "entries": r.entry_count, "total_debit_cents": r.total_debit_cents,
                    "built_at": _iso(r.created_at), "cutoff_at": cutoff.isoformat(),
                    "past_cutoff": now > cutoff, "attempts": dl.attempts if dl else 0,
                    "last_error": dl.last_error if dl else None})
    return out


def _unprocessed_inbound(s: Session, tables: set[str]) -> list[dict] | None:
    if "inbound_files" not in tables:
        return None
    i = table("inbound_files")
    return [{"local_name": r.local_name, "remote_name": r.remote_name, "size": r.size,
             "received_at": _iso(r.received_at)}
            for r in s.execute(select(i.c.local_name, i.c.remote_name, i.c.size, i.c.received_at)
                               .where(i.c.state == "received").order_by(i.c.id))]


def _open_review_items(s: Session, tables: set[str]) -> int | None:
    if "review_items" not in tables:
        return None
    r = table("review_items")
    return int(s.scalar(select(func.count()).select_from(r).where(r.c.status == "open")) or 0)


def _return_rates(sessions: sessionmaker[Session], tables: set[str], as_of: date) -> list[dict] | None:
    if not {"payment_returns", "file_entries", "nacha_files"} <= tables:
        return None
    try:
        from .reports import return_rates
    except ImportError:
        return None
    out = []
    for rr in return_rates(sessions, as_of):
        out.append({"category": rr.category, "returns": rr.returns, "entries": rr.entries,
                    "rate": float(rr.rate), "threshold": float(rr.threshold), "crossed": bool(rr.crossed)})
    return out


def _runs(s: Session, limit: int) -> list[dict]:
    runs = list(s.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))
    steps: dict[int, list[RunStep]] = {}
    if runs:
        for st in s.scalars(select(RunStep).where(RunStep.run_id.in_([r.id for r in runs]))
                            .order_by(RunStep.run_id, RunStep.position)):
            steps.setdefault(st.run_id, []).append(st)
    out = []
    for r in runs:
        out.append({
            "id": r.id, "kind": r.kind, "business_date": r.business_date.isoformat(), "status": r.status,
            "exit_code": r.exit_code, "host": r.host, "pid": r.pid, "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "duration_s": round((r.finished_at - r.started_at).total_seconds(), 3) if r.finished_at else None,
            "summary": r.summary, "totals": json.loads(r.counts) if r.counts else {}, "error": r.error,
            "steps": [{"step": st.step, "status": st.status, "started_at": _iso(st.started_at),
                       "finished_at": _iso(st.finished_at),
                       "duration_s": round((st.finished_at - st.started_at).total_seconds(), 3)
                       if st.finished_at else None,
                       "counts": json.loads(st.counts) if st.counts else {}, "note": st.note, "error": st.error}
                      for st in steps.get(r.id, [])],
        })
    return out


def _item(reason: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message}


def _when(v: datetime | None, zone: ZoneInfo) -> str | None:
    """An instant in the configured zone, to the second (2026-01-22T20:00:05-05:00)."""
    return None if v is None else v.astimezone(zone).isoformat(timespec="seconds")


def _localize(data: dict, zone: ZoneInfo) -> None:
    """Every timestamp of the report (ISO strings in UTC from the ledger) in `zone`, to the second."""
    def conv(v):
        if isinstance(v, str) and "T" in v and len(v) >= 19:
            try:
                d = datetime.fromisoformat(v)
            except ValueError:
                return v
            return _when(d, zone) if d.tzinfo is not None else v
        return v
    for key in ("generated_at", "last_success_at"):
        data[key] = conv(data.get(key))
    for r in data.get("last_runs") or []:
        for k in ("started_at", "finished_at"):
            r[k] = conv(r[k])
        for st in r["steps"]:
            for k in ("started_at", "finished_at"):
                st[k] = conv(st[k])
    for f in data.get("files_awaiting_delivery") or []:
        for k in ("built_at", "cutoff_at"):
            f[k] = conv(f[k])
    for f in data.get("files_awaiting_processing") or []:
        f["received_at"] = conv(f["received_at"])
    holder = (data.get("lock") or {}).get("holder")
    if holder:
        for k in ("since", "heartbeat_at"):
            holder[k] = conv(holder.get(k))


def _leftover_temporaries(settings, held: bool | None, since: datetime | None) -> list[Path]:
    """Temporary files (fsutil.TMP_PREFIX) a crashed run left in the outbox, the inbox or their
    archive folders; while a run holds the lock, only those older than its start."""
    found = []
    roots = [(settings.outbox_dir, "*"), (settings.inbox_dir, "*"), (settings.archive_dir, "sent/*"),
             (settings.archive_dir, "received/*/*")]
    for root, pattern in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for p in root.glob(pattern):
            if not p.name.startswith(TMP_PREFIX):
                continue
            if held is not False:
                try:
                    mtime = datetime.fromtimestamp(p.stat().st_mtime, timezone.utc)
                except OSError:
                    continue
                if held is None or since is None or mtime >= since:
                    continue  # may belong to the run going on now
            found.append(p)
    return sorted(found)


def _coverage_changed(s: Session, run_id: int) -> int:
    st = s.scalars(select(RunStep).where((RunStep.run_id == run_id) & (RunStep.step == "coverage"))).first()
    if st is None or not st.counts:
        return 0
    return int(json.loads(st.counts).get("changed", 0) or 0)


def _only_rate_warnings(s: Session, run: Run) -> bool:
    """A run that exited 1 only because a return rate is over its threshold: that stays so for the
    60 days of the window, so it is a warning (return_rate_over_threshold), not an alarm every night.
    Judged from the step counts the ledger records (`problems` per step); a run recorded without
    them counts as an alarm."""
    if run.status != "problems":
        return False
    flagged = []
    for st in s.scalars(select(RunStep).where(RunStep.run_id == run.id)):
        counts = json.loads(st.counts) if st.counts else {}
        if counts.get("problems"):
            flagged.append((st.step, counts))
    return bool(flagged) and all(step == "reports" and counts["problems"] == counts.get("return_rate_warnings")
                                 for step, counts in flagged)


def collect_status(sessions: sessionmaker[Session], settings, *, now: datetime | None = None,
                   runs: int = 5) -> StatusReport:
    """Everything `achbatch status` shows, what needs attention (`attention`: a person must act)
    and what is only worth knowing (`warnings`); each item is {"reason", "message"}."""
    now = now or datetime.now(timezone.utc)
    engine: Engine = sessions.kw["bind"]
    tables = table_names(engine)
    zone = settings.schedule.zone
    today = now.astimezone(settings.origination.zone).date()
    data: dict[str, Any] = {"generated_at": now.isoformat(), "timezone": settings.schedule.timezone,
                            "database": engine.url.render_as_string(hide_password=True)}
    attention: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []
    last_nightly_bad = None  # the latest finished nightly run, when it did not end well
    last_returns = None
    coverage_changed = 0
    with sessions() as s:
        data["last_runs"] = _runs(s, runs) if "runs" in tables else []
        data["files_awaiting_delivery"] = _unsent_files(s, tables, settings, now)
        data["files_awaiting_processing"] = _unprocessed_inbound(s, tables)
        data["payments_by_state"] = payments_by_state(s, tables) or {}
        data["coverage_by_status"] = coverage_by_status(s, tables) or {}
        data["review_items_open"] = _open_review_items(s, tables)
        data["validation"] = awaiting_validation(s.connection()) if "prenotes" in tables else None
        last_by_kind = {}
        if "runs" in tables:
            for kind in ("nightly", "returns"):
                r = s.scalars(select(Run).where(Run.kind == kind).order_by(Run.id.desc()).limit(1)).first()
                if r is not None:
                    last_by_kind[kind] = r
            last_ok = s.scalar(select(func.max(Run.finished_at)).where(
                (Run.kind == "nightly") & Run.status.in_(("done", "problems"))))
            data["last_success_at"] = _iso(last_ok)
            finished = s.scalars(select(Run).where((Run.kind == "nightly") & (Run.status != "running"))
                                 .order_by(Run.id.desc()).limit(1)).first()
            if finished is not None:
                if (finished.status != "done" or (finished.exit_code or 0) != 0) \
                        and not _only_rate_warnings(s, finished):
                    last_nightly_bad = finished
                coverage_changed = _coverage_changed(s, finished.id)
            last_returns = s.scalars(select(Run).where((Run.kind == "returns") & (Run.status != "running"))
                                     .order_by(Run.id.desc()).limit(1)).first()
    # As of the last nightly run's business date (= today in production; a replayed or demo night
    # is measured on its own dates).
    rates_as_of = today
    if "runs" in tables:
        with sessions() as s:
            last_date = s.scalar(select(func.max(Run.business_date)).where(Run.kind == "nightly"))
        rates_as_of = last_date or today
    data["return_rates_as_of"] = rates_as_of.isoformat()
    data["return_rates"] = _return_rates(sessions, tables, rates_as_of)
    held = lock_is_held(engine) if "run_locks" in tables else False
    holder = read_holder(engine) if held else None
    data["lock"] = {"held": held, "holder": holder.as_dict() if holder else None}

    # -- needs a person ---------------------------------------------------------------------------
    if last_nightly_bad is not None:
        r = last_nightly_bad
        how = ("exited 1 (data problems: rejected rows or files, review items or a report warning)"
               if r.status == "problems" else f"ended {r.status}" + (f": {r.error}" if r.error else "")
               + (f" (exit {r.exit_code})" if r.exit_code is not None else ""))
        attention.append(_item("last_run_failed" if r.status != "problems" else "last_run_problems",
                               f"The last nightly run (run {r.id}, {r.business_date}) {how}; "
                               "no later nightly run has succeeded."))
    r = last_returns
    if r is not None and r.status in ("failed", "crashed", "interrupted"):
        attention.append(_item("returns_poll_failed", f"The last returns poll (run {r.id}, {r.business_date}) "
                               f"ended {r.status}" + (f": {r.error}" if r.error else "") + "."))
    for kind, r in last_by_kind.items():
        if r.status == "running" and held is False:
            attention.append(_item("run_stopped", f"The {kind} run {r.id} ({r.business_date}) is recorded as "
                                   "running but no process holds the run lock: it stopped without finishing "
                                   "(the next run resumes it)."))
    for f in data["files_awaiting_delivery"] or []:
        if f["past_cutoff"]:
            attention.append(_item("file_past_cutoff", f"{f['file_name']} ({_plural(f['entries'], 'entry', 'entries')}) "
                                   f"is not confirmed sent and the {f['file_date']} cut-off "
                                   f"({_when(datetime.fromisoformat(f['cutoff_at']), zone)}) has passed"
                                   + (f"; last error: {f['last_error']}" if f.get("last_error") else "") + "."))
    if not held:  # a run going on now may be processing them
        for f in data["files_awaiting_processing"] or []:
            attention.append(_item("bank_file_unprocessed", f"The bank file {f['local_name']} (from "
                                   f"{f['remote_name']}) was received and not processed; run "
                                   "`achbatch returns process`."))
    n_open = data["review_items_open"] or 0
    if n_open:
        attention.append(_item("review_items_open", f"{_plural(n_open, 'review item')} "
                               f"{'is' if n_open == 1 else 'are'} open (listed in the returns report)."))
    if held and holder is not None and holder.since is not None:
        age = (now - holder.since).total_seconds()
        if age > settings.schedule.run_timeout:
            attention.append(_item("lock_held_too_long", f"The run lock has been held since "
                                   f"{_when(holder.since, zone)} (host {holder.host or '?'}, pid {holder.pid or '?'}"
                                   + (f", run {holder.run_id}" if holder.run_id else "") + "), "
                                   f"longer than schedule.run_timeout ({settings.schedule.run_timeout_systemd})."))

    # -- worth knowing ----------------------------------------------------------------------------
    for rr in data["return_rates"] or []:
        if rr["crossed"]:
            warnings.append(_item("return_rate_over_threshold",
                                  f"The {rr['category']} return rate is {rr['rate'] * 100:.2f}% "
                                  f"({rr['returns']} of {_plural(rr['entries'], 'entry')} in the 60 days to "
                                  f"{data['return_rates_as_of']}), over the {rr['threshold'] * 100:g}% threshold."))
    if coverage_changed:
        warnings.append(_item("coverage_flags_changed", f"{_plural(coverage_changed, 'coverage flag')} changed "
                              "in the last nightly run (see the coverage report)."))
    v = data["validation"]
    if v and (v["accounts_awaiting_validation"] or v["payments_held"]):
        warnings.append(_item("accounts_awaiting_validation",
                              f"{_plural(v['accounts_awaiting_validation'], 'bank account')} awaiting WEB account "
                              f"validation (a prenote sent or to send), {_plural(v['payments_held'], 'payment')} "
                              "held until then (docs/validation.md)."))
    if last_returns is not None and last_returns.exit_code == 75:
        warnings.append(_item("returns_poll_tempfail", f"The last returns poll (run {last_returns.id}, "
                              f"{last_returns.business_date}) exited 75 (bank or database unreachable); the next "
                              "poll or the nightly run fetches again."))
    leftovers = _leftover_temporaries(settings, held, holder.since if holder else None)
    if leftovers:
        warnings.append(_item("temporary_files_left", f"{_plural(len(leftovers), 'temporary file')} left by an "
                              f"interrupted run ({', '.join(str(p) for p in leftovers[:5])}"
                              + (", ..." if len(leftovers) > 5 else "") + "); the next run removes them."))
    data["leftover_temporary_files"] = [str(p) for p in leftovers]
    _localize(data, zone)
    data["attention"] = attention
    data["warnings"] = warnings
    data["needs_attention"] = [a["message"] for a in attention]
    data["ok"] = not attention
    return StatusReport(data, [a["message"] for a in attention], attention, warnings)
