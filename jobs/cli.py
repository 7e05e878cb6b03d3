"""The `achbatch` command line (click). Each command parses its arguments, calls one service and
maps the result to an exit code; command groups live in `jobs/cmd_*.py` and register here."""
from __future__ import annotations

import importlib

import click

from . import exitcodes

# Modules that add commands to the group; each defines `register(cli)`.
COMMAND_MODULES = ["jobs.cmd_nacha", "jobs.cmd_db", "jobs.cmd_import", "jobs.cmd_originate", "jobs.cmd_send",
                   "jobs.cmd_returns", "jobs.cmd_coverage", "jobs.cmd_report",
                   "jobs.cmd_nightly", "jobs.cmd_schedule", "jobs.cmd_deploy", "jobs.cmd_status", "jobs.cmd_demo",
                   "jobs.cmd_review"]


# click exits 2 on usage errors, which is the contract's code for usage and configuration errors.
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    cli(prog_name="achbatch")


__all__ = ["cli", "main", "exitcodes"]
