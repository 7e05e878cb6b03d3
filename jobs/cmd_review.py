"""`achbatch review list|show|resolve`: the review queue, where finance sees the items returns
processing (and the money rules) could not decide, and records each decision.

  review list [--status open|resolved|all] [--kind K] [--json]
  review show ID [--json]
  review resolve ID --action apply|dismiss --note TEXT [--by NAME] [--payment N | --prenote ID] [--force]
                 [--date D]

Exit codes: 0 done (list and show: also when items are open); 1 refused by the data (the item is
already resolved, the payment's or prenote's amount or account differs without --force, a state
rule, a trace that is another entry's); 2 usage (no such item, an action the item's kind does not
allow, --payment or --prenote missing, both given, or out of place).
"""
from __future__ import annotations

import getpass
import json
import sys

import click
import jinja2

from batch.collect.coverage import assess_coverage
from batch.collect.notices import issue_notices
from batch.collect.returns import cancel_unneeded_retries
from batch.collect.review import ReviewError, list_items, resolve_item, show_item
from batch.rules.counts import counted
from batch.rules.money import dollars
from batch.rules.review import STATUSES
from batch.run import wiring
from batch.store.db import open_database

from . import exitcodes
from .cmd_coverage import echo_follow_ups
from .dates import business_date, date_option
from .helptext import SummaryGroup
from .settings import open_keyring, settings_from_context


@click.group("review", cls=SummaryGroup)
def review_group() -> None:
    """The review queue: items a person must decide (returns not matched, mismatches, ...)."""


def _money(cents) -> str:
    return "" if cents is None else dollars(cents)


def _fail(e: ReviewError):
    exitcodes.fail(exitcodes.USAGE if e.usage else exitcodes.DATA_PROBLEMS, str(e))


@review_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), default="open", show_default=True)
@click.option("--kind", default=None, help="Only items of this kind (e.g. unknown_trace).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {as_of, status, kind, count, items}.")
@date_option
@click.pass_context
def list_cmd(ctx: click.Context, status: str, kind: str | None, as_json: bool, run_date) -> None:
    """Every review item (oldest first) with its age, kind, code and title, amounts, original
    trace, member and plan where known, bank file and line, and the reason."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings)
    try:
        with open_database(settings.database_url) as sessions:
            items = list_items(sessions, d, status=status, kind=kind, keyring=keyring)
    except ReviewError as e:
        _fail(e)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if as_json:
        click.echo(json.dumps({"as_of": d.isoformat(), "status": status, "kind": kind, "count": len(items),
                               "items": items}, indent=2))
        return
    if not items:
        click.echo(f"review: no {'' if status == 'all' else status + ' '}items"
                   + (f" of kind {kind}" if kind else ""))
        return
    total = sum(i["amount_cents"] for i in items)
    click.echo(f"review: {counted(len(items), ('' if status == 'all' else status + ' ') + 'item')}, {dollars(total)}")
    for i in items:
        where = f"{i['file']} line {i['line']}" if i["file"] else (i["subject_ref"] or i["subject"])
        code = f"{i['code']} {i['code_title']}".strip()
        who = " ".join(x for x in (i["member_id"], i["plan_id"]) if x) or "-"
        expected = f" (expected {_money(i['expected_amount_cents'])})" if i["expected_amount_cents"] is not None else ""
        pay = f" payment #{i['payment_id']}" if i["payment_id"] else ""
        click.echo(f"#{i['id']} [{i['status']}] {i['age_days']}d {i['kind']}: {code or '-'}; "
                   f"{_money(i['amount_cents'])}{expected}; trace {i['original_trace_number'] or '-'}; "
                   f"{who}{pay}; {where}")
        click.echo(f"    {i['reason']}")
        if i["resolution"]:
            r = i["resolution"]
            click.echo(f"    resolved: {r['action']} by {r['resolved_by']} at {r['resolved_at']}"
                       f"{' (forced)' if r['forced'] else ''}: {r['note']}")


@review_group.command("show")
@click.argument("item_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object (the list's keys, bank_record, payment, ...).")
@date_option
@click.pass_context
def show_cmd(ctx: click.Context, item_id: int, as_json: bool, run_date) -> None:
    """One item, the bank record it came from (accounts masked), the payment and its history when
    one is linked, and what each action would do."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings)
    try:
        with open_database(settings.database_url) as sessions:
            item = show_item(sessions, keyring, item_id, d)
    except ReviewError as e:
        _fail(e)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    click.echo(f"review item #{item['id']} ({item['status']}), opened {item['opened_on']} ({item['age_days']} days)")
    click.echo(f"  kind: {item['kind']} ({item['kind_words']})")
    if item["code"]:
        click.echo(f"  code: {item['code']} {item['code_title']}")
    click.echo(f"  amount: {_money(item['amount_cents'])}"
               + (f", expected {_money(item['expected_amount_cents'])}" if item["expected_amount_cents"] is not None
                  else ""))
    if item["file"]:
        click.echo(f"  from: {item['file']} line {item['line']}")
    loc = item.get("location")
    if loc:
        cols = f", columns {loc['columns'][0]}-{loc['columns'][1]}" if loc.get("columns") else ""
        click.echo(f"  points at: line {loc['line']}{cols}, {loc['record']}.{loc['field']}")
    click.echo(f"  reason: {item['reason']}")
    b = item["bank_record"]
    if b:
        click.echo(f"  bank record ({b['record']}, line {b['line']}): {b['individual_id']} {b['individual_name']}, "
                   f"account {b['account_masked']} at {b['receiving_dfi']}, {_money(b['amount_cents'])}, "
                   f"trace {b['trace_number']}")
        if "code" in b:
            click.echo(f"    {b['code']} {b['code_title']}; original trace {b['original_trace_number']}, "
                       f"original RDFI {b['original_rdfi']}"
                       + (f"; corrected {b['corrected']}" if b.get("corrected") else ""))
    elif item["file"]:
        click.echo("  bank record: not kept (the file's bytes were not stored)")
    for label in ("payment", "related_payment"):
        p = item[label]
        if not p:
            continue
        acct = p["account"]
        click.echo(f"  {label.replace('_', ' ')} #{p['id']}: {p['member_id']} {p['plan_id']} "
                   f"{p['coverage_month'][:7]}, {p['channel']}, {_money(p['amount_cents'])}, {p['state']}"
                   + (f", account {acct['account_masked']} at {acct['routing_number']} ({acct['status']})"
                      if acct else ""))
        for h in p["history"]:
            click.echo(f"    {h['on']} {h['event']}: {h['detail']}")
    pn = item.get("prenote")
    if pn:
        acct = pn["account"]
        click.echo(f"  prenote #{pn['id']}: {pn['member_id']}, {pn['state']}"
                   + (f" ({pn['return_reason']})" if pn["return_reason"] else "")
                   + f", account {acct['account_masked']} at {acct['routing_number']} ({acct['status']}, "
                     f"{acct['validation_result']})")
    if item["resolution"]:
        r = item["resolution"]
        click.echo(f"  resolved: {r['action']} by {r['resolved_by']} at {r['resolved_at']}"
                   f"{' (forced: ' + r['overridden'] + ')' if r['forced'] else ''}: {r['note']}")
    else:
        click.echo("  actions:")
        for a, words in item["action_words"].items():
            click.echo(f"    {a}: {words}")


@review_group.command("resolve")
@click.argument("item_id", type=int)
@click.option("--action", "action", type=click.Choice(["apply", "dismiss"]), required=True)
@click.option("--note", required=True, help="Why: kept in the audit row.")
@click.option("--by", "by", default=None, help="Who decides (default: the login name).")
@click.option("--payment", "payment_id", type=int, default=None, help="apply: the payment the bank's entry is for.")
@click.option("--prenote", "prenote_id", type=int, default=None,
              help="apply: the prenote (account validation entry) the bank's entry answers.")
@click.option("--force", is_flag=True,
              help="apply: even when the payment's or prenote's amount or account differs (recorded).")
@click.option("--json", "as_json", is_flag=True, help="The resolution as one JSON object.")
@date_option
@click.pass_context
def resolve_cmd(ctx: click.Context, item_id: int, action: str, note: str, by: str | None, payment_id: int | None,
                prenote_id: int | None, force: bool, as_json: bool, run_date) -> None:
    """Decide a review item once: apply the bank's return or NOC to payment N or prenote ID (as an
    automatic match would), or dismiss it. Each decision is an audit row (who, when, action, note,
    before and after). After an apply, coverage is re-assessed and the notices written."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings)
    who = by if by is not None else getpass.getuser()
    try:
        with open_database(settings.database_url) as sessions:
            res = resolve_item(sessions, keyring, item_id, action, note, who, business_date=d, payment_id=payment_id,
                               force=force, policy=wiring.return_policy(settings), prenote_id=prenote_id)
            cancelled = notices = None
            if action == "apply":
                cancelled = cancel_unneeded_retries(sessions, d)
                cov = assess_coverage(sessions, d, wiring.coverage_rules(settings), tz=settings.origination.zone)
                notices = issue_notices(sessions, settings.notices_dir, d, templates_dir=settings.paths.notices_templates,
                                        sender=wiring.sender_name(settings))
    except ReviewError as e:
        _fail(e)
    except jinja2.TemplateError as e:
        exitcodes.fail(exitcodes.USAGE, f"notice template error: {e}")
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if as_json:
        click.echo(json.dumps(res.as_dict(), indent=2))
        sys.exit(exitcodes.OK)
    click.echo(f"review item #{res.item_id} resolved: {res.action} by {res.resolved_by}"
               f"{' (forced)' if res.forced else ''}")
    click.echo(f"  {res.words}")
    for o in res.overridden:
        click.echo(f"  overridden with --force: {o}")
    if action == "apply":
        click.echo(f"  coverage {d}: {counted(cov.policies, 'policy')} re-assessed "
                   f"({cov.new} new, {cov.changed} changed)")
        echo_follow_ups(cancelled, notices)
    sys.exit(exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(review_group)
