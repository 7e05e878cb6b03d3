"""Exit codes are defined once, in jobs/ (jobs/exitcodes.py); batch/ reports outcomes only."""
import ast
from pathlib import Path

from batch.run.outcome import Outcome
from jobs import exitcodes

ROOT = Path(__file__).resolve().parents[2]


def test_every_outcome_has_the_contract_exit_code():
    # DESIGN.md's table: 0 done, 1 data problems, 2 usage/configuration, 3 locked, 75 temporary
    assert dict(exitcodes.EXIT_CODES) == {Outcome.DONE: 0, Outcome.PROBLEMS: 1, Outcome.CONFIG: 2,
                                          Outcome.LOCKED: 3, Outcome.TEMPORARY: 75}
    assert set(exitcodes.EXIT_CODES) == set(Outcome)


def test_batch_neither_exits_nor_defines_exit_codes():
    offenders = []
    for path in sorted((ROOT / "batch").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "exit" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: sys.exit")
            if isinstance(node, ast.Name) and node.id == "SystemExit":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: SystemExit")
            # a table of outcomes to numbers: {Outcome.X: <int>, ...}
            if isinstance(node, ast.Dict) and any(
                    isinstance(k, ast.Attribute) and isinstance(k.value, ast.Name) and k.value.id == "Outcome"
                    and isinstance(v, ast.Constant) and isinstance(v.value, int)
                    for k, v in zip(node.keys, node.values)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: a table of exit codes")
    assert offenders == []
