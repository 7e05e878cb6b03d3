"""What a step or a run came to (`Outcome`) and which of several is the most urgent. jobs/ turns an
outcome into the process's exit code (jobs/exitcodes.py) and tells the pipeline what to record.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

__all__ = ["ExitCodes", "Outcome", "URGENCY", "most_urgent"]


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


# The number a run ledger records for each outcome (`runs.exit_code`, shown by `achbatch status`,
# the `achbatch_last_run_exit_code` metric, the "exit N" of the summary line) is, by the contract
# of DESIGN.md, the process's exit code. That table belongs to the CLI: jobs/exitcodes.py defines it
# and hands it to the pipeline (`run_pipeline(..., exit_codes=...)`); batch/ only reports outcomes.
ExitCodes = Mapping[Outcome, int]
