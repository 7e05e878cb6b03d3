"""`achbatch demo [--dir DIR]`: two nights of the real pipeline on embedded defaults with the sample
data and a simulated bank (batch/run/demo.py), printing what happened and where everything is. Runs in
its own folder (default ./achbatch-demo) whatever --config or ACHBATCH_* say; running it again in
the same folder is idempotent and says what it found. Exit 0 (also when the nights reported data
problems, which the demo's returns cause on purpose), 3 another run holds the folder's lock."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from batch.run.demo import run_demo
from batch.run.wiring import ConfigurationError

from . import exitcodes


@click.command("demo")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default="achbatch-demo", show_default=True,
              help="Folder to run the demo in (created). Run again in the same folder: nothing is done twice.")
def demo_cmd(folder: str) -> None:
    """A full night on embedded defaults with sample data, a simulated bank answering with returns
    and NOCs, and the next night; prints what happened and where the files and reports are."""
    t0 = time.monotonic()
    try:
        result = run_demo(Path(folder), click.echo, exitcodes.EXIT_CODES)
    except ConfigurationError as e:  # e.g. the demo's key file deleted while its database holds accounts
        exitcodes.fail(exitcodes.USAGE, f"configuration error: {e}")
    click.echo(f"demo finished in {time.monotonic() - t0:.1f}s")
    sys.exit(exitcodes.for_outcome(result.outcome))


def register(cli: click.Group) -> None:
    cli.add_command(demo_cmd)
