"""`achbatch db upgrade` (create or migrate the schema) and `achbatch db rotate-keys` (re-encrypt
stored account numbers and files under the current key)."""
from __future__ import annotations

import sys

import click

from batch.rules.counts import counted
from batch.store.db import DatabaseError, open_database, upgrade

from . import exitcodes
from .settings import open_keyring, settings_from_context
from .helptext import SummaryGroup


@click.group("db", cls=SummaryGroup)
def db_group() -> None:
    """Database schema and stored secrets."""


@db_group.command("upgrade")
@click.pass_context
def upgrade_cmd(ctx: click.Context) -> None:
    """Create or migrate the schema to the latest revision (Alembic). Safe to re-run."""
    settings = settings_from_context(ctx)
    try:
        before, after = upgrade(settings.database_url)
    except DatabaseError as e:
        exitcodes.fail_database(e)
    if before == after:
        click.echo(f"database schema already at revision {after}")
    else:
        click.echo(f"database schema upgraded from {before or 'empty'} to revision {after}")
    sys.exit(exitcodes.OK)


@db_group.command("rotate-keys")
@click.pass_context
def rotate_keys_cmd(ctx: click.Context) -> None:
    """Re-encrypt every stored account number and NACHA file under the current key (the first one
    in the key file or ACHBATCH_SECURITY__KEY) and recompute account hashes. Afterwards older keys
    can be removed. Safe to interrupt and re-run."""
    from batch.store.crypto import CryptoError, rotate

    settings = settings_from_context(ctx)
    keyring = open_keyring(settings)
    try:
        with open_database(settings.database_url) as sessions:
            result = rotate(sessions, keyring)
    except DatabaseError as e:
        exitcodes.fail_database(e)
    except CryptoError as e:
        click.echo(f"achbatch: key rotation stopped: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    click.echo(f"current key {keyring.current_key_id}: re-encrypted {result.accounts_reencrypted} of "
               f"{counted(result.accounts_checked, 'bank account')} and {result.files_reencrypted} of "
               f"{counted(result.files_checked, 'NACHA file')}")
    sys.exit(exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(db_group)
