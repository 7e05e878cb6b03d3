"""Exit codes of the interface contract (DESIGN.md)."""
OK = 0
DATA_PROBLEMS = 1  # done, but data problems were found and reported
USAGE = 2  # usage or configuration error
LOCKED = 3  # skipped: another run holds the lock
TEMPFAIL = 75  # temporary failure (bank unreachable), safe to retry
