"""The `achbatch` command line (click). Each command parses its arguments, calls one service and
maps the result to an exit code; command groups live in `jobs/cmd_*.py` and register here.

Starting is fast: a command's module is imported only when that command runs (or its own `--help`
is asked for), and `achbatch --help` lists the commands from `COMMANDS` without importing any, so
`--help`, `validate` and `inspect` never load pandas, SQLAlchemy, paramiko, cryptography or
openpyxl (tests/e2e/test_cli_startup.py)."""
from __future__ import annotations

import importlib

import click

from . import exitcodes
from .helptext import SummaryGroup, summary_of

# Each command: the modules that register it (each defines `register(cli)`) and its one-line
# summary for `achbatch --help` (tests/e2e/test_cli_startup.py checks it is the command's own).
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "autopay": (("jobs.cmd_originate",), "AutoPay pulls."),
    "coverage": (("jobs.cmd_coverage",), "Coverage standing, flags, and the export of their changes to the "
                 "enrollment system."),
    "db": (("jobs.cmd_db",), "Database schema and stored secrets."),
    "demo": (("jobs.cmd_demo",), "A full night on embedded defaults with sample data, a simulated bank "
             "answering with returns and NOCs, and the next night; prints what happened and where the files "
             "and reports are."),
    "deploy": (("jobs.cmd_deploy",), "Render systemd units (service + timer for the nightly run and the "
               "returns poll, an OnFailure hook, the scheduler as an alternative) or a crontab (flock -n, "
               "absolute paths, logs redirected)."),
    "import": (("jobs.cmd_import",), "Load CSV exports (header row required; amounts in dollars; dates ISO)."),
    "inspect": (("jobs.cmd_nacha",), "Summarise a NACHA file: batches, entries, totals, returns and NOCs "
                "(accounts masked)."),
    "nightly": (("jobs.cmd_nightly",), "The whole night, in order, under one lock: payments import "
                "(paths.drop_dir), AutoPay schedule, originate, send, returns fetch, returns process, "
                "coverage assess, reports and notices."),
    "originate": (("jobs.cmd_originate",), "Build the day's NACHA file(s) into the outbox."),
    "reconcile": (("jobs.cmd_reconcile",), "Tie out to the bank: its BAI2 statements against what we sent and "
                  "what it returned."),
    "report": (("jobs.cmd_report",), "Write a report."),
    "returns": (("jobs.cmd_send", "jobs.cmd_returns"), "The bank's return, NOC and acknowledgement files: "
                "fetch them, then process them."),
    "schedule": (("jobs.cmd_schedule",), "Run the built-in scheduler in the foreground (nightly run and "
                 "returns polls from [schedule])."),
    "send": (("jobs.cmd_send",), "Deliver every built file not yet confirmed at the bank (only those of "
             "--date when given)."),
    "status": (("jobs.cmd_status",), "Last runs and their steps, files awaiting delivery, pending bank files, "
               "payments by state, coverage flags, what needs attention and warnings."),
    "review": (("jobs.cmd_review",), "The review queue: items a person must decide (returns not matched, "
               "mismatches, ...)."),
    "validate": (("jobs.cmd_nacha",), "Validate NACHA files."),
}

# Every module that adds commands (each defines `register(cli)`), in COMMANDS' order.
COMMAND_MODULES = list(dict.fromkeys(m for mods, _ in COMMANDS.values() for m in mods))


class LazyGroup(SummaryGroup):
    """The root group: a command's modules are imported when the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            for module in COMMANDS[name][0]:
                importlib.import_module(module).register(self)
        return self.commands.get(name)

    def command_summaries(self, ctx: click.Context) -> list[tuple[str, str]]:
        return [(name, COMMANDS[name][1]) if name in COMMANDS else (name, summary_of(self.commands[name]))
                for name in self.list_commands(ctx)]


# click exits 2 on usage errors, which is the contract's code for usage and configuration errors.
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="ACHBATCH_CONFIG",
              help="Settings file (TOML). Default: $ACHBATCH_CONFIG, else the embedded defaults.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """achbatch: nightly ACH premium collection.

    Exit codes: 0 done; 1 done but data problems were found; 2 usage or configuration error;
    3 another run holds the lock; 75 temporary failure (safe to retry).
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path



def main() -> None:
    cli(prog_name="achbatch")


__all__ = ["cli", "main", "exitcodes"]
