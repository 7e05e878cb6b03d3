"""`achbatch validate` and `achbatch inspect`: the NACHA library on the command line."""
from __future__ import annotations

import json
import sys

import click

from batch.rules.counts import counted as _count
from batch.rules.money import dollars
from nacha.describe import describe
from nacha.profile import PROFILES
from nacha.reader import validate_file

from . import exitcodes


# A warning line starts with this, so a person (or grep) tells it from an error line.
WARNING_PREFIX = "warning: "


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="strict", show_default=True,
              help="strict: what we write; bank: what real banks send (CRLF, no filler, trimmed lines, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, valid, errors, warnings}.")
def validate_cmd(files, profile, as_json):
    """Validate NACHA files. Exit 0 when all are valid, 1 when any is not. Warnings (e.g. a return
    reason code the tables do not know) are listed and leave a file valid."""
    results = []
    any_invalid = False
    for path in files:
        r = validate_file(path, profile)
        any_invalid |= bool(r.issues)
        results.append((path, r))
        if not as_json:
            warned = f"; {_count(len(r.warnings), 'warning')}" if r.warnings else ""
            if r.issues:
                click.echo(f"{path}: INVALID ({_count(len(r.issues), 'problem')}{warned})")
                for i in r.issues:
                    click.echo(f"  {i}")
            else:
                s = r.summary
                click.echo(f"{path}: valid ({_count(s.batches, 'batch')}, {_count(s.entries, 'entry')}, "
                           f"debits {dollars(s.total_debit_cents)}, credits {dollars(s.total_credit_cents)}{warned})")
            for w in r.warnings:
                click.echo(f"  {WARNING_PREFIX}{w}")
    if as_json:
        click.echo(json.dumps([
            {"file": path, "valid": not r.issues, "errors": [i.to_json() for i in r.issues],
             "warnings": [w.to_json() for w in r.warnings]}
            for path, r in results
        ], indent=2))
    sys.exit(exitcodes.DATA_PROBLEMS if any_invalid else exitcodes.OK)


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="bank", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--entries", "show_entries", is_flag=True,
              help="Also list every entry: trace, transaction code, routing, account (masked), amount, name.")
def inspect_cmd(file, profile, as_json, show_entries):
    """Summarise a NACHA file: batches, entries, totals, returns and NOCs (accounts masked).
    Exit 1 when the file has problems (they are listed after the summary); warnings are listed too
    and leave the exit code alone."""
    summary, issues = describe(file, profile, entries=show_entries)
    warnings = summary["warnings"]
    if as_json:
        out = {k: summary[k] for k in ("file", "file_id_modifier", "batches", "entries", "total_debit_cents",
                                       "total_credit_cents", "entry_hash", "sec_codes", "returns", "nocs")}
        out["valid"] = not issues
        out["errors"] = [i.to_json() for i in issues]
        out["warnings"] = [w.to_json() for w in warnings]
        if show_entries:
            out["entry_list"] = summary["entry_list"]
        click.echo(json.dumps(out, indent=2))
    else:
        s = summary
        h = s["header"]
        click.echo(f"{s['file']}  (file ID modifier {s['file_id_modifier'] or '-'})")
        if h:
            created = " ".join(x for x in (h["creation_date"], h["creation_time"]) if x) or "-"
            click.echo(f"  from {h['immediate_origin_name'] or '-'} to {h['immediate_destination_name'] or '-'}, "
                       f"created {created}")
        click.echo(f"  {_count(s['batches'], 'batch')}, {_count(s['entries'], 'entry')}, "
                   f"SEC {', '.join(s['sec_codes']) or '-'}")
        click.echo(f"  debits {dollars(s['total_debit_cents'])}, credits {dollars(s['total_credit_cents'])}, "
                   f"entry hash {s['entry_hash']}")
        for b in s["batch_list"]:
            click.echo(f"  batch {b['batch_number']}: {b['sec_code']} {b['company_name'].strip()} "
                       f"{b['entry_description'].strip()!r} effective {b['effective_date'] or '-'}, "
                       f"{_count(b['entries'], 'entry')}")
        if show_entries:
            click.echo(f"  {_count(len(s['entry_list']), 'entry')}:")
            for e in s["entry_list"]:
                click.echo(f"    batch {e['batch_number']} trace {e['trace_number']} code {e['transaction_code']} "
                           f"{e['routing_number']} {e['account']} {dollars(e['amount_cents'] or 0)} {e['name']}")
        if s["returns"]:
            click.echo(f"  returns ({len(s['returns'])}):")
            for r in s["returns"]:
                click.echo(f"    {r['return_code']} original trace {r['original_trace_number']} "
                           f"amount {dollars(r['amount_cents'] or 0)}")
        if s["nocs"]:
            click.echo(f"  notifications of change ({len(s['nocs'])}):")
            for n in s["nocs"]:
                click.echo(f"    {n['change_code']} original trace {n['original_trace_number']}: {n['corrected_data']}")
        if warnings:
            click.echo(f"  {_count(len(warnings), 'warning')}:")
            for w in warnings:
                click.echo(f"    {WARNING_PREFIX}{w}")
        if issues:
            click.echo(f"  INVALID ({_count(len(issues), 'problem')}):")
            for i in issues:
                click.echo(f"    {i}")
    sys.exit(exitcodes.DATA_PROBLEMS if issues else exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(validate_cmd)
    cli.add_command(inspect_cmd)
