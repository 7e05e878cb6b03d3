"""Helpers for the nightly, lock, status, scheduler and demo tests (no tests here): a data folder
with settings given as ACHBATCH_* variables (so the CLI in a subprocess and the test process see
the same settings), the sample data loaded in-process, and the CLI run in a subprocess, optionally
through a wrapper whose step hook kills, stops (SIGTERM) or pauses the process at a step boundary."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from batch.store.crypto import load_keyring
from batch.store.db import open_database, upgrade
from batch.collect.imports import import_file
from jobs.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"
IMPORT_ORDER = ("premiums", "autopay", "payments")

# Runs the CLI with a step hook driven by the environment (test code only):
#   TEST_KILL_AT=step:point   SIGKILL there          TEST_TERM_AT=step:point   SIGTERM there
#   TEST_SLEEP_AT=step:point=SECONDS   sleep there
HOOK_WRAPPER = r"""
import os, signal, sys, time
from jobs.cli import cli

def hook(step, point):
    here = f"{step}:{point}"
    sleep_at = os.environ.get("TEST_SLEEP_AT", "")
    if sleep_at and here == sleep_at.rsplit("=", 1)[0]:
        time.sleep(float(sleep_at.rsplit("=", 1)[1]))
    if os.environ.get("TEST_TERM_AT") == here:
        os.kill(os.getpid(), signal.SIGTERM)
    if os.environ.get("TEST_KILL_AT") == here:
        sys.stdout.flush(); sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

cli.main(sys.argv[1:], prog_name="achbatch", obj={"step_hook": hook})
"""


class Folder:
    """A working folder with its own data folder (absolute) and settings overrides."""

    def __init__(self, tmp_path: Path, db_url: str | None = None, **overrides: str):
        self.path = tmp_path
        self.data = tmp_path / "achbatch-data"
        # The sample data pays from accounts never seen before; these tests exercise the run itself
        # (what a held first use does is tests/integration/test_validation.py), so, as the demo
        # does, first-use WEB debits go out at once ([validation] first_use = "send").
        self.vars = {"ACHBATCH_PATHS__DATA_DIR": str(self.data), "ACHBATCH_VALIDATION__FIRST_USE": "send"}
        if db_url:
            self.vars["ACHBATCH_DATABASE__URL"] = db_url
        for k, v in overrides.items():
            self.vars[f"ACHBATCH_{k.upper()}"] = str(v)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_") or k == "ACHBATCH_TEST_PG_URL"}
        env.pop("ACHBATCH_CONFIG", None)
        env.update(self.vars)
        env.update(extra)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    @property
    def settings(self):
        return load_settings(None, environ=self.vars)

    def setup(self, *, load: bool = True):
        """Schema, key, and (load=True) the sample premiums, mandates and payments."""
        s = self.settings
        upgrade(s.database_url)
        keyring = load_keyring(None, None, s.default_key_file).keyring
        if load:
            with open_database(s.database_url) as sessions:
                for kind in IMPORT_ORDER:
                    r = import_file(kind, sessions, SAMPLES / f"{kind}.csv", keyring=keyring,
                                    timezone=s.origination.zone)
                    assert not r.rejected
        return keyring

    @contextmanager
    def sessions(self):
        with open_database(self.settings.database_url) as sessions:
            yield sessions

    def count(self, model, *where) -> int:
        with self.sessions() as sessions, sessions() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where)) or 0

    def run(self, *args: str, hook: dict[str, str] | None = None, timeout: float = 180,
            check_code: int | None = None) -> subprocess.CompletedProcess:
        """`achbatch ARGS` in a subprocess (through the hook wrapper when `hook` is given)."""
        if hook is None:
            cmd = [sys.executable, "-m", "jobs", *args]
        else:
            cmd = [sys.executable, "-c", HOOK_WRAPPER, *args]
        p = subprocess.run(cmd, cwd=self.path, env=self.env(**(hook or {})), capture_output=True, text=True,
                           timeout=timeout)
        if check_code is not None:
            assert p.returncode == check_code, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    def popen(self, *args: str, hook: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-c", HOOK_WRAPPER, *args] if hook is not None else [sys.executable, "-m", "jobs", *args]
        return subprocess.Popen(cmd, cwd=self.path, env=self.env(**(hook or {})), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
