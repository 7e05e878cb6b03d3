"""Bank files are read as banks write them (issue 16): under the bank profile an Effective Entry Date
of zeros on a batch of returns or NOCs, and an addenda 98/99 trace number other than its entry's, are
warnings (shown by validate, inspect and returns process, recorded with the file), not errors: the
return is matched by its original trace and applied. The strict profile rejects them; structural
rules (one return addenda per entry, a dishonored return's transaction code) stay errors."""
from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from batch.collect.returns import ReturnPolicy
from batch.store.models import Payment, ReturnFile
from jobs.cli import cli
from nacha.reader import validate_file

from test_returns import RETURN_DAY, World, cli_env  # noqa: F401  (fixture)


def _as_moov_writes_it(text: str) -> str:
    """A bank's return file with moov-io/ach's field defects: the batch's Effective Entry Date
    '000000', the addenda 99 trace number not the return entry's."""
    lines = text.split("\n")
    out = []
    for line in lines:
        if line.startswith("5"):
            line = line[:69] + "000000" + line[75:]
        elif line.startswith("799"):
            line = line[:79] + "987654320000001" + line[94:]
        out.append(line)
    return "\n".join(out)


def test_a_return_file_with_moov_field_defects_is_applied_with_warnings(cli_env, sessions, tmp_path):  # noqa: F811
    w = World(sessions, cli_env, tmp_path)
    m = w.member()
    o = w.originate()
    path = w.write(_as_moov_writes_it(w.bank.returns([(o[m], "R01")], RETURN_DAY)), "RET-moov.ach")
    strict, bank = validate_file(path, "strict"), validate_file(path, "bank")
    assert sorted((i.record, i.field) for i in strict.issues) == [("addenda_99", "trace_number"),
                                                                  ("batch_header", "effective_entry_date")]
    assert bank.issues == [] and sorted((i.record, i.field, i.line) for i in bank.warnings) == [
        ("addenda_99", "trace_number", 4), ("batch_header", "effective_entry_date", 2)]
    run = CliRunner()
    r = run.invoke(cli, ["validate", "--profile", "bank", str(path)])
    assert r.exit_code == 0 and "valid" in r.output and "2 warnings" in r.output and "warning: " in r.output
    assert run.invoke(cli, ["validate", "--profile", "strict", str(path)]).exit_code == 1
    r = run.invoke(cli, ["inspect", "--profile", "bank", "--json", str(path)])
    assert r.exit_code == 0, r.output
    warned = json.loads(r.output)["warnings"]
    assert sorted(x["field"] for x in warned) == ["effective_entry_date", "trace_number"]
    # returns process: applied (matched by the original trace), the warnings shown and recorded
    r = run.invoke(cli, ["returns", "process", str(path), "--date", RETURN_DAY.isoformat()])
    assert r.exit_code == 0, r.output
    assert "applied: 1 of 1 return," in r.output
    assert r.output.count("warning: RET-moov.ach:") == 2
    assert [p.state for p in w.payments(m)][0] == "returned"
    with sessions() as s:
        rf = s.scalars(select(ReturnFile)).one()
        stored = json.loads(rf.warnings)
    assert rf.status == "applied" and sorted((x["line"], x["field"]) for x in stored) == [
        (2, "effective_entry_date"), (4, "trace_number")]
    r = run.invoke(cli, ["returns", "process", str(path), "--date", RETURN_DAY.isoformat()])
    assert "duplicate" in r.output and r.output.count("warning: ") == 2  # as recorded with the file


def test_strict_profile_still_rejects_the_file_whole(cli_env, sessions, tmp_path):  # noqa: F811
    w = World(sessions, cli_env, tmp_path)
    m = w.member()
    o = w.originate()
    out = w.process(_as_moov_writes_it(w.bank.returns([(o[m], "R01")], RETURN_DAY)),
                    policy=ReturnPolicy(profile="strict"))
    assert out.status == "rejected" and len(out.errors) == 2
    assert [p.state for p in w.payments(m)] == ["in_file"]
    with sessions() as s:
        rf = s.scalars(select(ReturnFile)).one()
    assert rf.status == "rejected" and json.loads(rf.errors) and rf.warnings is None


def test_structural_rules_stay_errors_under_the_bank_profile(cli_env, sessions, tmp_path):  # noqa: F811
    w = World(sessions, cli_env, tmp_path)
    m, n = w.member(), w.member()
    o = w.originate()
    text = w.bank.returns([(o[m], "R01"), (o[n], "R01")], RETURN_DAY)
    lines = text.split("\n")
    # the second return entry replaced by a copy of the first one's addenda 99: the first entry
    # carries three (its own, the copy, the second entry's): one return addenda per entry
    first_99 = next(i for i, x in enumerate(lines) if x.startswith("799"))
    second_entry = next(i for i, x in enumerate(lines) if x.startswith("6") and i > first_99)
    doubled = lines[:second_entry] + [lines[first_99]] + lines[second_entry + 1:]
    bank = validate_file("\n".join(doubled).encode(), "bank")
    assert any("an entry carries one return addenda (99), found 3" in i.message for i in bank.issues), \
        [str(i) for i in bank.issues] + doubled
    # a forward batch (no returns) with an Effective Entry Date of zeros: still an error
    forward = w.outbox.glob("*.ach").__next__().read_text().split("\n")
    forward = [x[:69] + "000000" + x[75:] if x.startswith("5") else x for x in forward]
    r = validate_file("\n".join(forward).encode(), "bank")
    assert [(i.record, i.field) for i in r.issues] == [("batch_header", "effective_entry_date")] * \
        sum(1 for x in forward if x.startswith("5"))
    # a dishonored return (R68) on an entry with a forward code (27): rejected
    dis = [x[:3] + "R68" + x[6:] if x.startswith("799") else (x[:1] + "27" + x[3:] if x.startswith("6") else x)
           for x in lines]
    r = validate_file("\n".join(dis).encode(), "bank")
    assert any("a dishonored or contested return carries a return transaction code" in i.message
               for i in r.issues)
