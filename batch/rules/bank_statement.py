"""The bank's BAI2 statement: reading it (with the `bai2` package) and tying it out to what we sent
and what the bank returned (pure: no database, no files; batch/collect/bank_statement.py runs it).

Reading (`read_statement`): the `bai2` package parses the records (01 file header, 02 group header,
03 account identifier, 16 transaction detail, 88 continuation, 49 account trailer, 98 group
trailer, 99 file trailer) and checks the control totals and record counts. What it does not do,
done here: say on which line of the file a problem is (its exceptions name none), refuse records
after the file trailer (it stops reading at the first 99), refuse a signed amount on a 16 record
(the specification's detail amounts are unsigned), refuse a currency other than USD (we tie out in
cents), and treat 168 and 169 as the detail codes the specification says they are (its table says
summary). A file with any problem is rejected whole: `StatementError(line, reason)`.

Matching (`tie_out`), for the groups of a final prior-day report:
  * each of our sent NACHA files is expected as one ACH settlement credit (a type code of
    `credit_codes`) for its total, on its settlement date;
  * each applied return file is expected as one ACH return settlement debit (`return_codes`) for
    the total of its return entries, on their settlement date;
  * a line and an expected item match on amount and date; among several of the same amount and
    date, a line whose bank or customer reference or text names the file (its id: creation date
    YYMMDD + File ID Modifier, or its name) takes that file first, the rest pair in order;
  * expected items whose date the report covers and that no line matched are `missing`; lines of a
    mapped code that nothing explains are `unexplained`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from nacha.calendar import effective_entry_date, is_banking_day, next_banking_day

__all__ = [
    "DEFAULT_CREDIT_CODES", "DEFAULT_RETURN_CODES", "Expected", "Match", "Statement", "StatementAccount",
    "StatementDetail", "StatementError", "StatementGroup", "TieOut", "check_type_codes", "file_settlement_day",
    "mask_digits", "read_statement", "return_settlement_day", "tie_out", "type_code_facts",
]

# The BAI2 specification's detail codes (Cash Management Balance Reporting Specifications, version 2,
# Appendix A): 165 Preauthorized ACH Credit, 166 ACH Settlement, 169 Miscellaneous ACH Credit (credits);
# 468 ACH Return Item or Adjustment Settlement (debit). Never the summary codes (167 ACH Settlement
# Credits, 467 ACH Settlement Debits, 556 Total ACH Return Items ...): they total the details and would
# count the same money twice.
DEFAULT_CREDIT_CODES = ("165", "166", "169")
DEFAULT_RETURN_CODES = ("468",)

# Where the `bai2` package's table differs from the specification's (checked code by code for the ACH
# ranges 140-169, 256-258, 445-469 and 555-558): the specification lists 168 and 169 as detail codes.
_SPEC_LEVEL = {"168": "detail", "169": "detail"}

_RECORD_CODES = ("01", "02", "03", "16", "88", "49", "98", "99")
_TRAILER_OF = {"Account": "49", "Group": "98", "Bai2File": "99"}


class StatementError(ValueError):
    """A BAI2 file that cannot be read: the line (1-based) and the reason."""

    def __init__(self, name: str, line: int | None, reason: str):
        self.name, self.line, self.reason = name, line, reason
        super().__init__(f"{name}:{line}: {reason}" if line else f"{name}: {reason}")


def type_code_facts(code: str) -> tuple[str, str, str] | None:
    """(direction credit|debit|None, level status|summary|detail, description) of a BAI2 type code as
    the specification defines it; None for a code it does not define."""
    from bai2.constants import TypeCodes

    tc = TypeCodes.get(code)
    if tc is None:
        return None
    direction = tc.transaction.value if tc.transaction is not None else None
    return direction, _SPEC_LEVEL.get(code, tc.level.value), tc.description


def check_type_codes(codes: list[str] | tuple[str, ...], direction: str) -> list[str]:
    """The codes, checked: each a detail code of `direction` ('credit' or 'debit'). Raises ValueError
    naming the first that is not (a summary or status code would count the same money twice)."""
    out = []
    for c in codes:
        c = str(c).strip()
        facts = type_code_facts(c)
        if facts is None:
            raise ValueError(f"type code {c!r} is not a BAI2 type code")
        d, level, desc = facts
        if level != "detail":
            raise ValueError(f"type code {c} ({desc}) is a {level} code; only detail codes can be matched "
                             "(a summary would count the details again)")
        if d != direction:
            raise ValueError(f"type code {c} ({desc}) is not a {direction} code")
        out.append(c)
    if not out:
        raise ValueError("at least one type code is needed")
    return out


def mask_digits(text: str) -> str:
    """`text` with every run of 8 or more digits cut to its last four ("****1234"): a bank's free text
    may carry account numbers, which are never kept in plain text."""
    return re.sub(r"\d{8,}", lambda m: "****" + m.group(0)[-4:], text or "")


def file_settlement_day(file_date: date) -> date:
    """When the bank credits us for a debit file of `file_date`: its effective entry date (the next
    banking day, reference §3.1), itself moved to the next banking day if it is not one."""
    d = effective_entry_date(file_date)
    return d if is_banking_day(d) else next_banking_day(d)


def return_settlement_day(julian: str, near: date) -> date | None:
    """The date of a batch's settlement date (Julian day of the year, 3 digits) that is nearest to
    `near` (the return file's creation date); when blank (not inserted by the ACH operator): `near`,
    or the next banking day when `near` is not one."""
    julian = (julian or "").strip()
    if not julian:
        return near if is_banking_day(near) else next_banking_day(near)
    try:
        n = int(julian)
    except ValueError:
        return None
    if not 1 <= n <= 366:
        return None
    candidates = []
    for y in (near.year - 1, near.year, near.year + 1):
        d = date(y, 1, 1) + timedelta(days=n - 1)
        if d.year == y:
            candidates.append(d)
    return min(candidates, key=lambda d: abs((d - near).days)) if candidates else None


# -- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StatementDetail:
    line: int
    type_code: str
    direction: str | None  # credit | debit (None: a non-monetary code)
    amount_cents: int
    bank_reference: str
    customer_reference: str
    text: str

    def names(self, token: str) -> bool:
        t = token.upper()
        return bool(t) and any(t in (v or "").upper() for v in (self.bank_reference, self.customer_reference,
                                                                  self.text))


@dataclass
class StatementAccount:
    line: int
    last4: str
    details: list[StatementDetail] = field(default_factory=list)


@dataclass
class StatementGroup:
    line: int
    status: str  # 1 update, 2 deletion, 3 correction, 4 test only
    as_of: date
    modifier: str | None  # 1 interim previous-day, 2 final previous-day, 3 interim same-day, 4 final same-day
    accounts: list[StatementAccount] = field(default_factory=list)

    @property
    def final_prior_day(self) -> bool:
        return self.status == "1" and self.modifier == "2"


@dataclass
class Statement:
    name: str
    sender_id: str
    file_id: str
    created_on: date
    groups: list[StatementGroup]

    @property
    def final(self) -> bool:
        """A final prior-day report: every group is (an update, as-of-date modifier 2)."""
        return bool(self.groups) and all(g.final_prior_day for g in self.groups)

    @property
    def as_of(self) -> date:
        return max(g.as_of for g in self.groups)

    def covered(self) -> set[date]:
        """The dates whose settlements the report shows in full."""
        return {g.as_of for g in self.groups if g.final_prior_day}

    def details(self) -> list[tuple[StatementGroup, StatementAccount, StatementDetail]]:
        return [(g, a, d) for g in self.groups for a in g.accounts for d in a.details]


def read_statement(data: bytes, name: str) -> Statement:
    """Read a BAI2 file whole (see the module docstring); raises StatementError(line, reason)."""
    from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException
    from bai2.helpers import IteratorHelper
    from bai2.parsers import Bai2FileParser

    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise StatementError(name, line, "not ASCII text (a BAI2 file is plain ASCII)") from None
    raw = text.splitlines()
    while raw and not raw[-1].strip():
        raw.pop()
    if not raw:
        raise StatementError(name, None, "empty file")
    lines: list[str] = []
    numbers: list[int] = []  # the file line of each line given to the package
    starts: list[int] = []  # the file line where each record (not an 88 continuation) begins
    codes: list[str] = []  # and its record code
    for i, ln in enumerate(raw, start=1):
        ln = ln.rstrip()  # records padded to a physical record length
        if not ln:
            raise StatementError(name, i, "empty line inside the file")
        code = ln[:2]
        if code not in _RECORD_CODES or ln[2:3] != ",":
            raise StatementError(name, i, f"not a BAI2 record: it must start with a record code "
                                          f"({', '.join(_RECORD_CODES)}) and a comma")
        if i == 1 and code != "01":
            raise StatementError(name, i, "the file must start with a file header (01)")
        if code == "88":
            if i == 1:
                raise StatementError(name, i, "a continuation (88) must follow a record")
        else:
            starts.append(i)
            codes.append(code)
        lines.append(ln)
        numbers.append(i)

    class Tracked(IteratorHelper):
        """The package's record iterator, counting the records it has handed out."""

        def __init__(self, it):
            self.index = -1
            self.done = False  # every record handed out
            super().__init__(it)

        def advance(self):
            try:
                super().advance()
            except StopIteration:
                self.done = True
                raise
            self.index += 1

    helper = None
    try:
        helper = Tracked(iter(lines))
        parsed = Bai2FileParser(helper, check_integrity=True).parse()
    except (ParsingException, IntegrityException, NotSupportedYetException, ValueError, IndexError,
            KeyError, StopIteration) as e:
        reason = str(e) or type(e).__name__
        k = helper.index if helper is not None else 0
        k = max(0, min(k, len(starts) - 1))
        m = re.search(r"for (Account|Group|Bai2File)\b", reason)
        level = m.group(1) if m else ("Group" if "Group without" in reason else
                                      "Bai2File" if "File without" in reason else None)
        if level is not None:
            trailer = _TRAILER_OF[level]
            while k > 0 and codes[k] != trailer:
                k -= 1
        if isinstance(e, ValueError) and "is not a valid" in reason:
            reason = f"a field has a value the BAI2 format does not allow ({reason})"
        raise StatementError(name, starts[k], reason) from None
    if not helper.done:  # the package stops at the first file trailer and leaves the rest unread
        raise StatementError(name, starts[min(helper.index, len(starts) - 1)], "a record after the file trailer (99)")

    # Each parsed record, in file order, is the next record of its code.
    at = {c: iter([starts[k] for k in range(len(codes)) if codes[k] == c]) for c in ("02", "03", "16")}
    header = parsed.header
    if header.creation_date is None:
        raise StatementError(name, 1, "the file header (01) has no file creation date")
    groups = []
    for g in parsed.children:
        gh = g.header
        gline = next(at["02"])
        if gh.as_of_date is None:
            raise StatementError(name, gline, "the group header (02) has no as-of date")
        if (gh.currency or "USD") != "USD":
            raise StatementError(name, gline, f"currency {gh.currency}: only USD statements are tied out")
        group = StatementGroup(gline, gh.group_status.value if gh.group_status else "",
                               gh.as_of_date, gh.as_of_date_modifier.value if gh.as_of_date_modifier else None)
        for a in g.children:
            ah = a.header
            aline = next(at["03"])
            if ah.currency and ah.currency != "USD":
                raise StatementError(name, aline, f"currency {ah.currency}: only USD accounts are tied out")
            number = (ah.customer_account_number or "").strip()
            acct = StatementAccount(aline, number[-4:])
            for t in a.children:
                tline = next(at["16"])
                if t.amount is None:
                    raise StatementError(name, tline, "a transaction detail (16) without an amount")
                if t.amount < 0:
                    raise StatementError(name, tline, f"a signed amount ({t.amount}) on a transaction detail "
                                                      "(16): detail amounts are unsigned")
                code = t.type_code.code
                facts = type_code_facts(code)
                acct.details.append(StatementDetail(
                    tline, code, facts[0] if facts else None, int(t.amount),
                    mask_digits((t.bank_reference or "").strip())[:100],
                    mask_digits((t.customer_reference or "").strip())[:100],
                    mask_digits((t.text or "").strip().rstrip("/"))[:200]))
            group.accounts.append(acct)
        groups.append(group)
    return Statement(name, (header.sender_id or "").strip()[:40], (header.file_id or "").strip()[:40],
                     header.creation_date, groups)


# -- matching --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What we expect the bank to post: a sent NACHA file (kind 'nacha_file', a credit) or an applied
    return file (kind 'return_file', a debit)."""

    kind: str
    ref_id: int
    name: str
    settles_on: date
    amount_cents: int
    tokens: tuple[str, ...] = ()  # what a bank reference naming it would carry

    @property
    def direction(self) -> str:
        return "credit" if self.kind == "nacha_file" else "debit"


@dataclass(frozen=True)
class Match:
    expected: Expected
    detail: StatementDetail
    basis: str  # 'amount, date and reference' | 'amount and date'


@dataclass
class TieOut:
    matched: list[Match] = field(default_factory=list)
    missing: list[Expected] = field(default_factory=list)  # expected on a covered date, not posted
    unexplained: list[StatementDetail] = field(default_factory=list)  # posted, nothing of ours explains it
    ignored: int = 0  # details of other type codes (not ours to match)

    @property
    def all_matched(self) -> bool:
        return not self.missing and not self.unexplained


def tie_out(details: list[tuple[date, StatementDetail]], expected: list[Expected], covered: set[date],
            credit_codes: tuple[str, ...] | list[str], return_codes: tuple[str, ...] | list[str]) -> TieOut:
    """Match the statement's details (each with its group's as-of date) against what we expect; see
    the module docstring. Expected items whose settlement date is not in `covered` neither match nor
    count as missing (another report covers them)."""
    out = TieOut()
    wanted = {c: "credit" for c in credit_codes} | {c: "debit" for c in return_codes}
    pool: dict[tuple[str, date, int], list[StatementDetail]] = {}
    for as_of, d in details:
        direction = wanted.get(d.type_code)
        if direction is None:
            out.ignored += 1
            continue
        pool.setdefault((direction, as_of, d.amount_cents), []).append(d)
    due: dict[tuple[str, date, int], list[Expected]] = {}
    for e in sorted(expected, key=lambda e: (e.settles_on, e.kind, e.ref_id)):
        if e.settles_on in covered:
            due.setdefault((e.direction, e.settles_on, e.amount_cents), []).append(e)
    for key in sorted(set(pool) | set(due), key=lambda k: (k[1], k[0], k[2])):
        lines = sorted(pool.get(key, []), key=lambda d: d.line)
        exp = list(due.get(key, []))
        # 1. a line naming one of the files takes it
        for d in list(lines):
            named = [e for e in exp if any(d.names(t) for t in e.tokens)]
            if named:
                e = named[0]
                out.matched.append(Match(e, d, "amount, date and reference"))
                exp.remove(e)
                lines.remove(d)
        # 2. a line naming a file of ours that is not among these (another amount or date) explains none
        others = [t for e in expected for t in e.tokens if e not in due.get(key, [])]
        free = [d for d in lines if not any(d.names(t) for t in others)]
        for d, e in zip(free, exp):
            out.matched.append(Match(e, d, "amount and date"))
        n = min(len(free), len(exp))
        out.missing += exp[n:]
        paired = {id(d) for d in free[:n]}
        out.unexplained += [d for d in lines if id(d) not in paired]
    out.matched.sort(key=lambda m: m.detail.line)
    out.unexplained.sort(key=lambda d: d.line)
    return out
