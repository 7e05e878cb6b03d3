"""The reports finance and the enrollment team work from: reconciliation (per file and batch:
entries and dollars originated, returned, net, tied to the NACHA control records), returns (by
reason code and category, with the rolling 60-day return rates against NACHA's thresholds) and
coverage (policies at risk).

Tables are pandas DataFrames with money as integer cents (nullable Int64, never float); dollars
are formatted as strings only on output. Output: CSV (the DESIGN.md columns, `member_name` last
where a member is named; each further table in a CSV of its own, `<stem>.<name>.csv`, so every CSV
has one header row), HTML (jinja2, with an inline SVG chart of returns by reason and day, no
external assets) and xlsx (openpyxl: one sheet per table, headers in words, money as exact decimals
with a currency format, rates as percentages, dates as dates). Account numbers never appear (at
most masked, last four). Member names: see `member_names`.
"""
from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import jinja2
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from nacha import codes
from nacha.calendar import effective_entry_date
from nacha.fields import mask_last4
from nacha.reader import BatchEnd, BatchStart, FileEnd, Reader

from ..collect.coverage import AT_RISK_STATUSES, CoverageRules, standings
from ..collect.validation import awaiting_validation
from ..store.crypto import FILE_CONTEXT, CryptoError, Keyring
from ..store.fsutil import inherited_fd, write_atomic
from ..store.models import (
    BankAccount, CoverageFlag, FileEntry, NachaFile, NachaFileContent, Payment, PaymentReturn, Premium, Prenote, ReturnFile,
    ReviewItem, StatementFile, StatementLine,
)
from ..rules.cells import people_csv_writer, xlsx_text
from ..rules.counts import counted
from ..rules.money import dollars as display_dollars, plain_dollars

__all__ = [
    "COLUMNS", "FORMATS", "HEADINGS", "KINDS", "RATE_WINDOW_DAYS", "Figure", "Report", "ReturnRate", "Section",
    "TEMPLATES_DIR", "coverage_report", "csv_tables", "default_output_path", "dollars", "extra_csv_path",
    "extra_csvs_written", "heading", "member_names", "reconciliation_report", "render", "render_csv", "render_html",
    "render_xlsx", "return_rates", "returns_chart_svg", "returns_report", "sections", "write_report",
    "BANK_COLUMNS", "BANK_TITLE",
]

KINDS = ("reconciliation", "returns", "coverage")
FORMATS = ("html", "csv", "xlsx")
RATE_WINDOW_DAYS = 60  # NACHA return-rate period: the preceding 60 days (ref §2.3)
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "reports"
_READABLE = 0o644  # report files are read by finance and the enrollment team (the umask may narrow it)

# The CSV columns of the interface contract (DESIGN.md "Report CSV columns"), in its order, extended
# at the end only: `member_name` is the last column wherever a member is named.
COLUMNS: dict[str, tuple[str, ...]] = {
    "returns": ("trace_number", "member_id", "plan_id", "amount", "return_code", "return_title", "category",
                "returned_on", "disposition", "member_name"),
    "coverage": ("member_id", "plan_id", "status", "reason", "months_owed", "amount_owed", "deadline", "member_name"),
    "reconciliation": ("file", "batch", "effective_date", "entries", "debits", "returned_entries",
                       "returned_amount", "net"),
}
# Columns holding integer cents (shown as dollars) and dates, per table.
_MONEY = {"amount", "amount_owed", "debits", "returned_amount", "net", "debits_control", "amount_cents",
          "expected_amount"}
_COUNTS = {"batch", "entries", "returned_entries", "months_owed", "entries_control", "returns", "count"}
# Columns holding rates (exact Fractions): "12.34%" in CSV and HTML, a number with a percentage format in xlsx.
_RATES = {"rate", "threshold"}
_MONEY_FORMAT = '"$"#,##0.00'
_RATE_FORMAT = "0.00%"
_DATE_FORMAT = "yyyy-mm-dd"
_SHEET_NAME_MAX = 31  # Excel's limit

# Column headings in words (HTML and xlsx; the CSVs keep the contract's names). A column not listed
# is shown as its name in words ("settlement_date" -> "Settlement date").
HEADINGS: dict[str, str] = {
    "trace_number": "Trace number", "member_id": "Member ID", "member_name": "Member name", "plan_id": "Plan ID",
    "amount": "Amount", "return_code": "Return code", "return_title": "Reason", "category": "Category",
    "returned_on": "Returned on", "disposition": "What happens next", "status": "Status", "reason": "Reason",
    "months_owed": "Months owed", "amount_owed": "Amount owed", "deadline": "Deadline", "file": "File",
    "batch": "Batch", "effective_date": "Effective date", "entries": "Entries", "debits": "Debits",
    "returned_entries": "Entries returned", "returned_amount": "Amount returned", "net": "Net",
    "entries_control": "Entries (control record)", "debits_control": "Debits (control record)",
    "ties": "Ties to control record", "returns": "Returns", "rate": "Rate", "threshold": "NACHA threshold",
    "count": "Count", "id": "Item", "opened_on": "Opened on", "kind": "Kind", "code": "Code",
    "expected_amount": "Expected amount", "payment_id": "Payment", "related_payment_id": "Related payment",
    "line": "Line", "where": "Where in the file", "detail": "Detail",
}


def heading(col: str) -> str:
    """The heading of column `col` in words, for people (HTML and xlsx)."""
    return HEADINGS.get(col) or col.replace("_", " ").capitalize()


class Section(tuple):
    """A further table of a report: shown under `title` in the HTML, on its own xlsx sheet `sheet`
    (a short full name: Excel allows 31 characters) and written as its own CSV `<stem>.<name>.csv`
    beside the main one (`extra_csv_path`), so that every CSV has exactly one header row. It is the
    pair `(title, table)` (code reading `report.extra` as pairs keeps working) with a name and a
    sheet; a plain pair is accepted too (`sections` derives the name and sheet from the title)."""
    name: str
    sheet: str

    def __new__(cls, title: str, table: pd.DataFrame, name: str = "", sheet: str = "") -> "Section":
        obj = super().__new__(cls, (title, table))
        obj.name, obj.sheet = name, sheet
        return obj

    @property
    def title(self) -> str:
        return self[0]

    @property
    def table(self) -> pd.DataFrame:
        return self[1]


class Figure(str):
    """A summary figure: the text people read (what it is as a str), and the value behind it for the
    xlsx (`kind` 'money': integer cents, 'count': an int), which writes it as a number."""
    value: int
    kind: str

    def __new__(cls, text: str, value: int, kind: str) -> "Figure":
        obj = super().__new__(cls, text)
        obj.value, obj.kind = value, kind
        return obj


def _money_figure(cents: int) -> Figure:
    return Figure(display_dollars(cents), int(cents), "money")


def _count_figure(n: int) -> Figure:
    return Figure(f"{n:,}", int(n), "count")


# The CSV amount format (123456 -> '1234.56') under the name this module has always exported.
dollars = plain_dollars


def _shown(cents, fmt) -> str:
    """An amount cell: '' when the value is missing, else `fmt(cents)`."""
    return "" if cents is None or cents is pd.NA else fmt(cents)


def _percent(rate: Fraction) -> str:
    """A fraction as a percentage with two decimals, rounded half up, without floats."""
    hundredths = rate * 10000
    n = (hundredths.numerator * 2 + hundredths.denominator) // (2 * hundredths.denominator)
    return f"{n // 100}.{n % 100:02d}%"


@dataclass
class ReturnRate:
    category: str  # 'unauthorized' | 'administrative' | 'overall'
    returns: int
    entries: int
    threshold: Fraction

    @property
    def rate(self) -> Fraction:
        return Fraction(self.returns, self.entries) if self.entries else Fraction(0)

    @property
    def crossed(self) -> bool:
        return self.entries > 0 and self.rate > self.threshold


@dataclass
class Report:
    kind: str
    as_of: date
    title: str
    table: pd.DataFrame  # the contract table (CSV columns), cents as Int64
    # further tables: HTML sections, xlsx sheets, CSVs of their own (Section, or a (title, table) pair)
    extra: list[Section | tuple[str, pd.DataFrame]] = field(default_factory=list)
    summary: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chart_svg: str | None = None
    window: tuple[date, date] | None = None

    @property
    def problems(self) -> bool:
        return bool(self.warnings)


def _frame(rows: list[dict], columns: tuple[str, ...] | list[str]) -> pd.DataFrame:
    # Built column by column from the rows' own values: a DataFrame built from the rows would turn a
    # column of ints with a None among them into floats with NaN (and large cents lose precision).
    data = {}
    for c in columns:
        values = [r.get(c) for r in rows]
        if c in _MONEY or c in _COUNTS:
            data[c] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        else:
            data[c] = pd.array(values, dtype="object")
    return pd.DataFrame(data, columns=list(columns))


def _window(as_of: date, days: int) -> tuple[date, date]:
    return as_of - timedelta(days=days - 1), as_of


# -- reconciliation ------------------------------------------------------------------------------

def reconciliation_report(sessions: sessionmaker[Session], keyring: Keyring | None, as_of: date,
                          days: int = RATE_WINDOW_DAYS) -> Report:
    """Per file and batch of the files built in the `days` days up to `as_of`: entries and debits
    originated, entries and dollars returned (returns processed up to `as_of`), net. Each batch is
    compared with the batch control record of the stored file, each file with its file control."""
    start, end = _window(as_of, days)
    with sessions() as s:
        files = s.execute(select(NachaFile.id, NachaFile.file_name, NachaFile.file_date, NachaFile.total_debit_cents,
                                 NachaFile.entry_count, NachaFile.sha256)
                          .where((NachaFile.file_date >= start) & (NachaFile.file_date <= end))
                          .order_by(NachaFile.file_date, NachaFile.file_id_modifier)).all()
        ids = [f.id for f in files]
        orig: dict[tuple[int, int], list[int]] = {}
        returned: dict[tuple[int, int], list[int]] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for fid, bn, tc, n, cents in s.execute(
                    select(FileEntry.file_id, FileEntry.batch_number, FileEntry.transaction_code, func.count(),
                           func.sum(FileEntry.amount_cents))
                    .where(FileEntry.file_id.in_(part))
                    .group_by(FileEntry.file_id, FileEntry.batch_number, FileEntry.transaction_code)):
                acc = orig.setdefault((fid, bn), [0, 0])
                acc[0] += int(n)
                tx = codes.transaction_code(tc)
                if tx is not None and tx.is_debit:
                    acc[1] += int(cents or 0)
            for fid, bn, n, cents in s.execute(
                    select(FileEntry.file_id, FileEntry.batch_number, func.count(), func.sum(PaymentReturn.amount_cents))
                    .join(PaymentReturn, PaymentReturn.file_entry_id == FileEntry.id)
                    .where(FileEntry.file_id.in_(part) & (PaymentReturn.kind == "return")
                           & (PaymentReturn.status == "applied") & (PaymentReturn.returned_on <= as_of))
                    .group_by(FileEntry.file_id, FileEntry.batch_number)):
                returned[(fid, bn)] = [int(n), int(cents or 0)]
    rows, checks, warnings = [], [], []
    for f in files:
        controls, file_control, problem = _controls(sessions, keyring, f)
        if problem:
            warnings.append(f"{f.file_name}: {problem}")
        batches = sorted({bn for (fid, bn) in orig if fid == f.id} | set(controls))
        file_entries = file_debits = 0
        for bn in batches:
            n, debits = orig.get((f.id, bn), [0, 0])
            rn, rcents = returned.get((f.id, bn), [0, 0])
            ctl = controls.get(bn)
            eff = ctl["effective_date"] if ctl else effective_entry_date(f.file_date)
            rows.append({"file": f.file_name, "batch": bn, "effective_date": eff, "entries": n, "debits": debits,
                         "returned_entries": rn, "returned_amount": rcents, "net": debits - rcents})
            file_entries += n
            file_debits += debits
            if ctl is not None:
                ok = ctl["entries"] == n and ctl["debits"] == debits
                checks.append({"file": f.file_name, "batch": bn, "entries": n, "entries_control": ctl["entries"],
                               "debits": debits, "debits_control": ctl["debits"], "ties": "yes" if ok else "NO"})
                if not ok:
                    warnings.append(f"{f.file_name} batch {bn}: {counted(n, 'entry')} / {display_dollars(debits)} "
                                    "recorded, "
                                    f"batch control says {ctl['entries']} / {display_dollars(ctl['debits'])}")
        if file_control is not None and (file_control["debits"] != file_debits or f.total_debit_cents != file_debits):
            warnings.append(f"{f.file_name}: file control total debits {display_dollars(file_control['debits'])}, "
                            f"recorded {display_dollars(f.total_debit_cents)}, entries add up to "
                            f"{display_dollars(file_debits)}")
    table = _frame(rows, COLUMNS["reconciliation"])
    total_debits = int(table["debits"].sum()) if len(table) else 0
    total_returned = int(table["returned_amount"].sum()) if len(table) else 0
    summary = [
        ("Files", _count_figure(len(files))),
        ("Batches", _count_figure(len(table))),
        ("Entries originated", _count_figure(int(table["entries"].sum()) if len(table) else 0)),
        ("Debits originated", _money_figure(total_debits)),
        ("Entries returned", _count_figure(int(table["returned_entries"].sum()) if len(table) else 0)),
        ("Dollars returned", _money_figure(total_returned)),
        ("Net", _money_figure(total_debits - total_returned)),
        ("Control records", "all batches tie to their control records" if not warnings and checks
         else ("no stored files to check" if not checks else counted(len(warnings), "mismatch"))),
    ]
    checks_df = _frame(checks, ["file", "batch", "entries", "entries_control", "debits", "debits_control", "ties"])
    bank_rows, bank_summary, bank_warnings = _bank_statement(sessions, start, end)
    summary += bank_summary
    warnings += bank_warnings
    with sessions() as s:
        open_items = s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "open")) or 0
    if open_items:
        warnings.append(f"{counted(open_items, 'review item')} open: a person must decide them (achbatch review list)")
    return Report("reconciliation", as_of, f"Reconciliation, files of {start} to {end}", table,
                  [Section("Control record check", checks_df, "controls", "Control record check"),
                   Section(BANK_TITLE, _frame(bank_rows, BANK_COLUMNS), "bank", BANK_TITLE)], summary,
                  warnings, window=(start, end))


BANK_TITLE = "Bank statement"
# The bank statement section's columns (its own CSV file: <report>-bank.csv; docs/finance.md).
BANK_COLUMNS = ("status", "as_of", "statement", "line", "type_code", "direction", "amount", "expected_amount",
                "ours", "basis")


def _bank_statement(sessions: sessionmaker[Session], start: date, end: date
                    ) -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    """The BAI2 tie-out of the window: lines matched, expected settlements not posted (on a date a
    final statement covers), lines posted that nothing of ours explains; amounts in cents."""
    from ..collect.bank_statement import expected_items

    with sessions() as s:
        files = {f.id: f for f in s.scalars(select(StatementFile))}
        lines = s.scalars(select(StatementLine).where((StatementLine.as_of_date >= start)
                                                      & (StatementLine.as_of_date <= end))
                          .order_by(StatementLine.as_of_date, StatementLine.statement_file_id, StatementLine.line)).all()
        names = dict(s.execute(select(NachaFile.id, NachaFile.file_name)).all())
        rnames = dict(s.execute(select(ReturnFile.id, ReturnFile.file_name)).all())
        covered = {f.as_of_date for f in files.values() if f.final}
        missing = [e for e in expected_items(s) if start <= e.settles_on <= end and e.settles_on in covered]
    rows = []
    for ln in lines:
        f = files[ln.statement_file_id]
        if not f.final:
            continue
        ours = (names.get(ln.nacha_file_id) if ln.nacha_file_id else
                rnames.get(ln.return_file_id) if ln.return_file_id else None)
        rows.append({"status": "matched" if ours else "posted, unexplained", "as_of": ln.as_of_date,
                     "statement": f.file_name, "line": str(ln.line), "type_code": ln.type_code,
                     "direction": ln.direction, "amount": ln.amount_cents,
                     "expected_amount": ln.amount_cents if ours else None, "ours": ours or "", "basis":
                     ln.match_basis or ""})
    for e in missing:
        rows.append({"status": "expected, not posted", "as_of": e.settles_on, "statement": "", "line": "",
                     "type_code": "", "direction": e.direction, "amount": None, "expected_amount": e.amount_cents,
                     "ours": e.name, "basis": ""})
    matched = [r for r in rows if r["status"] == "matched"]
    unexplained = [r for r in rows if r["status"] == "posted, unexplained"]
    summary = [
        ("Bank statement: matched", f"{len(matched)} ({display_dollars(sum(r['amount'] for r in matched))})"),
        ("Bank statement: expected, not posted",
         f"{len(missing)} ({display_dollars(sum(e.amount_cents for e in missing))})"),
        ("Bank statement: posted, unexplained",
         f"{len(unexplained)} ({display_dollars(sum(r['amount'] for r in unexplained))})"),
    ]
    warnings = []
    if missing:
        warnings.append(f"bank statement: {counted(len(missing), 'settlement')} expected and not posted "
                        f"({display_dollars(sum(e.amount_cents for e in missing))})")
    if unexplained:
        warnings.append(f"bank statement: {counted(len(unexplained), 'posting')} nothing of ours explains "
                        f"({display_dollars(sum(r['amount'] for r in unexplained))})")
    return rows, summary, warnings


def _controls(sessions: sessionmaker[Session], keyring: Keyring | None, f
              ) -> tuple[dict[int, dict], dict | None, str | None]:
    """Batch controls {batch number: {entries, debits, effective_date}} and the file control of a
    stored file, streamed from its (decrypted) bytes (read one file at a time)."""
    if keyring is None:
        return {}, None, None
    with sessions() as s:
        blob = s.scalar(select(NachaFileContent.content_enc).where(NachaFileContent.file_id == f.id))
    if blob is None:
        return {}, None, "its stored bytes are missing"
    try:
        data = keyring.decrypt(blob, FILE_CONTEXT)
    except CryptoError as e:
        return {}, None, f"stored file cannot be read ({e})"
    out: dict[int, dict] = {}
    file_control = None
    eff = None
    for item in Reader(data, "strict", name=f.file_name):
        if isinstance(item, BatchStart):
            v = item.header.effective_entry_date
            try:
                eff = date(2000 + int(v[0:2]), int(v[2:4]), int(v[4:6]))
            except (ValueError, TypeError):
                eff = None
        elif isinstance(item, BatchEnd) and item.control is not None:
            c = item.control
            out[c.batch_number] = {"entries": c.entry_addenda_count, "debits": c.total_debit_amount,
                                   "effective_date": eff}
        elif isinstance(item, FileEnd) and item.control is not None:
            file_control = {"debits": item.control.total_debit_amount, "entries": item.control.entry_addenda_count}
    return out, file_control, None


# -- returns --------------------------------------------------------------------------------------

def return_rates(sessions: sessionmaker[Session], as_of: date, days: int = RATE_WINDOW_DAYS) -> list[ReturnRate]:
    """Rolling return rates (ref §2.3): debit returns of entries originated in the `days` days up
    to `as_of`, per category, over all debit entries originated in those days."""
    start, end = _window(as_of, days)
    debit_codes = [c for c, t in codes.TRANSACTION_CODES.items() if t.is_debit and t.kind == codes.KIND_DEBIT]
    in_window = (NachaFile.file_date >= start) & (NachaFile.file_date <= end)
    with sessions() as s:
        entries = s.scalar(select(func.count()).select_from(FileEntry).join(NachaFile, NachaFile.id == FileEntry.file_id)
                           .where(in_window & FileEntry.transaction_code.in_(debit_codes))) or 0
        by_cat = dict(s.execute(
            select(PaymentReturn.category, func.count()).join(FileEntry, FileEntry.id == PaymentReturn.file_entry_id)
            .join(NachaFile, NachaFile.id == FileEntry.file_id)
            .where(in_window & (PaymentReturn.kind == "return") & (PaymentReturn.status == "applied")
                   & (PaymentReturn.returned_on <= as_of))
            .group_by(PaymentReturn.category)).all())
    out = []
    for cat in (codes.CATEGORY_UNAUTHORIZED, codes.CATEGORY_ADMINISTRATIVE, "overall"):
        n = sum(int(v) for v in by_cat.values()) if cat == "overall" else int(by_cat.get(cat, 0))
        out.append(ReturnRate(cat, n, int(entries), Fraction(*codes.RETURN_RATE_THRESHOLDS[cat])))
    return out


def returns_report(sessions: sessionmaker[Session], as_of: date, days: int = RATE_WINDOW_DAYS) -> Report:
    """Every return processed in the `days` days up to `as_of`, by reason code and category, with
    the rolling return rates and a warning for each threshold crossed."""
    start, end = _window(as_of, days)
    with sessions() as s:
        rows = s.execute(
            select(PaymentReturn.original_trace_number, Payment.member_id, Payment.plan_id, PaymentReturn.amount_cents,
                   PaymentReturn.return_code, PaymentReturn.return_title, PaymentReturn.category,
                   PaymentReturn.returned_on, PaymentReturn.disposition, PaymentReturn.status, PaymentReturn.action)
            .join(Payment, Payment.id == PaymentReturn.payment_id)
            .where((PaymentReturn.kind == "return") & (PaymentReturn.returned_on >= start)
                   & (PaymentReturn.returned_on <= end))
            .order_by(PaymentReturn.returned_on, PaymentReturn.original_trace_number)).all()
        reviews = _open_review_rows(s)
        prenote_returns = _prenote_return_rows(s, start, end)
        validation = awaiting_validation(s.connection())
        names = member_names(s, {r.member_id for r in rows}
                             | {r["member_id"] for r in (*reviews, *prenote_returns) if r["member_id"]})
    for r in (*reviews, *prenote_returns):
        r["member_name"] = names.get(r["member_id"], "")
    open_reviews = len(reviews)
    table = _frame([{
        "trace_number": r.original_trace_number, "member_id": r.member_id, "plan_id": r.plan_id,
        "amount": r.amount_cents, "return_code": r.return_code, "return_title": r.return_title,
        "category": r.category, "returned_on": r.returned_on, "disposition": r.disposition,
        "member_name": names.get(r.member_id, ""),
    } for r in rows], COLUMNS["returns"])
    by_code: dict[str, dict] = {}
    by_cat: dict[str, dict] = {}
    per_day: dict[tuple[date, str], int] = {}
    for r in rows:
        c = by_code.setdefault(r.return_code, {"return_code": r.return_code, "return_title": r.return_title,
                                               "category": r.category, "disposition": r.disposition,
                                               "count": 0, "amount": 0})
        c["count"] += 1
        c["amount"] += r.amount_cents
        k = by_cat.setdefault(r.category, {"category": r.category, "count": 0, "amount": 0})
        k["count"] += 1
        k["amount"] += r.amount_cents
        per_day[(r.returned_on, r.return_code)] = per_day.get((r.returned_on, r.return_code), 0) + 1
    rates = return_rates(sessions, as_of, days)
    warnings = []
    rate_rows = []
    for rt in rates:
        rate_rows.append({"category": rt.category, "returns": rt.returns, "entries": rt.entries,
                          "rate": rt.rate, "threshold": rt.threshold,
                          "status": "OVER THRESHOLD" if rt.crossed else "ok"})
        if rt.crossed:
            warnings.append(f"WARNING: {rt.category} return rate {_percent(rt.rate)} ({rt.returns} of {rt.entries} "
                            f"debit entries originated {start} to {end}) is over the NACHA threshold of "
                            f"{_percent(rt.threshold)}")
    doubles = [r for r in reviews if r["kind"] == "double_collection"]
    if doubles:
        items = (("review item " if len(doubles) == 1 else "review items ")
                 + ", ".join("#" + str(r["id"]) for r in doubles))
        warnings.append(f"WARNING: {counted(len(doubles), 'premium month')} collected twice ({items}): "
                        "finance decides whether to refund")
    summary = [("Returns processed", _count_figure(len(rows))),
               ("Dollars returned", _money_figure(sum(r.amount_cents for r in rows))),
               ("Entries in review list", _count_figure(open_reviews)),
               ("Prenotes returned (account validation)", _count_figure(len(prenote_returns))),
               ("Accounts awaiting validation", f"{validation['accounts_awaiting_validation']:,} "
                f"({counted(validation['payments_held'], 'payment')} held)")]
    summary += [(f"{rt.category.capitalize()} return rate (60-day)",
                 f"{_percent(rt.rate)} (threshold {_percent(rt.threshold)})") for rt in rates]
    extra = [
        Section("Return rates, rolling 60 days (returns of entries originated in the window)",
                _frame(rate_rows, ["category", "returns", "entries", "rate", "threshold", "status"]),
                "rates", "Return rates"),
        Section("Returns by reason code", _frame(sorted(by_code.values(), key=lambda d: d["return_code"]),
                                                 ["return_code", "return_title", "category", "disposition", "count",
                                                  "amount"]), "by-code", "Returns by reason code"),
        Section("Returns by category", _frame(sorted(by_cat.values(), key=lambda d: d["category"]),
                                              ["category", "count", "amount"]),
                "by-category", "Returns by category"),
        Section("Open review items (each waits for a person's decision)", _frame(reviews, REVIEW_COLUMNS),
                "review", "Open review items"),
        Section("Prenote returns: accounts blocked by WEB account validation (docs/validation.md)",
                _frame(prenote_returns, PRENOTE_RETURN_COLUMNS), "prenote-returns", "Prenote returns"),
    ]
    chart = returns_chart_svg(per_day, start, end)
    return Report("returns", as_of, f"Returns, {start} to {end}", table, extra, summary, warnings, chart,
                  window=(start, end))


PRENOTE_RETURN_COLUMNS = ("returned_on", "trace_number", "member_id", "member_name", "account", "return_code",
                          "reason")


def _prenote_return_rows(s: Session, start: date, end: date) -> list[dict]:
    """The prenotes returned in the window, account masked (last four digits)."""
    rows = s.execute(
        select(Prenote.resolved_on, FileEntry.trace_number, Prenote.member_id, BankAccount.last4,
               Prenote.return_code, Prenote.return_reason)
        .join(BankAccount, BankAccount.id == Prenote.bank_account_id)
        .outerjoin(FileEntry, FileEntry.prenote_id == Prenote.id)
        .where((Prenote.state == "returned") & (Prenote.resolved_on >= start) & (Prenote.resolved_on <= end))
        .order_by(Prenote.resolved_on, Prenote.id)).all()
    return [{"returned_on": r.resolved_on, "trace_number": r.trace_number or "", "member_id": r.member_id,
             "account": mask_last4(r.last4), "return_code": r.return_code or "", "reason": r.return_reason or ""}
            for r in rows]


REVIEW_COLUMNS = ("id", "opened_on", "kind", "code", "amount", "expected_amount", "payment_id", "related_payment_id",
                  "member_id", "plan_id", "file", "line", "where", "detail", "member_name")


def _open_review_rows(s: Session) -> list[dict]:
    """Every open review item, oldest first, with the member and plan of its payment and the bank
    file and line it came from (where it has them)."""
    rows = s.execute(
        select(ReviewItem, Payment.member_id, Payment.plan_id, ReturnFile.file_name)
        .outerjoin(Payment, Payment.id == ReviewItem.payment_id)
        .outerjoin(ReturnFile, ReturnFile.id == ReviewItem.return_file_id)
        .where(ReviewItem.status == "open").order_by(ReviewItem.id)).all()
    return [{"id": r.id, "opened_on": r.created_at.date(), "kind": r.kind, "code": r.code or "",
             "amount": r.amount_cents, "expected_amount": r.expected_amount_cents, "payment_id": r.payment_id,
             "related_payment_id": r.related_payment_id, "member_id": member or "", "plan_id": plan or "",
             "file": file_name or "", "line": r.line, "where": _where(r.issue(file_name or "")), "detail": r.detail}
            for r, member, plan, file_name in rows]


def member_names(s: Session, member_ids) -> dict[str, str]:
    """{member_id: name} for the members named in a report. The name is the enrollment system's:
    `member_name` of the member's most recent premium row (latest coverage month, then the latest
    imported, of any plan). A member without any premium row (a payment imported without its bill)
    gets the account holder's name of the bank account of their most recent debit payment, which may
    be another person's (a parent, a spouse); a member with neither is not in the result."""
    ids = sorted({m for m in member_ids if m})
    names: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        for m, name in s.execute(select(Premium.member_id, Premium.member_name).where(Premium.member_id.in_(part))
                                 .order_by(Premium.coverage_month, Premium.updated_at, Premium.id)):
            names[m] = name  # the latest wins
        missing = [m for m in part if m not in names]
        if missing:
            for m, holder in s.execute(select(Payment.member_id, BankAccount.holder_name)
                                       .join(BankAccount, BankAccount.id == Payment.bank_account_id)
                                       .where(Payment.member_id.in_(missing)).order_by(Payment.id)):
                names[m] = holder  # the latest payment wins
    return names


def _where(issue) -> str:
    """The field a review item points at: "line 4, columns 7-21: addenda_99.original_entry_trace_number"."""
    if issue is None:
        return ""
    cols = f", columns {issue.columns[0]}-{issue.columns[1]}" if issue.columns else ""
    return f"line {issue.line}{cols}: {issue.record}" + (f".{issue.field}" if issue.field else "")


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939")


def returns_chart_svg(per_day: dict[tuple[date, str], int], start: date, end: date) -> str:
    """An inline SVG stacked bar chart: returns per day (x) by reason code (colour), with axes,
    a legend and a <title> on every bar segment. No scripts, no external assets."""
    days = (end - start).days + 1
    codes_seen = sorted({c for (_d, c) in per_day})
    colour = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(codes_seen)}
    totals: dict[date, int] = {}
    for (d, _c), n in per_day.items():
        totals[d] = totals.get(d, 0) + n
    top = max(totals.values(), default=0)
    ymax = max(1, top)
    left, right, top_pad, bottom = 48, 130, 20, 50
    bar_w = max(4, min(24, 720 // max(days, 1)))
    plot_w = bar_w * days
    plot_h = 220
    width, height = left + plot_w + right, top_pad + plot_h + bottom
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="returns-chart" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<title>Returns by reason code and day, {start} to {end}</title>',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    # y axis and grid
    steps = min(ymax, 5)
    for i in range(steps + 1):
        v = round(ymax * i / steps) if steps else 0
        y = top_pad + plot_h - (plot_h * v // ymax)
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#dddddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{v}</text>')
    out.append(f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" stroke="#333333"/>')
    out.append(f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
               f'stroke="#333333"/>')
    out.append(f'<text x="14" y="{top_pad + plot_h // 2}" transform="rotate(-90 14 {top_pad + plot_h // 2})" '
               f'text-anchor="middle">returns</text>')
    for i in range(days):
        d = start + timedelta(days=i)
        x = left + i * bar_w
        y = top_pad + plot_h
        for c in codes_seen:
            n = per_day.get((d, c), 0)
            if not n:
                continue
            h = plot_h * n // ymax
            y -= h
            out.append(f'<rect class="bar" data-code="{e(c)}" data-day="{d}" data-count="{n}" x="{x + 1}" y="{y}" '
                       f'width="{bar_w - 2}" height="{h}" fill="{colour[c]}"><title>{d} {e(c)}: {n}</title></rect>')
        if d.day == 1 or i == 0 or i == days - 1 or (days <= 14):
            out.append(f'<text x="{x + bar_w // 2}" y="{top_pad + plot_h + 14}" text-anchor="middle">'
                       f'{d:%m-%d}</text>')
    out.append(f'<text x="{left + plot_w // 2}" y="{height - 10}" text-anchor="middle">day the return was '
               f'processed</text>')
    for i, c in enumerate(codes_seen):
        y = top_pad + 4 + i * 18
        x = left + plot_w + 16
        out.append(f'<rect class="legend" x="{x}" y="{y}" width="12" height="12" fill="{colour[c]}"/>')
        title = codes.RETURN_CODES[c].title if c in codes.RETURN_CODES else ""
        out.append(f'<text x="{x + 16}" y="{y + 10}">{e(c)}<title>{e(title)}</title></text>')
    if not codes_seen:
        out.append(f'<text x="{left + plot_w // 2}" y="{top_pad + plot_h // 2}" text-anchor="middle">'
                   f'no returns in this period</text>')
    out.append("</svg>")
    return "\n".join(out)


# -- coverage -------------------------------------------------------------------------------------

# Most severe first; at_risk (a payment returned, no replacement cleared, not delinquent yet) last.
_SEVERITY = {s: i for i, s in enumerate(reversed(AT_RISK_STATUSES))}
# The statuses of the by-status table: those at risk, then the policies not at risk (coverage not
# activated yet, and in good standing), which are counted but not listed.
_BY_STATUS = (*AT_RISK_STATUSES, "pending_activation", "ok")


def coverage_report(sessions: sessionmaker[Session], as_of: date, rules: CoverageRules = CoverageRules(),
                    tz: tzinfo | None = None) -> Report:
    """Policies at risk as of `as_of`: status, reason, months and amount owed, next deadline. Each
    policy's standing is computed for `as_of` exactly as `achbatch coverage assess --date` computes
    it (`batch.collect.coverage.standings`: the same facts, the same rule, the same `rules` and
    `tz`), whether or not that date was assessed, and nothing is written."""
    latest = {key: st for key, st in standings(sessions, as_of, rules, tz)}
    counts: dict[str, int] = {}
    owed: dict[str, int] = {}
    at_risk = []
    for (member_id, plan_id), r in latest.items():
        counts[r.status] = counts.get(r.status, 0) + 1
        owed[r.status] = owed.get(r.status, 0) + r.amount_owed_cents
        if r.status in AT_RISK_STATUSES:
            at_risk.append((member_id, plan_id, r))
    at_risk.sort(key=lambda t: (_SEVERITY.get(t[2].status, 9), t[2].deadline or date.max, t[0], t[1]))
    with sessions() as s:
        names = member_names(s, {m for m, _p, _r in at_risk})
    table = _frame([{"member_id": m, "plan_id": p, "status": r.status, "reason": r.reason,
                     "months_owed": r.months_owed, "amount_owed": r.amount_owed_cents, "deadline": r.deadline,
                     "member_name": names.get(m, "")}
                    for m, p, r in at_risk], COLUMNS["coverage"])
    by_status = _frame([{"status": st, "count": counts.get(st, 0), "amount_owed": owed.get(st, 0)}
                        for st in _BY_STATUS],
                       ["status", "count", "amount_owed"])
    summary = [("Policies assessed", _count_figure(len(latest))), ("Policies at risk", _count_figure(len(at_risk))),
               ("Amount owed by policies at risk", _money_figure(sum(r.amount_owed_cents for _m, _p, r in at_risk)))]
    return Report("coverage", as_of, f"Coverage at risk, {as_of}", table,
                  [Section("Policies by status", by_status, "by-status", "Policies by status")], summary, [])


# -- output ---------------------------------------------------------------------------------------

def default_output_path(reports_dir: Path, kind: str, as_of: date, fmt: str) -> Path:
    return Path(reports_dir) / f"{kind}-{as_of.isoformat()}.{fmt}"


def _slug(title: str) -> str:
    """A section title's name part before any comma, colon or parenthesis."""
    for sep in (",", ":", "("):
        title = title.split(sep)[0]
    return title.strip()


def sections(report: Report) -> list[Section]:
    """The report's further tables as Sections; a plain (title, table) pair is named after its title:
    the CSV name in lower case with dashes ("Bank statement" -> "bank-statement"), the sheet its
    title before any comma, colon or parenthesis (words dropped from the end only if still over
    Excel's 31 characters: give a Section its own short full name)."""
    out = []
    for item in report.extra:
        if isinstance(item, Section) and item.name and item.sheet:
            out.append(item)
            continue
        title, table = item[0], item[1]
        short = _slug(title)
        name = (item.name if isinstance(item, Section) and item.name else
                "-".join("".join(ch for ch in w if ch.isalnum()) for w in short.lower().split()).strip("-"))
        sheet = item.sheet if isinstance(item, Section) and item.sheet else short
        while len(sheet) > _SHEET_NAME_MAX and " " in sheet:
            sheet = sheet.rsplit(" ", 1)[0]
        out.append(Section(title, table, name, sheet[:_SHEET_NAME_MAX]))
    return out


def extra_csv_path(out: Path, name: str) -> Path:
    """Where the CSV of the further table `name` goes beside the report CSV `out`: the same folder
    and stem, `.<name>.csv` (returns-2026-01-24.csv -> returns-2026-01-24.review.csv)."""
    out = Path(out)
    stem = out.name[:-len(".csv")] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(f"{stem}.{name}.csv")


def _display_columns(cols) -> list[str]:
    """Columns in the order people read them (HTML, xlsx): the member's name right after the member
    id (in the CSVs it is the last column, to keep the contract's order)."""
    cols = list(cols)
    if "member_name" in cols and "member_id" in cols:
        cols.remove("member_name")
        cols.insert(cols.index("member_id") + 1, "member_name")
    return cols


def _cell_text(col: str, v) -> str:
    if v is None or v is pd.NA:
        return ""
    if col in _MONEY:
        return plain_dollars(v)
    if col in _RATES and isinstance(v, Fraction):
        return _percent(v)
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _table_csv(df: pd.DataFrame) -> str:
    """One table as a CSV: one header row (its column names), money in dollars with two decimals,
    dates ISO, rates as percentages. A CSV for people: text that a spreadsheet would run as a formula
    is neutralised (`batch.rules.cells.for_people`; money, count and date columns are ours and stay
    as they are)."""
    cols = list(df.columns)
    buf = io.StringIO()
    w = people_csv_writer(buf, {i for i, c in enumerate(cols) if c not in _MONEY and c not in _COUNTS})
    w.writerow(cols)
    for row in df[cols].itertuples(index=False, name=None):
        w.writerow([_cell_text(c, v) for c, v in zip(cols, row)])
    return buf.getvalue()


def render_csv(report: Report) -> str:
    """The contract table: exactly COLUMNS[kind] (see `_table_csv`). The further tables have CSVs of
    their own (`csv_tables`)."""
    return _table_csv(report.table[list(COLUMNS[report.kind])])


def csv_tables(report: Report) -> list[tuple[str, str]]:
    """The further tables as CSVs: [(name, csv text)], each written to `extra_csv_path(out, name)`."""
    return [(sec.name, _table_csv(sec.table)) for sec in sections(report)]


def _html_table(title: str, df: pd.DataFrame, table_id: str, name: str) -> dict:
    cols = _display_columns(df.columns)
    rows = []
    for row in df[cols].itertuples(index=False, name=None):
        rows.append([(_shown(v, display_dollars) if c in _MONEY else _cell_text(c, v),
                      "num" if (c in _MONEY or c in _COUNTS or c in _RATES) else "") for c, v in zip(cols, row)])
    totals = None
    if rows and any(c in _MONEY for c in cols):
        totals = [(display_dollars(int(df[c].sum())) if c in _MONEY else
                   (f"{int(df[c].sum()):,}" if c in _COUNTS and c not in ("batch",) else ""), "num") for c in cols]
        totals[0] = ("Total", "")
    return {"title": title, "id": table_id, "name": name, "columns": [(c, heading(c)) for c in cols],
            "rows": rows, "totals": totals}


def render_html(report: Report) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    tables = [_html_table(report.title, report.table, f"{report.kind}-table", "")]
    for i, sec in enumerate(sections(report)):
        tables.append(_html_table(sec.title, sec.table, f"{report.kind}-extra-{i + 1}", sec.name))
    return env.get_template("report.html.j2").render(
        report=report, tables=tables, chart=jinja2.utils.markupsafe.Markup(report.chart_svg) if report.chart_svg
        else None)


def render_xlsx(report: Report, path: Path) -> None:
    """One sheet per table; money as exact decimals with a dollar format, dates as dates."""
    write_atomic(Path(path), xlsx_bytes(report), mode=_READABLE)


def _rate_number(rate: Fraction) -> Decimal:
    """A rate as the number a percentage-formatted cell holds (0.1 shows as 10.00%), exact to 1e-8."""
    hundred_millionths = rate * 10 ** 8
    n = (hundred_millionths.numerator * 2 + hundred_millionths.denominator) // (2 * hundred_millionths.denominator)
    return Decimal(n) / 10 ** 8


def _xlsx_value(col: str, v):
    """(value, number format) of a table cell in the workbook."""
    if v is None or v is pd.NA:
        return None, None
    if col in _MONEY:
        return Decimal(int(v)) / 100, _MONEY_FORMAT
    if col in _COUNTS:
        return int(v), None
    if col in _RATES and isinstance(v, Fraction):
        return _rate_number(v), _RATE_FORMAT
    if isinstance(v, date):
        return v, _DATE_FORMAT
    return v, None


def xlsx_bytes(report: Report) -> bytes:
    """The workbook of `render_xlsx`, as bytes: a Summary sheet (figures as numbers), then one sheet
    per table, named in full (Excel's 31 characters at most), headers in words (`heading`), the
    member's name after the member id; money as exact decimals with a currency format, rates as
    numbers with a percentage format, dates as dates, text always a string cell."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "Summary"
    ws.append([report.title])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["As of", report.as_of])
    ws.cell(ws.max_row, 2).number_format = _DATE_FORMAT
    for k, v in report.summary:
        if isinstance(v, Figure):
            ws.append([k, Decimal(v.value) / 100 if v.kind == "money" else v.value])
            if v.kind == "money":
                ws.cell(ws.max_row, 2).number_format = _MONEY_FORMAT
        else:
            ws.append([k, v])
    for w in report.warnings:
        ws.append([w])
        ws.cell(ws.max_row, 1).font = Font(bold=True, color="B00000")
    for row in ws.iter_rows():
        for cell in row:
            xlsx_text(cell)  # text is a string cell, never a formula
    ws.column_dimensions["A"].width = 48
    ws.column_dimensions["B"].width = 40
    sheets = [(report.kind.capitalize(), report.table)] + [(sec.sheet, sec.table) for sec in sections(report)]
    used = {"Summary"}
    for title, df in sheets:
        name = "".join(ch for ch in title if ch not in "[]:*?/\\")[:_SHEET_NAME_MAX]
        n = 2
        while name in used:  # two sections of the same sheet name: numbered, never a cut name
            name = f"{name[:_SHEET_NAME_MAX - len(str(n)) - 1]} {n}"
            n += 1
        used.add(name)
        sh = wb.create_sheet(name)
        cols = _display_columns(df.columns)
        sh.append([heading(c) for c in cols])
        for c in sh[1]:
            c.font = Font(bold=True)
        for row in df[cols].itertuples(index=False, name=None):
            values = [_xlsx_value(c, v) for c, v in zip(cols, row)]
            sh.append([v for v, _fmt in values])
            for cell, (_v, fmt) in zip(sh[sh.max_row], values):
                if fmt:
                    cell.number_format = fmt
                xlsx_text(cell)  # a name like "=1+2" stays text, never a live formula
        for j, c in enumerate(cols, start=1):
            letter = sh.cell(1, j).column_letter
            sh.column_dimensions[letter].width = max(12, min(60, len(heading(c)) + 4))
    if report.chart_svg is not None:
        # openpyxl charts are native Excel charts: returns per day by code, from the chart's data.
        _xlsx_chart(wb, report)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _xlsx_chart(wb, report: Report) -> None:
    from openpyxl.chart import BarChart, Reference

    df = report.table
    if not len(df):
        return
    days = sorted({d for d in df["returned_on"]})
    code_list = sorted({c for c in df["return_code"]})
    sh = wb.create_sheet("Chart data")
    sh.append(["Day"] + code_list)
    counts = df.groupby(["returned_on", "return_code"]).size()
    for d in days:
        sh.append([d] + [int(counts.get((d, c), 0)) for c in code_list])
        sh.cell(sh.max_row, 1).number_format = _DATE_FORMAT
    chart = BarChart()
    chart.type = "col"
    chart.grouping = "stacked"
    chart.overlap = 100
    chart.title = "Returns by reason code and day"
    data = Reference(sh, min_col=2, max_col=1 + len(code_list), min_row=1, max_row=1 + len(days))
    cats = Reference(sh, min_col=1, min_row=2, max_row=1 + len(days))
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(cats)
    sh.add_chart(chart, "A" + str(len(days) + 4))


def render(report: Report, fmt: str) -> bytes:
    """The report in `fmt` ('html', 'csv' or 'xlsx'), as the bytes of the file."""
    if fmt == "xlsx":
        return xlsx_bytes(report)
    if fmt == "csv":
        return render_csv(report).encode("utf-8")
    if fmt == "html":
        return render_html(report).encode("utf-8")
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def extra_csvs_written(out: Path) -> bool:
    """Whether a CSV report written to `out` gets its further tables' CSVs beside it: only when
    `out` names a file (a regular file, a link to one, or nothing yet). Written to standard output,
    a device or a FIFO, a report is its main table only (one CSV, one header row)."""
    out = Path(out)
    if inherited_fd(out) is not None:
        return False
    try:
        return out.is_file() or not out.exists()
    except OSError:
        return False


def write_report(report: Report, fmt: str, out: Path) -> Path:
    """Write the report in `fmt` ('html', 'csv' or 'xlsx') to `out` (folders created; written
    atomically, and never over a device, FIFO or link: fsutil.write_atomic). A CSV report's further
    tables go to CSVs of their own beside it (`extra_csv_path`; see `extra_csvs_written`). Returns
    `out`."""
    out = Path(out)
    data = render(report, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    extras = csv_tables(report) if fmt == "csv" and extra_csvs_written(out) else []
    write_atomic(out, data, mode=_READABLE)
    for name, text in extras:
        write_atomic(extra_csv_path(out, name), text.encode("utf-8"), mode=_READABLE)
    return out
