"""A built NACHA file's stored bytes: decrypted and checked against the sha256 recorded when it was
built, so a file is re-sent as the same bytes and never rebuilt (origination writes them, delivery
and reports read them)."""
from __future__ import annotations

import hashlib

from .crypto import FILE_CONTEXT, Keyring
from .models import NachaFile

__all__ = ["StoredBytesError", "stored_bytes"]


class StoredBytesError(Exception):
    """A built file's stored bytes are missing or no longer match their recorded sha256."""


def stored_bytes(keyring: Keyring, row: NachaFile, content_enc: bytes | None = None) -> bytes:
    """A built file's bytes as recorded at origination, checked against its sha256. `content_enc`:
    the file's stored ciphertext when the caller read it itself (else `row.content_enc` loads it)."""
    blob = row.content_enc if content_enc is None else content_enc
    if blob is None:
        raise StoredBytesError(f"{row.file_name}: its stored bytes are missing")
    data = keyring.decrypt(blob, FILE_CONTEXT)
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise StoredBytesError(f"{row.file_name}: stored bytes do not match the recorded sha256")
    return data

