"""Settings -> services: each service object built from `batch.config.Settings` in one place, for
the CLI commands (jobs/cmd_*.py) and the nightly steps (batch/run/nightly.py) alike.

Every function takes the Settings object. A setting that cannot work raises `ConfigurationError`
with a message naming the key; the caller says so its own way (the CLI exits 2, a nightly step
reports a configuration problem). Nothing here prints or reads the environment.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

# Each function imports the service it builds when called: a command that needs one service (e.g.
# `autopay schedule` the debit rules, `send` the transport) does not import them all at start-up.
if TYPE_CHECKING:
    from ..bank.delivery import DeliveryPolicy
    from ..bank.inbound import InboundPolicy
    from ..bank.pgp import Pgp
    from ..bank.transport import Transport
    from ..collect.origination import Company, Limits
    from ..collect.returns import ReturnPolicy
    from ..rules.coverage import CoverageRules
    from ..rules.debit_rules import GuardSettings
    from ..rules.validation import ValidationPolicy

__all__ = ["ConfigurationError", "company", "coverage_rules", "delivery_policy", "guard", "inbound_policy", "validation",
           "keyring", "limits", "pgp", "return_policy", "sender_name", "transport"]


class ConfigurationError(Exception):
    """The settings cannot make this service; the message names the key."""


def pgp(settings, *, outbound: bool) -> Pgp | None:
    """The PGP helper when `[bank]` asks for it (outbound: `pgp_recipient`; inbound:
    `pgp_decrypt_inbound`), else None. Its GnuPG home is `bank.pgp_home`, by default
    `<paths.data_dir>/gnupg`; outbound, the bank's key must be there and able to encrypt."""
    from ..bank.pgp import Pgp, PgpError

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


def keyring(settings):
    """The account-number keyring named by `[security]` (a `batch.store.crypto.KeyringLoad`),
    checked against the key ids the database records: the embedded default key file is created only
    while the database holds no encrypted data, and a keyring that matches none of the stored
    data's keys is refused. A key problem is a ConfigurationError; a database that cannot be
    reached raises the store's DatabaseError (the caller says so as for any database error)."""
    from ..store.crypto import CryptoError, load_keyring

    sec = settings.security
    try:
        return load_keyring(sec.key.get_secret_value() if sec.key else None, sec.key_file, settings.default_key_file,
                            stored_ids=lambda: database_key_ids(settings.database_url))
    except CryptoError as e:
        raise ConfigurationError(f"security: {e}") from None


def database_key_ids(url: str) -> set[str] | None:
    """The key ids the database's encrypted values need; empty when there is no schema yet (nothing
    stored), None when the schema is not at this code's revision (cannot be told)."""
    from ..store.crypto import stored_key_ids
    from ..store.db import current_revision_or_raise, head_revision, make_engine

    engine = make_engine(url)
    try:
        rev = current_revision_or_raise(engine)
        if rev is None:
            return set()
        if rev != head_revision():
            return None
        with engine.connect() as conn:
            return stored_key_ids(conn)
    finally:
        engine.dispose()


def transport(settings) -> Transport:
    """The bank connection named by `[bank] transport` (the local folder or SFTP); not yet connected."""
    from ..bank.transport import TransportConfigError, transport_from_settings

    try:
        return transport_from_settings(settings)
    except TransportConfigError as e:
        raise ConfigurationError(str(e)) from None


def delivery_policy(settings) -> DeliveryPolicy:
    """How built files are named and sent to the bank (`[bank]`)."""
    from ..bank.delivery import DeliveryPolicy

    return DeliveryPolicy.from_settings(settings.bank)


def inbound_policy(settings) -> InboundPolicy:
    """Which of the bank's files are fetched, and how (`[bank]`)."""
    from ..bank.inbound import InboundPolicy

    return InboundPolicy.from_settings(settings.bank)


def statement_policy(settings) -> InboundPolicy:
    """Which of the bank's files are its BAI2 statements (`[bank] statements`), fetched the same way."""
    from ..bank.inbound import InboundPolicy

    return InboundPolicy.statements_from_settings(settings.bank)


def company(settings) -> Company:
    """Who we are in the NACHA file headers (`[company]`)."""
    from ..collect.origination import Company

    return Company.from_settings(settings.company)


def limits(settings) -> Limits:
    """How large one NACHA file may grow, and whether it carries an offset (`[origination]`)."""
    from ..collect.origination import Limits

    o = settings.origination
    return Limits(o.max_entries_per_file, o.max_cents_per_file, o.balanced)


def guard(settings) -> GuardSettings:
    """What the debit rules need from the settings (coverage rules, time zone)."""
    from ..rules.debit_rules import GuardSettings

    return GuardSettings.from_settings(settings)


def validation(settings) -> ValidationPolicy:
    """WEB debit account validation (`[validation]`): prenotes, and what a first-use payment does."""
    from ..rules.validation import ValidationPolicy

    return ValidationPolicy.from_settings(settings.validation)


def return_policy(settings) -> ReturnPolicy:
    """How returns are handled: the re-presentment delay (`origination.retry_delay_banking_days`),
    NACHA's reinitiation limits, and the debit rules."""
    from ..collect.returns import ReturnPolicy

    return ReturnPolicy(retry_delay_banking_days=settings.origination.retry_delay_banking_days,
                        guard=guard(settings))


def coverage_rules(settings) -> CoverageRules:
    """Grace periods and the payment threshold of coverage standing (`[coverage]`)."""
    from ..rules.coverage import CoverageRules

    return CoverageRules.from_settings(settings.coverage)


def sender_name(settings) -> str:
    """The organisation named on member notices (the company name, as people write it)."""
    return settings.company.name.title()
