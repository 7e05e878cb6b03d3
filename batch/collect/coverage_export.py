"""The coverage export: a CSV for the enrollment system of every coverage standing change since the
last export (`achbatch coverage export`, and the nightly run's reports step).

A change is a coverage flag row (`coverage_flags`: a new row whenever a policy's standing changes)
whose status differs from the policy's previous flag, classified by the rule
`batch.rules.coverage.coverage_change`: activated, at_risk, not_started, terminated, reinstated.
A new flag with the same status (a changed reason, amount or deadline) tells the enrollment system
nothing new and is not exported; nor is a policy going into `pending_activation`.

Each change is exported once: an export looks at the flag rows after the highest flag id the
exports before it looked at (`coverage_exports.through_flag_id`), and records each row it wrote
(`coverage_export_items`, a flag row exported as new at most once). `since` (a date, or a run's
business date) adds the changes assessed on or after that date again, marked as re-exports; a change
of that range not exported before counts as new. The first export carries every change recorded so
far. The file is written (through the caller's `deliver`) before the ledger is committed: a failure
in between leaves the changes to the next export (delivered at least once, never lost).
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..rules.cells import people_csv_writer
from ..rules.coverage import coverage_change
from ..rules.money import plain_dollars
from ..store.models import CoverageExport, CoverageExportItem, CoverageFlag, Premium, Run, utcnow

__all__ = ["EXPORT_COLUMNS", "ExportResult", "SinceError", "default_export_path", "export_changes",
           "resolve_since"]

EXPORT_COLUMNS = ("member_id", "plan_id", "change", "status", "previous_status", "coverage_month", "reason_code",
                  "reason", "months_owed", "amount_owed", "deadline", "coverage_ends_on", "changed_on", "change_id")
# Text columns (cells.people_csv_writer neutralises those that start like a formula); the others are
# ours: counts, dollars, dates, ids.
_TEXT = {i for i, c in enumerate(EXPORT_COLUMNS)
         if c not in ("months_owed", "amount_owed", "deadline", "coverage_ends_on", "changed_on", "change_id")}
CHUNK = 5000


class SinceError(ValueError):
    """A `--since` value that is neither a date nor a run's id."""


@dataclass
class ExportResult:
    export_id: int
    business_date: date
    path: str = ""
    rows: int = 0
    new: int = 0  # changes exported for the first time
    reexported: int = 0  # changes exported before, again (since)
    sha256: str = ""
    by_change: dict[str, int] = field(default_factory=dict)
    since: date | None = None


def default_export_path(reports_dir: Path, as_of: date, export_id: int) -> Path:
    """`coverage-export-<date>.csv` beside the reports (as the nightly names its report files); when
    an earlier export of the same date already wrote that file, `coverage-export-<date>.<id>.csv`
    (an export never replaces another one's file)."""
    path = Path(reports_dir) / f"coverage-export-{as_of.isoformat()}.csv"
    if path.exists() or path.is_symlink():
        path = path.with_name(f"coverage-export-{as_of.isoformat()}.{export_id}.csv")
    return path


def resolve_since(sessions: sessionmaker[Session], value: str) -> tuple[date, int | None]:
    """`--since RUN|DATE`: a run's id (digits) -> (that run's business date, its id); a date
    (YYYY-MM-DD) -> (the date, None). SinceError naming the value otherwise."""
    text = value.strip()
    if text.isdigit():
        with sessions() as s:
            run = s.get(Run, int(text))
        if run is None:
            raise SinceError(f"--since {value!r}: no run {int(text)} in the run ledger")
        return run.business_date, run.id
    try:
        return date.fromisoformat(text), None
    except ValueError:
        raise SinceError(f"--since {value!r} is neither a date (YYYY-MM-DD) nor a run id") from None


def export_changes(sessions: sessionmaker[Session], as_of: date, deliver: Callable[[int, bytes], str], *,
                   since: date | None = None, since_run_id: int | None = None) -> ExportResult:
    """Export the coverage changes not exported yet (and, with `since`, those assessed on or after
    it again): build the CSV, hand it to `deliver(export_id, data)` (which writes it and returns
    where), record the export and its rows. One transaction; exports are serialized (PostgreSQL:
    table locks; SQLite: the write lock every transaction takes), and the flags are locked against
    a concurrent assessment while the export reads them, so the next export starts exactly after
    the last flag this one saw."""
    with sessions() as s, s.begin():
        conn = s.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE coverage_exports IN EXCLUSIVE MODE")
            conn.exec_driver_sql("LOCK TABLE coverage_flags IN SHARE MODE")
        after = conn.scalar(select(func.max(CoverageExport.through_flag_id))) or 0
        through = max(after, conn.scalar(select(func.max(CoverageFlag.id))) or 0)
        export_id = conn.execute(insert(CoverageExport).returning(CoverageExport.id), {
            "business_date": as_of, "since_date": since, "since_run_id": since_run_id, "path": "", "sha256": "",
            "row_count": 0, "new_count": 0, "through_flag_id": through or None, "created_at": utcnow()}).scalar_one()
        res = ExportResult(export_id, as_of, since=since)
        buf = io.StringIO()
        w = people_csv_writer(buf, _TEXT)
        w.writerow(list(EXPORT_COLUMNS))
        items: list[dict] = []
        for rows in _candidates(conn, after, through, since):
            _export_chunk(conn, rows, w, items, res)
        data = buf.getvalue().encode("utf-8")
        res.sha256 = hashlib.sha256(data).hexdigest()
        res.path = deliver(export_id, data)
        for i in range(0, len(items), 1000):
            conn.execute(insert(CoverageExportItem), [dict(r, export_id=export_id) for r in items[i:i + 1000]])
        conn.execute(update(CoverageExport).where(CoverageExport.id == export_id).values(
            path=res.path[:1000], sha256=res.sha256, row_count=res.rows, new_count=res.new))
    return res


_FLAG_COLUMNS = (CoverageFlag.id, CoverageFlag.member_id, CoverageFlag.plan_id, CoverageFlag.status,
                 CoverageFlag.reason_code, CoverageFlag.reason, CoverageFlag.months_owed,
                 CoverageFlag.amount_owed_cents, CoverageFlag.deadline, CoverageFlag.first_unpaid_month,
                 CoverageFlag.coverage_ends_on, CoverageFlag.assessed_on)


def _candidates(conn, after: int, through: int, since: date | None):
    """The flag rows to look at, in id order, a chunk at a time: those after `after` (up to
    `through`), and with `since` those assessed on or after it."""
    last = 0
    while True:
        window = CoverageFlag.id > after
        if since is not None:
            window = window | (CoverageFlag.assessed_on >= since)
        rows = conn.execute(select(*_FLAG_COLUMNS)
                            .where(window & (CoverageFlag.id > last) & (CoverageFlag.id <= through))
                            .order_by(CoverageFlag.id).limit(CHUNK)).all()
        if not rows:
            return
        last = rows[-1].id
        yield rows


def _export_chunk(conn, rows, w, items: list[dict], res: ExportResult) -> None:
    keys = sorted({(r.member_id, r.plan_id) for r in rows})
    members = sorted({k[0] for k in keys})
    top = rows[-1].id
    # each policy's flags up to the chunk's last (its previous standing), and its binder month
    history: dict[tuple[str, str], list] = {}
    binder: dict[tuple[str, str], date] = {}
    for i in range(0, len(members), 1000):
        part = members[i:i + 1000]
        for r in conn.execute(select(CoverageFlag.id, CoverageFlag.member_id, CoverageFlag.plan_id,
                                     CoverageFlag.status, CoverageFlag.reason_code, CoverageFlag.first_unpaid_month)
                              .where(CoverageFlag.member_id.in_(part) & (CoverageFlag.id <= top))
                              .order_by(CoverageFlag.id)):
            history.setdefault((r.member_id, r.plan_id), []).append(r)
        for m, p, month in conn.execute(select(Premium.member_id, Premium.plan_id, func.min(Premium.coverage_month))
                                        .where(Premium.member_id.in_(part) & Premium.binder)
                                        .group_by(Premium.member_id, Premium.plan_id)):
            binder[(m, p)] = month
    previous: dict[int, object] = {}
    for key in keys:
        flags = history.get(key, [])
        for before, flag in zip([None, *flags], flags):
            previous[flag.id] = before
    ids = [r.id for r in rows]
    sent = set()
    for i in range(0, len(ids), 1000):
        sent.update(conn.scalars(select(CoverageExportItem.flag_id).where(
            CoverageExportItem.flag_id.in_(ids[i:i + 1000]) & ~CoverageExportItem.reexport)))
    for r in rows:
        key = (r.member_id, r.plan_id)
        prev = previous.get(r.id)
        change = coverage_change(prev.status if prev else None, prev.reason_code if prev else None, r.status,
                                 binder=key in binder)
        if change is None:
            continue
        if change == "activated":
            month = binder.get(key)
        elif change == "reinstated":
            month = prev.first_unpaid_month if prev else None
        else:
            month = r.first_unpaid_month
        w.writerow([r.member_id, r.plan_id, change, r.status, prev.status if prev else "",
                    f"{month:%Y-%m}" if month else "", r.reason_code, r.reason, r.months_owed,
                    plain_dollars(r.amount_owed_cents), r.deadline, r.coverage_ends_on, r.assessed_on, r.id])
        again = r.id in sent
        items.append({"flag_id": r.id, "change": change, "reexport": again})
        res.rows += 1
        res.new += 0 if again else 1
        res.reexported += 1 if again else 0
        res.by_change[change] = res.by_change.get(change, 0) + 1
