"""Declarative record layouts: a NACHA record is an ordered table of fields, and that table alone
drives parsing, writing and field validation (no slice or width is written anywhere else).

A `Layout` compiles its table once, at import, into three small generated functions (parse,
tolerant parse, format) so the per-record cost stays close to hand-written slicing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable

RECORD_LENGTH = 94

# Field kinds.
TEXT = "A"  # alphameric: left-justified, space-filled; value is str with trailing spaces removed
NUMBER = "N"  # numeric quantity (amounts, counts, hash): value is int, written zero-filled
DIGITS = "D"  # numeric identifier (routing, trace, codes, dates): value is the exact digit string
BLANK = "B"  # reserved: must be spaces; value is '' (kept so the table covers every position)

KINDS = (TEXT, NUMBER, DIGITS, BLANK)

# Extra value checks a DIGITS field can name (kept here so the names are data).
CHECK_YYMMDD = "yymmdd"
CHECK_HHMM = "hhmm"
CHECK_JULIAN = "julian"
CHECK_MMDD = "mmdd"
CHECK_MMYY = "mmyy"


@dataclass(frozen=True)
class Field:
    """One field of a record, positions 1-based and inclusive as printed in the spec."""

    name: str
    start: int
    end: int
    kind: str = TEXT
    required: bool = False  # blank (spaces, or zeros for identifiers) is an error
    sensitive: bool = False  # masked in every message and repr
    fixed: str | None = None  # the only value allowed (record type codes, '094', '10', ...)
    blank_ok: bool = False  # DIGITS only: all spaces is allowed (value '')
    allowed: frozenset | None = None  # the values allowed (after trailing spaces are removed)
    check: str | None = None  # extra check on DIGITS values (CHECK_*)
    title: str = ""

    @property
    def width(self) -> int:
        return self.end - self.start + 1

    @property
    def columns(self) -> tuple[int, int]:
        return (self.start, self.end)

    @property
    def digits_only(self) -> bool:
        """True when every valid value of this field is ASCII digits (never blank)."""
        return self.kind in (NUMBER, DIGITS) and not self.blank_ok


def mask(value: str | None) -> str:
    """A sensitive value (an account number) for messages, logs and reports: the last four
    characters after a fixed '****', never its length: '12345678   ' -> '****5678'. A value of four
    characters or fewer is all hidden ('****'); blank or None -> ''. The one definition (batch too)."""
    v = (value or "").strip()
    if not v:
        return ""
    return MASK_PREFIX + (v[-4:] if len(v) > 4 else "")


MASK_PREFIX = "****"


def mask_last4(last4: str | None) -> str:
    """The masked form of an account of which only the last four digits are kept (the database's
    `last4`): the same text `mask` gives for the full number."""
    return MASK_PREFIX + (last4 or "")[-4:]


def is_ascii_digits(s: str) -> bool:
    """NACHA numeric: ASCII 0-9 only (str.isdigit alone accepts other scripts' digits)."""
    return s.isascii() and s.isdigit()


def _valid_date(yy: int, mm: int, dd: int) -> bool:
    try:
        date(2000 + yy, mm, dd)
    except ValueError:
        return False
    return True


def _value_check_message(check: str, s: str) -> str | None:
    if check == CHECK_YYMMDD:
        if not _valid_date(int(s[0:2]), int(s[2:4]), int(s[4:6])):
            return f"not a valid YYMMDD date: {s!r}"
    elif check == CHECK_MMDD:
        if not _valid_date(0, int(s[0:2]), int(s[2:4])):  # 2000 is a leap year: Feb 29 allowed
            return f"not a valid MMDD date: {s!r}"
    elif check == CHECK_MMYY:
        if not 1 <= int(s[0:2]) <= 12:
            return f"not a valid MMYY date: {s!r}"
    elif check == CHECK_HHMM:
        if not (int(s[0:2]) <= 23 and int(s[2:4]) <= 59):
            return f"not a valid HHMM time: {s!r}"
    elif check == CHECK_JULIAN:
        if not 1 <= int(s) <= 366:
            return f"not a valid Julian day (001-366): {s!r}"
    return None


class FieldProblem:
    """A field-level problem found in one record (the reader adds file and line)."""

    __slots__ = ("field", "message", "value")

    def __init__(self, field: Field, message: str, value: str):
        self.field = field
        self.message = message
        self.value = value


class Layout:
    """An ordered table of fields for one record type, compiled into fast functions."""

    def __init__(self, name: str, fields: Iterable[Field], title: str = ""):
        self.name = name
        self.title = title or name
        self.fields: tuple[Field, ...] = tuple(fields)
        self._check_coverage()
        self.by_name = {f.name: f for f in self.fields}
        self.index = {f.name: i for i, f in enumerate(self.fields)}
        self.record_class = _make_record_class(self)
        self.parse: Callable[[str], Any] = self._compile_parse(tolerant=False)
        self.parse_tolerant: Callable[[str], Any] = self._compile_parse(tolerant=True)
        self.format: Callable[[Any], str] = self._compile_format()
        self.quick_ok: Callable[[str], bool] = self._compile_quick()
        self.parse_checked: Callable[[str], Any] = self._compile_parse_checked()
        self.parse_trusted: Callable[[str], Any] = self._compile_parse_checked(trusted=True)
        self.render: Callable[[Any], str | None] = self._compile_render()
        self._defaults = tuple(_default(f) for f in self.fields)
        self.make: Callable[..., Any] = self._compile_make()
        self._makers: dict[tuple[str, ...], Callable[..., Any]] = {}

    # -- construction ---------------------------------------------------------------------------
    def _check_coverage(self) -> None:
        pos = 1
        for f in self.fields:
            if f.kind not in KINDS:
                raise AssertionError(f"{self.name}.{f.name}: unknown kind {f.kind!r}")
            if f.start != pos:
                raise AssertionError(
                    f"{self.name}.{f.name}: starts at {f.start}, expected {pos} (gap or overlap)"
                )
            if f.end < f.start:
                raise AssertionError(f"{self.name}.{f.name}: ends before it starts")
            if f.fixed is not None and len(f.fixed) != f.width:
                raise AssertionError(f"{self.name}.{f.name}: fixed value has the wrong width")
            pos = f.end + 1
        if pos != RECORD_LENGTH + 1:
            raise AssertionError(f"{self.name}: fields cover 1..{pos - 1}, not 1..{RECORD_LENGTH}")

    def _compile_parse(self, tolerant: bool):
        parts = []
        for f in self.fields:
            s = f"line[{f.start - 1}:{f.end}]"
            if f.kind == TEXT:
                parts.append(f"{s}.rstrip()")
            elif f.kind == BLANK:
                parts.append("''")
            elif f.kind == NUMBER:
                parts.append(f"_num({s})" if tolerant else f"int({s})")
            elif f.blank_ok:  # DIGITS that may be blank
                parts.append(f"{s}.strip()")
            else:
                parts.append(f"_dig({s})" if tolerant else s)
        src = f"def parse(line):\n    return _new(_cls, ({', '.join(parts)},))\n"
        ns = {"_new": tuple.__new__, "_cls": self.record_class, "_num": _tolerant_int, "_dig": _tolerant_digits}
        if not tolerant:
            self._parse_src, self._parse_ns = src, ns
        exec(compile(src, f"<layout {self.name} parse>", "exec"), ns)
        return ns["parse"]

    def _compile_format(self):
        parts = []
        for i, f in enumerate(self.fields):
            w = f.width
            if f.kind == TEXT:
                parts.append(f"{{r[{i}]:<{w}}}")
            elif f.kind == BLANK:
                parts.append(" " * w)
            elif f.kind == NUMBER:
                parts.append(f"{{r[{i}]:0{w}d}}")
            else:
                parts.append(f"{{r[{i}]:>{w}}}")
        src = "def format(r):\n    return f'" + "".join(parts) + "'\n"
        self._format_src = src
        ns: dict = {}
        exec(compile(src, f"<layout {self.name} format>", "exec"), ns)
        return ns["format"]

    def _merge_digit_runs(self) -> tuple[tuple[int, int], ...]:
        runs: list[list[int]] = []
        for f in self.fields:
            if f.digits_only:
                if runs and runs[-1][1] == f.start - 1:
                    runs[-1][1] = f.end
                else:
                    runs.append([f.start - 1, f.end])
        return tuple((a, b) for a, b in runs)

    # -- records --------------------------------------------------------------------------------
    def _compile_make(self):
        """`make(**values)`: a record from keyword values; fields not given take their default
        (the fixed value, '' for text, 0 for numbers, zeros for digit fields)."""
        params = ", ".join(f"{f.name}=_d[{i}]" for i, f in enumerate(self.fields))
        names = ", ".join(f.name for f in self.fields)
        return self._compile_record_fn(f"def make(*, {params}):\n    return _new(_cls, ({names},))\n", "make")

    def _compile_record_fn(self, src: str, what: str) -> Callable[..., Any]:
        """The function `make` that `src` defines, compiled with the record class (`_cls`), the
        tuple constructor (`_new`) and the fields' defaults (`_d`) in its namespace."""
        ns = {"_new": tuple.__new__, "_cls": self.record_class, "_d": self._defaults}
        exec(compile(src, f"<layout {self.name} {what}>", "exec"), ns)
        return ns["make"]

    def maker(self, *names: str) -> Callable[..., Any]:
        """`make` taking the fields `names` by position, in that order, the others at their
        default: for a writer that fills the same fields of many records (compiled once per
        list of names)."""
        fn = self._makers.get(names)
        if fn is None:
            unknown = [n for n in names if n not in self.index]
            if unknown or len(set(names)) != len(names):
                raise ValueError(f"{self.name}: not its fields, or given twice: {', '.join(unknown) or names}")
            arg = {n: f"_{i}" for i, n in enumerate(names)}  # parameters named by position: any field name will do
            values = ", ".join(arg.get(f.name, f"_d[{i}]") for i, f in enumerate(self.fields))
            fn = self._makers[names] = self._compile_record_fn(
                f"def make({', '.join(arg.values())}):\n    return _new(_cls, ({values},))\n", "maker")
        return fn

    # -- validation -----------------------------------------------------------------------------
    def _quick_terms(self) -> tuple[list[str], dict[str, Any]]:
        """The checks of `quick_ok` as boolean expressions over `line`, with their namespace.

        C-level string calls only: whole line printable ASCII, merged runs of numeric fields
        digits only, fixed values, allowed sets, required text present, reserved fields blank.
        """
        terms = ["len(line) == 94", "line.isascii()", "line.isprintable()"]
        ns: dict[str, Any] = {"_check": _value_check_message}
        for a, b in self._merge_digit_runs():
            terms.append(f"line[{a}:{b}].isdigit()")
        for i, f in enumerate(self.fields):
            s = f"line[{f.start - 1}:{f.end}]"
            if f.fixed is not None:
                terms.append(f"{s} == {f.fixed!r}")
            if f.allowed is not None:
                ns[f"_allowed{i}"] = f.allowed
                terms.append(f"{s + '.rstrip()' if f.kind == TEXT else s} in _allowed{i}")
            if f.required and f.kind == TEXT:
                terms.append(f"{s}.strip() != ''")
            if f.kind == BLANK:
                terms.append(f"{s}.strip() == ''")
            if f.blank_ok:
                terms.append(f"({s}.strip() == '' or {s}.isdigit())")
            if f.check:
                blank = f"{s}.strip() == '' or " if f.blank_ok else ""
                terms.append(f"({blank}_check({f.check!r}, {s}) is None)")
        return terms, ns

    def _compile_quick(self):
        """`quick_ok(line)`: True when the line certainly has no field-level problem; anything
        else goes to `problems` (the slow path)."""
        terms, ns = self._quick_terms()
        src = "def quick_ok(line):\n    return (" + "\n        and ".join(terms) + ")\n"
        exec(compile(src, f"<layout {self.name} quick_ok>", "exec"), ns)
        return ns["quick_ok"]

    def _compile_parse_checked(self, trusted: bool = False):
        """`parse_checked(line)`: the record when `quick_ok(line)`, else None: the reader's hot path.

        The whole-line checks come first (length, printable ASCII, digit runs, fixed values); the
        field checks then run on the parsed values themselves, so no field is sliced twice."""
        ns: dict[str, Any] = {"_check": _value_check_message, "_new": tuple.__new__, "_cls": self.record_class}
        # `trusted`: the caller already knows the line is 94 printable ASCII characters (the reader
        # checks a whole chunk of records at once).
        line_terms = [] if trusted else ["len(line) == 94", "line.isascii()", "line.isprintable()"]
        line_terms += [f"line[{a}:{b}].isdigit()" for a, b in self._merge_digit_runs()]
        assigns, value_terms, names = [], [], []
        for i, f in enumerate(self.fields):
            raw = f"line[{f.start - 1}:{f.end}]"
            v = f"v{i}"
            names.append(v)
            if f.fixed is not None:
                line_terms.append(f"{raw} == {f.fixed!r}")
            if f.kind == TEXT:
                assigns.append(f"{v} = {raw}.rstrip()")
                if f.required:
                    value_terms.append(v)
            elif f.kind == BLANK:
                assigns.append(f"{v} = ''")
                value_terms.append(f"not {raw}.strip()")
            elif f.kind == NUMBER:
                assigns.append(f"{v} = int({raw})")
            elif f.blank_ok:
                assigns.append(f"{v} = {raw}.strip()")
                value_terms.append(f"(not {v} or {raw}.isdigit())")
            else:
                assigns.append(f"{v} = {raw}")
            if f.allowed is not None:
                ns[f"_allowed{i}"] = f.allowed
                value_terms.append(f"{v} in _allowed{i}")
            if f.check:
                blank = f"not {v} or " if f.blank_ok else ""
                value_terms.append(f"({blank}_check({f.check!r}, {v}) is None)")
        src = ["def parse_checked(line):",
               "    if not (" + "\n            and ".join(line_terms) + "):",
               "        return None"]
        src += [f"    {a}" for a in assigns]
        if value_terms:
            src += ["    if not (" + "\n            and ".join(value_terms) + "):", "        return None"]
        src.append(f"    return _new(_cls, ({', '.join(names)},))")
        if not line_terms:
            src[1:3] = []
        exec(compile("\n".join(src) + "\n", f"<layout {self.name} parse_checked>", "exec"), ns)
        return ns["parse_checked"]

    def _compile_render(self):
        """`render(record)`: the formatted line when every value fits its field and the line
        passes `quick_ok`, else None (the writer's hot path; the slow path says why).

        Every format spec pads to at least the field width, so a line of exactly 94 characters
        proves no value was too long, and the digit checks catch short or signed numbers."""
        terms, ns = self._quick_terms()
        fmt_body = self._format_src.split("return ", 1)[1]
        ints = [f"type(r[{i}]) is int" for i, f in enumerate(self.fields) if f.kind == NUMBER]
        pre = (" and ".join(ints)) if ints else "True"
        src = ("def render(r):\n"
               f"    if not ({pre}):\n        return None\n"
               "    try:\n"
               f"        line = {fmt_body}"
               "    except (TypeError, ValueError):\n        return None\n"
               "    if (" + "\n        and ".join(terms) + "):\n        return line\n    return None\n")
        exec(compile(src, f"<layout {self.name} render>", "exec"), ns)
        return ns["render"]

    def problems(self, line: str, blank_reserved: bool = True) -> list[FieldProblem]:
        """Every field-level problem of one record (slow path, used when quick_ok is False)."""
        out: list[FieldProblem] = []
        for f in self.fields:
            raw = line[f.start - 1:f.end]
            shown = mask(raw) if f.sensitive else raw
            if len(raw) < f.width:
                out.append(FieldProblem(f, f"record too short for this field ({len(raw)} of {f.width} characters)", shown))
                continue
            if not (raw.isascii() and raw.isprintable()):
                out.append(FieldProblem(f, "contains characters outside printable ASCII", shown))
                continue
            if f.fixed is not None:
                if raw != f.fixed:
                    out.append(FieldProblem(f, f"expected {f.fixed!r}, got {shown!r}", shown))
                continue
            if f.kind == BLANK:
                if blank_reserved and raw.strip():
                    out.append(FieldProblem(f, "reserved: must be spaces", shown))
                continue
            if f.kind in (NUMBER, DIGITS):
                if f.blank_ok and not raw.strip():
                    continue
                if not is_ascii_digits(raw):
                    out.append(FieldProblem(f, f"expected {f.width} digits, got {shown!r}", shown))
                    continue
                if f.check:
                    msg = _value_check_message(f.check, raw)
                    if msg:
                        out.append(FieldProblem(f, msg, shown))
                        continue
            elif f.required and not raw.strip():
                out.append(FieldProblem(f, "required: must not be blank", shown))
                continue
            if f.allowed is not None:
                v = raw.rstrip() if f.kind == TEXT else raw
                if v not in f.allowed:
                    choices = ", ".join(repr(a) for a in sorted(f.allowed))
                    out.append(FieldProblem(f, f"{shown.rstrip()!r} is not one of {choices}", shown))
        return out

    def value_problems(self, record) -> list[FieldProblem]:
        """Problems of a record about to be written (values of the wrong type or width)."""
        out: list[FieldProblem] = []
        for f, v in zip(self.fields, record):
            shown = mask(str(v)) if f.sensitive else str(v)
            if f.kind == NUMBER:
                if type(v) is not int or v < 0 or v >= 10 ** f.width:
                    out.append(FieldProblem(f, f"expected a whole number of at most {f.width} digits, got {shown!r}", shown))
            elif not isinstance(v, str):
                out.append(FieldProblem(f, f"expected text, got {type(v).__name__}", shown))
            elif f.kind == DIGITS:
                if len(v) != f.width and not (f.blank_ok and v == ""):
                    out.append(FieldProblem(f, f"expected exactly {f.width} digits, got {shown!r}", shown))
            elif len(v) > f.width:
                out.append(FieldProblem(f, f"longer than {f.width} characters: {shown!r}", shown))
        return out


def _default(f: Field):
    if f.fixed is not None:
        return int(f.fixed) if f.kind == NUMBER else f.fixed
    if f.kind == NUMBER:
        return 0
    if f.kind == DIGITS and not f.blank_ok:
        return "0" * f.width
    return ""


def _tolerant_int(s: str):
    return int(s) if is_ascii_digits(s) else None


def _tolerant_digits(s: str):
    return s if is_ascii_digits(s) else s.strip()


def _make_record_class(layout: Layout):
    """A tuple subclass with one read-only attribute per field (cheap to create, immutable)."""
    from operator import itemgetter

    ns: dict[str, Any] = {"__slots__": (), "layout": layout}
    for i, f in enumerate(layout.fields):
        ns[f.name] = property(itemgetter(i), doc=f.title or f.name)
    sensitive = frozenset(i for i, f in enumerate(layout.fields) if f.sensitive)
    names = [f.name for f in layout.fields]

    def __repr__(self):
        items = []
        for i, (n, v) in enumerate(zip(names, self)):
            if layout.fields[i].kind == BLANK:
                continue
            items.append(f"{n}={mask(v) if i in sensitive and isinstance(v, str) else v!r}")
        return f"{type(self).__name__}({', '.join(items)})"

    def _replace(self, **kw):
        return layout.make(**{**self._asdict(), **kw})

    def _asdict(self):
        return dict(zip(names, self))

    def to_line(self) -> str:
        return layout.format(self)

    ns.update(__repr__=__repr__, __str__=__repr__, _replace=_replace, _asdict=_asdict, to_line=to_line)
    cls_name = "".join(p.capitalize() for p in layout.name.split("_"))
    return type(cls_name, (tuple,), ns)
