"""Issue 13: a name the bank lists that is not a plain file name is skipped with a review item and
a warning that shows it escaped, and the fetch goes on with the other files (before, one bad name
stopped the loop, so a good return file behind it was never fetched). Real names on the
local-folder bank and on a real OpenSSH server; a '/' cannot be made on a real file system (see
tests/unit/test_remote_names.py for it)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from batch.store.models import InboundFile, ReviewItem
from sshd import sshd_server  # noqa: F401 - fixture
from test_delivery import Env, achbatch, cli_env  # noqa: F401 - fixture

BAD = ["RET\nachbatch: forged.ach", "bad\\name.ach", "esc\x1b[31m.ach", "ctl\x01.ach"]


@pytest.mark.parametrize("bank", ["folder", "sftp"])
def test_bad_names_are_skipped_reviewed_and_the_good_file_behind_them_is_fetched(bank, request, cli_env, sessions,
                                                                                 tmp_path):
    _keyring, config = cli_env
    if bank == "sftp":
        env = Env(tmp_path, request.getfixturevalue("sshd_server"))
        cfg = config(env.bank_section())
        outgoing = env.bank / "outgoing"
    else:
        cfg = config({"transport": "folder"})
        outgoing = tmp_path / "data" / "bank" / "outgoing"
        outgoing.mkdir(parents=True)
    for i, name in enumerate(BAD):
        (outgoing / name).write_bytes(f"bad {i}\n".encode())
    (outgoing / "RET.ach").write_bytes(b"returns\n")  # sorts after "RET\n..."
    (outgoing / "ZZZ.ach").write_bytes(b"more returns\n")
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert (tmp_path / "data" / "inbox" / "RET.ach").read_bytes() == b"returns\n"
    assert (tmp_path / "data" / "inbox" / "ZZZ.ach").read_bytes() == b"more returns\n"
    assert "2 new files" in r.stdout
    # Every line of output is one line: no forged line, no control sequence, names escaped.
    assert not any(line.startswith("achbatch: forged") for line in (r.stdout + r.stderr).splitlines())
    assert "\x1b" not in r.stderr and "\x01" not in r.stderr
    assert '"RET\\nachbatch: forged.ach"' in r.stderr and '"bad\\\\name.ach"' in r.stderr
    assert '"esc\\x1b[31m.ach"' in r.stderr and "line break" in r.stderr and "path separator" in r.stderr
    with sessions() as s:
        items = list(s.scalars(select(ReviewItem).where(ReviewItem.subject == "remote_name")))
        fetched = sorted(s.scalars(select(InboundFile.remote_name)))
    assert sorted(i.subject_ref for i in items) == sorted(
        ["RET\\nachbatch: forged.ach", "bad\\\\name.ach", "esc\\x1b[31m.ach", "ctl\\x01.ach"])
    assert {i.kind for i in items} == {"bad_remote_name"} and all(i.status == "open" for i in items)
    assert fetched == ["RET.ach", "ZZZ.ach"]
    # Again: the same warnings, no second review item, nothing fetched twice.
    r = achbatch(cfg, "returns", "fetch")
    assert r.returncode == 1 and "0 new files" in r.stdout
    with sessions() as s:
        assert len(list(s.scalars(select(ReviewItem).where(ReviewItem.subject == "remote_name")))) == len(BAD)
