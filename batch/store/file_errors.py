"""The located errors of a bank file rejected whole, as kept in `return_files.errors` (JSON text):
one object per error, `Issue.to_json()` (line, columns, record, field, message) plus `value` (the
raw value, masked when sensitive, as the Issue holds it) and `text`, the error as it was shown.
Rows written before hold plain strings; both read."""
from __future__ import annotations

import json
from collections.abc import Iterable

from nacha.errors import Issue

__all__ = ["dump_errors", "load_errors"]


def dump_errors(issues: Iterable[Issue]) -> str:
    """The column value for `issues`."""
    return json.dumps([{**i.to_json(), "value": i.value, "text": str(i)} for i in issues])


def load_errors(stored: str | None, file: str) -> tuple[list[str], list[Issue]]:
    """The column value as (the errors as shown, the located Issues of file `file`). An old row's
    plain string is shown as it is and has no Issue: its location was never stored apart."""
    shown: list[str] = []
    issues: list[Issue] = []
    for e in json.loads(stored or "[]"):
        if isinstance(e, str):
            shown.append(e)
            continue
        columns = e.get("columns")
        issue = Issue(file, e.get("line"), (columns[0], columns[1]) if columns else None, e.get("record") or "file",
                      e.get("field"), e.get("message") or "", e.get("value"))
        issues.append(issue)
        shown.append(e.get("text") or str(issue))
    return shown, issues
