"""Issue 13, delivery: a file at the bank counts as ours only when its content is proven ours (read
back, sha256 equal); anything else under our name is a conflict (exit 2, nothing marked sent, the
message says what differs and quotes no hash it did not check). And the exit code of a refused
upload lets systemd decide: a full remote disk is 75 (retry), a folder that cannot be written is 2.
Real faults: an OpenSSH server (`-R`, `-P read`, `-P statvfs`), a small tmpfs, a read-only bind
mount; and the local-folder bank."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from batch.bank.delivery import AttemptFacts, REFUSE, conflict_detail, plan_attempt
from batch.store.models import Payment
from sshd import add_built_file, nacha_like, sshd_server  # noqa: F401 - fixture
from test_delivery import Env, achbatch, built_files, cli_env, ledger  # noqa: F401 - fixture

FINAL = "ACH-20261201-A.ach"


def payment_states(sessions) -> set[str]:
    with sessions() as s:
        return set(s.scalars(select(Payment.state)))


def same_size_other_bytes(data: bytes) -> bytes:
    other = bytearray(data)
    other[100] = ord("X") if other[100] != ord("X") else ord("Y")
    return bytes(other)


# -- content, never size ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bank", ["sftp", "folder"])
def test_same_name_same_size_other_bytes_is_a_conflict_exit_2_and_nothing_is_marked_sent(
        bank, request, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    if bank == "sftp":
        server = request.getfixturevalue("sshd_server")
        env = Env(tmp_path, server)
        cfg = config(env.bank_section())  # verify_read_back left at its default (false)
        incoming = env.bank / "incoming"
    else:
        cfg = config({"transport": "folder"})
        incoming = tmp_path / "data" / "bank" / "incoming"
        incoming.mkdir(parents=True)
    ((fid, data),) = built_files(sessions, keyring, tmp_path).items()
    assert payment_states(sessions) == {"in_file"}
    foreign = same_size_other_bytes(data)
    (incoming / FINAL).write_bytes(foreign)
    r = achbatch(cfg, "send")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "already complete" not in r.stdout and "confirmed" not in r.stdout
    assert "NOT DELIVERED (conflict)" in r.stdout
    theirs, ours = hashlib.sha256(foreign).hexdigest(), hashlib.sha256(data).hexdigest()
    assert f"same size ({len(data):,} bytes) but other content: sha256 {theirs} at the bank, ours {ours}" in r.stderr
    assert "nothing marked sent" in r.stderr
    assert (incoming / FINAL).read_bytes() == foreign  # never overwritten
    assert sorted(os.listdir(incoming)) == [FINAL]
    row, d, attempts = ledger(sessions, fid)
    assert row.state == "built" and d.sent_at is None
    assert payment_states(sessions) == {"in_file"}
    # The bank removes the stranger: the next send delivers ours.
    (incoming / FINAL).unlink()
    r = achbatch(cfg, "send")
    assert r.returncode == 0, r.stderr
    assert (incoming / FINAL).read_bytes() == data and payment_states(sessions) == {"sent"}


def test_a_copy_of_ours_is_confirmed_by_its_content(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(30_000, seed=8)
    fid = add_built_file(sessions, keyring, data)
    (env.bank / "incoming" / FINAL).write_bytes(data)  # an earlier upload whose confirmation was lost
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 0, r.stderr
    assert f"read back: sha256 {hashlib.sha256(data).hexdigest()[:16]} matches" in r.stdout
    assert ledger(sessions, fid)[0].state == "sent"


def test_a_file_that_cannot_be_read_back_is_not_confirmed(sshd_server, cli_env, sessions, tmp_path):
    """The server refuses reads (`internal-sftp -P read`): a same-name same-size file cannot be
    proven ours, so it is a conflict, and no sha256 of it is quoted."""
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    data = nacha_like(30_000, seed=9)
    fid = add_built_file(sessions, keyring, data)
    (env.bank / "incoming" / FINAL).write_bytes(data)  # even our very bytes: unproven is unconfirmed
    sshd_server.start(sftp_flags="-P read")
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "could not be read back to compare its content" in r.stderr and "permission denied" in r.stderr
    assert "sha256" not in r.stderr.split("could not be read back")[0].split(FINAL)[-1]
    assert "other content" not in r.stderr
    assert ledger(sessions, fid)[0].state == "built"


def test_a_different_size_is_named_without_claiming_a_hash_was_compared():
    facts = AttemptFacts({FINAL: 9_400}, 9_500, "ab" * 32, True, False, FINAL, (), 1, lambda seq: FINAL)
    assert plan_attempt(facts).action == REFUSE
    assert conflict_detail(facts, FINAL) == "9,400 bytes at the bank, ours 9,500 bytes (content not compared)"
    same = AttemptFacts({FINAL: 9_500}, 9_500, "ab" * 32, True, False, FINAL, (), 1, lambda seq: FINAL)
    assert plan_attempt(same.read_back(FINAL, "")).action == REFUSE  # unreadable: never confirmed
    assert "sha256" not in conflict_detail(same.read_back(FINAL, ""), FINAL)
    # Without rename, a same-size file under an earlier upload's name is not taken for our partial upload.
    norename = AttemptFacts({"X-1.ach": 9_500}, 9_500, "ab" * 32, False, False, None, ("X-1.ach",), 2,
                            lambda seq: f"X-{seq}.ach")
    assert plan_attempt(norename.read_back("X-1.ach", "cd" * 32)).action == REFUSE


# -- exit codes of a refused upload -----------------------------------------------------------------------

def _mount(args: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount: {r.stderr.strip()}")
        pytest.skip(f"cannot mount here: {r.stderr.strip()}")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: three 20,000-byte files fit, a fourth does not (a real ENOSPC)."""
    d = tmp_path / "tiny"
    d.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=64k,mode=0755", "achbatch-tiny", str(d)])
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only bind mount (EROFS: OpenSSH answers a bare "Failure")."""
    d = tmp_path / "ro"
    d.mkdir()
    _mount(["--bind", str(d), str(d)])
    try:
        _mount(["-o", "remount,bind,ro", str(d)])
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def five_files(sessions, keyring) -> list[tuple[int, bytes]]:
    return [(add_built_file(sessions, keyring, nacha_like(20_000, seed=i), modifier=m), nacha_like(20_000, seed=i))
            for i, m in enumerate("ABCDE")]


@pytest.mark.parametrize("statvfs", [True, False], ids=["statvfs", "no-statvfs"])
def test_full_remote_disk_exits_75_after_delivering_what_fits(sshd_server, cli_env, sessions, tmp_path, tiny_disk,
                                                              statvfs):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server, outbound_dir=str(tiny_disk))
    files = five_files(sessions, keyring)
    if not statvfs:
        sshd_server.start(sftp_flags="-P statvfs")  # a server that does not say: unclassified, so 75
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 75, (r.stdout, r.stderr)
    assert "3 of 5 files delivered" in r.stdout
    if statvfs:
        assert "the bank's disk is full" in r.stderr
    else:
        assert "could not be classified" in r.stderr and "no statvfs@openssh.com" in r.stderr
    assert sorted(os.listdir(tiny_disk)) == [f"ACH-20261201-{m}.ach" for m in "ABC"]  # no partial left
    states = [ledger(sessions, fid)[0].state for fid, _ in files]
    assert states == ["sent", "sent", "sent", "built", "built"]
    for name in os.listdir(tiny_disk):
        os.unlink(tiny_disk / name)  # the bank makes room
    sshd_server.start()
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tiny_disk)) == ["ACH-20261201-D.ach", "ACH-20261201-E.ach"]


def test_read_only_remote_folder_exits_2(sshd_server, cli_env, sessions, tmp_path, read_only_dir):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server, outbound_dir=str(read_only_dir))
    fid = add_built_file(sessions, keyring, nacha_like(10_000))
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "read-only file system" in r.stderr
    assert ledger(sessions, fid)[0].state == "built" and os.listdir(read_only_dir) == []


def test_permission_denied_upload_exits_2(sshd_server, cli_env, sessions, tmp_path):
    keyring, config = cli_env
    env = Env(tmp_path, sshd_server)
    add_built_file(sessions, keyring, b"data\n")
    sshd_server.start(sftp_flags="-R")
    r = achbatch(config(env.bank_section()), "send")
    assert r.returncode == 2, r.stderr
    assert "NOT DELIVERED (config)" in r.stdout and "permission denied" in r.stderr


def test_folder_bank_full_disk_75_and_read_only_2(cli_env, sessions, tmp_path, tiny_disk, read_only_dir):
    keyring, config = cli_env
    files = five_files(sessions, keyring)
    r = achbatch(config({"transport": "folder", "folder": str(tmp_path / "fbank"), "outbound_dir": str(tiny_disk)}),
                 "send")
    assert r.returncode == 75, (r.stdout, r.stderr)
    assert "No space left" in r.stderr and "3 of 5 files delivered" in r.stdout
    assert sorted(os.listdir(tiny_disk)) == [f"ACH-20261201-{m}.ach" for m in "ABC"]
    r = achbatch(config({"transport": "folder", "folder": str(tmp_path / "fbank"),
                         "outbound_dir": str(read_only_dir)}), "send")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Read-only file system" in r.stderr
    assert [ledger(sessions, fid)[0].state for fid, _ in files] == ["sent"] * 3 + ["built"] * 2
