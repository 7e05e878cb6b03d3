"""Imported CSVs at rest (batch/collect/import_archive.py): archived with account numbers masked,
the original's sha256 beside the copy, both 0600, the original removed."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from batch.collect.import_archive import archive_imported

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"


def test_account_numbers_masked_original_hash_kept_files_private(tmp_path):
    drop, archive = tmp_path / "drop", tmp_path / "archive" / "imported" / "2026-01-22"
    drop.mkdir()
    header = ("confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,routing_number,"
              "account_number,account_type,account_holder")
    original = ("\ufeff" + header + "\r\n"
                "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,24.10,011000015,4004001234,checking,Avery\r\n"
                "ML-1,2026-01-15T10:42:05-05:00,mail,M2,P1,2026-02,80.00,,,,\r\n"
                "PC-2,2026-01-15,portal,M3,P1,2026-02,1.00,011000015,123456789012345,checking,\"Doe, J\",extra\r\n"
                "PC-3,2026-01-15,portal,M4,P1,2026-02,1.00,011000015,4111111111111111,checking,Card\r\n")
    src = drop / "payments.csv"
    src.write_bytes(original.encode("utf-8"))
    old = os.umask(0o022)
    try:
        a = archive_imported(src, archive)
    finally:
        os.umask(old)
    assert not src.exists() and a.path == archive / "payments.csv"
    assert a.sha256 == hashlib.sha256(original.encode("utf-8")).hexdigest()
    assert (archive / "payments.csv.sha256").read_text() == f"{a.sha256}  payments.csv\n"
    text = a.path.read_text()
    assert text.splitlines() == [
        header,
        "PC-1,2026-01-15T10:42:05-05:00,portal,M1,P1,2026-02,24.10,011000015,****1234,checking,Avery",
        "ML-1,2026-01-15T10:42:05-05:00,mail,M2,P1,2026-02,80.00,,,,",
        # a row of another shape: every run of 5+ digits masked, wherever it is
        "PC-2,2026-01-15,portal,M3,P1,2026-02,1.00,****0015,****2345,checking,\"Doe, J\",extra",
        "PC-3,2026-01-15,portal,M4,P1,2026-02,1.00,011000015,****1111,checking,Card",
    ]
    assert a.masked == 4
    for p in (a.path, archive / "payments.csv.sha256"):
        assert p.stat().st_mode & 0o777 == 0o600
    assert archive.stat().st_mode & 0o777 == 0o700

    # the same name again the same day: a second copy, nothing overwritten
    src.write_bytes(original.encode("utf-8"))
    b = archive_imported(src, archive)
    assert b.path == archive / "payments.2.csv" and (archive / "payments.2.csv.sha256").exists()
    assert sorted(p.name for p in archive.iterdir()) == ["payments.2.csv", "payments.2.csv.sha256", "payments.csv",
                                                        "payments.csv.sha256"]


def test_a_file_without_account_numbers_is_archived_as_it_was(tmp_path):
    src = tmp_path / "premiums.csv"
    src.write_bytes((SAMPLES / "premiums.csv").read_bytes())
    a = archive_imported(src, tmp_path / "a")
    assert a.masked == 0 and a.path.read_bytes() == (SAMPLES / "premiums.csv").read_bytes()
