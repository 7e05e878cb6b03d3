"""`achbatch autopay schedule` and `achbatch originate`: create the AutoPay pulls that are due, and
build the day's NACHA files into the outbox."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from batch.run import wiring
from batch.run.datecheck import EarlierDate, check_business_date, record_override
from batch.store.db import open_database
from batch.rules.counts import counted
from batch.rules.money import dollars

from . import exitcodes
from .dates import business_date, date_option
from .settings import open_keyring, settings_from_context
from .helptext import SummaryGroup


@click.group("autopay", cls=SummaryGroup)
def autopay_group() -> None:
    """AutoPay pulls."""


@autopay_group.command("schedule")
@date_option
@click.pass_context
def schedule_cmd(ctx: click.Context, run_date) -> None:
    """Create the AutoPay pulls due on the date (idempotent: never two pulls for one premium)."""
    from batch.collect.autopay import schedule_autopay  # imported here: `originate` does not need it

    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    try:
        with open_database(settings.database_url) as sessions:
            r = schedule_autopay(sessions, d, settings.origination.autopay_lead_days, wiring.guard(settings))
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    click.echo(f"autopay {d}: {counted(r.created, 'pull')} created ({dollars(r.created_cents)}) "
               f"for premiums due {r.due_date}; "
               f"{r.already_scheduled} already scheduled, {r.covered} already paid, "
               f"{r.not_due_yet} not due yet, {r.account_blocked} held (account blocked)")
    if r.not_authorized:
        click.echo(f"  {counted(r.not_authorized, 'premium')} due before their AutoPay authorization: not pulled")
    if r.refused:
        click.echo(f"  {counted(r.refused, 'pull')} refused by the debit rules:")
        for premium_id, why in r.refusals[:20]:
            click.echo(f"    premium {premium_id}: {why}")
        if r.refused > 20:
            click.echo(f"    ... and {r.refused - 20} more")
    if r.amount_held:
        click.echo(f"  {counted(r.amount_held, 'pull')} above the amount their mandate authorized, without 10 days' notice: "
                   "held, put on the review list (autopay_amount_change)")
    if r.amount_sent_late:
        click.echo(f"  {counted(r.amount_sent_late, 'pull')} above the authorized amount sent without 10 days' notice "
                   "(origination.amount_change_late = \"send\"); the notice goes out now")
    sys.exit(exitcodes.DATA_PROBLEMS if r.amount_held else exitcodes.OK)


@click.command("originate")
@date_option
@click.option("--dry-run", is_flag=True, help="Build and validate in memory; change nothing.")
@click.option("--allow-earlier-date", is_flag=True,
              help="Originate for a business date earlier than the latest already run (refused otherwise, exit 2).")
@click.pass_context
def originate_cmd(ctx: click.Context, run_date, dry_run: bool, allow_earlier_date: bool) -> None:
    """Build the day's NACHA file(s) into the outbox. Re-running for the same date builds nothing new;
    a date earlier than the latest nightly or originate already run, and not run before, is refused
    (exit 2) unless --allow-earlier-date."""
    from batch.collect.origination import LockHeld, OriginationError, originate

    settings = settings_from_context(ctx)
    o = settings.origination
    d = business_date(run_date, o.zone)
    keyring = open_keyring(settings)
    show = sys.stderr.isatty()

    def progress(n: int) -> None:
        if show:
            click.echo(f"\r  {n:,} entries", nl=False, err=True)

    try:
        with open_database(settings.database_url) as sessions:
            with sessions() as s:
                earlier_than = check_business_date(s, "originate", d, allow_earlier=allow_earlier_date)
            if earlier_than is not None:
                click.echo(f"achbatch: originate {d}: earlier than {earlier_than}, the latest business date already "
                           "run: allowed by --allow-earlier-date", err=True)
            started = datetime.now(timezone.utc)
            r = originate(sessions, keyring, wiring.company(settings), wiring.limits(settings), d,
                          settings.outbox_dir, dry_run=dry_run,
                          file_time=datetime.now(o.zone).strftime("%H%M"), progress=progress,
                          guard=wiring.guard(settings), validation=wiring.validation(settings))
            if earlier_than is not None and not dry_run:
                # the override goes into the run ledger, as a nightly run's does (runs.summary)
                outcome = r.skipped_reason or (
                    f"built {counted(len(r.files), 'file')}, {counted(r.payments, 'payment')}, "
                    f"{dollars(r.total_cents)}" + (f", {', '.join(f.file_name for f in r.files)}" if r.files else ""))
                code = exitcodes.DATA_PROBLEMS if r.review_items and not r.skipped_reason else exitcodes.OK
                run_id = record_override(sessions, "originate", d, earlier_than, outcome=outcome, exit_code=code,
                                         started_at=started)
                click.echo(f"achbatch: originate {d}: the override is recorded in the run ledger (run {run_id})",
                           err=True)
    except EarlierDate as e:
        exitcodes.fail(exitcodes.USAGE, str(e))
    except OriginationError as e:
        click.echo(f"achbatch: originate {d}: {e}", err=True)
        sys.exit(exitcodes.DATA_PROBLEMS)
    except LockHeld as e:
        exitcodes.fail(exitcodes.LOCKED, f"originate {d}: skipped: another origination holds the origination lock "
                                         f"{e.holder.describe()}; nothing changed")
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    finally:
        if show:
            click.echo("", err=True)
    for name in r.repaired:
        click.echo(f"  rewrote {name} in the outbox from its stored bytes (a previous run stopped before renaming it)")
    if r.skipped_reason:
        click.echo(f"originate {d}: {r.skipped_reason}")
        sys.exit(exitcodes.OK)
    if r.stopped:
        verb = "would stop" if dry_run else "stopped"
        click.echo(f"  {verb} {counted(len(r.stopped), 'debit')} the debit rules forbid (marked failed, never sent):")
        for pid, why in sorted(r.stopped.items())[:20]:
            click.echo(f"    payment {pid}: {why}")
        if len(r.stopped) > 20:
            click.echo(f"    ... and {len(r.stopped) - 20} more (see each payment's events)")
        stopped_reviews = r.review_items - (r.validation.review_items if r.validation is not None else 0)
        if stopped_reviews:
            whom = "a member payment" if stopped_reviews == 1 else "member payments"
            click.echo(f"  {stopped_reviews} of them {whom}: put on the review list")
    if r.reduced:
        verb = "would lower" if dry_run else "lowered"
        click.echo(f"  {verb} {counted(len(r.reduced), 'AutoPay pull')} to the remainder still owed (the rest is paid "
                   "another way)")
    done = exitcodes.DATA_PROBLEMS if r.review_items else exitcodes.OK
    what = "would build" if dry_run else "built"
    if not r.files:
        click.echo(f"originate {d}: nothing to originate" + (f" ({r.held} held: account blocked)" if r.held else ""))
        _validation_lines(r)
        sys.exit(done)
    click.echo(f"originate {d}: {what} {counted(len(r.files), 'file')}, {counted(r.payments, 'payment')}, "
               f"{dollars(r.total_cents)}, "
               f"effective {r.effective_date}")
    for f in r.files:
        where = f" -> {f.path}" if f.path else ""
        click.echo(f"  {f.file_name}: {counted(f.batches, 'batch')}, {f.entries_words()}, "
                   f"debits {dollars(f.total_debit_cents)}, "
                   f"credits {dollars(f.total_credit_cents)}, sha256 {f.sha256[:16]}{where}")
    if r.held:
        click.echo(f"  {counted(r.held, 'payment')} held: their bank account is blocked")
    _validation_lines(r)
    sys.exit(done)


def _validation_lines(r) -> None:
    v = r.validation
    if v is None:
        return
    if r.prenotes:
        click.echo(f"  {counted(r.prenotes, 'prenote')} of new WEB accounts (zero-dollar entries, codes 28/38)")
    if v.validated:
        click.echo(f"  {counted(v.validated, 'account')} validated")
    if v.still_held or v.released:
        click.echo(f"  {counted(v.still_held, 'first-use WEB payment')} held until their account is validated, "
                   f"{v.released} released")
    if v.review_items:
        click.echo(f"  {counted(v.review_items, 'held payment')} would miss their premium's due date: put on the review list")
    if v.risk_accepted:
        click.echo(f"  {counted(v.risk_accepted, 'first-use WEB payment')} sent before their account was validated "
                   "([validation] first_use = send: recorded on each)")


def register(cli: click.Group) -> None:
    cli.add_command(autopay_group)
    cli.add_command(originate_cmd)
