"""Settings -> services: each service object built from `batch.config.Settings` in one place, for
the CLI commands (jobs/cmd_*.py) and the nightly steps (batch/nightly.py) alike.

Every function takes the Settings object. A setting that cannot work raises `ConfigurationError`
with a message naming the key; the caller says so its own way (the CLI exits 2, a nightly step
reports a configuration problem). Nothing here prints or reads the environment.
"""
from __future__ import annotations

from pathlib import Path

from .pgp import Pgp, PgpError

__all__ = ["ConfigurationError", "pgp"]


class ConfigurationError(Exception):
    """The settings cannot make this service; the message names the key."""


def pgp(settings, *, outbound: bool) -> Pgp | None:
    """The PGP helper when `[bank]` asks for it (outbound: `pgp_recipient`; inbound:
    `pgp_decrypt_inbound`), else None. Its GnuPG home is `bank.pgp_home`, by default
    `<paths.data_dir>/gnupg`; outbound, the bank's key must be there and able to encrypt."""
    b = settings.bank
    if (outbound and not b.pgp_recipient) or (not outbound and not b.pgp_decrypt_inbound):
        return None
    try:
        passphrase = None
        if b.pgp_passphrase_file is not None:
            passphrase = Path(b.pgp_passphrase_file).read_text(encoding="utf-8").strip("\r\n")
        helper = Pgp(b.pgp_home or settings.data_dir / "gnupg", recipient=b.pgp_recipient, passphrase=passphrase)
        if outbound:
            helper.check_recipient()
        return helper
    except OSError as e:
        raise ConfigurationError(f"bank.pgp_passphrase_file: {e.strerror or e}") from None
    except PgpError as e:
        raise ConfigurationError(str(e)) from None
