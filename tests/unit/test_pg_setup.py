"""scripts/pg_setup.sh, what scripts/test.sh runs to get PostgreSQL (issue 14): each branch run in
bash with stub commands (id, pg_isready, pg_lsclusters, pg_createcluster, pg_ctlcluster, apt-get and
the psycopg connect check) that record their calls and keep a little state in files, on a PATH that
holds only the stubs and a few plain tools, so no real package manager or server is ever touched.
The conftest side: the PostgreSQL cases skip with the script's reason, and fail under CI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pg_setup.sh"
BASH = shutil.which("bash")
TOOLS = ("seq", "sort", "ls", "tail", "cat", "cp", "touch", "grep", "head", "rm")

STUBS = {
    "id": '[ "$1" = -u ] && cat "$STATE/uid"',
    "sleep": ":",
    # the connect check (ACHBATCH_PG_PYTHON): in when the server is up and lets postgres in
    "python": '[ -e "$STATE/up" ] && { [ -e "$STATE/auth_ok" ] || [ -e "$STATE/trusted" ]; }',
}
INSTALLED = {  # what apt-get install postgresql brings
    "pg_isready": '[ -e "$STATE/up" ]',
    "pg_lsclusters": '[ -e "$STATE/clusters" ] && cat "$STATE/clusters"; true',
    "pg_createcluster": 'echo "$2 $3 5432 down postgres /var/lib/postgresql/$2/$3 log" > "$STATE/clusters"',
    "pg_ctlcluster": ('case "$*" in *start*) [ -e "$STATE/nostart" ] || touch "$STATE/up";; '
                      '*reload*) grep -q "^host all postgres 127.0.0.1/32 trust" "$ETC/$2/$3/pg_hba.conf" '
                      '&& touch "$STATE/trusted";; esac; true'),
}
APT = ('[ -e "$STATE/apt_fails" ] && exit 100; '
       'case "$*" in *install*postgresql*) for f in "$AVAIL"/*; do cp -p "$f" "$BIN/"; done; '
       'echo "16 main 5432 down postgres /var/lib/postgresql/16/main log" > "$STATE/clusters"; '
       'mkdir -p "$ETC/16/main"; echo "host all all 127.0.0.1/32 scram-sha-256" > "$ETC/16/main/pg_hba.conf";; '
       'esac; true')


class Machine:
    """A stub machine: its state files, its stub commands and the log of their calls."""

    def __init__(self, tmp: Path, *, root: bool, installed: bool):
        self.tmp = tmp
        self.bin, self.avail, self.state, self.etc, self.lib = (tmp / n for n in ("bin", "avail", "state", "etc", "lib"))
        for d in (self.bin, self.avail, self.state, self.etc, self.lib / "15", self.lib / "16"):
            d.mkdir(parents=True)
        self.log = tmp / "calls.log"
        self.log.touch()
        (self.state / "uid").write_text("0\n" if root else "1000\n")
        for tool in TOOLS + ("mkdir",):
            os.symlink(shutil.which(tool), self.bin / tool)
        for name, body in STUBS.items():
            self._stub(self.bin, name, body)
        self._stub(self.bin, "apt-get", APT)
        for name, body in INSTALLED.items():
            self._stub(self.bin if installed else self.avail, name, body)

    def _stub(self, folder: Path, name: str, body: str) -> None:
        p = folder / name
        p.write_text(f'#!{BASH}\necho "{name} $*" >> "$LOG"\n{body}\n')
        p.chmod(0o755)

    def cluster(self, ver: str, *, up: bool, auth_ok: bool, hba: str = "host all all 127.0.0.1/32 trust\n"):
        (self.state / "clusters").write_text(f"{ver} main 5432 {'online' if up else 'down'} postgres x y\n")
        (self.etc / ver / "main").mkdir(parents=True)
        (self.etc / ver / "main" / "pg_hba.conf").write_text(hba)
        if up:
            (self.state / "up").touch()
        if auth_ok:
            (self.state / "auth_ok").touch()

    def run(self, **env: str) -> subprocess.CompletedProcess:
        script = (f'. {SCRIPT}\npostgres_for_tests; rc=$?\necho "rc=$rc"\n'
                  'echo "url=${ACHBATCH_TEST_PG_URL:-}"\necho "skip=${ACHBATCH_TEST_PG_SKIP:-}"\n')
        base = {"PATH": str(self.bin), "LOG": str(self.log), "STATE": str(self.state), "ETC": str(self.etc),
                "AVAIL": str(self.avail), "BIN": str(self.bin), "ACHBATCH_PG_ETC": str(self.etc),
                "ACHBATCH_PG_LIB": str(self.lib), "ACHBATCH_PG_PYTHON": str(self.bin / "python"),
                "ACHBATCH_PG_WAIT": "3"}
        return subprocess.run([BASH, "-c", script], env={**base, **env}, capture_output=True, text=True,
                              timeout=60)

    def calls(self) -> list[str]:
        return [c for c in self.log.read_text().splitlines()
                if c.split(" ", 1)[0] in ("apt-get", "pg_createcluster", "pg_ctlcluster")]


def outcome(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def test_a_working_server_is_left_alone(tmp_path):
    m = Machine(tmp_path, root=True, installed=True)
    m.cluster("15", up=True, auth_ok=True, hba="local all all peer\n")
    out = outcome(m.run())
    assert out == {"rc": "0", "url": URL, "skip": ""}
    assert m.calls() == []
    assert (m.etc / "15" / "main" / "pg_hba.conf").read_text() == "local all all peer\n"


def test_root_on_a_fresh_machine_installs_starts_and_lets_postgres_in(tmp_path):
    m = Machine(tmp_path, root=True, installed=False)
    proc = m.run()
    assert outcome(proc) == {"rc": "0", "url": URL, "skip": ""}, proc.stderr
    assert m.calls() == [
        "apt-get -o DPkg::Lock::Timeout=600 update -qq",
        "apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql",
        "pg_ctlcluster --skip-systemctl-redirect 16 main start",
        "pg_ctlcluster --skip-systemctl-redirect 16 main reload",
    ]
    hba = m.etc / "16" / "main" / "pg_hba.conf"
    assert hba.read_text().splitlines() == [
        "host all postgres 127.0.0.1/32 trust  # added by achbatch scripts/test.sh",
        "host all all 127.0.0.1/32 scram-sha-256",
    ]
    assert (m.etc / "16" / "main" / "pg_hba.conf.achbatch-backup").read_text() == \
        "host all all 127.0.0.1/32 scram-sha-256\n"
    assert "installing postgresql" in proc.stderr


def test_root_creates_a_cluster_when_there_is_none(tmp_path):
    m = Machine(tmp_path, root=True, installed=True)
    (m.state / "auth_ok").touch()  # the new cluster lets postgres in: pg_hba.conf is not touched
    out = outcome(m.run())
    assert out["rc"] == "0" and out["url"] == URL
    assert m.calls() == ["pg_createcluster -p 5432 16 main",
                         "pg_ctlcluster --skip-systemctl-redirect 16 main start"]


def test_root_starts_a_cluster_that_is_down_and_touches_nothing_else(tmp_path):
    m = Machine(tmp_path, root=True, installed=True)
    m.cluster("15", up=False, auth_ok=True)
    out = outcome(m.run())
    assert out == {"rc": "0", "url": URL, "skip": ""}
    assert m.calls() == ["pg_ctlcluster --skip-systemctl-redirect 15 main start"]
    assert not (m.etc / "15" / "main" / "pg_hba.conf.achbatch-backup").exists()


def test_root_fails_the_run_when_the_cluster_does_not_come_up(tmp_path):
    m = Machine(tmp_path, root=True, installed=True)
    m.cluster("15", up=False, auth_ok=True)
    (m.state / "nostart").touch()
    proc = m.run()
    assert outcome(proc)["rc"] == "1" and outcome(proc)["url"] == ""
    assert "ERROR: PostgreSQL cluster 15/main does not accept connections" in proc.stderr


def test_root_fails_the_run_when_apt_get_fails(tmp_path):
    m = Machine(tmp_path, root=True, installed=False)
    (m.state / "apt_fails").touch()
    proc = m.run()
    assert outcome(proc)["rc"] == "1"
    assert "ERROR: apt-get install postgresql failed" in proc.stderr


def test_without_root_it_says_what_to_install_and_the_tests_skip(tmp_path):
    m = Machine(tmp_path, root=False, installed=False)
    proc = m.run()
    out = outcome(proc)
    assert out["rc"] == "0" and out["url"] == ""
    assert out["skip"].startswith("PostgreSQL is not installed; as root: apt-get install postgresql")
    assert "the PostgreSQL tests are skipped" in proc.stderr
    assert m.calls() == []


def test_without_root_a_stopped_server_is_named(tmp_path):
    m = Machine(tmp_path, root=False, installed=True)
    m.cluster("15", up=False, auth_ok=True)
    out = outcome(m.run())
    assert out["skip"].startswith("PostgreSQL is not running on 127.0.0.1:5432")
    assert m.calls() == []


def test_without_root_under_ci_the_run_fails(tmp_path):
    m = Machine(tmp_path, root=False, installed=False)
    proc = m.run(CI="true")
    assert outcome(proc) == {"rc": "1", "url": "", "skip": ""}
    assert "ERROR: PostgreSQL is not installed" in proc.stderr and "CI needs PostgreSQL" in proc.stderr


def test_a_given_url_is_the_callers_business(tmp_path):
    m = Machine(tmp_path, root=True, installed=False)
    out = outcome(m.run(ACHBATCH_TEST_PG_URL="postgresql+psycopg://u@127.0.0.1:6543/x"))
    assert out == {"rc": "0", "url": "postgresql+psycopg://u@127.0.0.1:6543/x", "skip": ""}
    assert m.log.read_text() == ""


@pytest.mark.parametrize("ci, expect", [("", "1 skipped"), ("true", "1 error")])
def test_the_postgresql_cases_skip_with_the_scripts_reason_and_fail_under_ci(ci, expect):
    env = {k: v for k, v in os.environ.items() if k not in ("ACHBATCH_TEST_PG_URL", "CI")}
    env["ACHBATCH_TEST_PG_SKIP"] = "PostgreSQL is not installed; as root: apt-get install postgresql"
    if ci:
        env["CI"] = ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/integration/test_db.py::test_upgrade_creates_schema_and_is_idempotent[postgresql]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert expect in proc.stdout, proc.stdout
    assert "apt-get install postgresql" in proc.stdout
