"""Located NACHA errors: every problem names file, line, columns, record, field and the raw value
(masked when the field is sensitive), e.g. ``ret.ach:14:30-39: entry_ppd.amount: expected 10 digits``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem found in a NACHA file."""

    file: str
    line: int | None  # 1-based record number in the file; None for file-level problems
    columns: tuple[int, int] | None  # 1-based inclusive, as printed in the spec
    record: str  # layout name, e.g. 'entry_web', or 'file' for file-level problems
    field: str | None
    message: str
    value: str | None = None  # raw value, already masked when sensitive

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.columns is not None:
            where += f":{self.columns[0]}-{self.columns[1]}"
        what = self.record + (f".{self.field}" if self.field else "")
        return f"{where}: {what}: {self.message}"

    def to_json(self) -> dict:
        return {
            "line": self.line,
            "columns": list(self.columns) if self.columns else None,
            "record": self.record,
            "field": self.field,
            "message": self.message,
        }


class NachaError(Exception):
    """Base of every error the nacha package raises on bad input."""

    def __init__(self, issues: list[Issue] | str):
        if isinstance(issues, str):
            issues = [Issue("", None, None, "file", None, issues)]
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid NACHA data"
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(first + more)


class InvalidFile(NachaError):
    """A file failed validation; `issues` lists every problem found."""


class WriteError(NachaError):
    """The writer refused to write a record or file that would be invalid."""
