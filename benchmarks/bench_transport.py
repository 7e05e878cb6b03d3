"""Speed of delivery and fetch over SFTP against plain paramiko, on the same bytes in the same run.

    python benchmarks/bench_transport.py [--entries 1000000] [--rounds 3] [--db sqlite|postgresql] [--read-back]

Builds a NACHA file of N PPD debit entries with nacha.writer (1,000,000 entries: about 100 MB),
records it as a built file in a fresh database (SQLite in a temporary folder, or a new PostgreSQL
database on the server of $ACHBATCH_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
dropped afterwards), starts a private OpenSSH server on
127.0.0.1 (tests/sshd.py; needs /usr/sbin/sshd), then for each round:
  * plain paramiko: connect (SSHClient, pinned host key), SFTPClient.putfo of the bytes, getfo into
    memory; paramiko's defaults otherwise (aes128-ctr + hmac-sha2-256). Connecting is timed with
    the put, as it is in `send`; the get reuses the connection (a `fetch` connects: it pays that
    too). Then the same again offering only aes128-gcm, the cipher achbatch negotiates, so that the
    difference the cipher makes can be told from the rest;
  * achbatch: `send_files` (ledger, decrypt and sha256 check of the stored bytes, list, upload to a
    temporary name, size check, rename, confirm, local archive copy) and `fetch_files` (list,
    download to the inbox with sha256 on the way, re-stat, archive copy, ledger).
  * achbatch's transport alone (what the link costs, without database or local archive): connect,
    upload to a temporary name, size check, rename; and connect, download to a file with sha256.
Prints MB/s for each (best of the rounds; MB = 10^6 bytes) and the ratio plain/achbatch: the
target is a ratio of at most 1.2 (achbatch at least 1/1.2 of plain paramiko's speed). The machine
is shared: run several rounds and read the best.

The file's bytes live in their own table (nacha_file_contents, migration 0006): the state changes
of a send (built -> sending -> sent) rewrite only the small nacha_files row, on SQLite as on
PostgreSQL.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _pgdb import create_database, drop_database  # noqa: E402  (benchmarks/, the script's own folder)

FILE_DATE = date(2026, 12, 1)


def build_file(entries: int) -> bytes:
    """A valid NACHA file of `entries` PPD debits (batches of at most 100,000 entries)."""
    from nacha.layouts import BATCH_HEADER, ENTRY_PPD, FILE_HEADER
    from nacha.writer import FileWriter

    sink = io.StringIO()
    header = FILE_HEADER.make(immediate_destination=" 011000015", immediate_origin="9000000001",
                              file_creation_date="261201", file_creation_time="2300", file_id_modifier="A",
                              immediate_destination_name="FEDERAL RESERVE BANK", immediate_origin_name="HEALTH CONNECTOR")
    w = FileWriter(sink, header, name="bench.ach")
    routings = ("011000015", "021000021", "026009593", "011401533", "091000019")
    per_batch = 100_000
    n = 0
    while n < entries:
        w.start_batch(BATCH_HEADER.make(service_class_code="225", company_name="HEALTH CONNECTOR",
                                        company_identification="9000000001", standard_entry_class_code="PPD",
                                        company_entry_description="PREMIUM", effective_entry_date="261202",
                                        originator_status_code="1", originating_dfi_identification="01100001",
                                        batch_number=1))
        for i in range(n, min(n + per_batch, entries)):
            r = routings[i % 5]
            w.add_entry(ENTRY_PPD.make(transaction_code="27", receiving_dfi_identification=r[:8], check_digit=r[8],
                                       dfi_account_number=f"{7300000000 + i * 7919}", amount=1000 + i % 50000,
                                       individual_identification_number=f"M{i:08d}",
                                       individual_name=f"MEMBER {i}", trace_number=f"01100001{i + 1:07d}"))
        w.end_batch()
        n = min(n + per_batch, entries)
    w.finish()
    return sink.getvalue().encode("ascii")


GCM = "aes128-gcm@openssh.com"


def plain_paramiko(server, data: bytes, remote: str, *, cipher: str | None = None) -> tuple[float, float, str]:
    """putfo then getfo; returns their times and the cipher negotiated. `cipher`: the only one
    offered (paramiko's `disabled_algorithms`), else paramiko's defaults."""
    import paramiko

    disabled = None
    if cipher:
        disabled = {"ciphers": [c for c in paramiko.Transport._preferred_ciphers if c != cipher]}
    t0 = time.perf_counter()
    c = paramiko.SSHClient()
    c.load_host_keys(str(server.known_hosts))
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect("127.0.0.1", server.port, server.user, key_filename=str(server.client_key), allow_agent=False,
              look_for_keys=False, timeout=30, disabled_algorithms=disabled)
    negotiated = c.get_transport().local_cipher
    try:
        sftp = c.open_sftp()
        sftp.putfo(io.BytesIO(data), remote)
        put = time.perf_counter() - t0
        sink = io.BytesIO()
        t0 = time.perf_counter()
        sftp.getfo(remote, sink)
        get = time.perf_counter() - t0
        assert sink.getvalue() == data
        sftp.remove(remote)
    finally:
        c.close()
    return put, get, negotiated


def transport_only(settings, data: bytes, folder: str, local: Path) -> tuple[float, float]:
    """achbatch's SFTP transport without the ledger: upload (temporary name, size check, rename)
    and download (to a file, sha256 on the way), each with its own connection."""
    from batch.bank.transport import transport_from_settings

    t0 = time.perf_counter()
    with transport_from_settings(settings) as t:
        t.put(data, folder, ".t.part", exclusive=True)
        assert t.stat(folder, ".t.part").size == len(data)
        t.rename(folder, ".t.part", folder, "t.ach")
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with transport_from_settings(settings) as t, open(local, "wb", buffering=0) as f:
        n = t.get(folder, "t.ach", f, hasher=h, size=len(data))
        os.fsync(f.fileno())
        t.remove(folder, "t.ach")
    down = time.perf_counter() - t0
    assert n == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest()
    local.unlink()
    return up, down


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--read-back", action="store_true", help="also verify each upload by reading it back")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()

    from sqlalchemy import update

    from batch.config import Settings
    from batch.store.crypto import FILE_CONTEXT, Keyring, generate_secret
    from batch.store.db import make_engine, make_sessionmaker, upgrade
    from batch.bank.delivery import DeliveryPolicy, send_files
    from batch.bank.inbound import InboundPolicy, fetch_files
    from batch.store.models import Delivery, DeliveryAttempt, InboundFile, NachaFile
    from batch.bank.transport import transport_from_settings
    from sshd import SSHD, SshServer

    if not SSHD.is_file():
        sys.exit(f"{SSHD} is missing: apt-get install -y openssh-server")
    t0 = time.perf_counter()
    data = build_file(args.entries)
    build_s = time.perf_counter() - t0
    mb = len(data) / 1e6
    print(f"file: {args.entries:,} entries, {len(data):,} bytes ({mb:.1f} MB), built with nacha.writer in {build_s:.1f} s")

    tmp = Path(tempfile.mkdtemp(prefix="achbench-"))
    server = SshServer(tmp / "sshd").start()
    dbname = None
    try:
        bank = tmp / "bank"
        for d in ("incoming", "outgoing"):
            (bank / d).mkdir(parents=True)
        if args.db == "sqlite":
            url = f"sqlite:///{tmp / 'db' / 'achbatch.db'}"
        else:
            url, dbname = create_database()
        upgrade(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        keyring = Keyring([generate_secret()])
        with sessions() as s, s.begin():
            row = NachaFile(file_date=FILE_DATE, file_id_modifier="A", file_name="ACH-20261201-A.ach",
                            sha256=hashlib.sha256(data).hexdigest(), content_enc=keyring.encrypt(data, FILE_CONTEXT),
                            entry_count=args.entries, total_debit_cents=0, total_credit_cents=0, state="built")
            s.add(row)
            s.flush()
            fid = row.id
        settings = Settings.model_validate({
            "bank": server.bank_settings(outbound_dir=str(bank / "incoming"), inbound_dir=str(bank / "outgoing"),
                                         verify_read_back=args.read_back),
            "paths": {"data_dir": str(tmp / "data")}})

        results = {"plain put": [], "plain get": [], "plain put gcm": [], "plain get gcm": [], "achbatch send": [],
                   "achbatch fetch": [], "transport upload": [], "transport download": []}
        ciphers = {}
        for rnd in range(args.rounds):
            put, get, ciphers["plain"] = plain_paramiko(server, data, str(bank / "incoming" / "plain.ach"))
            results["plain put"].append(put)
            results["plain get"].append(get)
            put, get, _ = plain_paramiko(server, data, str(bank / "incoming" / "plain.ach"), cipher=GCM)
            results["plain put gcm"].append(put)
            results["plain get gcm"].append(get)

            up, down = transport_only(settings, data, str(bank / "incoming"), tmp / "download.bin")
            results["transport upload"].append(up)
            results["transport download"].append(down)

            # send: reset the ledger so that the same file is sent afresh each round
            for p in (bank / "incoming").iterdir():
                p.unlink()
            shutil.rmtree(tmp / "data" / "archive", ignore_errors=True)
            with sessions() as s, s.begin():
                s.query(DeliveryAttempt).delete()
                s.query(Delivery).delete()
                s.execute(update(NachaFile).where(NachaFile.id == fid).values(state="built", sent_at=None))
            t0 = time.perf_counter()
            r = send_files(sessions, keyring, transport_from_settings(settings),
                           DeliveryPolicy.from_settings(settings.bank), archive_dir=settings.archive_dir)
            send_s = time.perf_counter() - t0
            assert [f.outcome for f in r.files] == ["sent"], r
            assert hashlib.sha256((bank / "incoming" / "ACH-20261201-A.ach").read_bytes()).hexdigest() == r.files[0].sha256
            results["achbatch send"].append(send_s)

            # fetch: the bank leaves the same bytes for us
            shutil.move(bank / "incoming" / "ACH-20261201-A.ach", bank / "outgoing" / "RET.ach")
            shutil.rmtree(tmp / "data" / "inbox", ignore_errors=True)
            with sessions() as s, s.begin():
                s.query(InboundFile).delete()
            t0 = time.perf_counter()
            fr = fetch_files(sessions, transport_from_settings(settings), InboundPolicy.from_settings(settings.bank),
                             inbox=settings.inbox_dir, archive_dir=settings.archive_dir)
            fetch_s = time.perf_counter() - t0
            assert [f.outcome for f in fr.files] == ["received"], fr
            assert fr.files[0].sha256 == hashlib.sha256(data).hexdigest()
            results["achbatch fetch"].append(fetch_s)
            (bank / "outgoing" / "RET.ach").unlink()
            last = {k: v[-1] for k, v in results.items()}
            print(f"round {rnd + 1}: plain put {mb / last['plain put']:6.1f} MB/s, get {mb / last['plain get']:6.1f} "
                  f"MB/s (gcm: {mb / last['plain put gcm']:6.1f}, {mb / last['plain get gcm']:6.1f}) | "
                  f"transport upload {mb / up:6.1f}, download {mb / down:6.1f} | "
                  f"achbatch send {mb / send_s:6.1f} MB/s, fetch {mb / fetch_s:6.1f} MB/s", flush=True)
        engine.dispose()
        with transport_from_settings(settings) as t:
            t.connect()
            ciphers["achbatch"] = t._t.local_cipher
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if dbname:
            drop_database(dbname)

    best = {k: mb / min(v) for k, v in results.items()}
    print()
    print(f"best of {args.rounds} ({mb:.1f} MB, ledger on {args.db}"
          f"{', read-back verification on' if args.read_back else ''}):")
    print(f"  ciphers: plain paramiko (its defaults) {ciphers.get('plain')}, achbatch {ciphers.get('achbatch')}; "
          f"'plain ... gcm' is plain paramiko offering only {GCM}")
    for a, b in (("plain put", "transport upload"), ("plain get", "transport download"),
                 ("plain put", "achbatch send"), ("plain get", "achbatch fetch"),
                 ("plain put gcm", "achbatch send"), ("plain get gcm", "achbatch fetch")):
        ratio = best[a] / best[b]
        verdict = "within" if ratio <= 1.2 else "OUTSIDE"
        print(f"  {b:18s} {best[b]:7.1f} MB/s   {a:13s} {best[a]:7.1f} MB/s   ratio {ratio:.2f} "
              f"({verdict} the 1.2x target)")


if __name__ == "__main__":
    main()
