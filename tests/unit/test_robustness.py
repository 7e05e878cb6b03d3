"""The reader on hostile input: arbitrary bytes and mutated valid files, through validate_file,
read_file, Reader and describe, under both profiles, raise nothing but nacha's own errors
(validate_file and describe raise nothing at all), and every issue they report carries a message.
Plus the edge files: empty, binary, missing, a directory, huge (refused by the size limit quickly)."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from examples import examples

from nacha import format_file
from nacha.describe import describe
from nacha.errors import InvalidFile, Issue, NachaError
from nacha.reader import DEFAULT_MAX_BYTES, Reader, read_file, validate_file
try:
    from nacha_strategies import debit_files
except ModuleNotFoundError:  # pytest run without the repository root on sys.path
    from nacha_strategies import debit_files

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
PROFILES = ("strict", "bank")
VALID_SAMPLES = ("debits-web-ppd-tel.ach", "returns.ach", "nocs.ach")
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
FUZZ = settings(max_examples=examples(300), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check_issues(issues):
    assert isinstance(issues, list)
    for i in issues:
        assert isinstance(i, Issue)
        assert isinstance(i.message, str) and i.message.strip(), i
        assert i.record
        assert i.line is None or (isinstance(i.line, int) and i.line >= 1)
        if i.columns is not None:
            a, b = i.columns
            assert 1 <= a <= b, i
        str(i)
        i.to_json()


def assert_only_our_errors(data: bytes):
    """Every entry point on `data`, under both profiles."""
    for profile in PROFILES:
        r = validate_file(data, profile)  # must not raise at all
        _check_issues(r.issues)

        reader = Reader(io.BytesIO(data), profile)
        try:
            for _ in reader:
                pass
        except NachaError:
            pass
        _check_issues(reader.issues)

        try:
            f = read_file(data, profile)
        except InvalidFile as exc:
            assert exc.issues
            _check_issues(exc.issues)
        else:
            assert r.issues == [] and f.issues == []

        summary, issues = describe(data, profile)  # must not raise at all
        _check_issues(issues)
        assert summary["valid"] == (not issues)
        assert (issues == []) == (r.issues == [])


# -- arbitrary bytes ------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=3000))
@example(b"")
@example(b"\n")
@example(b"\r\n\r\n")
@example(b"\x00" * 94 + b"\n")
@example(b"9" * 94 + b"\n")
@example(b"1" + b" " * 93 + b"\n")
@example(b"5" * 94 + b"\n" + b"6" * 94 + b"\n" + b"7" * 94 + b"\n" + b"8" * 94 + b"\n")
@example(b"799" + b"0" * 91 + b"\n")
@example(PNG_HEADER + bytes(range(256)))
@example(b"9\n5\n9\n")  # a batch opened after the file control, then a second file control
@example(b"9\n5\n9\n6\n")
@example(b"9\n5\n9\n7\n")
def test_arbitrary_bytes(data):
    assert_only_our_errors(data)


_RECORD_TYPES = st.sampled_from(list("156789") + ["0", "X", " "])


@FUZZ
@given(st.lists(st.tuples(_RECORD_TYPES, st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=120)),
                max_size=30))
def test_lines_that_look_like_records(rows):
    data = "".join(t + body + "\n" for t, body in rows).encode("latin-1")
    assert_only_our_errors(data)


# -- mutated valid files ----------------------------------------------------------------------------------
def _base_files():
    return [(SAMPLES / n).read_bytes() for n in VALID_SAMPLES]


BASES = _base_files()


def _split(data):
    return data.split(b"\n")


@st.composite
def mutations(draw, data: bytes):
    kind = draw(st.sampled_from([
        "flip", "insert", "delete", "swap_lines", "truncate", "crlf", "huge_line", "nul", "non_ascii",
        "duplicate_line", "drop_line", "record_type", "digits_to_letters", "many",
    ]))
    n = len(data)
    if kind == "flip":
        i = draw(st.integers(0, n - 1))
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1:]
    if kind == "insert":
        i = draw(st.integers(0, n))
        return data[:i] + draw(st.binary(min_size=1, max_size=200)) + data[i:]
    if kind == "delete":
        i = draw(st.integers(0, n - 1))
        return data[:i] + data[i + draw(st.integers(1, 200)):]
    if kind == "swap_lines":
        lines = _split(data)
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == "truncate":
        return data[:draw(st.integers(0, n - 1))]
    if kind == "crlf":
        lines = _split(data)
        for i in draw(st.lists(st.integers(0, len(lines) - 1), max_size=len(lines))):
            lines[i] += b"\r"
        return b"\n".join(lines)
    if kind == "huge_line":
        i = draw(st.integers(0, n))
        return data[:i] + draw(st.sampled_from([b"9", b"6", b" ", b"\x00", b"A"])) * draw(st.integers(95, 300_000)) + data[i:]
    if kind == "nul":
        i = draw(st.integers(0, n - 1))
        k = draw(st.integers(1, 50))
        return data[:i] + b"\x00" * k + data[i + k:]
    if kind == "non_ascii":
        i = draw(st.integers(0, n - 1))
        junk = draw(st.sampled_from(["é".encode(), "é".encode("latin-1"), "٣".encode(), "\u00a0".encode(),
                                     b"\xff\xfe", "€".encode(), b"\x1b[31m"]))
        return data[:i] + junk + data[i + len(junk):]
    if kind == "duplicate_line":
        lines = _split(data)
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
        return b"\n".join(lines)
    if kind == "drop_line":
        lines = _split(data)
        del lines[draw(st.integers(0, len(lines) - 1))]
        return b"\n".join(lines)
    if kind == "record_type":
        lines = _split(data)
        i = draw(st.integers(0, len(lines) - 1))
        if lines[i]:
            lines[i] = draw(st.sampled_from([b"1", b"5", b"6", b"7", b"8", b"9", b"0", b"x"])) + lines[i][1:]
        return b"\n".join(lines)
    if kind == "digits_to_letters":
        i = draw(st.integers(0, n - 1))
        return data[:i] + data[i:].replace(b"0", b"O", draw(st.integers(1, 3)))
    # several mutations on top of each other
    for _ in range(draw(st.integers(2, 5))):
        data = draw(mutations(data)) or b"x"
    return data


@FUZZ
@given(data=st.data())
def test_mutated_sample_files(data):
    base = data.draw(st.sampled_from(BASES))
    assert_only_our_errors(data.draw(mutations(base)))


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=debit_files(max_entries=4), data=st.data())
def test_mutated_generated_files(case, data):
    base = format_file(case.model).encode("ascii")
    assert_only_our_errors(data.draw(mutations(base)))


def test_two_files_run_together_second_one_missing_a_batch_control():
    """A bank drop of two return files concatenated, the second with its last batch control lost:
    reported, not a crash (regression: the reader dereferenced a closed batch)."""
    one = (SAMPLES / "returns.ach").read_bytes()
    lines = one.split(b"\n")
    assert lines[12][:1] == b"8"
    second = b"\n".join(ln for i, ln in enumerate(lines) if i != 12)
    assert_only_our_errors(one + second)
    assert validate_file(one + second, "bank").issues


@pytest.mark.parametrize("name", VALID_SAMPLES)
def test_every_single_byte_deletion_of_a_sample(name):
    base = (SAMPLES / name).read_bytes()
    for i in range(0, len(base), 7):
        mutated = base[:i] + base[i + 1:]
        r = validate_file(mutated, "strict")
        _check_issues(r.issues)
        assert r.issues, f"deleting byte {i} of {name} went unnoticed"


@pytest.mark.parametrize("name", VALID_SAMPLES)
def test_every_single_digit_change_of_an_entry_amount_is_caught(name):
    base = (SAMPLES / name).read_text()
    lines = base.split("\n")
    for n, ln in enumerate(lines):
        if ln[:1] == "6":
            for col in range(29, 39):  # amount, positions 30-39
                d = ln[col]
                bad = ln[:col] + str((int(d) + 1) % 10) + ln[col + 1:]
                text = "\n".join(lines[:n] + [bad] + lines[n + 1:])
                assert validate_file(text.encode(), "strict").issues, (n + 1, col + 1)


# -- edge files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_empty_file(tmp_path, profile):
    p = tmp_path / "empty.ach"
    p.write_bytes(b"")
    for src in (p, str(p), b""):
        r = validate_file(src, profile)
        assert r.issues and "empty" in r.issues[0].message
        with pytest.raises(InvalidFile):
            read_file(src, profile)
        summary, issues = describe(src, profile)
        assert issues and summary["batches"] == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_binary_file(tmp_path, profile):
    p = tmp_path / "image.ach"
    p.write_bytes(PNG_HEADER + os.urandom(4096))
    r = validate_file(p, profile)
    _check_issues(r.issues)
    assert r.issues
    assert r.issues[0].line == 1  # located
    with pytest.raises(InvalidFile):
        read_file(p, profile)


@pytest.mark.parametrize("profile", PROFILES)
def test_missing_file_is_an_issue_not_a_crash(tmp_path, profile):
    r = validate_file(tmp_path / "no-such-file.ach", profile)
    assert r.issues and r.issues[0].message
    summary, issues = describe(tmp_path / "no-such-file.ach", profile)
    assert issues


def test_directory_is_an_issue_not_a_crash(tmp_path):
    r = validate_file(tmp_path, "strict")
    assert r.issues and r.issues[0].message


def test_sparse_file_over_the_default_limit_is_refused_quickly(tmp_path):
    p = tmp_path / "huge.ach"
    with open(p, "wb") as fh:
        fh.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: no disk used
    t0 = time.monotonic()
    for profile in PROFILES:
        r = validate_file(p, profile)
        assert len(r.issues) == 1 and "limit" in r.issues[0].message
        summary, issues = describe(p, profile)
        assert issues and summary["batches"] == 0
        with pytest.raises(InvalidFile):
            read_file(p, profile)
    assert time.monotonic() - t0 < 5


def test_file_over_a_small_limit_is_refused_before_reading(tmp_path):
    p = tmp_path / "big.ach"
    with open(p, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    t0 = time.monotonic()
    r = Reader(p, "bank", max_bytes=1024 * 1024)
    assert list(r) == [] or all(type(i).__name__ == "FileEnd" for i in r)
    assert any("limit" in i.message for i in r.issues)
    assert time.monotonic() - t0 < 2


class _CountingStream(io.RawIOBase):
    """A stream of `size` bytes of one character with no line feed, made on demand, that counts
    how much the reader pulls from it."""

    def __init__(self, size: int, byte: bytes = b"0"):
        self.left = size
        self.byte = byte
        self.pulled = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = self.byte * n
        self.left -= n
        self.pulled += n
        return n


def test_one_endless_line_is_cut_off_at_the_limit():
    """A stream (not a path, so no size up front) that is one 64 MiB line: the reader must stop
    near max_bytes, not read the whole line into memory first."""
    limit = 1024 * 1024
    src = _CountingStream(64 * 1024 * 1024)
    r = Reader(io.BufferedReader(src), "bank", max_bytes=limit)
    for _ in r:
        pass
    assert any("limit" in i.message for i in r.issues)
    assert src.pulled <= limit + 1024 * 1024, f"pulled {src.pulled} bytes for a {limit}-byte limit"


def test_stream_over_the_limit_is_refused():
    limit = 10 * 95
    data = (("6" + "0" * 93 + "\n") * 50).encode()
    r = Reader(io.BytesIO(data), "bank", max_bytes=limit)
    for _ in r:
        pass
    assert any("limit" in i.message for i in r.issues)
