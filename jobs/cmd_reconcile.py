"""`achbatch reconcile bank FILE... [--date D] [--json]`: tie the bank's BAI2 statements out to the
NACHA files we sent and the return files the bank sent us (batch/collect/bank_statement.py;
docs/finance.md)."""
from __future__ import annotations

import json
import sys

import click

from batch.collect.bank_statement import StatementCodes, StatementOutcome, reconcile_files
from batch.rules.counts import counted
from batch.rules.money import dollars
from batch.store.db import open_database

from . import exitcodes
from .dates import business_date, date_option
from .helptext import SummaryGroup
from .settings import settings_from_context


@click.group("reconcile", cls=SummaryGroup)
def reconcile_group() -> None:
    """Tie out to the bank: its BAI2 statements against what we sent and what it returned."""


def _as_json(out: StatementOutcome) -> dict:
    t = out.tie
    d = {"file": out.path, "sha256": out.sha256, "status": out.status,
         "as_of": out.as_of.isoformat() if out.as_of else None, "review_items": out.review_items,
         "error": out.error, "line": out.error_line}
    if t is not None:
        d["matched"] = [{"line": m.detail.line, "type_code": m.detail.type_code, "amount_cents": m.detail.amount_cents,
                         "kind": m.expected.kind, "name": m.expected.name, "settles_on": m.expected.settles_on.isoformat(),
                         "basis": m.basis} for m in t.matched]
        d["missing"] = [{"kind": e.kind, "name": e.name, "settles_on": e.settles_on.isoformat(),
                         "amount_cents": e.amount_cents} for e in t.missing]
        d["unexplained"] = [{"line": x.line, "type_code": x.type_code, "direction": x.direction,
                             "amount_cents": x.amount_cents} for x in t.unexplained]
    return d


def _say(out: StatementOutcome) -> None:
    click.echo(f"{out.path}: {out.words()}")
    t = out.tie
    if t is None:
        return
    for m in t.matched:
        click.echo(f"  matched    line {m.detail.line}: {m.detail.type_code} {dollars(m.detail.amount_cents)} = "
                   f"{m.expected.kind.replace('_', ' ')} {m.expected.name} settling {m.expected.settles_on} "
                   f"({m.basis})")
    for e in t.missing:
        click.echo(f"  NOT POSTED {e.kind.replace('_', ' ')} {e.name}: {dollars(e.amount_cents)} expected on "
                   f"{e.settles_on}")
    for x in t.unexplained:
        click.echo(f"  UNEXPLAINED line {x.line}: {x.type_code} {x.direction} {dollars(x.amount_cents)}")
    if out.review_items:
        click.echo(f"  {counted(out.review_items, 'item')} put on the review list (achbatch review list --kind bank_unmatched)",
                   err=True)


@reconcile_group.command("bank")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {date, files: [...]}.")
@date_option
@click.pass_context
def bank_cmd(ctx: click.Context, files: tuple[str, ...], as_json: bool, run_date) -> None:
    """Tie BAI2 statements out: each sent NACHA file to the bank's ACH settlement credit, each return
    file to its ACH return settlement debit. Each file is read whole (a malformed one is rejected with
    its line and reason, nothing recorded) and reconciled once; what does not match goes to the review
    list (kind bank_unmatched). Exit 1 when a file is rejected or anything is unmatched."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    try:
        with open_database(settings.database_url) as sessions:
            outs = reconcile_files(sessions, files, d, StatementCodes.from_settings(settings.bank))
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if as_json:
        click.echo(json.dumps({"date": d.isoformat(), "files": [_as_json(o) for o in outs]}, indent=2))
    else:
        for o in outs:
            _say(o)
    sys.exit(exitcodes.DATA_PROBLEMS if any(o.problems for o in outs) else exitcodes.OK)


def register(cli: click.Group) -> None:
    if cli.commands.get("reconcile") is not reconcile_group:
        cli.add_command(reconcile_group)
