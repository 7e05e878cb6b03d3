"""Prometheus metrics in the node_exporter textfile format, written after every run: when the last
run of each kind finished and last succeeded, how long it took, what it did (files, entries,
dollars, returns, NOCs, flags), each step's duration and outcome, returns by category, and gauges
of the ledger (payments by state, coverage flags by status, files awaiting delivery).

The figures come from the database, not from the process that writes them, so whichever run
writes last (nightly or the returns poll) writes the whole picture. The file is written to a
temporary name in the same folder and renamed, so the collector never reads half a file.
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ..store import fsutil
from ..store.models import RUN_KINDS, Run, RunStep
from .status import collect_status, table, coverage_by_status, payments_by_state, table_names

__all__ = ["collect", "render", "write_atomic", "PREFIX"]

PREFIX = "achbatch_"
SUCCESS_STATUSES = ("done", "problems")  # completed; data problems were reported, not a failure


def _ts(d: datetime | None) -> float | None:
    return d.timestamp() if d is not None else None


ATTENTION_REASONS = ("last_run_failed", "last_run_problems", "returns_poll_failed", "run_stopped",
                     "file_past_cutoff", "bank_file_unprocessed", "review_items_open", "lock_held_too_long")
WARNING_REASONS = ("return_rate_over_threshold", "coverage_flags_changed", "returns_poll_tempfail",
                   "temporary_files_left", "accounts_awaiting_validation")


def collect(sessions: sessionmaker[Session], settings=None) -> dict:
    """A snapshot: {'runs': {kind: {...}}, 'returns_by_category', 'payments_by_state', ...}; with
    `settings`, also what `achbatch status` counts as needing attention and as warnings, by reason."""
    engine = sessions.kw["bind"]
    tables = table_names(engine)
    snap: dict = {"runs": {}, "steps": {}}
    with sessions() as s:
        for kind in RUN_KINDS:
            last = s.scalars(select(Run).where((Run.kind == kind) & Run.finished_at.is_not(None))
                             .order_by(Run.id.desc()).limit(1)).first()
            if last is None:
                continue
            ok_at = s.scalar(select(func.max(Run.finished_at)).where(
                (Run.kind == kind) & Run.status.in_(SUCCESS_STATUSES)))
            totals = json.loads(last.counts) if last.counts else {}
            snap["runs"][kind] = {
                "finished": _ts(last.finished_at), "success": _ts(ok_at),
                "duration": (last.finished_at - last.started_at).total_seconds(),
                "exit_code": last.exit_code, "status": last.status, "totals": totals,
                "business_date": last.business_date,
            }
            snap["steps"][kind] = [
                (st.step, st.status, (st.finished_at - st.started_at).total_seconds() if st.finished_at else 0.0)
                for st in s.scalars(select(RunStep).where(RunStep.run_id == last.id).order_by(RunStep.position))]
        snap["returns_by_category"] = {}
        nightly = snap["runs"].get("nightly")
        if "payment_returns" in tables and nightly is not None:
            pr = table("payment_returns")
            snap["returns_by_category"] = {cat: int(n) for cat, n in s.execute(
                select(pr.c.category, func.count()).where(pr.c.returned_on == nightly["business_date"])
                .group_by(pr.c.category))}
        snap["payments_by_state"] = payments_by_state(s, tables) or {}
        snap["coverage_by_status"] = coverage_by_status(s, tables) or {}
        if "nacha_files" in tables:
            f = table("nacha_files")
            snap["files_awaiting_delivery"] = int(s.scalar(
                select(func.count()).select_from(f).where(f.c.state != "sent")) or 0)
    if settings is not None and "runs" in tables:
        report = collect_status(sessions, settings, runs=1)
        snap["attention"] = {r: 0 for r in ATTENTION_REASONS}
        snap["warnings"] = {r: 0 for r in WARNING_REASONS}
        for key, items in (("attention", report.attention_items), ("warnings", report.warnings)):
            for it in items:
                snap[key][it["reason"]] = snap[key].get(it["reason"], 0) + 1
    return snap


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _value(v: float | int) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, Decimal)):
        return str(v)  # dollars come as Decimal(cents) / 100: exact, no float
    return repr(float(v))


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.seen: set[str] = set()

    def metric(self, name: str, help_: str, samples: list[tuple[dict, float | int | None]], kind: str = "gauge"):
        samples = [(labels, v) for labels, v in samples if v is not None]
        if not samples:
            return
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, v in samples:
            lab = ",".join(f'{k}="{_escape(str(val))}"' for k, val in labels.items())
            self.lines.append(f"{full}{{{lab}}} {_value(v)}" if lab else f"{full} {_value(v)}")


def render(snap: dict) -> str:
    """The textfile (HELP and TYPE once per metric, one sample per line, newline-terminated)."""
    w = _Writer()
    runs = snap.get("runs", {})
    k = sorted(runs)
    w.metric("last_run_timestamp_seconds", "When the last run of this kind finished (Unix time).",
             [({"kind": x}, runs[x]["finished"]) for x in k])
    w.metric("last_success_timestamp_seconds",
             "When a run of this kind last completed (exit 0 or 1: every step done) (Unix time).",
             [({"kind": x}, runs[x]["success"]) for x in k])
    w.metric("last_run_duration_seconds", "How long the last run of this kind took.",
             [({"kind": x}, runs[x]["duration"]) for x in k])
    w.metric("last_run_exit_code", "Exit code of the last run (0 done, 1 data problems, 2 configuration, "
             "75 temporary failure).", [({"kind": x}, runs[x]["exit_code"]) for x in k])
    w.metric("last_run_success", "1 when the last run of this kind completed (exit 0 or 1), else 0.",
             [({"kind": x}, int(runs[x]["status"] in SUCCESS_STATUSES)) for x in k])
    for name, key, help_ in (
        ("last_run_files_built", "files_built", "NACHA files the last run built."),
        ("last_run_files_sent", "files_sent", "NACHA files the last run delivered to the bank."),
        ("last_run_entries", "entries", "Entries (debits) the last run originated."),
        ("last_run_returns", "returns", "Return entries the last run applied."),
        ("last_run_nocs", "nocs", "Notifications of change the last run applied."),
        ("last_run_coverage_flags_at_risk", "flags",
         "Policies at risk (any coverage status but ok and pending_activation) after the last coverage assessment."),
        ("last_run_rows_rejected", "rows_rejected", "CSV rows the last run's import rejected."),
    ):
        w.metric(name, help_, [({"kind": x}, runs[x]["totals"].get(key)) for x in k])
    w.metric("last_run_originated_dollars", "Dollars the last run originated (debits).",
             [({"kind": x}, Decimal(runs[x]["totals"]["cents"]) / 100) for x in k if "cents" in runs[x]["totals"]])
    steps = snap.get("steps", {})
    w.metric("step_duration_seconds", "Duration of each step of the last run.",
             [({"kind": x, "step": st}, d) for x in sorted(steps) for st, _status, d in steps[x]])
    w.metric("step_ok", "1 when the step of the last run was done (or already done earlier), else 0.",
             [({"kind": x, "step": st}, int(status in ("done", "skipped"))) for x in sorted(steps)
              for st, status, _d in steps[x]])
    cats = snap.get("returns_by_category") or {}
    w.metric("returns", "Returns applied on the last nightly run's business date, by NACHA category.",
             [({"category": c}, n) for c, n in sorted(cats.items())]
             or [({"category": c}, 0) for c in ("administrative", "unauthorized", "other")])
    w.metric("payments", "Payments by state.",
             [({"state": st}, n) for st, n in sorted((snap.get("payments_by_state") or {}).items())])
    w.metric("coverage_flags", "Current coverage flags by status.",
             [({"status": st}, n) for st, n in sorted((snap.get("coverage_by_status") or {}).items())])
    w.metric("files_awaiting_delivery", "Built NACHA files not yet confirmed at the bank.",
             [({}, snap.get("files_awaiting_delivery"))])
    w.metric("attention_items", "What `achbatch status` says needs a person, by reason (0 when none).",
             [({"reason": r}, n) for r, n in sorted((snap.get("attention") or {}).items())])
    w.metric("warnings", "What `achbatch status` shows as warnings, by reason (0 when none).",
             [({"reason": r}, n) for r, n in sorted((snap.get("warnings") or {}).items())])
    return "\n".join(w.lines) + "\n"


def write_atomic(path: Path, text: str) -> Path:
    """Write to a temporary name beside `path`, fsync, rename (mode 0644: the collector reads it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return fsutil.write_atomic(path, text.encode("utf-8"), mode=0o644)
