"""`achbatch send` (deliver built NACHA files to the bank) and `achbatch returns fetch` (download the
bank's files into the inbox). Exit codes: 0 all delivered / fetched; 1 a file was refused or failed
for a data reason (named on stderr); 2 configuration error (settings, host key, login, PGP key, a
bank folder that cannot be written) or a conflict (a file not proven ours under our name at the
bank); 3 another send/fetch holds the lock; 75 the bank stayed unreachable or could not take a file
for now (its disk full, or an upload failure it does not explain): nothing is lost, run again."""
from __future__ import annotations

import sys

import click

from batch.run import wiring
from batch.store.db import open_database
from batch.bank.delivery import send_files
from batch.bank.inbound import fetch_files
from batch.rules.counts import counted

from . import exitcodes
from .cmd_returns_group import returns_group
from .dates import date_option
from .settings import open_keyring, settings_from_context


def _transport(settings):
    try:
        return wiring.transport(settings)
    except wiring.ConfigurationError as e:
        exitcodes.fail(exitcodes.USAGE, f"configuration error: {e}")


def _pgp(settings, *, outbound: bool):
    try:
        return wiring.pgp(settings, outbound=outbound)
    except wiring.ConfigurationError as e:
        exitcodes.fail(exitcodes.USAGE, f"configuration error: {e}")


def _log(message: str) -> None:
    click.echo(f"  {message}", err=True)


@click.command("send")
@date_option
@click.pass_context
def send_cmd(ctx: click.Context, run_date) -> None:
    """Deliver every built file not yet confirmed at the bank (only those of --date when given).

    Upload under a temporary name, verify, rename; after an interrupted try the bank's folder is
    checked first, so a file is never delivered twice."""
    settings = settings_from_context(ctx)
    keyring = open_keyring(settings)
    transport = _transport(settings)
    pgp = _pgp(settings, outbound=True)
    try:
        with open_database(settings.database_url) as sessions:
            r = send_files(sessions, keyring, transport, wiring.delivery_policy(settings),
                           archive_dir=settings.archive_dir, outbox=settings.outbox_dir, file_date=run_date,
                           pgp=pgp, transport_kind=settings.bank.transport, log=_log)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if r.locked:
        exitcodes.fail(exitcodes.LOCKED, "send: another send is running (lock held); nothing done")
    scope = f" of {run_date}" if run_date else ""
    if not r.files:
        click.echo(f"send: nothing to send{scope}")
        sys.exit(exitcodes.OK)
    click.echo(f"send: {len(r.delivered)} of {counted(len(r.files), 'file')}{scope} delivered to {r.where}")
    for f in r.files:
        pgp_note = ", PGP" if f.pgp else ""
        if f.outcome == "sent":
            click.echo(f"  {f.file_name}: sent as {f.remote_name}, {f.size:,} bytes{pgp_note}, "
                       f"sha256 {f.sha256[:16]}, attempt {f.attempts}")
        elif f.outcome == "already_there":
            click.echo(f"  {f.file_name}: already complete at the bank as {f.remote_name} ({f.size:,} bytes, "
                       f"read back: sha256 {f.sha256[:16]} matches): confirmed, not sent again")
        elif f.outcome == "confirmed_elsewhere":
            click.echo(f"  {f.file_name}: confirmed at the bank as {f.remote_name} by another run meanwhile")
        elif f.outcome == "not_tried":
            click.echo(f"  {f.file_name}: not tried (see above)")
        else:
            click.echo(f"  {f.file_name}: NOT DELIVERED ({f.outcome})")
            click.echo(f"achbatch: send {f.file_name}: {f.error}", err=True)
    if r.config_error:
        exitcodes.fail(exitcodes.USAGE, f"send: configuration error: {r.config_error}")
    if r.conflicts:
        exitcodes.fail(exitcodes.USAGE, f"send: {counted(len(r.conflicts), 'file')} in conflict with a file at the bank "
                                        "(see above); nothing sent or marked sent for them: check with the bank")
    if r.temporary:
        exitcodes.fail(exitcodes.TEMPFAIL, f"send: the bank could not take a file for now ({r.temporary}); "
                                           f"{counted(len(r.files) - len(r.delivered), 'file')} left ready for the next run")
    if r.refused:
        exitcodes.fail(exitcodes.DATA_PROBLEMS, f"send: {counted(len(r.refused), 'file')} refused or failed; see above")
    if r.unreachable:
        left = counted(len(r.files) - len(r.delivered), "file")
        exitcodes.fail(exitcodes.TEMPFAIL, f"send: the bank is unreachable ({r.unreachable}); "
                                           f"{left} left ready for the next run")
    sys.exit(exitcodes.OK)


@returns_group.command("fetch")
@click.pass_context
def fetch_cmd(ctx: click.Context) -> None:
    """Download the bank's new return, NOC and acknowledgement files into the inbox (a file seen
    before is not downloaded again); move them to the bank's archive folder when configured."""
    settings = settings_from_context(ctx)
    transport = _transport(settings)
    pgp = _pgp(settings, outbound=False)
    try:
        with open_database(settings.database_url) as sessions:
            r = fetch_files(sessions, transport, wiring.inbound_policy(settings), inbox=settings.inbox_dir,
                            archive_dir=settings.archive_dir, pgp=pgp, log=_log)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if r.locked:
        exitcodes.fail(exitcodes.LOCKED, "returns fetch: another fetch is running (lock held); nothing done")
    for name in r.restored:
        click.echo(f"  restored {name} in the inbox from the archive copy (a previous run stopped early)")
    new = r.received
    click.echo(f"returns fetch: {counted(len(new), 'new file')} from {r.where}")
    for f in r.files:
        if f.outcome == "received":
            extra = ", decrypted" if f.decrypted else ""
            moved = f", moved to the bank's archive as {f.remote_archived}" if f.remote_archived else ""
            click.echo(f"  {f.remote_name}: {f.size:,} bytes, sha256 {f.sha256[:16]} -> inbox/{f.local_name}"
                       f"{extra}{moved}")
        elif f.outcome == "duplicate":
            click.echo(f"  {f.remote_name}: same content as a file fetched before (sha256 {f.sha256[:16]}): "
                       "not processed again")
        elif f.outcome == "failed":
            click.echo(f"  {f.remote_name}: FAILED")
            click.echo(f"achbatch: returns fetch {f.remote_name}: {f.error}", err=True)
    for w in r.warnings:
        click.echo(f"achbatch: warning: {w}", err=True)
    if r.config_error:
        exitcodes.fail(exitcodes.USAGE, f"returns fetch: configuration error: {r.config_error}")
    if r.failed:
        exitcodes.fail(exitcodes.DATA_PROBLEMS, f"returns fetch: {counted(len(r.failed), 'file')} failed; see above")
    if r.bad_names and not r.unreachable:
        exitcodes.fail(exitcodes.DATA_PROBLEMS, f"returns fetch: {counted(len(r.bad_names), 'file')} with a name "
                                                "that is not a plain file name skipped (see above and the review list)")
    if r.unreachable:
        exitcodes.fail(exitcodes.TEMPFAIL, f"returns fetch: the bank is unreachable ({r.unreachable}); run again later")
    sys.exit(exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(send_cmd)
    if cli.commands.get("returns") is not returns_group:
        cli.add_command(returns_group)
