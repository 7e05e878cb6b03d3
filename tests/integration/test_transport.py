"""Bank transports (batch/bank/transport.py) against a real OpenSSH server and a real folder: byte-for-byte
transfers, host key pinning (unknown and changed keys refused, naming the host and both SHA256
fingerprints), and real faults classified the way `send` needs them (unreachable / lost /
refused / configuration)."""
from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
from datetime import date
from pathlib import Path

import pytest

from batch.config import BankSettings
from batch.bank.transport import (
    BankUnreachable,
    ConnectionLost,
    FolderTransport,
    HostKeyRejected,
    RemoteFull,
    RemoteRefused,
    SftpConfig,
    SftpTransport,
    TransportConfigError,
    check_name_pattern,
    fingerprint,
    format_remote_name,
    parse_pin,
)
from sshd import SSH_KEYGEN, free_port, keygen, sshd_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def cfg(server, **over) -> SftpConfig:
    values = dict(host="127.0.0.1", port=server.port, username=server.user, private_key=server.client_key,
                  known_hosts=server.known_hosts, connect_timeout=10, operation_timeout=20)
    values.update(over)
    return SftpConfig(**values)


def ssh_keygen_fingerprint(pub_line: str, tmp_path: Path) -> str:
    """The fingerprint as OpenSSH itself prints it (an independent oracle for ours)."""
    f = tmp_path / "k.pub"
    f.write_text(pub_line + "\n")
    out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(f)], capture_output=True, text=True,
                         check=True).stdout
    return re.search(r"(SHA256:\S+)", out).group(1)


@pytest.fixture
def bank(tmp_path):
    root = tmp_path / "bank"
    for d in ("incoming", "outgoing", "archive"):
        (root / d).mkdir(parents=True)
    return root


# -- normal operation --------------------------------------------------------------------------------

def test_sftp_put_get_list_rename_remove_byte_for_byte(sshd_server, bank):
    data = os.urandom(9 * 1024 * 1024 + 17)  # more than two receive windows, many requests, an odd tail
    with SftpTransport(cfg(sshd_server)) as t:
        t.connect()
        assert t._t.local_cipher == t._t.remote_cipher == "aes128-gcm@openssh.com"  # AEAD preferred
        inc = str(bank / "incoming")
        t.put(data, inc, ".x.part", exclusive=True)
        assert t.stat(inc, ".x.part").size == len(data)
        assert t.sha256(inc, ".x.part") == hashlib.sha256(data).hexdigest()
        t.rename(inc, ".x.part", inc, "x.ach")
        assert [e.name for e in t.listdir(inc)] == ["x.ach"]
        sink = io.BytesIO()
        assert t.get(inc, "x.ach", sink) == len(data)
        assert sink.getvalue() == data
        assert t.stat(inc, "missing") is None
        with pytest.raises(RemoteRefused):  # exclusive: an existing name is never overwritten
            t.put(b"other", inc, "x.ach", exclusive=True)
        t.rename(inc, "x.ach", str(bank / "archive"), "x.ach")
        t.remove(str(bank / "archive"), "x.ach")
        t.remove(str(bank / "archive"), "x.ach")  # removing a missing file is not an error
        assert t.listdir(inc) == [] and t.listdir(str(bank / "archive")) == []
    assert (bank / "incoming").exists() and not any((bank / "archive").iterdir())


def test_download_stops_at_the_listed_size_or_at_the_end(sshd_server, bank):
    """`size` is what the caller listed: a file that grew gives only that much (the caller re-checks
    its size), a file that shrank gives what is there."""
    data = os.urandom(3 * (240 << 10) + 5)
    (bank / "outgoing" / "R.ach").write_bytes(data)
    out = str(bank / "outgoing")
    with SftpTransport(cfg(sshd_server)) as t:
        for size, want in ((len(data), data), (len(data) - 1000, data[:-1000]), (len(data) + 10 ** 6, data),
                           (0, b""), (None, data)):
            sink, h = io.BytesIO(), hashlib.sha256()
            assert t.get(out, "R.ach", sink, hasher=h, size=size) == len(want), size
            assert sink.getvalue() == want and h.digest() == hashlib.sha256(want).digest()


def test_download_completes_short_replies_in_order(sshd_server, bank):
    """Requests larger than OpenSSH reads at once (255 KiB) get short replies in mid-file: each is
    completed before the next piece, so the bytes arrive whole and in order."""
    data = os.urandom(5 << 20)
    (bank / "outgoing" / "R.ach").write_bytes(data)
    with SftpTransport(cfg(sshd_server)) as t:
        t.connect()
        t.request_size = 400 << 10
        sink = io.BytesIO()
        assert t.get(str(bank / "outgoing"), "R.ach", sink, size=len(data)) == len(data)
        assert sink.getvalue() == data


def test_connection_killed_mid_download_is_lost(sshd_server, bank):
    (bank / "outgoing" / "R.ach").write_bytes(os.urandom(64 << 20))
    t = SftpTransport(cfg(sshd_server))
    t.connect()
    assert t._t.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # no 40 ms waits on small requests

    class KillAfterFirstPiece(io.BytesIO):
        def write(self, b):
            if self.tell() == 0:
                sshd_server.kill_connections()
            return super().write(b)

    with pytest.raises(ConnectionLost):
        t.get(str(bank / "outgoing"), "R.ach", KillAfterFirstPiece(), size=64 << 20)
    assert not t.connected
    t.close()


def test_listing_leaves_out_folders(sshd_server, bank):
    (bank / "outgoing" / "sub").mkdir()
    (bank / "outgoing" / "R1.ach").write_bytes(b"r")
    with SftpTransport(cfg(sshd_server)) as t:
        assert [e.name for e in t.listdir(str(bank / "outgoing"))] == ["R1.ach"]


def test_missing_remote_folder_is_a_configuration_error(sshd_server, bank):
    with SftpTransport(cfg(sshd_server)) as t:
        with pytest.raises(TransportConfigError, match="no such file"):
            t.listdir(str(bank / "nowhere"))


# -- host keys ---------------------------------------------------------------------------------------

def test_our_fingerprint_matches_openssh(sshd_server, tmp_path):
    pin = parse_pin(sshd_server.host_pub)
    assert pin.fingerprint == ssh_keygen_fingerprint(sshd_server.host_pub, tmp_path)
    assert parse_pin(pin.fingerprint).fingerprint == pin.fingerprint


def test_unknown_host_is_refused_before_login(sshd_server, bank, tmp_path):
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{free_port()} {sshd_server.host_pub}\n")  # pinned for another port only
    t = SftpTransport(cfg(sshd_server, known_hosts=other))
    with pytest.raises(HostKeyRejected) as e:
        t.connect()
    assert f"[127.0.0.1]:{sshd_server.port}" in str(e.value) and "unknown host" in str(e.value)
    assert not t.connected
    # nothing reached the server: no login was attempted
    assert not any("Accepted publickey" in line for line in sshd_server.log)


def test_changed_host_key_is_refused_naming_both_fingerprints(sshd_server, bank, tmp_path):
    impostor_pub = keygen(tmp_path / "other_host_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd_server.port} {impostor_pub}\n")
    t = SftpTransport(cfg(sshd_server, known_hosts=kh))
    with pytest.raises(HostKeyRejected) as e:
        t.connect()
    msg = str(e.value)
    server_fp = ssh_keygen_fingerprint(sshd_server.host_pub, tmp_path)
    pinned_fp = ssh_keygen_fingerprint(impostor_pub, tmp_path)
    assert f"[127.0.0.1]:{sshd_server.port}" in msg
    assert server_fp in msg and pinned_fp in msg and server_fp != pinned_fp
    assert not any("Accepted publickey" in line for line in sshd_server.log)


def test_pinned_host_key_setting_by_key_or_fingerprint(sshd_server, bank, tmp_path):
    fp = parse_pin(sshd_server.host_pub).fingerprint
    for pin in (sshd_server.host_pub, fp):
        with SftpTransport(cfg(sshd_server, known_hosts=None, pinned_host_key=pin)) as t:
            assert t.listdir(str(bank / "incoming")) == []
    wrong = parse_pin(keygen(tmp_path / "k2")).fingerprint
    with pytest.raises(HostKeyRejected, match=re.escape(wrong)):
        SftpTransport(cfg(sshd_server, known_hosts=None, pinned_host_key=wrong)).connect()


def test_a_port_22_entry_does_not_vouch_for_another_port(sshd_server, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"127.0.0.1 {sshd_server.host_pub}\n")
    with pytest.raises(HostKeyRejected, match="unknown host"):
        SftpTransport(cfg(sshd_server, known_hosts=kh)).connect()


def test_hashed_known_hosts_entries_work(sshd_server, bank, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd_server.known_hosts.read_text())
    subprocess.run([SSH_KEYGEN, "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    assert "127.0.0.1" not in kh.read_text()
    with SftpTransport(cfg(sshd_server, known_hosts=kh)) as t:
        t.listdir(str(bank / "incoming"))


def test_no_setting_turns_host_key_checking_off():
    for path in sorted((ROOT / "batch").rglob("*.py")):  # the transport, and nothing else either
        source = path.read_text()
        assert "AutoAddPolicy" not in source and "WarningPolicy" not in source, path
    for name in BankSettings.model_fields:
        assert not re.search(r"strict|insecure|skip|accept|auto_add|check_host", name), name


# -- login -------------------------------------------------------------------------------------------

def test_login_refused_is_a_configuration_error(sshd_server, tmp_path):
    stranger = tmp_path / "stranger"
    keygen(stranger)
    with pytest.raises(TransportConfigError, match="login refused"):
        SftpTransport(cfg(sshd_server, private_key=stranger)).connect()


def test_encrypted_private_key_needs_its_passphrase(sshd_server, bank, tmp_path):
    key = tmp_path / "enc_key"
    pub = keygen(key, passphrase="s3cret words")
    with open(sshd_server.base / "authorized_keys", "a") as f:
        f.write(pub + "\n")
    with pytest.raises(TransportConfigError, match="encrypted"):
        SftpTransport(cfg(sshd_server, private_key=key)).connect()
    with pytest.raises(TransportConfigError, match="wrong passphrase"):
        SftpTransport(cfg(sshd_server, private_key=key, passphrase="nope")).connect()
    with SftpTransport(cfg(sshd_server, private_key=key, passphrase="s3cret words")) as t:
        t.listdir(str(bank / "incoming"))


def test_missing_private_key_file(sshd_server, tmp_path):
    with pytest.raises(TransportConfigError, match="does not exist"):
        SftpTransport(cfg(sshd_server, private_key=tmp_path / "none")).connect()


# -- faults ------------------------------------------------------------------------------------------

def test_server_down_is_unreachable(sshd_server, tmp_path):
    sshd_server.stop()
    with pytest.raises(BankUnreachable) as e:
        SftpTransport(cfg(sshd_server)).connect()
    assert not isinstance(e.value, ConnectionLost)
    assert f"127.0.0.1:{sshd_server.port}" in str(e.value)


def test_connection_killed_mid_transfer_is_lost(sshd_server, bank):
    t = SftpTransport(cfg(sshd_server))
    t.connect()
    sshd_server.kill_connections()
    with pytest.raises(ConnectionLost):
        t.put(os.urandom(8 << 20), str(bank / "incoming"), "x")
    assert not t.connected
    t.connect()  # the listener is still up: a new connection works
    t.listdir(str(bank / "incoming"))
    t.close()


def test_read_only_server_refuses_writes(sshd_server, bank):
    (bank / "incoming" / "old.ach").write_bytes(b"x")
    sshd_server.start(sftp_flags="-R")
    with SftpTransport(cfg(sshd_server)) as t:
        assert [e.name for e in t.listdir(str(bank / "incoming"))] == ["old.ach"]  # reading still works
        with pytest.raises(RemoteRefused, match="permission denied"):
            t.put(b"data", str(bank / "incoming"), "new.ach")
        with pytest.raises(RemoteRefused):
            t.rename(str(bank / "incoming"), "old.ach", str(bank / "incoming"), "b.ach")
        assert t.connected  # a refusal is not a lost connection
    assert sorted(os.listdir(bank / "incoming")) == ["old.ach"]


def test_refused_rename(sshd_server, bank):
    sshd_server.start(sftp_flags="-P posix-rename,rename")
    with SftpTransport(cfg(sshd_server)) as t:
        t.put(b"data", str(bank / "incoming"), ".t.part")
        with pytest.raises(RemoteRefused):
            t.rename(str(bank / "incoming"), ".t.part", str(bank / "incoming"), "t.ach")
    assert os.listdir(bank / "incoming") == [".t.part"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only): a real 'disk full'. Unmounted at teardown."""
    d = tmp_path / "small"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "achbatch-test", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_disk_full_is_a_refusal_and_names_it(sshd_server, small_disk):
    with SftpTransport(cfg(sshd_server)) as t:
        with pytest.raises(RemoteFull, match="the bank's disk is full"):
            t.put(os.urandom(6 << 20), str(small_disk), "big.part")
        assert t.connected


def test_folder_transport(tmp_path, small_disk):
    t = FolderTransport(tmp_path / "bank", create=("incoming", "outgoing"))
    t.connect()
    data = os.urandom(100_000)
    t.put(data, "incoming", ".a.part", exclusive=True)
    t.rename("incoming", ".a.part", "incoming", "a.ach")
    assert (tmp_path / "bank" / "incoming" / "a.ach").read_bytes() == data
    assert (tmp_path / "bank" / "incoming" / "a.ach").stat().st_mode & 0o777 == 0o600
    assert [(e.name, e.size) for e in t.listdir("incoming")] == [("a.ach", 100_000)]
    assert t.sha256("incoming", "a.ach") == hashlib.sha256(data).hexdigest()
    with pytest.raises(RemoteRefused):
        t.put(b"x", "incoming", "a.ach", exclusive=True)
    with pytest.raises(TransportConfigError):
        t.listdir("missing")
    full = FolderTransport(small_disk)
    full.connect()
    with pytest.raises(RemoteRefused, match="No space"):
        full.put(os.urandom(6 << 20), ".", "big")


# -- names and settings -------------------------------------------------------------------------------

def test_remote_name_pattern():
    d = date(2026, 12, 1)
    assert format_remote_name("ACH-{date}-{modifier}.ach", d, "B", 1) == "ACH-20261201-B.ach"
    assert format_remote_name("HIX_{date:%y%m%d}{modifier}_{seq:03d}.txt", d, "A", 7) == "HIX_261201A_007.txt"
    for bad, words in [("ACH-{date}.ach", "modifier"), ("{modifier}.ach", "date"), ("x/{date}{modifier}", "plain"),
                       ("{date}{modifier}{nope}", "unknown placeholder"), (".{date}{modifier}", "plain"),
                       ("{date}{modifier}{", "not a valid")]:
        with pytest.raises(ValueError, match=words):
            check_name_pattern(bad)


def test_pin_parsing():
    with pytest.raises(ValueError):
        parse_pin("SHA256:short")
    with pytest.raises(ValueError):
        parse_pin("ssh-ed25519 not-base64!")
    with pytest.raises(ValueError, match="not a ssh-rsa key"):
        parse_pin("ssh-rsa " + "AAAAC3NzaC1lZDI1NTE5AAAAIBJ2MZU6ZtbvCYZzTwD5Wdb8bDhCRgmE1yeKz+tomDWq")
    blob_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBJ2MZU6ZtbvCYZzTwD5Wdb8bDhCRgmE1yeKz+tomDWq bank"
    p = parse_pin(blob_line)
    assert p.key_type == "ssh-ed25519" and p.fingerprint == fingerprint(p.blob)


def test_bank_settings_rules():
    with pytest.raises(ValueError, match=r"needs \{seq\}"):
        BankSettings(rename_allowed=False)
    assert BankSettings(rename_allowed=False, file_name_pattern="ACH-{date}-{modifier}-{seq}.ach")
    with pytest.raises(ValueError, match="pinned_host_key"):
        BankSettings(transport="sftp", host="h", username="u", private_key="/k")
    assert BankSettings(transport="sftp", host="h", username="u", private_key="/k",
                        pinned_host_key="SHA256:" + "A" * 43).pinned_host_key
    with pytest.raises(ValueError, match="fingerprint"):
        BankSettings(pinned_host_key="SHA256:abc")
    with pytest.raises(ValueError, match="not both"):
        BankSettings(passphrase="x", passphrase_file="/p")
    with pytest.raises(ValueError, match="retry_wait_max"):
        BankSettings(retry_wait_initial=10, retry_wait_max=1)
