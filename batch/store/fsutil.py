"""Local files, the one place for each helper every step shares: durable writes (the whole file
under a temporary name beside the target, fsynced, renamed into place, the folder fsynced; never
over something that is not a regular file), the temporary-name prefix, private folders and a
file's sha256."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

# Temporary names start with this (the steps clean up `.tmp-*` after a crash): the NACHA writer's.
from nacha.tempfiles import TMP_PREFIX


def fsync_dir(d: Path) -> None:
    """Make a rename in folder `d` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def private_dirs(folder: Path) -> None:
    """Create `folder` and missing parents with mode 0700 (mkdir(parents=True) would give the
    parents the umask's mode)."""
    missing = []
    p = Path(folder)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks (a file of any size, little memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# A path naming one of this process's open descriptors: /dev/stdout, /dev/stderr, /dev/fd/N,
# /proc/self/fd/N. Written through the descriptor itself, so the shell's redirection (`>`, `>>`, a
# pipe) is honoured; opening the path anew would truncate a `>>` log.
_INHERITED_FD = re.compile(r"^/(?:dev/(?:fd/(?P<n>\d+)|(?P<std>stdout|stderr))|proc/self/fd/(?P<p>\d+))$")


def inherited_fd(path: str | os.PathLike) -> int | None:
    """The descriptor number `path` names (`/dev/stdout` -> 1), or None."""
    m = _INHERITED_FD.match(os.fspath(path))
    if not m:
        return None
    if m["std"]:
        return 1 if m["std"] == "stdout" else 2
    return int(m["n"] or m["p"])


def write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` to an open descriptor (a pipe may take it in pieces)."""
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path`, atomically with file mode `mode` when `path` is a regular file or does
    not exist yet. What is there is never destroyed:
    - `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: written to that open descriptor;
    - a character device, FIFO or anything else that is not a regular file: opened and written in
      place, never renamed over (a folder is refused: IsADirectoryError);
    - a symbolic link is never replaced by a file: what it points to is written (atomically when that
      is a regular file or does not exist yet, in place otherwise), the link stays.
    The temporary name, `.tmp-<name>.<pid>.tmp`, never ends in the target's own extension (a
    collector globbing `*.prom` must not read it)."""
    path = Path(path)
    fd = inherited_fd(path)
    if fd is not None:
        write_fd(fd, data)
        return path
    try:
        st = os.stat(path)  # follows links: the kind of thing that would be written
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_in_place(path, data)
        return path
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    _replace(target, data, mode)
    return path


def _write_in_place(path: Path, data: bytes) -> None:
    # O_WRONLY without O_CREAT or O_TRUNC: a device or FIFO is written as it is (a FIFO waits for its
    # reader, as `>` would); O_NOCTTY: a terminal never becomes our controlling one.
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:
        write_fd(fd, data)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int) -> None:
    with replacing(path, mode) as f:
        f.write(data)


@contextmanager
def replacing(path: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """A new file that replaces the regular file (or nothing) at `path` when the block ends: written
    under the temporary name `.tmp-<name>.<pid>.tmp` (file mode `mode`), fsynced, renamed into
    place, the folder fsynced. On an exception the temporary file is removed and `path` untouched.
    For content streamed in pieces; `write_atomic` for bytes at hand (and any kind of target)."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class DurableCopies:
    """Write the same bytes to several new files (mode `mode`) and make them durable at `close()`;
    as a context manager, closed at the end of the block (abandoned, not synced, on an exception).

    While the bytes arrive, a helper thread asks the kernel to write back what is there every
    `kick` bytes (fdatasync), so the disk works during a long transfer instead of after it and the
    final fsync has little left. An error of a background write-back is raised by `close()`: Linux
    reports a write-back error once per open file, so the final fsync alone could miss it.
    Measured on a 95 MB download from a local sshd (inbound: inbox file and archive copy): the
    fsyncs after the transfer took 0.02-0.03 s instead of 0.34 s (one fsync, then a copy and its
    fsync), and the whole fetch 0.85 s instead of 1.16 s."""

    def __init__(self, paths: list[Path], *, mode: int = 0o600, kick: int = 16 << 20):
        self.fds: list[int] = []
        try:
            for p in paths:
                self.fds.append(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        except BaseException:
            self._close_fds()
            raise
        self._kick = kick
        self._pending = 0
        self._thread = None
        self._error: OSError | None = None

    def write(self, data) -> int:
        mv = memoryview(data)
        for fd in self.fds:
            done = 0
            while done < len(mv):
                done += os.write(fd, mv[done:])
        self._pending += len(mv)
        if self._pending >= self._kick and (self._thread is None or not self._thread.is_alive()):
            self._pending = 0
            self._thread = threading.Thread(target=self._write_back, name="achbatch-writeback", daemon=True)
            self._thread.start()
        return len(mv)

    def _write_back(self) -> None:
        for fd in self.fds:
            try:
                os.fdatasync(fd)
            except OSError as e:
                self._error = self._error or e

    def close(self, *, sync: bool = True) -> None:
        """fsync every file (unless `sync` is False: the copies are being abandoned) and close them."""
        try:
            if self._thread is not None:
                self._thread.join()
            if sync:
                if self._error is not None:
                    raise self._error
                for fd in self.fds:
                    os.fsync(fd)
        finally:
            self._close_fds()

    def __enter__(self) -> "DurableCopies":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(sync=exc_type is None)

    def _close_fds(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            with suppress(OSError):
                os.close(fd)
