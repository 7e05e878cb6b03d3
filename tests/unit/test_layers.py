"""The architecture, kept by a test: `jobs -> batch -> nacha`, and inside batch/ packages by concern,
each importing only those below it (DESIGN.md "Layout"; issue "One place for each thing"):

    rules     pure rules: premium calendar, money, channels, the decisions (and batch/config.py)
    store     schema, migrations, database, encryption, durable files, locks
    bank      transport, PGP, delivery, fetching the bank's files
    collect   imports, AutoPay, origination, returns, coverage, notices
    report    reports, status, metrics
    run       the nightly pipeline, the demo, settings -> services wiring

Read from the source with `ast` (nothing is imported): every `import` and `from ... import`,
function-level ones included. A new upward import fails here with the file, the line and the edge.
Also: no private name (`_x`) is imported from another module of ours."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORDER = ("rules", "store", "bank", "collect", "report", "run")
# batch/config.py (the settings model) sits with the rules: everything may read it, it reads none of them.
LEVEL = {name: i for i, name in enumerate(ORDER)} | {"config": 0}
OURS = ("nacha", "batch", "jobs")


def _modules() -> list[tuple[Path, str]]:
    out = []
    for top in OURS:
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((p, ".".join(parts)))
    return out


def _imports(path: Path, module: str):
    """(line, imported module, names) for each import of one of our packages."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in OURS:
                    yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in OURS:
                continue
            names = [a.name for a in node.names]
            if node.module is None or node.level and not node.module:
                # `from . import x`: x is a module of that package
                for n in names:
                    yield node.lineno, f"{target}.{n}", []
            else:
                yield node.lineno, target, names


def _batch_level(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[0] != "batch" or len(parts) < 2:
        return None
    name = parts[1]
    return (name, LEVEL[name]) if name in LEVEL else None


def edges() -> set[tuple[str, str]]:
    out = set()
    for path, module in _modules():
        src = _batch_level(module)
        for _line, target, _names in _imports(path, module):
            dst = _batch_level(target)
            if src and dst and src[0] != dst[0]:
                out.add((src[0], dst[0]))
    return out


def test_every_batch_module_is_in_a_package_of_its_concern():
    loose = [p.name for p in (ROOT / "batch").glob("*.py") if p.stem not in ("__init__", "config")]
    assert loose == [], f"modules outside the packages {ORDER}: {loose}"


def test_imports_point_down_only():
    wrong = []
    for path, module in _modules():
        top = module.split(".")[0]
        src = _batch_level(module)
        for line, target, _names in _imports(path, module):
            ttop = target.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: {module} imports {target}"
            if top == "nacha" and ttop != "nacha":
                wrong.append(where + " (nacha imports nothing of batch or jobs)")
            elif top == "batch" and ttop == "jobs":
                wrong.append(where + " (batch never imports jobs)")
            elif src is not None:
                dst = _batch_level(target)
                if dst is not None and dst[1] > src[1]:
                    wrong.append(where + f" ({src[0]} is below {dst[0]})")
                if src[0] == "rules" and ttop == "batch" and dst is not None and dst[0] not in ("rules", "config"):
                    wrong.append(where + " (rules are pure: they import only rules)")
    assert wrong == [], "\n".join(wrong)


def test_no_private_name_is_imported_from_another_module():
    wrong = []
    for path, module in _modules():
        if "tests" in path.parts:
            continue
        for line, target, names in _imports(path, module):
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {target}.{n}")
    assert wrong == [], "\n".join(wrong)


def test_the_allowed_edges_are_the_ones_used(capsys):
    used = edges()
    with capsys.disabled():
        print("\nbatch package edges in use:", ", ".join(f"{a}->{b}" for a, b in sorted(used)))
    assert all(LEVEL[b] <= LEVEL[a] for a, b in used)
