"""Help listings that show each command's whole first sentence, never one cut off with "..."
(click's default cuts the summary at a width), wrapped at spaces by click's formatter."""
from __future__ import annotations

import re

import click

# The end of a sentence: a period, then white space; not the period of "e.g." or "i.e.".
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(\s|$)")


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph, its white space folded."""
    para = " ".join((text or "").strip().split("\n\n")[0].split())
    m = _SENTENCE_END.search(para)
    return para[: m.start() + 1] if m else para


def summary_of(cmd: click.Command) -> str:
    return " ".join(cmd.short_help.split()) if cmd.short_help else first_sentence(cmd.help or "")


class SummaryGroup(click.Group):
    """A group whose command list shows each command's `short_help` or the first sentence of its
    help, whole."""

    def command_summaries(self, ctx: click.Context) -> list[tuple[str, str]]:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, summary_of(cmd)))
        return rows

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = self.command_summaries(ctx)
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
