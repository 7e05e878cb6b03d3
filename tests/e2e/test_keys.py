"""Account keys are never silently replaced (issue 13), through the CLI in subprocesses on SQLite
and PostgreSQL: the embedded default key file is created on first use only while the database
holds no encrypted data; once it does, a missing key file is exit 2 naming it (no new key, nothing
stored under another key); a keyring matching none of the key ids the database records is exit 2
(a new current key with the old one after it, as during rotation, works); a key file readable by
group or others is refused (exit 2)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from batch.store.crypto import Keyring, generate_secret
from batch.store.db import make_engine, make_sessionmaker
from batch.store.models import BankAccount, NachaFile

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"
DAY = "2026-01-20"  # a banking day on which the sample payments and pulls are due


def achbatch(cwd: Path, url: str, *args, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    env["ACHBATCH_DATABASE__URL"] = url
    # the sample payments are first uses of WEB accounts: sent at once here, as in the demo
    # (held first uses: tests/integration/test_validation.py)
    env["ACHBATCH_VALIDATION__FIRST_USE"] = "send"
    if key is not None:
        env["ACHBATCH_SECURITY__KEY"] = key
    return subprocess.run([sys.executable, "-m", "jobs", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _setup(tmp_path: Path, url: str) -> Path:
    """Schema, then the sample premiums, mandates and payments imported on the embedded default key
    (created by the first import that stores an account). Returns the key file."""
    assert achbatch(tmp_path, url, "db", "upgrade").returncode == 0
    key_file = tmp_path / "achbatch-data" / "keys" / "account.key"
    r = achbatch(tmp_path, url, "import", "premiums", SAMPLES / "premiums.csv")
    assert r.returncode == 0, r.stderr
    assert not key_file.exists()  # premiums store nothing encrypted: no key needed yet
    r = achbatch(tmp_path, url, "import", "autopay", SAMPLES / "autopay.csv")
    assert r.returncode == 0, r.stderr
    assert "created a new account-number key" in r.stderr and key_file.exists()
    r = achbatch(tmp_path, url, "import", "payments", SAMPLES / "payments.csv")
    assert r.returncode == 0 and "created" not in r.stderr, r.stderr
    return key_file


def _count(url: str, model) -> int:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as s:
            return s.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()


def test_missing_default_key_is_exit_2_and_never_replaced(migrated_url, tmp_path):
    key_file = _setup(tmp_path, migrated_url)
    old_id = Keyring([key_file.read_text().strip()]).current_key_id
    accounts = _count(migrated_url, BankAccount)
    key_file.unlink()
    for args in (("originate", "--date", DAY), ("import", "autopay", SAMPLES / "autopay.csv"), ("send",)):
        r = achbatch(tmp_path, migrated_url, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "DecryptionError" not in r.stderr
        assert f"account key file {Path('achbatch-data/keys/account.key')} is missing" in r.stderr
        assert f"encrypted with key {old_id}, which needs it" in r.stderr
        assert not key_file.exists()  # no fresh key made
    assert _count(migrated_url, BankAccount) == accounts and _count(migrated_url, NachaFile) == 0


def test_replaced_key_is_exit_2_and_rotation_keeps_working(migrated_url, tmp_path):
    key_file = _setup(tmp_path, migrated_url)
    old = key_file.read_text().strip()
    new = generate_secret()
    key_file.write_text(new + "\n")  # same mode (0600): only the key is wrong
    r = achbatch(tmp_path, migrated_url, "originate", "--date", DAY)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "is one the stored data was encrypted with" in r.stderr
    assert Keyring([old]).current_key_id in r.stderr and Keyring([new]).current_key_id in r.stderr
    # the same through the settings (ACHBATCH_SECURITY__KEY)
    r = achbatch(tmp_path, migrated_url, "originate", "--date", DAY, key=new)
    assert r.returncode == 2 and "is one the stored data was encrypted with" in r.stderr, r.stderr
    assert _count(migrated_url, NachaFile) == 0

    # rotation: a fresh current key with the old one after it matches, and works
    key_file.write_text(f"{new}\n{old}\n")
    r = achbatch(tmp_path, migrated_url, "originate", "--date", DAY)
    assert r.returncode == 0, r.stderr
    assert _count(migrated_url, NachaFile) == 1
    r = achbatch(tmp_path, migrated_url, "db", "rotate-keys")
    assert r.returncode == 0, r.stderr
    key_file.write_text(new + "\n")  # after rotation the old key may go
    r = achbatch(tmp_path, migrated_url, "send", "--date", DAY)
    assert r.returncode == 0, r.stderr
    # and now the old key alone matches nothing any more
    key_file.write_text(old + "\n")
    r = achbatch(tmp_path, migrated_url, "report", "reconciliation", "--date", DAY, "--format", "csv",
                 "--out", tmp_path / "rec.csv")
    assert r.returncode == 2 and "is one the stored data was encrypted with" in r.stderr, r.stderr


def test_key_file_readable_by_group_or_others_is_refused(migrated_url, tmp_path):
    key_file = _setup(tmp_path, migrated_url)
    for mode in (0o640, 0o604, 0o620):
        key_file.chmod(mode)
        r = achbatch(tmp_path, migrated_url, "originate", "--date", DAY)
        assert r.returncode == 2, r.stderr
        assert f"(mode {mode:04o}): refused" in r.stderr
    assert _count(migrated_url, NachaFile) == 0
    key_file.chmod(0o600)
    assert achbatch(tmp_path, migrated_url, "originate", "--date", DAY).returncode == 0


def test_default_key_is_made_again_only_while_nothing_is_encrypted(migrated_url, tmp_path):
    key_file = tmp_path / "achbatch-data" / "keys" / "account.key"
    r = achbatch(tmp_path, migrated_url, "originate", "--date", DAY)  # empty database: first use
    assert r.returncode == 0 and key_file.exists(), r.stderr
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600)
    first = key_file.read_text()
    key_file.unlink()  # nothing encrypted under it yet: a new key hurts nothing
    r = achbatch(tmp_path, migrated_url, "import", "autopay", SAMPLES / "autopay.csv")
    assert r.returncode == 0 and "created a new account-number key" in r.stderr, r.stderr
    assert key_file.read_text() != first
