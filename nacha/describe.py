"""A summary of a NACHA file (what `achbatch inspect` prints): counts, totals, SEC codes, and the
returns and NOCs it carries, account data masked. Streams, so any size of file works."""
from __future__ import annotations

from .fields import mask
from .profile import Profile
from .reader import BatchStart, EntryItem, FileEnd, FileStart, Reader


def iso_yymmdd(value) -> str | None:
    """A NACHA YYMMDD date as ISO (YYYY-MM-DD, years 20YY), or None when blank or not a date."""
    v = str(value or "").strip()
    if len(v) != 6 or not v.isdigit():
        return None
    from datetime import date

    try:
        return date(2000 + int(v[:2]), int(v[2:4]), int(v[4:])).isoformat()
    except ValueError:
        return None


def describe(source, profile: str | Profile = "bank", name: str | None = None,
             entries: bool = False) -> tuple[dict, list]:
    """(summary dict in the contract's JSON shape, issues). The dict also holds `batch_list`,
    `header` (origin, destination, creation date and time) and `warnings` (the reader's warnings,
    Issue objects: they leave the file valid); with `entries`, `entry_list` (accounts masked)."""
    r = Reader(source, profile, name)
    header: dict = {}
    entry_list: list[dict] = []
    returns: list[dict] = []
    nocs: list[dict] = []
    control = None
    batches: list[dict] = []
    for item in r:
        if isinstance(item, FileStart):
            fh = item.header
            t = str(getattr(fh, "file_creation_time", "") or "").strip()
            header = {
                "immediate_origin_name": str(getattr(fh, "immediate_origin_name", "") or "").strip(),
                "immediate_destination_name": str(getattr(fh, "immediate_destination_name", "") or "").strip(),
                "creation_date": iso_yymmdd(getattr(fh, "file_creation_date", None)),
                "creation_time": f"{t[:2]}:{t[2:]}" if len(t) == 4 and t.isdigit() else None,
            }
        elif isinstance(item, BatchStart):
            h = item.header
            batches.append({
                "batch_number": h.batch_number,
                "sec_code": h.standard_entry_class_code,
                "company_name": h.company_name,
                "entry_description": h.company_entry_description,
                "effective_entry_date": h.effective_entry_date,
                "effective_date": iso_yymmdd(h.effective_entry_date),
                "entries": 0,
            })
        elif isinstance(item, EntryItem):
            if batches:
                batches[-1]["entries"] += 1
            if entries:
                e = item.record
                entry_list.append({
                    "line": item.line,
                    "batch_number": batches[-1]["batch_number"] if batches else None,
                    "transaction_code": e.transaction_code,
                    "routing_number": f"{e.receiving_dfi_identification}{e.check_digit}",
                    "account": mask(e.dfi_account_number),
                    "amount_cents": e.amount,
                    "name": str(getattr(e, "individual_name", None) or getattr(e, "receiving_company_name", None)
                                or "").strip(),
                    "trace_number": e.trace_number,
                })
            for a in item.addenda:
                if a is None:
                    continue
                arec = a[1]
                t = arec.addenda_type_code
                if t == "99":
                    returns.append({
                        "trace_number": item.record.trace_number,
                        "original_trace_number": arec.original_entry_trace_number,
                        "return_code": arec[2],
                        "amount_cents": item.record.amount,
                    })
                elif t == "98":
                    nocs.append({
                        "trace_number": item.record.trace_number,
                        "original_trace_number": arec.original_entry_trace_number,
                        "change_code": arec[2],
                        "corrected_data": _masked_correction(arec[2], arec.corrected_data),
                    })
        elif isinstance(item, FileEnd):
            control = item.control
    s = r.summary
    out = {
        "file": r.name,
        "file_id_modifier": s.file_id_modifier,
        "batches": s.batches,
        "entries": s.entries,
        "total_debit_cents": s.total_debit_cents,
        "total_credit_cents": s.total_credit_cents,
        "entry_hash": control.entry_hash if control is not None and type(control.entry_hash) is int else s.entry_hash,
        "sec_codes": s.sec_codes,
        "returns": returns,
        "nocs": nocs,
        "valid": not r.issues,
        "batch_list": batches,
        "header": header,
        "warnings": list(r.warnings),
    }
    if entries:
        out["entry_list"] = entry_list
    return out, r.issues


def _masked_correction(code: str, data: str) -> str:
    """Corrected data with any account number masked (C01, C03, C06, C07 carry one)."""
    from . import codes

    try:
        parts = codes.parse_corrected_data(code, data.ljust(29))
    except ValueError:
        return mask(data)
    shown = {k: (mask(v) if k == "account_number" else v) for k, v in parts.items()}
    return " ".join(f"{k}={v}" for k, v in shown.items()) if shown else data
