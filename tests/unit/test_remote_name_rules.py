"""Names the bank lists are used as file names only when they are plain file names
(batch.rules.names.remote_name_problem); any other is quoted escaped (escape_name)."""
from __future__ import annotations

import pytest

from batch.rules.names import escape_name, remote_name_problem


@pytest.mark.parametrize("name", ["RET.ach", "ACH-20261201-A.ach", "r\u00e9sum\u00e9.ach", "a" * 255, ".hidden",
                                  "x y.ach", "\u00e9" * 127])
def test_plain_names_pass(name):
    assert remote_name_problem(name) is None


@pytest.mark.parametrize("name, why", [
    ("../etc/passwd", "path separator"), ("a/b.ach", "path separator"), ("a\\b.ach", "path separator"),
    ("a\x00b", "NUL"), ("RET\nFAKE.ach", "line break"), ("RET\r.ach", "line break"),
    ("esc\x1b[31m.ach", "control character"), ("tab\t.ach", "control character"),
    ("\u202eftp.ach", "control character"), (".", "'.'"), ("..", "'.'"), ("", "empty"),
    ("a" * 256, "256 bytes"), ("\u00e9" * 128, "256 bytes"),
])
def test_other_names_are_refused_with_the_reason(name, why):
    problem = remote_name_problem(name)
    assert problem is not None and why in problem


def test_escape_name_keeps_a_log_line_one_line_and_inert():
    shown = escape_name("RET\nachbatch: forged line\x1b[2J\u202e\\x")
    assert shown == "RET\\nachbatch: forged line\\x1b[2J\\u202e\\\\x"
    assert shown.isascii() and shown.isprintable()
    long = escape_name("a" * 500, limit=50)
    assert long.startswith("a" * 50) and long.endswith("(450 more)")
