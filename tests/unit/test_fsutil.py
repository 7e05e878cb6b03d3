"""Durable local writes (batch/store/fsutil.py)."""
from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from batch.store import fsutil
from batch.store.fsutil import TMP_PREFIX, DurableCopies, file_sha256, private_dirs, write_atomic


def test_durable_copies_write_the_same_bytes_to_every_file_private(tmp_path):
    paths = [tmp_path / "inbox.tmp", tmp_path / "archive.tmp"]
    c = DurableCopies(paths, kick=64 << 10)  # write-back kicked many times
    pieces = [os.urandom(n) for n in (1, 100_000, 70_000, 0, 300_001)]
    for p in pieces:
        assert c.write(memoryview(p)) == len(p)
    c.close()
    for p in paths:
        assert p.read_bytes() == b"".join(pieces)
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    c.close()  # closing twice is harmless


def test_a_background_write_back_error_is_raised_at_close(tmp_path, monkeypatch):
    """Linux reports a write-back error once per open file: if the helper thread's fdatasync saw it,
    the final fsync would not, so close() raises the helper's error. (The I/O error is simulated:
    fdatasync is replaced; a real one needs a failing disk.)"""
    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fsutil.os, "fdatasync", failing)
    c = DurableCopies([tmp_path / "a"], kick=10)
    c.write(b"x" * 100)
    with pytest.raises(OSError) as e:
        c.close()
    assert e.value.errno == errno.EIO
    assert c.fds == []  # closed all the same


def test_abandoned_copies_close_without_syncing(tmp_path, monkeypatch):
    c = DurableCopies([tmp_path / "a", tmp_path / "b"], kick=1 << 30)
    c.write(b"partial")
    synced = []
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: synced.append(fd))
    c.close(sync=False)
    assert synced == [] and c.fds == []


def test_an_unopenable_path_leaves_no_descriptor_open(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        DurableCopies([tmp_path / "a", tmp_path / "missing" / "b"])
    assert len(os.listdir("/proc/self/fd")) == before


def test_write_atomic_replaces_whole_and_private(tmp_path):
    p = tmp_path / "m.prom"
    write_atomic(p, b"one")
    write_atomic(p, b"two two")
    assert p.read_bytes() == b"two two" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["m.prom"]


def test_write_atomic_temporary_name_starts_with_the_shared_prefix(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(fsutil.os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real_replace(a, b)))
    write_atomic(tmp_path / "r.csv", b"x")
    assert len(seen) == 1 and seen[0].startswith(TMP_PREFIX) and not seen[0].endswith(".csv")


def test_file_sha256_of_a_file_larger_than_one_chunk(tmp_path):
    data = os.urandom((1 << 20) * 2 + 12345)
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


def test_private_dirs_makes_every_missing_parent_0700(tmp_path):
    old = os.umask(0o022)  # mkdir(parents=True) would give 0755 here
    try:
        private_dirs(tmp_path / "a" / "b" / "c")
        private_dirs(tmp_path / "a" / "b" / "c")  # already there: nothing to do
    finally:
        os.umask(old)
    for d in ("a", "a/b", "a/b/c"):
        assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o700


# -- never destroy what is at the path (issue 14: `--out /dev/stdout` as root replaced /dev/stdout) --

def _read_fifo_in_thread(fifo):
    import threading

    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t, got


def test_write_atomic_writes_into_a_fifo_and_leaves_it_a_fifo(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    t, got = _read_fifo_in_thread(fifo)
    write_atomic(fifo, b"report bytes\n")
    t.join(10)
    assert got.get("data") == b"report bytes\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["report.fifo"]  # no temporary left over either


@pytest.mark.skipif(os.geteuid() != 0, reason="making a character device needs root")
def test_write_atomic_writes_into_a_character_device_and_leaves_it_one(tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    write_atomic(dev, b"x" * 1000)
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def test_write_atomic_keeps_a_symlink_and_replaces_its_regular_target(tmp_path):
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "2026-01-23.html"
    target.write_bytes(b"old")
    link = tmp_path / "latest.html"
    link.symlink_to(target)
    write_atomic(link, b"new", mode=0o644)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path / "reports")) == ["2026-01-23.html"]


def test_write_atomic_through_a_dangling_link_creates_its_target_and_keeps_the_link(tmp_path):
    link = tmp_path / "metrics.prom"
    link.symlink_to(tmp_path / "collector" / "achbatch.prom")
    (tmp_path / "collector").mkdir()
    write_atomic(link, b"achbatch_up 1\n")
    assert link.is_symlink()
    assert (tmp_path / "collector" / "achbatch.prom").read_bytes() == b"achbatch_up 1\n"


def test_write_atomic_through_a_link_to_a_fifo_writes_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "out.csv"
    link.symlink_to(fifo)
    t, got = _read_fifo_in_thread(fifo)
    write_atomic(link, b"a,b\n")
    t.join(10)
    assert got.get("data") == b"a,b\n" and link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_write_atomic_to_dev_fd_writes_to_that_open_descriptor(tmp_path):
    """/dev/fd/N, /proc/self/fd/N, /dev/stdout: the descriptor itself (a `>>` redirection keeps
    what it has: the path is not reopened with truncation)."""
    log = tmp_path / "log"
    log.write_bytes(b"earlier\n")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        write_atomic(f"/dev/fd/{fd}", b"one\n")
        write_atomic(f"/proc/self/fd/{fd}", b"two\n")
    finally:
        os.close(fd)
    assert log.read_bytes() == b"earlier\none\ntwo\n"
    assert fsutil.inherited_fd("/dev/stdout") == 1 and fsutil.inherited_fd("/dev/stderr") == 2
    assert fsutil.inherited_fd("/dev/fdx/1") is None and fsutil.inherited_fd("dev/stdout") is None


def test_write_atomic_refuses_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir() and os.listdir(tmp_path / "d") == []
