"""The HTML report in a real browser: headless Chromium (Debian's `chromium`; scripts/test.sh
installs it) loads the returns report from disk, and the test checks from the rendered DOM that the
tables and the chart are there, and from a screenshot that the chart's bars were actually painted
in their colours. In CI (env CI set) a missing Chromium fails the test; elsewhere it is skipped."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import date
from pathlib import Path

import pytest

from batch.report.reports import _PALETTE, render_html, returns_report

from test_returns import RETURN_DAY, World

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = "Debian's chromium is not installed (scripts/test.sh installs it: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return exe


def _run(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=120)


def _png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels = []
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels += [tuple(line[i:i + 3]) for i in range(0, stride, bpp)]
        prev = line
    return width, height, pixels


def test_returns_report_renders_tables_and_chart_in_chromium(sessions, keyring, tmp_path):
    exe = _chromium()
    w = World(sessions, keyring, tmp_path)
    members = [w.member() for _ in range(6)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R01"), (o[members[1]], "R01"), (o[members[2]], "R10")], RETURN_DAY))
    w.process(w.bank.returns([(o[members[3]], "R02")], date(2026, 12, 4), modifier="B"), d=date(2026, 12, 4))
    rep = returns_report(sessions, date(2026, 12, 10))
    page = tmp_path / "returns.html"
    page.write_text(render_html(rep), encoding="utf-8")

    dom = _run(exe, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    html = dom.stdout.decode()
    table = re.search(r'<table id="returns-table">(.*?)</table>', html, re.S).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    assert len(re.findall(r"<tr>", body)) == 4  # one row per return
    for m in members[:4]:
        assert m in table
    assert re.search(r'<table id="returns-extra-1">.*?unauthorized.*?OVER THRESHOLD', html, re.S)
    bars = re.findall(r'<rect class="bar" data-code="(R\d\d)" data-day="([0-9-]+)" data-count="(\d+)"', html)
    assert sorted(bars) == [("R01", "2026-12-03", "2"), ("R02", "2026-12-04", "1"), ("R10", "2026-12-03", "1")]
    assert html.count('role="alert"') == len(rep.warnings) == 3

    shot = tmp_path / "shot.png"
    res = _run(exe, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,1400", page.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr.decode(errors="replace")[-2000:]
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1400, 1400)
    counts: dict[tuple[int, int, int], int] = {}
    for p in pixels:
        counts[p] = counts.get(p, 0) + 1
    # each return code's bar colour (codes sorted: R01, R02, R10) is painted somewhere on the page
    for colour in _PALETTE[:3]:
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 20, f"no {colour} bar pixels in the screenshot"
    # R01 (two returns on 12-03) is drawn taller than R10 (one): twice the painted area, within rounding
    r01 = counts[tuple(int(_PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))]
    r10 = counts[tuple(int(_PALETTE[2][i:i + 2], 16) for i in (1, 3, 5))]
    assert r01 > 1.5 * r10


def _dom_tables(html: str) -> dict[str, dict]:
    """{table id: {"section": section id or None, "columns": [data-col], "headings": [text], "rows": n,
    "totals": [tfoot cell text]}} of the rendered DOM."""
    out = {}
    for sec_attrs, body in re.findall(r'<section class="report-table"([^>]*)>(.*?)</section>', html, re.S):
        sec = re.search(r'id="([^"]+)"', sec_attrs)
        tid = re.search(r'<table id="([^"]+)">', body).group(1)
        cols = re.findall(r'<th scope="col" data-col="([^"]+)">([^<]*)</th>', body)
        tbody = re.search(r"<tbody>(.*?)</tbody>", body, re.S).group(1)
        tfoot = re.search(r"<tfoot>(.*?)</tfoot>", body, re.S)
        out[tid] = {"section": sec.group(1) if sec else None, "columns": [c for c, _h in cols],
                    "headings": [h for _c, h in cols], "rows": 0 if "(none)" in tbody else tbody.count("<tr>"),
                    "totals": re.findall(r"<td[^>]*>([^<]*)</td>", tfoot.group(1)) if tfoot else None}
    return out


def _dollars_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def test_html_reports_show_review_items_and_their_totals_match_the_csvs_in_chromium(sessions, keyring, tmp_path):
    """Each report (returns, coverage, reconciliation) rendered by Chromium: every table is there
    with its rows, the open review items section of the returns report lists each item, the member
    name stands next to the member id, and every money total shown equals the sum of that column in
    the table's CSV (the main CSV or the section's own CSV)."""
    import csv
    from decimal import Decimal

    from sqlalchemy import select

    from batch.collect.coverage import assess_coverage
    from batch.report.reports import coverage_report, extra_csv_path, reconciliation_report, write_report
    from batch.store.models import Payment, ReviewItem

    exe = _chromium()
    w = World(sessions, keyring, tmp_path)
    members = [w.member(amount=10000 + i * 137) for i in range(6)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R01"), (o[members[1]], "R02"), (o[members[2]], "R10")], RETURN_DAY))
    with sessions() as s, s.begin():
        for m, cents in ((members[4], 16085), (members[5], 7))  :
            pid = s.scalar(select(Payment.id).where(Payment.member_id == m))
            s.add(ReviewItem(kind="debit_stopped", subject="payment", payment_id=pid, amount_cents=cents,
                             detail=f"review {m}", status="open"))
    assess_coverage(sessions, date(2026, 12, 24))
    reports = [returns_report(sessions, date(2026, 12, 10)), coverage_report(sessions, date(2026, 12, 24)),
               reconciliation_report(sessions, keyring, date(2026, 12, 10))]
    for rep in reports:
        main = tmp_path / "out" / f"{rep.kind}.csv"
        write_report(rep, "csv", main)
        page = write_report(rep, "html", tmp_path / "out" / f"{rep.kind}.html")
        dom = _run(exe, tmp_path / f"profile-{rep.kind}", "--dump-dom", page.as_uri())
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        tables = _dom_tables(dom.stdout.decode())
        sources = [(f"{rep.kind}-table", main)] + [
            (tid, extra_csv_path(main, t["section"][len(rep.kind) + 1:]))
            for tid, t in tables.items() if t["section"]]
        assert len(tables) == 1 + len(rep.extra) == len(sources)
        for tid, path in sources:
            t = tables[tid]
            rows = list(csv.DictReader(path.open(newline="")))
            assert t["rows"] == len(rows), (tid, path.name)
            assert sorted(t["columns"]) == sorted(rows[0].keys() if rows else t["columns"])
            if "member_id" in t["columns"]:
                assert t["columns"].index("member_name") == t["columns"].index("member_id") + 1
                assert t["headings"][t["columns"].index("member_name")] == "Member name"
            for j, col in enumerate(t["columns"]):
                if rows and col in ("amount", "amount_owed", "debits", "returned_amount", "net", "expected_amount",
                                    "debits_control"):
                    total = sum(int(Decimal(r[col] or "0") * 100) for r in rows)
                    assert t["totals"][j] == _dollars_text(total), (tid, col)
        if rep.kind == "returns":
            review = tables[next(tid for tid, t in tables.items() if t["section"] == "returns-review")]
            assert review["rows"] == 2
            assert review["totals"][review["columns"].index("amount")] == "$160.92"
            assert tables["returns-table"]["totals"][tables["returns-table"]["columns"].index("amount")] == \
                _dollars_text(sum(o[m].entry.amount for m in members[:3]))
