"""Speed and memory of applying a bank return file.

    python benchmarks/bench_returns.py [--entries N] [--returns R] [--accounts A] [--db sqlite|postgresql]

Creates a fresh database (SQLite in a temporary folder, or a new PostgreSQL database on the server
named by $ACHBATCH_TEST_PG_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
dropped afterwards) and bulk-loads N originated entries (default 1,000,000): premiums, encrypted
bank accounts (A, default N/10), AutoPay mandates, payments in state 'in_file', one NACHA file
row and its file_entries. Then a simulated bank writes (with our NACHA writer) a return file of R
returns (default 100,000: R01 70%, R09 5%, R02 8%, R03 4%, R10 5%, R07 2%, R08 3%, R17 3%) plus 1% of R
NOCs, and `process_return_file` applies it in one transaction. Each step runs in its own process
so its peak RSS is its own; prints wall time and peak RSS per step and checks the outcome.
Target: processing under 20 s on SQLite and on PostgreSQL, and within 5x of the floor (issue 17):
a process that reads the file and does, per return or NOC, one indexed look-up of the original
entry by its trace number and one update of its payment (`step_floor`, run after `process`).
Smaller runs for a quick look: --entries 100000 --returns 10000.

Where the time goes (issue 17 part 2; cProfile with a CPU clock, 20,000 returns against 200,000
entries, SQLite): 14.3 s CPU in `process_return_file`, of which applying the returns 10.4 s:
scheduling the re-presentments 7.0 s (the debit rules' verdicts 4.8 s: the coverage standing of
every returned policy 3.3 s through `policy_facts`, authorizations 0.9 s), SQLAlchemy rendering
the expanding IN lists of those look-ups about 3.6 s, `plan_returns` 1.1 s, the banking calendar
about 1.5 s (the same few dates asked for 45,000 times); reading the file 2.1 s.
Changed: the banking-day arithmetic is memoized (nacha.calendar). Measured, SQLite: 1,000,000
entries, 100,000 returns + 1,000 NOCs: process 19.5 s, floor 1.7 s, 11.5x (before the calendar
change); 100,000 entries, 10,000 returns: 1.9 s -> 1.7 s, 10.5x -> 10.4x.

Issue 17 part 3 (section timers and py-spy, CPU seconds; the machine's 2 cores were shared, so
wall times varied by up to 2x from run to run: CPU is the steadier guide). Before, 1,000,000
entries, 100,000 returns, SQLite: process 24.9 s wall / 16.6 s CPU, floor 2.25 s / 1.32 s: 11.1x
(CPU 12.5x). Where the CPU went (section timers, 200,000 entries, 20,000 returns: 3.1 s): the
re-presentments 1.47 s, of which the debit rules' verdicts 0.76 s (the coverage standing of each
returned policy, `policy_facts` + `assess_policy`, 0.42 s; authorization days 0.16 s) and the
cents owed 0.23 s; inserting the return, event and review rows through SQLAlchemy's executemany
0.35 s; the look-up of the originals 0.21 s; `plan_returns` 0.15 s; the rest in the
re-presentments' INSERT ... SELECT, the payments' new states, reading the file and the commit.
Changed (batch/collect/returns.py):
- the coverage rule is asked only of the policies one SQL statement cannot vouch for
  (`coverage.policies_past_due_unclear`: a policy with no month past its due date unpaid or with a
  payment returned is one `assess_policy` finds ok, pending activation or at risk, where
  `coverage_allows` allows any re-presentment); the others take `debit_guard.verdicts` whole;
  tests/integration/test_returns_set_based.py runs random ledgers both ways and checks the SQL
  against the rule;
- a candidate's authorization day is loaded only when the reinitiation limit would refuse it
  were every prior return counted (a later authorization counts fewer, and fewer never refuse
  where more allow), and the limit is asked once per distinct set of returns;
- the return, event and review rows go in by `db.bulk_insert` (driver executemany / COPY);
- the cents still owed per premium month are summed in SQL;
- SQLite id lists are one JSON parameter (`db.in_set`), not a bind name per id;
- PostgreSQL: no JIT (then `SET LOCAL jit = off` in the file's transaction; now off on every connection, `db.make_engine`): a long `= ANY` list is
  estimated at the whole table and each chunk's look-up paid a ~0.25 s JIT compile (200,000
  entries, 20,000 returns: time in SQL statements 8.9 s -> 6.2 s).
After, same size, SQLite: process 17.3 s wall / 12.3 s CPU, floor 2.0 s / 1.4 s: 8.7x (CPU
8.8x), peak RSS 163 MB. PostgreSQL, same size (tests running beside it at low priority): before
process 83.6 s (14.9 s CPU here), floor 25.3 s: 3.3x (CPU 7.2x); after 64.4 s (9.4 s CPU), floor
20.8 s: 3.1x (CPU 4.5x), peak RSS 165 MB; the 20 s target is missed there: most of the time is the
server's (at 200,000 entries: the re-presentments' INSERT ... SELECT with its foreign-key checks,
the payments' new states by a sequential scan of `= ANY` ids, the look-up of the originals). Left for the 5x target (CPU, after): the re-presentments' INSERT ...
SELECT and the payment_returns rows (about 1.3 s and 0.9 s in the driver: index upkeep of rows
the floor does not write), reading the file (~1.5 s, nacha.reader), `plan_returns` and the
per-line Python of applying them (~2 s), the look-up of the originals (~1 s), the payments' new
states (~0.7 s), the commit (~0.7 s): no single piece is more than a tenth.

2026-12-05, evening, a quiet machine, default sizes (SQL timed per statement by an engine event,
plans by auto_explain): SQLite process 9.2 s (CPU 8.9 s), floor 1.3 s: 7.1x (CPU 8.3x), 163 MB.
PostgreSQL process 43.1 s, floor 8.1 s: 5.3x; 22.3 s of it was one statement run 40 times, the
look-up of earlier R01/R09 returns (`debit_guard.prior_returns`): psycopg prepares a statement run
five times, PostgreSQL then chose a generic plan that scanned the file's new payment_returns rows
(no statistics yet) and compared each payment's member with the 2,000 bound members one by one.
The file's transaction now plans every statement with its values (`db.custom_plans`: the bound
lists become constants, looked up through a hash): that statement 22.3 s -> 3.2 s; process 33.2 s,
floor 8.5 s: 3.9x (CPU 2.9x), 164 MB. (The same setting on every connection made originate and the
imports 20-40% slower at 100,000 on bench_ledger: kept to returns.) The 20 s target is still
missed on PostgreSQL: the re-presentments' INSERT 4 s (foreign keys, eight indexes), the look-ups
of payments by account 3 s, the payments' new states 2 s, the debit screen's owed cents 2 s.

2026-12-06 (after migrations 0018, SQLite's CHECKs of value lists as equalities, and 0019, no second
foreign key from a pull to its premium; one read of each debit's re-presentments): SQLite process
8.7 s, floor 1.3 s: 6.9x (CPU 8.4x), 163 MB; PostgreSQL 29.0 s, floor 7.2 s: 4.0x (CPU 4.3x),
165 MB. On SQLite (py-spy) no piece is a tenth of the time: the originals' look-up (a join per
trace, 0.8 s, mostly SQLite stepping it), the re-presentments' INSERT ... SELECT (0.8 s for 75,000:
nine indexes and three foreign keys per row), the return rows' load (0.7 s), `plan_returns` 0.5 s,
reading the file 0.7 s, the cents still owed 0.4 s, the commit 0.6 s. A larger page cache
(256 MB) or memory-mapped reads (1 GB): no gain (8.4 -> 8.6-8.7 s), not kept.
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

FILE_DATE = date(2026, 12, 1)  # a Tuesday: effective 2026-12-02
PROCESSED_ON = date(2026, 12, 3)
KEY = bytes(range(32))  # a throwaway benchmark key, never used for real data
ROUTINGS = ("011000015", "021000021", "026009593", "011401533", "091000019")
ODFI = "011000015"
CODES = (("R01", 70), ("R09", 5), ("R02", 8), ("R03", 4), ("R10", 5), ("R07", 2), ("R08", 3), ("R17", 3))


def _keyring():
    from batch.store.crypto import Keyring

    return Keyring([KEY])


def _account(i: int) -> str:
    return f"{(i * 7919) % 10**10 + 10**9:010d}"


def step_load(url: str, n: int, accounts: int) -> dict:
    from sqlalchemy import insert

    from batch.store.db import make_engine, upgrade
    from batch.store.models import AutopayMandate, BankAccount, FileEntry, NachaFile, NachaFileContent, Payment, Premium
    from batch.rules.premium_calendar import due_date

    upgrade(url)
    kr = _keyring()
    engine = make_engine(url)
    t0 = time.perf_counter()
    now = datetime(2026, 11, 30, 15, tzinfo=timezone.utc)
    month = date(2027, 1, 1)
    due = due_date(month)
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(0, accounts, chunk):
            rows = []
            for i in range(start, min(start + chunk, accounts)):
                acct, routing = _account(i), ROUTINGS[i % len(ROUTINGS)]
                rows.append({"id": i + 1, "routing_number": routing, "account_number_enc": kr.encrypt_account(acct),
                             "account_hash": kr.account_hash(routing, acct), "last4": acct[-4:],
                             "account_type": "checking" if i % 4 else "savings", "holder_name": f"MEMBER {i}",
                             "status": "active", "validation_result": "unvalidated", "created_at": now,
                             "updated_at": now})
            conn.execute(insert(BankAccount), rows)
            conn.execute(insert(AutopayMandate), [{
                "member_id": f"M{i:09d}", "plan_id": "HLTH-1", "bank_account_id": i + 1, "channel": "web",
                "authorized_at": now, "status": "active", "active_key": f"M{i:09d}|HLTH-1", "created_at": now,
                "updated_at": now} for i in range(start, min(start + chunk, accounts))])
        conn.execute(insert(NachaFile), [{"id": 1, "file_date": FILE_DATE, "file_id_modifier": "A",
                                          "file_name": "ACH-20261201-A.ach", "sha256": "0" * 64,
                                          "batch_count": 1, "entry_count": n, "total_debit_cents": 0,
                                          "total_credit_cents": 0, "state": "sent", "created_at": now}])
        conn.execute(insert(NachaFileContent), [{"file_id": 1, "content_enc": b"x"}])
        for start in range(0, n, chunk):
            idx = range(start, min(start + chunk, n))
            conn.execute(insert(Premium), [{
                "id": i + 1, "member_id": f"M{i:09d}", "member_name": f"MEMBER {i}", "plan_id": "HLTH-1",
                "coverage_month": month, "amount_due_cents": 1000 + i % 90000, "subsidy": "aptc", "binder": False,
                "due_date": due, "created_at": now, "updated_at": now} for i in idx])
            conn.execute(insert(Payment), [{
                "id": i + 1, "confirmation_id": f"AP-{i + 1}", "channel": "autopay", "member_id": f"M{i:09d}",
                "plan_id": "HLTH-1", "coverage_month": month, "premium_id": i + 1, "amount_cents": 1000 + i % 90000,
                "bank_account_id": i % accounts + 1, "submitted_at": now, "sec_code": "WEB",
                "payment_type_code": "R", "originate_on": FILE_DATE, "state": "in_file", "autopay_premium_id": i + 1,
                "retry_number": 0, "created_at": now, "updated_at": now} for i in idx])
            conn.execute(insert(FileEntry), [{
                "file_id": 1, "batch_number": 1, "trace_number": f"{ODFI[:8]}{i + 1:07d}", "payment_id": i + 1,
                "amount_cents": 1000 + i % 90000, "transaction_code": "37" if i % accounts % 4 == 0 else "27",
                "sec_code": "WEB"} for i in idx])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # the rows above carry explicit ids: move the sequences past them
            for table in ("bank_accounts", "premiums", "payments", "nacha_files"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
        with engine.connect() as conn:
            conn.exec_driver_sql("COMMIT")
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"seconds": time.perf_counter() - t0}


def step_build(path: str, n: int, returns: int, accounts: int) -> dict:
    """The bank's file: `returns` returns spread over the N entries, and 1% as many NOCs."""
    from nacha import codes
    from nacha.layouts import ADDENDA_98, ADDENDA_99, BATCH_HEADER, ENTRY_COR, ENTRY_WEB, FILE_HEADER
    from nacha.routing import check_digit
    from nacha.writer import write_file

    t0 = time.perf_counter()
    rdfi = "02100002"
    step = max(1, n // returns)
    picks = [i * step for i in range(returns)]
    code_cycle = [c for c, w in CODES for _ in range(w)]
    seq = iter(range(1, 10**7))

    def ret_entries():
        for k, i in enumerate(picks):
            acct = _account(i % accounts)
            routing = ROUTINGS[(i % accounts) % len(ROUTINGS)]
            trace = f"{rdfi}{next(seq):07d}"
            rec = ENTRY_WEB.make(transaction_code="36" if (i % accounts) % 4 == 0 else "26",
                                 receiving_dfi_identification=ODFI[:8], check_digit=ODFI[8], dfi_account_number=acct,
                                 amount=1000 + i % 90000, individual_identification_number=f"M{i:09d}",
                                 individual_name=f"MEMBER {i}", payment_type_code="R", trace_number=trace)
            add = ADDENDA_99.make(return_reason_code=code_cycle[k % len(code_cycle)],
                                  original_entry_trace_number=f"{ODFI[:8]}{i + 1:07d}",
                                  original_receiving_dfi_identification=routing[:8], trace_number=trace)
            yield rec, [add]

    def noc_entries():
        for k in range(max(1, returns // 100)):
            i = picks[k] + 1  # an entry that was not returned
            acct = _account(i % accounts)
            routing = ROUTINGS[(i % accounts) % len(ROUTINGS)]
            trace = f"{rdfi}{next(seq):07d}"
            rec = ENTRY_COR.make(transaction_code="36" if (i % accounts) % 4 == 0 else "26",
                                 receiving_dfi_identification=ODFI[:8], check_digit=ODFI[8], dfi_account_number=acct,
                                 amount=0, individual_identification_number=f"M{i:09d}", individual_name="X",
                                 trace_number=trace)
            add = ADDENDA_98.make(change_code="C01", original_entry_trace_number=f"{ODFI[:8]}{i + 1:07d}",
                                  original_receiving_dfi_identification=routing[:8],
                                  corrected_data=codes.format_corrected_data("C01", account_number=f"9{k:09d}"),
                                  trace_number=trace)
            yield rec, [add]

    header = FILE_HEADER.make(immediate_destination=" " + ODFI, immediate_origin=" " + rdfi + check_digit(rdfi),
                              file_creation_date=PROCESSED_ON.strftime("%y%m%d"), file_creation_time="0600",
                              file_id_modifier="A", immediate_destination_name="HEALTH CONNECTOR",
                              immediate_origin_name="SIMULATED BANK")

    def bh(sec):
        return BATCH_HEADER.make(service_class_code="225", company_name="HEALTH CONNECTOR",
                                 company_identification="9000000001", standard_entry_class_code=sec,
                                 company_entry_description="PREMIUM", effective_entry_date="261202",
                                 originator_status_code="1", originating_dfi_identification=rdfi, batch_number=1)

    w = write_file(path, header, [(bh("WEB"), ret_entries()), (bh("COR"), noc_entries())])
    return {"seconds": time.perf_counter() - t0, "bytes": os.path.getsize(path), "records": w.records}


def step_process(url: str, path: str) -> dict:
    from sqlalchemy import func, select

    from batch.store.db import make_engine, make_sessionmaker
    from batch.store.models import Payment
    from batch.collect.returns import process_return_file

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    t0, c0 = time.perf_counter(), time.process_time()
    out = process_return_file(sessions, _keyring(), path, PROCESSED_ON)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    with sessions() as s:
        states = dict(s.execute(select(Payment.state, func.count()).group_by(Payment.state)).all())
        retries = s.scalar(select(func.count()).select_from(Payment).where(Payment.channel == "retry"))
    engine.dispose()
    return {"seconds": dt, "cpu_seconds": cpu, "status": out.status, "returns": out.returns, "applied": out.returns_applied,
            "nocs": out.nocs, "nocs_applied": out.nocs_applied, "retries": out.retries_scheduled,
            "blocked": out.accounts_blocked, "revoked": out.mandates_revoked, "review": out.review_items,
            "errors": out.errors[:5], "states": states, "retry_rows": retries}


def step_floor(url: str, path: str) -> dict:
    """The floor (issue 17): read the file, and per return or NOC one indexed look-up of its original
    entry by trace number and one update of that entry's payment, in one transaction, through the
    driver directly (sqlite3; psycopg with its pipeline, so round trips do not wait one by one).
    No checks, no decryption, no re-presentments: the cost of touching each returned row at all.
    Run after `process` (its updates touch only updated_at, so they change nothing that was checked)."""
    t0, c0 = time.perf_counter(), time.process_time()
    traces = []
    with open(path, "r", encoding="latin-1", newline="") as fp:
        for line in fp:
            if line[0] == "7" and line[1:3] in ("98", "99"):
                traces.append(line[6:21])
    stamp = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
    found = 0
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        with conn:
            for trace in traces:
                row = conn.execute("SELECT payment_id FROM file_entries WHERE trace_number = ?", (trace,)).fetchone()
                if row is not None:
                    conn.execute("UPDATE payments SET updated_at = ? WHERE id = ?",
                                 (stamp.replace(tzinfo=None).isoformat(sep=" "), row[0]))
                    found += 1
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            with conn.pipeline(), conn.cursor() as cur:
                cur.executemany("SELECT payment_id FROM file_entries WHERE trace_number = %s", [(t,) for t in traces],
                                returning=True)
                ids = []
                while True:
                    row = cur.fetchone()
                    if row is not None:
                        ids.append(row[0])
                    if not cur.nextset():
                        break
                cur.executemany("UPDATE payments SET updated_at = %s WHERE id = %s", [(stamp, i) for i in ids])
                found = len(ids)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "traces": len(traces),
            "found": found}


def _child(args) -> None:
    if args.step == "load":
        out = step_load(args.url, args.entries, args.accounts)
    elif args.step == "build":
        out = step_build(args.file, args.entries, args.returns, args.accounts)
    elif args.step == "floor":
        out = step_floor(args.url, args.file)
    else:
        out = step_process(args.url, args.file)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(step: str, args, url: str, path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--step", step, "--url", url, "--file", path,
           "--entries", str(args.entries), "--returns", str(args.returns), "--accounts", str(args.accounts)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"step {step} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--returns", type=int, default=100_000)
    ap.add_argument("--accounts", type=int, default=0, help="distinct bank accounts (default: entries / 10)")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.accounts <= 0:
        args.accounts = max(1, args.entries // 10)
    if args.step:
        _child(args)
        return

    tmp = tempfile.mkdtemp(prefix="bench-returns-")
    path = os.path.join(tmp, "RET-20261203.ach")
    dbname = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        url, dbname = create_database()
    try:
        print(f"bench_returns: {args.returns:,} returns against {args.entries:,} originated entries "
              f"({args.accounts:,} accounts) on {args.db}, python {sys.version.split()[0]}, {os.cpu_count()} cpus")
        load = _run("load", args, url, path)
        print(f"  load     {load['seconds']:7.1f} s  peak RSS {load['peak_rss_mb']:6.1f} MB  (bulk inserts, not timed "
              f"against the target)")
        build = _run("build", args, url, path)
        print(f"  build    {build['seconds']:7.1f} s  peak RSS {build['peak_rss_mb']:6.1f} MB  -> "
              f"{build['records']:,} records, {build['bytes'] / 1e6:.1f} MB (our NACHA writer)")
        proc = _run("process", args, url, path)
        print(f"  process  {proc['seconds']:7.1f} s  {proc['returns'] / proc['seconds']:>9,.0f} returns/s  peak RSS "
              f"{proc['peak_rss_mb']:6.1f} MB  (CPU {proc['cpu_seconds']:.1f} s in this process; the database "
              f"server's is not counted)")
        print(f"           {proc['applied']:,} of {proc['returns']:,} returns and {proc['nocs_applied']:,} of "
              f"{proc['nocs']:,} NOCs applied; {proc['retries']:,} re-presentments, {proc['blocked']:,} accounts "
              f"blocked, {proc['revoked']:,} mandates revoked, {proc['review']:,} for review")
        cycle = [c for c, w in CODES for _ in range(w)]
        picked = [cycle[k % len(cycle)] for k in range(args.returns)]
        expect_retry = sum(c in ("R01", "R09") for c in picked)
        expect_review = picked.count("R17")  # our own format error: failed, and on the review list
        ok = (proc["status"] == "applied" and proc["applied"] == args.returns and proc["review"] == expect_review
              and proc["retries"] == expect_retry == proc["retry_rows"] and proc["nocs_applied"] == proc["nocs"])
        print(f"  check: every return applied once, retries as expected: {'yes' if ok else 'NO ' + json.dumps(proc)}")
        floor = _run("floor", args, url, path)
        print(f"  floor    {floor['seconds']:7.1f} s  peak RSS {floor['peak_rss_mb']:6.1f} MB  (read the file; per return "
              f"and NOC one indexed look-up by trace and one update: {floor['found']:,} of {floor['traces']:,} found)")
        print(f"  process / floor = {proc['seconds'] / floor['seconds']:.1f}x (target <= 5x); "
              f"CPU {proc['cpu_seconds'] / max(floor['cpu_seconds'], 1e-9):.1f}x")
        print(f"  target: process < 20 s: {'met' if proc['seconds'] < 20 else 'MISSED'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if dbname:
            drop_database(dbname)


if __name__ == "__main__":
    main()
