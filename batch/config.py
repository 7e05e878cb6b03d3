"""Settings as validated pydantic models, one per TOML section (DESIGN.md "Settings sections and keys").
No file or environment reading here: `jobs/settings.py` loads and merges, this module validates.

Every key has a default (documented in config/achbatch.example.toml) except secrets. Money keys are
dollars with at most two decimals (TOML numbers are read as Decimal, never float) and are exposed
as integer cents. Paths are relative to the working directory unless absolute; the helpers at the
bottom of `Settings` resolve the data folder layout of the contract.
"""
from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from nacha.routing import routing_problem

__all__ = [
    "BankSettings", "CompanySettings", "CoverageSettings", "DatabaseSettings", "OriginationSettings",
    "PathsSettings", "ScheduleSettings", "SecuritySettings", "Settings", "SECTIONS",
    "dollars_to_cents",
]

# NACHA Entry Detail amount is 10 digits of cents (ref §1.4): the largest amount a file can carry
# per entry; the file control total is 12 digits.
_MAX_FILE_TOTAL_CENTS = 999_999_999_999
_NACHA_TEXT = re.compile(r"^[\x20-\x7e]*$")  # NACHA character set: printable ASCII (ref §1.1)
_MONEY = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")


def dollars_to_cents(value: object, *, what: str = "amount") -> int:
    """Dollars (int, Decimal or str with at most two decimals) to integer cents, without floats."""
    if isinstance(value, bool) or isinstance(value, float):
        # float never: 0.1 + 0.2 is not money. TOML numbers arrive as Decimal (see jobs/settings.py).
        raise ValueError(f"{what} must be written as dollars with at most two decimals, e.g. \"250.00\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative")
        return value * 100
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"{what} must be dollars, got {type(value).__name__}")
    if not _MONEY.match(text):
        raise ValueError(f"{what} must be dollars with at most two decimals, got {text!r}")
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _money_field(v: object, what: str) -> Decimal:
    cents = dollars_to_cents(v, what=what)
    return Decimal(cents) / 100


class _Section(BaseModel):
    # Unknown keys are errors (a typo must not silently fall back to a default); frozen so a loaded
    # configuration cannot drift while a run is in progress.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_routing(value: str | None, *, optional: bool = False) -> str | None:
    if value is None or (optional and value == ""):
        return None
    problem = routing_problem(value)
    if problem:
        raise ValueError(f"not a valid ABA routing number ({problem})")
    return value


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'America/New_York')") from None
    return name


def _check_text(value: str, max_len: int) -> str:
    if not _NACHA_TEXT.match(value):
        raise ValueError("only printable ASCII characters are allowed in NACHA fields")
    if len(value) > max_len:
        raise ValueError(f"at most {max_len} characters, got {len(value)}")
    return value


class DatabaseSettings(_Section):
    # Empty: SQLite at <paths.data_dir>/achbatch.db (the embedded default).
    url: str = ""


class CompanySettings(_Section):
    """The Originator (us) and the ODFI (our bank). Defaults are demo values for the embedded mode;
    production replaces all of them with what the ODFI assigned."""

    name: str = "HEALTH CONNECTOR"  # Company Name, batch header (16)
    company_id: str = "9000000001"  # Company Identification, batch header (10)
    immediate_origin: str = "9000000001"  # File Header Immediate Origin (10)
    immediate_destination: str = "011000015"  # File Header Immediate Destination: the ODFI routing
    destination_name: str = "FEDERAL RESERVE BANK"  # Immediate Destination Name (23)
    odfi_routing: str = "011000015"  # Originating DFI: first 8 digits start every trace number
    settlement_routing: str | None = None  # our settlement account (balanced files only)
    settlement_account: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        return _check_text(v, 16)

    @field_validator("destination_name")
    @classmethod
    def _destination_name(cls, v: str) -> str:
        return _check_text(v, 23)

    @field_validator("company_id", "immediate_origin")
    @classmethod
    def _ten(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty")
        return _check_text(v, 10)

    @field_validator("immediate_destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        # Printed as a blank plus the 9-digit routing number; accept either spelling.
        return _check_routing(v[1:] if len(v) == 10 and v[0] == " " else v)

    @field_validator("odfi_routing")
    @classmethod
    def _odfi(cls, v: str) -> str:
        return _check_routing(v)

    @field_validator("settlement_routing")
    @classmethod
    def _settlement_routing(cls, v: str | None) -> str | None:
        return _check_routing(v, optional=True)

    @field_validator("settlement_account")
    @classmethod
    def _settlement_account(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not (v.isascii() and v.isdigit() and 4 <= len(v) <= 17):
            raise ValueError("an account number is 4 to 17 digits")
        return v


class OriginationSettings(_Section):
    timezone: str = "America/New_York"
    # The ODFI's deadline (local time) for a file to be delivered for next-banking-day settlement.
    file_cutoff: time = time(21, 0)
    autopay_lead_days: int = Field(default=0, ge=0, le=20)
    balanced: bool = False
    max_entries_per_file: int = Field(default=250_000, ge=1, le=99_999_999)
    max_dollars_per_file: Decimal = Decimal("250000000.00")
    retry_delay_banking_days: int = Field(default=2, ge=1, le=30)
    # An AutoPay pull above the amount its mandate authorized needs a notice to the member 10
    # calendar days before settlement; when that is no longer possible: "hold" (no pull, a review
    # item) or "send" (pulled, the notice goes out now: an explicit acceptance of the risk).
    amount_change_late: Literal["hold", "send"] = "hold"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_timezone(v)

    @field_validator("max_dollars_per_file", mode="before")
    @classmethod
    def _max_dollars(cls, v: object) -> Decimal:
        d = _money_field(v, "max_dollars_per_file")
        if d <= 0:
            raise ValueError("must be more than 0")
        if d * 100 > _MAX_FILE_TOTAL_CENTS:
            raise ValueError("exceeds what a NACHA file control total can carry ($9,999,999,999.99)")
        return d

    @property
    def max_cents_per_file(self) -> int:
        return int(self.max_dollars_per_file * 100)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class SecuritySettings(_Section):
    """Where the account-number key comes from. Secrets: no defaults. With neither set, a key is
    created at <paths.data_dir>/keys/account.key on first use (embedded mode)."""

    key_file: Path | None = None
    key: SecretStr | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _empty_key(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("key_file", mode="before")
    @classmethod
    def _empty_file(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _one_source(self) -> "SecuritySettings":
        if self.key is not None and self.key_file is not None:
            raise ValueError("set security.key or security.key_file, not both")
        return self


class BankSettings(_Section):
    """Bank transport (used by `achbatch send` and `achbatch returns fetch`; batch/bank/transport.py).

    There is deliberately no key that turns host key checking off: an SFTP bank's host key must be
    pinned (`known_hosts` or `pinned_host_key`) and an unknown or changed key is refused."""

    transport: Literal["folder", "sftp"] = "folder"
    folder: Path | None = None  # folder transport; empty: <paths.data_dir>/bank
    host: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    username: str | None = None
    private_key: Path | None = None
    # Passphrase of the private key: from a file (mode 0600) or ACHBATCH_BANK__PASSPHRASE; never
    # written in the settings file. Empty: the key is not encrypted.
    passphrase_file: Path | None = None
    passphrase: SecretStr | None = None
    known_hosts: Path | None = None  # the bank's pinned host key; unknown or changed keys are refused
    # The bank's host key given directly instead of (or on top of) known_hosts: an OpenSSH public key
    # line ("ssh-ed25519 AAAA...") or a fingerprint ("SHA256:...").
    pinned_host_key: str | None = None
    outbound_dir: str = "incoming"  # remote folder we upload to
    inbound_dir: str = "outgoing"  # remote folder we download returns and NOCs from
    archive_dir: str | None = None  # remote folder downloaded files are moved to; empty: left in place
    inbound_pattern: str = "*"  # only inbound file names matching this shell pattern are fetched
    # BAI2 statements: names in the inbound folder matching this shell pattern are the bank's BAI2
    # reports (fetched by the nightly step bank_statement, never by the returns fetch); empty: none.
    statements: str = ""
    # BAI2 detail type codes of the bank's ACH settlement credits (a sent file's total) and of its ACH
    # return settlement debits (a return file's total); summary codes are refused.
    statement_credit_codes: list[str] = Field(default_factory=lambda: ["165", "166", "169"])
    statement_return_codes: list[str] = Field(default_factory=lambda: ["468"])
    rename_allowed: bool = True  # upload under a temporary name, then rename
    # Remote name of an outbound file: {date} the file date (YYYYMMDD, or a strftime spec such as
    # {date:%y%m%d}), {modifier} the File ID Modifier, {seq} the upload number of that file (1, 2,
    # ...; {seq:03d} pads it). Required to contain {seq} when rename_allowed = false.
    file_name_pattern: str = "ACH-{date}-{modifier}.ach"
    # Optional: also read our own upload back and compare its sha256 before the rename (the bank
    # must allow reads). Not needed for safety: every write's status is checked, and a file found
    # under our name at the bank is always read back and confirmed only by its sha256.
    verify_read_back: bool = False
    connect_timeout: float = Field(default=30.0, gt=0, le=600)  # seconds: TCP connect, SSH handshake, login
    operation_timeout: float = Field(default=120.0, gt=0, le=3600)  # seconds without progress on the connection
    retry_attempts: int = Field(default=4, ge=1, le=50)  # tries per file when the bank is unreachable
    retry_wait_initial: float = Field(default=5.0, ge=0, le=3600)  # seconds before the first retry (then doubled)
    retry_wait_max: float = Field(default=120.0, ge=0, le=3600)  # longest wait between two tries
    pgp_recipient: str | None = None  # encrypt outbound files to this PGP key; empty: no PGP
    pgp_home: Path | None = None  # GnuPG home folder (keys); empty: <paths.data_dir>/gnupg
    pgp_decrypt_inbound: bool = False  # decrypt inbound files with our own PGP key
    pgp_passphrase_file: Path | None = None  # passphrase of our PGP key (a file, mode 0600); empty: none

    @field_validator("folder", "private_key", "known_hosts", "host", "username", "archive_dir",
                     "pgp_recipient", "pgp_home", "pgp_passphrase_file", "passphrase_file", "pinned_host_key",
                     mode="before")
    @classmethod
    def _empty(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("passphrase", mode="before")
    @classmethod
    def _empty_secret(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("statement_credit_codes")
    @classmethod
    def _credit_codes(cls, v: list[str]) -> list[str]:
        from batch.rules.bank_statement import check_type_codes

        return check_type_codes(v, "credit")

    @field_validator("statement_return_codes")
    @classmethod
    def _return_codes(cls, v: list[str]) -> list[str]:
        from batch.rules.bank_statement import check_type_codes

        return check_type_codes(v, "debit")

    @field_validator("outbound_dir", "inbound_dir")
    @classmethod
    def _folder(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty (use \".\" for the login folder)")
        return v

    @field_validator("pinned_host_key")
    @classmethod
    def _pin(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from batch.rules.names import parse_pin  # the one parser of pins

        parse_pin(v)  # raises ValueError naming the problem
        return v

    @field_validator("file_name_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        from batch.rules.names import check_name_pattern

        check_name_pattern(v)
        return v

    @model_validator(mode="after")
    def _sftp_complete(self) -> "BankSettings":
        if self.transport == "sftp":
            missing = [f"bank.{k}" for k in ("host", "username", "private_key") if getattr(self, k) is None]
            if self.known_hosts is None and self.pinned_host_key is None:
                missing.append("bank.known_hosts (or bank.pinned_host_key)")
            if missing:
                raise ValueError("transport 'sftp' needs " + ", ".join(missing))
        if not self.rename_allowed and "{seq" not in self.file_name_pattern:
            raise ValueError("bank.rename_allowed = false needs {seq} in bank.file_name_pattern: without rename "
                             "every upload goes to a new final name")
        if self.passphrase is not None and self.passphrase_file is not None:
            raise ValueError("set bank.passphrase or bank.passphrase_file, not both")
        if self.statements and self.statements == self.inbound_pattern:
            raise ValueError("bank.statements must differ from bank.inbound_pattern: the returns fetch leaves the "
                             "statements' names alone, so the same pattern would fetch nothing for returns")
        if set(self.statement_credit_codes) & set(self.statement_return_codes):
            raise ValueError("bank.statement_credit_codes and bank.statement_return_codes share a code")
        if self.retry_wait_max < self.retry_wait_initial:
            raise ValueError("bank.retry_wait_max must be at least bank.retry_wait_initial")
        return self


class CoverageSettings(_Section):
    grace_months_subsidized: int = Field(default=3, ge=0, le=12)  # APTC / ConnectorCare (45 CFR 156.270)
    grace_months_unsubsidized: int = Field(default=0, ge=0, le=12)  # state rule (956 CMR 12.12(2))
    # An unpaid balance at or below this many dollars still counts as paid in full (45 CFR
    # 155.400(g) allows a small fixed-dollar threshold; the Connector requires full payment: 0).
    payment_threshold: Decimal = Decimal("0.00")

    @field_validator("payment_threshold", mode="before")
    @classmethod
    def _threshold(cls, v: object) -> Decimal:
        return _money_field(v, "payment_threshold")

    @property
    def payment_threshold_cents(self) -> int:
        return int(self.payment_threshold * 100)


class ValidationSettings(_Section):
    """WEB debit account validation (NACHA WEB rule, in force since 2021-03-19: the first use of an
    account number, and each change to it, is validated). docs/validation.md."""

    # prenote: a zero-dollar prenote entry of each WEB account before its first live debit;
    # none: no validation by this system (the enrollment system validates accounts itself).
    method: Literal["prenote", "none"] = "prenote"
    # hold: a first-use WEB payment waits (state held) until its account is validated; send: it goes
    # out at once, an explicit acceptance of the risk recorded on each payment sent that way.
    first_use: Literal["hold", "send"] = "hold"
    # live entries may follow a prenote on this banking day after its settlement date (NACHA: 3)
    prenote_wait_banking_days: int = Field(default=3, ge=3, le=30)


_DURATION_PART = re.compile(r"(\d+)\s*(h|min|m|s)")


def parse_duration(value: object, *, what: str = "duration") -> int:
    """Seconds from "3h", "90min" (or "90m"), "2h30min", "45s", or a bare number of minutes; at
    least one minute, at most a day."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: give a duration such as \"3h\" or \"90min\"")
    if isinstance(value, (int, Decimal)) and value == int(value):
        seconds = int(value) * 60
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        if text.isdigit():
            seconds = int(text) * 60
        else:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"{what}: {value!r} is not a duration such as \"3h\", \"90min\" or \"2h30min\"")
            seconds = sum(int(n) * {"h": 3600, "min": 60, "m": 60, "s": 1}[u] for n, u in parts)
    else:
        raise ValueError(f"{what}: give a duration such as \"3h\" or \"90min\"")
    if not 60 <= seconds <= 86400:
        raise ValueError(f"{what}: between 1 minute and 24 hours, got {value!r}")
    return seconds


class ScheduleSettings(_Section):
    """The built-in scheduler (`achbatch schedule`) and the rendered systemd timers / crontab."""

    nightly_at: time = time(20, 0)
    timezone: str = "America/New_York"
    # One time or several ("06:00" or ["06:00", "13:00"]; the environment takes "06:00,13:00").
    returns_poll_at: tuple[time, ...] = (time(6, 0),)
    # How late the built-in scheduler may still start a run it missed (process paused, host busy).
    misfire_grace_minutes: int = Field(default=60, ge=1, le=720)
    # The longest a run may take: the systemd units' TimeoutStartSec (`achbatch deploy`), and
    # `achbatch status` flags a run lock held longer than this. "3h", "90min", "2h30min", "45s"; a
    # bare number is minutes.
    run_timeout: int = 3 * 3600  # seconds

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_timezone(v)

    @field_validator("run_timeout", mode="before")
    @classmethod
    def _run_timeout(cls, v: object) -> int:
        return parse_duration(v, what="run_timeout")

    @property
    def run_timeout_systemd(self) -> str:
        """run_timeout as a systemd time span ("3h", "90min", "45s")."""
        t = self.run_timeout
        return f"{t // 3600}h" if t % 3600 == 0 else f"{t // 60}min" if t % 60 == 0 else f"{t}s"

    @field_validator("returns_poll_at", mode="before")
    @classmethod
    def _poll_times(cls, v: object) -> object:
        if isinstance(v, str):
            v = [part.strip() for part in v.split(",") if part.strip()]
        elif isinstance(v, time):
            v = [v]
        if isinstance(v, (list, tuple)) and not v:
            raise ValueError("give at least one time, e.g. \"06:00\"")
        return v

    @field_validator("returns_poll_at")
    @classmethod
    def _sorted_unique(cls, v: tuple[time, ...]) -> tuple[time, ...]:
        return tuple(sorted(set(v)))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PathsSettings(_Section):
    data_dir: Path = Path("achbatch-data")
    reports_dir: Path | None = None  # empty: <data_dir>/reports
    metrics_file: Path | None = None  # empty: <data_dir>/metrics.prom
    # A folder of member-notice templates overriding the ones shipped in batch/collect/templates/notices
    # (same file names, e.g. returned_payment.html.j2); empty: the shipped templates only.
    notices_templates: Path | None = None
    # A folder the enrollment system and the portal drop their CSV exports into; the nightly run
    # imports premiums*.csv, autopay*.csv and payments*.csv from it (in that order) and moves each
    # file imported to <data_dir>/archive/imported/. Empty: the nightly run imports nothing.
    drop_dir: Path | None = None

    @field_validator("reports_dir", "metrics_file", "notices_templates", "drop_dir", mode="before")
    @classmethod
    def _empty(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("data_dir", mode="before")
    @classmethod
    def _nonempty(cls, v: object) -> object:
        if v == "":
            raise ValueError("must not be empty")
        return v


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    company: CompanySettings = CompanySettings()
    origination: OriginationSettings = OriginationSettings()
    security: SecuritySettings = SecuritySettings()
    bank: BankSettings = BankSettings()
    coverage: CoverageSettings = CoverageSettings()
    validation: ValidationSettings = ValidationSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    paths: PathsSettings = PathsSettings()

    @model_validator(mode="after")
    def _balanced_needs_settlement(self) -> "Settings":
        c = self.company
        if self.origination.balanced and (c.settlement_routing is None or c.settlement_account is None):
            raise ValueError("origination.balanced = true needs company.settlement_routing and "
                             "company.settlement_account")
        return self

    # -- the data folder of the contract (DESIGN.md "Data folder") ---------------------------------
    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'achbatch.db'}"

    @property
    def default_key_file(self) -> Path:
        return self.data_dir / "keys" / "account.key"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def inbox_dir(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def notices_dir(self) -> Path:
        return self.data_dir / "notices"

    @property
    def reports_dir(self) -> Path:
        return self.paths.reports_dir or self.data_dir / "reports"

    @property
    def metrics_file(self) -> Path:
        return self.paths.metrics_file or self.data_dir / "metrics.prom"

    @property
    def bank_folder(self) -> Path:
        return self.bank.folder or self.data_dir / "bank"


# Section name -> model, in file order (used by the loader and the example-file test).
SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation for name, field in Settings.model_fields.items()  # type: ignore[misc]
}
