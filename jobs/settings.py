"""Loading settings: a TOML file (or the embedded defaults) overlaid with `ACHBATCH_<SECTION>__<KEY>`
environment variables, validated by `batch.config.Settings`. Every problem names its key and where
the value came from; the CLI turns a `SettingsError` into exit code 2."""
from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from batch.config import SECTIONS, Settings

from . import exitcodes

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "SettingsError", "load_settings", "open_keyring", "settings_from_context"]

CONFIG_ENV = "ACHBATCH_CONFIG"
ENV_PREFIX = "ACHBATCH_"
_SEP = "__"


class SettingsError(Exception):
    """Settings could not be loaded; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            # Decimal, never float: money keys must keep their exact cents.
            return tomllib.load(f, parse_float=Decimal)
    except FileNotFoundError:
        raise SettingsError([f"{path}: settings file not found"]) from None
    except IsADirectoryError:
        raise SettingsError([f"{path}: is a folder, not a settings file"]) from None
    except PermissionError:
        raise SettingsError([f"{path}: permission denied"]) from None
    except UnicodeDecodeError as e:
        raise SettingsError([f"{path}: not UTF-8 text ({e.reason})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError([f"{path}: not valid TOML: {e}"]) from None


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], str], list[str]]:
    """`ACHBATCH_<SECTION>__<KEY>` variables as {section: {key: value}}, their names, and problems
    (a misspelt variable is an error, not silently ignored)."""
    values: dict[str, dict[str, str]] = {}
    names: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or _SEP not in name:
            continue  # ACHBATCH_CONFIG, ACHBATCH_TEST_PG_URL, ...: not settings keys
        section, _, key = name[len(ENV_PREFIX):].partition(_SEP)
        section, key = section.lower(), key.lower()
        model = SECTIONS.get(section)
        if model is None:
            problems.append(f"{name}: unknown settings section {section!r} "
                            f"(sections: {', '.join(SECTIONS)})")
            continue
        if key not in model.model_fields:
            problems.append(f"{name}: unknown key {section}.{key} "
                            f"(keys of [{section}]: {', '.join(model.model_fields)})")
            continue
        values.setdefault(section, {})[key] = environ[name]
        names[(section, key)] = name
    return values, names, problems


def _message(err: dict[str, Any], where: dict[tuple[str, str], str], file_label: str | None) -> str:
    loc = tuple(str(p) for p in err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err.get("type") == "extra_forbidden":
        if len(loc) == 1:
            msg = f"unknown settings section (sections: {', '.join(SECTIONS)})"
        elif len(loc) == 2 and loc[0] in SECTIONS:
            msg = f"unknown key (keys of [{loc[0]}]: {', '.join(SECTIONS[loc[0]].model_fields)})"
    key = ".".join(loc[:2]) if loc else "settings"
    source = where.get(loc[:2]) if len(loc) >= 2 else None
    if source is None and file_label and len(loc) >= 2:
        source = file_label
    return f"{key}: {msg}" + (f" (from {source})" if source else "")


def load_settings(config_path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from `config_path` (else `$ACHBATCH_CONFIG`, else the embedded defaults), with
    `ACHBATCH_<SECTION>__<KEY>` environment variables taking precedence over the file.

    Raises SettingsError listing every bad key, never returns partially valid settings."""
    env = os.environ if environ is None else environ
    if config_path is None and env.get(CONFIG_ENV):
        config_path = env[CONFIG_ENV]
    data: dict[str, Any] = {}
    file_label = None
    problems: list[str] = []
    if config_path is not None and str(config_path) != "":
        path = Path(config_path)
        data = _read_toml(path)
        file_label = str(path)
        for section, value in list(data.items()):
            if section in SECTIONS and not isinstance(value, dict):
                problems.append(f"{section}: must be a [{section}] table, got a {type(value).__name__} "
                                f"(in {path})")
                del data[section]
    overrides, names, env_problems = _env_overrides(env)
    problems += env_problems
    for section, keys in overrides.items():
        data.setdefault(section, {}).update(keys)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        problems += [_message(err, names, file_label) for err in e.errors(include_url=False, include_input=False)]
        settings = None
    if problems:
        raise SettingsError(problems)
    assert settings is not None
    return settings


def settings_from_context(ctx: click.Context) -> Settings:
    """For commands: the settings named by the global `--config` option; on a problem, print every
    bad key to stderr and exit 2 (usage or configuration error)."""
    obj = ctx.find_root().obj or {}
    try:
        return load_settings(obj.get("config_path"))
    except SettingsError as e:
        click.echo("achbatch: configuration error:", err=True)
        for line in e.problems:
            click.echo(f"  {line}", err=True)
        sys.exit(exitcodes.USAGE)


def open_keyring(settings: Settings):
    """For commands: the account-number keyring named by `[security]`, checked against the keys the
    database's stored data needs (`batch.run.wiring.keyring`). Says so on stderr when it had to
    create the embedded-defaults key file; a missing, exposed, malformed or wrong key exits 2, an
    unreachable database as any database error (75)."""
    from batch.run import wiring

    try:
        loaded = wiring.keyring(settings)
    except wiring.ConfigurationError as e:
        click.echo(f"achbatch: configuration error:\n  {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    if loaded.created is not None:
        click.echo(f"achbatch: created a new account-number key at {loaded.created} (mode 0600). Back it up: "
                   "stored account numbers cannot be read without it. Production supplies its own "
                   "(security.key_file or ACHBATCH_SECURITY__KEY).", err=True)
    for warning in loaded.warnings:
        click.echo(f"achbatch: warning: {warning}", err=True)
    return loaded.keyring
