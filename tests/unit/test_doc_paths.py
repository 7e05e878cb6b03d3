"""Every file the documents name exists in the repository (issue 14): the README, sample_files/README.md,
the example settings and docs/*.md. A path is a word with a folder part and a file extension
(`batch/run/nightly.py`, `tests/unit/test_golden.py`) or a bare `*.md` name; it is looked up from the
repository's root and from the document's own folder. Paths of the running system (the data
folder, /etc, placeholders such as DIR/ or <date>) are not repository files and are left out."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "sample_files" / "README.md", ROOT / "config" / "achbatch.example.toml",
        *sorted((ROOT / "docs").glob("*.md"))]
EXT = r"(?:py|md|toml|csv|ach|json|sh|j2|ini|txt)"
PATH = re.compile(rf"(?<![\w/.<>$~-])((?:[\w.@-]+/)+[\w.@-]+\.{EXT}|[\w.-]+\.md)\b")
RUNTIME = ("achbatch-data/", "achbatch-demo/", "drop/", "DIR/", "reports/", "archive/", "outbox/", "inbox/",
           "bank/", "notices/", "keys/", "d/")


def mentioned(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text) if not m.group(1).startswith(RUNTIME)}


def test_the_pattern_finds_paths_and_skips_runtime_ones():
    text = ("see `tests/unit/test_golden.py`, docs/formats.md and README.md; "
            "achbatch-data/archive/imported/x.csv, /etc/achbatch/achbatch.env, DIR/install.sh")
    assert mentioned(text) == {"tests/unit/test_golden.py", "docs/formats.md", "README.md"}


def test_every_file_the_documents_name_exists():
    missing = []
    for doc in DOCS:
        for p in sorted(mentioned(doc.read_text(encoding="utf-8"))):
            if not ((ROOT / p).exists() or (doc.parent / p).exists()):
                missing.append(f"{doc.relative_to(ROOT)}: {p}")
    assert missing == [], "\n".join(missing)


def test_readme_sections_the_documents_name_exist():
    headings = {re.sub(r"^#+\s*", "", h).strip() for h in
                re.findall(r"^#+ .*$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)}
    missing = []
    for doc in DOCS:
        for name in re.findall(r'README "([^"]+)"', doc.read_text(encoding="utf-8")):
            if name not in headings:
                missing.append(f"{doc.relative_to(ROOT)}: README \"{name}\"")
    assert missing == [], "\n".join(missing)


def test_the_readme_links_the_three_documents_and_each_has_its_sections():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    wanted = {"operations.md": ("Install", "Schedule", "Monitor", "Recover"),
              "finance.md": ("Reconciliation", "Returns", "Coverage", "The review queue"),
              "formats.md": ("premiums", "autopay", "payments", "The rejects file", "Report CSVs")}
    for name, sections in wanted.items():
        assert f"(docs/{name})" in readme, f"the README does not link docs/{name}"
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        headings = re.findall(r"^##+ (.*)$", text, re.M)
        for section in sections:
            assert any(h.startswith(section) for h in headings), f"docs/{name} has no section {section!r}"


def test_operations_says_what_to_do_for_every_exit_code():
    from jobs import exitcodes
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    recover = text.split("## Recover", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\d+)` \|(.*)$", recover, re.M)}
    codes = {exitcodes.OK, exitcodes.DATA_PROBLEMS, exitcodes.USAGE, exitcodes.LOCKED, exitcodes.TEMPFAIL}
    assert {int(c) for c in rows} == codes
    for code, row in rows.items():
        happened, todo = [c.strip() for c in row.split("|")[:2]]
        assert happened and todo, f"exit {code}: what happened and what to do are both needed"


def test_formats_lists_the_allowed_values_the_import_checks():
    """Every allowed value of the choice columns, as the import code checks them, is in docs/formats.md."""
    from batch.collect import imports
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    for kind, columns in imports.HEADERS.items():
        assert ",".join(columns) in text, f"the {kind} header is not in docs/formats.md"
    for value in ("none", "aptc", "connectorcare", "yes", "no", "checking", "savings", "web", "paper",
                  "portal", "guest", "phone", "mail"):
        assert f"`{value}`" in text, value
