"""`achbatch deploy systemd|cron` (jobs/cmd_deploy.py, jobs/templates/): what the rendered units and
crontab say, checked by `systemd-analyze verify` when it is installed (skipped, with the reason,
otherwise), and a deliberately broken unit that the same check rejects."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batch.config import Settings
from jobs.cmd_deploy import DeployOptions, render_cron, render_systemd
from test_nightly_support import Folder

SETTINGS = Settings.model_validate({"schedule": {"nightly_at": "19:45", "timezone": "America/Chicago",
                                                 "returns_poll_at": ["06:00", "13:30"]}})
EXE = str(Path(sys.executable).with_name("achbatch")) if Path(sys.executable).with_name("achbatch").exists() \
    else sys.executable
OPTS = DeployOptions(exe=(EXE,), workdir=Path("/srv/achbatch"), user="achbatch", group="achbatch",
                     env_file=Path("/etc/achbatch/achbatch.env"), config=Path("/etc/achbatch/achbatch.toml"),
                     timeout="2h", on_failure_cmd="/bin/true", log_dir=Path("/var/log/achbatch"))


def _ini(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections and keys (values of repeated keys kept in order), comments dropped."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        k, _, v = line.partition("=")
        out[section].setdefault(k, []).append(v)
    return out


def test_nightly_service_and_timer():
    units = render_systemd(SETTINGS, OPTS)
    assert set(units) == {"achbatch-nightly.service", "achbatch-nightly.timer", "achbatch-returns.service",
                          "achbatch-returns.timer", "achbatch-failure@.service", "achbatch-scheduler.service"}
    svc = _ini(units["achbatch-nightly.service"])
    s = svc["Service"]
    assert s["Type"] == ["oneshot"] and s["TimeoutStartSec"] == ["2h"]
    assert s["User"] == ["achbatch"] and s["Group"] == ["achbatch"] and s["WorkingDirectory"] == ["/srv/achbatch"]
    assert s["EnvironmentFile"] == ["/etc/achbatch/achbatch.env"]
    assert s["ExecStart"] == [f"{EXE} --config /etc/achbatch/achbatch.toml nightly --log-format json"]
    assert s["SuccessExitStatus"] == ["3"]  # another host holds the lock: not a failure
    assert s["Restart"] == ["on-failure"] and s["RestartPreventExitStatus"] == ["1 2"]
    assert svc["Unit"]["OnFailure"] == ["achbatch-failure@%n.service"]
    timer_text = units["achbatch-nightly.timer"]
    t = _ini(timer_text)["Timer"]
    assert t["OnCalendar"] == ["*-*-* 19:45:00 America/Chicago"]
    assert t["AccuracySec"] == ["1s"] and t["RandomizedDelaySec"] == ["0"] and t["Persistent"] == ["false"]
    assert t["Unit"] == ["achbatch-nightly.service"]
    # Persistent is explained where it is set
    assert re.search(r"# Persistent=false on purpose.*\n(#.*\n)+Persistent=false", timer_text)
    ret = _ini(units["achbatch-returns.timer"])["Timer"]
    assert ret["OnCalendar"] == ["*-*-* 06:00:00 America/Chicago", "*-*-* 13:30:00 America/Chicago"]
    assert "--returns-only" in _ini(units["achbatch-returns.service"])["Service"]["ExecStart"][0]
    hook = _ini(units["achbatch-failure@.service"])["Service"]
    assert hook["ExecStart"] == [f"{EXE} --config /etc/achbatch/achbatch.toml status", "/bin/true %i"]
    sched = _ini(units["achbatch-scheduler.service"])["Service"]
    assert sched["ExecStart"][0].endswith("schedule --log-format json") and sched["KillSignal"] == ["SIGTERM"]


def test_paths_with_spaces_and_percent_are_quoted_for_systemd():
    o = DeployOptions(exe=("/opt/ach batch/bin/achbatch",), workdir=Path("/srv/a"), config=Path("/etc/50%.toml"))
    line = _ini(render_systemd(SETTINGS, o)["achbatch-nightly.service"])["Service"]["ExecStart"][0]
    assert line == '"/opt/ach batch/bin/achbatch" --config /etc/50%%.toml nightly --log-format json'


def test_crontab_lines():
    text = render_cron(SETTINGS, OPTS, flock="/usr/bin/flock")["achbatch.crontab"]
    assert "CRON_TZ=America/Chicago" in text
    jobs = [x for x in text.splitlines() if x and not x.startswith("#") and "=" not in x.split()[0]]
    assert len(jobs) == 3
    fields = [x.split(None, 5) for x in jobs]
    assert [f[:5] for f in fields] == [["45", "19", "*", "*", "*"], ["0", "6", "*", "*", "*"],
                                       ["30", "13", "*", "*", "*"]]
    for f, log in zip(fields, ("nightly", "returns", "returns")):
        cmd = f[5]
        assert cmd.startswith("cd /srv/achbatch && set -a && . /etc/achbatch/achbatch.env && set +a && ")
        assert f"/usr/bin/flock -n -E 3 /srv/achbatch/achbatch-data/cron.flock {EXE} --config " in cmd
        assert cmd.endswith(f">> /var/log/achbatch/{log}.log 2>&1")
        assert "%" not in cmd.replace("\\%", "")  # an unescaped % would end the command in cron
        # every path in the command is absolute
        for word in re.findall(r"(?<=\s)(/?[\w.-]+/[\w./-]+)", cmd):
            assert word.startswith("/"), word
    assert "--returns-only" in fields[1][5] and "--returns-only" not in fields[0][5]


def test_cli_writes_the_files_and_refuses_relative_paths(tmp_path):
    f = Folder(tmp_path)
    p = f.run("deploy", "systemd", "--out", "units", "--exe", EXE, "--workdir", "/srv/achbatch", check_code=0)
    assert sorted(x.name for x in (tmp_path / "units").iterdir()) == sorted(render_systemd(SETTINGS, OPTS))
    assert "systemctl enable --now achbatch-nightly.timer" in p.stdout
    printed = f.run("deploy", "cron", "--exe", EXE, check_code=0)
    assert "# ===== achbatch.crontab =====" in printed.stdout and "flock -n" in printed.stdout
    bad = f.run("deploy", "cron", "--exe", "achbatch")
    assert bad.returncode == 2 and "not an absolute path" in bad.stderr


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _verify(folder: Path) -> subprocess.CompletedProcess:
    files = sorted(str(p) for p in folder.iterdir())
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *files], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
def test_rendered_units_pass_systemd_analyze_verify(tmp_path):
    out = tmp_path / "units"
    out.mkdir()
    for name, text in render_systemd(SETTINGS, OPTS).items():
        (out / name).write_text(text)
    r = _verify(out)
    assert r.returncode == 0, r.stdout + r.stderr
    # the check can fail: a unit naming a command that does not exist, or a bad setting, is rejected
    broken = tmp_path / "broken"
    broken.mkdir()
    bad = DeployOptions(exe=("/nonexistent/achbatch",), workdir=Path("/srv/achbatch"))
    (broken / "achbatch-nightly.service").write_text(render_systemd(SETTINGS, bad)["achbatch-nightly.service"])
    r = _verify(broken)
    assert r.returncode != 0 and "/nonexistent/achbatch" in r.stdout + r.stderr
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    text = render_systemd(SETTINGS, OPTS)["achbatch-nightly.service"].replace("Type=oneshot\n", "Type=oneshot\n"
                                                                              "RestartForceExitStatus=75\n")
    (wrong / "achbatch-nightly.service").write_text(text)
    assert _verify(wrong).returncode != 0  # why the template uses RestartPreventExitStatus instead
