"""How many examples a property test draws. `scripts/test.sh unit` (the quick feedback run) sets
ACHBATCH_QUICK=1 and draws a tenth of them (at least 10); the whole suite, CI included, draws all."""
import os

QUICK = os.environ.get("ACHBATCH_QUICK", "") not in ("", "0")


def examples(n: int) -> int:
    return max(10, n // 10) if QUICK else n
