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
