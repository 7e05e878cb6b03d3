"""Optional PGP for bank files (python-gnupg over the gpg binary, with achbatch's own home folder):
encrypt outbound files to the bank's public key, decrypt inbound files with our private key.

python-gnupg reports failures in `.ok`/`.status` rather than raising: every call is checked here
and a failure becomes a `PgpError` naming the key and gpg's status.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["Pgp", "PgpError", "PGP_SUFFIXES"]

PGP_SUFFIXES = (".pgp", ".gpg", ".asc")


class PgpError(Exception):
    """gpg could not encrypt or decrypt (missing key, wrong passphrase, not PGP data)."""


class Pgp:
    def __init__(self, home: Path, *, recipient: str | None = None, passphrase: str | None = None):
        try:
            import gnupg
        except ImportError:  # pragma: no cover - a declared dependency
            raise PgpError("PGP is configured but python-gnupg is not installed") from None
        self.home = Path(home)
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.home, 0o700)  # gpg warns about (and some versions refuse) open homes
        except OSError as e:
            raise PgpError(f"PGP home {self.home}: {e.strerror or e}") from None
        try:
            self.gpg = gnupg.GPG(gnupghome=str(self.home))
        except (OSError, ValueError, RuntimeError) as e:
            raise PgpError(f"cannot run gpg (home {self.home}): {e}") from None
        self.recipient = recipient
        self.passphrase = passphrase

    def check_recipient(self) -> str:
        """The recipient key's fingerprint; PgpError when it is not in the home folder or cannot encrypt."""
        if not self.recipient:
            raise PgpError("no PGP recipient configured (bank.pgp_recipient)")
        keys = self.gpg.list_keys(keys=[self.recipient])
        usable = [k for k in keys if "e" in (k.get("cap") or "").lower()
                  or any("e" in (sk[1] if len(sk) > 1 else "") for sk in k.get("subkeys", []))]
        if not keys:
            raise PgpError(f"the bank's PGP key {self.recipient!r} is not in {self.home} (import it with "
                           f"gpg --homedir {self.home} --import BANK.asc)")
        if not usable:
            raise PgpError(f"the PGP key {self.recipient!r} in {self.home} cannot encrypt (expired or revoked?)")
        return keys[0]["fingerprint"]

    def encrypt(self, data: bytes) -> bytes:
        """Binary OpenPGP message for the recipient. The key is pinned by the settings (a fingerprint
        is best), so gpg's web of trust is not consulted (always_trust)."""
        fpr = self.check_recipient()
        r = self.gpg.encrypt(data, [fpr], armor=False, always_trust=True)
        if not r.ok:
            raise PgpError(f"gpg could not encrypt to {self.recipient!r}: {r.status} {r.stderr.strip()[-300:]}")
        return r.data

    def decrypt(self, data: bytes, name: str = "") -> bytes:
        r = self.gpg.decrypt(data, passphrase=self.passphrase)
        if not r.ok:
            raise PgpError(f"gpg could not decrypt {name or 'the file'}: {r.status or 'not PGP data'}")
        return r.data

    @staticmethod
    def looks_encrypted(data: bytes) -> bool:
        """An ASCII-armored message, or a binary OpenPGP packet (high bit set on the first byte)."""
        return data.startswith(b"-----BEGIN PGP MESSAGE-----") or (len(data) > 0 and data[0] & 0x80 == 0x80)
