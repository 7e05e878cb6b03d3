"""Fetching the bank's files (returns, NOCs, acknowledgements) into the local inbox, with the inbound
ledger (`inbound_files`). Processing them is `batch/returns*.py`'s job: it asks `pending_inbound`
for what is waiting and calls `mark_inbound_processed` in its own transaction.

For each regular file of the remote inbound folder (matching `inbound_pattern`, dot names skipped):
  * a file already in the ledger under the same (source, name, size, mtime) is not downloaded again;
  * otherwise it is streamed to a temporary name in the inbox, hashed on the way, and checked
    against the listed size (a file still growing is left for the next run);
  * the same content already fetched under another name is ledgered as a 'duplicate' and never
    reaches the inbox again (content_key = sha256 is unique);
  * a copy of the bytes received is kept under <archive>/received/ (mode 0600), the ledger row is
    committed, and only then the file appears in the inbox under its final name (rename), PGP
    decrypted first when `pgp_decrypt_inbound` is set;
  * finally the remote file is moved to the remote archive folder when one is configured (a failure
    there is a warning: the next run retries the move, never the download).
A crash at any point is repaired by the next run: committed rows whose inbox file is missing are
restored from the archive copy, temporary files are removed.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .delivery import run_lock
from ..store.fsutil import TMP_PREFIX, DurableCopies, private_dirs, write_atomic
from ..store.fsutil import fsync_dir as _fsync_dir
from ..rules.names import escape_name, remote_name_problem
from ..store.models import InboundFile, ReviewItem, utcnow
from .pgp import PGP_SUFFIXES, Pgp, PgpError
from .transport import (
    BankUnreachable, RemoteEntry, RemoteRefused, RetryPolicy, Transport, TransportConfigError, TransportError, matches,
)

__all__ = ["FetchResult", "FetchedFile", "InboundPolicy", "PendingInbound", "fetch_files", "mark_inbound_processed",
           "pending_inbound", "tidy_inbox"]

FETCH_LOCK_KEY = 0x41434842_46455443 & 0x7FFFFFFFFFFFFFFF  # "ACHBFETC"


@dataclass(frozen=True)
class InboundPolicy(RetryPolicy):
    inbound_dir: str
    archive_dir: str | None = None  # remote folder fetched files are moved to
    pattern: str = "*"
    # What the fetched files are (inbound_files.kind): 'returns' (returns, NOCs, acknowledgements) or
    # 'statement' (BAI2 reports); names matching `exclude` are left for the other kind's fetch.
    kind: str = "returns"
    exclude: str | None = None

    @classmethod
    def from_settings(cls, bank) -> "InboundPolicy":
        """The return files' fetch: `[bank] inbound_pattern`, never a name of `[bank] statements`."""
        return cls(bank.inbound_dir, bank.archive_dir, bank.inbound_pattern, exclude=bank.statements or None,
                   **RetryPolicy.settings_of(bank))

    @classmethod
    def statements_from_settings(cls, bank) -> "InboundPolicy":
        """The BAI2 statements' fetch: names matching `[bank] statements`, same folder and transport."""
        return cls(bank.inbound_dir, bank.archive_dir, bank.statements, kind="statement",
                   **RetryPolicy.settings_of(bank))


@dataclass
class FetchedFile:
    remote_name: str
    size: int
    outcome: str  # received | duplicate | seen | not_ready | failed
    sha256: str = ""
    inbound_id: int | None = None
    local_name: str | None = None
    decrypted: bool = False
    remote_archived: str | None = None  # name in the remote archive folder, when moved there now
    error: str | None = None


@dataclass
class FetchResult:
    where: str
    files: list[FetchedFile] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # inbox files rewritten from the archive
    warnings: list[str] = field(default_factory=list)
    bad_names: list[str] = field(default_factory=list)  # listed names that are not plain (escaped): skipped
    unreachable: str | None = None
    config_error: str | None = None
    locked: bool = False

    @property
    def received(self) -> list[FetchedFile]:
        return [f for f in self.files if f.outcome == "received"]

    @property
    def failed(self) -> list[FetchedFile]:
        return [f for f in self.files if f.outcome == "failed"]


@dataclass(frozen=True)
class PendingInbound:
    """An inbox file waiting to be processed."""

    id: int  # inbound_files.id: give it to mark_inbound_processed
    local_name: str
    path: Path | None  # inbox/local_name when the inbox folder was given
    remote_name: str
    sha256: str  # of the inbox file's content (after PGP decryption)
    size: int
    received_at: datetime


# -- for the returns processor --------------------------------------------------------------------

def pending_inbound(sessions: sessionmaker[Session], inbox: Path | None = None,
                    kind: str = "returns") -> list[PendingInbound]:
    """Inbox files of `kind` received and not yet processed, oldest first (duplicates never appear)."""
    with sessions() as s:
        rows = s.scalars(select(InboundFile).where((InboundFile.state == "received") & (InboundFile.kind == kind))
                         .order_by(InboundFile.id)).all()
        return [PendingInbound(r.id, r.local_name, Path(inbox) / r.local_name if inbox is not None else None,
                               r.remote_name, r.content_sha256, r.size, r.received_at) for r in rows]


def mark_inbound_processed(session: Session, inbound_id: int, result: str) -> bool:
    """Record, in the caller's transaction, that inbound file `inbound_id` was processed (`result`:
    a short outcome such as 'applied: 12 returns, 3 NOCs' or 'rejected: invalid file'). Returns
    False when it was already marked (the first result is kept). The inbox copy is removed by the
    next `fetch_files` (or `tidy_inbox`) once this commit is visible."""
    row = session.get(InboundFile, inbound_id, with_for_update=True)
    if row is None:
        raise LookupError(f"no inbound file with id {inbound_id}")
    if row.state == "duplicate":
        raise ValueError(f"inbound file {inbound_id} ({row.remote_name}) is a duplicate of "
                         f"{row.duplicate_of_id}: process that one")
    if row.state == "processed":
        return False
    row.state = "processed"
    row.processed_at = utcnow()
    row.process_result = (result or "processed")[:200]
    return True


def tidy_inbox(sessions: sessionmaker[Session], inbox: Path, archive_dir: Path | None = None,
               pgp: Pgp | None = None) -> list[str]:
    """Remove processed files and leftover temporary files from the inbox; restore received files
    missing from it (from the archive copy). Returns the names restored."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        return []
    for tmp in inbox.glob(TMP_PREFIX + "*"):
        tmp.unlink(missing_ok=True)
    if archive_dir is not None:
        for tmp in Path(archive_dir).glob(f"received/*/{TMP_PREFIX}*"):  # a download interrupted by a crash
            tmp.unlink(missing_ok=True)
    restored = []
    with sessions() as s:
        rows = s.scalars(select(InboundFile).where(InboundFile.local_name.is_not(None))).all()
        for r in rows:
            path = inbox / r.local_name
            if r.state == "processed":
                path.unlink(missing_ok=True)
            elif r.state == "received" and not path.exists():
                try:
                    data = Path(r.archive_path).read_bytes()
                except OSError:
                    continue  # archive copy gone too: the file is reported by pending_inbound's caller
                if hashlib.sha256(data).hexdigest() != r.sha256:
                    raise RuntimeError(f"archive copy {r.archive_path} of {r.remote_name} does not match its sha256")
                if r.decrypted:
                    if pgp is None:
                        continue  # cannot restore without the key; left for a run with PGP settings
                    data = pgp.decrypt(data, r.remote_name)
                write_atomic(path, data)
                restored.append(r.local_name)
    return restored


# -- fetch ------------------------------------------------------------------------------------------

def fetch_files(
    sessions: sessionmaker[Session],
    transport: Transport,
    policy: InboundPolicy,
    *,
    inbox: Path,
    archive_dir: Path,
    pgp: Pgp | None = None,
    on_step: Callable[[str, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> FetchResult:
    """Download the bank's new files into `inbox` (see the module docstring).

    `on_step(step, remote_name)` is called at 'downloaded', 'recorded', 'placed' and 'archived'."""
    source = f"{transport.where} {policy.inbound_dir}"[:500]
    result = FetchResult(where=source)
    step = on_step or (lambda _s, _n: None)
    say = log or (lambda _m: None)
    inbox, archive_dir = Path(inbox), Path(archive_dir)
    with run_lock(sessions, "fetch", FETCH_LOCK_KEY) as got:
        if not got:
            result.locked = True
            return result
        private_dirs(inbox)
        try:
            result.restored = tidy_inbox(sessions, inbox, archive_dir, pgp)
        except PgpError as e:
            result.config_error = str(e)
            return result
        retrying = lambda: policy.retrying(  # noqa: E731 - a fresh policy per operation
            sleep=sleep,
            before_sleep=lambda rs: say(f"{rs.outcome.exception()}; trying again in {rs.next_action.sleep:.1f} s"))
        try:
            entries: list[RemoteEntry] = []
            for attempt in retrying():
                with attempt:
                    transport.connect()
                    entries = transport.listdir(policy.inbound_dir)
            for entry in entries:
                problem = remote_name_problem(entry.name)
                if problem is not None:  # skipped, never used in a path; the other files go on
                    result.warnings.append(_review_bad_name(sessions, source, entry.name, problem))
                    result.bad_names.append(escape_name(entry.name))
                    continue
                if entry.name.startswith(".") or not matches(entry.name, policy.pattern):
                    continue
                if policy.exclude and matches(entry.name, policy.exclude):
                    continue  # the other kind's file (a statement is not a return file)
                fetched = None
                try:
                    for attempt in retrying():
                        with attempt:
                            transport.connect()
                            fetched = _fetch_one(sessions, transport, policy, source, entry, inbox, archive_dir,
                                                 pgp, step, result)
                except OSError as e:  # our disk (inbox or archive): full, read-only, I/O error
                    result.files.append(FetchedFile(
                        entry.name, entry.size, "failed",
                        error=(f"{entry.name}: cannot keep a local copy under {inbox} or {archive_dir}: "
                               f"{e.strerror or e}; it stays at the bank for the next run")))
                    break  # the next files would meet the same local problem
                result.files.append(fetched)
        except BankUnreachable as e:
            result.unreachable = str(e)
        except TransportConfigError as e:
            result.config_error = str(e)
        except TransportError as e:  # e.g. listing refused
            result.files.append(FetchedFile(policy.inbound_dir, 0, "failed", error=str(e)))
        finally:
            transport.close()
            for tmp in inbox.glob(TMP_PREFIX + "*"):
                tmp.unlink(missing_ok=True)
    return result


def _review_bad_name(sessions, source: str, name: str, problem: str) -> str:
    """Open (once per bank folder and name) a review item about a listed name that is not a plain
    file name; returns the warning, the name escaped."""
    shown = escape_name(name)
    key = "remote_name:" + hashlib.sha256(f"{source}\0{name}".encode("utf-8", "backslashreplace")).hexdigest()
    detail = f"a file at {source} has a name that is not a plain file name ({problem}); it was not fetched"
    with sessions() as s, s.begin():
        if s.scalar(select(ReviewItem.id).where(ReviewItem.dedupe_key == key)) is None:
            s.add(ReviewItem(kind="bad_remote_name", subject="remote_name", subject_ref=escape_name(name, 280),
                             amount_cents=0, dedupe_key=key, detail=detail[:300]))
    return (f"skipped the bank file \"{shown}\": its name is not a plain file name ({problem}); not fetched, "
            "see the review list")


def _fetch_one(sessions, transport: Transport, policy: InboundPolicy, source: str, entry: RemoteEntry, inbox: Path,
               archive_dir: Path, pgp: Pgp | None, step, result: FetchResult) -> FetchedFile:
    folder = policy.inbound_dir
    ff = FetchedFile(entry.name, entry.size, "seen")
    with sessions() as s:
        seen = s.scalars(select(InboundFile).where(
            (InboundFile.source == source) & (InboundFile.remote_name == entry.name)
            & (InboundFile.remote_size == entry.size) & (InboundFile.remote_mtime == entry.mtime))).first()
        seen_archived = seen is not None and seen.remote_archived_at is not None
        if seen is not None:
            ff.inbound_id, ff.sha256, ff.local_name = seen.id, seen.sha256, seen.local_name
    # (no session is held across network operations: on SQLite every transaction takes the write lock)
    if ff.inbound_id is not None:
        if policy.archive_dir and not seen_archived:
            ff.remote_archived = _archive_remote(sessions, transport, policy, ff.inbound_id, entry, result)
        return ff

    # Download to a temporary inbox file and, at the same time, to the temporary archive copy,
    # hashing on the way; both are written back to disk during the transfer (DurableCopies).
    tmp = inbox / f"{TMP_PREFIX}{entry.name}.{os.getpid()}"
    day = datetime.now(timezone.utc).strftime("%Y%m%d")
    arch_dir = archive_dir / "received" / day
    private_dirs(arch_dir)
    arch_tmp = arch_dir / f"{TMP_PREFIX}{entry.name}.{os.getpid()}"
    h = hashlib.sha256()
    try:
        with DurableCopies([tmp, arch_tmp]) as copies:
            n = transport.get(folder, entry.name, copies, hasher=h, size=entry.size)
        step("downloaded", entry.name)
        after = transport.stat(folder, entry.name)
        if n != entry.size or after is None or (after.size, after.mtime) != (entry.size, entry.mtime):
            ff.outcome = "not_ready"
            ff.error = (f"{entry.name} changed while it was downloaded ({entry.size:,} bytes listed, {n:,} read): "
                        "the bank may still be writing it; left for the next run")
            result.warnings.append(ff.error)
            return ff
        sha = h.hexdigest()
        ff.sha256 = sha

        # Same content fetched before (under another name, or re-posted by the bank)?
        with sessions() as s, s.begin():
            original = s.scalars(select(InboundFile).where(InboundFile.content_key == sha)).first()
            if original is not None:
                dup = InboundFile(source=source, remote_name=entry.name, remote_size=entry.size,
                                  remote_mtime=entry.mtime, sha256=sha, size=n, content_key=None,
                                  duplicate_of_id=original.id, decrypted=original.decrypted,
                                  content_sha256=original.content_sha256, local_name=None,
                                  archive_path=original.archive_path, state="duplicate", kind=policy.kind)
                s.add(dup)
                s.flush()
                ff.outcome, ff.inbound_id = "duplicate", dup.id
        if ff.outcome == "duplicate":
            step("recorded", entry.name)
            if policy.archive_dir:
                ff.remote_archived = _archive_remote(sessions, transport, policy, ff.inbound_id, entry, result)
            return ff

        # The local archive copy of the bytes received is in place before the ledger row points to it.
        arch = arch_dir / f"{sha[:12]}-{entry.name}"
        os.replace(arch_tmp, arch)
        _fsync_dir(arch_dir)

        # PGP: the inbox gets the decrypted content.
        local = entry.name
        content_sha, decrypted = sha, False
        if pgp is not None and (entry.name.lower().endswith(PGP_SUFFIXES) or Pgp.looks_encrypted(_head(tmp))):
            try:
                plain = pgp.decrypt(tmp.read_bytes(), entry.name)
            except PgpError as e:
                ff.outcome, ff.error = "failed", str(e)
                return ff
            write_atomic(tmp, plain)
            content_sha, decrypted = hashlib.sha256(plain).hexdigest(), True
            for suffix in PGP_SUFFIXES:
                if local.lower().endswith(suffix) and len(local) > len(suffix):
                    local = local[:-len(suffix)]

        with sessions() as s, s.begin():
            local = _free_local_name(s, inbox, local, sha)
            row = InboundFile(source=source, remote_name=entry.name, remote_size=entry.size, remote_mtime=entry.mtime,
                              sha256=sha, size=n, content_key=sha, decrypted=decrypted, content_sha256=content_sha,
                              local_name=local, archive_path=str(arch), state="received", kind=policy.kind)
            s.add(row)
            s.flush()
            ff.inbound_id = row.id
        step("recorded", entry.name)
        os.replace(tmp, inbox / local)
        _fsync_dir(inbox)
        step("placed", entry.name)
        ff.outcome, ff.local_name, ff.decrypted = "received", local, decrypted
    finally:
        tmp.unlink(missing_ok=True)
        arch_tmp.unlink(missing_ok=True)
    if policy.archive_dir:
        ff.remote_archived = _archive_remote(sessions, transport, policy, ff.inbound_id, entry, result)
    step("archived", entry.name)
    return ff


def _archive_remote(sessions, transport: Transport, policy: InboundPolicy, inbound_id: int, entry: RemoteEntry,
                    result: FetchResult) -> str | None:
    """Move the fetched file to the remote archive folder under a name not taken there."""
    with sessions() as s:
        sha = s.get(InboundFile, inbound_id).sha256
    target = entry.name
    try:
        if transport.stat(policy.archive_dir, target) is not None:
            target = f"{entry.name}.{sha[:12]}"
            if transport.stat(policy.archive_dir, target) is not None:
                target = f"{entry.name}.{sha[:12]}.{int(time.time())}"
        transport.rename(policy.inbound_dir, entry.name, policy.archive_dir, target)
    except (RemoteRefused, TransportConfigError) as e:
        result.warnings.append(f"{entry.name} was fetched but not moved to the remote archive folder "
                               f"{policy.archive_dir}: {e}; the next fetch tries again")
        return None
    with sessions() as s, s.begin():
        row = s.get(InboundFile, inbound_id)
        row.remote_archived_at = utcnow()
        row.remote_archive_name = target
    return target


def _free_local_name(s: Session, inbox: Path, name: str, sha: str) -> str:
    """`name`, or `name` with the content hash inserted when the inbox or the ledger has it already
    (banks reuse names like RETURNS.TXT every day)."""
    def taken(n: str) -> bool:
        return (inbox / n).exists() or s.scalar(select(InboundFile.id).where(InboundFile.local_name == n)) is not None

    if not taken(name):
        return name
    stem, dot, ext = name.rpartition(".")
    candidate = f"{stem}-{sha[:12]}.{ext}" if dot and stem else f"{name}-{sha[:12]}"
    i = 2
    while taken(candidate):
        candidate = f"{stem}-{sha[:12]}-{i}.{ext}" if dot and stem else f"{name}-{sha[:12]}-{i}"
        i += 1
    return candidate


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)
