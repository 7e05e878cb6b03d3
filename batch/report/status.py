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
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from ..store.models import Base, Run, RunStep
from ..store.runlock import lock_is_held, read_holder

__all__ = ["StatusReport", "collect_status", "payments_by_state", "coverage_by_status", "table_names"]


@dataclass
class StatusReport:
    data: dict[str, Any]
    attention: list[str]

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


def collect_status(sessions: sessionmaker[Session], settings, *, now: datetime | None = None,
                   runs: int = 5) -> StatusReport:
    """Everything `achbatch status` shows, and the list of what needs attention."""
    now = now or datetime.now(timezone.utc)
    engine: Engine = sessions.kw["bind"]
    tables = table_names(engine)
    today = now.astimezone(settings.origination.zone).date()
    data: dict[str, Any] = {"generated_at": now.isoformat(),
                            "database": engine.url.render_as_string(hide_password=True)}
    attention: list[str] = []
    with sessions() as s:
        data["last_runs"] = _runs(s, runs) if "runs" in tables else []
        data["files_awaiting_delivery"] = _unsent_files(s, tables, settings, now)
        data["files_awaiting_processing"] = _unprocessed_inbound(s, tables)
        data["payments_by_state"] = payments_by_state(s, tables) or {}
        data["coverage_by_status"] = coverage_by_status(s, tables) or {}
        data["review_items_open"] = _open_review_items(s, tables)
        last_by_kind = {}
        if "runs" in tables:
            for kind in ("nightly", "returns"):
                r = s.scalars(select(Run).where(Run.kind == kind).order_by(Run.id.desc()).limit(1)).first()
                if r is not None:
                    last_by_kind[kind] = r
            last_ok = s.scalar(select(func.max(Run.finished_at)).where(
                (Run.kind == "nightly") & Run.status.in_(("done", "problems"))))
            data["last_success_at"] = _iso(last_ok)
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

    for f in data["files_awaiting_delivery"] or []:
        if f["past_cutoff"]:
            attention.append(f"{f['file_name']} ({f['entries']} entries) is not confirmed sent and the "
                             f"{f['file_date']} cut-off ({f['cutoff_at']}) has passed"
                             + (f"; last error: {f['last_error']}" if f.get("last_error") else ""))
    for kind, r in last_by_kind.items():
        if r.status in ("failed", "tempfail", "crashed", "interrupted"):
            attention.append(f"the last {kind} run (run {r.id}, {r.business_date}) ended {r.status}"
                             + (f": {r.error}" if r.error else ""))
        elif r.status == "running" and held is False:
            attention.append(f"{kind} run {r.id} ({r.business_date}) is recorded as running but no process "
                             "holds the run lock: it stopped without finishing (the next run resumes it)")
    data["needs_attention"] = attention
    data["ok"] = not attention
    return StatusReport(data, attention)
