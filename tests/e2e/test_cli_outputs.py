"""Output paths a person gives never destroy what is there (`python -m jobs` in subprocesses):
`report --out -` writes to standard output, `--out /dev/stdout` writes to the process's standard
output without replacing /dev/stdout, a FIFO is written into and stays a FIFO, a link stays a link
(`report`, `deploy --out`); and `report` in a folder without a database exits 2, saying to run
`achbatch db upgrade`, and creates nothing."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(cwd, *args, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, timeout=120, **kw)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    p = run(d, "db", "upgrade")
    assert p.returncode == 0, p.stderr
    return d


@pytest.mark.parametrize("kind", ["coverage", "reconciliation", "returns"])
def test_report_without_a_database_exits_2_and_creates_nothing(tmp_path, kind):
    p = run(tmp_path, "report", kind, "--date", "2026-01-23")
    assert p.returncode == 2, p.stderr
    err = p.stderr.decode()
    assert "achbatch db upgrade" in err and "Traceback" not in err
    assert tree(tmp_path) == []  # no empty database, no data folder, no key file, no report


def test_status_without_a_database_creates_nothing(tmp_path):
    p = run(tmp_path, "status")
    assert p.returncode == 2 and b"achbatch db upgrade" in p.stderr
    assert tree(tmp_path) == []


def test_report_out_dash_writes_to_standard_output(workdir):
    before = tree(workdir)
    p = run(workdir, "report", "coverage", "--date", "2026-01-23", "--format", "csv", "--out", "-")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines()[0].startswith("member_id,")
    assert b"coverage report 2026-01-23: 0 rows -> standard output" in p.stderr
    assert tree(workdir) == before  # no file named "-", no report written


def test_report_out_dev_stdout_writes_to_the_pipe_and_keeps_dev_stdout(workdir):
    assert os.path.islink("/dev/stdout")
    p = run(workdir, "report", "coverage", "--date", "2026-01-23", "--format", "html", "--out", "/dev/stdout")
    assert p.returncode == 0, p.stderr
    assert p.stdout.lstrip().lower().startswith(b"<!doctype html")
    assert os.path.islink("/dev/stdout")  # as root, the old atomic write renamed a file over it


def test_report_out_dev_stdout_appends_to_a_redirected_log(workdir, tmp_path):
    """`>> log`: the report is added to the log; opening /dev/stdout again would truncate it."""
    log = tmp_path / "log"
    log.write_bytes(b"earlier line\n")
    with open(log, "ab") as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
        p = subprocess.run([sys.executable, "-m", "jobs", "report", "coverage", "--date", "2026-01-23", "--format",
                            "csv", "--out", "/dev/stdout"], cwd=workdir, env=env, stdout=out,
                           stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = log.read_bytes().decode().splitlines()
    assert lines[0] == "earlier line" and lines[1].startswith("member_id,")


def test_report_into_a_fifo_and_through_a_link(workdir, tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    p = run(workdir, "report", "coverage", "--date", "2026-01-23", "--format", "csv", "--out", fifo)
    t.join(30)
    assert p.returncode == 0, p.stderr
    assert got["data"].decode().startswith("member_id,") and stat.S_ISFIFO(os.lstat(fifo).st_mode)

    target = tmp_path / "archive" / "coverage.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    p = run(workdir, "report", "coverage", "--date", "2026-01-23", "--format", "csv", "--out", link)
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and target.read_text().startswith("member_id,")


def test_deploy_out_keeps_a_link_and_dash_prints(tmp_path):
    out = tmp_path / "units"
    out.mkdir()
    kept = tmp_path / "managed" / "achbatch-nightly.timer"
    kept.parent.mkdir()
    kept.write_text("old\n")
    (out / "achbatch-nightly.timer").symlink_to(kept)
    p = run(tmp_path, "deploy", "systemd", "--out", out, "--exe", "/usr/bin/achbatch", "--workdir", "/srv/achbatch")
    assert p.returncode == 0, p.stderr
    assert (out / "achbatch-nightly.timer").is_symlink() and "OnCalendar=" in kept.read_text()
    p = run(tmp_path, "deploy", "cron", "--out", "-", "--exe", "/usr/bin/achbatch", "--workdir", "/srv/achbatch")
    assert p.returncode == 0 and b"CRON_TZ=" in p.stdout
    assert not (tmp_path / "-").exists()
