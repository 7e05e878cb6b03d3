"""`achbatch returns process [FILE...] [--date D]`: apply the bank's return and NOC files (the named
files, or with none every inbox file not yet processed), then issue the members' notices."""
from __future__ import annotations

import sys

import click
import jinja2

from batch.run import wiring
from batch.rules.counts import counted
from batch.store.db import open_database
from batch.collect.notices import issue_notices
from batch.collect.returns import (
    FileOutcome,
    cancel_unneeded_retries,
    outcome_words,
    process_inbox,
    process_return_files,
)

from . import exitcodes
from .cmd_returns_group import returns_group
from .dates import business_date, date_option
from .settings import open_keyring, settings_from_context


def _report(out: FileOutcome) -> None:
    name = out.path
    click.echo(f"{name}: {outcome_words(out)}")
    if out.status == "applied":
        bits = [f"{counted(out.retries_scheduled, 're-presentment')} scheduled",
                f"{counted(out.accounts_blocked, 'account')} blocked",
                f"{counted(out.mandates_suspended, 'AutoPay mandate')} suspended", f"{out.mandates_revoked} revoked",
                f"{counted(out.payments_failed, 'payment')} failed",
                f"{counted(out.nocs_refused, 'refused NOC')} recorded"]
        click.echo("  " + ", ".join(bits))
        if out.review_items:
            click.echo(f"  {counted(out.review_items, 'entry')} put on the review list (review_items)", err=True)
    for line in out.errors:
        click.echo(f"  {line}", err=True)
    for line in out.warnings:
        click.echo(f"  warning: {line}", err=True)


@returns_group.command("process")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@date_option
@click.pass_context
def process_cmd(ctx: click.Context, files: tuple[str, ...], run_date) -> None:
    """Apply return and NOC files (each in one transaction, each applied once). With no FILE,
    every inbox file fetched and not yet processed. Exit 1 when a file is rejected or entries
    need review."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings)
    policy = wiring.return_policy(settings)
    try:
        with open_database(settings.database_url) as sessions:
            if files:
                result = process_return_files(sessions, keyring, files, d, policy, on_file=_report)
            else:
                result = process_inbox(sessions, keyring, settings.inbox_dir, d, policy, on_file=_report)
            result.retries_cancelled = cancel_unneeded_retries(sessions, d)
            notices = issue_notices(sessions, settings.notices_dir, d,
                                    templates_dir=settings.paths.notices_templates, sender=wiring.sender_name(settings))
    except jinja2.TemplateError as e:  # a notice template (most likely an override) is broken
        click.echo(f"achbatch: notice template error: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if not result.files:
        click.echo(f"returns {d}: no files to process")
    if result.retries_cancelled:
        click.echo(f"  {result.retries_cancelled} pending re-presentments cancelled (premium paid another way)")
    if notices.created:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(notices.by_kind.items()))
        click.echo(f"notices: {notices.created} written ({kinds}); manifest {notices.manifest}")
    sys.exit(exitcodes.DATA_PROBLEMS if result.problems else exitcodes.OK)


def register(cli: click.Group) -> None:
    if cli.commands.get("returns") is not returns_group:
        cli.add_command(returns_group)
