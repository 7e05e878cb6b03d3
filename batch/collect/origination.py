"""Origination: turn the day's pending payments into NACHA debit files, each payment debited
exactly once whatever crashes or re-runs happen.

One database transaction claims the payments, draws their trace numbers, records the file (bytes
encrypted, sha256) with one `file_entries` row per payment and moves the payments to `in_file`.
The file is written to a temporary name in the outbox before that commit and renamed to its final
name after it; a run that finds a committed file missing from the outbox writes it again from the
stored bytes (never rebuilt), and a temporary file left by a crash before the commit is removed.
Unique constraints (`file_entries.payment_id`, `file_entries.trace_number`,
`nacha_files(file_date, file_id_modifier)`) hold the guarantee; a lock serialises runs
(PostgreSQL advisory transaction lock; SQLite `BEGIN IMMEDIATE`).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from nacha import codes
from nacha.calendar import effective_entry_date, is_banking_day
from nacha.layouts import BATCH_HEADER, FILE_HEADER
from nacha.layouts import FILE_ID_MODIFIER_ORDER as FILE_ID_MODIFIERS  # A-Z then 0-9, per file date
from nacha.sec import sec_format
from nacha.writer import FileWriter

from ..store.filebytes import StoredBytesError, stored_bytes  # noqa: F401  (re-exported)
from ..store.crypto import FILE_CONTEXT, Keyring
from .debit_guard import GuardSettings, screen_pending
from .validation import (
    ValidationOutcome, accept_risk, count_pending_prenotes, pending_prenotes, prepare as prepare_validation,
)
from ..rules.validation import ValidationPolicy, prenote_valid_from
from ..store.db import copy_rows
from ..store.fsutil import fsync_dir as _fsync_dir
from ..store.fsutil import TMP_PREFIX, file_sha256, write_atomic
from ..store.models import BankAccount, FileEntry, NachaFile, Payment, Prenote, Sequence, TRACE_SEQUENCE, utcnow
from ..rules.counts import counted
from ..store.runlock import LockHeld, RunLock  # noqa: F401  (LockHeld: what a second origination raises)

MAX_TRACE_SEQUENCE = 9_999_999  # 7 digits after the ODFI's 8 (NR2013 OR123)
ADVISORY_LOCK_KEY = 0x41434842_4F524947 & 0x7FFFFFFFFFFFFFFF  # "ACHBORIG"
PREMIUM_DESCRIPTION = "PREMIUM"
RETRY_DESCRIPTION = "RETRY PYMT"  # reserved description for reinitiated entries (reference §1.14)
OFFSET_DESCRIPTION = "SETTLEMENT"
CHUNK = 5000


class OriginationError(Exception):
    """Origination cannot proceed (no File ID Modifier left, trace numbers exhausted, bad data)."""


@dataclass(frozen=True)
class BatchKey:
    """Payments that share a batch: SEC code, payment type code and entry description."""

    sec_code: str
    payment_type_code: str
    description: str
    prenote: bool = False  # zero-dollar account validation entries, in batches of their own


@dataclass
class BuiltFile:
    file_id: int | None
    file_name: str
    file_id_modifier: str
    entries: int  # entry records the file holds: one per payment, plus a balanced file's offset entry
    total_debit_cents: int
    total_credit_cents: int
    batches: int
    sha256: str
    path: Path | None
    offset_entries: int = 0  # of `entries`, the offset credit of a balanced file (0 or 1)

    @property
    def payments(self) -> int:
        return self.entries - self.offset_entries

    def entries_words(self) -> str:
        """'3 entries (2 payments + 1 offset entry)': every entry record, and the offset said so."""
        words = f"{self.entries} {'entry' if self.entries == 1 else 'entries'}"
        if self.offset_entries:
            words += f" ({counted(self.payments, 'payment')} + 1 offset entry)"
        return words


@dataclass
class OriginationResult:
    file_date: date
    effective_date: date | None
    files: list[BuiltFile] = field(default_factory=list)
    payments: int = 0
    total_cents: int = 0
    held: int = 0  # pending payments not originated (account blocked)
    stopped: dict[int, str] = field(default_factory=dict)  # payment id -> why a rule stopped it (failed)
    reduced: dict[int, tuple[int, int]] = field(default_factory=dict)  # AutoPay pull -> (old, new cents)
    review_items: int = 0  # opened for stopped member payments
    repaired: list[str] = field(default_factory=list)  # outbox files rewritten from stored bytes
    prenotes: int = 0  # prenote entries written (zero dollars, not counted in `payments`)
    validation: ValidationOutcome | None = None  # WEB account validation ([validation]; None: not asked)
    skipped_reason: str | None = None

    @property
    def entries(self) -> int:
        """Entry records in the files built: the payments plus any balanced file's offset entry."""
        return sum(f.entries for f in self.files)

    @property
    def offset_entries(self) -> int:
        return sum(f.offset_entries for f in self.files)

    def entries_words(self) -> str:
        words = counted(self.entries, "entry")
        if self.offset_entries:
            words += f" ({counted(self.payments, 'payment')} + {counted(self.offset_entries, 'offset entry')})"
        return words
    dry_run: bool = False


@dataclass(frozen=True)
class Company:
    """What the file and batch headers say about us and our bank."""

    name: str
    company_id: str
    immediate_origin: str
    immediate_destination: str  # 9-digit routing
    destination_name: str
    odfi_routing: str
    settlement_routing: str | None = None
    settlement_account: str | None = None

    @classmethod
    def from_settings(cls, c) -> "Company":
        return cls(c.name, c.company_id, c.immediate_origin, c.immediate_destination, c.destination_name,
                   c.odfi_routing, c.settlement_routing, c.settlement_account)


@dataclass(frozen=True)
class Limits:
    max_entries_per_file: int = 250_000
    max_cents_per_file: int = 25_000_000_000
    balanced: bool = False


def batch_key(channel: str, sec_code: str, payment_type_code: str) -> BatchKey:
    """Portal and guest: WEB S; AutoPay online: WEB R; paper mandate: PPD; phone: TEL;
    re-presentments in their own RETRY PYMT batch (DESIGN.md)."""
    desc = RETRY_DESCRIPTION if channel == "retry" else PREMIUM_DESCRIPTION
    return BatchKey(sec_code, payment_type_code, desc)


def file_name_for(file_date: date, modifier: str) -> str:
    return f"ACH-{file_date:%Y%m%d}-{modifier}.ach"


def _nacha_text(s: str, width: int) -> str:
    """Upper-case printable ASCII, cut to the field width (names are display text)."""
    s = s.upper()
    if not (s.isascii() and s.isprintable()):
        s = re.sub(r"[^ -~]", "?", s)
    return s[:width].rstrip()


# -- the service ------------------------------------------------------------------------------------
def originate(
    sessions: sessionmaker[Session],
    keyring: Keyring,
    company: Company,
    limits: Limits,
    file_date: date,
    outbox: Path,
    *,
    dry_run: bool = False,
    file_time: str = "0000",
    progress: Callable[[int], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    guard: GuardSettings | None = None,
    validation: ValidationPolicy | None = None,
) -> OriginationResult:
    """Build the NACHA file(s) for every payment due on or before `file_date`. First, in the same
    transaction, the debit rules screen the pending payments (batch/collect/debit_guard.py, with `guard`:
    settings' coverage rules and time zone): a debit they forbid is stopped, never written.
    `validation` (the `[validation]` settings; the commands always pass them, None: no WEB account
    validation) first records validated accounts, holds or releases first-use WEB payments and
    asks for prenotes, which go into the file as zero-dollar entries (batch/collect/validation.py).

    `on_step(name)` is called at each step boundary ('locked', 'claimed', 'written', 'committed',
    'renamed'); tests use it to crash the process there."""
    step = on_step or (lambda _name: None)
    result = OriginationResult(file_date=file_date, effective_date=None, dry_run=dry_run)
    if not is_banking_day(file_date):
        result.skipped_reason = f"{file_date} is not a Federal Reserve banking day: no file is built"
        return result
    eff = effective_entry_date(file_date)
    result.effective_date = eff
    outbox = Path(outbox)
    if dry_run:  # writes nothing, repairs nothing: no need to keep another run out
        try:
            _originate_in_transaction(sessions, keyring, company, limits, file_date, eff, outbox, dry_run,
                                      file_time, progress, step, result, guard or GuardSettings(), validation)
        except _DryRunDone:
            pass
        return result
    outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The origination lock, tried and never waited for (LockHeld names the holder: exit 3), is held
    # from the repair of a crashed run's leftovers to the last rename: a second origination at the
    # same time never takes this one's temporary files for leftovers.
    with RunLock(sessions.kw["bind"], "originate") as lock:
        with sessions() as s, s.begin():
            lock.record(s, None)
        _originate_in_transaction(sessions, keyring, company, limits, file_date, eff, outbox, dry_run,
                                  file_time, progress, step, result, guard or GuardSettings(), validation)
        if not result.files:
            return result
        step("committed")
        for f in result.files:
            tmp = outbox / (TMP_PREFIX + f.file_name)
            os.replace(tmp, outbox / f.file_name)
            _fsync_dir(outbox)
        step("renamed")
    return result


class _DryRunDone(Exception):
    """Raised inside the transaction to roll a dry run back."""


def _originate_in_transaction(sessions, keyring, company, limits, file_date, eff, outbox, dry_run, file_time,
                              progress, step, result, guard, validation=None) -> None:
    with sessions() as s, s.begin():
        _lock(s)
        step("locked")
        if not dry_run:
            result.repaired = _repair_outbox(s, keyring, outbox)
        if validation is not None:
            result.validation = prepare_validation(s.connection(), file_date, validation)
        screened = screen_pending(s.connection(), file_date, guard)
        result.stopped, result.reduced, result.review_items = screened.stopped, screened.reduced, screened.review_items
        if result.validation is not None:
            accept_risk(s.connection(), file_date, validation, result.validation)
            result.review_items += result.validation.review_items
        keys = _pending_keys(s, file_date)
        result.held = _held_count(s, file_date)
        n_prenotes = count_pending_prenotes(s.connection()) if validation is not None and validation.active else 0
        total = sum(n for _k, n in keys) + n_prenotes
        if total == 0:
            step("claimed")
            return
        first_seq = _claim_traces(s, total, dry_run)
        step("claimed")
        used = set(s.scalars(select(NachaFile.file_id_modifier).where(NachaFile.file_date == file_date)))
        modifiers = file_id_modifiers(used)
        builder = _FileBuilder(s, keyring, company, limits, file_date, eff, file_time, outbox, modifiers,
                               first_seq, dry_run, progress)
        for key, _n in keys:
            for rows in _pending_rows(s, file_date, key):
                for row in rows:
                    builder.add(key, row)
        if n_prenotes:  # after the debits, in WEB batches of their own (valid_from: set when their file closes)
            builder.valid_from = prenote_valid_from(eff, validation.prenote_wait_banking_days)
            for rows in pending_prenotes(s.connection()):
                for row in rows:
                    builder.add_prenote(row)
        builder.close()
        result.prenotes = builder.prenote_count
        result.files = builder.files
        result.payments = builder.payment_count
        result.total_cents = builder.payment_cents
        step("written")
        if dry_run:
            raise _DryRunDone()


def _lock(s: Session) -> None:
    """One origination at a time. PostgreSQL: a transaction-scoped advisory lock (waits for the
    other run, then sees its committed claims). SQLite: the transaction began IMMEDIATE, which
    already holds the database's write lock."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    else:
        # Make sure the write lock is taken now, even if the engine began a deferred transaction.
        s.execute(update(Sequence).where(Sequence.name == "__lock__").values(value=0))


def _eligible(file_date: date):
    return (
        (Payment.state == "pending")
        & (Payment.originate_on <= file_date)
        & (Payment.bank_account_id.is_not(None))
        & (Payment.bank_account_id.in_(select(BankAccount.id).where(BankAccount.status == "active")))
    )


def _pending_keys(s: Session, file_date: date) -> list[tuple[BatchKey, int]]:
    rows = s.execute(
        select(Payment.channel, Payment.sec_code, Payment.payment_type_code, func.count())
        .where(_eligible(file_date))
        .group_by(Payment.channel, Payment.sec_code, Payment.payment_type_code)
    ).all()
    out: dict[BatchKey, int] = {}
    for channel, sec, ptc, n in rows:
        k = batch_key(channel, sec, ptc)
        out[k] = out.get(k, 0) + n
    # A stable batch order: WEB before PPD before TEL, first payments before retries.
    order = {"WEB": 0, "PPD": 1, "TEL": 2}
    return sorted(out.items(), key=lambda kv: (kv[0].description == RETRY_DESCRIPTION,
                                               order.get(kv[0].sec_code, 9), kv[0].sec_code,
                                               kv[0].payment_type_code))


def _held_count(s: Session, file_date: date) -> int:
    return s.scalar(
        select(func.count()).select_from(Payment).join(BankAccount, Payment.bank_account_id == BankAccount.id)
        .where((Payment.state == "pending") & (Payment.originate_on <= file_date) & (BankAccount.status != "active"))
    ) or 0


def _pending_rows(s: Session, file_date: date, key: BatchKey) -> Iterator[list]:
    """The batch key's payments in id order, a chunk at a time, from one streamed query (a server-
    side cursor on PostgreSQL; SQLite steps its statement lazily). Paging with `id > last ... LIMIT`
    instead made every page sort all the remaining candidates: quadratic on a million payments.
    The writes made meanwhile on the same connection (file entries; payments already read moving to
    in_file when a file is split) never touch a row the cursor has yet to return."""
    is_retry = key.description == RETRY_DESCRIPTION
    conn = s.connection()
    result = conn.execute(
        select(Payment.id, Payment.amount_cents, Payment.member_id, BankAccount.routing_number,
               BankAccount.account_number_enc, BankAccount.account_type, BankAccount.holder_name)
        .join(BankAccount, Payment.bank_account_id == BankAccount.id)
        .where(_eligible(file_date) & (Payment.sec_code == key.sec_code)
               & (Payment.payment_type_code == key.payment_type_code)
               & ((Payment.channel == "retry") if is_retry else (Payment.channel != "retry")))
        .order_by(Payment.id),
        execution_options={"stream_results": True, "max_row_buffer": CHUNK},  # this statement only
    )
    try:
        yield from result.partitions(CHUNK)
    finally:
        result.close()


def _claim_traces(s: Session, n: int, dry_run: bool) -> int:
    """Reserve `n` trace sequence numbers; returns the first. Never reused, even by a dry run's
    rollback (the rollback simply returns them)."""
    cur = s.scalar(select(Sequence.value).where(Sequence.name == TRACE_SEQUENCE))
    if cur is None:
        s.execute(insert(Sequence).values(name=TRACE_SEQUENCE, value=0))
        cur = 0
    if cur + n > MAX_TRACE_SEQUENCE:
        raise _exhausted(cur, n)
    return cur + 1


def _exhausted(used: int, needed: int) -> OriginationError:
    return OriginationError(
        f"trace number sequence exhausted: {used:,} of {MAX_TRACE_SEQUENCE:,} used and {needed:,} more needed; "
        "trace numbers are never reused (agree a new trace scheme with the ODFI)")


_FILE_ENTRY_COLUMNS = ("file_id", "batch_number", "trace_number", "payment_id", "amount_cents",
                       "transaction_code", "sec_code", "kind", "prenote_id")
_INSERT_FILE_ENTRIES = (f"INSERT INTO file_entries ({', '.join(_FILE_ENTRY_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_FILE_ENTRY_COLUMNS))})")  # sqlite3: qmark


def file_id_modifiers(used: Iterable[str]) -> Iterator[str]:
    """The File ID Modifiers still free on a file date, in order (A-Z, then 0-9)."""
    used = frozenset(used)
    return (m for m in FILE_ID_MODIFIERS if m not in used)


def offset_cents(limits: Limits, file_cents: int) -> int:
    """Balanced files: the amount of the one offset credit to our settlement account that closes
    a file of `file_cents` in debits (0: no offset entry: unbalanced files, or nothing debited)."""
    return file_cents if limits.balanced and file_cents else 0


SAME_BATCH = 0  # the entry joins the open batch
NEW_BATCH = 1  # the open batch (if any) closes; one for the entry's key opens
NEW_FILE = 2  # the open file (if any) closes; a new file opens, with a batch for the entry's key


class FileSplit:
    """How a stream of payments (batch key, amount in cents, in origination order) is split into
    files and batches, one entry at a time (pure: no rows kept, no I/O). A file holds at most
    `max_entries_per_file` entries and `max_cents_per_file` cents (an entry larger than that alone
    still gets a file of its own); a batch holds consecutive entries of one key. `place` says what
    the builder does before writing the entry; the totals of the file it closes are then in
    `closed_entries`/`closed_cents` (`entries`/`cents`: the open file's, so far)."""

    __slots__ = ("max_entries", "max_cents", "files", "key", "entries", "cents", "closed_entries", "closed_cents")

    def __init__(self, limits: Limits):
        self.max_entries = limits.max_entries_per_file
        self.max_cents = limits.max_cents_per_file
        self.files = 0  # files opened so far
        self.key: BatchKey | None = None
        self.entries = self.cents = 0
        self.closed_entries = self.closed_cents = 0

    def place(self, key: BatchKey, amount: int) -> int:
        if self.files and self.entries < self.max_entries and self.cents + amount <= self.max_cents:
            step = SAME_BATCH if key == self.key else NEW_BATCH
        else:
            step = NEW_FILE
            self.files += 1
            self.closed_entries, self.closed_cents = self.entries, self.cents
            self.entries = self.cents = 0
        self.key = key
        self.entries += 1
        self.cents += amount
        return step


class _FileBuilder:
    """Streams payments into NACHA files, splitting at the configured limits, and records each file,
    its entries and the payments' new state in the open transaction."""

    def __init__(self, s, keyring, company: Company, limits: Limits, file_date, eff, file_time, outbox,
                 modifiers, first_seq, dry_run, progress):
        self.s = s
        self.keyring = keyring
        self.company = company
        self.limits = limits
        self.file_date = file_date
        self.eff_date = eff
        self.eff = eff.strftime("%y%m%d")
        self.file_time = file_time
        self.outbox = outbox
        self.modifiers = modifiers
        self.seq = first_seq
        self.dry_run = dry_run
        self.progress = progress
        self.files: list[BuiltFile] = []
        self.payment_count = 0
        self.payment_cents = 0
        self.prenote_count = 0
        self.valid_from: date | None = None  # of tonight's prenotes
        self.odfi8 = company.odfi_routing[:8]
        self._w: FileWriter | None = None
        self._key: BatchKey | None = None
        self._file_row: NachaFile | None = None
        self._entries: list[dict] = []
        self.split = FileSplit(limits)

    # -- files ----------------------------------------------------------------------------------
    def _open_file(self) -> None:
        mod = next(self.modifiers, None)
        if mod is None:
            raise OriginationError(
                f"no File ID Modifier left for {self.file_date}: 36 files (A-Z, 0-9) were already built "
                "that day; a 37th file cannot be told apart by the bank")
        c = self.company
        self.modifier = mod
        self.name = file_name_for(self.file_date, mod)
        if self.dry_run:
            self._sink = io.StringIO()
            self.tmp = None
        else:
            self.tmp = self.outbox / (TMP_PREFIX + self.name)
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._sink = os.fdopen(fd, "w", encoding="ascii", newline="\n", buffering=1 << 20)
        header = FILE_HEADER.make(
            immediate_destination=" " + c.immediate_destination,
            immediate_origin=c.immediate_origin.rjust(10),
            file_creation_date=self.file_date.strftime("%y%m%d"),
            file_creation_time=self.file_time,
            file_id_modifier=mod,
            immediate_destination_name=_nacha_text(c.destination_name, 23),
            immediate_origin_name=_nacha_text(c.name, 23),
        )
        self._w = FileWriter(self._sink, header, name=self.name)
        self._batches = 0
        if not self.dry_run:
            row = NachaFile(file_date=self.file_date, file_id_modifier=mod, file_name=self.name, sha256="",
                            entry_count=0, total_debit_cents=0, total_credit_cents=0, state="built")
            self.s.add(row)
            self.s.flush()
            self._file_row = row

    def _close_file(self, entries: int, cents: int) -> None:
        if self._w is None:
            return
        self._close_batch()
        offset = offset_cents(self.limits, cents)
        if offset:
            self._add_offset(offset)
            entries += 1
        w = self._w
        ctl = w.finish()
        self._flush_entries()
        self._sink.flush()
        if self.dry_run:
            data = self._sink.getvalue().encode("ascii")
        else:
            os.fsync(self._sink.fileno())
            self._sink.close()
            data = self.tmp.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if not self.dry_run:  # the plain bytes let go before the row is flushed: one copy fewer at the peak
            content_enc, data = self.keyring.encrypt(data, FILE_CONTEXT), None
        built = BuiltFile(None, self.name, self.modifier, entries, ctl.total_debit_amount,
                          ctl.total_credit_amount, ctl.batch_count, digest, None, offset_entries=1 if offset else 0)
        if not self.dry_run:
            row = self._file_row
            row.sha256 = digest
            row.content_enc = content_enc
            row.entry_count = ctl.entry_addenda_count
            row.batch_count = ctl.batch_count
            row.total_debit_cents = ctl.total_debit_amount
            row.total_credit_cents = ctl.total_credit_amount
            self.s.flush()
            fid = row.id
            # Set-based, and no ORM session synchronisation (no Payment objects are loaded here;
            # synchronising would fetch and look up every updated id).
            self.s.execute(
                update(Payment)
                .where(Payment.id.in_(select(FileEntry.payment_id).where(FileEntry.file_id == fid)))
                .values(state="in_file", updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if self.prenote_count:
                self.s.execute(
                    update(Prenote)
                    .where(Prenote.id.in_(select(FileEntry.prenote_id).where(FileEntry.file_id == fid)))
                    .values(state="in_file", file_date=self.file_date, settlement_date=self.eff_date,
                            valid_from=self.valid_from, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            built.file_id = fid
            built.path = self.outbox / self.name
        else:
            from nacha.reader import validate_file

            r = validate_file(data, "strict", name=self.name)
            if r.issues:
                raise OriginationError(f"dry run built an invalid file: {r.issues[0]}")
        self.files.append(built)
        self._w = None
        self._key = None

    # -- batches --------------------------------------------------------------------------------
    def _open_batch(self, key: BatchKey, service_class: str = "225") -> None:
        c = self.company
        scc = service_class
        header = BATCH_HEADER.make(
            service_class_code=scc,
            company_name=_nacha_text(c.name, 16),
            company_identification=c.company_id,
            standard_entry_class_code=key.sec_code,
            company_entry_description=key.description,
            effective_entry_date=self.eff,
            originator_status_code="1",
            originating_dfi_identification=self.odfi8,
            batch_number=1,
        )
        self.batch_number = self._w.start_batch(header)
        self._batches += 1
        self._key = key
        self.entry_layout = sec_format(key.sec_code).entry
        self.make = self.entry_layout.make
        self.name_field = "receiving_company_name" if "receiving_company_name" in self.entry_layout.index \
            else "individual_name"
        self.id_field = "identification_number" if "identification_number" in self.entry_layout.index \
            else "individual_identification_number"
        # the entry's fields that _write_entry fills, by position; the batch's payment type last
        ptc = ("payment_type_code",) if "payment_type_code" in self.entry_layout.index else ()
        self._entry = self.entry_layout.maker(
            "transaction_code", "receiving_dfi_identification", "check_digit", "dfi_account_number", "amount",
            self.id_field, self.name_field, "trace_number", *ptc)
        self._entry_ptc = (key.payment_type_code,) if ptc else ()

    def _close_batch(self) -> None:
        if self._key is None:
            return
        self._w.end_batch()
        self._key = None

    def _next_trace(self) -> str:
        if self.seq > MAX_TRACE_SEQUENCE:
            raise _exhausted(self.seq - 1, 1)
        t = f"{self.odfi8}{self.seq:07d}"
        self.seq += 1
        return t

    def _add_offset(self, cents: int) -> None:
        """Balanced files: one credit to our settlement account for the file's debits, in a CCD
        batch of its own (credits only, service class 220), so debit batches stay 225."""
        c = self.company
        self._close_batch()
        key = BatchKey("CCD", "", OFFSET_DESCRIPTION)
        self._open_batch(key, service_class="220")
        trace = self._next_trace()
        rec = self.make(
            transaction_code="22",
            receiving_dfi_identification=c.settlement_routing[:8],
            check_digit=c.settlement_routing[8],
            dfi_account_number=c.settlement_account,
            amount=cents,
            identification_number=_nacha_text(c.company_id, 15),
            receiving_company_name=_nacha_text(c.name, 22),
            trace_number=trace,
        )
        self._w.add_entry(rec)
        self._record_entry(None, trace, cents, "22", "offset")
        self._close_batch()

    # -- entries --------------------------------------------------------------------------------
    def add(self, key: BatchKey, row) -> None:
        pid, amount, member_id, routing, account_enc, account_type, holder = row
        tc = codes.DEBIT_CODE[account_type]
        trace = self._write_entry(key, tc, amount, member_id, routing, account_enc, holder)
        self._record_entry(pid, trace, amount, tc, "payment")
        self.payment_count += 1
        self.payment_cents += amount
        if self.progress and self.payment_count % 10000 == 0:
            self.progress(self.payment_count)

    def add_prenote(self, row) -> None:
        """A zero-dollar prenote (28 checking, 38 savings) of an account, in a WEB batch of its own
        (the SEC code and payment type the live debits will use)."""
        prenote_id, member_id, ptc, routing, account_enc, account_type, holder = row
        key = BatchKey("WEB", ptc, PREMIUM_DESCRIPTION, prenote=True)
        tc = codes.PRENOTE_DEBIT_CODE[account_type]
        trace = self._write_entry(key, tc, 0, member_id, routing, account_enc, holder)
        self._record_entry(None, trace, 0, tc, "prenote", prenote_id)
        self.prenote_count += 1

    def _write_entry(self, key: BatchKey, tc: str, amount: int, member_id: str, routing: str, account_enc: bytes,
                     holder: str) -> str:
        """Place an entry of batch `key` (a new batch or file when the split says so), write it with
        the account decrypted for the file only, and return its trace number."""
        step = self.split.place(key, amount)
        if step == NEW_FILE:
            self._close_file(self.split.closed_entries, self.split.closed_cents)
            self._open_file()
            self._open_batch(key)
        elif step == NEW_BATCH:
            self._close_batch()
            self._open_batch(key)
        trace = self._next_trace()
        account = self.keyring.decrypt_account(account_enc)  # for the file only
        self._w.add_entry(self._entry(tc, routing[:8], routing[8], account, amount, member_id,
                                      _nacha_text(holder, 22), trace, *self._entry_ptc))
        return trace

    def _record_entry(self, pid, trace, amount, tc, kind, prenote_id=None) -> None:
        if self.dry_run:
            return
        # In _FILE_ENTRY_COLUMNS order.
        self._entries.append((self._file_row.id, self.batch_number, trace, pid, amount, tc, self._key.sec_code,
                              kind, prenote_id))
        if len(self._entries) >= CHUNK:
            self._flush_entries()

    def _flush_entries(self) -> None:
        if self._entries:
            conn = self.s.connection()
            if conn.dialect.name == "postgresql":
                copy_rows(conn, "file_entries", _FILE_ENTRY_COLUMNS, self._entries)
            else:  # SQLite: one prepared statement, executed for the chunk's rows by the driver itself
                conn.exec_driver_sql(_INSERT_FILE_ENTRIES, self._entries)
            self._entries = []

    def close(self) -> None:
        self._close_file(self.split.entries, self.split.cents)
        if not self.dry_run:
            used = self.seq - 1
            self.s.execute(update(Sequence).where(Sequence.name == TRACE_SEQUENCE).values(value=used))


# -- repair -----------------------------------------------------------------------------------------
def _repair_outbox(s: Session, keyring: Keyring, outbox: Path) -> list[str]:
    """Remove temporary files of runs that crashed before committing, and write again (from the
    stored bytes) any committed file that is not in the outbox yet."""
    for tmp in outbox.glob(TMP_PREFIX + "*"):
        tmp.unlink(missing_ok=True)
    repaired = []
    for row in s.scalars(select(NachaFile).where(NachaFile.state == "built")):
        path = outbox / row.file_name
        if path.exists() and file_sha256(path) == row.sha256:
            continue
        data = stored_bytes(keyring, row)
        write_atomic(path, data)
        repaired.append(row.file_name)
    return repaired
