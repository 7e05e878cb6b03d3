"""A private OpenSSH server for tests (and the transport benchmark): /usr/sbin/sshd on 127.0.0.1, a
free port, its own host key, authorized key and config in a temporary folder, started in the
foreground and ready when it logs "Server listening". Faults are real: the sftp subsystem can be
made read-only (`internal-sftp -R`) or refuse renames (`-P posix-rename,rename`), the connection
processes can be killed mid-transfer, a folder can be a small tmpfs (disk full), the server can
be stopped (down).

Teardown kills the listener and its children (each connection is its own process that outlives
the listener); processes are found through psutil by parent pid, never by name.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def require_sshd() -> None:
    """Skip (with the reason) when OpenSSH's server is not installed; FAIL in CI, where
    scripts/test.sh installs it."""
    if SSHD.is_file():
        return
    msg = (f"{SSHD} is missing: install openssh-server (apt-get install -y openssh-server; scripts/test.sh "
           "does it)")
    if os.environ.get("CI"):
        pytest.fail(msg + " - it is required in CI", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> str:
    """Create a key pair; returns the public key line."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-f", str(path), "-C", "achbatch-test"],
                   check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


class SshServer:
    """One sshd. `start()` / `stop()` may be called repeatedly (same host key; a new port unless
    `same_port`)."""

    def __init__(self, base: Path, *, user: str | None = None):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.user = user or _current_user()
        self.host_key = self.base / "host_ed25519"
        self.host_pub = keygen(self.host_key)
        self.client_key = self.base / "client_ed25519"
        self.client_pub = keygen(self.client_key)
        (self.base / "authorized_keys").write_text(self.client_pub + "\n")
        os.chmod(self.base / "authorized_keys", 0o600)
        self.port = free_port()
        self.known_hosts = self.base / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []
        self.sftp_flags = ""

    # -- lifecycle -------------------------------------------------------------------------------
    def config_text(self) -> str:
        return "\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.base / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.base / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "UseDNS no",
            "LogLevel INFO",
            "MaxStartups 50",
            f"Subsystem sftp internal-sftp {self.sftp_flags}".rstrip(),
            "",
        ])

    def start(self, *, sftp_flags: str = "", same_port: bool = True) -> "SshServer":
        if self.proc is not None:
            self.stop()
        self.sftp_flags = sftp_flags
        if not same_port:
            self.port = free_port()
            self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        cfg = self.base / "sshd_config"
        cfg.write_text(self.config_text())
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation folder (root)
        for _ in range(50):  # the port may still be held for a moment after a stop
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if self._wait_ready(proc):
                self.proc = proc
                return self
            proc.kill()
            proc.wait()
            time.sleep(0.1)
        raise RuntimeError("sshd did not start:\n" + "\n".join(self.log[-20:]))

    def _wait_ready(self, proc: subprocess.Popen) -> bool:
        ready = threading.Event()
        failed = threading.Event()

        def drain():
            for line in proc.stderr:  # keep reading: a full pipe would block sshd
                self.log.append(line.rstrip())
                if "Server listening on" in line:
                    ready.set()
            failed.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ready.wait(0.02):
                return True
            if failed.is_set() or proc.poll() is not None:
                return False
        return False

    def children(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_connections(self) -> int:
        """SIGKILL every connection process (the listener stays): the clients' connections drop."""
        procs = self.children()
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        return len(procs)

    def stop(self) -> None:
        """Kill the listener and every connection it spawned."""
        if self.proc is None:
            return
        procs = self.children()
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    # -- settings for achbatch -------------------------------------------------------------------
    def bank_settings(self, **over) -> dict:
        """A `[bank]` section for this server."""
        d = {"transport": "sftp", "host": "127.0.0.1", "port": self.port, "username": self.user,
             "private_key": str(self.client_key), "known_hosts": str(self.known_hosts),
             "connect_timeout": 10, "operation_timeout": 20, "retry_attempts": 2, "retry_wait_initial": 0.1,
             "retry_wait_max": 0.2}
        d.update(over)
        return d


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# -- helpers shared by the transport and delivery tests ------------------------------------------------

def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict]) -> Path:
    """A settings file from {section: {key: value}}."""
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def sshd_server(tmp_path_factory):
    """A running private sshd (stopped, with every connection, at teardown)."""
    require_sshd()
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def nacha_like(size: int, seed: int = 0) -> bytes:
    """`size` bytes of 94-character records (newline-terminated): stands in for a built file where
    only its bytes matter (the transport never parses them)."""
    import random

    rnd = random.Random(seed)
    line = "".join(rnd.choice("0123456789ABCDEFGHIJ ") for _ in range(94)).encode() + b"\n"
    block = line * 1000
    out = (block * (size // len(block) + 1))[:size]
    return out


def add_built_file(sessions, keyring, data: bytes, *, file_date=None, modifier: str = "A") -> int:
    """Record a built NACHA file with these exact bytes (as origination does: encrypted, sha256)."""
    from datetime import date as _date

    from batch.store.crypto import FILE_CONTEXT
    from batch.store.models import NachaFile

    import hashlib

    d = file_date or _date(2026, 12, 1)
    with sessions() as s, s.begin():
        row = NachaFile(file_date=d, file_id_modifier=modifier, file_name=f"ACH-{d:%Y%m%d}-{modifier}.ach",
                        sha256=hashlib.sha256(data).hexdigest(), content_enc=keyring.encrypt(data, FILE_CONTEXT),
                        entry_count=0, total_debit_cents=0, total_credit_cents=0, state="built")
        s.add(row)
        s.flush()
        return row.id


class GpgHome:
    """A throwaway GnuPG home with one unprotected key (short path: gpg-agent's socket lives there).
    `close()` stops its gpg-agent."""

    def __init__(self, email: str):
        import tempfile

        import gnupg

        self.path = Path(tempfile.mkdtemp(prefix="gpg"))
        os.chmod(self.path, 0o700)
        self.gpg = gnupg.GPG(gnupghome=str(self.path))
        params = self.gpg.gen_key_input(name_email=email, key_type="EDDSA", key_curve="ed25519",
                                        subkey_type="ECDH", subkey_curve="cv25519", no_protection=True,
                                        expire_date=0)
        key = self.gpg.gen_key(params)
        assert key.fingerprint, key.stderr
        self.fingerprint = key.fingerprint

    def public(self) -> str:
        return self.gpg.export_keys(self.fingerprint)

    def trust(self, other: "GpgHome") -> None:
        r = self.gpg.import_keys(other.public())
        assert r.count == 1, r.stderr

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.path), "--kill", "gpg-agent"], check=False,
                       capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)
