"""`achbatch coverage assess [--date D]`: recompute every policy's coverage standing, store the
flags (history kept) and issue the members' notices for new or changed flags at risk."""
from __future__ import annotations

import sys

import click
import jinja2

from batch.run import wiring
from batch.rules.counts import counted
from batch.collect.coverage import assess_coverage
from batch.store.db import open_database
from batch.store.models import COVERAGE_STATUSES
from batch.collect.notices import issue_notices
from batch.collect.returns import cancel_unneeded_retries

from . import exitcodes
from .dates import business_date, date_option
from .settings import settings_from_context
from .helptext import SummaryGroup

_ORDER = COVERAGE_STATUSES  # ok, at_risk, not_started, past_due, termination_pending, terminated


@click.group("coverage", cls=SummaryGroup)
def coverage_group() -> None:
    """Coverage standing and flags."""


@coverage_group.command("assess")
@date_option
@click.pass_context
def assess_cmd(ctx: click.Context, run_date) -> None:
    """Recompute every policy's standing as of the date; one current flag per policy."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    try:
        with open_database(settings.database_url) as sessions:
            cancelled = cancel_unneeded_retries(sessions, d)
            r = assess_coverage(sessions, d, wiring.coverage_rules(settings), tz=settings.origination.zone)
            notices = issue_notices(sessions, settings.notices_dir, d,
                                    templates_dir=settings.paths.notices_templates, sender=wiring.sender_name(settings))
    except jinja2.TemplateError as e:  # a notice template (most likely an override) is broken
        click.echo(f"achbatch: notice template error: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    counts = ", ".join(f"{r.by_status.get(st, 0)} {st}" for st in _ORDER)
    click.echo(f"coverage {d}: {counted(r.policies, 'policy')} ({counts}); {r.new} new, {r.changed} changed, "
               f"{r.unchanged} unchanged")
    echo_follow_ups(cancelled, notices)
    sys.exit(exitcodes.OK)


def echo_follow_ups(cancelled: int, notices) -> None:
    """What a coverage assessment did besides the flags: re-presentments it cancelled, notices it
    wrote (`coverage assess` and `review resolve --action apply`)."""
    if cancelled:
        click.echo(f"  {counted(cancelled, 'pending re-presentment')} cancelled (premium paid another way)")
    if notices.created:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(notices.by_kind.items()))
        click.echo(f"notices: {notices.created} written ({kinds}); manifest {notices.manifest}")


def register(cli: click.Group) -> None:
    cli.add_command(coverage_group)
