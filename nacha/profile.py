"""Leniency: one policy object with named presets. `strict` is what we write; `bank` is what real
banks send (CRLF, no final newline, no 9-filler, trimmed trailing spaces, records run together with
no line breaks, blank lines, return/NOC files without file header or control, return entries with
a field of the original entry left blank)."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Profile:
    name: str
    crlf: bool = False  # lines may end in CR LF
    missing_final_newline: bool = False  # the last record may lack its line feed
    missing_filler: bool = False  # the 9-filler to a multiple of 10 records may be absent or short
    trimmed_lines: bool = False  # trailing spaces may be cut off (shorter lines are space-padded)
    unbroken_records: bool = False  # the file may be one long line of 94-character records
    blank_lines: bool = False  # empty lines are skipped
    missing_file_envelope: bool = False  # file header and/or file control may be absent
    # Returned and NOC'd entries may leave blank the fields their SEC format lists in
    # `return_blank_ok` (WEB Payment Type Code in Fiserv return files, moov issues 702 and 751).
    blank_fields_on_returns: bool = False
    # Field defects of bank-written return and NOC files that do not affect matching (returns are
    # matched by the original trace, 7-21): an Effective Entry Date of zeros on a batch of returns
    # or NOCs only, and an addenda 98/99 Trace Number (80-94) other than its entry's (moov-io/ach
    # writes both). Reported as warnings, not errors. Structural rules stay errors.
    return_field_defects: bool = False

    def relaxations(self) -> list[str]:
        return [f.name for f in fields(self) if f.type in (bool, "bool") and getattr(self, f.name)]


STRICT = Profile("strict")
BANK = Profile(
    "bank",
    crlf=True,
    missing_final_newline=True,
    missing_filler=True,
    trimmed_lines=True,
    unbroken_records=True,
    blank_lines=True,
    missing_file_envelope=True,
    blank_fields_on_returns=True,
    return_field_defects=True,
)
PROFILES = {p.name: p for p in (STRICT, BANK)}


def get_profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
