"""Real faults during delivery and fetch, against a real OpenSSH server: the server killed in the
middle of a large upload, its connections killed, a read-only server, a refused rename, a full disk
(small tmpfs), the server down, and our own process killed at every step. Each time: a clear error,
the right exit code, a truthful ledger, never a partial file under a final name (with rename), and
a later run delivers exactly one complete copy."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from batch.config import Settings
from batch.bank.inbound import pending_inbound
from sshd import add_built_file, nacha_like, sshd_server  # noqa: F401 - fixture
from test_delivery import Env, achbatch, cli_env, ledger  # noqa: F401 - fixture
from test_transport import small_disk  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
FINAL = "ACH-20261201-A.ach"
BIG = 40_000_000  # large enough to be killed mid-transfer (about half a second on loopback)


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def start_cli(config: Path, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.Popen([sys.executable, "-m", "jobs", "--config", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=config.parent)


def only_complete_copy(env: Env, data: bytes, name: str = FINAL) -> None:
    assert env.incoming() == [name], env.incoming()
    assert (env.bank / "incoming" / name).read_bytes() == data


# -- the server dies mid-upload -------------------------------------------------------------------------

def test_server_killed_mid_upload_then_the_next_send_delivers_exactly_once(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(BIG)
    fid = add_built_file(sessions, keyring, data)
    cfg = config(env.bank_section())
    temp = env.bank / "incoming" / f".{FINAL}.1.part"
    p = start_cli(cfg, "send")
    wait_for(lambda: size_of(temp) > 1_000_000, what="the upload to start")
    sshd_server.stop()  # listener and connections: the bank is gone
    out, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    assert "unreachable" in err and "ready for the next run" in err
    # No file under its final name; the partial upload sits under the temporary dot name only.
    assert not (env.bank / "incoming" / FINAL).exists()
    assert 0 < size_of(temp) < len(data)
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and not d.ambiguous  # the final name cannot hold it: no rename was sent
    assert [a.outcome for a in attempts] == ["lost"] and "connection lost" in attempts[0].error
    assert f"127.0.0.1:{sshd_server.port}" in d.last_error
    sshd_server.start()
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    only_complete_copy(env, data)  # the stale temporary upload was removed
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sent" and d.uploads == 2 and [a.outcome for a in attempts] == ["lost", "sent"]


def test_connections_killed_mid_upload_the_same_run_recovers(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server, retry_attempts=3)
    data = nacha_like(BIG, seed=2)
    fid = add_built_file(sessions, keyring, data)
    temp = env.bank / "incoming" / f".{FINAL}.1.part"
    p = start_cli(config(env.bank_section()), "send")
    wait_for(lambda: size_of(temp) > 1_000_000, what="the upload to start")
    assert sshd_server.kill_connections() >= 1
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "trying again" in err  # the retry is visible to ops
    only_complete_copy(env, data)
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sent" and [a.outcome for a in attempts] == ["lost", "sent"]


def test_without_rename_a_partial_upload_is_replaced_by_one_complete_copy(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    sshd_server.start(sftp_flags="-P posix-rename,rename")
    env = Env(tmp_path, sshd_server, rename_allowed=False, file_name_pattern="ACH-{date}-{modifier}-{seq}.ach")
    data = nacha_like(BIG, seed=3)
    fid = add_built_file(sessions, keyring, data)
    cfg = config(env.bank_section())
    first = env.bank / "incoming" / "ACH-20261201-A-1.ach"
    p = start_cli(cfg, "send")
    wait_for(lambda: size_of(first) > 1_000_000, what="the upload to start")
    sshd_server.stop()
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    row, d, attempts = ledger(sessions, fid)
    # Without rename the bank may hold a partial file under a final name: the ledger says so.
    assert row.state == "sending" and d.ambiguous and [a.outcome for a in attempts] == ["lost"]
    sshd_server.start(sftp_flags="-P posix-rename,rename")
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    only_complete_copy(env, data, "ACH-20261201-A-2.ach")  # the partial one was removed
    assert ledger(sessions, fid)[1].remote_name == "ACH-20261201-A-2.ach"


# -- refusals --------------------------------------------------------------------------------------------

def test_read_only_server(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server)
    data = nacha_like(100_000)
    fid = add_built_file(sessions, keyring, data)
    sshd_server.start(sftp_flags="-R")
    r = env.send(sessions, keyring)
    (f,) = r.files
    assert f.outcome == "config" and "permission denied" in f.error  # a folder we cannot write: exit 2
    assert f"127.0.0.1:{sshd_server.port}" in f.error and f".{FINAL}.1.part" in f.error
    assert env.incoming() == []
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and not d.ambiguous and [a.outcome for a in attempts] == ["refused"]
    sshd_server.start()  # the bank fixes its permissions
    assert [f.outcome for f in env.send(sessions, keyring).files] == ["sent"]
    only_complete_copy(env, data)
    assert env.send(sessions, keyring).files == []


def test_refused_rename(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server)
    data = nacha_like(100_000)
    fid = add_built_file(sessions, keyring, data)
    sshd_server.start(sftp_flags="-P posix-rename,rename")
    (f,) = env.send(sessions, keyring).files
    assert f.outcome == "refused" and "rename" in f.error and "bank.rename_allowed = false" in f.error
    assert env.incoming() == []  # the verified temporary upload was removed again; nothing under the final name
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and [a.outcome for a in attempts] == ["refused"]
    sshd_server.start()
    assert [f.outcome for f in env.send(sessions, keyring).files] == ["sent"]
    only_complete_copy(env, data)


def test_disk_full(sshd_server, sessions, keyring, tmp_path, small_disk):
    env = Env(tmp_path, sshd_server, outbound_dir=str(small_disk))
    data = nacha_like(6_000_000, seed=4)  # more than the 4 MiB tmpfs holds
    fid = add_built_file(sessions, keyring, data)
    (f,) = env.send(sessions, keyring).files
    assert f.outcome == "temporary" and "the bank's disk is full" in f.error  # exit 75: retry later
    assert os.listdir(small_disk) == []  # the partial temporary upload was removed
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and [a.outcome for a in attempts] == ["refused"] and d.last_error
    subprocess.run(["umount", str(small_disk)], check=True)  # the bank frees space
    (f,) = env.send(sessions, keyring).files
    assert f.outcome == "sent"
    assert os.listdir(small_disk) == [FINAL] and (small_disk / FINAL).read_bytes() == data


def test_server_down(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server)
    data = nacha_like(10_000)
    fid = add_built_file(sessions, keyring, data)
    sshd_server.stop()
    r = env.send(sessions, keyring)
    assert r.unreachable and f"127.0.0.1:{sshd_server.port}" in r.unreachable
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and attempts == [] and "cannot connect" in d.last_error
    sshd_server.start()
    assert [f.outcome for f in env.send(sessions, keyring).files] == ["sent"]
    only_complete_copy(env, data)


def test_a_different_file_under_our_final_name_is_never_overwritten(sshd_server, sessions, keyring, tmp_path):
    env = Env(tmp_path, sshd_server)  # read back whatever verify_read_back says
    data = nacha_like(10_000, seed=5)
    fid = add_built_file(sessions, keyring, data)
    foreign = nacha_like(10_000, seed=6)  # same size, other content: only the read-back hash tells
    (env.bank / "incoming" / FINAL).write_bytes(foreign)
    (f,) = env.send(sessions, keyring).files
    assert f.outcome == "conflict" and "other content" in f.error
    assert (env.bank / "incoming" / FINAL).read_bytes() == foreign
    assert ledger(sessions, fid)[0].state == "built"


# -- our own process killed at every step ---------------------------------------------------------------

CRASH_SEND = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from batch.store.crypto import load_keyring
    from batch.store.db import open_database
    from batch.bank.delivery import DeliveryPolicy, send_files
    from batch.bank.transport import transport_from_settings
    from jobs.settings import load_settings
    config, crash_at = sys.argv[1:3]
    st = load_settings(config, environ={{}})
    keyring = load_keyring(None, st.security.key_file, st.default_key_file).keyring
    def on_step(step, name):
        if step == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
    with open_database(st.database_url) as sessions:
        send_files(sessions, keyring, transport_from_settings(st), DeliveryPolicy.from_settings(st.bank),
                   archive_dir=st.archive_dir, outbox=st.outbox_dir, on_step=on_step)
""")


@pytest.mark.parametrize("crash_at", ["sending", "uploaded", "verified", "renamed", "confirmed"])
def test_send_killed_at_any_step_then_a_rerun_delivers_exactly_once(sshd_server, cli_env, sessions, tmp_path,
                                                                   crash_at):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(2_000_000, seed=7)
    fid = add_built_file(sessions, keyring, data)
    cfg = config(env.bank_section())
    p = subprocess.run([sys.executable, "-c", CRASH_SEND.format(root=str(ROOT)), str(cfg), crash_at],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    row, d, attempts = ledger(sessions, fid)
    if crash_at == "confirmed":
        assert row.state == "sent"
    else:
        assert row.state == "sending" and d.ambiguous and [a.outcome for a in attempts] == [None]
    assert (env.bank / "incoming" / FINAL).exists() == (crash_at in ("renamed", "confirmed"))
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    only_complete_copy(env, data)
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "sent" and not d.ambiguous and d.sent_at is not None
    if crash_at in ("renamed", "confirmed"):
        assert d.uploads == 1  # never uploaded again
        assert ("nothing to send" in r.stdout) if crash_at == "confirmed" else ("not sent again" in r.stdout)
    else:
        assert d.uploads == 2 and [a.outcome for a in attempts][-1] == "sent"


# -- fetch faults ---------------------------------------------------------------------------------------

def test_server_killed_mid_download_then_the_next_fetch_gets_it_once(sshd_server, cli_env, sessions, tmp_path):
    _keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(BIG, seed=8)
    (env.bank / "outgoing" / "BIGRET.ach").write_bytes(data)
    cfg = config(env.bank_section())
    inbox = tmp_path / "data" / "inbox"
    p = start_cli(cfg, "returns", "fetch")
    wait_for(lambda: any(size_of(x) > 1_000_000 for x in (inbox.glob(".tmp-*") if inbox.exists() else [])),
             what="the download to start")
    sshd_server.stop()
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    assert os.listdir(inbox) == [] and pending_inbound(sessions) == []  # nothing half-received
    sshd_server.start()
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 0, r.stderr
    assert os.listdir(inbox) == ["BIGRET.ach"] and (inbox / "BIGRET.ach").read_bytes() == data
    assert len(pending_inbound(sessions)) == 1


def test_local_disk_full_during_fetch_is_ours_named_and_the_file_waits_at_the_bank(sshd_server, sessions, tmp_path,
                                                                                   small_disk):
    """Our inbox and archive on a 4 MiB tmpfs: a 3 MB return file (two local copies) does not fit.
    The error names our folder, not the bank; nothing is recorded or left half-written; once space
    is back the next fetch receives the file once."""
    env = Env(tmp_path, sshd_server)
    data = nacha_like(3_000_000, seed=11)
    (env.bank / "outgoing" / "RET.ach").write_bytes(data)
    st = Settings.model_validate({"bank": env.bank_section(), "paths": {"data_dir": str(small_disk)}})
    r = env.fetch(sessions, settings=st)
    (f,) = r.files
    assert f.outcome == "failed" and str(small_disk) in f.error and "No space left" in f.error, f.error
    assert "stays at the bank" in f.error and r.unreachable is None
    assert pending_inbound(sessions) == []
    leftovers = [p for p in small_disk.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    assert (env.bank / "outgoing" / "RET.ach").read_bytes() == data
    subprocess.run(["umount", str(small_disk)], check=True)  # space is back
    (f,) = env.fetch(sessions, settings=st).files
    assert f.outcome == "received" and (small_disk / "inbox" / "RET.ach").read_bytes() == data
    assert len(pending_inbound(sessions)) == 1


CRASH_FETCH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from batch.store.db import open_database
    from batch.bank.inbound import InboundPolicy, fetch_files
    from batch.bank.transport import transport_from_settings
    from jobs.settings import load_settings
    config, crash_at = sys.argv[1:3]
    st = load_settings(config, environ={{}})
    def on_step(step, name):
        if step == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)
    with open_database(st.database_url) as sessions:
        fetch_files(sessions, transport_from_settings(st), InboundPolicy.from_settings(st.bank),
                    inbox=st.inbox_dir, archive_dir=st.archive_dir, on_step=on_step)
""")


@pytest.mark.parametrize("crash_at", ["downloaded", "recorded", "placed", "archived"])
def test_fetch_killed_at_any_step_then_a_rerun_has_the_file_once(sshd_server, cli_env, sessions, tmp_path, crash_at):
    _keyring, config = cli_env
    env = Env(tmp_path, sshd_server, archive_dir=str(tmp_path / "bank" / "archive"))
    data = nacha_like(500_000, seed=9)
    (env.bank / "outgoing" / "RET.ach").write_bytes(data)
    cfg = config(env.bank_section())
    p = subprocess.run([sys.executable, "-c", CRASH_FETCH.format(root=str(ROOT)), str(cfg), crash_at],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 0, r.stderr
    inbox = tmp_path / "data" / "inbox"
    assert os.listdir(inbox) == ["RET.ach"] and (inbox / "RET.ach").read_bytes() == data
    (pending,) = pending_inbound(sessions)
    assert pending.local_name == "RET.ach"
    assert os.listdir(env.bank / "outgoing") == [] and os.listdir(env.bank / "archive") == ["RET.ach"]
