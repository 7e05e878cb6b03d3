"""The NACHA reader on a file with no line feed (records run together), at two sizes: the time per
MB must stay flat (linear), against a floor of plain slicing every 94 bytes. Prints the figures.

    python benchmarks/bench_long_line.py [--mb 100 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> None:
    from nacha.reader import validate_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, nargs=2, default=[100, 200])
    args = ap.parse_args()
    record = ("6" + "2" * 93).encode("ascii")
    for mb in args.mb:
        n = mb * 1_000_000 // 94
        with tempfile.NamedTemporaryFile(suffix=".ach") as f:
            for _ in range(0, n, 10_000):
                f.write(record * min(10_000, n))
            f.flush()
            size = os.path.getsize(f.name)
            t0 = time.perf_counter()
            with open(f.name, "rb") as src:
                k = 0
                while chunk := src.read(94 << 14):
                    k += len([chunk[i:i + 94] for i in range(0, len(chunk), 94)])
            floor = time.perf_counter() - t0
            figures = []
            for profile in ("strict", "bank"):  # bank: every 94 characters cut into a record
                t0 = time.perf_counter()
                validate_file(f.name, profile)
                took = time.perf_counter() - t0
                figures.append(f"{profile} {took:6.2f} s ({took / size * 1e9:.2f} s/GB)")
            print(f"{size / 1e6:7.1f} MB, no line feed: " + ", ".join(figures)
                  + f"; slicing floor {floor:5.2f} s")


if __name__ == "__main__":
    main()
