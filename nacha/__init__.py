"""The NACHA format, nothing else: record layouts, streaming reader with validation, writer, code
tables, routing check digit and the Federal Reserve banking calendar. Imports nothing from
`batch` or `jobs`; usable on its own."""
from .errors import InvalidFile, Issue, NachaError, WriteError
from .model import Batch, Entry, NachaFile
from .profile import BANK, STRICT, Profile, get_profile
from .reader import Reader, read_file, validate_file
from .writer import FileWriter, format_file, write_file, write_nacha_file

__all__ = [
    "BANK", "STRICT", "Batch", "Entry", "FileWriter", "InvalidFile", "Issue", "NachaError",
    "NachaFile", "Profile", "Reader", "WriteError", "format_file", "get_profile", "read_file",
    "validate_file", "write_file", "write_nacha_file",
]
