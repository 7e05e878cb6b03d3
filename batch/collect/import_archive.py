"""Imported CSV exports at rest: the nightly run moves each imported file out of the drop folder
into `archive/imported/<date>/`, with its account numbers masked (docs/operations.md "Files at
rest"). The original bytes are not kept: their sha256 is, in `<name>.sha256` beside the masked copy
(the same hash the `import_runs` ledger records), so the file a sender kept can be proven to be the
one imported. The database keeps the numbers themselves, encrypted.

What is masked: in a row with as many fields as the header, the `account_number` column; in a row
of any other shape (where a number may sit in another column), every run of 5 or more digits. Each
becomes `****` and its last four digits (`nacha.fields.mask`). Files are written 0600 (temporary
file, fsync, rename), then the original is removed.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..store.crypto import mask
from ..store.fsutil import file_sha256, fsync_dir, replacing, write_atomic

__all__ = ["ArchivedImport", "archive_imported", "mask_csv"]

MASKED_COLUMNS = ("account_number",)
_DIGIT_RUN = re.compile(r"[0-9]{5,}")


@dataclass(frozen=True)
class ArchivedImport:
    path: Path  # the masked copy
    sha256: str  # of the original bytes
    masked: int  # values masked


def mask_csv(src, dst) -> int:
    """Copy the CSV text `src` to `dst` (text streams) with account numbers masked (see the module
    docstring); returns how many values were masked."""
    reader = csv.reader(src)
    writer = csv.writer(dst, lineterminator="\n")
    header = next(reader, None)
    if header is None:
        return 0
    writer.writerow(header)
    cols = [i for i, name in enumerate(header) if name.strip().lower() in MASKED_COLUMNS]
    n = 0
    for row in reader:
        if len(row) == len(header):
            for i in cols:
                if row[i].strip():
                    row[i] = mask(row[i])
                    n += 1
        else:
            for i, value in enumerate(row):
                row[i], k = _DIGIT_RUN.subn(lambda m: mask(m.group()), value)
                n += k
        writer.writerow(row)
    return n


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    n = 1
    while target.exists() or target.with_name(target.name + ".sha256").exists():
        n += 1
        target = folder / (f"{stem}.{n}.{suffix}" if suffix else f"{stem}.{n}")
    return target


def archive_imported(path: Path, folder: Path) -> ArchivedImport:
    """Archive the imported CSV `path` into `folder` (created 0700): a masked copy under the same
    name (`name.2.csv`, ... when taken) and `<that name>.sha256` holding the original's hash, both
    0600; then remove `path`. A crash before the removal leaves the original in the drop folder:
    the next run imports it again (changing nothing) and archives it then."""
    path = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest = file_sha256(path)
    target = _free_name(folder, path.name)
    # streamed (an export can hold a million rows); the text the import read (UTF-8, a BOM allowed),
    # any other byte kept as it was
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as src, \
            replacing(target, 0o600) as raw:
        dst = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        masked = mask_csv(src, dst)
        dst.flush()
        dst.detach()  # `replacing` syncs and closes the file itself
    write_atomic(target.with_name(target.name + ".sha256"), f"{digest}  {path.name}\n".encode("utf-8"), mode=0o600)
    os.unlink(path)
    fsync_dir(path.parent)
    return ArchivedImport(target, digest, masked)
