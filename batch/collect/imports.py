"""CSV imports from the enrollment system and the member portal (DESIGN.md "CSV exports"): premiums,
AutoPay mandates and one-time payments. Streamed row by row and loaded in batches; every row is
checked and a bad row is rejected with its line number and reason while the good rows load.

Idempotent: a row already recorded with the same values changes nothing, so re-importing a file
changes nothing; a payment's `confirmation_id` is its idempotency key. Each import is written to
the `import_runs` ledger. Row checking (`parse_*_row`) is pure; the `import_*` services do the I/O.

NOC corrections stick (`_AccountBook`): a row never undoes a NOC's correction of an account, and a
row carrying a number or routing a NOC corrected is debited to the corrected account (audited in
`payment_events`); what was kept against a row is said in the result's notes.
"""
from __future__ import annotations

import csv
import gc
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from nacha.calendar import MAX_YEAR, MIN_YEAR
from nacha.fields import mask_last4
from nacha.routing import routing_problem

from ..rules.channels import (  # the confirmation-id names stay importable from here
    AUTOPAY_CONFIRMATION_PREFIX,
    RESERVED_CONFIRMATION_PREFIXES,
    RETRY_CONFIRMATION_PREFIX,
    autopay_confirmation_id,
    sec_for_payment,
)
from ..rules.counts import counted
from ..store.crypto import Keyring, mask
from ..store.db import bulk_insert, in_set
from ..store.fsutil import private_dirs, write_atomic
from ..store.models import (
    MANDATE_LIVE_STATUSES,
    AccountChange,
    AutopayMandate,
    BankAccount,
    ImportRun,
    Payment,
    PaymentEvent,
    Premium,
    utcnow,
)
from ..rules.premium_calendar import due_date, parse_coverage_month

__all__ = [
    "AUTOPAY_CONFIRMATION_PREFIX", "CARD_MESSAGE", "HEADERS", "KINDS", "RESERVED_CONFIRMATION_PREFIXES",
    "RETRY_CONFIRMATION_PREFIX", "BankFields", "ImportFileError", "ImportResult", "MandateRow", "Note",
    "PaymentRow", "PremiumRow", "Rejection", "RowError", "autopay_confirmation_id", "import_autopay", "import_file",
    "import_payments", "import_premiums", "is_card_number", "parse_amount", "parse_autopay_row", "parse_cents",
    "OPTIONAL_HEADERS", "columns_of",
    "parse_instant", "parse_payment_row", "parse_premium_row", "rejects_path_for", "write_rejects",
]

KINDS = ("premiums", "autopay", "payments")
HEADERS: dict[str, tuple[str, ...]] = {
    "premiums": ("member_id", "member_name", "plan_id", "coverage_month", "amount_due", "subsidy", "binder"),
    "autopay": ("member_id", "plan_id", "routing_number", "account_number", "account_type", "account_holder",
                "authorized_at", "channel"),
    "payments": ("confirmation_id", "submitted_at", "channel", "member_id", "plan_id", "coverage_month", "amount",
                 "routing_number", "account_number", "account_type", "account_holder"),
}
# Columns a file may carry after HEADERS (a contract extension: a file without them imports as
# before). autopay `authorized_amount_cents`: the most the member authorized per pull, in cents.
OPTIONAL_HEADERS: dict[str, tuple[str, ...]] = {
    "premiums": (),
    "autopay": ("authorized_amount_cents",),
    "payments": (),
}


def columns_of(kind: str) -> tuple[str, ...]:
    """Every column a `kind` file may carry: the required ones, then the optional ones."""
    return HEADERS[kind] + OPTIONAL_HEADERS[kind]

# Cards are never accepted (ref §5.1, MAHC how-to-pay): the exact wording members and ops see.
CARD_MESSAGE = "cards are not accepted; pay from a checking or savings account"

# NACHA Entry Detail amount: 10 digits of cents (ref §1.4).
MAX_AMOUNT_CENTS = 99_999_999_99
DEFAULT_CHUNK_SIZE = 5000  # rows per transaction: fewer commits (each one an fsync on SQLite); measured at
# 100,000 payments, 20,000 rows a chunk took the same CPU and 70 MB more peak memory

_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]+")
_IDENTIFIER_UP_TO: dict[int, re.Pattern[str]] = {}  # max length -> a good identifier of 1..max characters
_AMOUNT = re.compile(r"^([0-9]+)(?:\.([0-9]{1,2}))?$")
_ISO_INSTANT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\udc80-\udcff]")
_CARD_TYPES = {"debit", "credit", "prepaid", "amex", "visa", "mastercard", "discover"}


# =============================================================================================
# Results and errors
# =============================================================================================

class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, unreadable, bad header): exit 2."""


class RowError(ValueError):
    """One row is rejected; the message is the reason (never contains a full account number).
    The column at fault is `column`, else the reason's first word when that is a column name."""

    def __init__(self, message: str, column: str = ""):
        super().__init__(message)
        self.column = column


def _column_of(reason: str, kind: str, given: str = "") -> str:
    if given:
        return given
    first = reason.split(" ", 1)[0].rstrip(":,")
    if first in columns_of(kind):
        return first
    if reason == CARD_MESSAGE or reason.startswith("mail payments are never debited"):
        return "account_number"
    return ""


@dataclass(frozen=True)
class Rejection:
    line: int  # 1-based physical line where the record starts (the header is line 1)
    reason: str
    column: str = ""  # the CSV column at fault, when one is
    values: dict[str, str] | None = field(default=None, compare=False, repr=False)  # the row as read
    duplicate_of: int | None = None  # the same row already appeared on this line of the file

    def __str__(self) -> str:
        return f"line {self.line}" + (f", {self.column}" if self.column else "") + f": {self.reason}"


@dataclass(frozen=True)
class Note:
    """Something an import did, or kept, that ops should know though the row loaded: a NOC's
    correction kept against the row, a row sent to the account a NOC corrected. Account numbers
    masked, as in rejections."""

    line: int  # 1-based physical line where the record starts
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}"


@dataclass
class ImportResult:
    kind: str
    file_name: str
    sha256: str = ""
    rows_total: int = 0
    loaded: int = 0  # new rows recorded
    updated: int = 0  # existing rows whose values changed
    unchanged: int = 0  # already recorded with the same values
    rejected: list[Rejection] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # rows loaded (or unchanged) with something to say
    import_run_id: int | None = None
    previous_run_id: int | None = None  # an earlier import of the same bytes, if any
    previous_run_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.rejected if r.duplicate_of is not None)


REJECTS_COLUMNS = ("line", "column", "reason")


def rejects_path_for(input_name: str | Path, folder: Path) -> Path:
    """Where the rejects of an input file go: `<folder>/<input stem>.rejects.csv`."""
    return Path(folder) / f"{Path(input_name).stem}.rejects.csv"


def write_rejects(result: ImportResult, path: Path) -> Path:
    """Every rejected row of `result` as CSV (line, column, reason, then the row's own columns,
    account numbers masked), mode 0600, written atomically; the folder is created private."""
    headers = columns_of(result.kind)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REJECTS_COLUMNS + headers)
    for r in result.rejected:
        values = r.values or {}
        row = [values.get(h, "") for h in headers]
        if "account_number" in headers:
            i = headers.index("account_number")
            row[i] = mask(row[i])
        w.writerow([r.line, r.column, r.reason, *row])
    path = Path(path)
    private_dirs(path.parent)
    return write_atomic(path, buf.getvalue().encode("utf-8"), mode=0o600)


# =============================================================================================
# Field checks (pure)
# =============================================================================================

def _required(row: dict[str, str], name: str) -> str:
    value = row[name]
    if value == "":
        raise RowError(f"{name} is empty")
    return value


def _ascii_id(row: dict[str, str], name: str, max_len: int) -> str:
    """An identifier (confirmation, member, plan id): ASCII letters, digits, '-', '_' and '.' only,
    so that no report, file name or spreadsheet can read one as anything else."""
    value = row[name]
    good = _IDENTIFIER_UP_TO.get(max_len)
    if good is None:
        good = _IDENTIFIER_UP_TO[max_len] = re.compile(f"[A-Za-z0-9._-]{{1,{max_len}}}")
    if good.fullmatch(value):  # the usual case, in one C call; a bad value is told apart below
        return value
    value = _required(row, name)
    if not _IDENTIFIER.fullmatch(value):
        bad = next((c for c in value if not _IDENTIFIER.fullmatch(c)), "")
        raise RowError(f"{name} may hold only letters, digits, '-', '_' and '.', got {value!r} "
                       f"(character {bad!r})")
    if len(value) > max_len:
        raise RowError(f"{name} is at most {max_len} characters, got {len(value)}")
    return value


def _name(row: dict[str, str], name: str, max_len: int = 100) -> str:
    value = _required(row, name)
    if _CONTROL.search(value):
        raise RowError(f"{name} contains control characters")
    if len(value) > max_len:
        raise RowError(f"{name} is at most {max_len} characters, got {len(value)}")
    return value


def _choice(row: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = _required(row, name).lower()
    if value not in allowed:
        raise RowError(f"{name} must be {' or '.join(allowed) if len(allowed) == 2 else ', '.join(allowed)}, "
                       f"got {row[name]!r}")
    return value


@lru_cache(maxsize=4096)  # pure; a file's amounts repeat (a bad one raises, and is not cached)
def parse_amount(text: str, name: str = "amount", *, allow_zero: bool = False) -> int:
    """Dollars with at most two decimals ('12', '12.5', '12.50') to integer cents, no floats."""
    if text == "":
        raise RowError(f"{name} is empty")
    if text.startswith("-") and _AMOUNT.match(text[1:]):
        raise RowError(f"{name} is negative ({text}): give the amount to collect as a positive number of dollars")
    m = _AMOUNT.match(text)
    if not m:
        raise RowError(f"{name} must be dollars with at most two decimals (e.g. 123.45), got {text!r}")
    cents = int(m.group(1)) * 100 + int(((m.group(2) or "") + "00")[:2])
    if cents == 0 and not allow_zero:
        raise RowError(f"{name} must be more than 0.00")
    if cents > MAX_AMOUNT_CENTS:
        raise RowError(f"{name} is more than a NACHA entry can carry (99999999.99), got {text!r}")
    return cents


def _coverage_month(row: dict[str, str]) -> date:
    return _month(row["coverage_month"])


@lru_cache(maxsize=1024)  # pure; a file has a few coverage months
def _month(text: str) -> date:
    if text == "":
        raise RowError("coverage_month is empty")
    try:
        month = parse_coverage_month(text)
    except ValueError as e:
        raise RowError(str(e)) from None
    # Due and draft dates use the Fed calendar, which covers MIN_YEAR..MAX_YEAR.
    if not date(MIN_YEAR, 2, 1) <= month <= date(MAX_YEAR, 12, 1):
        raise RowError(f"coverage_month out of range ({MIN_YEAR}-02 to {MAX_YEAR}-12), got {text!r}")
    return month


_due_date = lru_cache(maxsize=1024)(due_date)  # pure, of a few coverage months


@lru_cache(maxsize=16384)  # pure; submission times repeat within a second or a minute
def parse_instant(text: str, name: str, tz: tzinfo) -> datetime:
    """ISO date or date-time; a value without an offset is local time in `tz`. Returned in UTC."""
    if text == "":
        raise RowError(f"{name} is empty")
    if not _ISO_INSTANT.match(text):
        raise RowError(f"{name} must be an ISO date or date-time (YYYY-MM-DDTHH:MM:SS[+HH:MM]), got {text!r}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise RowError(f"{name} is not a valid date-time ({e}), got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(account_number: str) -> bool:
    """13 to 19 digits (spaces and dashes aside) passing the Luhn check: a payment card number."""
    digits = account_number.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit() and _luhn_ok(digits)


def _is_card_type(account_type: str) -> bool:
    v = account_type.strip().lower()
    return "card" in v or v in _CARD_TYPES


_routing_problem = lru_cache(maxsize=65536)(routing_problem)  # pure; a file names a few thousand banks


@lru_cache(maxsize=16384)
def _local_date(instant: datetime, tz: tzinfo) -> date:
    """The calendar date of `instant` in `tz` (pure; memoized as parse_instant is)."""
    return instant.astimezone(tz).date()


@dataclass(frozen=True)
class BankFields:
    routing_number: str
    account_number: str = field(repr=False)
    account_type: str
    holder_name: str

    def __repr__(self) -> str:
        return (f"BankFields(routing_number={self.routing_number!r}, account={mask(self.account_number)}, "
                f"account_type={self.account_type!r}, holder_name={self.holder_name!r})")


def _bank_fields(row: dict[str, str]) -> BankFields:
    account_type = row["account_type"]
    account = row["account_number"]
    # Cards first, whatever else is wrong with the row: the member must hear why.
    if _is_card_type(account_type) or is_card_number(account):
        raise RowError(CARD_MESSAGE)
    routing = _required(row, "routing_number")
    problem = _routing_problem(routing)
    if problem:
        raise RowError(f"routing_number {routing!r} is not a valid ABA routing number ({problem})")
    if account == "":
        raise RowError("account_number is empty")
    if not (account.isascii() and account.isdigit() and 4 <= len(account) <= 17):
        shown = mask(account) if account.isascii() and account.isdigit() else "(not digits)"
        raise RowError(f"account_number must be 4 to 17 digits, got {counted(len(account), 'character')} {shown}")
    kind = _choice(row, "account_type", ("checking", "savings"))
    holder = _name(row, "account_holder")
    return _new_bank_fields(routing, account, kind, holder)


# =============================================================================================
# Rows (pure)
# =============================================================================================

@dataclass(frozen=True)
class PremiumRow:
    member_id: str
    member_name: str
    plan_id: str
    coverage_month: date
    amount_due_cents: int
    subsidy: str
    binder: bool
    due_date: date

    @property
    def key(self) -> tuple[str, str, date]:
        return (self.member_id, self.plan_id, self.coverage_month)


@dataclass(frozen=True)
class MandateRow:
    member_id: str
    plan_id: str
    bank: BankFields
    authorized_at: datetime
    channel: str
    # the most the member authorized per pull (optional column); None: set by the first pull
    authorized_amount_cents: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.member_id, self.plan_id)


@dataclass(frozen=True)
class PaymentRow:
    confirmation_id: str
    submitted_at: datetime
    channel: str
    member_id: str
    plan_id: str
    coverage_month: date
    amount_cents: int
    bank: BankFields | None  # None for mail
    sec_code: str | None
    payment_type_code: str
    originate_on: date | None
    state: str

    @property
    def key(self) -> str:
        return self.confirmation_id


def _constructor(cls):
    """A constructor of the frozen dataclass `cls` taking all its fields positionally, in order. It
    fills the instance's dict directly: the generated __init__ sets each field through
    object.__setattr__ (how frozen is enforced), about 1 µs a row for a row's dozen fields. The
    result is the same frozen instance (equal to, and as immutable as, one built by `cls(...)`)."""
    names = tuple(f.name for f in fields(cls))
    new = object.__new__

    def make(*values):
        if len(values) != len(names):
            raise TypeError(f"{cls.__name__} takes {len(names)} values, got {len(values)}")
        obj = new(cls)
        obj.__dict__.update(zip(names, values))
        return obj

    return make


_new_bank_fields = _constructor(BankFields)
_new_premium_row = _constructor(PremiumRow)
_new_mandate_row = _constructor(MandateRow)
_new_payment_row = _constructor(PaymentRow)


def parse_premium_row(row: dict[str, str]) -> PremiumRow:
    """A premiums CSV row (values already stripped) to a PremiumRow, or RowError with the reason."""
    member_id = _ascii_id(row, "member_id", 15)  # NACHA Individual Identification Number is 15
    member_name = _name(row, "member_name")
    plan_id = _ascii_id(row, "plan_id", 20)
    month = _coverage_month(row)
    # A $0 premium (fully subsidized) needs no payment and is left out of the export.
    amount = parse_amount(row["amount_due"], "amount_due")
    subsidy = _choice(row, "subsidy", ("none", "aptc", "connectorcare"))
    binder = _choice(row, "binder", ("yes", "no")) == "yes"
    return _new_premium_row(member_id, member_name, plan_id, month, amount, subsidy, binder, _due_date(month))


def parse_autopay_row(row: dict[str, str], tz: tzinfo) -> MandateRow:
    member_id = _ascii_id(row, "member_id", 15)
    plan_id = _ascii_id(row, "plan_id", 20)
    bank = _bank_fields(row)
    authorized_at = parse_instant(row["authorized_at"], "authorized_at", tz)
    channel = _choice(row, "channel", ("web", "paper"))
    return _new_mandate_row(member_id, plan_id, bank, authorized_at, channel,
                            parse_cents(row.get("authorized_amount_cents", ""), "authorized_amount_cents"))


_CENTS = re.compile(r"[0-9]+")


def parse_cents(text: str, name: str) -> int | None:
    """An optional whole number of cents ('12500' is $125.00), more than 0 and at most what one
    NACHA entry can carry; '' (column absent or empty) is None."""
    if text == "":
        return None
    if text.startswith("-") and _CENTS.fullmatch(text[1:]):
        raise RowError(f"{name} is negative ({text}): give a positive whole number of cents")
    if not _CENTS.fullmatch(text):
        raise RowError(f"{name} must be a whole number of cents (12500 is $125.00), got {text!r}")
    cents = int(text) if len(text) <= 12 else MAX_AMOUNT_CENTS + 1
    if cents == 0:
        raise RowError(f"{name} must be more than 0")
    if cents > MAX_AMOUNT_CENTS:
        raise RowError(f"{name} is more than a NACHA entry can carry (9999999999 cents), got {text!r}")
    return cents


def parse_payment_row(row: dict[str, str], tz: tzinfo) -> PaymentRow:
    confirmation_id = _ascii_id(row, "confirmation_id", 64)
    if confirmation_id.upper().startswith(RESERVED_CONFIRMATION_PREFIXES):
        raise RowError(f"confirmation_id must not start with {' or '.join(RESERVED_CONFIRMATION_PREFIXES)} "
                       "(reserved for AutoPay pulls and re-presentments)")
    submitted_at = parse_instant(row["submitted_at"], "submitted_at", tz)
    channel = _choice(row, "channel", ("portal", "guest", "phone", "mail"))
    member_id = _ascii_id(row, "member_id", 15)
    plan_id = _ascii_id(row, "plan_id", 20)
    month = _coverage_month(row)
    amount = parse_amount(row["amount"], "amount")
    sec_code, payment_type = sec_for_payment(channel)
    if channel == "mail":
        # A check or money order already received (lockbox): never debited, no bank account kept.
        if _is_card_type(row["account_type"]) or is_card_number(row["account_number"]):
            raise RowError(CARD_MESSAGE)
        if row["routing_number"] or row["account_number"]:
            raise RowError("mail payments are never debited: leave routing_number and account_number empty")
        return _new_payment_row(confirmation_id, submitted_at, channel, member_id, plan_id, month, amount, None,
                          None, "", None, "paid")
    bank = _bank_fields(row)
    # The business date of submission in the origination time zone: originated on that night's run
    # (or the first run after it).
    originate_on = _local_date(submitted_at, tz)
    return _new_payment_row(confirmation_id, submitted_at, channel, member_id, plan_id, month, amount, bank,
                      sec_code, payment_type, originate_on, "pending")


# =============================================================================================
# Reading: streamed, hashed while read, line numbers of record starts
# =============================================================================================

class _HashingReader(io.RawIOBase):
    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        return n


# A record: (line, values, error); values None when rejected before parsing (error says why)
_Record = tuple[int, "dict[str, str] | None", "str | None"]


def _records(text: io.TextIOBase, kind: str, label: str) -> Iterator[_Record]:
    reader = csv.reader(text, strict=True)
    expected = HEADERS[kind]
    allowed = columns_of(kind)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{label}: empty file, expected the header row: {','.join(expected)}") from None
    except csv.Error as e:
        raise ImportFileError(f"{label}: line 1: unreadable header ({e})") from None
    names = [h.strip() for h in header]
    if any(_SURROGATE.search(n) for n in names):
        raise ImportFileError(f"{label}: line 1: header is not UTF-8 text")
    missing = [n for n in expected if n not in names]
    unknown = [n for n in names if n not in allowed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or dupes:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            parts.append("unknown " + ", ".join(repr(n) for n in unknown))
        if dupes:
            parts.append("repeated " + ", ".join(dupes))
        raise ImportFileError(f"{label}: line 1: not a {kind} header ({'; '.join(parts)}); "
                              f"expected: {','.join(expected)}")
    last_line = reader.line_num
    width = len(names)
    surrogate = _SURROGATE.search
    strip = str.strip
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            start = last_line + 1
            last_line = reader.line_num
            yield (start, None, f"unreadable CSV ({e})")
            continue
        start, last_line = last_line + 1, reader.line_num
        joined = "".join(fields)
        if not joined.strip():
            continue  # blank line
        if len(fields) != width:
            yield (start, None, f"expected {width} fields, got {len(fields)}")
            continue
        if not joined.isascii() and surrogate(joined):  # ASCII text holds no escaped bad byte
            yield (start, None, "not valid UTF-8 text")
            continue
        yield (start, dict(zip(names, map(strip, fields))), None)


# =============================================================================================
# Loading: one handler per kind; rows go to the database in chunks, one transaction per chunk
# =============================================================================================

_Outcome = tuple[str, str | None]  # ("loaded"|"updated"|"unchanged"|"rejected", reason)
LOADED, UPDATED, UNCHANGED, REJECTED = "loaded", "updated", "unchanged", "rejected"


class _Handler:
    kind: str
    tables: tuple[str, ...] = ()  # tables this import grows (see _Statistics)
    read: tuple[str, ...] = ()  # tables it only looks rows up in (see _Statistics)

    def parse(self, values: dict[str, str]) -> Any:
        raise NotImplementedError

    def apply(self, session: Session, items: list[tuple[int, Any]], notes: list[Note]) -> list[_Outcome]:
        """One chunk: an outcome per item, in order; notes (if any) appended to `notes`."""
        raise NotImplementedError


_PREMIUM_COLUMNS = ("member_id", "plan_id", "coverage_month", "due_date", "member_name", "amount_due_cents",
                    "subsidy", "binder", "created_at", "updated_at")


class _PremiumHandler(_Handler):
    kind = "premiums"
    tables = ("premiums",)

    def parse(self, values):
        return parse_premium_row(values)

    def apply(self, session, items, notes):
        keys = [it.key for _, it in items]
        cols = (Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month, Premium.member_name,
                Premium.amount_due_cents, Premium.subsidy, Premium.binder)
        wanted = set(keys)
        existing = {
            key: r
            for r in session.execute(
                _where_keys(select(*cols), (Premium.member_id, Premium.plan_id, Premium.coverage_month), wanted))
            if (key := (r.member_id, r.plan_id, r.coverage_month)) in wanted
        }
        now = utcnow()
        inserts, updates, out = [], [], []
        loaded, unchanged, updated = (LOADED, None), (UNCHANGED, None), (UPDATED, None)
        for _, it in items:
            old = existing.get(it.key)
            if old is None:
                inserts.append((it.member_id, it.plan_id, it.coverage_month, it.due_date, it.member_name,
                                it.amount_due_cents, it.subsidy, it.binder, now, now))
                out.append(loaded)
            elif (old.member_name, old.amount_due_cents, old.subsidy, old.binder) == (
                    it.member_name, it.amount_due_cents, it.subsidy, it.binder):
                out.append(unchanged)
            else:
                updates.append({"id": old.id, "updated_at": now, "member_name": it.member_name,
                                "amount_due_cents": it.amount_due_cents, "subsidy": it.subsidy, "binder": it.binder})
                out.append(updated)
        if inserts:
            bulk_insert(session.connection(), Premium.__table__, inserts, _PREMIUM_COLUMNS)
        if updates:
            session.execute(update(Premium), updates)
        return out


def _where_keys(stmt, columns, keys):
    """Rows whose composite key may be in `keys`: one IN list per column (each served by an index;
    a row-value IN list of composite keys is planned poorly by PostgreSQL). The caller keeps only
    the exact keys."""
    keys = list(keys)
    for i, column in enumerate(columns):
        stmt = stmt.where(_in(column, sorted({k[i] for k in keys})))
    return stmt


def _in(column, values):
    """`column IN (values)` as one parameter (`batch.store.db.in_set`: PostgreSQL `= ANY(array)`,
    SQLite `json_each`): one statement however many values, compiled once, no bind name per value."""
    return in_set(column, values)


@dataclass(frozen=True)
class _Correction:
    """An applied NOC (an `account_changes` row of status 'applied'), as an import needs it."""

    bank_account_id: int
    code: str
    applied_on: date
    return_file_id: int
    old_routing_number: str | None
    new_routing_number: str | None
    old_account_masked: str | None
    new_account_masked: str | None
    old_account_type: str | None
    new_account_type: str | None
    old_holder_name: str | None
    new_holder_name: str | None

    def words(self) -> str:
        return f"the NOC correction of {self.applied_on.isoformat()} ({self.code})"


_CORRECTION_COLUMNS = (
    AccountChange.bank_account_id, AccountChange.change_code, AccountChange.applied_on,
    AccountChange.return_file_id, AccountChange.old_routing_number, AccountChange.new_routing_number,
    AccountChange.old_account_masked, AccountChange.new_account_masked, AccountChange.old_account_type,
    AccountChange.new_account_type, AccountChange.old_holder_name, AccountChange.new_holder_name,
)


def _correction(r: Any) -> _Correction:
    return _Correction(r.bank_account_id, r.change_code, r.applied_on, r.return_file_id, r.old_routing_number,
                       r.new_routing_number, r.old_account_masked, r.new_account_masked, r.old_account_type,
                       r.new_account_type, r.old_holder_name, r.new_holder_name)


@dataclass(frozen=True)
class _Found:
    """The account a row's routing and account number lead to. `via` is set when the row carries a
    number or routing a NOC corrected (ref §2.5): the account is the corrected one, found through the
    NOC's audit record. `ids`: every record on the way (the row's own first, the live one last)."""

    account: BankAccount
    via: _Correction | None = None
    ids: tuple[int, ...] = ()


# Fields of an account an import may set and a NOC may correct (C04 holder name, C05-C07 type).
_CORRECTABLE = (("account_type", "account type"), ("holder_name", "holder name"))
_MAX_MERGE_HOPS = 5  # a record merged into one that was merged again ...: a bound, never a loop


def _same_name(a: str, b: str) -> bool:
    """The same holder name apart from letter case and spacing (a NOC's name is upper case)."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


# A new bank account's columns, in the order of `_AccountBook.new_values`' tuples
_ACCOUNT_COLUMNS = ("routing_number", "account_number_enc", "key_id", "account_hash", "last4", "account_type",
                    "holder_name", "status", "status_reason", "validation_method", "validated_on",
                    "validation_result", "created_at", "updated_at")
_ROUTING_AT, _HASH_AT, _TYPE_AT, _HOLDER_AT = (_ACCOUNT_COLUMNS.index(c) for c in (
    "routing_number", "account_hash", "account_type", "holder_name"))


class _AccountBook:
    """Finds bank accounts by keyed hash (under every key of the ring, so rows written before a key
    rotation still match) and creates missing ones, within one chunk's transaction.

    NOC corrections stick (DESIGN.md; ref §2.5: the Originator makes the change before the next
    entry to the account): a row carrying the account number or routing a NOC corrected resolves to
    the corrected account (found through `account_changes.old_account_hash`, or through the record a
    NOC merged the account into), never to a new account row; and a row never undoes a NOC's
    correction of the account type or holder name. What an import keeps against a row is said in a
    note. Every look-up is one query per chunk, and only for the rows that need it."""

    def __init__(self, session: Session, keyring: Keyring, banks: list[BankFields], notes: list[Note]):
        self.session = session
        self.keyring = keyring
        self.notes = notes
        self._candidates: dict[tuple[str, str], list[str]] = {}
        candidates, hashes_of = self._candidates, keyring.account_hashes
        for b in banks:
            key = (b.routing_number, b.account_number)
            if key not in candidates:
                candidates[key] = hashes_of(*key)
        all_hashes = list({h for hs in candidates.values() for h in hs})
        self._by_hash: dict[tuple[str, str], BankAccount] = {}
        if all_hashes:
            for acct in session.scalars(select(BankAccount).where(_in(BankAccount.account_hash, all_hashes))):
                self._by_hash[(acct.routing_number, acct.account_hash)] = acct
        self._resolved: dict[tuple[str, str], _Found] = {}
        for key in self._candidates:
            acct = self._current(key)
            if acct is not None:
                self._resolved[key] = _Found(acct, None, (acct.id,))
        self._follow_old_numbers([key for key in self._candidates if key not in self._resolved])
        self._follow_merges()
        # The NOC corrections of the accounts a row would change (or reached through a NOC).
        self._corrections: dict[int, list[_Correction]] = {}
        differ = {f.account.id for f in self._resolved.values() if f.via is not None}
        for b in banks:
            f = self._resolved.get((b.routing_number, b.account_number))
            if f is not None and (f.account.account_type, f.account.holder_name) != (b.account_type, b.holder_name):
                differ.add(f.account.id)
        if differ:
            for r in session.execute(select(*_CORRECTION_COLUMNS).where(
                    _in(AccountChange.bank_account_id, sorted(differ)) & (AccountChange.status == "applied"))
                    .order_by(AccountChange.id.desc())):
                self._corrections.setdefault(r.bank_account_id, []).append(_correction(r))

    def _current(self, key: tuple[str, str]) -> BankAccount | None:
        for h in self._candidates[key]:
            acct = self._by_hash.get((key[0], h))
            if acct is not None:
                return acct
        return None

    def _follow_old_numbers(self, missing: list[tuple[str, str]]) -> None:
        """Rows whose number (or routing) no account holds now: the newest applied NOC that
        corrected it leads to the account (corrected in place, so the same id however often it was
        corrected since)."""
        if not missing:
            return
        hashes = sorted({h for key in missing for h in self._candidates[key]})
        newest: dict[tuple[str, str], tuple[int, _Correction]] = {}
        for r in self.session.execute(select(AccountChange.id, AccountChange.old_account_hash, *_CORRECTION_COLUMNS)
                                      .where(_in(AccountChange.old_account_hash, hashes)
                                             & (AccountChange.status == "applied"))):
            k = (r.old_routing_number, r.old_account_hash)
            if k not in newest or r.id > newest[k][0]:
                newest[k] = (r.id, _correction(r))
        via: dict[tuple[str, str], _Correction] = {}
        for key in missing:
            hits = [newest[(key[0], h)] for h in self._candidates[key] if (key[0], h) in newest]
            if hits:
                via[key] = max(hits, key=lambda t: t[0])[1]
        if not via:
            return
        accounts = self._accounts({c.bank_account_id for c in via.values()})
        for key, c in via.items():
            acct = accounts.get(c.bank_account_id)
            if acct is not None:
                self._resolved[key] = _Found(acct, c, (acct.id,))

    def _accounts(self, ids: set[int]) -> dict[int, BankAccount]:
        out: dict[int, BankAccount] = {}
        if ids:
            for acct in self.session.scalars(select(BankAccount).where(_in(BankAccount.id, sorted(ids)))):
                out[acct.id] = acct
        return out

    def _follow_merges(self) -> None:
        """An account a NOC merged into another record (`returns._merge_account`: the corrected
        account was already on record) is blocked with a reason naming that record. The row goes to
        that record when the NOC's audit confirms it: an applied change of the blocked account with
        the same code, whose corrected routing and last four digits are the record's. Otherwise the
        blocked account stays, and the row is rejected as any blocked account's is."""
        if not any(f.account.status == "blocked" for f in self._resolved.values()):
            return
        # imported only when a blocked account is met: the returns module's own imports were a third
        # of an import's start-up
        from .returns import merged_into

        for _ in range(_MAX_MERGE_HOPS):
            pointers = {}
            for f in self._resolved.values():
                m = merged_into(f.account.status_reason) if f.account.status == "blocked" else None
                if m is not None and m[2] not in f.ids:
                    pointers[f.account.id] = m
            if not pointers:
                return
            targets = self._accounts({m[2] for m in pointers.values()})
            confirmed: dict[int, _Correction] = {}
            for r in self.session.execute(select(*_CORRECTION_COLUMNS).where(
                    _in(AccountChange.bank_account_id, sorted(pointers)) & (AccountChange.status == "applied"))
                    .order_by(AccountChange.id.desc())):
                code, last4, other = pointers[r.bank_account_id]
                target = targets.get(other)
                if (r.bank_account_id not in confirmed and target is not None and r.change_code == code
                        and target.last4 == last4 and (r.new_account_masked or "").endswith(last4)
                        and r.new_routing_number == target.routing_number):
                    confirmed[r.bank_account_id] = _correction(r)
            if not confirmed:
                return
            for key, f in list(self._resolved.items()):
                c = confirmed.get(f.account.id)
                if c is not None:
                    target = targets[pointers[f.account.id][2]]
                    self._resolved[key] = _Found(target, f.via or c, (*f.ids, target.id))

    def resolve(self, bank: BankFields) -> _Found | None:
        key = (bank.routing_number, bank.account_number)
        found = self._resolved.get(key)
        if found is not None:
            return found
        acct = self._current(key)  # recorded under a hash not followed above (accounts new to this chunk are
        # not here: the handlers keep them apart until their one bulk load)
        return _Found(acct, None, (acct.id,)) if acct is not None else None

    def find(self, bank: BankFields) -> BankAccount | None:
        found = self.resolve(bank)
        return found.account if found is not None else None

    def new_values(self, bank: BankFields, now: datetime) -> tuple[Any, ...]:
        """Column values of a new account, in _ACCOUNT_COLUMNS order (a tuple: the bulk load takes it
        as it is): encrypted number, keyed hash under the current key, and 'unvalidated' (NACHA WEB
        debit rule: validate on first use, ref §4)."""
        key = (bank.routing_number, bank.account_number)
        hashes = self._candidates.get(key)  # computed for the look-up, current key first
        enc = self.keyring.encrypt_account(bank.account_number)
        return (bank.routing_number, enc, Keyring.key_id_of(enc),
                hashes[0] if hashes else self.keyring.account_hash(*key), bank.account_number[-4:],
                bank.account_type, bank.holder_name, "active", None, None, None, "unvalidated", now, now)

    def refresh(self, found: _Found, bank: BankFields, now: datetime, line: int) -> bool:
        """The row's account type and holder name replace the stored ones (the number itself is the
        identity), except where a NOC decided them. True when something changed.

        A field a NOC corrected keeps the correction whatever the row says: the value from before
        the correction (a re-import of an older file, or an export that never learnt of the NOC)
        and any third value alike (the bank's correction is what the account is; a genuine change
        comes with a new account or a person's decision, not an unchanged export), each with a
        note. A holder name differing from the corrected one only in letter case or spacing is the
        corrected name: unchanged, no note. A row reached through a corrected number describes the
        account as it was before the NOC: it changes nothing on it (noted)."""
        acct = found.account
        corrections = self._corrections.get(acct.id, [])
        changed = False
        for name, label in _CORRECTABLE:
            value, current = getattr(bank, name), getattr(acct, name)
            if value == current:
                continue
            # the NOCs that changed this field, newest first
            fixes = [c for c in corrections if (old := getattr(c, f"old_{name}")) is not None
                     and old != getattr(c, f"new_{name}")]
            if fixes:
                if name == "holder_name" and _same_name(value, current):
                    continue
                newest = fixes[0]
                shown = f"{label} {value}" if name == "account_type" else label
                corrected = f" to {current}" if name == "account_type" else ""
                if any(getattr(c, f"old_{name}") == value
                       or (name == "holder_name" and _same_name(value, c.old_holder_name or "")) for c in fixes):
                    why = "the row carries the value from before the correction"
                else:
                    why = ("the row carries a value that is neither the corrected one nor one it replaced: "
                           "a person should confirm it with the member")
                self._note(line, f"account {mask_last4(acct.last4)}: {shown} not applied: {newest.words()}{corrected} was "
                                 f"kept ({why})")
                continue
            if found.via is not None:
                if name == "holder_name" and _same_name(value, current):
                    continue
                shown = f"{label} {value}" if name == "account_type" else label
                self._note(line, f"account {mask_last4(acct.last4)}: {shown} not applied: the row describes the account "
                                 f"as it was before {found.via.words()}")
                continue
            setattr(acct, name, value)
            changed = True
        if changed:
            acct.updated_at = now
        return changed

    def insert_many(self, new: dict[tuple[str, str], tuple[Any, ...]]) -> dict[tuple[str, str], int]:
        """Insert new accounts (rows of `new_values`) in one bulk load; their ids by (routing,
        account number)."""
        if not new:
            return {}
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            # their ids taken from the table's own sequence first (as the column default would), so
            # nothing needs selecting back; COPY then writes them with the rows. The sequence is
            # found once (a subquery, run once before the rows), not once a row: 0.30 s -> 0.05 s
            # for 100,000 ids
            ids = conn.execute(text("SELECT nextval((SELECT pg_get_serial_sequence('bank_accounts', 'id')::regclass)) "
                                    "FROM generate_series(1, :n)"), {"n": len(new)}).scalars().all()
            out = dict(zip(new, ids))
            bulk_insert(conn, BankAccount.__table__, [(id_, *v) for id_, v in zip(ids, new.values())],
                        ("id", *_ACCOUNT_COLUMNS))
            return out
        # in the order of the unique (account_hash, routing_number) index: each row lands next to the
        # previous one in that index's pages (random order touches a page a row)
        values = sorted(new.values(), key=lambda v: (v[_HASH_AT], v[_ROUTING_AT]))
        before = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM bank_accounts").scalar()
        bulk_insert(conn, BankAccount.__table__, values, _ACCOUNT_COLUMNS)
        # SQLite gives a new row the largest id plus one, and this transaction holds the write lock
        # from its first insert to its commit: our rows took consecutive ids, ending at the last
        # insert's. They start right after `before` exactly when there are as many as rows (a row
        # deleted or added by another writer before our first insert would show as a difference).
        last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar()
        if last - before == len(values):
            ids = dict(zip(((v[_ROUTING_AT], v[_HASH_AT]) for v in values), range(before + 1, last + 1)))
            return {key: ids[(v[_ROUTING_AT], v[_HASH_AT])] for key, v in new.items()}
        # otherwise their ids, selected back by the unique (account_hash, routing_number), whose index serves it
        by_hash = {(routing, h): id_ for id_, routing, h in self.session.execute(
            select(BankAccount.id, BankAccount.routing_number, BankAccount.account_hash)
            .where(_in(BankAccount.account_hash, [v[_HASH_AT] for v in values])))}
        return {key: by_hash[(v[_ROUTING_AT], v[_HASH_AT])] for key, v in new.items()}

    def _note(self, line: int, text: str) -> None:
        self.notes.append(Note(line, text))


def _at(routing: str | None, last4: str, show_routing: bool) -> str:
    return f"{routing} {mask_last4(last4)}" if show_routing else mask_last4(last4)


def _corrected_words(found: _Found, bank: BankFields) -> tuple[str, str]:
    """('****6789', '****4321'): the corrected account and the row's, routing numbers shown when
    they differ; the record id when the NOC merged the account into another record."""
    acct = found.account
    routing_changed = acct.routing_number != bank.routing_number
    new = _at(acct.routing_number, acct.last4, routing_changed)
    if len(found.ids) > 1:
        new += f" (record {acct.id})"
    return new, _at(bank.routing_number, bank.account_number[-4:], routing_changed)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _blocked_reason(acct: BankAccount) -> str:
    why = f" ({acct.status_reason})" if acct.status_reason else ""
    return f"bank account {mask_last4(acct.last4)} at {acct.routing_number} is blocked{why}; use another account"


_MANDATE_COLUMNS = ("member_id", "plan_id", "bank_account_id", "channel", "authorized_at", "status", "status_reason",
                    "active_key", "ended_at", "authorized_amount_cents", "created_at", "updated_at")


class _MandateHandler(_Handler):
    kind = "autopay"
    tables = ("bank_accounts", "autopay_mandates")

    def __init__(self, keyring: Keyring, tz: tzinfo):
        self.keyring = keyring
        self.tz = tz

    def parse(self, values):
        return parse_autopay_row(values, self.tz)

    def apply(self, session, items, notes):
        now = utcnow()
        book = _AccountBook(session, self.keyring, [it.bank for _, it in items], notes)
        keys = [it.key for _, it in items]
        mandates: dict[tuple[str, str], list[AutopayMandate]] = {}
        wanted = set(keys)
        for m in session.scalars(_where_keys(select(AutopayMandate), (AutopayMandate.member_id, AutopayMandate.plan_id),
                                             keys).order_by(AutopayMandate.id)):
            if (m.member_id, m.plan_id) in wanted:
                mandates.setdefault((m.member_id, m.plan_id), []).append(m)
        out: list[_Outcome] = []
        # Accounts new to the ledger are inserted together at the end of the chunk (one bulk load,
        # not one flush per row), with the mandates that need their ids.
        new_accounts: dict[tuple[str, str], tuple[Any, ...]] = {}
        # new mandates as rows of _MANDATE_COLUMNS; the account a (routing, number) while new
        new_mandates: list[tuple[Any, ...]] = []
        for line, it in items:
            found = book.resolve(it.bank)
            existing = found.account if found is not None else None
            if existing is not None and existing.status == "blocked":
                out.append((REJECTED, _blocked_reason(existing)))
                continue
            if found is not None and found.via is not None:
                to, was = _corrected_words(found, it.bank)
                via_note = Note(line, f"account {was} was corrected by {found.via.words()} to {to}: "
                                      "the AutoPay mandate is on the corrected account")
            else:
                via_note = None
            history = mandates.get(it.key, [])
            live = next((m for m in history if m.status in MANDATE_LIVE_STATUSES), None)
            if found is not None:
                same = next((m for m in history if m.bank_account_id in found.ids
                             and m.authorized_at == it.authorized_at), None)
                if same is not None and same is not live:
                    # This very authorization was recorded before and has since ended (replaced or
                    # revoked): a re-sent row must not bring it back.
                    out.append((UNCHANGED, None))
                    continue
            if live is not None and existing is not None and live.bank_account_id == existing.id:
                if it.authorized_at < live.authorized_at:
                    out.append((REJECTED, f"authorized_at {it.authorized_at.isoformat()} is older than the current "
                                          f"mandate's ({live.authorized_at.isoformat()})"))
                    continue
                notes.extend([via_note] if via_note else [])  # before any note on the row's other values
                acct_changed = book.refresh(found, it.bank, now, line)
                # an absent authorized amount keeps the mandate's (set by its first pull, or a notice)
                amount = live.authorized_amount_cents if it.authorized_amount_cents is None \
                    else it.authorized_amount_cents
                if (live.authorized_at == it.authorized_at and live.channel == it.channel
                        and live.authorized_amount_cents == amount):
                    out.append((UPDATED if acct_changed else UNCHANGED, None))
                    continue
                live.authorized_at, live.channel, live.updated_at = it.authorized_at, it.channel, now
                live.authorized_amount_cents = amount
                out.append((UPDATED, None))
                continue
            if live is not None and it.authorized_at <= live.authorized_at:
                out.append((REJECTED, f"authorized_at {it.authorized_at.isoformat()} is not later than the current "
                                      f"mandate's ({live.authorized_at.isoformat()}) on another account"))
                continue
            notes.extend([via_note] if via_note else [])
            ref = (it.bank.routing_number, it.bank.account_number)
            account_id: int | tuple[str, str] = ref
            if found is None and ref in new_accounts:
                # a later row on an account this chunk creates: its type and holder name win, as
                # they would on an account already recorded (no NOC can have corrected it yet)
                v = list(new_accounts[ref])
                v[_TYPE_AT], v[_HOLDER_AT] = it.bank.account_type, it.bank.holder_name
                new_accounts[ref] = tuple(v)
            elif found is None:
                new_accounts[ref] = book.new_values(it.bank, now)
            else:
                book.refresh(found, it.bank, now, line)
                account_id = found.account.id
            if live is not None:
                # A new bank account supersedes the old mandate (the new account awaits validation);
                # flushed once, before the chunk's new mandates are loaded (freeing the active_key).
                live.status, live.status_reason, live.active_key = "revoked", "replaced", None
                live.ended_at = live.updated_at = now
            # A key appears once per chunk (a repeated key starts a new chunk: see _run_chunks), so
            # no later row of this chunk needs this mandate in `history`.
            new_mandates.append((it.member_id, it.plan_id, account_id, it.channel, it.authorized_at, "active", None,
                                 AutopayMandate.key_for(*it.key), None, it.authorized_amount_cents, now, now))
            out.append((UPDATED if live is not None else LOADED, None))
        new_ids = book.insert_many(new_accounts)
        # the changes to recorded mandates and accounts (revocations first: they free active_keys)
        session.flush()
        if new_mandates:
            # loaded by the driver as tuples (an ORM object per mandate was most of the import's CPU)
            bulk_insert(session.connection(), AutopayMandate.__table__,
                        [row if not isinstance(row[2], tuple) else (*row[:2], new_ids[row[2]], *row[3:])
                         for row in new_mandates], _MANDATE_COLUMNS)
        return out


_PAYMENT_COLUMNS = ("confirmation_id", "channel", "member_id", "plan_id", "coverage_month", "premium_id",
                    "amount_cents", "bank_account_id", "submitted_at", "sec_code", "payment_type_code",
                    "originate_on", "state", "retry_number", "created_at", "updated_at")


class _PaymentHandler(_Handler):
    kind = "payments"
    tables = ("bank_accounts", "payments")
    read = ("premiums",)

    def __init__(self, keyring: Keyring, tz: tzinfo):
        self.keyring = keyring
        self.tz = tz

    def parse(self, values):
        return parse_payment_row(values, self.tz)

    def apply(self, session, items, notes):
        now = utcnow()
        book = _AccountBook(session, self.keyring, [it.bank for _, it in items if it.bank is not None], notes)
        ids = [it.confirmation_id for _, it in items]
        known = {p.confirmation_id: p for p in session.scalars(select(Payment).where(_in(Payment.confirmation_id, ids)))}
        wanted = {(it.member_id, it.plan_id, it.coverage_month) for _, it in items}
        premiums = {
            key: pid
            for pid, *key_values in session.execute(_where_keys(
                select(Premium.id, Premium.member_id, Premium.plan_id, Premium.coverage_month),
                (Premium.member_id, Premium.plan_id, Premium.coverage_month), wanted))
            if (key := tuple(key_values)) in wanted
        }
        out: list[_Outcome] = []
        # account reference: an existing account's id, or the (routing, number) of a new one
        accepted: list[tuple[PaymentRow, int | None, int | tuple[str, str] | None]] = []
        new_accounts: dict[tuple[str, str], tuple[Any, ...]] = {}
        corrected: dict[str, str] = {}  # confirmation id -> why it is debited to a NOC-corrected account
        audit: dict[str, int] = {}  # confirmation id -> the NOC's return file
        for line, it in items:
            old = known.get(it.confirmation_id)
            if old is not None:
                out.append(self._compare(old, it, book))
                continue
            premium_id = premiums.get((it.member_id, it.plan_id, it.coverage_month))
            if it.channel == "guest" and premium_id is None:
                out.append((REJECTED, f"unknown member and plan: no premium for member {it.member_id} plan "
                                      f"{it.plan_id} coverage month {it.coverage_month:%Y-%m}"))
                continue
            ref: int | tuple[str, str] | None = None
            if it.bank is not None:
                found = book.resolve(it.bank)
                acct = found.account if found is not None else None
                if acct is not None and acct.status == "blocked":
                    out.append((REJECTED, _blocked_reason(acct)))
                    continue
                if found is not None:
                    ref = found.account.id
                    if found.via is not None:
                        to, was = _corrected_words(found, it.bank)
                        notes.append(Note(line, f"account {was} was corrected by {found.via.words()}: payment "
                                                f"{it.confirmation_id} is debited to the corrected account {to}"))
                        corrected[it.confirmation_id] = (
                            f"NOC {found.via.code} applied {found.via.applied_on.isoformat()}: debited to the "
                            f"corrected account {to} instead of {was} (6 banking days / before the next entry: "
                            "NACHA)")
                        audit[it.confirmation_id] = found.via.return_file_id
                    book.refresh(found, it.bank, now, line)
                else:
                    ref = (it.bank.routing_number, it.bank.account_number)
                    if ref not in new_accounts:
                        new_accounts[ref] = book.new_values(it.bank, now)
            accepted.append((it, premium_id, ref))
            out.append((LOADED, None))
        new_ids = book.insert_many(new_accounts)
        rows = [(it.confirmation_id, it.channel, it.member_id, it.plan_id, it.coverage_month, premium_id,
                 it.amount_cents, new_ids[ref] if isinstance(ref, tuple) else ref, it.submitted_at, it.sec_code,
                 it.payment_type_code, it.originate_on, it.state, 0, now, now)
                for it, premium_id, ref in accepted]
        if rows:
            bulk_insert(session.connection(), Payment.__table__, rows, _PAYMENT_COLUMNS)
        if rows and corrected:
            payment_ids = {r.confirmation_id: r.id for r in session.execute(
                select(Payment.id, Payment.confirmation_id).where(_in(Payment.confirmation_id, sorted(corrected))))}
            # The audit of each payment sent to the account a NOC corrected (the state is unchanged).
            on = now.astimezone(self.tz).date()
            session.execute(insert(PaymentEvent), [
                {"payment_id": payment_ids[cid], "event": "account_corrected", "old_state": "pending",
                 "new_state": "pending", "reason": _cut(reason, 200), "occurred_on": on,
                 "return_file_id": audit[cid], "created_at": now}
                for cid, reason in corrected.items()])
        return out

    @staticmethod
    def _compare(old: Payment, it: PaymentRow, book: _AccountBook) -> _Outcome:
        differs = [name for name, a, b in (
            ("channel", old.channel, it.channel), ("member_id", old.member_id, it.member_id),
            ("plan_id", old.plan_id, it.plan_id), ("coverage_month", old.coverage_month, it.coverage_month),
            ("amount", old.amount_cents, it.amount_cents), ("submitted_at", old.submitted_at, it.submitted_at),
        ) if a != b]
        found = book.resolve(it.bank) if it.bank is not None else None
        # The account it was recorded on, or the one a NOC moved it to since (merged records)
        if old.bank_account_id not in (found.ids if found is not None else (None,)):
            differs.append("bank account")
        if differs:
            return (REJECTED, f"confirmation_id {it.confirmation_id} is already recorded with a different "
                              f"{', '.join(differs)}; nothing changed")
        return (UNCHANGED, None)


class _Statistics:
    """Keeps PostgreSQL's planner statistics current while an import grows a table. Without them
    (a fresh or fast-growing table, before autovacuum's ANALYZE) the planner estimates an IN list of
    a thousand keys to match most of the table and scans it all for every chunk, which makes the
    first large import quadratic. ANALYZE samples a fixed number of rows, so running it each time
    the rows loaded double costs little. SQLite needs nothing (its planner prefers the index).
    A table the import only looks rows up in (`read`: payments look up premiums) does not grow
    with it: it is analyzed once, the first time, not at every doubling."""

    def __init__(self, tables: tuple[str, ...], read: tuple[str, ...] = ()):
        self.tables = tables
        self.read = read
        self.loaded = 0
        self.next_at = 5_000

    def after_chunk(self, session: Session, loaded: int) -> None:
        self.loaded += loaded
        if self.loaded < self.next_at or not self.tables or session.get_bind().dialect.name != "postgresql":
            return
        session.execute(text("ANALYZE " + ", ".join(self.tables + self.read)))
        self.read = ()
        self.next_at = self.loaded * 2


@contextmanager
def _collect_per_chunk() -> Iterator[None]:
    """Python's cyclic garbage collector paused while an import reads and loads (and restored
    afterwards); the caller collects the young generations once per chunk. Left to itself it runs a
    full collection every so often while an import holds a growing number of objects (the chunk's
    rows, the duplicate check's hashes), each pass traversing all of them: about a fifth of an
    import's CPU. Garbage without cycles is freed at once either way; a chunk's cycles are freed
    at the end of the chunk, so memory stays as flat as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run(handler: _Handler, path: str | Path, sessions: sessionmaker[Session], *,
         progress: Callable[[int], None] | None, chunk_size: int) -> ImportResult:
    with _collect_per_chunk():
        return _run_chunks(handler, path, sessions, progress=progress, chunk_size=chunk_size)


def _run_chunks(handler: _Handler, path: str | Path, sessions: sessionmaker[Session], *,
                progress: Callable[[int], None] | None, chunk_size: int) -> ImportResult:
    path = Path(path)
    result = ImportResult(handler.kind, str(path))
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path}: is a folder") from None
    except OSError as e:
        raise ImportFileError(f"{path}: cannot read ({e.strerror})") from None
    with raw:
        hashing = _HashingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(hashing, 1 << 16), encoding="utf-8-sig",
                                errors="surrogateescape", newline="")
        chunk: list[tuple[int, Any]] = []
        chunk_keys: set[Any] = set()
        values_of: dict[int, dict[str, str]] = {}  # line -> row, for the rows of the chunk
        seen_rows: dict[int, int] = {}  # hash of a row's values -> the first line it appeared on
        stats = _Statistics(handler.tables, handler.read)
        kind = handler.kind

        def reject(line: int, reason: str, values: dict[str, str] | None, column: str = "",
                   duplicate_of: int | None = None) -> None:
            result.rejected.append(Rejection(line, reason, _column_of(reason, kind, column), values, duplicate_of))

        def flush() -> None:
            if not chunk:
                return
            notes: list[Note] = []
            with sessions() as session, session.begin():
                outcomes = handler.apply(session, chunk, notes)
                stats.after_chunk(session, sum(1 for o, _ in outcomes if o == LOADED))
            result.notes.extend(notes)
            for (line, _), (outcome, reason) in zip(chunk, outcomes):
                if outcome == REJECTED:
                    reject(line, reason or "rejected", values_of.get(line))
                else:
                    setattr(result, outcome, getattr(result, outcome) + 1)
            chunk.clear()
            chunk_keys.clear()
            values_of.clear()
            gc.collect(1)  # the chunk's own reference cycles (its session's, ...): see _collect_per_chunk
            if progress is not None:
                progress(result.rows_total)

        try:
            parse = handler.parse
            for line, values, error in _records(text, handler.kind, str(path)):
                result.rows_total += 1
                if values is None:
                    reject(line, error or "rejected", None)
                    continue
                # The very same row again in one file is a duplicate, reported (an export that
                # repeats a row has a problem upstream); a later row with the same key and other
                # values is applied after the earlier one, as a later file would be.
                first = seen_rows.setdefault(hash(tuple(values.values())), line)
                if first != line:
                    reject(line, f"duplicate of line {first} (the same row again): not loaded twice",
                           values, duplicate_of=first)
                    continue
                try:
                    item = parse(values)
                except RowError as e:
                    reject(line, str(e), values, e.column)
                    continue
                key = item.key
                if key in chunk_keys:
                    flush()  # a repeated key is applied after the earlier row, as a later file would be
                values_of[line] = values
                chunk.append((line, item))
                chunk_keys.add(key)
                if len(chunk) >= chunk_size:
                    flush()
            flush()
            while hashing.read(1 << 16):
                pass  # hash the whole file even if the CSV reader stopped early
        except OSError as e:
            raise ImportFileError(f"{path}: read error ({e.strerror})") from None
    result.rejected.sort(key=lambda r: r.line)
    result.notes.sort(key=lambda n: n.line)
    result.sha256 = hashing.sha256.hexdigest()
    with sessions() as session, session.begin():
        prev = session.execute(
            select(ImportRun.id, ImportRun.created_at).where(ImportRun.kind == handler.kind,
                                                             ImportRun.sha256 == result.sha256)
            .order_by(ImportRun.id).limit(1)).first()
        if prev is not None:
            result.previous_run_id, result.previous_run_at = prev.id, prev.created_at
        run = ImportRun(kind=handler.kind, file_name=str(path)[-500:], sha256=result.sha256,
                        rows_total=result.rows_total, rows_loaded=result.loaded, rows_updated=result.updated,
                        rows_unchanged=result.unchanged, rows_rejected=len(result.rejected), created_at=utcnow())
        session.add(run)
        session.flush()
        result.import_run_id = run.id
    return result


# =============================================================================================
# Services
# =============================================================================================

def _zone(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def import_premiums(sessions: sessionmaker[Session], path: str | Path, *,
                    progress: Callable[[int], None] | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> ImportResult:
    """Load the enrollment system's bills. New (member, plan, month) rows are added; a row whose
    name, amount, subsidy or binder flag changed updates the premium (updated_at)."""
    return _run(_PremiumHandler(), path, sessions, progress=progress, chunk_size=chunk_size)


def import_autopay(sessions: sessionmaker[Session], path: str | Path, *, keyring: Keyring,
                   timezone: str | tzinfo = "America/New_York",
                   progress: Callable[[int], None] | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> ImportResult:
    """Load AutoPay mandates. One live mandate per member and plan: a later authorization on
    another bank account revokes the old mandate (reason 'replaced'); the new account is recorded
    as unvalidated. `authorized_at` without an offset is local time in `timezone`."""
    return _run(_MandateHandler(keyring, _zone(timezone)), path, sessions, progress=progress, chunk_size=chunk_size)


def import_payments(sessions: sessionmaker[Session], path: str | Path, *, keyring: Keyring,
                    timezone: str | tzinfo = "America/New_York",
                    progress: Callable[[int], None] | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> ImportResult:
    """Load the portal's one-time payments (portal/guest: WEB 'S', phone: TEL 'S', pending,
    originate_on = submission date in `timezone`; mail: already 'paid', never debited).
    A known confirmation_id changes nothing."""
    return _run(_PaymentHandler(keyring, _zone(timezone)), path, sessions, progress=progress, chunk_size=chunk_size)


def import_file(kind: str, sessions: sessionmaker[Session], path: str | Path, *, keyring: Keyring | None = None,
                timezone: str | tzinfo = "America/New_York", progress: Callable[[int], None] | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> ImportResult:
    """Dispatch on `kind` ('premiums', 'autopay' or 'payments')."""
    if kind == "premiums":
        return import_premiums(sessions, path, progress=progress, chunk_size=chunk_size)
    if keyring is None:
        raise ValueError(f"importing {kind} needs the account-number keyring")
    if kind == "autopay":
        return import_autopay(sessions, path, keyring=keyring, timezone=timezone, progress=progress,
                              chunk_size=chunk_size)
    if kind == "payments":
        return import_payments(sessions, path, keyring=keyring, timezone=timezone, progress=progress,
                               chunk_size=chunk_size)
    raise ValueError(f"unknown import kind {kind!r} (one of {', '.join(KINDS)})")
