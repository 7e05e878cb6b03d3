"""Speed and memory of the NACHA writer and reader, against plain-Python floors measured in the
same run.

    python benchmarks/bench_nacha.py [--entries N] [--batch-size B] [--keep DIR]

Generates N WEB debit entries (valid routing check digits, ascending traces), then, each phase in
its own fresh process so that its peak RSS is its own:
  write        our FileWriter (records built with the layout's `make`, every check on) -> file
  read         our Reader in the strict profile: validate every record, streaming, yielding every item
               (entries of clean runs are checked column by column and parse their fields when
               first asked for)
  read-fields  the same, and the caller asks every entry for its parsed record (every field sliced
               and converted): what a consumer that reads every field pays; no target, shown so
               the lazy parsing is not mistaken for free
  floor-write  the same values formatted with plain f-strings and ''.join into a file
  floor-read   the same file's lines sliced into their fields, no checks
and then `achbatch validate` of the file as a person runs it against its floor, a process that reads
the file, slices every entry's fields and sums the amounts and routing numbers (both timed from
outside, process start included, best of --validate-rounds, default 3).
Measured (1,000,000 entries, 95 MB, best of three, issue 17 part 2): main 0.791 s, this branch
0.768 s, the floor 0.923 s: 0.86x before and 0.83x after (target <= 1.15x). Start-up: `achbatch
validate` imports click and the NACHA reader only (0.14 s); `import nacha` no longer loads the
writer, and the rest of achbatch (SQLAlchemy, settings) is never imported by it.
Prints entries per second, wall seconds and peak RSS for each, and the ratios to the floors.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ODFI = "02100002"
SEED_ROUTINGS = 997  # distinct RDFI routing numbers cycled through


def _routing(i: int) -> tuple[str, str]:
    from nacha.routing import check_digit

    first8 = f"{(i * 7919 + 1100000) % 100000000:08d}"
    return first8, check_digit(first8)


def _values(n: int):
    """Per-entry values (generated lazily, the same for every phase)."""
    routings = [_routing(i) for i in range(SEED_ROUTINGS)]
    for i in range(n):
        rdfi, cd = routings[i % SEED_ROUTINGS]
        yield (
            "27" if i % 3 else "37",
            rdfi,
            cd,
            f"{(i * 104729) % 10**12:012d}",
            1000 + (i * 37) % 500000,
            f"M{i:09d}",
            f"MEMBER {i % 100000}",
            "S",
            f"{ODFI}{i + 1:07d}",
        )


def _headers():
    from nacha.layouts import BATCH_HEADER, FILE_HEADER

    fh = FILE_HEADER.make(
        immediate_destination=" 021000021", immediate_origin="1234567890",
        file_creation_date="261130", file_creation_time="2300", file_id_modifier="A",
        immediate_destination_name="BENCH BANK", immediate_origin_name="HEALTH CONNECTOR",
    )
    bh = BATCH_HEADER.make(
        service_class_code="225", company_name="HEALTH CONNECT", company_identification="1234567890",
        standard_entry_class_code="WEB", company_entry_description="PREMIUM",
        effective_entry_date="261201", originator_status_code="1", originating_dfi_identification=ODFI,
        batch_number=1,
    )
    return fh, bh


def phase_write(path: str, n: int, batch_size: int) -> dict:
    from nacha.layouts import ENTRY_WEB
    from nacha.writer import FileWriter

    make = ENTRY_WEB.make
    fh, bh = _headers()
    t0 = time.perf_counter()
    with open(path, "w", encoding="ascii", newline="\n", buffering=1 << 20) as sink:
        w = FileWriter(sink, fh, name=path)
        in_batch = 0
        for tc, rdfi, cd, acct, amt, ind_id, name, ptc, trace in _values(n):
            if in_batch == 0:
                w.start_batch(bh)
            w.add_entry(make(
                transaction_code=tc, receiving_dfi_identification=rdfi, check_digit=cd,
                dfi_account_number=acct, amount=amt, individual_identification_number=ind_id,
                individual_name=name, payment_type_code=ptc, trace_number=trace,
            ))
            in_batch += 1
            if in_batch == batch_size:
                w.end_batch()
                in_batch = 0
        if in_batch:
            w.end_batch()
        w.finish()
    return {"seconds": time.perf_counter() - t0}


def phase_floor_write(path: str, n: int, batch_size: int) -> dict:
    """Plain f-strings and ''.join, no checks, no derived fields beyond what a line needs."""
    t0 = time.perf_counter()
    with open(path, "w", encoding="ascii", newline="\n", buffering=1 << 20) as sink:
        chunk = []
        for tc, rdfi, cd, acct, amt, ind_id, name, ptc, trace in _values(n):
            chunk.append(f"6{tc}{rdfi}{cd}{acct:<17}{amt:010d}{ind_id:<15}{name:<22}{ptc:<2}0{trace}\n")
            if len(chunk) == 10000:
                sink.write("".join(chunk))
                chunk.clear()
        sink.write("".join(chunk))
    return {"seconds": time.perf_counter() - t0}


def phase_read(path: str) -> dict:
    from nacha.reader import Reader

    t0 = time.perf_counter()
    r = Reader(path, "strict")
    entries = 0
    for _item in r:
        pass
    entries = r.summary.entries
    return {"seconds": time.perf_counter() - t0, "entries": entries, "issues": len(r.issues),
            "first_issue": str(r.issues[0]) if r.issues else None}


def phase_read_fields(path: str) -> dict:
    from nacha.reader import EntryItem, Reader

    t0 = time.perf_counter()
    r = Reader(path, "strict")
    for item in r:
        if isinstance(item, EntryItem):
            item.record
    return {"seconds": time.perf_counter() - t0, "entries": r.summary.entries, "issues": len(r.issues)}


def phase_floor_read(path: str) -> dict:
    """Slice every line into its fields (the entry layout's 11 fields), nothing else."""
    t0 = time.perf_counter()
    count = 0
    with open(path, "r", encoding="latin-1", newline="") as fp:
        for line in fp:
            fields = (line[0:1], line[1:3], line[3:11], line[11:12], line[12:29], line[29:39],
                      line[39:54], line[54:76], line[76:78], line[78:79], line[79:94])
            count += 1
    return {"seconds": time.perf_counter() - t0, "lines": count}


def phase_floor_slice(path: str) -> dict:
    """The `achbatch validate` floor: read the file, slice every entry's fields, sum the amounts and
    the routing numbers (run as its own process: the caller times it with the process start)."""
    amounts = routings = entries = 0
    with open(path, "r", encoding="latin-1", newline="") as fp:
        for line in fp:
            if line[0] == "6":
                fields = (line[1:3], line[3:11], line[11:12], line[12:29], line[29:39], line[39:54], line[54:76],
                          line[76:78], line[78:79], line[79:94])
                amounts += int(fields[4])
                routings += int(fields[1])
                entries += 1
    return {"entries": entries, "amounts": amounts, "routings": routings}


def _achbatch() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "achbatch")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "jobs"]


def _timed(cmd: list[str], ok=(0,)) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode not in ok:
        sys.exit(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return dt


def validate_rounds(path: str, rounds: int) -> tuple[float, float]:
    """Best of `rounds` of `achbatch validate FILE` and of the slicing floor, each a process of its
    own timed from here (process start included), alternating so that load hits both alike."""
    ours, floor = [], []
    floor_cmd = [sys.executable, os.path.abspath(__file__), "--phase", "floor-slice", "--path", path]
    for _ in range(rounds):
        floor.append(_timed(floor_cmd))
        ours.append(_timed(_achbatch() + ["validate", path]))
    return min(ours), min(floor)


def _child(args) -> None:
    if args.phase == "write":
        out = phase_write(args.path, args.entries, args.batch_size)
    elif args.phase == "floor-write":
        out = phase_floor_write(args.path, args.entries, args.batch_size)
    elif args.phase == "read":
        out = phase_read(args.path)
    elif args.phase == "read-fields":
        out = phase_read_fields(args.path)
    elif args.phase == "floor-slice":
        out = phase_floor_slice(args.path)
    else:
        out = phase_floor_read(args.path)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run(phase: str, path: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--path", path,
           "--entries", str(args.entries), "--batch-size", str(args.batch_size)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=10_000, help="entries per batch (default 10000)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per phase; the best is reported")
    ap.add_argument("--keep", help="folder to keep the generated files in")
    ap.add_argument("--validate-rounds", type=int, default=3,
                    help="rounds of `achbatch validate` against its slicing floor (best of; 0: skip)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        _child(args)
        return

    d = args.keep or tempfile.mkdtemp(prefix="bench-nacha-")
    ours = os.path.join(d, "ours.ach")
    floor = os.path.join(d, "floor.txt")
    n = args.entries
    print(f"bench_nacha: {n:,} WEB debit entries, {args.batch_size:,} per batch, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus, {date.today().isoformat()}")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for phase, path in (("floor-write", floor), ("write", ours), ("floor-read", ours), ("read", ours),
                            ("read-fields", ours)):
            r = _run(phase, path, args)
            if phase not in best or r["seconds"] < best[phase]["seconds"]:
                best[phase] = r
    size_mb = os.path.getsize(ours) / 1e6
    for phase in ("floor-write", "write", "floor-read", "read", "read-fields"):
        r = best[phase]
        print(f"  {phase:<12} {r['seconds']:7.3f} s  {n / r['seconds']:>12,.0f} entries/s  "
              f"peak RSS {r['peak_rss_mb']:7.1f} MB")
    rd = best["read"]
    if rd.get("issues"):
        print(f"  WARNING: the reader reported {rd['issues']} issues, first: {rd['first_issue']}")
    if rd.get("entries") != n:
        print(f"  WARNING: the reader counted {rd.get('entries')} entries, not {n:,}")
    print(f"  file size {size_mb:.1f} MB")
    print(f"  write / floor-write = {best['write']['seconds'] / best['floor-write']['seconds']:.2f}x (target <= 1.5x)")
    print(f"  read+validate / floor-read = {best['read']['seconds'] / best['floor-read']['seconds']:.2f}x (target <= 1.5x)")
    print(f"  read+validate+every field / floor-read = {best['read-fields']['seconds'] / best['floor-read']['seconds']:.2f}x (no target)")
    print(f"  read+validate peak RSS = {best['read']['peak_rss_mb']:.1f} MB (target < 200 MB)")
    if args.validate_rounds:
        ours_s, floor_s = validate_rounds(ours, args.validate_rounds)
        print(f"  achbatch validate {ours_s:.3f} s / slicing floor {floor_s:.3f} s (both processes, start included, "
              f"best of {args.validate_rounds}) = {ours_s / floor_s:.3f}x (target <= 1.15x)")
    if not args.keep:
        for p in (ours, floor):
            os.unlink(p)
        os.rmdir(d)


if __name__ == "__main__":
    main()
