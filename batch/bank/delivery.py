"""Sending built NACHA files to the bank, confirmed and exactly once, with the delivery ledger.

Each file moves built -> sending -> sent (`nacha_files.state`), with a `deliveries` row (where, the
final remote name, the exact payload's sha256 and size, attempts, the last error, when confirmed)
and one `delivery_attempts` row per try. The payload is always the stored bytes of origination
(`stored_bytes`: checked against the recorded sha256, never rebuilt), or their PGP encryption made
once and kept, so that every attempt sends identical bytes.

One try at one file:
  1. list the remote folder; a file under the final name is ours only when its content is proven
     ours: read back, its sha256 equals the payload's (OpenSSH offers no server-side hash). Then it
     was delivered by an earlier try whose confirmation was lost: it is confirmed, not sent again.
     Any other file there (another size, other bytes, or one that cannot be read back) is a
     conflict: nothing is sent or marked sent, and the message says what differs (exit 2). Our
     stale temporary uploads are removed;
  2. record the attempt (committed, state 'sending', marked ambiguous) before writing anything;
  3. upload to a temporary name (a dot name the bank ignores), check the remote size (and hash),
     then posix-rename it to the final name; banks that forbid rename get the file directly under
     a final name unique to this upload (`{seq}`), partial uploads being removed on the next try;
  4. confirm: archive a local copy (mode 0600), commit 'sent', drop the outbox copy.
A connection lost in step 3 leaves the outcome unknown; the retry (tenacity, exponential backoff)
reconnects and starts again at step 1. A file is confirmed at most once: the unique constraints and
the listing, not the scheduler, keep it so. Runs are serialised by a lock (PostgreSQL advisory
lock; a lock file beside a SQLite database).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Callable, Iterator, Mapping

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, defer, sessionmaker

from ..rules.names import escape_name, remote_name_problem
from ..store.crypto import Keyring
from ..store.fsutil import TMP_PREFIX, file_sha256, private_dirs
from ..store.fsutil import fsync_dir as _fsync_dir
from ..store.models import Delivery, DeliveryAttempt, FileEntry, NachaFile, Payment, utcnow
from ..store.filebytes import StoredBytesError, stored_bytes
from .pgp import Pgp, PgpError
from .transport import (
    BankUnreachable,
    ConnectionLost,
    RemoteEntry,
    RemoteRefused,
    RetryPolicy,
    Transport,
    TransportConfigError,
    TransportError,
    remote_file_name,
)

__all__ = ["AttemptFacts", "AttemptPlan", "DeliveryPolicy", "PendingFile", "SendResult", "SentFile",
           "pending_deliveries", "plan_attempt", "run_lock", "send_files"]

SEND_LOCK_KEY = 0x41434842_53454E44 & 0x7FFFFFFFFFFFFFFF  # "ACHBSEND"
# Rows are read for their state far more often than for their bytes: never load a PGP payload just
# to look at a state (a file's own bytes live in their own table, nacha_file_contents).
_LIGHT_DELIVERY = [defer(Delivery.pgp_payload)]
TEMP_SUFFIX = ".part"
_MAX_ERROR = 1000


@dataclass(frozen=True)
class DeliveryPolicy(RetryPolicy):
    outbound_dir: str
    name_pattern: str = "ACH-{date}-{modifier}.ach"
    rename_allowed: bool = True
    verify_read_back: bool = False

    @classmethod
    def from_settings(cls, bank) -> "DeliveryPolicy":
        return cls(bank.outbound_dir, bank.file_name_pattern, bank.rename_allowed, bank.verify_read_back,
                   **RetryPolicy.settings_of(bank))


@dataclass
class SentFile:
    file_id: int
    file_name: str
    file_date: date
    # sent | already_there (found at the bank, read back, ours) | confirmed_elsewhere (another run
    # confirmed it meanwhile) | refused | failed | conflict (another file under our name) | temporary
    # (the bank's disk full, or an unclassified upload failure) | unreachable | config | not_tried
    outcome: str
    size: int = 0  # payload bytes (what the bank receives)
    sha256: str = ""  # payload sha256
    remote_name: str | None = None
    attempts: int = 0
    pgp: bool = False
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome in ("sent", "already_there", "confirmed_elsewhere")


@dataclass
class SendResult:
    where: str
    files: list[SentFile] = field(default_factory=list)
    unreachable: str | None = None  # the bank could not be reached (after the retries)
    config_error: str | None = None  # settings problem (host key, login, folder, PGP key)
    temporary: str | None = None  # the bank could not take a file for now (disk full): retry later
    locked: bool = False  # another send holds the lock: nothing was done

    @property
    def delivered(self) -> list[SentFile]:
        return [f for f in self.files if f.delivered]

    @property
    def refused(self) -> list[SentFile]:
        return [f for f in self.files if f.outcome in ("refused", "failed")]

    @property
    def conflicts(self) -> list[SentFile]:
        """Files whose final name at the bank holds something not proven ours (exit 2)."""
        return [f for f in self.files if f.outcome == "conflict"]


# -- the run lock ------------------------------------------------------------------------------------

@contextmanager
def run_lock(sessions: sessionmaker[Session], name: str, key: int) -> Iterator[bool]:
    """Hold a lock named `name` for the whole block; yields False when another process holds it.
    PostgreSQL: a session advisory lock on its own connection (works across hosts). SQLite: an
    flock on a file beside the database (one host, which is all SQLite serves)."""
    engine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        yield True
        return
    path = Path(db).with_name(Path(db).name + f".{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- queries -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PendingFile:
    file_id: int
    file_name: str
    file_date: date
    state: str  # built | sending (an earlier upload may have reached the bank)


def pending_deliveries(sessions: sessionmaker[Session], file_date: date | None = None) -> list[PendingFile]:
    """Every built file not yet confirmed at the bank (of `file_date` when given), oldest first."""
    with sessions() as s:
        q = select(NachaFile.id, NachaFile.file_name, NachaFile.file_date, NachaFile.state).where(
            NachaFile.state != "sent")
        if file_date is not None:
            q = q.where(NachaFile.file_date == file_date)
        return [PendingFile(*r) for r in s.execute(q.order_by(NachaFile.file_date, NachaFile.file_id_modifier))]


# -- the service -------------------------------------------------------------------------------------

def send_files(
    sessions: sessionmaker[Session],
    keyring: Keyring,
    transport: Transport,
    policy: DeliveryPolicy,
    *,
    archive_dir: Path,
    outbox: Path | None = None,
    file_date: date | None = None,
    pgp: Pgp | None = None,
    transport_kind: str = "",
    on_step: Callable[[str, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> SendResult:
    """Deliver every built, unconfirmed file (only those of `file_date` when given).

    `on_step(step, file_name)` is called at 'sending' (attempt recorded), 'uploaded', 'verified',
    'renamed' and 'confirmed'; tests use it to crash the process there."""
    result = SendResult(where=f"{transport.where} {policy.outbound_dir}")
    with run_lock(sessions, "send", SEND_LOCK_KEY) as got:
        if not got:
            result.locked = True
            return result
        for tmp in (Path(archive_dir) / "sent").glob(TMP_PREFIX + "*"):  # archive copies of a run that crashed
            tmp.unlink(missing_ok=True)
        todo = pending_deliveries(sessions, file_date)
        if not todo:
            return result
        run = _SendRun(sessions, keyring, transport, policy, Path(archive_dir), outbox, pgp,
                       transport_kind or type(transport).__name__.replace("Transport", "").lower(),
                       on_step or (lambda _s, _n: None), sleep, log or (lambda _m: None))
        # Connect while the first file is read from the database and checked (a failure here is
        # ignored: the first try connects again and reports it).
        run.preconnect = _Background(_quiet_connect, transport)
        try:
            for f in todo:
                if result.unreachable or result.config_error or result.temporary:
                    result.files.append(SentFile(f.file_id, f.file_name, f.file_date, "not_tried"))
                    continue
                sf = run.deliver(f)
                result.files.append(sf)
                if sf.outcome == "unreachable":
                    result.unreachable = sf.error
                elif sf.outcome == "config":
                    result.config_error = sf.error
                elif sf.outcome == "temporary":
                    result.temporary = sf.error
        finally:
            if run.preconnect is not None:
                run.preconnect.join(raise_errors=False)
            transport.close()
        if result.unreachable or result.config_error or result.temporary:
            run.note_not_tried([f for f in result.files if f.outcome == "not_tried"],
                               result.unreachable or result.config_error or result.temporary)
    return result


# =============================================================================================
# What one attempt must do, given the remote listing (pure: no transport, no database)
# =============================================================================================

READ_BACK = "read_back"  # read the remote file's sha256 (plan.name), then decide again
CONFIRM = "confirm"  # our file is already there, its content read back and ours, as plan.name: confirm it
REFUSE = "refuse"  # plan.name is there, not proven ours: a conflict, never overwritten
UPLOAD = "upload"  # upload as plan.upload_name, to end as plan.name


@dataclass(frozen=True)
class AttemptFacts:
    """What an attempt knows before it writes anything: the remote folder's listing (name -> size),
    our payload's size and sha256, the bank's rules, the delivery's fixed final name (banks that
    allow rename), the remote names of earlier attempts (oldest first), this attempt's number, the
    final name for a sequence number (banks that forbid rename), and the sha256 of each remote file
    read back so far ("" for one that could not be read back). `verify_read_back` is about our own
    upload only (see `_complete`): a file found under our name is always read back."""

    listing: Mapping[str, int]
    size: int
    sha256: str
    rename_allowed: bool
    verify_read_back: bool
    final_fixed: str | None
    earlier: tuple[str, ...]
    attempt_no: int
    name_for: Callable[[int], str]
    remote_sha256: Mapping[str, str] = field(default_factory=dict)

    def read_back(self, name: str, sha: str) -> "AttemptFacts":
        return replace(self, remote_sha256={**self.remote_sha256, name: sha})


@dataclass(frozen=True)
class AttemptPlan:
    action: str  # READ_BACK | CONFIRM | REFUSE | UPLOAD
    name: str | None = None  # the remote name the action is about (UPLOAD: the final name)
    upload_name: str | None = None  # UPLOAD: the name written to
    cleanups: tuple[tuple[str, str], ...] = ()  # (name, what) of our own leftovers to remove first


def remote_complete(facts: AttemptFacts, name: str) -> bool | None:
    """Whether the remote file `name` holds our payload, proven by content: its size first, then
    its sha256 read back (equal sizes are common: NACHA files are padded to 10-record blocks); None
    while that sha256 has not been read yet; False when it could not be read back."""
    if facts.listing[name] != facts.size:
        return False
    sha = facts.remote_sha256.get(name)
    return None if sha is None else sha == facts.sha256


def conflict_detail(facts: AttemptFacts, name: str, read_error: str | None = None) -> str:
    """What differs between the remote file `name` and our payload, saying only what was checked:
    a sha256 is quoted as compared only when the file was read back."""
    theirs = facts.listing[name]
    if theirs != facts.size:
        return f"{theirs:,} bytes at the bank, ours {facts.size:,} bytes (content not compared)"
    sha = facts.remote_sha256.get(name)
    if sha:
        return (f"same size ({theirs:,} bytes) but other content: sha256 {sha} at the bank, ours "
                f"{facts.sha256}")
    why = f": {read_error}" if read_error else ""
    return (f"same size ({theirs:,} bytes), but it could not be read back to compare its content{why}; "
            "a file is confirmed only by its content")


def plan_attempt(facts: AttemptFacts) -> AttemptPlan:
    """1. Already there, complete (the "upload OK but the reply was lost" case)? Confirm it. Under
    the fixed final name with other content: refuse (never overwrite). Without rename, an earlier
    attempt's incomplete upload is our own partial upload: removed. 2. Otherwise upload: to a
    temporary dot name (our stale temporary uploads removed first) renamed to the fixed final name,
    or, without rename, directly to the first final name from this attempt's number on that is
    neither listed nor used by an earlier attempt."""
    cleanups: list[tuple[str, str]] = []
    if facts.rename_allowed:
        candidates = [facts.final_fixed]
    else:
        candidates = list(dict.fromkeys(reversed(facts.earlier)))
    for name in candidates:
        if not name or name not in facts.listing:
            continue
        complete = remote_complete(facts, name)
        if complete is None:
            return AttemptPlan(READ_BACK, name)
        if complete:
            return AttemptPlan(CONFIRM, name, cleanups=tuple(cleanups))
        if facts.rename_allowed or facts.listing[name] >= facts.size:
            # Not a partial upload of ours (that is shorter): never overwritten nor removed.
            return AttemptPlan(REFUSE, name)
        cleanups.append((name, "partial upload"))
    if facts.rename_allowed:
        final = facts.final_fixed
        if final:
            cleanups += [(name, "stale temporary upload") for name in facts.listing
                         if name.startswith(f".{final}.") and name.endswith(TEMP_SUFFIX)
                         and remote_name_problem(name) is None]
        return AttemptPlan(UPLOAD, final, f".{final}.{facts.attempt_no}{TEMP_SUFFIX}", tuple(cleanups))
    seq = facts.attempt_no
    final = facts.name_for(seq)
    while final in facts.listing or final in facts.earlier:
        seq += 1
        final = facts.name_for(seq)
    return AttemptPlan(UPLOAD, final, final, tuple(cleanups))


class _Refused(Exception):
    """A refusal by the bank or a data problem for one file. `kind` is the file's outcome: refused,
    conflict (the run goes on with the next file), temporary or config (the run stops there)."""

    def __init__(self, message: str, kind: str = "refused"):
        super().__init__(message)
        self.kind = kind


class _SendRun:
    def __init__(self, sessions, keyring, transport, policy, archive_dir, outbox, pgp, kind, step, sleep, log):
        self.sessions = sessions
        self.keyring = keyring
        self.t = transport
        self.p = policy
        self.archive_dir = archive_dir
        self.outbox = outbox
        self.pgp = pgp
        self.kind = kind
        self.step = step
        self.sleep = sleep
        self.log = log
        self.destination = f"{transport.where} {policy.outbound_dir}"[:500]
        self.preconnect: _Background | None = None

    # -- per file --------------------------------------------------------------------------------
    def deliver(self, f: PendingFile) -> SentFile:
        file_id = f.file_id
        sf = SentFile(f.file_id, f.file_name, f.file_date, "failed")
        try:
            payload, delivery_id, sha = self._prepare(file_id)
        except (StoredBytesError, PgpError) as e:
            sf.error = str(e)
            self._note_error(file_id, None, sf.error)
            if isinstance(e, PgpError):
                sf.outcome = "config"
            return sf
        sf.size, sf.sha256 = len(payload), sha
        sf.pgp = self.pgp is not None
        if self.preconnect is not None:
            self.preconnect.join(raise_errors=False)
            self.preconnect = None
        retrying = self.p.retrying(
            sleep=self.sleep,
            before_sleep=lambda rs: self.log(
                f"{sf.file_name}: {rs.outcome.exception()}; trying again in {rs.next_action.sleep:.1f} s "
                f"(try {rs.attempt_number + 1} of {self.p.retry_attempts})"),
        )
        try:
            for attempt in retrying:
                with attempt:
                    outcome, remote = self._try_once(file_id, delivery_id, payload, sf.sha256)
            sf.outcome, sf.remote_name = outcome, remote
        except BankUnreachable as e:
            sf.outcome, sf.error = "unreachable", str(e)
            self._note_error(file_id, delivery_id, sf.error)
        except TransportConfigError as e:
            sf.outcome, sf.error = "config", str(e)
            self._note_error(file_id, delivery_id, sf.error)
        except _Refused as e:
            sf.outcome, sf.error = e.kind, str(e)
        except TransportError as e:  # RemoteRefused outside an attempt (listing refused)
            sf.outcome, sf.error = "refused", str(e)
            self._note_error(file_id, delivery_id, sf.error)
        with self.sessions() as s:
            d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
            sf.attempts = d.attempts
            if sf.remote_name is None:
                sf.remote_name = d.remote_name
        return sf

    def _prepare(self, file_id: int) -> tuple[bytes, int, str]:
        """The exact payload, and the delivery row (created on the first run). A PGP payload is
        made once and stored: a retry after an ambiguous failure must find the same bytes."""
        with self.sessions() as s, s.begin():
            row = s.get(NachaFile, file_id)
            data = _stored_bytes(s, self.keyring, row)
            d = s.scalars(select(Delivery).where(Delivery.file_id == file_id)).first()
            recipient = self.pgp.recipient if self.pgp is not None else None
            if d is None:
                d = Delivery(file_id=file_id, transport=self.kind, destination=self.destination, attempts=0,
                             uploads=0, ambiguous=False, payload_sha256="", payload_size=0)
                s.add(d)
            frozen = d.uploads > 0 and d.payload_sha256  # bytes may be at the bank: keep them
            if not frozen:
                if recipient:
                    payload = self.pgp.encrypt(data)
                    d.pgp_recipient, d.pgp_payload = recipient, payload
                else:
                    payload = data
                    d.pgp_recipient, d.pgp_payload = None, None
                # stored_bytes has just checked the file's sha256: no need to hash it again
                d.payload_sha256 = row.sha256 if payload is data else hashlib.sha256(payload).hexdigest()
                d.payload_size = len(payload)
                d.transport, d.destination = self.kind, self.destination
                if self.p.rename_allowed or d.remote_name is None:
                    d.remote_name = (self._final_name_for(row.file_date, row.file_id_modifier, 1)
                                     if self.p.rename_allowed else None)
            else:
                payload = d.pgp_payload if d.pgp_payload is not None else data
                if hashlib.sha256(payload).hexdigest() != d.payload_sha256:
                    raise StoredBytesError(f"{row.file_name}: the payload recorded for delivery no longer matches "
                                           "its sha256")
                if d.destination != self.destination and d.ambiguous:
                    raise StoredBytesError(
                        f"{row.file_name}: its last upload to {d.destination} ended without confirmation and the "
                        f"bank settings now point to {self.destination}; check the old destination first")
                d.transport, d.destination = self.kind, self.destination
                if self.p.rename_allowed and d.remote_name is None:
                    d.remote_name = self._final_name_for(row.file_date, row.file_id_modifier, 1)
            s.flush()
            return payload, d.id, d.payload_sha256

    def _try_once(self, file_id: int, delivery_id: int, payload: bytes, sha: str) -> tuple[str, str]:
        folder = self.p.outbound_dir
        self.t.connect()  # no-op when connected; BankUnreachable/config errors propagate
        listing = {e.name: e for e in self.t.listdir(folder)}
        with self.sessions() as s:
            row = s.get(NachaFile, file_id)
            d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
            if row.state == "sent":
                return "confirmed_elsewhere", d.remote_name  # another run confirmed it meanwhile
            earlier = [a.remote_name for a in s.scalars(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.number))]
            attempt_no = d.attempts + 1
            file_name, file_date, modifier = row.file_name, row.file_date, row.file_id_modifier
            final_fixed = d.remote_name

        # 1-2. What the listing says this attempt must do (see `plan_attempt`); the content of a
        # remote file whose size matches is read back first when the bank allows it.
        facts = AttemptFacts({e.name: e.size for e in listing.values()}, len(payload), sha, self.p.rename_allowed,
                             self.p.verify_read_back, final_fixed, tuple(earlier), attempt_no,
                             lambda seq: self._final_name_for(file_date, modifier, seq))
        plan = plan_attempt(facts)
        read_errors: dict[str, str] = {}
        while plan.action == READ_BACK:
            try:
                got = self.t.sha256(folder, plan.name)
            except (RemoteRefused, TransportConfigError) as e:  # cannot be read back: not confirmed
                got, read_errors[plan.name] = "", str(e)
            facts = facts.read_back(plan.name, got)
            plan = plan_attempt(facts)
        for name, what in plan.cleanups:
            self._cleanup(folder, name, f"{what} of {file_name}")
        if plan.action == CONFIRM:
            self._confirm(file_id, delivery_id, plan.name, payload, attempt=None)
            return "already_there", plan.name
        if plan.action == REFUSE:
            raise self._refuse(file_id, delivery_id, None,
                               f"{self.t.where}: {self.t.path(folder, plan.name)} already exists at the bank and "
                               f"is not proven ours: {conflict_detail(facts, plan.name, read_errors.get(plan.name))}; "
                               "not overwritten, nothing marked sent: check with the bank", kind="conflict")
        upload_name, final = plan.upload_name, plan.name
        attempt_id = self._begin_attempt(file_id, delivery_id, attempt_no, upload_name, final)
        self.step("sending", file_name)

        # 3. Upload, verify, rename. The local archive copy is written meanwhile (file writes
        # release the GIL), so it costs no time on a large file.
        archiver = _Background(self._archive_write, final, payload)
        renaming = False
        try:
            self.t.put(payload, folder, upload_name, exclusive=True)
            self.step("uploaded", file_name)
            entry = self.t.stat(folder, upload_name)
            if entry is None or not self._complete(folder, entry, len(payload), sha):
                got = "missing" if entry is None else f"{entry.size:,} bytes"
                self._cleanup(folder, upload_name, "incomplete upload")
                raise RemoteRefused(f"{self.t.where}: upload of {self.t.path(folder, upload_name)} did not verify: "
                                    f"{got} at the bank, expected {len(payload):,} bytes"
                                    + (" with our sha256" if self.p.verify_read_back else ""),
                                    where=self.t.where, path=upload_name)
            self.step("verified", file_name)
            if self.p.rename_allowed:
                if self.t.stat(folder, final) is not None:  # appeared since the listing: never overwrite
                    self._cleanup(folder, upload_name, "unused temporary upload")
                    raise self._refuse(file_id, delivery_id, attempt_id,
                                       f"{self.t.where}: {self.t.path(folder, final)} appeared at the bank during "
                                       "the upload; not overwritten, nothing marked sent: check with the bank",
                                       kind="conflict")
                renaming = True
                # The server's OK to the rename of a verified upload is the confirmation (a bank
                # may move the file away at once, so it is not looked for again).
                self.t.rename(folder, upload_name, folder, final)
                self.step("renamed", file_name)
        except ConnectionLost as e:
            self._archive_discard(archiver)
            # Unknown outcome: ambiguous when the final name may hold the file (rename sent, or no
            # rename at all); the retry looks at the folder first.
            ambiguous = renaming or not self.p.rename_allowed
            self._end_attempt(file_id, delivery_id, attempt_id, "lost", str(e), ambiguous=ambiguous)
            raise
        except RemoteRefused as e:
            self._archive_discard(archiver)
            msg = str(e)
            if renaming:
                msg += ("; if the bank forbids renaming, set bank.rename_allowed = false (uploads then go "
                        "directly to a unique final name, see bank.file_name_pattern)")
            removed = self._cleanup(folder, upload_name, "refused upload")
            ambiguous = not self.p.rename_allowed and not removed
            raise self._refuse(file_id, delivery_id, attempt_id, msg, ambiguous=ambiguous, kind=e.outcome) from None
        except TransportConfigError as e:
            self._archive_discard(archiver)
            self._end_attempt(file_id, delivery_id, attempt_id, "config", str(e),
                              ambiguous=not self.p.rename_allowed)
            raise
        except BankUnreachable as e:
            self._archive_discard(archiver)
            self._end_attempt(file_id, delivery_id, attempt_id, "unreachable", str(e),
                              ambiguous=renaming or not self.p.rename_allowed)
            raise
        except BaseException:
            self._archive_discard(archiver)
            raise
        # 4. Confirmed.
        self._confirm(file_id, delivery_id, final, payload, attempt=attempt_id, archiver=archiver)
        return "sent", final

    def _final_name_for(self, file_date: date, modifier: str, seq: int) -> str:
        return remote_file_name(self.p.name_pattern, file_date, modifier, seq, pgp=self.pgp is not None)

    def _complete(self, folder: str, entry: RemoteEntry, size: int, sha: str) -> bool:
        if entry.size != size:
            return False
        if self.p.verify_read_back:
            return self.t.sha256(folder, entry.name) == sha
        return True

    def _cleanup(self, folder: str, name: str, what: str) -> bool:
        """Best-effort removal of one of our own uploads (partial or temporary)."""
        try:
            self.t.remove(folder, name)
            return True
        except (RemoteRefused, TransportConfigError) as e:
            self.log(f"could not remove the {what} {escape_name(name)}: {e}")
            return False
        except BankUnreachable:
            return False

    # -- the ledger ------------------------------------------------------------------------------
    def _begin_attempt(self, file_id, delivery_id, number, upload_name, final) -> int:
        now = utcnow()
        with self.sessions() as s, s.begin():
            d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
            row = s.get(NachaFile, file_id)
            a = DeliveryAttempt(delivery_id=delivery_id, number=number, started_at=now, upload_name=upload_name,
                                remote_name=final, bytes_sent=0)
            s.add(a)
            d.attempts = number
            d.uploads += 1
            d.first_attempt_at = d.first_attempt_at or now
            d.last_attempt_at = now
            d.ambiguous = True  # until this attempt ends: a crash from here on leaves it unknown
            if not self.p.rename_allowed:
                d.remote_name = None
            row.state = "sending"
            s.flush()
            return a.id

    def _end_attempt(self, file_id, delivery_id, attempt_id, outcome, error, *, ambiguous: bool) -> None:
        with self.sessions() as s, s.begin():
            a = s.get(DeliveryAttempt, attempt_id) if attempt_id else None
            if a is not None:
                a.outcome, a.error, a.finished_at = outcome, error[:_MAX_ERROR], utcnow()
            d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
            d.ambiguous = ambiguous
            d.last_error = error[:_MAX_ERROR]
            row = s.get(NachaFile, file_id)
            # 'sending' only while the bank may hold the file under its final name.
            row.state = "sending" if ambiguous else "built"

    def _refuse(self, file_id, delivery_id, attempt_id, msg, *, ambiguous: bool = False,
                kind: str = "refused") -> _Refused:
        self._end_attempt(file_id, delivery_id, attempt_id, "refused", msg, ambiguous=ambiguous)
        return _Refused(msg, kind)

    def _note_error(self, file_id: int, delivery_id: int | None, error: str) -> None:
        """Record a failure that happened outside an attempt (connecting, preparing)."""
        with self.sessions() as s, s.begin():
            if delivery_id is None:
                delivery_id = s.scalar(select(Delivery.id).where(Delivery.file_id == file_id))
            if delivery_id is not None:
                d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
                d.last_error = error[:_MAX_ERROR]

    def note_not_tried(self, files: list[SentFile], reason: str) -> None:
        for f in files:
            f.error = reason
            self._note_error(f.file_id, None, reason)

    def _confirm(self, file_id, delivery_id, final, payload: bytes, *, attempt, archiver=None) -> None:
        # The file is at the bank: a failed local archive copy is reported, it does not undo that.
        try:
            archived = (self._archive_finish(archiver.join()) if archiver is not None
                        else self._archive(final, payload))
        except OSError as e:
            archived = None
            self.log(f"{final}: delivered, but the local archive copy under {self.archive_dir} failed: {e}")
        now = utcnow()
        with self.sessions() as s, s.begin():
            row = s.get(NachaFile, file_id)
            d = s.get(Delivery, delivery_id, options=_LIGHT_DELIVERY)
            if attempt is not None:
                a = s.get(DeliveryAttempt, attempt)
                a.outcome, a.finished_at, a.bytes_sent, a.error = "sent", now, len(payload), None
            else:
                # Found complete at the bank: the attempt that put it there lost its confirmation.
                last = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                 .order_by(DeliveryAttempt.number.desc())).first()
                if last is not None and last.outcome in (None, "lost", "unreachable"):
                    last.outcome, last.finished_at = "already_there", now
                    last.error = ((last.error or "") + "; found complete at the bank by a later run")[:_MAX_ERROR]
            d.remote_name = final
            d.ambiguous = False
            d.sent_at = now
            d.last_error = None
            row.state = "sent"
            row.sent_at = now
            file_name = row.file_name
            # The file's payments are at the bank now: in_file -> sent, in the same transaction.
            s.execute(
                update(Payment)
                .where(Payment.id.in_(select(FileEntry.payment_id).where(FileEntry.file_id == file_id)))
                .where(Payment.state == "in_file")
                .values(state="sent", updated_at=now)
                .execution_options(synchronize_session=False)
            )
        self.step("confirmed", file_name)
        del archived
        if self.outbox is not None:
            try:
                (self.outbox / file_name).unlink(missing_ok=True)  # delivered: no longer awaiting
            except OSError:
                pass

    def _archive(self, remote_name: str, payload: bytes) -> Path:
        """Local copy of what the bank received: <archive>/sent/<remote name> (mode 0600)."""
        return self._archive_finish(self._archive_write(remote_name, payload))

    def _archive_write(self, remote_name: str, payload: bytes) -> tuple[Path, Path | None]:
        """Phase 1 (runs during the upload): the copy under a temporary name, fsynced. Returns the
        final path and the temporary file (None when an identical copy is there already)."""
        folder = self.archive_dir / "sent"
        private_dirs(folder)
        path = folder / remote_name
        if path.exists():
            if path.stat().st_size == len(payload) and file_sha256(path) == hashlib.sha256(payload).hexdigest():
                return path, None
            path = folder / f"{remote_name}.{hashlib.sha256(payload).hexdigest()[:12]}"
        tmp = folder / f"{TMP_PREFIX}{remote_name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path, tmp

    @staticmethod
    def _archive_finish(written: tuple[Path, Path | None]) -> Path:
        """Phase 2 (once delivered): the copy takes its name."""
        path, tmp = written
        if tmp is not None:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        return path

    @staticmethod
    def _archive_discard(archiver: "_Background") -> None:
        """Not delivered: drop the temporary copy."""
        written = archiver.join(raise_errors=False)
        if written and written[1] is not None:
            written[1].unlink(missing_ok=True)


def _stored_bytes(s: Session, keyring: Keyring, row: NachaFile) -> bytes:
    """stored_bytes() of the file (decrypted, checked against its sha256). On PostgreSQL the large
    bytea is read with psycopg's binary protocol, three to four times faster than the hex text
    format SQLAlchemy would use (about 100 MB for a million entries), in the session's transaction."""
    if s.get_bind().dialect.name == "postgresql":
        dbapi = s.connection().connection.driver_connection
        with dbapi.cursor(binary=True) as cur:
            cur.execute("SELECT content_enc FROM nacha_file_contents WHERE file_id = %s", (row.id,))
            got = cur.fetchone()
        if got is not None:
            return stored_bytes(keyring, row, bytes(got[0]))
    return stored_bytes(keyring, row)


def _quiet_connect(transport: Transport) -> None:
    try:
        transport.connect()
    except TransportError:
        pass


class _Background:
    """Run fn(*args) in a thread; join() returns its result or raises its exception."""

    def __init__(self, fn, *args):
        import threading

        self._result = None
        self._error: BaseException | None = None

        def run():
            try:
                self._result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to join()
                self._error = e

        self._thread = threading.Thread(target=run, name="achbatch-archive", daemon=True)
        self._thread.start()

    def join(self, *, raise_errors: bool = True):
        self._thread.join()
        if self._error is not None and raise_errors:
            raise self._error
        return self._result

