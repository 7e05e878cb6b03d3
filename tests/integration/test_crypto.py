"""Account-number encryption (batch/store/crypto.py): AES-GCM round trip, tamper detection, key ids and
rotation, keyed hashes, masking, and the key file created 0600 on first use."""
from __future__ import annotations

import base64
import os
import stat
from datetime import date

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from batch.store.crypto import (
    ACCOUNT_CONTEXT,
    FILE_CONTEXT,
    DecryptionError,
    KeyMaterialError,
    Keyring,
    generate_secret,
    load_keyring,
    mask,
    rotate,
)
from batch.collect.imports import import_autopay, import_payments
from batch.store.models import BankAccount, NachaFile
from jobs.cli import cli

K1, K2 = generate_secret(), generate_secret()


# -- round trip and layout ---------------------------------------------------------------------------

def test_round_trip_and_fresh_nonce_each_time():
    ring = Keyring([K1])
    a = ring.encrypt_account("000123456789")
    b = ring.encrypt_account("000123456789")
    assert a != b  # random nonce: equal plaintexts give unrelated ciphertexts
    assert ring.decrypt_account(a) == ring.decrypt_account(b) == "000123456789"
    assert b"123456789" not in a
    assert a[0] == 1 and Keyring.key_id_of(a) == ring.current_key_id
    assert len(a) == 1 + 4 + 12 + len("000123456789") + 16


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000), context=st.binary(max_size=40))
def test_round_trip_any_bytes(data, context):
    ring = Keyring([K1])
    assert ring.decrypt(ring.encrypt(data, context), context) == data


def test_secret_format():
    s = generate_secret()
    assert len(s) == 44 and len(base64.b64decode(s)) == 32
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(K1)).decode().rstrip("=")
    assert Keyring([urlsafe]).current_key_id == Keyring([K1]).current_key_id  # same key, other spelling
    for bad in ("", "not base64!!", base64.b64encode(b"short").decode()):
        with pytest.raises(KeyMaterialError) as exc:
            Keyring([bad])
        assert bad not in str(exc.value) or bad == ""


def test_repr_never_shows_secrets():
    ring = Keyring([K1, K2])
    assert K1 not in repr(ring) and K2 not in repr(ring)


# -- tamper detection --------------------------------------------------------------------------------

@pytest.mark.parametrize("position", ["version", "key_id", "nonce", "ciphertext", "tag"])
def test_any_changed_byte_is_detected(position):
    ring = Keyring([K1])
    blob = bytearray(ring.encrypt_account("9876543210"))
    index = {"version": 0, "key_id": 2, "nonce": 8, "ciphertext": 18, "tag": len(blob) - 1}[position]
    blob[index] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.decrypt_account(bytes(blob))


def test_truncated_and_foreign_blobs_are_refused():
    ring = Keyring([K1])
    blob = ring.encrypt_account("9876543210")
    for bad in (blob[:-1], blob[:20], b"", b"9876543210"):
        with pytest.raises(DecryptionError):
            ring.decrypt_account(bad)


def test_context_binds_the_ciphertext_to_its_column():
    ring = Keyring([K1])
    blob = ring.encrypt(b"9876543210", ACCOUNT_CONTEXT)
    with pytest.raises(DecryptionError, match="authentication"):
        ring.decrypt(blob, FILE_CONTEXT)


def test_unknown_key_id_is_named():
    blob = Keyring([K1]).encrypt_account("9876543210")
    with pytest.raises(DecryptionError) as exc:
        Keyring([K2]).decrypt_account(blob)
    assert Keyring([K1]).current_key_id in str(exc.value)


# -- keyed hash and mask -----------------------------------------------------------------------------

def test_account_hash_is_keyed_and_covers_routing():
    r1, r2 = Keyring([K1]), Keyring([K2])
    h = r1.account_hash("011000015", "12345678")
    assert h == r1.account_hash("011000015", "12345678") and len(h) == 64
    assert h != r2.account_hash("011000015", "12345678")  # another key, another hash
    assert h != r1.account_hash("021000021", "12345678")  # routing is part of it
    assert h != r1.account_hash("011000015", "012345678")  # leading zeros are significant
    both = Keyring([K2, K1])
    assert both.account_hashes("011000015", "12345678") == [r2.account_hash("011000015", "12345678"), h]


@pytest.mark.parametrize("value, shown", [
    ("123456789", "****6789"), ("12345", "****2345"), ("1234", "****"), ("12", "****"), ("", ""), (None, ""),
])
def test_mask_shows_only_last_four(value, shown):
    assert mask(value) == shown


# -- key sources ---------------------------------------------------------------------------------------

def test_default_key_file_is_created_0600_once(tmp_path):
    path = tmp_path / "achbatch-data" / "keys" / "account.key"
    old = os.umask(0)  # even with a permissive umask the file must be private
    try:
        first = load_keyring(None, None, path)
    finally:
        os.umask(old)
    assert first.created == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second = load_keyring(None, None, path)
    assert second.created is None and not second.warnings
    assert second.keyring.current_key_id == first.keyring.current_key_id


def test_configured_key_file_must_exist(tmp_path):
    with pytest.raises(KeyMaterialError, match="does not exist"):
        load_keyring(None, tmp_path / "nope.key", tmp_path / "default.key")
    assert not (tmp_path / "default.key").exists()  # never silently falls back to a new key


def test_key_file_with_comments_and_rotation_order(tmp_path):
    path = tmp_path / "account.key"
    path.write_text(f"# current key first\n{K2}\n\n# previous key\n{K1}  # retired 2026-01\n")
    path.chmod(0o600)
    loaded = load_keyring(None, path, tmp_path / "unused")
    assert loaded.keyring.key_ids == [Keyring([K2]).current_key_id, Keyring([K1]).current_key_id]


def test_key_from_settings_with_comma_separated_old_key(tmp_path):
    loaded = load_keyring(f"{K2},{K1}", None, tmp_path / "unused.key")
    assert loaded.source == "settings" and len(loaded.keyring.key_ids) == 2
    assert not (tmp_path / "unused.key").exists()


def test_key_file_readable_by_group_or_others_is_refused_and_bad_content_too(tmp_path):
    path = tmp_path / "k"
    path.write_text(K1 + "\n")
    for mode in (0o644, 0o640, 0o604, 0o660, 0o602):
        path.chmod(mode)
        with pytest.raises(KeyMaterialError, match=f"by group or others \\(mode {mode:04o}\\): refused") as exc:
            load_keyring(None, path, tmp_path / "d")
        assert K1 not in str(exc.value)
    path.chmod(0o600)
    assert load_keyring(None, path, tmp_path / "d").keyring.key_ids == Keyring([K1]).key_ids
    path.write_text("secret-but-not-a-key\n")
    with pytest.raises(KeyMaterialError) as exc:
        load_keyring(None, path, tmp_path / "d")
    assert "secret-but-not-a-key" not in str(exc.value)
    path.write_text("# only a comment\n")
    with pytest.raises(KeyMaterialError, match="holds no key"):
        load_keyring(None, path, tmp_path / "d")


def test_default_key_is_created_only_while_nothing_is_stored(tmp_path):
    from batch.store.crypto import KeyMismatchError, KeyMissingError

    default = tmp_path / "keys" / "account.key"
    kid = Keyring([K1]).current_key_id
    with pytest.raises(KeyMissingError, match=f"encrypted with key {kid}, which needs it"):
        load_keyring(None, None, default, stored_ids=lambda: {kid})
    assert not default.exists()
    with pytest.raises(KeyMissingError, match="db upgrade"):  # cannot tell: no key made either
        load_keyring(None, None, default, stored_ids=lambda: None)
    assert not default.exists()
    loaded = load_keyring(None, None, default, stored_ids=set)
    assert loaded.created == default and default.stat().st_mode & 0o777 == 0o600
    made = loaded.keyring.current_key_id
    # the ring must match a key the stored data needs; a new current key beside the old one does
    with pytest.raises(KeyMismatchError, match=f"key {made}\\) is one the stored data was encrypted with \\(key {kid}\\)"):
        load_keyring(None, None, default, stored_ids=lambda: {kid})
    with pytest.raises(KeyMismatchError):
        load_keyring(K2, None, default, stored_ids=lambda: {kid})
    rotating = load_keyring(f"{K2},{K1}", None, default, stored_ids=lambda: {kid})
    assert rotating.keyring.current_key_id == Keyring([K2]).current_key_id and rotating.warnings == ()
    partial = load_keyring(K1, None, default, stored_ids=lambda: {kid, "0badc0de"})
    assert "0badc0de" in partial.warnings[0] and "cannot be read" in partial.warnings[0]


# -- rotation against the database ------------------------------------------------------------------

def _autopay_csv(tmp_path, rows):
    p = tmp_path / "autopay.csv"
    p.write_text("member_id,plan_id,routing_number,account_number,account_type,account_holder,authorized_at,channel\n"
                 + "".join(r + "\n" for r in rows))
    return p


def test_rotate_reencrypts_accounts_and_files(sessions, tmp_path):
    old = Keyring([K1])
    csv_path = _autopay_csv(tmp_path, [
        f"M{i},P1,011000015,{55500000 + i},checking,Holder {i},2026-01-02,web" for i in range(7)
    ])
    assert len(import_autopay(sessions, csv_path, keyring=old).rejected) == 0
    with sessions() as s, s.begin():
        s.add(NachaFile(file_date=date(2026, 1, 15), file_id_modifier="A", file_name="f.ach",
                        sha256="0" * 64, content_enc=old.encrypt(b"101 ...file bytes...", FILE_CONTEXT),
                        entry_count=0, total_debit_cents=0, total_credit_cents=0))

    new = Keyring([K2, K1])
    # Before rotation, the new ring still matches rows hashed under the old key: no duplicate account.
    pay = tmp_path / "payments.csv"
    pay.write_text("confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,routing_number,"
                   "account_number,account_type,account_holder\n"
                   "PC-1,2026-01-15T10:00:00-05:00,portal,M3,P1,2026-02,10.00,011000015,55500003,checking,Holder 3\n")
    assert import_payments(sessions, pay, keyring=new).loaded == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(BankAccount)) == 7

    result = rotate(sessions, new, batch_size=3)  # several batches
    assert (result.accounts_reencrypted, result.files_reencrypted) == (7, 1)
    only_new = Keyring([K2])
    with sessions() as s:
        for acct in s.scalars(select(BankAccount)):
            assert Keyring.key_id_of(acct.account_number_enc) == only_new.current_key_id
            number = only_new.decrypt_account(acct.account_number_enc)
            assert acct.account_hash == only_new.account_hash(acct.routing_number, number)
            with pytest.raises(DecryptionError):
                old.decrypt_account(acct.account_number_enc)
        f = s.scalars(select(NachaFile)).one()
        assert only_new.decrypt(f.content_enc, FILE_CONTEXT) == b"101 ...file bytes..."
    # Idempotent: a second run finds nothing to do.
    again = rotate(sessions, new)
    assert (again.accounts_reencrypted, again.files_reencrypted) == (0, 0)
    assert again.accounts_checked == 7


# -- the CLI announces a created key ---------------------------------------------------------------

def test_cli_creates_key_file_0600_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ACHBATCH_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    csv_path = _autopay_csv(tmp_path, ["M1,P1,011000015,12345678,checking,Pat Q,2026-01-02,web"])
    result = runner.invoke(cli, ["import", "autopay", str(csv_path)])
    assert result.exit_code == 0, result.output
    key = tmp_path / "achbatch-data" / "keys" / "account.key"
    assert "created a new account-number key" in result.stderr and str(key.relative_to(tmp_path)) in result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    second = runner.invoke(cli, ["import", "autopay", str(csv_path)])
    assert second.exit_code == 0 and "created a new" not in second.stderr


def test_cli_bad_key_exits_2_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACHBATCH_SECURITY__KEY", "hunter2-is-not-a-key")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    csv_path = _autopay_csv(tmp_path, ["M1,P1,011000015,12345678,checking,Pat Q,2026-01-02,web"])
    result = runner.invoke(cli, ["import", "autopay", str(csv_path)])
    assert result.exit_code == 2
    assert "security" in result.output and "hunter2" not in result.output
