"""`achbatch` starts fast and its help reads whole: `--help`, `validate`, `inspect` and `status
--help` import none of the heavy libraries (measured with `python -X importtime`), the command list
shows each command's own summary, and no help text is cut inside a word or shortened with "..."."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from jobs.cli import COMMANDS, cli
from jobs.helptext import first_sentence, summary_of

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"
HEAVY = {"pandas", "sqlalchemy", "paramiko", "cryptography", "openpyxl"}


def imported_modules(*args) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobs", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return p, names


@pytest.mark.parametrize("args", [
    ("--help",),
    ("validate", SAMPLES / "debits-web-ppd-tel.ach"),
    ("validate", "--json", SAMPLES / "invalid-entry-hash.ach"),
    ("inspect", SAMPLES / "returns.ach"),
    ("inspect", "--help"),
    ("status", "--help"),
], ids=lambda a: " ".join(str(x) for x in a).replace(str(SAMPLES) + "/", ""))
def test_fast_commands_import_no_heavy_library(args):
    p, names = imported_modules(*args)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    assert "jobs.cli" in names  # the measure works: our own modules are listed
    heavy = {n for n in names if n.split(".")[0] in HEAVY}
    assert not heavy, f"{' '.join(map(str, args))} imported {sorted({n.split('.')[0] for n in heavy})}"


def test_a_database_command_still_loads_what_it_needs(tmp_path):
    """The lazy imports happen: `status` in an empty folder reaches the database layer and says what to do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    p = subprocess.run([sys.executable, "-m", "jobs", "db", "upgrade"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-m", "jobs", "status", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1) and '"last_runs"' in p.stdout, p.stderr


def test_the_command_list_shows_each_commands_own_summary():
    ctx = click.Context(cli)
    assert set(COMMANDS) == set(cli.list_commands(ctx))
    for name, (_modules, summary) in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
        assert summary_of(cmd) == summary, name


def test_first_sentence():
    assert first_sentence("Write a report. Exit 1 when it warns.") == "Write a report."
    assert first_sentence("Start (e.g. at boot). Then more.") == "Start (e.g. at boot)."
    assert first_sentence("No period\nacross lines\n\nSecond paragraph.") == "No period across lines"


def _all_command_paths(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _all_command_paths(cmd, click.Context(cmd, parent=ctx), prefix + (name,))


def test_no_help_text_is_cut_inside_a_word():
    """Each help screen at 60 columns has exactly the words it has unwrapped: wrapping only moves
    words to the next line, it never splits one (`coverage_month` as `co` + `verage_month`) nor
    shortens a command's summary to fit (click's "..." depends on the width)."""
    paths = [()] + list(_all_command_paths(cli, click.Context(cli)))
    assert len(paths) > 20
    runner = CliRunner()
    for path in paths:
        narrow = runner.invoke(cli, [*path, "--help"], terminal_width=60)
        wide = runner.invoke(cli, [*path, "--help"], terminal_width=4000, max_content_width=4000)
        assert narrow.exit_code == 0 and wide.exit_code == 0, (path, narrow.output)
        assert narrow.output.split() == wide.output.split(), " ".join(path)
