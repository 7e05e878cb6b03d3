"""`achbatch inspect` and `validate` read like a person wrote them (`python -m jobs` in
subprocesses): dates as ISO dates, the company, the file's creation date and time, every entry with
`--entries` (accounts masked), and counts whose word agrees with the number ("1 batch", "1 entry",
"1 problem")."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def accounts(path: Path) -> list[str]:
    return [line[12:29].strip() for line in path.read_text().splitlines() if line.startswith("6")]


def test_inspect_shows_iso_dates_company_creation_and_masked_entries():
    f = SAMPLES / "debits-web-ppd-tel.ach"
    p = run("inspect", f, "--entries")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "from COMMONWEALTH HIX to FIRST SYNTHETIC BANK, created 2026-01-16 22:15" in out
    assert "batch 1: WEB COMMONWEALTH HIX 'PREMIUM' effective 2026-01-20, 3 entries" in out
    assert "effective 260120" not in out
    listed = [line for line in out.splitlines() if line.startswith("    batch ")]
    assert len(listed) == 10 and "10 entries:" in out
    assert "batch 1 trace 021000020000001 code 27 011000015 ****5529 $452.10 ALICE EXAMPLE" in listed[0]
    full = accounts(f)
    assert len(full) == 10 and all(len(a) > 4 for a in full)
    for a in full:
        assert a not in out
    j = json.loads(run("inspect", "--json", "--entries", f).stdout)
    assert len(j["entry_list"]) == 10 and all(e["account"].startswith("****") for e in j["entry_list"])
    assert not any(a in json.dumps(j) for a in full)
    assert "entry_list" not in json.loads(run("inspect", "--json", f).stdout)  # only when asked


def test_counts_agree_with_their_word():
    p = run("validate", SAMPLES / "invalid-entry-hash.ach")
    assert "INVALID (1 problem)" in p.stdout
    p = run("inspect", SAMPLES / "invalid-entry-hash.ach")
    assert "INVALID (1 problem):" in p.stdout
    p = run("inspect", SAMPLES / "bank-crlf.ach")
    assert re.search(r"\b1 entry\b", p.stdout) and not re.search(r"\b1 entries\b", p.stdout), p.stdout
    for f in sorted(SAMPLES.glob("*.ach")):
        for args in (("validate", f), ("inspect", f)):
            out = run(*args).stdout
            assert not re.search(r"(?<![\d,])1 (batches|entries|problems|warnings)\b", out), (args, out)
