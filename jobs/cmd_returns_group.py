"""The shared `achbatch returns` command group. It registers nothing itself: `fetch` is added by
jobs/cmd_send.py and `process` by the returns module, each importing `returns_group` from here."""
from __future__ import annotations

import click
from .helptext import SummaryGroup


@click.group("returns", cls=SummaryGroup)
def returns_group() -> None:
    """The bank's return, NOC and acknowledgement files: fetch them, then process them."""
