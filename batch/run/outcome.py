"""What a step or a run came to (`Outcome`), which of several is the most urgent, and the number
the run ledger records for each. jobs/ turns an outcome into the process's exit code.
"""
from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

__all__ = ["Outcome", "RECORDED_CODES", "URGENCY", "most_urgent"]


class Outcome(str, Enum):
    DONE = "done"
    PROBLEMS = "problems"  # done, but data problems were found and reported
    CONFIG = "config"  # a configuration problem (or a broken installation): a person must act
    TEMPORARY = "temporary"  # the bank or the database was unreachable, or the run was stopped: retry
    LOCKED = "locked"  # skipped: another run holds the lock, nothing changed


# Of a run's steps, the most urgent outcome is the run's: a person must act first; a retry may
# then finish the night; data problems stay reported.
URGENCY = (Outcome.CONFIG, Outcome.TEMPORARY, Outcome.PROBLEMS, Outcome.DONE)


def most_urgent(outcomes: Iterable[Outcome]) -> Outcome:
    seen = set(outcomes)
    return next((o for o in URGENCY if o in seen), Outcome.DONE)


# The number recorded for an outcome: the run ledger's `runs.exit_code` (shown by `achbatch
# status`), the `achbatch_last_run_exit_code` metric and the "exit N" of the summary line are, by
# the contract of DESIGN.md, the exit code the run ends with. The ledger is written in batch/, so
# the table lives here, once; jobs/exitcodes.py takes its codes from it.
RECORDED_CODES: dict[Outcome, int] = {
    Outcome.DONE: 0,
    Outcome.PROBLEMS: 1,
    Outcome.CONFIG: 2,
    Outcome.LOCKED: 3,
    Outcome.TEMPORARY: 75,
}
