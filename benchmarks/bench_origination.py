"""Speed and memory of origination.

    python benchmarks/bench_origination.py [--payments N] [--db sqlite|postgresql] [--accounts A]

Creates a fresh database (SQLite in a temporary folder, or a new PostgreSQL database on the server
named by $ACHBATCH_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
dropped afterwards), loads N synthetic pending payments (portal WEB S, AutoPay WEB R, paper PPD and
phone TEL, over A distinct encrypted bank accounts, default one per payment), then runs `originate`
for one banking day. Each step runs in its own process so its peak RSS is its own; prints wall time,
rows per second and peak RSS for the load and the originate steps, and checks the result.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _pgdb import create_database, drop_database  # noqa: E402  (benchmarks/, the script's own folder)

FILE_DATE = date(2026, 12, 1)  # a Tuesday, a Fed banking day
KEY = bytes(range(32))  # a throwaway benchmark key, never used for real data
CHANNELS = (("portal", "WEB", "S"), ("autopay", "WEB", "R"), ("autopay", "PPD", ""), ("phone", "TEL", "S"))
ROUTINGS = ("011000015", "021000021", "026009593", "011401533", "091000019")


def _keyring():
    from batch.store.crypto import Keyring

    return Keyring([KEY])


def step_load(url: str, n: int, accounts: int) -> dict:
    from sqlalchemy import insert

    from batch.store.db import make_engine, upgrade
    from batch.store.models import BankAccount, Payment

    upgrade(url)
    kr = _keyring()
    engine = make_engine(url)
    t0 = time.perf_counter()
    now = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(0, accounts, chunk):
            rows = []
            for i in range(start, min(start + chunk, accounts)):
                acct = f"{(i * 7919) % 10**10 + 10**9:010d}"
                routing = ROUTINGS[i % len(ROUTINGS)]
                rows.append({
                    "id": i + 1, "routing_number": routing, "account_number_enc": kr.encrypt_account(acct),
                    "account_hash": kr.account_hash(routing, acct), "last4": acct[-4:],
                    "account_type": "checking" if i % 4 else "savings", "holder_name": f"MEMBER {i}",
                    "status": "active", "validation_result": "unvalidated", "created_at": now, "updated_at": now,
                })
            conn.execute(insert(BankAccount), rows)
    t1 = time.perf_counter()
    with engine.begin() as conn:
        for start in range(0, n, chunk):
            rows = []
            for i in range(start, min(start + chunk, n)):
                channel, sec, ptc = CHANNELS[i % len(CHANNELS)]
                rows.append({
                    "confirmation_id": f"B-{i}", "channel": channel, "member_id": f"M{i:09d}",
                    "plan_id": "HLTH-SILVER-01", "coverage_month": date(2027, 1, 1), "amount_cents": 1000 + i % 90000,
                    "bank_account_id": i % accounts + 1, "submitted_at": now, "sec_code": sec,
                    "payment_type_code": ptc, "originate_on": FILE_DATE, "state": "pending",
                    "retry_number": 0, "created_at": now, "updated_at": now,
                })
            conn.execute(insert(Payment), rows)
    t2 = time.perf_counter()
    engine.dispose()
    return {"seconds": t2 - t0, "accounts_seconds": t1 - t0, "payments_seconds": t2 - t1}


def step_originate(url: str, outbox: str) -> dict:
    from batch.store.db import make_engine, make_sessionmaker
    from batch.collect.origination import Company, Limits, originate

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    company = Company("HEALTH CONNECTOR", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK",
                      "011000015")
    t0 = time.perf_counter()
    r = originate(sessions, _keyring(), company, Limits(max_entries_per_file=10**8, max_cents_per_file=10**14),
                  FILE_DATE, outbox, file_time="2300")
    dt = time.perf_counter() - t0
    engine.dispose()
    return {"seconds": dt, "payments": r.payments, "files": [f.file_name for f in r.files],
            "cents": r.total_cents}


def _child(args) -> None:
    if args.step == "load":
        out = step_load(args.url, args.payments, args.accounts)
    else:
        out = step_originate(args.url, args.outbox)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(step: str, args, url: str, outbox: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--step", step, "--url", url, "--outbox", outbox,
           "--payments", str(args.payments), "--accounts", str(args.accounts)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"step {step} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payments", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=0, help="distinct bank accounts (default: one per payment)")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--outbox", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.accounts <= 0:
        args.accounts = args.payments
    if args.step:
        _child(args)
        return

    tmp = tempfile.mkdtemp(prefix="bench-orig-")
    outbox = os.path.join(tmp, "outbox")
    dbname = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        url, dbname = create_database()
    try:
        print(f"bench_origination: {args.payments:,} payments over {args.accounts:,} accounts on {args.db}, "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
        load = _run("load", args, url, outbox)
        orig = _run("originate", args, url, outbox)
        n = args.payments
        print(f"  load       {load['seconds']:7.1f} s  {n / load['seconds']:>10,.0f} rows/s  peak RSS "
              f"{load['peak_rss_mb']:6.1f} MB  (accounts {load['accounts_seconds']:.1f} s, payments "
              f"{load['payments_seconds']:.1f} s)")
        print(f"  originate  {orig['seconds']:7.1f} s  {n / orig['seconds']:>10,.0f} rows/s  peak RSS "
              f"{orig['peak_rss_mb']:6.1f} MB  -> {orig['payments']:,} entries in {len(orig['files'])} file(s)")
        ok = orig["payments"] == n
        print(f"  check: every payment originated once: {'yes' if ok else 'NO'}; target: originate < 60 s, "
              f"peak RSS < 600 MB")
        from nacha.reader import validate_file

        bad = [f for f in orig["files"] if validate_file(os.path.join(outbox, f), "strict").issues]
        print(f"  check: files valid (strict): {'yes' if not bad else 'NO: ' + ', '.join(bad)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if dbname:
            drop_database(dbname)


if __name__ == "__main__":
    main()
