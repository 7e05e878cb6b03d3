"""Durable local file writes shared by every step: the whole file under a temporary name beside
the target, fsynced, renamed into place, the folder fsynced."""
from __future__ import annotations

import os
from pathlib import Path

TMP_PREFIX = ".tmp-"  # temporary names start with this (the steps clean up `.tmp-*` after a crash)


def fsync_dir(d: Path) -> None:
    """Make a rename in folder `d` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path` atomically with file mode `mode`. The temporary name,
    `.tmp-<name>.<pid>.tmp`, never ends in the target's own extension (a collector globbing
    `*.prom` must not read it)."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
