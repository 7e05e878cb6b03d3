"""Sending built files and fetching the bank's files (batch/bank/delivery.py, batch/bank/inbound.py) with the
folder transport and a real OpenSSH server, on SQLite and PostgreSQL: byte-for-byte delivery, the
ledgers, the archive, PGP, the inbox interface for the returns processor, and the CLI's exit codes."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from batch.config import Settings
from batch.store.crypto import Keyring, generate_secret
from batch.bank.delivery import DeliveryPolicy, run_lock, send_files, SEND_LOCK_KEY
from batch.bank.inbound import InboundPolicy, fetch_files, mark_inbound_processed, pending_inbound, tidy_inbox
from batch.store.models import Delivery, DeliveryAttempt, InboundFile, NachaFile
from batch.collect.origination import stored_bytes
from batch.bank.pgp import Pgp
from batch.bank.transport import transport_from_settings
from sshd import add_built_file, nacha_like, sshd_server, write_config  # noqa: F401 - fixture
from test_origination import run as originate_run, seed

ROOT = Path(__file__).resolve().parents[2]
FILE_DATE = date(2026, 12, 1)


# -- helpers -----------------------------------------------------------------------------------------

class Env:
    """A data folder, a bank (folder or the sshd's filesystem) and settings for them."""

    def __init__(self, tmp_path: Path, server=None, **bank):
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.bank = tmp_path / "bank"
        for d in ("incoming", "outgoing", "archive"):
            (self.bank / d).mkdir(parents=True, exist_ok=True)
        self.server = server
        self.bank_over = bank

    def bank_section(self) -> dict:
        if self.server is None:
            d = {"transport": "folder", "folder": str(self.bank), "retry_attempts": 2, "retry_wait_initial": 0.05,
                 "retry_wait_max": 0.1}
        else:
            d = self.server.bank_settings(outbound_dir=str(self.bank / "incoming"),
                                          inbound_dir=str(self.bank / "outgoing"))
        d.update(self.bank_over)
        return d

    def settings(self, **bank) -> Settings:
        b = self.bank_section()
        b.update(bank)
        return Settings.model_validate({"bank": b, "paths": {"data_dir": str(self.data)}})

    def send(self, sessions, keyring, *, settings=None, pgp=None, **kw):
        st = settings or self.settings()
        return send_files(sessions, keyring, transport_from_settings(st), DeliveryPolicy.from_settings(st.bank),
                          archive_dir=st.archive_dir, outbox=st.outbox_dir, pgp=pgp, transport_kind=st.bank.transport,
                          sleep=lambda _s: None, **kw)

    def fetch(self, sessions, *, settings=None, pgp=None, **kw):
        st = settings or self.settings()
        return fetch_files(sessions, transport_from_settings(st), InboundPolicy.from_settings(st.bank),
                           inbox=st.inbox_dir, archive_dir=st.archive_dir, pgp=pgp, sleep=lambda _s: None, **kw)

    def incoming(self) -> list[str]:
        return sorted(os.listdir(self.bank / "incoming"))


def ledger(sessions, file_id):
    with sessions() as s:
        row = s.get(NachaFile, file_id)
        d = s.scalars(select(Delivery).where(Delivery.file_id == file_id)).first()
        attempts = list(s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == d.id)
                                  .order_by(DeliveryAttempt.number))) if d else []
        return row, d, attempts


def built_files(sessions, keyring, tmp_path, n=12):
    """Real files from origination (a few payments of each kind)."""
    seed(sessions, keyring, n)
    r = originate_run(sessions, keyring, tmp_path / "data" / "outbox")
    assert r.files
    with sessions() as s:
        return {row.id: stored_bytes(keyring, row) for row in s.scalars(select(NachaFile))}


# -- folder transport (the embedded default) ------------------------------------------------------------

def test_folder_send_end_to_end(sessions, keyring, tmp_path):
    env = Env(tmp_path)
    files = built_files(sessions, keyring, tmp_path)
    (fid, data), = files.items()
    outbox_file = env.data / "outbox" / "ACH-20261201-A.ach"
    assert outbox_file.read_bytes() == data
    r = env.send(sessions, keyring)
    assert [(f.outcome, f.remote_name, f.size, f.sha256) for f in r.files] == [
        ("sent", "ACH-20261201-A.ach", len(data), hashlib.sha256(data).hexdigest())]
    assert env.incoming() == ["ACH-20261201-A.ach"]
    assert (env.bank / "incoming" / "ACH-20261201-A.ach").read_bytes() == data
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sent" and row.sent_at is not None and d.sent_at is not None
    assert (d.attempts, d.uploads, d.ambiguous, d.last_error, d.remote_name) == (1, 1, False, None,
                                                                                 "ACH-20261201-A.ach")
    assert [(a.number, a.outcome, a.bytes_sent, a.upload_name) for a in attempts] == [
        (1, "sent", len(data), ".ACH-20261201-A.ach.1.part")]
    archived = env.data / "archive" / "sent" / "ACH-20261201-A.ach"
    assert archived.read_bytes() == data and archived.stat().st_mode & 0o777 == 0o600
    assert not outbox_file.exists()  # delivered: no longer waiting in the outbox
    # A second send has nothing to do: a confirmed file is never sent again.
    again = env.send(sessions, keyring)
    assert again.files == [] and env.incoming() == ["ACH-20261201-A.ach"]
    assert ledger(sessions, fid)[1].uploads == 1


@pytest.mark.parametrize("rename_allowed", [True, False])
def test_stored_bytes_that_fail_their_sha256_are_never_delivered(sessions, keyring, tmp_path, rename_allowed):
    # The stored bytes are checked against the sha256 recorded at origination before anything is
    # sent, whether the bank takes a temporary name and a rename or the final name directly.
    env = Env(tmp_path)
    files = built_files(sessions, keyring, tmp_path)
    (fid, _data), = files.items()
    with sessions() as s, s.begin():
        s.get(NachaFile, fid).sha256 = "0" * 64  # the recorded digest no longer matches the bytes
    extra = {} if rename_allowed else {"rename_allowed": False, "file_name_pattern": "HIX-{date}-{modifier}-{seq:02d}.ach"}
    r = env.send(sessions, keyring, settings=env.settings(**extra))
    assert [f.outcome for f in r.files] == ["failed"]
    assert "do not match the recorded sha256" in r.files[0].error
    assert env.incoming() == []  # neither the final name nor a temporary upload is left at the bank
    row, _d, _attempts = ledger(sessions, fid)
    assert row.state != "sent"


def test_send_only_the_given_file_date(sessions, keyring, tmp_path):
    env = Env(tmp_path)
    a = add_built_file(sessions, keyring, b"day one\n", file_date=date(2026, 12, 1))
    b = add_built_file(sessions, keyring, b"day two\n", file_date=date(2026, 12, 2))
    r = env.send(sessions, keyring, file_date=date(2026, 12, 2))
    assert [f.file_id for f in r.files] == [b]
    assert env.incoming() == ["ACH-20261202-A.ach"]
    assert ledger(sessions, a)[0].state == "built"


def test_folder_fetch_ledger_inbox_archive_and_the_processor_interface(sessions, tmp_path):
    env = Env(tmp_path, archive_dir="archive")
    out = env.bank / "outgoing"
    ret = (ROOT / "sample_files" / "returns.ach").read_bytes()
    noc = (ROOT / "sample_files" / "nocs.ach").read_bytes()
    (out / "RET1.ach").write_bytes(ret)
    (out / "NOC1.ach").write_bytes(noc)
    (out / ".uploading.ach").write_bytes(b"partial")  # the bank's own temporary name: ignored
    r = env.fetch(sessions)
    assert sorted((f.remote_name, f.outcome) for f in r.files) == [("NOC1.ach", "received"), ("RET1.ach", "received")]
    inbox = env.data / "inbox"
    assert (inbox / "RET1.ach").read_bytes() == ret and (inbox / "NOC1.ach").read_bytes() == noc
    assert sorted(os.listdir(out)) == [".uploading.ach"]  # moved to the bank's archive folder
    assert sorted(os.listdir(env.bank / "archive")) == ["NOC1.ach", "RET1.ach"]
    for f in r.files:
        copy = next((env.data / "archive" / "received").rglob(f"*-{f.remote_name}"))
        assert copy.read_bytes() == (ret if f.remote_name == "RET1.ach" else noc)
        assert copy.stat().st_mode & 0o777 == 0o600
    pending = pending_inbound(sessions, inbox)
    assert [(p.local_name, p.sha256, p.path) for p in pending] == [
        ("NOC1.ach", hashlib.sha256(noc).hexdigest(), inbox / "NOC1.ach"),
        ("RET1.ach", hashlib.sha256(ret).hexdigest(), inbox / "RET1.ach")]
    # The bank posts the same return file again under another name: ledgered, never processed twice.
    (out / "RET1-resent.ach").write_bytes(ret)
    r2 = env.fetch(sessions)
    assert [(f.remote_name, f.outcome) for f in r2.files] == [("RET1-resent.ach", "duplicate")]
    assert sorted(os.listdir(inbox)) == ["NOC1.ach", "RET1.ach"]
    assert len(pending_inbound(sessions)) == 2
    # The returns processor marks one processed in its own transaction.
    with sessions() as s, s.begin():
        assert mark_inbound_processed(s, pending[1].id, "applied: 2 returns") is True
    with sessions() as s, s.begin():
        assert mark_inbound_processed(s, pending[1].id, "again") is False
        dup_id = s.scalar(select(InboundFile.id).where(InboundFile.state == "duplicate"))
        with pytest.raises(ValueError, match="duplicate"):
            mark_inbound_processed(s, dup_id, "x")
        with pytest.raises(LookupError):
            mark_inbound_processed(s, 10_000, "x")
    assert [p.local_name for p in pending_inbound(sessions)] == ["NOC1.ach"]
    tidy_inbox(sessions, inbox)
    assert os.listdir(inbox) == ["NOC1.ach"]  # processed files leave the inbox (the archive keeps them)
    with sessions() as s:
        row = s.get(InboundFile, pending[1].id)
        assert (row.state, row.process_result) == ("processed", "applied: 2 returns")


def test_fetch_does_not_download_a_file_seen_before(sessions, tmp_path):
    env = Env(tmp_path)  # no remote archive: files stay at the bank
    (env.bank / "outgoing" / "RET.ach").write_bytes(b"return file\n")
    assert [f.outcome for f in env.fetch(sessions).files] == ["received"]
    steps = []
    r = env.fetch(sessions, on_step=lambda step, name: steps.append(step))
    assert [f.outcome for f in r.files] == ["seen"] and steps == []  # not downloaded at all
    # Same name, new content (banks reuse names daily): a new file, under a free inbox name.
    (env.bank / "outgoing" / "RET.ach").write_bytes(b"return file, next day\n")
    os.utime(env.bank / "outgoing" / "RET.ach", (2_000_000_000, 2_000_000_000))
    r = env.fetch(sessions)
    assert [f.outcome for f in r.files] == ["received"]
    assert r.files[0].local_name.startswith("RET-") and len(pending_inbound(sessions)) == 2


def test_an_inbox_file_lost_after_commit_is_restored_from_the_archive(sessions, tmp_path):
    env = Env(tmp_path)
    (env.bank / "outgoing" / "RET.ach").write_bytes(b"return\n")
    env.fetch(sessions)
    (env.data / "inbox" / "RET.ach").unlink()
    r = env.fetch(sessions)
    assert r.restored == ["RET.ach"] and (env.data / "inbox" / "RET.ach").read_bytes() == b"return\n"


# -- SFTP -------------------------------------------------------------------------------------------------

def test_sftp_send_and_fetch_byte_for_byte(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server, archive_dir=str(tmp_path / "bank" / "archive"), verify_read_back=True)
    files = built_files(sessions, keyring, tmp_path)
    (fid, data), = files.items()
    big = nacha_like(3_000_000, seed=1)
    fid2 = add_built_file(sessions, keyring, big, modifier="B")
    r = env.send(sessions, keyring)
    assert [(f.outcome, f.remote_name) for f in r.files] == [("sent", "ACH-20261201-A.ach"),
                                                            ("sent", "ACH-20261201-B.ach")]
    assert env.incoming() == ["ACH-20261201-A.ach", "ACH-20261201-B.ach"]
    assert (env.bank / "incoming" / "ACH-20261201-A.ach").read_bytes() == data
    assert (env.bank / "incoming" / "ACH-20261201-B.ach").read_bytes() == big
    for f in (fid, fid2):
        row, d, attempts = ledger(sessions, f)
        assert row.state == "sent" and d.uploads == 1 and [a.outcome for a in attempts] == ["sent"]
        assert d.destination.startswith(f"sftp://{sshd_server.user}@127.0.0.1:{sshd_server.port}")
    # fetch
    ret = (ROOT / "sample_files" / "returns.ach").read_bytes()
    (env.bank / "outgoing" / "RETURNS.ach").write_bytes(ret)
    (env.bank / "outgoing" / "BIG.ach").write_bytes(big)
    fr = env.fetch(sessions)
    assert sorted((f.remote_name, f.outcome, f.remote_archived) for f in fr.files) == [
        ("BIG.ach", "received", "BIG.ach"), ("RETURNS.ach", "received", "RETURNS.ach")]
    assert (env.data / "inbox" / "RETURNS.ach").read_bytes() == ret
    assert (env.data / "inbox" / "BIG.ach").read_bytes() == big
    assert os.listdir(env.bank / "outgoing") == []
    assert sorted(os.listdir(env.bank / "archive")) == ["BIG.ach", "RETURNS.ach"]
    assert env.fetch(sessions).files == []


def test_a_complete_file_already_at_the_bank_is_not_sent_again(sshd_server, sessions, keyring, tmp_path):
    """The "upload OK but the reply was lost" case, produced by crashing right after the rename."""
    env = Env(tmp_path, sshd_server)
    data = nacha_like(500_000)
    fid = add_built_file(sessions, keyring, data)

    class Crash(Exception):
        pass

    def crash(step, _name):
        if step == "renamed":
            raise Crash()

    with pytest.raises(Crash):
        env.send(sessions, keyring, on_step=crash)
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sending" and d.ambiguous and [a.outcome for a in attempts] == [None]
    final = env.bank / "incoming" / "ACH-20261201-A.ach"
    mtime = final.stat().st_mtime_ns
    steps = []
    r = env.send(sessions, keyring, on_step=lambda step, name: steps.append(step))
    assert [f.outcome for f in r.files] == ["already_there"]
    assert steps == ["confirmed"]  # nothing was uploaded
    assert env.incoming() == ["ACH-20261201-A.ach"] and final.read_bytes() == data
    assert final.stat().st_mtime_ns == mtime
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sent" and not d.ambiguous and d.uploads == 1
    assert [a.outcome for a in attempts] == ["already_there"]


def test_retries_with_backoff_until_the_bank_answers(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server, retry_attempts=4)
    add_built_file(sessions, keyring, b"x" * 1000)
    sshd_server.stop()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            sshd_server.start()  # the bank comes back during the third wait

    st = env.settings(retry_wait_initial=0.01, retry_wait_max=0.05)
    r = send_files(sessions, keyring, transport_from_settings(st), DeliveryPolicy.from_settings(st.bank),
                   archive_dir=st.archive_dir, sleep=sleep)
    assert [f.outcome for f in r.files] == ["sent"] and len(sleeps) == 2
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_rename_forbidden_mode_uploads_to_a_unique_final_name(sshd_server, sessions, keyring, tmp_path):
    sshd_server.start(sftp_flags="-P posix-rename,rename")
    env = Env(tmp_path, sshd_server, rename_allowed=False, file_name_pattern="HIX-{date}-{modifier}-{seq:02d}.ach")
    data = nacha_like(200_000)
    fid = add_built_file(sessions, keyring, data)
    r = env.send(sessions, keyring)
    assert [(f.outcome, f.remote_name) for f in r.files] == [("sent", "HIX-20261201-A-01.ach")]
    assert env.incoming() == ["HIX-20261201-A-01.ach"]
    assert (env.bank / "incoming" / "HIX-20261201-A-01.ach").read_bytes() == data
    assert ledger(sessions, fid)[1].remote_name == "HIX-20261201-A-01.ach"


# -- PGP --------------------------------------------------------------------------------------------------

def test_pgp_outbound_and_inbound(sshd_server, sessions, keyring, tmp_path, gpg_pair):
    bank_key, our_key = gpg_pair
    env = Env(tmp_path, sshd_server)
    data = nacha_like(300_000)
    fid = add_built_file(sessions, keyring, data)
    pgp = Pgp(our_key.path, recipient=bank_key.fingerprint)

    class Crash(Exception):
        pass

    def crash(step, _name):
        if step == "renamed":
            raise Crash()

    with pytest.raises(Crash):  # delivered, but the confirmation is lost
        env.send(sessions, keyring, pgp=pgp, on_step=crash)
    remote = env.bank / "incoming" / "ACH-20261201-A.ach.pgp"
    sent = remote.read_bytes()
    assert data not in sent and Pgp.looks_encrypted(sent)
    # The next run recognises the same ciphertext (it was stored, not encrypted anew).
    r = env.send(sessions, keyring, pgp=pgp)
    assert [f.outcome for f in r.files] == ["already_there"] and r.files[0].pgp
    assert env.incoming() == ["ACH-20261201-A.ach.pgp"]
    plain = bank_key.gpg.decrypt(sent)
    assert plain.ok and plain.data == data
    _row, d, _ = ledger(sessions, fid)
    assert d.pgp_recipient == bank_key.fingerprint and d.payload_sha256 == hashlib.sha256(sent).hexdigest()
    assert (env.data / "archive" / "sent" / "ACH-20261201-A.ach.pgp").read_bytes() == sent
    # Inbound: the bank encrypts its return file to our key; the inbox gets the plain file.
    ret = (ROOT / "sample_files" / "returns.ach").read_bytes()
    enc = bank_key.gpg.encrypt(ret, [our_key.fingerprint], armor=False, always_trust=True)
    assert enc.ok
    (env.bank / "outgoing" / "RET.ach.pgp").write_bytes(enc.data)
    (env.bank / "outgoing" / "PLAIN.ach").write_bytes(ret + b"\n")
    fr = env.fetch(sessions, pgp=Pgp(our_key.path))
    got = {f.remote_name: f for f in fr.files}
    assert got["RET.ach.pgp"].outcome == "received" and got["RET.ach.pgp"].decrypted
    assert (env.data / "inbox" / "RET.ach").read_bytes() == ret
    assert not got["PLAIN.ach"].decrypted and (env.data / "inbox" / "PLAIN.ach").read_bytes() == ret + b"\n"
    copy = next((env.data / "archive" / "received").rglob("*-RET.ach.pgp"))
    assert copy.read_bytes() == enc.data  # the archive keeps what was received
    p = {x.local_name: x for x in pending_inbound(sessions)}
    assert p["RET.ach"].sha256 == hashlib.sha256(ret).hexdigest()


def test_pgp_with_a_missing_bank_key_is_a_configuration_error(sessions, keyring, tmp_path, gpg_pair):
    _bank, us = gpg_pair
    env = Env(tmp_path)
    fid = add_built_file(sessions, keyring, b"data\n")
    r = env.send(sessions, keyring, pgp=Pgp(us.path, recipient="0000000000000000000000000000000000000000"))
    assert r.config_error and "not in" in r.config_error
    assert env.incoming() == [] and ledger(sessions, fid)[0].state == "built"


# -- CLI ----------------------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(migrated_url, tmp_path):
    """A settings file (database, key file, data folder) for running `achbatch` in a subprocess."""
    secret = generate_secret()
    key_file = tmp_path / "account.key"
    key_file.write_text(secret + "\n")
    key_file.chmod(0o600)

    def config(bank: dict) -> Path:
        return write_config(tmp_path / "achbatch.toml", {
            "database": {"url": migrated_url}, "security": {"key_file": str(key_file)},
            "paths": {"data_dir": str(tmp_path / "data")}, "bank": bank})

    return Keyring([secret]), config


def achbatch(config: Path, *args, timeout=120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=config.parent)


def test_cli_send_and_fetch_exit_codes(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(100_000)
    add_built_file(sessions, keyring, data)
    cfg = config(env.bank_section())
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    sha = hashlib.sha256(data).hexdigest()
    assert "ACH-20261201-A.ach: sent as ACH-20261201-A.ach, 100,000 bytes" in r.stdout and sha[:16] in r.stdout
    assert (env.bank / "incoming" / "ACH-20261201-A.ach").read_bytes() == data
    r = achbatch(cfg, "send")
    assert r.returncode == 0 and "nothing to send" in r.stdout
    # fetch
    (env.bank / "outgoing" / "RET.ach").write_bytes(b"returns\n")
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 0, r.stderr
    assert "RET.ach: 8 bytes" in r.stdout and (tmp_path / "data" / "inbox" / "RET.ach").read_bytes() == b"returns\n"
    # The bank goes down: 75, safe to retry.
    add_built_file(sessions, keyring, b"second\n", modifier="B")
    sshd_server.stop()
    r = achbatch(cfg, "send")
    assert r.returncode == 75, r.stderr
    assert f"127.0.0.1:{sshd_server.port}" in r.stderr and "ready for the next run" in r.stderr
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 75 and "unreachable" in r.stderr
    sshd_server.start()
    r = achbatch(cfg, "send")
    assert r.returncode == 0 and "ACH-20261201-B.ach: sent" in r.stdout
    assert env.incoming() == ["ACH-20261201-A.ach", "ACH-20261201-B.ach"]


def test_cli_configuration_errors_exit_2(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    fid = add_built_file(sessions, keyring, b"data\n")
    other = tmp_path / "known_hosts_other"
    other.write_text(f"[127.0.0.1]:{sshd_server.port} "
                     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBJ2MZU6ZtbvCYZzTwD5Wdb8bDhCRgmE1yeKz+tomDWq\n")
    r = achbatch(config(env.bank_section() | {"known_hosts": str(other)}), "send")
    assert r.returncode == 2, r.stderr
    assert "does not match the pinned key" in r.stderr and r.stderr.count("SHA256:") >= 2
    assert env.incoming() == []
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and attempts == [] and "pinned" in d.last_error
    # an invalid setting
    r = achbatch(config(env.bank_section() | {"file_name_pattern": "x.ach"}), "send")
    assert r.returncode == 2 and "bank.file_name_pattern" in r.stderr
    r = achbatch(config(env.bank_section() | {"known_hosts": str(other)}), "returns", "fetch")
    assert r.returncode == 2 and "does not match the pinned key" in r.stderr


def test_cli_a_refused_file_exits_1(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    add_built_file(sessions, keyring, b"data\n")
    sshd_server.start(sftp_flags="-P posix-rename,rename")  # a read-only folder is exit 2: test_delivery_hardening
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 1, r.stderr
    assert "NOT DELIVERED (refused)" in r.stdout and "permission denied" in r.stderr
    assert f"127.0.0.1:{sshd_server.port}" in r.stderr


def test_cli_folder_transport_end_to_end(cli_env, sessions, tmp_path):
    keyring, config = cli_env
    data = nacha_like(10_000)
    add_built_file(sessions, keyring, data)
    cfg = config({"transport": "folder"})  # the embedded default bank: <data_dir>/bank
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    bank = tmp_path / "data" / "bank"
    assert (bank / "incoming" / "ACH-20261201-A.ach").read_bytes() == data
    (bank / "outgoing" / "NOC.ach").write_bytes(b"noc\n")
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 0 and (tmp_path / "data" / "inbox" / "NOC.ach").read_bytes() == b"noc\n"


def test_cli_send_exits_3_while_another_send_holds_the_lock(cli_env, sessions, tmp_path):
    keyring, config = cli_env
    add_built_file(sessions, keyring, b"data\n")
    cfg = config({"transport": "folder"})
    with run_lock(sessions, "send", SEND_LOCK_KEY) as got:
        assert got
        r = achbatch(cfg, "send")
    assert r.returncode == 3, r.stderr
    assert not (tmp_path / "data" / "bank" / "incoming" / "ACH-20261201-A.ach").exists()
    assert achbatch(cfg, "send").returncode == 0


def test_cli_send_with_pgp(cli_env, sessions, tmp_path, gpg_pair):
    bank_key, our_key = gpg_pair
    keyring, config = cli_env
    data = nacha_like(20_000)
    add_built_file(sessions, keyring, data)
    bank = {"transport": "folder", "pgp_recipient": bank_key.fingerprint, "pgp_home": str(our_key.path)}
    r = achbatch(config(bank | {"pgp_recipient": "F" * 40}), "send")
    assert r.returncode == 2 and "not in" in r.stderr  # the bank's key must be there: nothing sent
    r = achbatch(config(bank), "send")
    assert r.returncode == 0, r.stderr
    assert "sent as ACH-20261201-A.ach.pgp" in r.stdout and "PGP" in r.stdout
    sent = (tmp_path / "data" / "bank" / "incoming" / "ACH-20261201-A.ach.pgp").read_bytes()
    plain = bank_key.gpg.decrypt(sent)
    assert plain.ok and plain.data == data
