"""The ledger schema (SQLAlchemy 2.0 declarative): premiums, bank accounts, AutoPay mandates,
payments, NACHA files and their entries, sequences and the import ledger.

Money is integer cents (BigInteger). Account numbers and file bytes are stored only encrypted
(batch/store/crypto.py; the ciphertext carries its key id). The exactly-once guarantees are unique
constraints, so they hold whatever the scheduler does:
  * payments.confirmation_id unique: a portal payment is recorded once;
  * payments.autopay_premium_id unique: never two AutoPay pulls for one premium;
  * file_entries.payment_id unique: a payment is in at most one NACHA entry;
  * file_entries.trace_number unique: a trace number is never reused;
  * nacha_files (file_date, file_id_modifier) unique;
  * autopay_mandates.active_key unique (= 'member|plan' while the mandate is live, NULL once
    revoked): at most one live mandate per member and plan, on SQLite and PostgreSQL alike.
The schema itself is created by the Alembic migrations in batch/migrations (`achbatch db upgrade`);
these classes must stay in step with them (tests/test_db.py compares the two).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.associationproxy import AssociationProxy, association_proxy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from nacha.errors import Issue

from .crypto import Keyring

__all__ = [
    "AutopayMandate", "BankAccount", "Base", "FileEntry", "ImportRun", "NachaFile", "Payment",
    "Premium", "Sequence", "UTCDateTime", "utcnow",
    "SUBSIDIES", "ACCOUNT_TYPES", "ACCOUNT_STATUSES", "VALIDATION_RESULTS", "MANDATE_CHANNELS",
    "MANDATE_STATUSES", "PAYMENT_CHANNELS", "PAYMENT_STATES", "SEC_CODES", "PAYMENT_TYPE_CODES",
    "FILE_STATES", "TRACE_SEQUENCE",
]

# Constraint names are stable across databases (Alembic needs names to alter them later).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

def _key_id_of(column: str):
    """Column default: the key id (hex) inside the ciphertext being inserted, for Core inserts that
    do not name it (ORM objects set it themselves, see `validates` below)."""
    def default(context) -> str:
        return Keyring.key_id_of(context.get_current_parameters()[column])
    return default


# Value sets (CHECK constraints below; the migrations carry the same lists).
SUBSIDIES = ("none", "aptc", "connectorcare")
ACCOUNT_TYPES = ("checking", "savings")
ACCOUNT_STATUSES = ("active", "blocked")
VALIDATION_RESULTS = ("unvalidated", "pending", "valid", "invalid")
MANDATE_CHANNELS = ("web", "paper")
MANDATE_STATUSES = ("active", "suspended", "revoked")
MANDATE_LIVE_STATUSES = ("active", "suspended")
PAYMENT_CHANNELS = ("portal", "guest", "phone", "mail", "autopay", "retry")
# held (migration 0014): a first-use WEB debit waiting for its account's validation ([validation])
PAYMENT_STATES = ("pending", "held", "in_file", "sent", "settled", "returned", "failed", "paid")
SEC_CODES = ("WEB", "PPD", "TEL")
PAYMENT_TYPE_CODES = ("S", "R", "")
FILE_STATES = ("built", "sending", "sent")
TRACE_SEQUENCE = "trace"  # sequences.name of the 7-digit trace number counter


def _in(column: str, values: tuple[str, ...]) -> str:
    """`column` is one of `values`, as equalities joined by OR (migration 0018): SQLite fills a
    look-up table for an IN list of more than two constants at every execution of a statement, and
    executemany (the bulk loads on SQLite) executes its INSERT once per row."""
    return "(" + " OR ".join(f"{column} = {v!r}" for v in values) + ")"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# Surrogate keys: BIGINT on PostgreSQL, INTEGER on SQLite (only "INTEGER PRIMARY KEY" is the rowid
# alias that autoincrements there).
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timezone-aware instant. Stored as timestamptz on PostgreSQL and as naive UTC on SQLite
    (which has no time zones); always returned aware, in UTC. Naive values are refused: a time
    without a zone is a guess."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: give a time zone (store instants, not wall-clock times)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Premium(Base):
    """One bill from the enrollment system: a member's premium for one plan and coverage month."""

    __tablename__ = "premiums"
    __table_args__ = (
        UniqueConstraint("member_id", "plan_id", "coverage_month"),
        CheckConstraint("amount_due_cents >= 0", name="amount_due"),
        CheckConstraint(_in("subsidy", SUBSIDIES), name="subsidy"),
        Index("ix_premiums_due_date", "due_date"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(15))  # = NACHA Individual Identification (15)
    member_name: Mapped[str] = mapped_column(String(100))
    plan_id: Mapped[str] = mapped_column(String(20))
    coverage_month: Mapped[date] = mapped_column(Date)  # first day of the month covered
    amount_due_cents: Mapped[int] = mapped_column(BigInteger)
    subsidy: Mapped[str] = mapped_column(String(16))
    binder: Mapped[bool] = mapped_column(Boolean)
    due_date: Mapped[date] = mapped_column(Date)  # 23rd of the month before (premium_calendar)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BankAccount(Base):
    """A payer's checking or savings account. The number is stored only encrypted; `account_hash`
    (keyed HMAC of routing|account) finds it again without decrypting. Validation state records
    NACHA's WEB debit account validation (first use and every change, ref §4)."""

    __tablename__ = "bank_accounts"
    __table_args__ = (
        # hash first: lookups by keyed hash use this index (the hash alone is all but unique)
        UniqueConstraint("account_hash", "routing_number"),
        CheckConstraint(_in("account_type", ACCOUNT_TYPES), name="account_type"),
        CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),
        CheckConstraint(_in("validation_result", VALIDATION_RESULTS), name="validation_result"),
        CheckConstraint("length(routing_number) = 9", name="routing_number"),
        CheckConstraint("length(last4) <= 4", name="last4"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    routing_number: Mapped[str] = mapped_column(String(9))
    account_number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    # the id of the key the number is encrypted with (also inside the ciphertext): which keys stored
    # data needs is one indexed query (`batch.store.crypto.stored_key_ids`)
    key_id: Mapped[str] = mapped_column(String(8), default=_key_id_of("account_number_enc"), index=True)
    account_hash: Mapped[str] = mapped_column(String(64))
    last4: Mapped[str] = mapped_column(String(4))
    account_type: Mapped[str] = mapped_column(String(8))
    holder_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(8), default="active")
    status_reason: Mapped[str | None] = mapped_column(String(100), default=None)
    validation_method: Mapped[str | None] = mapped_column(String(32), default=None)
    validated_on: Mapped[date | None] = mapped_column(Date, default=None)
    validation_result: Mapped[str] = mapped_column(String(16), default="unvalidated")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("account_number_enc")
    def _set_key_id(self, _name: str, blob: bytes) -> bytes:
        self.key_id = Keyring.key_id_of(blob)
        return blob


class AutopayMandate(Base):
    """An AutoPay authorization: debit this account for this member's plan every month.
    `web` mandates are WEB with payment type R, `paper` ones PPD (DESIGN.md)."""

    __tablename__ = "autopay_mandates"
    __table_args__ = (
        UniqueConstraint("active_key"),
        CheckConstraint(_in("channel", MANDATE_CHANNELS), name="channel"),
        CheckConstraint(_in("status", MANDATE_STATUSES), name="status"),
        # active_key is 'member|plan' exactly while the mandate is live (active or suspended) and
        # NULL otherwise; with the unique constraint that allows one live mandate per member/plan.
        CheckConstraint(
            f"({_in('status', MANDATE_LIVE_STATUSES)} AND active_key IS NOT NULL"
            " AND active_key = member_id || '|' || plan_id)"
            f" OR (NOT {_in('status', MANDATE_LIVE_STATUSES)} AND active_key IS NULL)",
            name="active_key",
        ),
        Index("ix_autopay_mandates_member_plan", "member_id", "plan_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(15))
    plan_id: Mapped[str] = mapped_column(String(20))
    bank_account_id: Mapped[int] = mapped_column(Id, ForeignKey("bank_accounts.id"))
    channel: Mapped[str] = mapped_column(String(8))
    authorized_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="active")
    status_reason: Mapped[str | None] = mapped_column(String(100), default=None)
    active_key: Mapped[str | None] = mapped_column(String(40), default=None)
    # when it stopped being live: authorizations are kept 2 years after revocation (NR2013 OR6)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The most a pull may take without a notice of the new amount (migration 0011): the amount the
    # member authorized, set by the mandate's first pull and raised after an `autopay_amount_change`
    # notice (batch/rules/debit_rules.amount_change). NULL: no pull yet.
    authorized_amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)

    @staticmethod
    def key_for(member_id: str, plan_id: str) -> str:
        return f"{member_id}|{plan_id}"


class Payment(Base):
    """One payment: a debit to originate (portal, guest, phone, AutoPay pull, re-presentment) or a
    mail payment already received (state 'paid', never debited, no bank account)."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("confirmation_id"),
        UniqueConstraint("autopay_premium_id"),
        CheckConstraint("amount_cents > 0", name="amount"),
        CheckConstraint(_in("channel", PAYMENT_CHANNELS), name="channel"),
        CheckConstraint(_in("state", PAYMENT_STATES), name="state"),
        CheckConstraint(f"sec_code IS NULL OR {_in('sec_code', SEC_CODES)}", name="sec_code"),
        CheckConstraint(_in("payment_type_code", PAYMENT_TYPE_CODES), name="payment_type_code"),
        # mail: no account, no SEC code, never debited; every other channel is an ACH debit
        CheckConstraint(
            "(channel = 'mail' AND bank_account_id IS NULL AND sec_code IS NULL AND state = 'paid')"
            " OR (channel <> 'mail' AND bank_account_id IS NOT NULL AND sec_code IS NOT NULL"
            " AND originate_on IS NOT NULL AND state <> 'paid')",
            name="mail",
        ),
        CheckConstraint("autopay_premium_id IS NULL OR channel = 'autopay'", name="autopay_premium"),
        # A pull's AutoPay premium is its own premium, whose foreign key (premium_id) says it exists
        # (migration 0019: a second foreign key looked the same premium up again for every pull).
        CheckConstraint("autopay_premium_id IS NULL OR autopay_premium_id = premium_id", name="autopay_premium_own"),
        # Partial indexes (migration 0005): the nightly bulk updates of state skip them.
        Index("ix_payments_pending", "originate_on", postgresql_where=text("state = 'pending'"),
              sqlite_where=text("state = 'pending'")),
        Index("ix_payments_member_plan_month", "member_id", "plan_id", "coverage_month"),
        Index("ix_payments_premium_id", "premium_id", postgresql_where=text("premium_id IS NOT NULL"),
              sqlite_where=text("premium_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    confirmation_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    member_id: Mapped[str] = mapped_column(String(15))
    plan_id: Mapped[str] = mapped_column(String(20))
    coverage_month: Mapped[date] = mapped_column(Date)
    premium_id: Mapped[int | None] = mapped_column(Id, ForeignKey("premiums.id"), default=None)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    bank_account_id: Mapped[int | None] = mapped_column(Id, ForeignKey("bank_accounts.id"), default=None)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sec_code: Mapped[str | None] = mapped_column(String(3), default=None)
    payment_type_code: Mapped[str] = mapped_column(String(1), default="")
    originate_on: Mapped[date | None] = mapped_column(Date, default=None)  # file date it should go out
    state: Mapped[str] = mapped_column(String(10), default="pending")
    autopay_premium_id: Mapped[int | None] = mapped_column(Id, default=None)  # = premium_id (CHECK above)
    retry_of_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    retry_number: Mapped[int] = mapped_column(SmallInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NachaFile(Base):
    """A built NACHA file. The bytes are stored (encrypted: they contain account numbers) with their
    sha256 so a file is re-sent as the same bytes, never rebuilt. They live in their own table
    (`NachaFileContent`, about 100 MB for a million entries): a file's state changes several times
    while it is delivered, and SQLite rewrites a whole row on every update. `row.content_enc` reads
    them (one query, on first access) and sets them."""

    __tablename__ = "nacha_files"
    __table_args__ = (
        UniqueConstraint("file_date", "file_id_modifier"),
        UniqueConstraint("file_name"),
        CheckConstraint(_in("state", FILE_STATES), name="state"),
        CheckConstraint("length(file_id_modifier) = 1", name="file_id_modifier"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    file_date: Mapped[date] = mapped_column(Date)
    file_id_modifier: Mapped[str] = mapped_column(String(1))
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    batch_count: Mapped[int] = mapped_column(Integer, default=0)
    entry_count: Mapped[int] = mapped_column(Integer)
    total_debit_cents: Mapped[int] = mapped_column(BigInteger)
    total_credit_cents: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(8), default="built")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    content: Mapped["NachaFileContent | None"] = relationship(
        back_populates="file", cascade="all, delete-orphan", single_parent=True, uselist=False, lazy="select")
    content_enc: AssociationProxy[bytes | None] = association_proxy(
        "content", "content_enc", creator=lambda blob: NachaFileContent(content_enc=blob))


class NachaFileContent(Base):
    """The encrypted bytes of one built file (see NachaFile)."""

    __tablename__ = "nacha_file_contents"

    file_id: Mapped[int] = mapped_column(Id, ForeignKey("nacha_files.id", ondelete="CASCADE"), primary_key=True)
    content_enc: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(8), default=_key_id_of("content_enc"), index=True)

    file: Mapped[NachaFile] = relationship(back_populates="content")

    @validates("content_enc")
    def _set_key_id(self, _name: str, blob: bytes) -> bytes:
        self.key_id = Keyring.key_id_of(blob)
        return blob


def _entry_kind(context) -> str:
    """Column default of `file_entries.kind`: what the ids being inserted say."""
    p = context.get_current_parameters()
    if p.get("prenote_id") is not None:
        return "prenote"
    return "offset" if p.get("payment_id") is None else "payment"


class FileEntry(Base):
    """One entry detail record of a built file. `payment_id` is unique: the exactly-once guarantee.
    `kind` says what the entry is (migration 0014): `payment` (a live debit, `payment_id` set),
    `offset` (a balanced file's credit to our own settlement account: neither id) or `prenote` (a
    zero-dollar account validation entry, `prenote_id` set)."""

    __tablename__ = "file_entries"
    __table_args__ = (
        UniqueConstraint("trace_number"),
        UniqueConstraint("payment_id"),
        CheckConstraint("length(trace_number) = 15", name="trace_number"),
        CheckConstraint(
            "(kind = 'payment' AND payment_id IS NOT NULL AND prenote_id IS NULL)"
            " OR (kind = 'offset' AND payment_id IS NULL AND prenote_id IS NULL)"
            " OR (kind = 'prenote' AND payment_id IS NULL AND prenote_id IS NOT NULL AND amount_cents = 0)",
            name="kind"),
        Index("ix_file_entries_file_id", "file_id"),
        Index("ux_file_entries_prenote_id", "prenote_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    file_id: Mapped[int] = mapped_column(Id, ForeignKey("nacha_files.id"))
    batch_number: Mapped[int] = mapped_column(Integer)
    trace_number: Mapped[str] = mapped_column(String(15))
    payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    transaction_code: Mapped[str] = mapped_column(String(2))
    sec_code: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(8), default=_entry_kind)
    prenote_id: Mapped[int | None] = mapped_column(Id, ForeignKey("prenotes.id"), default=None)


class Sequence(Base):
    """Named counters (the trace number sequence). Claimed with UPDATE ... RETURNING inside the
    origination transaction, so two runs can never draw the same value."""

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ImportRun(Base):
    """The import ledger: one row per CSV import (kind, file name and content hash, counts)."""

    __tablename__ = "import_runs"
    __table_args__ = (Index("ix_import_runs_kind_sha256", "kind", "sha256"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_loaded: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# == Delivery to the bank and inbound bank files (issue 4; migration 0002_delivery) ==================
# Delivery ledger: one `deliveries` row per NACHA file sent (or being sent), one `delivery_attempts`
# row per try; `nacha_files.state` moves built -> sending -> sent alongside. Inbound ledger: one
# `inbound_files` row per bank file fetched, deduplicated by content hash (`content_key`).
DELIVERY_OUTCOMES = ("sent", "already_there", "unreachable", "lost", "refused", "config", "failed")
INBOUND_STATES = ("received", "duplicate", "processed")
INBOUND_KINDS = ("returns", "statement")


class Delivery(Base):
    """How a built file reaches the bank: where, under which name, the exact payload (its sha256 and
    size; the PGP ciphertext itself when encrypting, so every attempt sends identical bytes),
    attempts, the last error, and when it was confirmed."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("file_id"),
        UniqueConstraint("destination", "remote_name"),
        CheckConstraint("attempts >= 0 AND uploads >= 0", name="counts"),
        CheckConstraint("payload_size >= 0", name="payload_size"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    file_id: Mapped[int] = mapped_column(Id, ForeignKey("nacha_files.id"))
    transport: Mapped[str] = mapped_column(String(8))
    destination: Mapped[str] = mapped_column(String(500))  # transport address + outbound folder
    remote_name: Mapped[str | None] = mapped_column(String(255), default=None)  # final name at the bank
    payload_sha256: Mapped[str] = mapped_column(String(64))
    payload_size: Mapped[int] = mapped_column(BigInteger)
    pgp_recipient: Mapped[str | None] = mapped_column(String(200), default=None)
    pgp_payload: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    uploads: Mapped[int] = mapped_column(Integer, default=0)  # attempts that wrote bytes to the bank
    ambiguous: Mapped[bool] = mapped_column(Boolean, default=False)  # last attempt's outcome unknown
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # confirmed at the bank
    last_error: Mapped[str | None] = mapped_column(String(1000), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeliveryAttempt(Base):
    """One try at delivering a file: the names used, bytes written, outcome and error."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "number"),
        CheckConstraint(f"outcome IS NULL OR {_in('outcome', DELIVERY_OUTCOMES)}", name="outcome"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(Id, ForeignKey("deliveries.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    upload_name: Mapped[str | None] = mapped_column(String(255), default=None)  # temporary (or final) name written
    remote_name: Mapped[str] = mapped_column(String(255))  # final name aimed at
    bytes_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)  # NULL while in flight (or crashed)
    error: Mapped[str | None] = mapped_column(String(1000), default=None)


class InboundFile(Base):
    """A file fetched from the bank's outbound folder. `content_key` (= sha256) is set on the first
    row with that content and NULL on later copies (state 'duplicate'): the unique constraint makes
    one content one processable file. `(source, remote_name, remote_size, remote_mtime)` is what a
    listing shows: a file seen before is not downloaded again."""

    __tablename__ = "inbound_files"
    __table_args__ = (
        UniqueConstraint("source", "remote_name", "remote_size", "remote_mtime"),
        UniqueConstraint("content_key"),
        UniqueConstraint("local_name"),
        CheckConstraint(_in("state", INBOUND_STATES), name="state"),
        CheckConstraint(
            "(state = 'duplicate' AND content_key IS NULL AND duplicate_of_id IS NOT NULL)"
            " OR (state <> 'duplicate' AND content_key IS NOT NULL AND content_key = sha256"
            " AND duplicate_of_id IS NULL AND local_name IS NOT NULL)",
            name="duplicate",
        ),
        Index("ix_inbound_files_state", "state"),
        Index("ix_inbound_files_sha256", "sha256"),
        CheckConstraint(_in("kind", INBOUND_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))  # transport address + inbound folder
    remote_name: Mapped[str] = mapped_column(String(255))
    remote_size: Mapped[int] = mapped_column(BigInteger)
    remote_mtime: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes received
    size: Mapped[int] = mapped_column(BigInteger)
    content_key: Mapped[str | None] = mapped_column(String(64), default=None)
    duplicate_of_id: Mapped[int | None] = mapped_column(Id, ForeignKey("inbound_files.id"), default=None)
    decrypted: Mapped[bool] = mapped_column(Boolean, default=False)  # PGP-decrypted into the inbox
    content_sha256: Mapped[str] = mapped_column(String(64))  # of the inbox file (= sha256 unless decrypted)
    local_name: Mapped[str | None] = mapped_column(String(255), default=None)  # name in the inbox
    archive_path: Mapped[str] = mapped_column(String(1000))  # local archive copy of the bytes received
    state: Mapped[str] = mapped_column(String(12), default="received")
    # 'returns' (returns, NOCs, acknowledgements) or 'statement' (a BAI2 report, `[bank] statements`;
    # migration 0012): each processor takes only its own kind
    kind: Mapped[str] = mapped_column(String(12), default="returns", server_default="returns")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    remote_archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    remote_archive_name: Mapped[str | None] = mapped_column(String(255), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    process_result: Mapped[str | None] = mapped_column(String(200), default=None)


# (end of delivery section)


# == Returns, NOCs, coverage standing, notices (issue 5; migration 0003_returns) =====================
# Bank return and NOC files are ledgered by content hash (return_files.sha256 unique): a file is
# applied once. Each return entry applied is a payment_returns row; NOC corrections and refusals
# are account_changes rows (old and new values masked); what could not be applied automatically is
# a review_items row. coverage_flags keeps every policy's standing with its history: the current
# row of a policy carries current_key = 'member|plan' (unique), older rows NULL. notices.event_key
# is unique: one member notice per event, whatever re-runs happen.
from sqlalchemy import Text  # noqa: E402  (kept inside this section; the imports above are shared)

RETURN_FILE_STATUSES = ("applied", "rejected")
RETURN_KINDS = ("return", "dishonored", "contested")
RETURN_STATUSES = ("applied", "dishonored")
NOC_STATUSES = ("applied", "unchanged", "noted", "refused", "rejected")
REVIEW_STATUSES = ("open", "resolved")
# at_risk (migration 0007): a premium's payment was returned and no replacement has cleared yet,
# before any delinquency status applies (reference §5.4).
from ..rules.coverage import COVERAGE_STATUSES  # noqa: E402  (the rules own the list)
# What a review item is about (migration 0007): an entry of a bank file (file + line), one of our
# payments, a line of a bank statement, or a name in the bank's folder.
REVIEW_SUBJECTS = ("file", "payment", "statement_line", "remote_name")
# account_not_validated (migration 0015): a prenote of the member's account was returned.
NOTICE_KINDS = ("returned_payment", "past_due_warning", "termination_warning", "coverage_not_started",
                "coverage_terminated", "autopay_amount_change", "account_not_validated")


class ReturnFile(Base):
    """One bank return/NOC file as processed: applied whole, or rejected whole with its errors."""

    __tablename__ = "return_files"
    __table_args__ = (
        UniqueConstraint("sha256"),
        CheckConstraint(_in("status", RETURN_FILE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(8))
    processed_on: Mapped[date] = mapped_column(Date)  # business date of the run that applied it
    file_creation_date: Mapped[date | None] = mapped_column(Date, default=None)
    returns: Mapped[int] = mapped_column(Integer, default=0)  # return entries in the file
    nocs: Mapped[int] = mapped_column(Integer, default=0)  # NOC entries in the file
    applied: Mapped[int] = mapped_column(Integer, default=0)  # returns and NOCs applied
    review_items: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[str | None] = mapped_column(Text, default=None)  # JSON list of located errors
    # JSON list of located warnings (migration 0011), as `errors`: what the reader warned of
    warnings: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the bank debits us for the file (migration 0012): the total of its return entries and the
    # day they settle (the return batches' settlement date); NULL on files applied before 0011.
    return_total_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    settlement_date: Mapped[date | None] = mapped_column(Date, default=None)


class PaymentReturn(Base):
    """A return entry applied to one of our payments (a return, or a dishonored or contested one)."""

    __tablename__ = "payment_returns"
    __table_args__ = (
        UniqueConstraint("return_file_id", "line"),
        CheckConstraint(_in("kind", RETURN_KINDS), name="kind"),
        CheckConstraint(_in("status", RETURN_STATUSES), name="status"),
        Index("ix_payment_returns_payment_id", "payment_id"),
        Index("ix_payment_returns_returned_on", "returned_on"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    return_file_id: Mapped[int] = mapped_column(Id, ForeignKey("return_files.id"))
    line: Mapped[int] = mapped_column(Integer)  # record number of the entry in the file
    payment_id: Mapped[int] = mapped_column(Id, ForeignKey("payments.id"))
    file_entry_id: Mapped[int] = mapped_column(Id, ForeignKey("file_entries.id"))
    original_trace_number: Mapped[str] = mapped_column(String(15))
    return_trace_number: Mapped[str] = mapped_column(String(15))
    return_code: Mapped[str] = mapped_column(String(3))
    return_title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(16))
    disposition: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="applied")
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    returned_on: Mapped[date] = mapped_column(Date)  # business date the return was processed
    action: Mapped[str] = mapped_column(String(200))  # what was done, in words
    retry_payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    addenda_information: Mapped[str] = mapped_column(String(44), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PaymentEvent(Base):
    """Why a payment changed state outside origination (returned, failed, reinstated, cancelled)."""

    __tablename__ = "payment_events"
    __table_args__ = (Index("ix_payment_events_payment_id", "payment_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    payment_id: Mapped[int] = mapped_column(Id, ForeignKey("payments.id"))
    event: Mapped[str] = mapped_column(String(24))
    old_state: Mapped[str] = mapped_column(String(10))
    new_state: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(200))
    occurred_on: Mapped[date] = mapped_column(Date)
    return_file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("return_files.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountChange(Base):
    """The audit record of a notification of change: old and new values, account numbers masked
    (last four only). Refused NOCs and NOCs we could not apply are recorded too."""

    __tablename__ = "account_changes"
    __table_args__ = (
        UniqueConstraint("return_file_id", "line"),
        CheckConstraint(_in("status", NOC_STATUSES), name="status"),
        Index("ix_account_changes_bank_account_id", "bank_account_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    return_file_id: Mapped[int] = mapped_column(Id, ForeignKey("return_files.id"))
    line: Mapped[int] = mapped_column(Integer)
    bank_account_id: Mapped[int | None] = mapped_column(Id, ForeignKey("bank_accounts.id"), default=None)
    payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    original_trace_number: Mapped[str] = mapped_column(String(15))
    noc_trace_number: Mapped[str] = mapped_column(String(15))
    change_code: Mapped[str] = mapped_column(String(3))
    refused_code: Mapped[str | None] = mapped_column(String(3), default=None)  # C61-C69
    status: Mapped[str] = mapped_column(String(10))
    old_routing_number: Mapped[str | None] = mapped_column(String(9), default=None)
    new_routing_number: Mapped[str | None] = mapped_column(String(9), default=None)
    old_account_masked: Mapped[str | None] = mapped_column(String(21), default=None)
    new_account_masked: Mapped[str | None] = mapped_column(String(21), default=None)
    old_account_type: Mapped[str | None] = mapped_column(String(8), default=None)
    new_account_type: Mapped[str | None] = mapped_column(String(8), default=None)
    old_holder_name: Mapped[str | None] = mapped_column(String(100), default=None)
    new_holder_name: Mapped[str | None] = mapped_column(String(100), default=None)
    # keyed hash of the account before the change: later returns of entries sent to the old
    # account still match it (a hash, never the number)
    old_account_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[str] = mapped_column(String(300), default="")
    applied_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewItem(Base):
    """Something a person must decide, never silently dropped: an entry of a bank file that was not
    applied automatically (unknown trace number, amount or account mismatch, a return code for
    review, ...), a payment held back or collected twice (`double_collection`: `payment_id` and
    `related_payment_id`), a bank statement line, a bad remote name. `subject` says which; an item
    about a bank file names its file and line. `dedupe_key`, when set, is unique: a re-run does not
    open the same item twice."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        CheckConstraint(_in("status", REVIEW_STATUSES), name="status"),
        CheckConstraint(_in("subject", REVIEW_SUBJECTS), name="subject"),
        CheckConstraint("subject <> 'file' OR (return_file_id IS NOT NULL AND line IS NOT NULL)", name="file_line"),
        Index("ix_review_items_status", "status"),
        Index("ix_review_items_payment_id", "payment_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str] = mapped_column(String(16), default="file")
    subject_ref: Mapped[str | None] = mapped_column(String(300), default=None)
    return_file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("return_files.id"), default=None)
    line: Mapped[int | None] = mapped_column(Integer, default=None)
    code: Mapped[str | None] = mapped_column(String(3), default=None)  # return or change code
    original_trace_number: Mapped[str | None] = mapped_column(String(15), default=None)
    trace_number: Mapped[str | None] = mapped_column(String(15), default=None)  # the bank entry's own trace
    amount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    expected_amount_cents: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    related_payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    dedupe_key: Mapped[str | None] = mapped_column(String(120), default=None)
    detail: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where in the bank file the item points, as the reader states a problem (line, columns, record,
    # field: `nacha.errors.Issue.to_json()` without the message), JSON; None when not about a field.
    location: Mapped[str | None] = mapped_column(String(200), default=None)

    def issue(self, file_name: str) -> Issue | None:
        """The item's location as an `Issue` of `file_name`, its message the item's detail."""
        if not self.location:
            return None
        where = json.loads(self.location)
        columns = where.get("columns")
        return Issue(file_name, where.get("line"), (columns[0], columns[1]) if columns else None,
                     where.get("record") or "file", where.get("field"), self.detail)


class CoverageFlag(Base):
    """A policy's (member + plan) coverage standing. A new row whenever the standing changes; the
    current row carries current_key = 'member|plan', superseded rows NULL (history kept)."""

    __tablename__ = "coverage_flags"
    __table_args__ = (
        UniqueConstraint("current_key"),
        CheckConstraint(_in("status", COVERAGE_STATUSES), name="status"),
        CheckConstraint("amount_owed_cents >= 0", name="amount_owed"),
        CheckConstraint(
            "current_key IS NULL OR current_key = member_id || '|' || plan_id", name="current_key"),
        Index("ix_coverage_flags_member_plan", "member_id", "plan_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(15))
    plan_id: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    reason_code: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(300))
    months_owed: Mapped[int] = mapped_column(Integer, default=0)
    amount_owed_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    deadline: Mapped[date | None] = mapped_column(Date, default=None)
    grace_month: Mapped[int] = mapped_column(SmallInteger, default=0)
    grace_months: Mapped[int] = mapped_column(SmallInteger, default=0)
    first_unpaid_month: Mapped[date | None] = mapped_column(Date, default=None)
    coverage_ends_on: Mapped[date | None] = mapped_column(Date, default=None)
    subsidy: Mapped[str] = mapped_column(String(16))
    assessed_on: Mapped[date] = mapped_column(Date)  # business date this standing was first found
    last_assessed_on: Mapped[date] = mapped_column(Date)  # last run that found it unchanged
    superseded_on: Mapped[date | None] = mapped_column(Date, default=None)
    current_key: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @staticmethod
    def key_for(member_id: str, plan_id: str) -> str:
        return f"{member_id}|{plan_id}"


class Notice(Base):
    """A member notice rendered for the print and email vendor. event_key is unique: never two
    notices for one event."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("event_key"),
        UniqueConstraint("prenote_id"),
        CheckConstraint(_in("kind", NOTICE_KINDS), name="kind"),
        Index("ix_notices_notice_date", "notice_date"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(24))
    member_id: Mapped[str] = mapped_column(String(15))
    plan_id: Mapped[str] = mapped_column(String(20))
    deadline: Mapped[date | None] = mapped_column(Date, default=None)
    amount_owed_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    file_name: Mapped[str] = mapped_column(String(300))  # relative to the notices folder
    notice_date: Mapped[date] = mapped_column(Date)
    payment_return_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payment_returns.id"), default=None)
    coverage_flag_id: Mapped[int | None] = mapped_column(Id, ForeignKey("coverage_flags.id"), default=None)
    # the returned prenote an `account_not_validated` notice is about (migration 0015; one notice each)
    prenote_id: Mapped[int | None] = mapped_column(Id, ForeignKey("prenotes.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Re-presentments are looked up by their original payment (how many retries it already has); a
# blocked account's pending payments and AutoPay mandates by the account.
Index("ix_payments_retry_of_id", Payment.__table__.c.retry_of_id,
      postgresql_where=text("retry_of_id IS NOT NULL"), sqlite_where=text("retry_of_id IS NOT NULL"))
Index("ix_payments_bank_account_id", Payment.__table__.c.bank_account_id)
# At most one open re-presentment (pending, in a file, sent) per original payment (migration 0007):
# two cannot coexist whatever the application does.
OPEN_RETRY_STATES = ("pending", "in_file", "sent")
Index("ux_payments_open_retry", Payment.__table__.c.retry_of_id, unique=True,
      postgresql_where=text("retry_of_id IS NOT NULL AND state IN ('pending', 'in_file', 'sent')"),
      sqlite_where=text("retry_of_id IS NOT NULL AND state IN ('pending', 'in_file', 'sent')"))
# Imports find an account a NOC corrected by the keyed hash of the number it had before.
Index("ix_account_changes_old_account_hash", AccountChange.__table__.c.old_account_hash)
Index("ix_autopay_mandates_bank_account_id", AutopayMandate.__table__.c.bank_account_id)

__all__ += [
    "AccountChange", "CoverageFlag", "Notice", "PaymentEvent", "PaymentReturn", "ReturnFile", "ReviewItem",
    "RETURN_FILE_STATUSES", "RETURN_KINDS", "RETURN_STATUSES", "NOC_STATUSES", "REVIEW_STATUSES",
    "COVERAGE_STATUSES", "NOTICE_KINDS", "REVIEW_SUBJECTS", "OPEN_RETRY_STATES",
]
# (end of returns section)


# == Nightly run ledger and lock (issue 6; migration 0004_runs) ========================================
# One `runs` row per nightly (or returns-poll) run and one `run_steps` row per step it ran or
# skipped: who ran it (host, pid), when, the outcome, counts and the error. `run_steps.done_key`
# = 'kind|business date|step' on a finished nightly step and NULL otherwise; being unique, a step
# is recorded done at most once per business date, which is what lets a re-run resume. The real
# mutual exclusion is batch/store/runlock.py (PostgreSQL advisory lock, flock beside a SQLite database);
# `run_locks` only describes the current holder ("held since ...") for the next contender and status.
RUN_KINDS = ("nightly", "returns")
# The ledger also records `achbatch originate` run by itself for an earlier business date allowed by
# --allow-earlier-date (kind 'originate', migration 0013): not a pipeline, no steps, no lock row.
RUN_LEDGER_KINDS = (*RUN_KINDS, "originate")
# running: in progress (or its process died: the next holder of the lock marks it 'crashed');
# done: every step done, no problem; problems: done, data problems reported (exit 1); failed: a
# step failed (exit 1 or 2); tempfail: the bank or database was unreachable (exit 75);
# interrupted: stopped by SIGTERM between steps (exit 75).
RUN_STATUSES = ("running", "done", "problems", "failed", "tempfail", "interrupted", "crashed")
# skipped: done by an earlier run of the same business date; not_run: the run stopped before it;
# unavailable: the service it calls is not installed in this build.
STEP_STATUSES = ("running", "done", "skipped", "failed", "tempfail", "unavailable", "not_run", "crashed")


class Run(Base):
    """One run of the nightly pipeline (or of the morning returns poll)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("kind", RUN_LEDGER_KINDS), name="kind"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_runs_kind_business_date", "kind", "business_date"),
        Index("ix_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    business_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="running")
    exit_code: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    summary: Mapped[str | None] = mapped_column(String(1000), default=None)  # the one-line summary
    counts: Mapped[str | None] = mapped_column(Text, default=None)  # JSON: totals of the run
    error: Mapped[str | None] = mapped_column(Text, default=None)


class RunStep(Base):
    """One step of a run: start, end, status, counts (JSON) and the error, if any."""

    __tablename__ = "run_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "step"),
        UniqueConstraint("done_key"),
        CheckConstraint(_in("status", STEP_STATUSES), name="status"),
        CheckConstraint("done_key IS NULL OR status = 'done'", name="done_key"),
        Index("ix_run_steps_kind_business_date_step", "kind", "business_date", "step"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id"))
    kind: Mapped[str] = mapped_column(String(12))
    business_date: Mapped[date] = mapped_column(Date)
    step: Mapped[str] = mapped_column(String(24))
    position: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(12), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    counts: Mapped[str | None] = mapped_column(Text, default=None)  # JSON {name: integer}
    note: Mapped[str] = mapped_column(String(1000), default="")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    done_key: Mapped[str | None] = mapped_column(String(64), default=None)

    @staticmethod
    def key_for(kind: str, business_date: date, step: str) -> str:
        return f"{kind}|{business_date.isoformat()}|{step}"


class RunLockHolder(Base):
    """Who holds (or last held) a run lock, for messages and `achbatch status`. Informational: the
    lock itself is the advisory lock or flock of batch/store/runlock.py, which dies with its process."""

    __tablename__ = "run_locks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"), default=None)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


__all__ += ["Run", "RunStep", "RunLockHolder", "RUN_KINDS", "RUN_LEDGER_KINDS", "RUN_STATUSES", "STEP_STATUSES"]
# (end of runs section)


# == The review queue (issue 15; migration 0009_review_resolutions) =================================
# A person's decision on a review item is one review_resolutions row (unique per item: an item is
# resolved once); the bytes of a bank file that opened review items are kept encrypted in
# return_file_contents, so the entry can be read again when a person decides it.
REVIEW_ACTIONS = ("apply", "dismiss")


class ReviewResolution(Base):
    """Who resolved a review item, when, how (`apply` to a payment a person named, or `dismiss`),
    with their note, whether `--force` overrode an amount or account mismatch (`overridden` says
    which), and the state before and after (JSON text)."""

    __tablename__ = "review_resolutions"
    __table_args__ = (
        UniqueConstraint("review_item_id"),
        CheckConstraint(_in("action", REVIEW_ACTIONS), name="action"),
        CheckConstraint("action = 'apply' OR (payment_id IS NULL AND NOT forced)", name="apply_only"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    review_item_id: Mapped[int] = mapped_column(Id, ForeignKey("review_items.id"))
    action: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(1000))
    resolved_by: Mapped[str] = mapped_column(String(100))
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    business_date: Mapped[date] = mapped_column(Date)
    payment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("payments.id"), default=None)
    # `apply --prenote ID`: the prenote a person matched the bank's entry to (migration 0015)
    prenote_id: Mapped[int | None] = mapped_column(Id, ForeignKey("prenotes.id"), default=None)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    overridden: Mapped[str | None] = mapped_column(String(300), default=None)
    before_state: Mapped[str] = mapped_column(Text)
    after_state: Mapped[str] = mapped_column(Text)


class ReturnFileContent(Base):
    """The encrypted bytes of a bank return/NOC file that opened review items."""

    __tablename__ = "return_file_contents"

    return_file_id: Mapped[int] = mapped_column(Id, ForeignKey("return_files.id", ondelete="CASCADE"),
                                                primary_key=True)
    content_enc: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(8), default=_key_id_of("content_enc"), index=True)

    @validates("content_enc")
    def _set_key_id(self, _name: str, blob: bytes) -> bytes:
        self.key_id = Keyring.key_id_of(blob)
        return blob

__all__ += ["REVIEW_ACTIONS", "ReviewResolution", "ReturnFileContent"]


# == The bank's BAI2 statements (issue 15; migration 0012_bai2_statements) ==========================
STATEMENT_DIRECTIONS = ("credit", "debit")


class StatementFile(Base):
    """One BAI2 report reconciled (`achbatch reconcile bank`, nightly step bank_statement): read
    whole or rejected whole (a rejected file is not recorded). `sha256` unique: processed once."""

    __tablename__ = "statement_files"
    __table_args__ = (UniqueConstraint("sha256"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(500))
    sender_id: Mapped[str] = mapped_column(String(40))
    bank_file_id: Mapped[str] = mapped_column(String(40))  # the 01 record's file identification number
    created_on: Mapped[date] = mapped_column(Date)
    as_of_date: Mapped[date] = mapped_column(Date)  # the latest as-of date of its groups
    final: Mapped[bool] = mapped_column(Boolean)  # a final prior-day report (matched); else only kept
    processed_on: Mapped[date] = mapped_column(Date)
    lines: Mapped[int] = mapped_column(Integer)  # statement_lines kept (mapped ACH type codes)
    matched: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer)  # expected settlements the bank did not post
    unexplained: Mapped[int] = mapped_column(Integer)  # lines posted that nothing of ours explains
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StatementLine(Base):
    """A transaction detail (16 record) of a mapped ACH type code, and what it was matched to: one
    of our NACHA files (a settlement credit) or a return file (a return settlement debit); each of
    ours is matched at most once. The account is kept as its last four digits only."""

    __tablename__ = "statement_lines"
    __table_args__ = (
        UniqueConstraint("statement_file_id", "line"),
        UniqueConstraint("nacha_file_id"),
        UniqueConstraint("return_file_id"),
        CheckConstraint(_in("direction", STATEMENT_DIRECTIONS), name="direction"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    statement_file_id: Mapped[int] = mapped_column(Id, ForeignKey("statement_files.id"))
    line: Mapped[int] = mapped_column(Integer)  # line of the 16 record in the file
    account_last4: Mapped[str] = mapped_column(String(4))
    as_of_date: Mapped[date] = mapped_column(Date)
    type_code: Mapped[str] = mapped_column(String(3))
    direction: Mapped[str] = mapped_column(String(6))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    bank_reference: Mapped[str] = mapped_column(String(100))
    customer_reference: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(String(200))
    nacha_file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("nacha_files.id"), default=None)
    return_file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("return_files.id"), default=None)
    match_basis: Mapped[str | None] = mapped_column(String(40), default=None)


__all__ += ["INBOUND_KINDS", "STATEMENT_DIRECTIONS", "StatementFile", "StatementLine"]


# == WEB debit account validation (issue 16; migration 0014) =========================================
# A prenote is a zero-dollar entry (28 checking, 38 savings) with the SEC code the live debits will
# use, sent to validate an account before its first WEB debit (NACHA WEB rule, 2021). States (10
# characters at most): pending (to go in the next file), in_file (built; `settlement_date` is the
# file's effective entry date and `valid_from` the banking day live entries may follow), validated
# (no return by valid_from), corrected (a NOC corrected the account: validated), returned (the
# account is blocked with the return's reason), cancelled (no longer needed before it was sent).
PRENOTE_STATES = ("pending", "in_file", "validated", "corrected", "returned", "cancelled")
PRENOTE_OPEN_STATES = ("pending", "in_file")


class Prenote(Base):
    """One prenote of a bank account (see PRENOTE_STATES)."""

    __tablename__ = "prenotes"
    __table_args__ = (
        CheckConstraint(_in("state", PRENOTE_STATES), name="state"),
        CheckConstraint(_in("sec_code", SEC_CODES), name="sec_code"),
        CheckConstraint(_in("payment_type_code", PAYMENT_TYPE_CODES), name="payment_type_code"),
        Index("ix_prenotes_bank_account_id", "bank_account_id"),
        Index("ix_prenotes_state", "state"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    bank_account_id: Mapped[int] = mapped_column(Id, ForeignKey("bank_accounts.id"))
    member_id: Mapped[str] = mapped_column(String(15))  # the entry's Individual Identification
    sec_code: Mapped[str] = mapped_column(String(3))
    payment_type_code: Mapped[str] = mapped_column(String(1), default="")
    reason: Mapped[str] = mapped_column(String(100))  # why: first use by a mandate or a payment
    state: Mapped[str] = mapped_column(String(10), default="pending")
    requested_on: Mapped[date] = mapped_column(Date)  # business date it was asked for
    file_date: Mapped[date | None] = mapped_column(Date, default=None)
    settlement_date: Mapped[date | None] = mapped_column(Date, default=None)
    valid_from: Mapped[date | None] = mapped_column(Date, default=None)
    resolved_on: Mapped[date | None] = mapped_column(Date, default=None)
    return_code: Mapped[str | None] = mapped_column(String(3), default=None)  # return or change code
    return_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    return_file_id: Mapped[int | None] = mapped_column(Id, ForeignKey("return_files.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


__all__ += ["Prenote", "PRENOTE_STATES", "PRENOTE_OPEN_STATES"]


# == Coverage exports to the enrollment system (issue 16; migration 0015) =============================
# `achbatch coverage export` (and the nightly's reports step) writes a CSV of the coverage standing
# changes since the last export. `coverage_exports`: one row per export (its business date, file,
# sha256, rows, and the highest flag id it looked at: the next export starts after it);
# `coverage_export_items`: which flag row went in which export, and as what change. A flag row goes
# out as new (reexport false) at most once (a unique partial index); `--since` puts changes already
# sent in again, marked reexport.
from ..rules.coverage import COVERAGE_CHANGES as COVERAGE_EXPORT_CHANGES  # noqa: E402  (the rules own the list)


class CoverageExport(Base):
    """One export of coverage standing changes to the enrollment system."""

    __tablename__ = "coverage_exports"
    __table_args__ = (
        CheckConstraint("row_count >= 0 AND new_count >= 0 AND new_count <= row_count", name="counts"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    business_date: Mapped[date] = mapped_column(Date)
    since_date: Mapped[date | None] = mapped_column(Date, default=None)  # --since DATE (or the run's date)
    since_run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"), default=None)  # --since RUN
    path: Mapped[str] = mapped_column(String(1000))  # where it was written; '-': standard output
    sha256: Mapped[str] = mapped_column(String(64), default="")
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    new_count: Mapped[int] = mapped_column(Integer, default=0)  # rows exported for the first time
    through_flag_id: Mapped[int | None] = mapped_column(Id, default=None)  # highest coverage_flags.id looked at
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CoverageExportItem(Base):
    """One coverage standing change (a coverage_flags row) in one export."""

    __tablename__ = "coverage_export_items"
    __table_args__ = (
        CheckConstraint(_in("change", COVERAGE_EXPORT_CHANGES), name="change"),
        Index("ix_coverage_export_items_export_id", "export_id"),
        Index("ix_coverage_export_items_flag_id", "flag_id"),
        Index("ux_coverage_export_items_first", "flag_id", unique=True,
              postgresql_where=text("NOT reexport"), sqlite_where=text("NOT reexport")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    export_id: Mapped[int] = mapped_column(Id, ForeignKey("coverage_exports.id"))
    flag_id: Mapped[int] = mapped_column(Id, ForeignKey("coverage_flags.id"))
    change: Mapped[str] = mapped_column(String(12))
    reexport: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ix_coverage_flags_assessed_on", CoverageFlag.__table__.c.assessed_on)

__all__ += ["COVERAGE_EXPORT_CHANGES", "CoverageExport", "CoverageExportItem"]
