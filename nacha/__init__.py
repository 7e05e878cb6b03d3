"""The NACHA format, nothing else: record layouts, streaming reader with validation, writer, code
tables, routing check digit and the Federal Reserve banking calendar. Imports nothing from
`batch` or `jobs`; usable on its own.

The names below are loaded on first use (PEP 562): a program that needs only the calendar, the
code tables or the field helpers (`from nacha import codes`, `nacha.calendar`) does not pay for the
reader's and writer's record layouts at start-up."""
from __future__ import annotations

import importlib

_WHERE = {
    "InvalidFile": "errors", "Issue": "errors", "NachaError": "errors", "WriteError": "errors",
    "Batch": "model", "Entry": "model", "NachaFile": "model",
    "BANK": "profile", "STRICT": "profile", "Profile": "profile", "get_profile": "profile",
    "Reader": "reader", "read_file": "reader", "validate_file": "reader",
    "FileWriter": "writer", "format_file": "writer", "write_file": "writer", "write_nacha_file": "writer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nacha' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
