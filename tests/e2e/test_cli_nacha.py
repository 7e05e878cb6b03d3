"""End-to-end runs of `achbatch validate` and `achbatch inspect` (`python -m jobs`) in subprocesses:
exit codes, the JSON shapes of DESIGN.md's interface contract (and its extension: `warnings`, in
the shape of `errors`), warnings that leave a file valid, not-NACHA input, and account numbers never
shown in full."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"
ALL_SAMPLES = sorted(SAMPLES.glob("*.ach"))

VALIDATE_KEYS = {"file", "valid", "errors", "warnings"}
ERROR_KEYS = {"line", "columns", "record", "field", "message"}
INSPECT_KEYS = {"file", "file_id_modifier", "batches", "entries", "total_debit_cents", "total_credit_cents",
                "entry_hash", "sec_codes", "returns", "nocs"}
RETURN_KEYS = {"trace_number", "original_trace_number", "return_code", "amount_cents"}
NOC_KEYS = {"trace_number", "original_trace_number", "change_code", "corrected_data"}


def run(*args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    return subprocess.run([sys.executable, "-m", "jobs", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def run_many(arglists):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda a: run(*a), arglists))


def expected(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".ach", ".expected.json")).read_text())


def no_traceback(p):
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


# -- exit codes -------------------------------------------------------------------------------------------
def test_validate_valid_file_exits_0():
    p = run("validate", SAMPLES / "debits-web-ppd-tel.ach")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "valid" in p.stdout
    no_traceback(p)


def test_validate_all_strict_valid_samples_exit_0():
    files = [f for f in ALL_SAMPLES if expected(f)["valid"] and expected(f)["profile"] == "strict"]
    assert len(files) >= 3
    p = run("validate", *files)
    assert p.returncode == 0, p.stdout


def test_validate_bank_samples_exit_0_with_bank_and_1_with_strict():
    files = [f for f in ALL_SAMPLES if expected(f)["profile"] == "bank"]
    assert files
    assert run("validate", "--profile", "bank", *files).returncode == 0
    p = run("validate", "--json", *files)  # strict is the default
    assert p.returncode == 1
    assert [d["valid"] for d in _check_validate_json(p.stdout)] == [False] * len(files)


def test_validate_invalid_file_exits_1():
    p = run("validate", SAMPLES / "invalid-entry-hash.ach")
    assert p.returncode == 1
    assert "invalid-entry-hash.ach:7:11-20" in p.stdout  # errors say where
    no_traceback(p)


def test_validate_one_invalid_among_valid_exits_1():
    p = run("validate", SAMPLES / "debits-web-ppd-tel.ach", SAMPLES / "invalid-block-count.ach",
            SAMPLES / "returns.ach")
    assert p.returncode == 1


@pytest.mark.parametrize("args", [
    ["validate", "--profile"],  # missing option value
    ["validate", SAMPLES / "returns.ach", "--profile"],
    ["validate", "--bogus", SAMPLES / "returns.ach"],  # unknown option
    ["validate", "--profile", "lenient", SAMPLES / "returns.ach"],  # not a profile
    ["validate"],  # no file
    ["inspect"],
    ["inspect", "--bogus", SAMPLES / "returns.ach"],
    ["inspect", SAMPLES / "returns.ach", SAMPLES / "nocs.ach"],  # one file only
    ["no-such-command"],
])
def test_usage_errors_exit_2(args):
    p = run(*args)
    assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
    no_traceback(p)


def test_help_exits_0():
    for args in (["--help"], ["validate", "--help"], ["inspect", "--help"]):
        p = run(*args)
        assert p.returncode == 0 and "Usage" in p.stdout


# -- JSON shapes ------------------------------------------------------------------------------------------
def _check_validate_json(out: str) -> list:
    data = json.loads(out)
    assert isinstance(data, list)
    for item in data:
        assert set(item) == VALIDATE_KEYS
        assert isinstance(item["file"], str) and isinstance(item["valid"], bool)
        assert item["valid"] == (item["errors"] == [])  # warnings leave a file valid
        _check_located(item["errors"])
        _check_located(item["warnings"])
    return data


def _check_located(items: list) -> None:
    """Errors and warnings share one shape."""
    assert isinstance(items, list)
    for e in items:
        assert set(e) == ERROR_KEYS
        assert e["line"] is None or (type(e["line"]) is int and e["line"] >= 1)
        if e["columns"] is not None:
            assert isinstance(e["columns"], list) and len(e["columns"]) == 2
            assert all(type(c) is int for c in e["columns"]) and 1 <= e["columns"][0] <= e["columns"][1]
        assert isinstance(e["record"], str) and e["record"]
        assert e["field"] is None or isinstance(e["field"], str)
        assert isinstance(e["message"], str) and e["message"]


def _where(items: list) -> list:
    return [{k: e[k] for k in ("line", "columns", "record", "field")} for e in items]


def test_validate_json_shape_and_content_for_every_sample():
    by_profile = {}
    for f in ALL_SAMPLES:
        by_profile.setdefault(expected(f)["profile"], []).append(f)
    for profile, files in by_profile.items():
        p = run("validate", "--json", "--profile", profile, *files)
        no_traceback(p)
        data = _check_validate_json(p.stdout)
        assert [d["file"] for d in data] == [str(f) for f in files]
        for d, f in zip(data, files):
            exp = expected(f)
            assert d["valid"] == exp["valid"], f.name
            assert _where(d["errors"]) == _where(exp.get("errors", [])), f.name
            assert _where(d["warnings"]) == _where(exp.get("warnings", [])), f.name
        assert p.returncode == (0 if all(d["valid"] for d in data) else 1)


def _check_inspect_json(out: str) -> dict:
    data = json.loads(out)
    assert isinstance(data, dict)
    assert INSPECT_KEYS <= set(data), INSPECT_KEYS - set(data)
    for k in ("batches", "entries", "total_debit_cents", "total_credit_cents", "entry_hash"):
        assert type(data[k]) is int, k  # money is integer cents, never floats
    assert isinstance(data["sec_codes"], list)
    for r in data["returns"]:
        assert set(r) == RETURN_KEYS
        assert type(r["amount_cents"]) is int
    for n in data["nocs"]:
        assert set(n) == NOC_KEYS
    _check_located(data["warnings"])
    return data


@pytest.mark.parametrize("path", [f for f in ALL_SAMPLES if expected(f)["valid"]], ids=lambda f: f.name)
def test_inspect_json_matches_the_expected_summary(path):
    exp = expected(path)
    p = run("inspect", "--json", "--profile", exp["profile"], path)
    assert p.returncode == 0, p.stdout + p.stderr
    data = _check_inspect_json(p.stdout)
    assert data["file"] == str(path)
    assert {k: data[k] for k in exp["summary"]} == exp["summary"]
    assert data["valid"] is True and data["errors"] == []
    assert _where(data["warnings"]) == _where(exp.get("warnings", []))


WARNED = SAMPLES / "warning-unknown-return-code.ach"  # R99 at line 4, columns 4-6


@pytest.mark.parametrize("profile", ["strict", "bank"])
def test_validate_with_only_warnings_is_valid_and_exits_0(profile):
    t, j = run_many([["validate", "--profile", profile, WARNED], ["validate", "--json", "--profile", profile, WARNED]])
    assert t.returncode == 0, t.stdout + t.stderr
    lines = t.stdout.splitlines()
    assert lines[0].startswith(f"{WARNED}: valid (") and "1 warning)" in lines[0]
    assert lines[1] == f"  warning: {WARNED}:4:4-6: addenda_99.return_reason_code: " \
                       "unknown return reason code 'R99': well formed, but not in the return code table"
    assert len(lines) == 2
    assert j.returncode == 0, j.stdout + j.stderr
    (d,) = _check_validate_json(j.stdout)
    assert d["valid"] is True and d["errors"] == []
    assert d["warnings"] == [{"line": 4, "columns": [4, 6], "record": "addenda_99", "field": "return_reason_code",
                              "message": "unknown return reason code 'R99': well formed, but not in the return "
                                         "code table"}]


def test_validate_counts_warnings_beside_errors_and_tells_them_apart(tmp_path):
    # the malformed sample with its second return code R10 -> R48 (unknown, well formed)
    data = (SAMPLES / "invalid-malformed-return-code.ach").read_bytes()
    assert data.count(b"799R10") == 1
    f = tmp_path / "both.ach"
    f.write_bytes(data.replace(b"799R10", b"799R48"))
    t, j, mixed = run_many([["validate", f], ["validate", "--json", f], ["validate", WARNED, SAMPLES / "returns.ach"]])
    assert t.returncode == 1
    lines = t.stdout.splitlines()
    assert lines[0] == f"{f}: INVALID (1 problem; 1 warning)"
    errors = [ln for ln in lines[1:] if not ln.startswith("  warning: ")]
    warnings = [ln for ln in lines[1:] if ln.startswith("  warning: ")]
    assert len(errors) == 1 and f"{f}:4:4-6:" in errors[0] and "'R0X'" in errors[0]
    assert len(warnings) == 1 and f"{f}:8:4-6:" in warnings[0] and "'R48'" in warnings[0]
    (d,) = _check_validate_json(j.stdout)
    assert j.returncode == 1 and d["valid"] is False
    assert [(e["line"], e["field"]) for e in d["errors"]] == [(4, "return_reason_code")]
    assert [(e["line"], e["field"]) for e in d["warnings"]] == [(8, "return_reason_code")]
    assert mixed.returncode == 0, mixed.stdout  # a warning beside a clean file: still all valid


def test_inspect_shows_warnings_and_exits_0():
    t, j = run_many([["inspect", "--profile", "strict", WARNED], ["inspect", "--json", WARNED]])
    assert t.returncode == 0, t.stdout + t.stderr
    assert "  1 warning:" in t.stdout
    assert f"    warning: {WARNED}:4:4-6: addenda_99.return_reason_code: unknown return reason code 'R99'" in t.stdout
    assert "INVALID" not in t.stdout
    assert re.search(r"R99.*021000020000001", t.stdout)
    assert j.returncode == 0
    data = _check_inspect_json(j.stdout)
    assert data["valid"] is True and data["errors"] == []
    assert [(w["line"], w["columns"], w["record"], w["field"]) for w in data["warnings"]] == [
        (4, [4, 6], "addenda_99", "return_reason_code")]
    assert "R99" in data["warnings"][0]["message"]


def test_inspect_invalid_file_exits_1_and_lists_the_error():
    p = run("inspect", "--json", "--profile", "strict", SAMPLES / "invalid-malformed-return-code.ach")
    assert p.returncode == 1
    _check_inspect_json(p.stdout)
    t = run("inspect", "--profile", "strict", SAMPLES / "invalid-malformed-return-code.ach")
    assert t.returncode == 1
    assert "invalid-malformed-return-code.ach:4:4-6" in t.stdout
    no_traceback(t)


def test_inspect_text_shows_returns_and_nocs():
    t = run("inspect", SAMPLES / "returns.ach")
    assert t.returncode == 0
    for code, trace in (("R01", "021000020000001"), ("R10", "021000020000004"), ("R02", "021000020000006")):
        assert re.search(rf"{code}.*{trace}", t.stdout), t.stdout
    n = run("inspect", SAMPLES / "nocs.ach")
    assert n.returncode == 0
    for code in ("C01", "C02", "C05"):
        assert code in n.stdout


# -- not NACHA at all -------------------------------------------------------------------------------------
NOT_NACHA = {
    "image.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
    "empty.ach": b"",
    "notes.txt": b"Dear ops,\nplease find the premium file attached.\nThanks\n",
    "members.csv": b"member_id,plan_id,amount\nM1,P1,12.00\n",
    "zeros.ach": b"\x00" * 2000,
}


@pytest.mark.parametrize("profile", ["strict", "bank"])
def test_not_nacha_gets_a_located_error_and_exit_1(tmp_path, profile):
    files = []
    for name, data in sorted(NOT_NACHA.items()):
        f = tmp_path / name
        f.write_bytes(data)
        files.append(f)
    runs = [["validate", "--json", "--profile", profile, *files], ["validate", "--profile", profile, *files]]
    for f in files:
        runs.append(["inspect", "--profile", profile, f])
        runs.append(["inspect", "--json", "--profile", profile, f])
    results = run_many(runs)
    for args, p in zip(runs, results):
        assert p.returncode == 1, (args, p.returncode, p.stdout, p.stderr)
        no_traceback(p)
    data = _check_validate_json(results[0].stdout)
    for d, f in zip(data, files):
        assert d["file"] == str(f)
        assert d["valid"] is False and d["errors"], f.name
        first = d["errors"][0]
        if NOT_NACHA[f.name]:
            assert first["line"] == 1, (f.name, first)  # located on the first line
        else:
            assert "empty" in first["message"]
    for f in files:
        assert str(f) in results[1].stdout  # the text errors name the file
    for args, p in zip(runs[2:], results[2:]):
        if args[:2] == ["inspect", "--json"]:
            assert _check_inspect_json(p.stdout)["file"] == str(args[-1])


def test_missing_file_is_reported_without_a_traceback(tmp_path):
    for args in (["validate", tmp_path / "nope.ach"], ["validate", "--json", tmp_path / "nope.ach"],
                 ["inspect", tmp_path / "nope.ach"]):
        p = run(*args)
        no_traceback(p)
        assert p.returncode in (1, 2), p.returncode
        assert "nope.ach" in p.stdout + p.stderr


# -- account numbers masked -------------------------------------------------------------------------------
def _account_numbers() -> set[str]:
    """Every account number in the samples, sliced from the reference positions: entry detail
    13-29, and the account part of NOC corrected data (C01 36-52; C03 48-64; C06 36-52; C07 45-61)."""
    accounts = set()
    for f in ALL_SAMPLES:
        text = f.read_bytes().decode("latin-1").replace("\r", "")
        lines = text.split("\n") if "\n" in text[:-1] else [text[i:i + 94] for i in range(0, len(text), 94)]
        for ln in lines:
            ln = ln.ljust(94)
            if ln[0] == "6":
                accounts.add(ln[12:29].strip())
            elif ln[:3] == "798":
                part = {"C01": (35, 52), "C03": (47, 64), "C06": (35, 52), "C07": (44, 61)}.get(ln[3:6])
                if part:
                    accounts.add(ln[part[0]:part[1]].strip())
    accounts.discard("")
    return accounts


def test_account_numbers_never_appear_in_full():
    accounts = _account_numbers()
    assert "88120044791" in accounts and "4417305529" in accounts and len(accounts) >= 10
    assert all(len(a) > 4 for a in accounts)
    runs = []
    for profile in ("strict", "bank"):
        runs.append(["validate", "--profile", profile, *ALL_SAMPLES])
        runs.append(["validate", "--json", "--profile", profile, *ALL_SAMPLES])
    for f in ALL_SAMPLES:
        runs.append(["inspect", f])
        runs.append(["inspect", "--json", "--profile", "strict", f])
    results = run_many(runs)
    for args, p in zip(runs, results):
        out = p.stdout + p.stderr
        for a in accounts:
            assert a not in out, f"account number ending {a[-4:]} shown in full by {args[:3]}"
    # and the masked form keeps the last four (the C01 correction of nocs.ach)
    nocs = next(p for a, p in zip(runs, results) if a[0] == "inspect" and a[-1] == SAMPLES / "nocs.ach")
    assert "****4791" in nocs.stdout and "*****4791" not in nocs.stdout  # a fixed mask: not even the length


def test_account_numbers_masked_in_errors_about_them(tmp_path):
    # An account field with a control character: the error must still not show the number.
    line = (SAMPLES / "debits-web-ppd-tel.ach").read_bytes().split(b"\n")
    assert line[2][12:22] == b"4417305529"
    line[2] = line[2][:12] + b"4417305529\x07" + line[2][23:]
    f = tmp_path / "bad-account.ach"
    f.write_bytes(b"\n".join(line))
    for args in (["validate", f], ["validate", "--json", f], ["inspect", f], ["inspect", "--json", f]):
        p = run(*args)
        assert p.returncode == 1
        assert "4417305529" not in p.stdout + p.stderr
