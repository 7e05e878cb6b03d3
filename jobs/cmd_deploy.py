"""`achbatch deploy systemd|cron [--out DIR] [options]`: render, with jinja2, what ops install to run
achbatch unattended: systemd units (a oneshot service and a timer for the nightly run and for the
returns poll, an OnFailure hook, and the built-in scheduler as an alternative service), or a
crontab whose lines are wrapped in `flock -n`. Times and zone come from `[schedule]`; every path is
made absolute. Without --out the files are printed; with --out they are written there."""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click
import jinja2

from batch.store.fsutil import write_atomic

from . import exitcodes
from .settings import settings_from_context

__all__ = ["DeployOptions", "render_cron", "render_systemd", "systemd_calendar"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
SYSTEMD_FILES = ("achbatch-nightly.service", "achbatch-nightly.timer", "achbatch-nightly-retry.timer",
                 "achbatch-returns.service", "achbatch-returns.timer", "achbatch-failure@.service",
                 "achbatch-scheduler.service")
SYSTEMD_ENABLE = ("achbatch-nightly.timer", "achbatch-returns.timer")
CRON_FILE = "achbatch.crontab"
CRON_D_FILE = "achbatch.cron.d"  # the same lines with the user column, for /etc/cron.d (install.sh)
SCRIPTS = ("install.sh", "uninstall.sh")

# What the units' sandboxing does to a path the runs write (jobs/templates/*.service.j2):
# PrivateTmp=yes gives the service its own empty /tmp and /var/tmp; ProtectSystem=full mounts /usr,
# /boot, /efi and /etc read-only; ProtectHome=yes hides /home, /root and /run/user.
SANDBOXED = (("/tmp", "PrivateTmp=yes gives the service its own empty /tmp"),
             ("/var/tmp", "PrivateTmp=yes gives the service its own empty /var/tmp"),
             ("/usr", "ProtectSystem=full makes /usr read-only"),
             ("/boot", "ProtectSystem=full makes /boot read-only"),
             ("/efi", "ProtectSystem=full makes /efi read-only"),
             ("/etc", "ProtectSystem=full makes /etc read-only"),
             ("/home", "ProtectHome=yes hides /home"),
             ("/root", "ProtectHome=yes hides /root"),
             ("/run/user", "ProtectHome=yes hides /run/user"))


@dataclass(frozen=True)
class DeployOptions:
    exe: tuple[str, ...]  # the achbatch command, absolute (e.g. ('/srv/achbatch/.venv/bin/achbatch',))
    workdir: Path
    user: str = "achbatch"
    group: str | None = None
    env_file: Path | None = Path("/etc/achbatch/achbatch.env")
    config: Path | None = None
    timeout: str = "3h"  # systemd TimeoutStartSec; the CLI takes [schedule] run_timeout
    on_failure_cmd: str | None = None
    log_dir: Path = Path("/var/log/achbatch")
    after: str | None = None  # e.g. "postgresql.service" when the database runs on this host


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def systemd_calendar(t, zone: str) -> str:
    """OnCalendar= for every day at `t` in `zone`."""
    return f"*-*-* {t:%H:%M:%S} {zone}"


def _systemd_word(arg: str) -> str:
    arg = arg.replace("%", "%%")  # % starts a unit specifier
    if any(c in arg for c in " \t\"'\\;$"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _systemd_cmd(args: list[str]) -> str:
    return " ".join(_systemd_word(a) for a in args)


def _cron_cmd(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args).replace("%", "\\%")  # % ends a cron command line


def _base_args(o: DeployOptions) -> list[str]:
    args = list(o.exe)
    if o.config is not None:
        args += ["--config", str(o.config)]
    return args


def _header(kind: str) -> str:
    return (f"Rendered by `achbatch deploy {kind}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
            "edit the settings and render again rather than editing this file.")


def _context(settings, o: DeployOptions, kind: str) -> dict:
    sch = settings.schedule
    base = _base_args(o)
    nightly = base + ["nightly", "--log-format", "json"]
    returns = base + ["nightly", "--returns-only", "--log-format", "json"]
    return {
        "header": _header(kind), "user": o.user, "group": o.group, "workdir": str(o.workdir),
        "env_file": str(o.env_file) if o.env_file else None, "timeout": o.timeout, "after": o.after,
        "timezone": sch.timezone, "nightly_at": f"{sch.nightly_at:%H:%M}",
        "returns_times": ", ".join(f"{t:%H:%M}" for t in sch.returns_poll_at),
        "nightly_calendar": systemd_calendar(sch.nightly_at, sch.timezone),
        "returns_calendars": [systemd_calendar(t, sch.timezone) for t in sch.returns_poll_at],
        "_nightly": nightly, "_returns": returns,
        "on_failure_cmd": _systemd_word(o.on_failure_cmd) if o.on_failure_cmd else None,
        "status_cmd": _systemd_cmd(base + ["status"]),
        "schedule_cmd": _systemd_cmd(base + ["schedule", "--log-format", "json"]),
    }


def render_systemd(settings, o: DeployOptions) -> dict[str, str]:
    """{file name: text} of the systemd units."""
    ctx = _context(settings, o, "systemd")
    ctx["nightly_cmd"] = _systemd_cmd(ctx.pop("_nightly"))
    ctx["returns_cmd"] = _systemd_cmd(ctx.pop("_returns"))
    env = _env()
    return {name: env.get_template(name + ".j2").render(**ctx) for name in SYSTEMD_FILES}


def render_cron(settings, o: DeployOptions, *, flock: str | None = None) -> dict[str, str]:
    """{file name: text} of the crontab (for `crontab -u`) and the same lines for /etc/cron.d."""
    ctx = _context(settings, o, "cron")
    data_dir = settings.data_dir if settings.data_dir.is_absolute() else o.workdir / settings.data_dir
    lock = data_dir / "cron.flock"
    flock = flock or shutil.which("flock") or "/usr/bin/flock"
    prefix = f"cd {shlex.quote(str(o.workdir))} && "
    if o.env_file:
        prefix += f"set -a && . {shlex.quote(str(o.env_file))} && set +a && "
    # -E 3: a run already going on this host is reported like the database lock's "skipped" (exit 3)
    prefix += _cron_cmd([flock, "-n", "-E", "3", str(lock)]) + " "
    sch = settings.schedule
    ctx.update(
        cron_prefix=prefix,
        nightly_cmd=_cron_cmd(ctx.pop("_nightly")), returns_cmd=_cron_cmd(ctx.pop("_returns")),
        nightly_cron=f"{sch.nightly_at.minute} {sch.nightly_at.hour} * * *",
        returns_cron=[f"{t.minute} {t.hour} * * *" for t in sch.returns_poll_at],
        log_dir=shlex.quote(str(o.log_dir)),
    )
    tpl = _env().get_template(CRON_FILE + ".j2")
    return {CRON_FILE: tpl.render(cron_user=None, **ctx), CRON_D_FILE: tpl.render(cron_user=o.user, **ctx)}


def data_dir_for(settings, o: DeployOptions) -> Path:
    return settings.data_dir if settings.data_dir.is_absolute() else o.workdir / settings.data_dir


def render_scripts(settings, o: DeployOptions, kind: str) -> dict[str, str]:
    """install.sh and uninstall.sh for the files of `kind` (see jobs/templates/install.sh.j2)."""
    ctx = {"header": _header(kind), "kind": kind, "user": o.user, "group": o.group or o.user,
           "workdir": str(o.workdir), "data_dir": str(data_dir_for(settings, o)),
           "env_file": str(o.env_file) if o.env_file else None, "log_dir": str(o.log_dir),
           "units": list(SYSTEMD_FILES), "enable": list(SYSTEMD_ENABLE), "q": shlex.quote}
    env = _env()
    return {name: env.get_template(name + ".j2").render(**ctx) for name in SCRIPTS}


def sandbox_problems(settings, o: DeployOptions) -> list[str]:
    """Paths the runs write that the units' sandboxing would hide or make read-only."""
    def absolute(p: Path) -> Path:
        return Path(os.path.normpath(p if p.is_absolute() else o.workdir / p))

    paths = [("--workdir", o.workdir), ("paths.data_dir", settings.data_dir),
             ("paths.reports_dir", settings.reports_dir), ("paths.metrics_file", settings.metrics_file)]
    if settings.paths.drop_dir is not None:
        paths.append(("paths.drop_dir", settings.paths.drop_dir))
    if settings.bank.transport == "folder":
        paths.append(("bank.folder", settings.bank_folder))
    out = []
    for what, p in paths:
        full = absolute(Path(p))
        for top, why in SANDBOXED:
            if full == Path(top) or Path(top) in full.parents:
                out.append(f"{what} {full} is under {top}: {why} for the achbatch units; choose a folder "
                           "such as /srv/achbatch or /var/lib/achbatch")
                break
    return out


def _default_exe() -> tuple[str, ...]:
    """The achbatch being run now, as an absolute command."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "achbatch" and argv0.exists():
        return (str(argv0.resolve() if not argv0.is_absolute() else argv0),)
    found = shutil.which("achbatch")
    if found:
        return (str(Path(found).absolute()),)
    return (sys.executable, "-m", "jobs")


@click.command("deploy")
@click.argument("kind", type=click.Choice(["systemd", "cron"]))
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Folder to write the files into (created). Default, or -: print them.")
@click.option("--user", default="achbatch", show_default=True, help="The system user the runs execute as.")
@click.option("--group", default=None, help="Its group (systemd Group=). Default: the user's.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Working directory of the runs (relative paths in the settings start here). Default: this one.")
@click.option("--env-file", default="/etc/achbatch/achbatch.env", show_default=True,
              help="File of ACHBATCH_* secrets (mode 0600); '' for none.")
@click.option("--exe", default=None, help="The achbatch command (absolute). Default: the one running now.")
@click.option("--timeout", default=None, help="systemd TimeoutStartSec of a run. Default: [schedule] run_timeout.")
@click.option("--on-failure-cmd", default=None,
              help="Also run this command (absolute path; gets the failed unit's name) from the OnFailure hook.")
@click.option("--log-dir", default="/var/log/achbatch", show_default=True, help="cron: where the logs go.")
@click.option("--after", default=None, help="systemd: also start after these units (e.g. postgresql.service).")
@click.pass_context
def deploy_cmd(ctx: click.Context, kind: str, out: str | None, user: str, group: str | None, workdir: str | None,
               env_file: str, exe: str | None, timeout: str, on_failure_cmd: str | None, log_dir: str,
               after: str | None) -> None:
    """Render systemd units (service + timer for the nightly run and the returns poll, an OnFailure
    hook, the scheduler as an alternative) or a crontab (flock -n, absolute paths, logs redirected)."""
    settings = settings_from_context(ctx)
    root = ctx.find_root().obj or {}
    wd = Path(workdir).absolute() if workdir else Path.cwd()
    exe_args = tuple(shlex.split(exe)) if exe else _default_exe()
    problems = []
    if not Path(exe_args[0]).is_absolute():
        problems.append(f"--exe: {exe_args[0]!r} is not an absolute path")
    if on_failure_cmd and not Path(on_failure_cmd).is_absolute():
        problems.append(f"--on-failure-cmd: {on_failure_cmd!r} is not an absolute path")
    if env_file and not Path(env_file).is_absolute():
        problems.append(f"--env-file: {env_file!r} is not an absolute path")
    if problems:
        for p in problems:
            click.echo(f"achbatch: {p}", err=True)
        sys.exit(exitcodes.USAGE)
    config = Path(root["config_path"]).absolute() if root.get("config_path") else None
    opts = DeployOptions(exe=exe_args, workdir=wd, user=user, group=group,
                         env_file=Path(env_file) if env_file else None, config=config,
                         timeout=timeout or settings.schedule.run_timeout_systemd,
                         on_failure_cmd=on_failure_cmd, log_dir=Path(log_dir).absolute(), after=after)
    if kind == "systemd":
        refused = sandbox_problems(settings, opts)
        if refused:
            for p in refused:
                click.echo(f"achbatch: {p}", err=True)
            sys.exit(exitcodes.USAGE)
    files = render_systemd(settings, opts) if kind == "systemd" else render_cron(settings, opts)
    if out is None or out == "-":
        for name, text in files.items():
            click.echo(f"# ===== {name} =====")
            click.echo(text, nl=False)
        sys.exit(exitcodes.OK)
    files.update(render_scripts(settings, opts, kind))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        # atomically; a link or device already there is written through, never replaced (fsutil)
        write_atomic(folder / name, text.encode("utf-8"), mode=0o755 if name in SCRIPTS else 0o644)
        click.echo(f"wrote {folder / name}")
    what = ("creates the user, the data folder, the environment file, copies the units, reloads systemd and "
            "enables the timers" if kind == "systemd" else
            "creates the user, the data folder, the environment file, the log folder and /etc/cron.d/achbatch")
    click.echo(f"install, as root: sh {folder.absolute() / 'install.sh'}  ({what}; idempotent; "
               "`--root DIR` installs into a throwaway root instead)")
    if kind == "systemd":
        click.echo("  (or, instead of the timers: systemctl enable --now achbatch-scheduler.service)")
    sys.exit(exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(deploy_cmd)
