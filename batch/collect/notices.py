"""Member notices for the print and email vendor: one per returned payment, one per new or
changed coverage flag at risk (returned payment, past due warning, termination warning, coverage
not started, coverage terminated), one per AutoPay premium above the amount its mandate
authorized (autopay amount change), and one per returned prenote (account not validated: the
account is blocked, its AutoPay suspended, its held and pending payments failed), rendered from the jinja2 templates shipped in
batch/collect/templates/notices (or a folder of overrides named in settings, `paths.notices_templates`)
into the notices folder, listed in manifest CSVs.

`notices.event_key` is unique, so an event gets one notice whatever re-runs happen; a notice's file
name is a function of its event, so a run interrupted between writing files and committing writes
the same files again.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import jinja2
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from ..store.fsutil import write_atomic
from ..rules.cells import machine_csv_writer
from ..rules.money import dollars, plain_dollars
from nacha.fields import mask_last4

from ..store.models import (
    COVERAGE_STATUSES,
    AutopayMandate,
    BankAccount,
    CoverageFlag,
    Notice,
    Payment,
    PaymentEvent,
    PaymentReturn,
    Premium,
    Prenote,
    utcnow,
)

_VENDOR_READABLE = 0o644  # notices and manifests are picked up by the print and email vendor

__all__ = [
    "MANIFEST_COLUMNS", "NOTICE_FOR_FLAG", "NoticeResult", "TEMPLATES_DIR", "issue_notices", "notice_kind_for_flag",
    "notice_environment", "render_notice", "write_manifests",
]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "notices"
MANIFEST_COLUMNS = ("notice_date", "member_id", "member_name", "plan_id", "notice_kind", "deadline", "amount_owed",
                    "file")
NOTICES_LOCK_KEY = 0x41434842_4E4F5449 & 0x7FFFFFFFFFFFFFFF  # "ACHBNOTI"
CHUNK = 1000


def notice_kind_for_flag(status: str, grace_month: int) -> str | None:
    """Which notice a coverage flag calls for (MA notice sequence, reference §5.3): a first month
    past due gets a Past Due Warning, later grace months and termination pending a Termination
    Warning; 'ok' and 'pending_activation' (nothing missed) none, and 'at_risk' none either (a
    payment returned, not delinquent yet: the member already has the returned-payment notice of
    that return)."""
    if status == "not_started":
        return "coverage_not_started"
    if status == "past_due":
        return "past_due_warning" if grace_month <= 1 else "termination_warning"
    if status == "termination_pending":
        return "termination_warning"
    if status == "terminated":
        return "coverage_terminated"
    return None


NOTICE_FOR_FLAG = {s: notice_kind_for_flag(s, 1) for s in COVERAGE_STATUSES}
# The statuses whose flags get a notice.
_NOTICED_STATUSES = tuple(s for s in COVERAGE_STATUSES if NOTICE_FOR_FLAG[s] is not None)


def notice_environment(override_dir: Path | None = None) -> jinja2.Environment:
    """Templates from `override_dir` first (same file names), then the shipped ones."""
    loaders: list[jinja2.BaseLoader] = []
    if override_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(override_dir)))
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_notice(env: jinja2.Environment, kind: str, context: dict) -> str:
    return env.get_template(f"{kind}.html.j2").render(**context)


@dataclass
class NoticeResult:
    notice_date: date
    created: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # written now (first 1000)
    manifest: Path | None = None


def _month_name(d: date | None) -> str:
    return f"{d:%B %Y}" if d else ""


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(s: str) -> str:
    return _SAFE.sub("_", s)


def _lock(s: Session) -> None:
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": NOTICES_LOCK_KEY})


def issue_notices(sessions: sessionmaker[Session], notices_dir: Path, notice_date: date, *,
                  templates_dir: Path | None = None, sender: str = "Health Connector") -> NoticeResult:
    """Render a notice for every event that has none yet: each applied return of a payment, and each
    current coverage flag at risk. Files go to `<notices_dir>/<notice_date>/`; the manifests
    (`manifest.csv` of every notice, and that day's `<notice_date>/manifest.csv`) are rewritten."""
    notices_dir = Path(notices_dir)
    env = notice_environment(templates_dir)
    res = NoticeResult(notice_date)
    day_dir = notices_dir / notice_date.isoformat()
    while True:
        with sessions() as s, s.begin():
            _lock(s)
            events = (_pending_returns(s) + _pending_flags(s) + _pending_amount_changes(s, notice_date)
                      + _pending_prenote_returns(s, notice_date))
            if not events:
                break
            names = _member_names(s, {(e["member_id"], e["plan_id"]) for e in events})
            rows = []
            now = utcnow()
            for e in events:
                e["member_name"] = names.get((e["member_id"], e["plan_id"]), e["member_id"])
                rel = f"{notice_date.isoformat()}/{e['kind']}-{_safe(e['member_id'])}-{_safe(e['plan_id'])}-" \
                      f"{_safe(e['event_key'].replace(':', '-'))}.html"
                ctx = _context(e, notice_date, sender)
                html = render_notice(env, e["kind"], ctx)
                day_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(notices_dir / rel, html.encode("utf-8"), mode=_VENDOR_READABLE)
                if len(res.files) < 1000:
                    res.files.append(notices_dir / rel)
                rows.append({"event_key": e["event_key"], "kind": e["kind"], "member_id": e["member_id"],
                             "plan_id": e["plan_id"], "deadline": e.get("deadline"),
                             "amount_owed_cents": e.get("amount_owed_cents") or 0, "file_name": rel,
                             "notice_date": notice_date, "payment_return_id": e.get("payment_return_id"),
                             "coverage_flag_id": e.get("coverage_flag_id"), "prenote_id": e.get("prenote_id"),
                             "created_at": now})
                res.by_kind[e["kind"]] = res.by_kind.get(e["kind"], 0) + 1
            s.execute(insert(Notice), rows)
            res.created += len(rows)
    res.manifest = write_manifests(sessions, notices_dir, notice_date)
    return res


def _pending_returns(s: Session) -> list[dict]:
    """Applied returns (kind 'return') with no notice yet."""
    rows = s.execute(
        select(PaymentReturn.id, PaymentReturn.return_code, PaymentReturn.return_title, PaymentReturn.disposition,
               PaymentReturn.returned_on, PaymentReturn.amount_cents, PaymentReturn.retry_payment_id,
               Payment.member_id, Payment.plan_id, Payment.coverage_month, BankAccount.last4)
        .join(Payment, Payment.id == PaymentReturn.payment_id)
        .outerjoin(BankAccount, BankAccount.id == Payment.bank_account_id)
        .outerjoin(Notice, Notice.payment_return_id == PaymentReturn.id)
        .where((PaymentReturn.kind == "return") & Notice.id.is_(None))
        .order_by(PaymentReturn.id).limit(CHUNK)).all()
    if not rows:
        return []
    retry_ids = [r.retry_payment_id for r in rows if r.retry_payment_id]
    retry_on = dict(s.execute(select(Payment.id, Payment.originate_on).where(Payment.id.in_(retry_ids))).all()) \
        if retry_ids else {}
    keys = {(r.member_id, r.plan_id) for r in rows}
    flags = {(f.member_id, f.plan_id): f for f in s.execute(
        select(CoverageFlag.member_id, CoverageFlag.plan_id, CoverageFlag.deadline, CoverageFlag.status)
        .where(CoverageFlag.current_key.in_([CoverageFlag.key_for(*k) for k in keys])))}
    dues = {(m, p, month): due for m, p, month, due in s.execute(
        select(Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.due_date)
        .where(Premium.member_id.in_(sorted({k[0] for k in keys}))))}
    out = []
    for r in rows:
        flag = flags.get((r.member_id, r.plan_id))
        deadline = flag.deadline if flag is not None and flag.deadline else None
        due = dues.get((r.member_id, r.plan_id, r.coverage_month))
        if deadline is None and due is not None and due >= r.returned_on:
            deadline = due
        out.append({
            "event_key": f"return:{r.id}", "kind": "returned_payment", "member_id": r.member_id,
            "plan_id": r.plan_id, "deadline": deadline, "amount_owed_cents": r.amount_cents,
            "payment_return_id": r.id, "return_code": r.return_code, "return_title": r.return_title,
            "disposition": r.disposition, "returned_on": r.returned_on, "coverage_month": r.coverage_month,
            "account_last4": r.last4 or "", "retry_on": retry_on.get(r.retry_payment_id),
        })
    return out


def _pending_flags(s: Session) -> list[dict]:
    """Current coverage flags that call for a notice and have none yet. Flags without a notice
    ('ok', 'pending_activation', 'at_risk') are left out in the query: a chunk of them must not hide the ones behind."""
    rows = s.execute(
        select(CoverageFlag).outerjoin(Notice, Notice.coverage_flag_id == CoverageFlag.id)
        .where(CoverageFlag.current_key.is_not(None) & CoverageFlag.status.in_(_NOTICED_STATUSES)
               & Notice.id.is_(None))
        .order_by(CoverageFlag.id).limit(CHUNK)).scalars().all()
    out = []
    for f in rows:
        kind = notice_kind_for_flag(f.status, f.grace_month)
        if kind is None:
            continue
        out.append({
            "event_key": f"flag:{f.id}", "kind": kind, "member_id": f.member_id, "plan_id": f.plan_id,
            "deadline": f.deadline, "amount_owed_cents": f.amount_owed_cents, "coverage_flag_id": f.id,
            "status": f.status, "reason": f.reason, "months_owed": f.months_owed, "grace_month": f.grace_month,
            "grace_months": f.grace_months, "first_unpaid_month": f.first_unpaid_month,
            "coverage_ends_on": f.coverage_ends_on,
        })
    return out


def _pending_amount_changes(s: Session, notice_date: date) -> list[dict]:
    """`autopay_amount_change` notices (NACHA Rules 2.3.2.6: a recurring debit of varying amount):
    for each premium not yet due whose live AutoPay mandate authorized less than it, in advance (so
    that its pull may go out 10 calendar days later: batch/rules/debit_rules.amount_change); and for
    each pull sent above its authorized amount without that notice (`amount_sent_late`), at once.
    One notice per premium and amount (`autopay_amount:<premium id>:<cents>`)."""
    advance = s.execute(
        select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.due_date,
               Premium.amount_due_cents, AutopayMandate.authorized_amount_cents)
        .join(AutopayMandate, (AutopayMandate.member_id == Premium.member_id)
              & (AutopayMandate.plan_id == Premium.plan_id) & (AutopayMandate.status == "active"))
        .where(AutopayMandate.authorized_amount_cents.is_not(None)
               & (Premium.amount_due_cents > AutopayMandate.authorized_amount_cents)
               & (Premium.due_date >= notice_date))
        .order_by(Premium.id)).all()
    late = s.execute(
        select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.due_date,
               Payment.amount_cents, Payment.state)
        .join(Payment, Payment.autopay_premium_id == Premium.id)
        .join(PaymentEvent, (PaymentEvent.payment_id == Payment.id) & (PaymentEvent.event == "amount_sent_late"))
        .order_by(Premium.id)).all()
    held = set(s.scalars(select(Payment.autopay_premium_id).join(
        PaymentEvent, (PaymentEvent.payment_id == Payment.id) & (PaymentEvent.event == "amount_change_held"))))
    wanted = {}
    for pid, member, plan, month, due, cents, authorized in advance:
        wanted[f"autopay_amount:{pid}:{cents}"] = (pid, member, plan, month, due, cents, authorized, False)
    for pid, member, plan, month, due, cents, _state in late:
        wanted.setdefault(f"autopay_amount:{pid}:{cents}", (pid, member, plan, month, due, cents, None, True))
    if not wanted:
        return []
    keys = list(wanted)
    have: set[str] = set()
    for i in range(0, len(keys), 1000):
        have.update(s.scalars(select(Notice.event_key).where(Notice.event_key.in_(keys[i:i + 1000]))))
    out = []
    for key, (pid, member, plan, month, due, cents, authorized, sent_late) in wanted.items():
        if key in have:
            continue
        out.append({
            "event_key": key, "kind": "autopay_amount_change", "member_id": member, "plan_id": plan,
            "deadline": due, "amount_owed_cents": cents, "coverage_month": month,
            "authorized": dollars(authorized) if authorized is not None else "", "sent_late": sent_late,
            "held": pid in held,
        })
        if len(out) >= CHUNK:
            break
    return out


# The reason `returns` gives the payments a returned prenote failed (batch/collect/returns.py
# `_block_accounts`: "bank account blocked: <the account's status reason>").
_BLOCKED_PREFIX = "bank account blocked: "


def _pending_prenote_returns(s: Session, notice_date: date) -> list[dict]:
    """`account_not_validated` notices: one per returned prenote (`notices.prenote_id` is unique)
    with none yet. The notice names the account masked, the bank's reason, what followed (AutoPay
    suspended on the account, held and pending payments failed) and what to do. Its plan is that of
    the member's AutoPay mandate on the account, else of a payment from it, else of any premium."""
    rows = s.execute(
        select(Prenote.id, Prenote.member_id, Prenote.bank_account_id, Prenote.return_code, Prenote.return_reason,
               Prenote.resolved_on, BankAccount.last4, BankAccount.status_reason)
        .join(BankAccount, BankAccount.id == Prenote.bank_account_id)
        .outerjoin(Notice, Notice.prenote_id == Prenote.id)
        .where((Prenote.state == "returned") & Notice.id.is_(None))
        .order_by(Prenote.id).limit(CHUNK)).all()
    out = []
    for r in rows:
        mandates = s.execute(
            select(AutopayMandate.plan_id, AutopayMandate.status)
            .where((AutopayMandate.bank_account_id == r.bank_account_id) & (AutopayMandate.member_id == r.member_id))
            .order_by(AutopayMandate.id.desc())).all()
        failed = s.execute(
            select(Payment.id, Payment.plan_id, Payment.coverage_month, Payment.amount_cents, Premium.due_date)
            .join(PaymentEvent, (PaymentEvent.payment_id == Payment.id) & (PaymentEvent.event == "stopped"))
            .outerjoin(Premium, (Premium.member_id == Payment.member_id) & (Premium.plan_id == Payment.plan_id)
                       & (Premium.coverage_month == Payment.coverage_month))
            .where((Payment.bank_account_id == r.bank_account_id) & (Payment.member_id == r.member_id)
                   & (Payment.state == "failed") & PaymentEvent.reason.startswith(_BLOCKED_PREFIX + "prenote returned"))
            .order_by(Payment.coverage_month, Payment.id)).all()
        failed = list({f.id: f for f in failed}.values())  # one row per payment
        plan = next((m.plan_id for m in mandates), None) or next((f.plan_id for f in failed), None)
        if plan is None:
            plan = s.scalar(select(Payment.plan_id).where((Payment.bank_account_id == r.bank_account_id)
                                                            & (Payment.member_id == r.member_id))
                            .order_by(Payment.id.desc()).limit(1)) \
                or s.scalar(select(Premium.plan_id).where(Premium.member_id == r.member_id)
                            .order_by(Premium.coverage_month.desc()).limit(1)) or ""
        dues = [f.due_date for f in failed if f.due_date is not None and f.due_date >= notice_date]
        code = r.return_code or ""
        title = (r.return_reason or "").removeprefix(code).strip()
        out.append({
            "event_key": f"prenote:{r.id}", "kind": "account_not_validated", "member_id": r.member_id,
            "plan_id": plan, "deadline": min(dues) if dues else None,
            "amount_owed_cents": sum(int(f.amount_cents) for f in failed), "prenote_id": r.id,
            "return_code": code, "return_title": title, "returned_on": r.resolved_on,
            "account_masked": mask_last4(r.last4),
            "autopay_suspended": [m.plan_id for m in mandates if m.status == "suspended"],
            "failed_payments": [{"coverage_month_name": _month_name(f.coverage_month),
                                 "amount": dollars(int(f.amount_cents))} for f in failed],
        })
    return out


def _member_names(s: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    names: dict[tuple[str, str], str] = {}
    members = sorted({k[0] for k in keys})
    for i in range(0, len(members), 1000):
        for m, p, name in s.execute(
                select(Premium.member_id, Premium.plan_id, Premium.member_name)
                .where(Premium.member_id.in_(members[i:i + 1000])).order_by(Premium.coverage_month)):
            if (m, p) in keys:
                names[(m, p)] = name  # the latest month's name wins
    return names


def _context(e: dict, notice_date: date, sender: str) -> dict:
    return {
        "sender": sender, "notice_date": notice_date, "event_key": e["event_key"], "kind": e["kind"],
        "member_id": e["member_id"], "member_name": e["member_name"], "plan_id": e["plan_id"],
        "deadline": e.get("deadline"), "amount_owed": dollars(e.get("amount_owed_cents") or 0),
        "amount": dollars(e.get("amount_owed_cents") or 0), "months_owed": e.get("months_owed", 0),
        "reason": e.get("reason", ""), "status": e.get("status", ""), "grace_month": e.get("grace_month", 0),
        "grace_months": e.get("grace_months", 0),
        "first_unpaid_month_name": _month_name(e.get("first_unpaid_month")),
        "coverage_ends_on": e.get("coverage_ends_on"),
        "coverage_month_name": _month_name(e.get("coverage_month")),
        "return_code": e.get("return_code", ""), "return_title": e.get("return_title", ""),
        "disposition": e.get("disposition", ""), "returned_on": e.get("returned_on"),
        "account_last4": e.get("account_last4", ""), "retry_on": e.get("retry_on"),
        "authorized": e.get("authorized", ""), "sent_late": e.get("sent_late", False), "held": e.get("held", False),
        "account_masked": e.get("account_masked", ""), "autopay_suspended": e.get("autopay_suspended", []),
        "failed_payments": e.get("failed_payments", []),
    }


def write_manifests(sessions: sessionmaker[Session], notices_dir: Path, notice_date: date) -> Path:
    """Rewrite `manifest.csv` (every notice) and `<notice_date>/manifest.csv` (that day's) from the
    database. Columns: MANIFEST_COLUMNS; amounts in dollars, dates ISO. Returns the day's manifest."""
    notices_dir = Path(notices_dir)
    notices_dir.mkdir(parents=True, exist_ok=True)
    day_dir = notices_dir / notice_date.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    all_buf, day_buf = io.StringIO(), io.StringIO()
    # machine-read (the vendor's system): exact text, every field quoted (batch.rules.cells)
    all_w, day_w = machine_csv_writer(all_buf), machine_csv_writer(day_buf)
    all_w.writerow(MANIFEST_COLUMNS)
    day_w.writerow(MANIFEST_COLUMNS)
    with sessions() as s:
        last = 0
        while True:
            rows = s.execute(select(Notice.id, Notice.notice_date, Notice.member_id, Notice.plan_id, Notice.kind,
                                    Notice.deadline, Notice.amount_owed_cents, Notice.file_name)
                             .where(Notice.id > last).order_by(Notice.id).limit(5000)).all()
            if not rows:
                break
            last = rows[-1].id
            names = _member_names(s, {(r.member_id, r.plan_id) for r in rows})
            for r in rows:
                line = (r.notice_date.isoformat(), r.member_id, names.get((r.member_id, r.plan_id), ""), r.plan_id,
                        r.kind, r.deadline.isoformat() if r.deadline else "", plain_dollars(r.amount_owed_cents or 0),
                        r.file_name)
                all_w.writerow(line)
                if r.notice_date == notice_date:
                    day_w.writerow(line)
    write_atomic(notices_dir / "manifest.csv", all_buf.getvalue().encode("utf-8"), mode=_VENDOR_READABLE)
    day_manifest = day_dir / "manifest.csv"
    write_atomic(day_manifest, day_buf.getvalue().encode("utf-8"), mode=_VENDOR_READABLE)
    return day_manifest
