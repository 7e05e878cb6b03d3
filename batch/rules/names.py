"""Names at the bank, as pure functions: the remote file name pattern of our uploads, glob patterns
of the bank's files, whether a name the bank lists is a plain file name (and how to quote one that is
not), and pinned SSH host keys (an OpenSSH key line or a SHA256 fingerprint). The settings check
them, the transport uses them; neither needs a connection to do so."""
from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
from dataclasses import dataclass
from datetime import date

__all__ = ["MAX_NAME_BYTES", "Pin", "check_name_pattern", "escape_name", "fingerprint", "format_remote_name",
           "matches", "parse_pin", "remote_name_problem"]

MAX_NAME_BYTES = 255  # NAME_MAX of POSIX file systems


class _FileDate:
    """{date} in a name pattern: YYYYMMDD by default, or any strftime spec ({date:%y%m%d})."""

    def __init__(self, d: date):
        self.d = d

    def __format__(self, spec: str) -> str:
        return self.d.strftime(spec or "%Y%m%d")


def format_remote_name(pattern: str, file_date: date, modifier: str, seq: int) -> str:
    return pattern.format(date=_FileDate(file_date), modifier=modifier, seq=seq)


def check_name_pattern(pattern: str) -> None:
    """Raise ValueError unless `pattern` makes a plain, printable file name from {date}, {modifier}
    and {seq}, different for two File ID Modifiers of one day."""
    try:
        a = format_remote_name(pattern, date(2026, 12, 1), "A", 1)
        b = format_remote_name(pattern, date(2026, 12, 1), "B", 1)
    except (KeyError, IndexError) as e:
        raise ValueError(f"unknown placeholder {e} (use {{date}}, {{modifier}}, {{seq}})") from None
    except ValueError as e:
        raise ValueError(f"not a valid name pattern: {e}") from None
    if not a or "/" in a or "\\" in a or a.startswith(".") or not (a.isascii() and a.isprintable()):
        raise ValueError(f"must make a plain file name (printable ASCII, no '/', not starting with '.'), made {a!r}")
    if a == b or "{modifier" not in pattern:
        raise ValueError("must contain {modifier}: two files of one day need different names")
    if "{date" not in pattern:
        raise ValueError("must contain {date}: files of different days need different names")


def remote_name_problem(name: str) -> str | None:
    """Why a name listed by the bank is not a plain file name we may use as one (in a local path, a
    remote path, a log line), or None when it is: no '/', '\\', NUL, line break or other control
    or format character, not '.' or '..', not empty, at most 255 bytes (UTF-8)."""
    if name in ("", ".", ".."):
        return "an empty name, '.' or '..'"
    if "/" in name or "\\" in name:
        return "a path separator ('/' or '\\')"
    if "\x00" in name:
        return "a NUL character"
    if "\n" in name or "\r" in name:
        return "a line break"
    if not name.isprintable():  # control characters, and format ones (bidi overrides)
        return "a control character"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes)
        return "bytes that are not UTF-8"
    if size > MAX_NAME_BYTES:
        return f"{size} bytes, more than {MAX_NAME_BYTES}"
    return None


def escape_name(name: str, limit: int = 200) -> str:
    """`name` safe to quote in a log line or a message: backslash escapes for anything but printable
    ASCII (a line break cannot start a forged log line, a control sequence cannot reach a
    terminal), cut to about `limit` characters."""
    out = name.encode("unicode_escape", "backslashreplace").decode("ascii")
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in out)
    return out if len(out) <= limit else out[:limit] + f"...({len(out) - limit} more)"


# -- host keys -------------------------------------------------------------------------------------

def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob: 'SHA256:' + unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Pin:
    """A pinned host key: a key type and blob, or only a SHA256 fingerprint."""

    key_type: str | None
    blob: bytes | None
    fingerprint: str

    def describe(self) -> str:
        return f"{self.key_type} {self.fingerprint}" if self.key_type else self.fingerprint


def parse_pin(text: str) -> Pin:
    """'ssh-ed25519 AAAA... [comment]' or 'SHA256:<base64>'; ValueError naming the problem."""
    t = text.strip()
    if t.startswith("SHA256:"):
        body = t[7:]
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a SHA256 fingerprint is 'SHA256:' followed by base64") from None
        if len(raw) != 32:
            raise ValueError("a SHA256 fingerprint holds 32 bytes")
        return Pin(None, None, "SHA256:" + body.rstrip("="))
    parts = t.split()
    if len(parts) < 2:
        raise ValueError("give an OpenSSH public key line ('ssh-ed25519 AAAA...') or a 'SHA256:...' fingerprint")
    key_type, b64 = parts[0], parts[1]
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    # The blob starts with its own type name (RFC 4253 6.6): a line that disagrees is corrupt.
    n = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if n < 0 or blob[4:4 + n].decode("ascii", "replace") != key_type:
        raise ValueError(f"the key blob is not a {key_type} key")
    return Pin(key_type, blob, fingerprint(blob))


def matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)
