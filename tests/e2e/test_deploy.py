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
    assert set(units) == {"achbatch-nightly.service", "achbatch-nightly.timer", "achbatch-nightly-retry.timer",
                          "achbatch-returns.service", "achbatch-returns.timer", "achbatch-failure@.service",
                          "achbatch-scheduler.service"}
    svc = _ini(units["achbatch-nightly.service"])
    s = svc["Service"]
    assert s["Type"] == ["oneshot"] and s["TimeoutStartSec"] == ["2h"]
    assert s["User"] == ["achbatch"] and s["Group"] == ["achbatch"] and s["WorkingDirectory"] == ["/srv/achbatch"]
    assert s["EnvironmentFile"] == ["/etc/achbatch/achbatch.env"]
    assert s["ExecStart"] == [f"{EXE} --config /etc/achbatch/achbatch.toml nightly --log-format json"]
    assert s["SuccessExitStatus"] == ["3"]  # another host holds the lock: not a failure
    # systemd 239 (RHEL 8): no Restart= on a oneshot; exit 75 or a crash starts the retry timer
    assert "Restart" not in s and "RestartPreventExitStatus" not in s
    [post] = s["ExecStopPost"]
    assert post.startswith("+/bin/sh -c ") and "75/*" in post and "$$EXIT_STATUS" in post
    assert "systemctl start --no-block achbatch-nightly-retry.timer" in post
    retry = _ini(units["achbatch-nightly-retry.timer"])
    assert retry["Timer"]["Unit"] == ["achbatch-nightly.service"] and retry["Timer"]["OnActiveSec"] == ["15min"]
    assert "Install" not in retry  # never enabled: only started after a temporary failure
    assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"] and s["ProtectSystem"] == ["full"]
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
    f.vars["ACHBATCH_PATHS__DATA_DIR"] = "achbatch-data"  # under the work folder
    p = f.run("deploy", "systemd", "--out", "units", "--exe", EXE, "--workdir", "/srv/achbatch", check_code=0)
    assert sorted(x.name for x in (tmp_path / "units").iterdir()) == sorted(
        [*render_systemd(SETTINGS, OPTS), "install.sh", "uninstall.sh"])
    assert f"sh {tmp_path / 'units' / 'install.sh'}" in p.stdout
    assert "TimeoutStartSec=3h\n" in (tmp_path / "units" / "achbatch-nightly.service").read_text()  # run_timeout
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


def test_units_load_on_systemd_239():
    # RHEL 8 ships systemd 239: Restart= on a oneshot needs 244, Type=exec needs 240
    for name, text in render_systemd(SETTINGS, OPTS).items():
        svc = _ini(text).get("Service", {})
        if svc.get("Type") == ["oneshot"]:
            assert "Restart" not in svc, name
        assert svc.get("Type") != ["exec"], name
    assert _ini(render_systemd(SETTINGS, OPTS)["achbatch-scheduler.service"])["Service"]["Type"] == ["simple"]


def test_run_timeout_setting_is_the_units_timeout(tmp_path):
    f = Folder(tmp_path, schedule__run_timeout="90min")
    f.vars["ACHBATCH_PATHS__DATA_DIR"] = "achbatch-data"
    text = f.run("deploy", "systemd", "--exe", EXE, "--workdir", "/srv/achbatch", check_code=0).stdout
    assert text.count("TimeoutStartSec=90min\n") == 2  # the nightly run and the returns poll


@pytest.mark.parametrize("setting, value, why", [
    ("--workdir", "/tmp/achbatch", "PrivateTmp=yes"),
    ("--workdir", "/var/tmp/achbatch", "PrivateTmp=yes"),
    ("--workdir", "/home/ops/achbatch", "ProtectHome=yes hides /home"),
    ("--workdir", "/root/achbatch", "ProtectHome=yes hides /root"),
    ("PATHS__DATA_DIR", "/usr/local/achbatch", "ProtectSystem=full makes /usr read-only"),
    ("PATHS__REPORTS_DIR", "/tmp/reports", "PrivateTmp=yes"),
    ("PATHS__DROP_DIR", "/home/exports", "ProtectHome=yes hides /home"),
])
def test_deploy_refuses_folders_the_sandboxing_hides(tmp_path, setting, value, why):
    f = Folder(tmp_path)
    f.vars["ACHBATCH_PATHS__DATA_DIR"] = "achbatch-data"
    args = ["deploy", "systemd", "--exe", EXE, "--out", str(tmp_path / "units")]
    if setting == "--workdir":
        args += ["--workdir", value]
    else:
        args += ["--workdir", "/srv/achbatch"]
        f.vars[f"ACHBATCH_{setting}"] = value
    p = f.run(*args)
    assert p.returncode == 2 and why in p.stderr and value in p.stderr, p.stderr
    assert not (tmp_path / "units").exists()
    # cron has no sandbox: the same folders are fine there
    f.run("deploy", "cron", "--exe", EXE, "--workdir", value if setting == "--workdir" else "/srv/achbatch",
          check_code=0)


import os  # noqa: E402
import stat  # noqa: E402

CAN_INSTALL = os.geteuid() == 0 and shutil.which("useradd") and shutil.which("groupadd")
NO_INSTALL = "install.sh needs root and useradd/groupadd (it creates a system user); run the suite as root"


def _owner(path: Path, root: Path) -> tuple[str, str, int]:
    st = path.lstat()
    users = {int(x.split(":")[2]): x.split(":")[0] for x in (root / "etc" / "passwd").read_text().splitlines()}
    groups = {int(x.split(":")[2]): x.split(":")[0] for x in (root / "etc" / "group").read_text().splitlines()}
    return users.get(st.st_uid, str(st.st_uid)), groups.get(st.st_gid, str(st.st_gid)), stat.S_IMODE(st.st_mode)


def _deploy(tmp_path: Path, kind: str) -> Path:
    f = Folder(tmp_path)
    f.vars["ACHBATCH_PATHS__DATA_DIR"] = "achbatch-data"
    out = tmp_path / kind
    f.run("deploy", kind, "--out", str(out), "--exe", EXE, "--workdir", "/srv/achbatch", "--user", "achbatch",
          "--log-dir", "/var/log/achbatch", check_code=0)
    return out


def _sh(script: Path, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(script), "--root", str(root)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CAN_INSTALL, reason=NO_INSTALL)
def test_install_sh_systemd_into_a_throwaway_root(tmp_path):
    out = _deploy(tmp_path, "systemd")
    root = tmp_path / "root"
    r = _sh(out / "install.sh", root)
    assert r.returncode == 0, r.stdout + r.stderr
    passwd = (root / "etc" / "passwd").read_text()
    [line] = [x for x in passwd.splitlines() if x.startswith("achbatch:")]
    assert line.split(":")[5:] == ["/srv/achbatch", "/usr/sbin/nologin"] and int(line.split(":")[2]) < 1000
    assert _owner(root / "srv/achbatch", root) == ("achbatch", "achbatch", 0o750)
    assert _owner(root / "srv/achbatch/achbatch-data", root) == ("achbatch", "achbatch", 0o700)
    env = root / "etc/achbatch/achbatch.env"
    assert _owner(env, root) == ("root", "achbatch", 0o640)
    assert _owner(root / "etc/achbatch", root) == ("root", "achbatch", 0o750)
    lines = env.read_text().splitlines()
    assert lines and all(x.startswith("#") for x in lines) and any("ACHBATCH_SECURITY__KEY" in x for x in lines)
    units = root / "etc/systemd/system"
    for name in render_systemd(SETTINGS, OPTS):
        assert _owner(units / name, root) == ("root", "root", 0o644), name
        assert (units / name).read_text() == (out / name).read_text()
    wants = root / "etc/systemd/system/timers.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["achbatch-nightly.timer", "achbatch-returns.timer"]
    # idempotent: a second run changes nothing, never overwrites the environment file, fixes the data folder
    env.write_text("ACHBATCH_SECURITY__KEY=filled-in\n")
    (root / "srv/achbatch/achbatch-data/achbatch.db").write_text("x")  # e.g. created by root by hand
    (root / "srv/achbatch/achbatch-data").chmod(0o755)
    r = _sh(out / "install.sh", root)
    assert r.returncode == 0 and "already there" in r.stdout, r.stdout + r.stderr
    assert env.read_text() == "ACHBATCH_SECURITY__KEY=filled-in\n"
    assert (root / "etc/passwd").read_text().count("\nachbatch:") == 1
    assert _owner(root / "srv/achbatch/achbatch-data", root) == ("achbatch", "achbatch", 0o700)
    assert _owner(root / "srv/achbatch/achbatch-data/achbatch.db", root)[:2] == ("achbatch", "achbatch")
    # uninstall: units gone, the ledger and the secrets kept; twice is fine
    for _ in range(2):
        r = _sh(out / "uninstall.sh", root)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not [p for p in units.rglob("achbatch-*")]
    assert (root / "srv/achbatch/achbatch-data/achbatch.db").exists() and env.exists()


@pytest.mark.skipif(not CAN_INSTALL, reason=NO_INSTALL)
def test_install_sh_cron_into_a_throwaway_root(tmp_path):
    out = _deploy(tmp_path, "cron")
    root = tmp_path / "root"
    r = _sh(out / "install.sh", root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _owner(root / "var/log/achbatch", root) == ("achbatch", "achbatch", 0o750)  # the job can write its log
    assert _owner(root / "srv/achbatch/achbatch-data", root) == ("achbatch", "achbatch", 0o700)
    cron = root / "etc/cron.d/achbatch"
    assert _owner(cron, root) == ("root", "root", 0o644)
    jobs = [x.split() for x in cron.read_text().splitlines() if x and not x.startswith("#") and "=" not in x.split()[0]]
    assert len(jobs) == 2 and all(j[5] == "achbatch" for j in jobs)  # the user column of /etc/cron.d
    assert _sh(out / "install.sh", root).returncode == 0
    assert _sh(out / "uninstall.sh", root).returncode == 0 and not cron.exists()


def test_install_sh_refuses_without_root_or_with_a_bad_option(tmp_path):
    out = _deploy(tmp_path, "systemd")
    r = subprocess.run(["sh", str(out / "install.sh"), "--bogus"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
