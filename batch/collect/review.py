"""The review queue: list review items, show one with the bank record it came from and the payment
it names, and resolve it (`apply` the bank's return or NOC to the payment a person identified, or
`dismiss` it), each resolution an audit row (review_resolutions).

Which actions a kind allows, and the words for them, are the pure table of batch/rules/review.py.
`apply` goes through `batch.collect.returns.apply_to_payment`: the same code path as an automatic
match. The caller re-assesses coverage and writes the notices afterwards, as after `returns process`.
Account numbers are shown masked, always.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nacha import codes
from nacha.fields import mask, mask_last4
from nacha.reader import EntryItem, Reader

from ..rules.counts import counted
from ..rules import review as rules
from ..rules.money import dollars
from ..rules.returns import OPEN_RETRY_STATES, ReturnPolicy
from ..store.crypto import RETURN_FILE_CONTEXT, Keyring
from ..store.models import (
    AutopayMandate,
    BankAccount,
    FileEntry,
    NachaFile,
    Payment,
    PaymentEvent,
    PaymentReturn,
    Prenote,
    ReturnFile,
    ReturnFileContent,
    ReviewItem,
    ReviewResolution,
    utcnow,
)
from .returns import ManualRefusal, apply_to_payment, apply_to_prenote

__all__ = ["ReviewError", "Resolution", "code_title", "list_items", "resolve_item", "show_item"]


class ReviewError(Exception):
    """A review command that cannot be carried out. `usage`: the request itself is wrong (no such
    item, an action the kind does not allow, `--payment` missing or out of place); otherwise the
    data forbids it (already resolved, a mismatch without --force, a state rule)."""

    def __init__(self, message: str, *, usage: bool = False, kind: str = ""):
        super().__init__(message)
        self.usage = usage
        self.kind = kind


@dataclass
class Resolution:
    item_id: int
    action: str
    resolved_by: str
    resolved_at: datetime
    note: str
    payment_id: int | None = None
    forced: bool = False
    overridden: list[str] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    words: str = ""
    prenote_id: int | None = None

    def as_dict(self) -> dict:
        return {"item_id": self.item_id, "action": self.action, "resolved_by": self.resolved_by,
                "resolved_at": self.resolved_at.isoformat(), "note": self.note, "payment_id": self.payment_id,
                "prenote_id": self.prenote_id, "forced": self.forced, "overridden": self.overridden, "before": self.before, "after": self.after,
                "result": self.words}


def code_title(code: str | None) -> str:
    """The title of a return or change code ('' when none or unknown)."""
    if not code:
        return ""
    rc = codes.return_code(code)
    if rc is not None:
        return rc.title
    cc = codes.CHANGE_CODES.get(code)
    return cc.title if cc is not None else ""


# =============================================================================================
# Reading
# =============================================================================================

def _item_rows(s: Session, where) -> list[tuple]:
    return s.execute(
        select(ReviewItem, Payment.member_id, Payment.plan_id, ReturnFile.file_name, ReviewResolution,
               ReturnFile.processed_on)
        .outerjoin(Payment, Payment.id == ReviewItem.payment_id)
        .outerjoin(ReturnFile, ReturnFile.id == ReviewItem.return_file_id)
        .outerjoin(ReviewResolution, ReviewResolution.review_item_id == ReviewItem.id)
        .where(where).order_by(ReviewItem.id)).all()


def _bank_entries(s: Session, keyring: Keyring | None, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], EntryItem]:
    """The bank file entries (file id, line) read again from the kept bytes of their files (each
    file read once). Entries whose file bytes were not kept (or cannot be decrypted) are missing."""
    out: dict[tuple[int, int], EntryItem] = {}
    if keyring is None:
        return out
    by_file: dict[int, set[int]] = {}
    for fid, line in wanted:
        by_file.setdefault(fid, set()).add(line)
    for fid, lines in by_file.items():
        blob = s.scalar(select(ReturnFileContent.content_enc).where(ReturnFileContent.return_file_id == fid))
        if blob is None:
            continue
        data = keyring.decrypt(blob, RETURN_FILE_CONTEXT)
        for item in Reader(data, "bank", name=f"return file {fid}"):
            if isinstance(item, EntryItem) and item.line in lines:
                out[(fid, item.line)] = item
    return out


def _addenda(item: EntryItem):
    for a in item.addenda:
        if a is not None and a[1].addenda_type_code in ("98", "99"):
            return a[1]
    return None


def bank_record(item: EntryItem) -> dict:
    """The bank's entry and its return/NOC addenda, account numbers masked."""
    e = item.record
    a = _addenda(item)
    rec: dict[str, Any] = {
        "line": item.line, "record": "entry", "transaction_code": e.transaction_code,
        "receiving_dfi": e.receiving_dfi_identification, "account_masked": mask(e.dfi_account_number),
        "amount_cents": e.amount if type(e.amount) is int else None,
        "individual_id": (getattr(e, "individual_identification_number", "") or "").strip(),
        "individual_name": (getattr(e, "individual_name", "") or "").strip(),
        "trace_number": e.trace_number,
    }
    if a is None:
        return rec
    t = a.addenda_type_code
    rec.update(record="return" if t == "99" else "noc", code=a[2], code_title=code_title(a[2]),
               original_trace_number=a.original_entry_trace_number,
               original_rdfi=a.original_receiving_dfi_identification)
    if t == "99":
        rec["addenda_information"] = (getattr(a, "addenda_information", "") or "").strip()
    else:
        corrected = {}
        try:
            parts = codes.parse_corrected_data(a[2], (a.corrected_data or "").ljust(codes.CORRECTED_DATA_LENGTH))
        except (ValueError, KeyError):
            parts = {}
        for k, v in parts.items():
            corrected[k] = mask(v) if k == codes.PART_ACCOUNT_NUMBER else v
        rec["corrected"] = corrected
    return rec


def _row_dict(r: ReviewItem, member: str | None, plan: str | None, file_name: str | None,
              res: ReviewResolution | None, processed_on: date | None, today: date, entry: EntryItem | None) -> dict:
    # Opened on the business date of the run that opened it (a bank file's processing date), else
    # the day the row was written; the age counts to `today`, the command's business date.
    opened = processed_on or r.created_at.date()
    bank_member = bank_name = ""
    if entry is not None:
        bank_member = (getattr(entry.record, "individual_identification_number", "") or "").strip()
        bank_name = (getattr(entry.record, "individual_name", "") or "").strip()
    return {
        "id": r.id, "status": r.status, "opened_on": opened.isoformat(), "age_days": (today - opened).days,
        "kind": r.kind, "kind_words": rules.kind_words(r.kind), "subject": r.subject, "subject_ref": r.subject_ref,
        "code": r.code or "", "code_title": code_title(r.code),
        "amount_cents": r.amount_cents, "expected_amount_cents": r.expected_amount_cents,
        "original_trace_number": r.original_trace_number or "", "trace_number": r.trace_number or "",
        "member_id": member or bank_member, "plan_id": plan or "", "bank_individual_name": bank_name,
        "payment_id": r.payment_id, "related_payment_id": r.related_payment_id,
        "file": file_name or "", "return_file_id": r.return_file_id, "line": r.line,
        "location": _location(r, file_name),
        "reason": r.detail, "actions": list(rules.actions_for(r.kind)),
        "resolution": _resolution_dict(res) if res is not None else None,
    }


def _location(r: ReviewItem, file_name: str | None) -> dict | None:
    """The bank record's field the item is about (line, columns, record, field), when it has one."""
    issue = r.issue(file_name or "")
    if issue is None:
        return None
    where = issue.to_json()
    where.pop("message", None)
    return where


def _resolution_dict(res: ReviewResolution) -> dict:
    return {"action": res.action, "resolved_by": res.resolved_by, "resolved_at": res.resolved_at.isoformat(),
            "business_date": res.business_date.isoformat(), "note": res.note, "payment_id": res.payment_id,
            "prenote_id": res.prenote_id,
            "forced": res.forced, "overridden": res.overridden or "",
            "before": json.loads(res.before_state), "after": json.loads(res.after_state)}


def list_items(sessions: sessionmaker[Session], today: date, *, status: str = "open", kind: str | None = None,
               keyring: Keyring | None = None) -> list[dict]:
    """Review items, oldest first: `status` open, resolved or all; `kind` one kind only. With a
    keyring, an item with no payment shows the member id and name the bank's entry carries."""
    if status not in rules.STATUSES:
        raise ReviewError(f"status must be one of {', '.join(rules.STATUSES)}", usage=True)
    where = ReviewItem.id.is_not(None)
    if status != "all":
        where = where & (ReviewItem.status == status)
    if kind:
        where = where & (ReviewItem.kind == kind)
    with sessions() as s:
        rows = _item_rows(s, where)
        wanted = {(r.return_file_id, r.line) for r, member, *_rest in rows
                  if member is None and r.return_file_id is not None and r.line is not None}
        entries = _bank_entries(s, keyring, wanted)
        return [_row_dict(r, member, plan, fname, res, processed_on, today, entries.get((r.return_file_id, r.line)))
                for r, member, plan, fname, res, processed_on in rows]


def _payment_dict(s: Session, payment_id: int) -> dict | None:
    p = s.get(Payment, payment_id)
    if p is None:
        return None
    acct = s.get(BankAccount, p.bank_account_id) if p.bank_account_id is not None else None
    entry = s.execute(select(FileEntry.trace_number, FileEntry.amount_cents, NachaFile.file_name, NachaFile.file_date)
                      .join(NachaFile, NachaFile.id == FileEntry.file_id)
                      .where(FileEntry.payment_id == payment_id)).first()
    history: list[dict] = [{"on": p.submitted_at.date().isoformat(), "event": "submitted",
                            "detail": f"{p.channel} payment {p.confirmation_id}, {dollars(p.amount_cents)}"}]
    if entry is not None:
        history.append({"on": entry.file_date.isoformat(), "event": "in_file",
                        "detail": f"file {entry.file_name}, trace {entry.trace_number}"})
    for r in s.scalars(select(PaymentReturn).where(PaymentReturn.payment_id == payment_id).order_by(PaymentReturn.id)):
        history.append({"on": r.returned_on.isoformat(), "event": f"{r.kind} {r.return_code}",
                        "detail": f"{r.return_title} ({r.status}): {r.action}"})
    for ev in s.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == payment_id).order_by(PaymentEvent.id)):
        history.append({"on": ev.occurred_on.isoformat(), "event": ev.event,
                        "detail": f"{ev.old_state} -> {ev.new_state}: {ev.reason}"})
    history.sort(key=lambda h: h["on"])
    return {
        "id": p.id, "confirmation_id": p.confirmation_id, "channel": p.channel, "member_id": p.member_id,
        "plan_id": p.plan_id, "coverage_month": p.coverage_month.isoformat(), "amount_cents": p.amount_cents,
        "state": p.state, "retry_of_id": p.retry_of_id, "retry_number": p.retry_number,
        "account": None if acct is None else {"id": acct.id, "routing_number": acct.routing_number,
                                              "account_masked": "****" + acct.last4,
                                              "status": acct.status},
        "trace_number": entry.trace_number if entry is not None else None,
        "history": history,
    }


def _prenote_dict(s: Session, prenote_id: int) -> dict | None:
    pn = s.get(Prenote, prenote_id)
    if pn is None:
        return None
    acct = s.get(BankAccount, pn.bank_account_id)
    return {"id": pn.id, "member_id": pn.member_id, "state": pn.state, "return_code": pn.return_code or "",
            "return_reason": pn.return_reason or "", "resolved_on": pn.resolved_on.isoformat() if pn.resolved_on else "",
            "account": {"account_masked": mask_last4(acct.last4), "routing_number": acct.routing_number,
                        "status": acct.status, "validation_result": acct.validation_result}}


def show_item(sessions: sessionmaker[Session], keyring: Keyring | None, item_id: int, today: date) -> dict:
    """One item: its row, the bank record it came from (masked), the payment(s) it names with their
    history, and what each action would do."""
    with sessions() as s:
        rows = _item_rows(s, ReviewItem.id == item_id)
        if not rows:
            raise ReviewError(f"there is no review item {item_id}", usage=True)
        r, member, plan, fname, res, processed_on = rows[0]
        entries = {}
        if r.return_file_id is not None and r.line is not None:
            entries = _bank_entries(s, keyring, {(r.return_file_id, r.line)})
        entry = entries.get((r.return_file_id, r.line))
        out = _row_dict(r, member, plan, fname, res, processed_on, today, entry)
        out["bank_record"] = bank_record(entry) if entry is not None else None
        # the payment the item names, else the one a person applied it to
        linked = r.payment_id if r.payment_id is not None else (res.payment_id if res is not None else None)
        out["payment"] = _payment_dict(s, linked) if linked is not None else None
        out["related_payment"] = _payment_dict(s, r.related_payment_id) if r.related_payment_id is not None else None
        out["prenote"] = _prenote_dict(s, res.prenote_id) if res is not None and res.prenote_id is not None else None
        is_noc = entry is not None and out["bank_record"].get("record") == "noc"
        out["action_words"] = {a: rules.action_words(r.kind, a, is_noc=is_noc) for a in rules.actions_for(r.kind)}
        return out


# =============================================================================================
# Resolving
# =============================================================================================

def _snapshot(s: Session, payment_id: int | None) -> dict:
    """The state a resolution may change: the payment, its account, the mandates on that account,
    the open re-presentments of the payment."""
    if payment_id is None:
        return {}
    p = s.get(Payment, payment_id)
    if p is None:
        return {}
    s.refresh(p)
    out: dict[str, Any] = {"payment_id": p.id, "payment_state": p.state}
    if p.bank_account_id is not None:
        acct = s.get(BankAccount, p.bank_account_id)
        s.refresh(acct)
        out["account_status"] = acct.status
        out["mandates"] = {str(mid): st for mid, st in s.execute(
            select(AutopayMandate.id, AutopayMandate.status).where(
                (AutopayMandate.bank_account_id == p.bank_account_id)
                & (AutopayMandate.member_id == p.member_id)).order_by(AutopayMandate.id)).all()}
    root = p.retry_of_id or p.id
    out["open_representments"] = list(s.scalars(select(Payment.id).where(
        (Payment.retry_of_id == root) & Payment.state.in_(OPEN_RETRY_STATES)).order_by(Payment.id)))
    return out


def _prenote_snapshot(s: Session, prenote_id: int | None) -> dict:
    """The state applying a bank entry to a prenote may change: the prenote, its account (status and
    validation), the mandates on the account, its held and pending payments."""
    if prenote_id is None:
        return {}
    pn = s.get(Prenote, prenote_id)
    if pn is None:
        return {}
    s.refresh(pn)
    acct = s.get(BankAccount, pn.bank_account_id)
    s.refresh(acct)
    return {
        "prenote_id": pn.id, "prenote_state": pn.state, "account_status": acct.status,
        "account_validation": acct.validation_result,
        "mandates": {str(mid): st for mid, st in s.execute(
            select(AutopayMandate.id, AutopayMandate.status).where(AutopayMandate.bank_account_id == acct.id)
            .order_by(AutopayMandate.id)).all()},
        "payments": {str(pid): st for pid, st in s.execute(
            select(Payment.id, Payment.state).where((Payment.bank_account_id == acct.id)
                                                    & Payment.state.in_(("pending", "held", "failed")))
            .order_by(Payment.id)).all()},
    }


def resolve_item(sessions: sessionmaker[Session], keyring: Keyring, item_id: int, action: str, note: str,
                 resolved_by: str, *, business_date: date, payment_id: int | None = None, force: bool = False,
                 policy: ReturnPolicy = ReturnPolicy(), prenote_id: int | None = None) -> Resolution:
    """Resolve a review item once, in one transaction with its audit row. Raises ReviewError (the
    transaction rolled back, nothing changed) when it cannot be done."""
    note = (note or "").strip()
    resolved_by = (resolved_by or "").strip()
    if not note:
        raise ReviewError("a note is required (--note): say why", usage=True)
    if not resolved_by:
        raise ReviewError("who resolves it is required (--by)", usage=True)
    if action not in (rules.APPLY, rules.DISMISS):
        raise ReviewError(f"action must be {rules.APPLY} or {rules.DISMISS}", usage=True)
    if action == rules.APPLY and payment_id is None and prenote_id is None:
        raise ReviewError("--action apply needs --payment N (the payment the bank's entry belongs to) or "
                          "--prenote ID (the prenote it answers)", usage=True)
    if payment_id is not None and prenote_id is not None:
        raise ReviewError("--payment and --prenote exclude each other: the bank's entry answers one of ours", usage=True)
    if action != rules.APPLY and (payment_id is not None or prenote_id is not None or force):
        raise ReviewError("--payment, --prenote and --force go with --action apply only", usage=True)
    target = rules.PRENOTE if prenote_id is not None else rules.PAYMENT
    try:
        with sessions() as s, s.begin():
            q = select(ReviewItem).where(ReviewItem.id == item_id)
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update()
            item = s.scalar(q)
            if item is None:
                raise ReviewError(f"there is no review item {item_id}", usage=True)
            if item.status != "open":
                res = s.scalar(select(ReviewResolution).where(ReviewResolution.review_item_id == item_id))
                who = f" by {res.resolved_by} on {res.resolved_at:%Y-%m-%d %H:%M} UTC ({res.action})" if res else ""
                raise ReviewError(f"review item {item_id} is already resolved{who}", kind="already_resolved")
            allowed = rules.actions_for(item.kind)
            if action not in allowed:
                raise ReviewError(f"a {item.kind} item allows {' or '.join(allowed)}, not {action}", usage=True)
            if action == rules.APPLY and target not in rules.apply_targets(item.kind):
                raise ReviewError(f"a {item.kind} item is applied to a {' or '.join(rules.apply_targets(item.kind))}, "
                                  f"not a {target} (its original trace is a payment's entry, or it answers a live "
                                  "return)", usage=True)

            def snapshot() -> dict:
                if action != rules.APPLY:
                    return {}
                return _prenote_snapshot(s, prenote_id) if target == rules.PRENOTE else _snapshot(s, payment_id)

            before = {"item_status": item.status, **snapshot()}
            overridden: list[str] = []
            words = "dismissed: nothing done"
            if action == rules.APPLY and target == rules.PRENOTE:
                words, overridden = _apply_prenote(s, keyring, item, prenote_id, business_date, policy, force)
            elif action == rules.APPLY:
                words, overridden = _apply(s, keyring, item, payment_id, business_date, policy, force)
            item.status = "resolved"
            s.flush()
            after = {"item_status": item.status, **snapshot()}
            now = utcnow()
            row = ReviewResolution(review_item_id=item.id, action=action, note=note[:1000],
                                   resolved_by=resolved_by[:100], resolved_at=now, business_date=business_date,
                                   payment_id=payment_id if action == rules.APPLY else None,
                                   prenote_id=prenote_id if action == rules.APPLY else None,
                                   forced=bool(force and overridden),
                                   overridden="; ".join(overridden)[:300] or None,
                                   before_state=json.dumps(before, sort_keys=True),
                                   after_state=json.dumps(after, sort_keys=True))
            s.add(row)
            s.flush()
    except IntegrityError as e:  # another person resolved it meanwhile (uq_review_resolutions_review_item_id)
        raise ReviewError(f"review item {item_id} is already resolved", kind="already_resolved") from e
    return Resolution(item_id, action, resolved_by, now, note, payment_id if action == rules.APPLY else None,
                      bool(force and overridden), overridden, before, after, words,
                      prenote_id if action == rules.APPLY else None)


def _bank_entry_of(s: Session, keyring: Keyring, item: ReviewItem) -> tuple[ReturnFile, EntryItem]:
    if item.return_file_id is None or item.line is None:
        raise ReviewError(f"review item {item.id} is not about a bank file's entry: nothing to apply", usage=True)
    rf = s.get(ReturnFile, item.return_file_id)
    entry = _bank_entries(s, keyring, {(rf.id, item.line)}).get((rf.id, item.line))
    if entry is None:
        raise ReviewError(f"the bytes of bank file {rf.file_name} were not kept, so its line {item.line} cannot be "
                          "read again; apply it by hand and dismiss the item", kind="no_bytes")
    return rf, entry


def _refused(target: str, r: ManualRefusal) -> ReviewError:
    """'refused: payment #5: <reason> (use --force ...)' for a refusal of applying an entry to `target`."""
    hint = " (use --force to apply it anyway; recorded)" if r.overridable else ""
    return ReviewError(f"refused: {target}: {r.reason}{hint}", kind=r.kind)


def _apply_prenote(s: Session, keyring: Keyring, item: ReviewItem, prenote_id: int, on: date, policy: ReturnPolicy,
                   force: bool) -> tuple[str, list[str]]:
    rf, entry = _bank_entry_of(s, keyring, item)
    try:
        done = apply_to_prenote(s, keyring, rf, entry, prenote_id, on, policy, force=force)
    except ManualRefusal as r:
        raise _refused(f"prenote #{prenote_id}", r) from r
    words = (f"{done.record} {done.code} applied to prenote #{prenote_id}: {done.old_state} -> {done.new_state}; "
             f"{done.action}")
    if done.outcome.review_items:
        words += f"; {counted(done.outcome.review_items, 'new review item')} opened"
    return words, done.overridden


def _apply(s: Session, keyring: Keyring, item: ReviewItem, payment_id: int, on: date, policy: ReturnPolicy,
           force: bool) -> tuple[str, list[str]]:
    rf, entry = _bank_entry_of(s, keyring, item)
    try:
        done = apply_to_payment(s, keyring, rf, entry, payment_id, on, policy, force=force)
    except ManualRefusal as r:
        raise _refused(f"payment #{payment_id}", r) from r
    words = (f"{done.record} {done.code} applied to payment #{payment_id}: {done.old_state} -> {done.new_state}; "
             f"{done.action}")
    if done.retry_payment_id:
        words += f" (re-presentment #{done.retry_payment_id})"
    if done.outcome.review_items:
        words += f"; {counted(done.outcome.review_items, 'new review item')} opened"
    return words, done.overridden
