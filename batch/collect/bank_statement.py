"""Tying the bank's BAI2 statement out to what we sent and what the bank returned: `achbatch
reconcile bank FILE...` and the nightly step `bank_statement` (batch/rules/bank_statement.py holds
the reading and the matching; docs/finance.md the type codes).

One file, one transaction: the file is read whole (a malformed file is rejected with its line and
reason and nothing is recorded), then its statement_files row, its lines of the mapped ACH type
codes (with what each matched) and a review item of kind `bank_unmatched` (subject
`statement_line`) for each expected settlement the bank did not post and each posting nothing of
ours explains. The same bytes again are a duplicate: processed once. Only a final prior-day report
is matched; any other (interim, same-day, a correction or test group) is kept and says so.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..rules.bank_statement import (
    DEFAULT_CREDIT_CODES, DEFAULT_RETURN_CODES, Expected, StatementError, TieOut, file_settlement_day,
    read_statement, tie_out,
)
from ..rules.money import dollars
from ..store.models import NachaFile, ReturnFile, ReviewItem, StatementFile, StatementLine

__all__ = ["StatementCodes", "StatementOutcome", "expected_items", "process_statement_inbox", "reconcile_file",
           "reconcile_files"]


@dataclass(frozen=True)
class StatementCodes:
    credit: tuple[str, ...] = DEFAULT_CREDIT_CODES
    returns: tuple[str, ...] = DEFAULT_RETURN_CODES

    @classmethod
    def from_settings(cls, bank) -> "StatementCodes":
        return cls(tuple(bank.statement_credit_codes), tuple(bank.statement_return_codes))


@dataclass
class StatementOutcome:
    path: str
    sha256: str = ""
    status: str = "reconciled"  # reconciled | not_final | duplicate | rejected
    statement_file_id: int | None = None
    as_of: date | None = None
    tie: TieOut | None = None
    review_items: int = 0
    error: str | None = None  # rejected: "<name>:<line>: <reason>"
    error_line: int | None = None
    previously_processed_on: date | None = None
    names: dict[tuple[str, int], str] = field(default_factory=dict)  # (kind, id) -> file name

    @property
    def problems(self) -> bool:
        return self.status == "rejected" or (self.tie is not None and not self.tie.all_matched)

    def words(self) -> str:
        if self.status == "rejected":
            return f"rejected: {self.error}"
        if self.status == "duplicate":
            return f"already reconciled on {self.previously_processed_on} (the same bytes): not again"
        if self.status == "not_final":
            return f"as of {self.as_of}: not a final prior-day report; kept, not matched"
        t = self.tie
        return (f"as of {self.as_of}: {len(t.matched)} matched, {len(t.missing)} expected and not posted "
                f"({dollars(sum(e.amount_cents for e in t.missing))}), {len(t.unexplained)} posted and unexplained "
                f"({dollars(sum(d.amount_cents for d in t.unexplained))})")


def expected_items(s: Session) -> list[Expected]:
    """What we expect the bank to post and that no statement line matched yet: each sent NACHA file
    (its debit total, credited on its settlement day) and each applied return file with returns (its
    return total, debited on its settlement date)."""
    out = []
    taken_files = select(StatementLine.nacha_file_id).where(StatementLine.nacha_file_id.is_not(None))
    for f in s.scalars(select(NachaFile).where((NachaFile.state == "sent") & NachaFile.id.not_in(taken_files))):
        if f.total_debit_cents <= 0:
            continue
        out.append(Expected("nacha_file", f.id, f.file_name, file_settlement_day(f.file_date), f.total_debit_cents,
                            (f"{f.file_date:%y%m%d}{f.file_id_modifier}", f.file_name)))
    taken_returns = select(StatementLine.return_file_id).where(StatementLine.return_file_id.is_not(None))
    for r in s.scalars(select(ReturnFile).where(
            (ReturnFile.status == "applied") & ReturnFile.return_total_cents.is_not(None)
            & (ReturnFile.return_total_cents > 0) & ReturnFile.settlement_date.is_not(None)
            & ReturnFile.id.not_in(taken_returns))):
        out.append(Expected("return_file", r.id, r.file_name, r.settlement_date, r.return_total_cents,
                            (r.file_name,)))
    return out


def reconcile_file(sessions: sessionmaker[Session], path: str | os.PathLike, processed_on: date,
                   codes: StatementCodes = StatementCodes(), *,
                   mark: Callable[[Session, StatementOutcome], None] | None = None) -> StatementOutcome:
    """Read one BAI2 file and tie it out in one transaction (see the module docstring). `mark(session,
    outcome)` runs inside the transaction that records the outcome (the inbound ledger uses it); a
    rejected file records nothing else."""
    path = Path(path)
    out = StatementOutcome(str(path))
    try:
        data = path.read_bytes()
    except OSError as e:
        out.status, out.error = "rejected", f"{path}: cannot read file: {e.strerror or e}"
        return out
    out.sha256 = hashlib.sha256(data).hexdigest()
    with sessions() as s, s.begin():
        prior = s.scalar(select(StatementFile).where(StatementFile.sha256 == out.sha256))
        if prior is not None:
            out.status, out.statement_file_id = "duplicate", prior.id
            out.previously_processed_on, out.as_of = prior.processed_on, prior.as_of_date
            if mark:
                mark(s, out)
            return out
        try:
            st = read_statement(data, path.name)
        except StatementError as e:
            out.status, out.error, out.error_line = "rejected", str(e), e.line
            if mark:
                mark(s, out)
            return out
        out.as_of = st.as_of
        wanted = set(codes.credit) | set(codes.returns)
        direction = {c: "credit" for c in codes.credit} | {c: "debit" for c in codes.returns}
        sf = StatementFile(sha256=out.sha256, file_name=path.name[:500], sender_id=st.sender_id,
                           bank_file_id=st.file_id, created_on=st.created_on, as_of_date=st.as_of, final=st.final,
                           processed_on=processed_on, lines=0, matched=0, missing=0, unexplained=0)
        s.add(sf)
        s.flush()
        out.statement_file_id = sf.id
        final_details = [(g.as_of, d) for g, _a, d in st.details() if g.final_prior_day]
        if final_details or st.covered():
            expected = expected_items(s)
            out.names = {(e.kind, e.ref_id): e.name for e in expected}
            out.tie = tie_out(final_details, expected, st.covered(), codes.credit, codes.returns)
        else:
            out.status = "not_final"
        matched = {id(m.detail): m for m in (out.tie.matched if out.tie else [])}
        for g, a, d in st.details():
            if d.type_code not in wanted:
                continue
            m = matched.get(id(d))
            s.add(StatementLine(
                statement_file_id=sf.id, line=d.line, account_last4=a.last4, as_of_date=g.as_of,
                type_code=d.type_code, direction=direction[d.type_code], amount_cents=d.amount_cents,
                bank_reference=d.bank_reference, customer_reference=d.customer_reference, text=d.text,
                nacha_file_id=m.expected.ref_id if m and m.expected.kind == "nacha_file" else None,
                return_file_id=m.expected.ref_id if m and m.expected.kind == "return_file" else None,
                match_basis=m.basis if m else None))
            sf.lines += 1
        if out.tie is not None:
            sf.matched, sf.missing, sf.unexplained = len(out.tie.matched), len(out.tie.missing), len(out.tie.unexplained)
            out.review_items = _review_items(s, sf, out.tie)
        if mark:
            mark(s, out)
    return out


def _review_items(s: Session, sf: StatementFile, tie: TieOut) -> int:
    """A `bank_unmatched` item for each unexplained line and each missing settlement (dedupe_key: a
    second statement missing the same settlement does not open it twice)."""
    n = 0
    for d in tie.unexplained:
        what = "ACH settlement credit" if d.direction == "credit" else "ACH return settlement debit"
        refs = ", ".join(v for v in (d.bank_reference, d.customer_reference, d.text) if v)
        n += _open(s, f"bank_unmatched|statement|{sf.sha256[:32]}|{d.line}", ReviewItem(
            kind="bank_unmatched", subject="statement_line", subject_ref=f"{sf.file_name} line {d.line}"[:300],
            line=d.line, code=d.type_code, amount_cents=d.amount_cents,
            detail=(f"the bank posted an {what} of {dollars(d.amount_cents)} (type {d.type_code}) as of "
                    f"{sf.as_of_date} that no file of ours explains" + (f" ({refs})" if refs else ""))[:300]))
    for e in tie.missing:
        if e.kind == "nacha_file":
            sentence = (f"NACHA file {e.name} ({dollars(e.amount_cents)}) settles {e.settles_on} and the bank's "
                        f"statement {sf.file_name} shows no ACH settlement credit for it")
        else:
            sentence = (f"return file {e.name} ({dollars(e.amount_cents)} returned) settles {e.settles_on} and the "
                        f"bank's statement {sf.file_name} shows no ACH return settlement debit for it")
        n += _open(s, f"bank_unmatched|{e.kind}|{e.ref_id}|{e.settles_on}", ReviewItem(
            kind="bank_unmatched", subject="statement_line",
            subject_ref=f"{sf.file_name}: expected {e.kind.replace('_', ' ')} {e.name}"[:300],
            amount_cents=0, expected_amount_cents=e.amount_cents, detail=sentence[:300]))
    return n


def _open(s: Session, key: str, item: ReviewItem) -> int:
    key = key[:120]
    if s.scalar(select(ReviewItem.id).where(ReviewItem.dedupe_key == key)) is not None:
        return 0
    item.dedupe_key = key
    s.add(item)
    s.flush()
    return 1


def reconcile_files(sessions: sessionmaker[Session], paths: Iterable[str | os.PathLike], processed_on: date,
                    codes: StatementCodes = StatementCodes()) -> list[StatementOutcome]:
    return [reconcile_file(sessions, p, processed_on, codes) for p in paths]


def process_statement_inbox(sessions: sessionmaker[Session], inbox: Path, processed_on: date,
                            codes: StatementCodes = StatementCodes()) -> list[StatementOutcome]:
    """Tie out every statement the inbound ledger lists as received and not yet processed (oldest
    first), marking each processed in the same transaction."""
    from ..bank.inbound import mark_inbound_processed, pending_inbound

    outs = []
    for pending in pending_inbound(sessions, inbox, kind="statement"):
        def mark(s: Session, out: StatementOutcome, _id=pending.id) -> None:
            mark_inbound_processed(s, _id, out.words())

        outs.append(reconcile_file(sessions, pending.path, processed_on, codes, mark=mark))
    return outs
