"""Account numbers unreadable at rest (NACHA Supplementing Data Security Requirements, ref §4):
AES-256-GCM with a keyring for rotation, a keyed hash for matching without decrypting, and `mask`
(defined once in nacha.fields, re-exported here for batch/).

Key secret: 32 random bytes, written in base64. A keyring holds one current key (encrypts) and any
number of older keys (decrypt only). From one secret two keys are derived with HKDF-SHA256: the
AES-GCM key and the HMAC-SHA256 key of `account_hash`. A key's id is the first 4 bytes of an HMAC
of a fixed label, so the id is stable, reveals nothing and needs no naming.

Ciphertext layout (bytes): version 0x01 | key id (4) | nonce (12) | AES-GCM ciphertext + tag (16).
The version, key id and a caller-chosen context (e.g. b"bank_accounts.account_number") are
authenticated as associated data: a blob moved to another column, or with its key id edited,
fails to decrypt.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nacha.fields import mask

__all__ = [
    "ACCOUNT_CONTEXT", "FILE_CONTEXT", "RETURN_FILE_CONTEXT", "CryptoError", "DecryptionError", "KeyMaterialError",
    "KeyMismatchError", "KeyMissingError", "Keyring", "KeyringLoad", "RotationResult", "generate_secret",
    "load_keyring", "mask", "rotate", "stored_key_ids",
]

VERSION = 1
_VERSION_BYTE = bytes([VERSION])
_KID_LEN = 4
_NONCE_LEN = 12
_HEADER_LEN = 1 + _KID_LEN
_MIN_BLOB = _HEADER_LEN + _NONCE_LEN + 16

ACCOUNT_CONTEXT = b"bank_accounts.account_number"
FILE_CONTEXT = b"nacha_files.content"
RETURN_FILE_CONTEXT = b"return_files.content"  # a bank return/NOC file kept for the review queue


class CryptoError(Exception):
    """Base class of this module's errors. Messages never contain key material or plaintext."""


class KeyMaterialError(CryptoError):
    """A key secret or key file is missing or malformed."""


class KeyMissingError(KeyMaterialError):
    """The key file is missing while stored data needs a key: a new one must not be made."""


class KeyMismatchError(KeyMaterialError):
    """No key of the keyring is one the stored data was encrypted with."""


class DecryptionError(CryptoError):
    """A ciphertext cannot be decrypted: unknown key id, wrong context, or tampered bytes."""


def generate_secret() -> str:
    """A fresh key secret: 32 random bytes in standard base64 (44 characters)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_secret(text: str) -> bytes:
    s = text.strip()
    try:
        raw = base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_" if ("-" in s or "_" in s) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError("an account key must be 32 bytes in base64 (44 characters)") from None
    if len(raw) != 32:
        raise KeyMaterialError(f"an account key must be 32 bytes in base64, this one is {len(raw)} bytes")
    return raw


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class _Key:
    key_id: bytes
    aead: AESGCM = field(repr=False)
    hash_key: bytes = field(repr=False)
    # HMAC keyed once (key padding and both inner/outer digests set up); each hash copies it
    _hmac: "hmac.HMAC" = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hmac", hmac.new(self.hash_key, digestmod=hashlib.sha256))

    @classmethod
    def from_secret(cls, secret: bytes) -> "_Key":
        kid = hmac.new(secret, b"achbatch/key-id/v1", hashlib.sha256).digest()[:_KID_LEN]
        return cls(kid, AESGCM(_hkdf(secret, b"achbatch/aes-256-gcm/v1")), _hkdf(secret, b"achbatch/account-hash/v1"))

    def account_hash(self, routing_number: str, account_number: str) -> str:
        h = self._hmac.copy()
        h.update(f"{routing_number}|{account_number}".encode("ascii"))
        return h.hexdigest()


class Keyring:
    """One current key (encrypts, hashes) and older keys (decrypt, match) for rotation."""

    def __init__(self, secrets_: Iterable[str | bytes]):
        keys: list[_Key] = []
        for s in secrets_:
            raw = _decode_secret(s) if isinstance(s, str) else s
            if len(raw) != 32:
                raise KeyMaterialError("an account key must be 32 bytes")
            k = _Key.from_secret(raw)
            if all(k.key_id != other.key_id for other in keys):
                keys.append(k)
        if not keys:
            raise KeyMaterialError("no account key configured")
        self._keys = keys
        self._by_id = {k.key_id: k for k in keys}

    def __repr__(self) -> str:  # never the secrets
        return f"Keyring(current={self.current_key_id}, keys={len(self._keys)})"

    @property
    def current_key_id(self) -> str:
        return self._keys[0].key_id.hex()

    @property
    def key_ids(self) -> list[str]:
        return [k.key_id.hex() for k in self._keys]

    def encrypt(self, plaintext: str | bytes, context: bytes) -> bytes:
        """Encrypt with the current key; `context` must be given again to decrypt."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        key = self._keys[0]
        header = _VERSION_BYTE + key.key_id
        nonce = os.urandom(_NONCE_LEN)  # random 96-bit nonce per message (NIST SP 800-38D 8.2.2)
        return header + nonce + key.aead.encrypt(nonce, data, header + context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < _MIN_BLOB or blob[:1] != _VERSION_BYTE:
            raise DecryptionError("not an achbatch ciphertext (bad version or too short)")
        kid = blob[1:_HEADER_LEN]
        key = self._by_id.get(kid)
        if key is None:
            raise DecryptionError(f"ciphertext was made with key {kid.hex()}, which is not in the keyring "
                                  f"(keys: {', '.join(self.key_ids)})")
        nonce = blob[_HEADER_LEN:_HEADER_LEN + _NONCE_LEN]
        try:
            # a view, not a slice: a stored NACHA file is about 100 MB, and the copy cost as much as
            # the decryption itself
            return key.aead.decrypt(nonce, memoryview(blob)[_HEADER_LEN + _NONCE_LEN:], blob[:_HEADER_LEN] + context)
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication (tampered, or wrong context)") from None

    def decrypt_str(self, blob: bytes, context: bytes) -> str:
        return self.decrypt(blob, context).decode("utf-8")

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        return bytes(blob[1:_HEADER_LEN]).hex()

    def is_current(self, blob: bytes) -> bool:
        return bytes(blob[1:_HEADER_LEN]) == self._keys[0].key_id

    # -- keyed hash: match an account without decrypting ------------------------------------------
    def account_hash(self, routing_number: str, account_number: str) -> str:
        """HMAC-SHA256 (hex) of routing and account under the current key: what new rows store."""
        return self._keys[0].account_hash(routing_number, account_number)

    def account_hashes(self, routing_number: str, account_number: str) -> list[str]:
        """The hash under every key, current first: rows written before a rotation still match."""
        return [k.account_hash(routing_number, account_number) for k in self._keys]

    # convenience for bank account numbers
    def encrypt_account(self, account_number: str) -> bytes:
        return self.encrypt(account_number, ACCOUNT_CONTEXT)

    def decrypt_account(self, blob: bytes) -> str:
        return self.decrypt_str(blob, ACCOUNT_CONTEXT)


# -- key sources -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyringLoad:
    """A loaded keyring, plus what the caller (jobs/) should tell the operator."""

    keyring: Keyring
    source: str  # "settings", a key file path
    created: Path | None = None  # set when a new key file was created just now
    warnings: tuple[str, ...] = ()


def _parse_key_lines(text: str) -> list[str]:
    # One secret per line, current first; blank lines and '#' comments ignored. A comma also
    # separates, so an environment variable can carry "new,old".
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        out += [part.strip() for part in line.split(",") if part.strip()]
    return out


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: never overwrite a key (that would make every stored account unreadable).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits; make 0600 explicit anyway
        os.write(fd, (generate_secret() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


# The distinct values of an indexed column, one index seek per value (a "loose index scan"): asked
# at every command's start, where SELECT DISTINCT read the whole index (0.2-0.37 s for 1,000,000
# accounts on PostgreSQL, growing with the ledger) to find the one or two keys in use.
_DISTINCT_BY_SEEKS = (
    "WITH RECURSIVE seen(v) AS ("
    "SELECT (SELECT {c} FROM {t} ORDER BY {c} LIMIT 1) "
    "UNION ALL SELECT (SELECT {c} FROM {t} WHERE {c} > seen.v ORDER BY {c} LIMIT 1) FROM seen WHERE seen.v IS NOT NULL"
    ") SELECT v FROM seen WHERE v IS NOT NULL")


def stored_key_ids(conn) -> set[str]:
    """The ids (hex) of the keys the database's encrypted values were made with: account numbers and
    built NACHA files and kept bank files each record theirs (`key_id`, indexed). `conn`: a
    connection or session."""
    from sqlalchemy import text

    ids: set[str] = set()
    for table in ("bank_accounts", "nacha_file_contents", "return_file_contents"):
        ids.update(conn.execute(text(_DISTINCT_BY_SEEKS.format(t=table, c="key_id"))).scalars())
    return ids


def load_keyring(key: str | None, key_file: Path | None, default_key_file: Path, *,
                 stored_ids: Callable[[], set[str] | None] | None = None) -> KeyringLoad:
    """The keyring from `security.key` (secrets separated by commas, current first), else
    `security.key_file`, else `default_key_file`.

    `stored_ids` answers which key ids the database's encrypted data needs (an empty set: none yet;
    None: cannot be told, the schema is not current). With it:
    - the default key file is created (mode 0600) only while the database holds no encrypted data;
      once it does, a missing default key file is `KeyMissingError` naming it (a new key would
      leave the stored data unreadable and mix two keys);
    - a keyring none of whose keys made any stored value is `KeyMismatchError` (a fresh current key
      during rotation is fine: the older keys of the ring still match); one that lacks some of them
      gets a warning.
    A key file readable by group or others is refused (`KeyMaterialError`), and a configured key
    file that is missing is an error (only the embedded default is ever created)."""
    cache: list[set[str] | None] = []

    def stored() -> set[str] | None:
        if not cache:
            cache.append(stored_ids() if stored_ids is not None else set())
        return cache[0]

    created = None
    source = "settings"
    if key:
        ring = Keyring(_parse_key_lines(key))
    else:
        path = key_file
        if path is None:
            path = default_key_file
            if not path.exists():
                needed = stored()
                if needed is None:
                    raise KeyMissingError(f"account key file {path} does not exist, and the database schema is "
                                          "not current, so whether stored data needs a key cannot be told: run "
                                          "`achbatch db upgrade` first")
                if needed:
                    raise KeyMissingError(
                        f"account key file {path} is missing, and the database holds data encrypted with key "
                        f"{', '.join(sorted(needed))}, which needs it: restore that file from its backup (or "
                        "configure security.key_file / ACHBATCH_SECURITY__KEY); a new key is not created, it "
                        "could not read the stored data")
                try:
                    _create_key_file(path)
                    created = path
                except FileExistsError:
                    pass  # another process created it between exists() and open(): use theirs
                except OSError as e:
                    raise KeyMaterialError(f"cannot create account key file {path}: {e.strerror}") from None
        source = str(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise KeyMaterialError(f"account key file {path} does not exist (security.key_file)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise KeyMaterialError(f"cannot read account key file {path}: {getattr(e, 'strerror', None) or e}") from None
        if mode & 0o077:
            raise KeyMaterialError(f"account key file {path} is readable or writable by group or others (mode "
                                   f"{mode:04o}): refused; chmod 600 it (and consider the key exposed)")
        lines = _parse_key_lines(text)
        if not lines:
            raise KeyMaterialError(f"account key file {path} holds no key")
        try:
            ring = Keyring(lines)
        except KeyMaterialError as e:
            raise KeyMaterialError(f"account key file {path}: {e}") from None
    warnings = []
    needed = stored() if created is None else set()
    if needed:
        have = set(ring.key_ids)
        if not have & needed:
            raise KeyMismatchError(
                f"no account key of {source} (key {', '.join(ring.key_ids)}) is one the stored data was "
                f"encrypted with (key {', '.join(sorted(needed))}): the key was replaced or is the wrong "
                "one; restore the right key (when rotating, keep the old key after the new one)")
        if needed - have:
            warnings.append(f"some stored data was encrypted with key {', '.join(sorted(needed - have))}, which "
                            f"is not in the keyring of {source}: that data cannot be read")
    return KeyringLoad(ring, source, created, tuple(warnings))


# -- rotation --------------------------------------------------------------------------------------

@dataclass
class RotationResult:
    accounts_reencrypted: int = 0
    files_reencrypted: int = 0
    accounts_checked: int = 0
    files_checked: int = 0


def rotate(session_factory: Callable, keyring: Keyring, *, batch_size: int = 500,
           progress: Callable[[str, int], None] | None = None) -> RotationResult:
    """Re-encrypt every stored account number and NACHA file not under the current key, and
    recompute account hashes with the current key. Runs in batches, one transaction each; safe to
    interrupt and re-run (rows already under the current key are skipped). Afterwards the old keys
    can be dropped from the keyring."""
    from sqlalchemy import select

    from .models import BankAccount, NachaFileContent, ReturnFileContent

    result = RotationResult()
    # Files one per transaction: each holds a whole NACHA file (about 100 MB for a million entries).
    for label, model, key, attr, context, per_batch in (
            ("bank_accounts", BankAccount, BankAccount.id, "account_number_enc", ACCOUNT_CONTEXT, batch_size),
            ("nacha_files", NachaFileContent, NachaFileContent.file_id, "content_enc", FILE_CONTEXT, 1),
            ("return_files", ReturnFileContent, ReturnFileContent.return_file_id, "content_enc",
             RETURN_FILE_CONTEXT, 1)):
        last_id = 0
        while True:
            with session_factory() as session, session.begin():
                rows = session.scalars(select(model).where(key > last_id).order_by(key).limit(per_batch)).all()
                if not rows:
                    break
                for row in rows:
                    blob = getattr(row, attr)
                    if model is BankAccount:
                        result.accounts_checked += 1
                    else:
                        result.files_checked += 1
                    if keyring.is_current(blob) and (model is not BankAccount):
                        continue
                    plain = keyring.decrypt(blob, context)
                    if model is BankAccount:
                        new_hash = keyring.account_hash(row.routing_number, plain.decode("ascii"))
                        if keyring.is_current(blob) and row.account_hash == new_hash:
                            continue
                        row.account_hash = new_hash
                        result.accounts_reencrypted += 1
                    else:
                        result.files_reencrypted += 1
                    setattr(row, attr, keyring.encrypt(plain, context))
                last_id = getattr(rows[-1], key.key)
            if progress:
                progress(label, result.accounts_checked if model is BankAccount else result.files_checked)
    return result
