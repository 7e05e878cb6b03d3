"""Settings: embedded defaults, TOML file, environment overrides, and messages that name the bad key
(batch/config.py, jobs/settings.py, config/achbatch.example.toml)."""
from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch.config import SECTIONS, Settings
from jobs.cli import cli
from jobs.settings import SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "achbatch.example.toml"


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "achbatch.toml"
    p.write_text(body, encoding="utf-8")
    return p


def _problems(config=None, env=None) -> str:
    with pytest.raises(SettingsError) as exc:
        load_settings(config, environ=env or {})
    return str(exc.value)


# -- defaults --------------------------------------------------------------------------------------

def test_embedded_defaults_without_any_config():
    s = load_settings(None, environ={})
    assert s == Settings()
    assert s.database_url == "sqlite:///achbatch-data/achbatch.db"
    assert s.bank.transport == "folder"
    assert s.bank_folder == Path("achbatch-data/bank")
    assert s.outbox_dir == Path("achbatch-data/outbox")
    assert s.inbox_dir == Path("achbatch-data/inbox")
    assert s.archive_dir == Path("achbatch-data/archive")
    assert s.reports_dir == Path("achbatch-data/reports")
    assert s.notices_dir == Path("achbatch-data/notices")
    assert s.default_key_file == Path("achbatch-data/keys/account.key")
    assert s.origination.timezone == "America/New_York"
    assert s.origination.autopay_lead_days == 0
    assert s.origination.balanced is False
    assert s.origination.retry_delay_banking_days == 2
    assert s.coverage.grace_months_subsidized == 3
    assert s.coverage.grace_months_unsubsidized == 0
    assert s.security.key is None and s.security.key_file is None


def test_data_dir_moves_every_derived_path(tmp_path):
    s = load_settings(_write(tmp_path, '[paths]\ndata_dir = "/srv/ach"\n'), environ={})
    assert s.database_url == "sqlite:////srv/ach/achbatch.db"
    assert s.bank_folder == Path("/srv/ach/bank")
    assert s.default_key_file == Path("/srv/ach/keys/account.key")
    assert s.metrics_file == Path("/srv/ach/metrics.prom")


# -- file and environment --------------------------------------------------------------------------

def test_toml_values_are_loaded_and_typed(tmp_path):
    cfg = _write(tmp_path, """
[database]
url = "postgresql+psycopg://ach@db/ach"
[company]
name = "COMMONWEALTH HIX"
company_id = "1987654321"
odfi_routing = "021000021"
immediate_destination = " 021000021"
settlement_routing = "011000015"
settlement_account = "123456789"
[origination]
timezone = "America/Chicago"
file_cutoff = 19:30:00
autopay_lead_days = 2
balanced = true
max_entries_per_file = 1000
max_dollars_per_file = 1000000.10
[schedule]
nightly_at = "18:45"
[coverage]
payment_threshold = 10
""")
    s = load_settings(cfg, environ={})
    assert s.database_url == "postgresql+psycopg://ach@db/ach"
    assert s.company.immediate_destination == "021000021"  # the leading blank is layout, not data
    assert s.origination.file_cutoff == time(19, 30)
    assert s.origination.balanced is True
    # TOML numbers are read as Decimal: 1000000.10 is exactly 100000010 cents, no float rounding.
    assert s.origination.max_cents_per_file == 100_000_010
    assert s.coverage.payment_threshold_cents == 1000
    assert s.schedule.nightly_at == time(18, 45)


def test_environment_overrides_the_file(tmp_path):
    cfg = _write(tmp_path, '[origination]\nautopay_lead_days = 1\ntimezone = "America/Chicago"\n')
    env = {
        "ACHBATCH_ORIGINATION__AUTOPAY_LEAD_DAYS": "3",
        "ACHBATCH_ORIGINATION__BALANCED": "false",
        "ACHBATCH_DATABASE__URL": "sqlite:////tmp/x.db",
        "ACHBATCH_PATHS__DATA_DIR": "/var/lib/achbatch",
        "ACHBATCH_ORIGINATION__MAX_DOLLARS_PER_FILE": "12.34",
        "ACHBATCH_TEST_PG_URL": "ignored: not a settings variable",
        "ACHBATCH_CONFIG": "ignored when a path is given",
    }
    s = load_settings(cfg, environ=env)
    assert s.origination.autopay_lead_days == 3
    assert s.origination.timezone == "America/Chicago"  # from the file, not overridden
    assert s.database_url == "sqlite:////tmp/x.db"
    assert s.data_dir == Path("/var/lib/achbatch")
    assert s.origination.max_cents_per_file == 1234


def test_environment_alone_without_a_file():
    s = load_settings(None, environ={"ACHBATCH_BANK__TRANSPORT": "sftp", "ACHBATCH_BANK__HOST": "sftp.bank.test",
                                     "ACHBATCH_BANK__USERNAME": "hix", "ACHBATCH_BANK__PRIVATE_KEY": "/k/id",
                                     "ACHBATCH_BANK__KNOWN_HOSTS": "/k/known", "ACHBATCH_BANK__PORT": "2222"})
    assert s.bank.transport == "sftp" and s.bank.port == 2222 and s.bank.host == "sftp.bank.test"


def test_achbatch_config_variable_names_the_file(tmp_path):
    cfg = _write(tmp_path, '[company]\nname = "FROM ENV FILE"\n')
    assert load_settings(None, environ={"ACHBATCH_CONFIG": str(cfg)}).company.name == "FROM ENV FILE"


def test_security_key_from_environment_is_secret():
    s = load_settings(None, environ={"ACHBATCH_SECURITY__KEY": "c2VjcmV0"})
    assert s.security.key.get_secret_value() == "c2VjcmV0"
    assert "c2VjcmV0" not in repr(s) and "c2VjcmV0" not in str(s.model_dump())


# -- bad keys and values: the message names the key and where it came from -----------------------

def test_unknown_key_in_file_is_named(tmp_path):
    cfg = _write(tmp_path, '[company]\nnmae = "X"\n')
    msg = _problems(cfg)
    assert "company.nmae" in msg and "unknown key" in msg and str(cfg) in msg


def test_unknown_section_in_file_is_named(tmp_path):
    msg = _problems(_write(tmp_path, '[orgination]\ntimezone = "UTC"\n'))
    assert "orgination" in msg and "unknown settings section" in msg


def test_misspelt_environment_variable_is_an_error():
    msg = _problems(None, {"ACHBATCH_ORIGINATION__TIMEZNE": "UTC"})
    assert "ACHBATCH_ORIGINATION__TIMEZNE" in msg and "origination.timezne" in msg
    msg = _problems(None, {"ACHBATCH_ORIGIN__TIMEZONE": "UTC"})
    assert "ACHBATCH_ORIGIN__TIMEZONE" in msg and "unknown settings section" in msg


@pytest.mark.parametrize("env, key, words", [
    ({"ACHBATCH_COMPANY__ODFI_ROUTING": "011000016"}, "company.odfi_routing", "check digit should be 5"),
    ({"ACHBATCH_COMPANY__SETTLEMENT_ROUTING": "12345"}, "company.settlement_routing", "9 digits"),
    ({"ACHBATCH_COMPANY__COMPANY_ID": "12345678901"}, "company.company_id", "at most 10 characters"),
    ({"ACHBATCH_COMPANY__NAME": "A NAME FAR TOO LONG FOR NACHA"}, "company.name", "at most 16"),
    ({"ACHBATCH_COMPANY__SETTLEMENT_ACCOUNT": "12ab"}, "company.settlement_account", "4 to 17 digits"),
    ({"ACHBATCH_ORIGINATION__TIMEZONE": "Mars/Olympus_Mons"}, "origination.timezone", "unknown time zone"),
    ({"ACHBATCH_SCHEDULE__TIMEZONE": "EST5EDT7"}, "schedule.timezone", "unknown time zone"),
    ({"ACHBATCH_ORIGINATION__AUTOPAY_LEAD_DAYS": "-1"}, "origination.autopay_lead_days", "greater than or equal"),
    ({"ACHBATCH_ORIGINATION__AUTOPAY_LEAD_DAYS": "two"}, "origination.autopay_lead_days", "integer"),
    ({"ACHBATCH_ORIGINATION__BALANCED": "perhaps"}, "origination.balanced", "boolean"),
    ({"ACHBATCH_ORIGINATION__MAX_DOLLARS_PER_FILE": "12.345"}, "origination.max_dollars_per_file", "two decimals"),
    ({"ACHBATCH_ORIGINATION__MAX_DOLLARS_PER_FILE": "0"}, "origination.max_dollars_per_file", "more than 0"),
    ({"ACHBATCH_ORIGINATION__FILE_CUTOFF": "25:00"}, "origination.file_cutoff", "time"),
    ({"ACHBATCH_BANK__TRANSPORT": "ftp"}, "bank.transport", "'folder' or 'sftp'"),
    ({"ACHBATCH_BANK__PORT": "70000"}, "bank.port", "less than or equal"),
    ({"ACHBATCH_PATHS__DATA_DIR": ""}, "paths.data_dir", "must not be empty"),
])
def test_bad_value_message_names_key_and_variable(env, key, words):
    msg = _problems(None, env)
    assert msg.startswith(key + ":"), msg
    assert words in msg
    assert next(iter(env)) in msg  # where the value came from


def test_bad_value_in_file_names_the_file(tmp_path):
    cfg = _write(tmp_path, '[origination]\ntimezone = "Nowhere/Special"\n')
    msg = _problems(cfg)
    assert msg.startswith("origination.timezone:") and str(cfg) in msg


def test_float_money_cannot_sneak_in_via_python():
    with pytest.raises(ValueError):
        Settings.model_validate({"coverage": {"payment_threshold": 0.1}})
    assert Settings.model_validate({"coverage": {"payment_threshold": Decimal("0.10")}}).coverage.payment_threshold_cents == 10


def test_all_problems_reported_at_once(tmp_path):
    msg = _problems(_write(tmp_path, '[company]\nodfi_routing = "1"\ncompany_id = "ABCDEFGHIJKL"\n'),
                    {"ACHBATCH_ORIGINATION__TIMEZONE": "X/Y"})
    assert "company.odfi_routing" in msg and "company.company_id" in msg and "origination.timezone" in msg


def test_cross_key_rules():
    msg = _problems(None, {"ACHBATCH_ORIGINATION__BALANCED": "true"})
    assert "company.settlement_routing" in msg and "company.settlement_account" in msg
    msg = _problems(None, {"ACHBATCH_BANK__TRANSPORT": "sftp", "ACHBATCH_BANK__HOST": "h"})
    assert "bank.username" in msg and "bank.known_hosts" in msg and "bank.host" not in msg.split("needs")[1]
    msg = _problems(None, {"ACHBATCH_SECURITY__KEY": "AAAA", "ACHBATCH_SECURITY__KEY_FILE": "/k"})
    assert "security.key or security.key_file, not both" in msg
    assert "AAAA" not in msg  # a secret is never echoed


def test_section_that_is_not_a_table(tmp_path):
    msg = _problems(_write(tmp_path, 'database = "sqlite:///x.db"\n'))
    assert "database: must be a [database] table" in msg


@pytest.mark.parametrize("body, words", [
    (None, "settings file not found"),
    ("[company\nname = 1\n", "not valid TOML"),
])
def test_unreadable_file(tmp_path, body, words):
    path = tmp_path / "missing.toml"
    if body is not None:
        path.write_text(body)
    msg = _problems(path)
    assert words in msg and str(path) in msg


# -- the example file --------------------------------------------------------------------------------

def test_example_file_documents_every_key_with_its_default():
    text = EXAMPLE.read_text(encoding="utf-8")
    sections = {m.group(1): m.start() for m in re.finditer(r"^\[([a-z_]+)\]\s*$", text, re.M)}
    assert list(sections) == list(SECTIONS), "sections in contract order"
    bounds = sorted(sections.values()) + [len(text)]
    for (name, start), end in zip(sorted(sections.items(), key=lambda kv: kv[1]), bounds[1:]):
        body = text[start:end]
        for key in SECTIONS[name].model_fields:
            if name == "security" and key == "key":
                assert "ACHBATCH_SECURITY__KEY" in body  # the secret is described, never written
                continue
            line = re.search(rf"^(.*)\n(#?\s*{key}\s*=.*)$", body, re.M)
            assert line, f"{name}.{key} missing from the example file"
            previous, this = line.group(1), line.group(2)
            assert "#" in this or previous.startswith("#"), f"{name}.{key} has no comment"


def test_example_file_values_are_the_defaults():
    assert load_settings(EXAMPLE, environ={}) == Settings()


# -- the CLI maps configuration errors to exit 2 ----------------------------------------------------

def test_cli_bad_setting_exits_2_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _write(tmp_path, '[company]\nodfi_routing = "011000016"\n')
    result = CliRunner().invoke(cli, ["--config", str(cfg), "db", "upgrade"])
    assert result.exit_code == 2
    assert "company.odfi_routing" in result.output and "check digit" in result.output
    assert not (tmp_path / "achbatch-data").exists()  # nothing was touched


def test_cli_bad_environment_override_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACHBATCH_DATABASE__URLL", "sqlite:///x.db")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 2 and "ACHBATCH_DATABASE__URLL" in result.output


def test_schedule_run_timeout_takes_durations():
    from batch.config import ScheduleSettings

    assert ScheduleSettings().run_timeout == 3 * 3600 and ScheduleSettings().run_timeout_systemd == "3h"
    assert ScheduleSettings(run_timeout="90min").run_timeout == 5400
    assert ScheduleSettings(run_timeout="90min").run_timeout_systemd == "90min"
    assert ScheduleSettings(run_timeout="2h30min").run_timeout == 9000
    assert ScheduleSettings(run_timeout=45).run_timeout == 2700  # a bare number is minutes
    assert ScheduleSettings(run_timeout="3700s").run_timeout_systemd == "3700s"
    for bad in ("3 hours", "0min", "25h", "", "h"):
        with pytest.raises(ValueError, match="run_timeout"):
            ScheduleSettings(run_timeout=bad)
