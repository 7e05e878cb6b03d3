"""The runner: the `achbatch` CLI (one jobs/cmd_*.py per command group), settings loading, exit
codes, logging, the built-in scheduler and deployment unit rendering. Only this package prints,
exits or reads the environment; the services, their wiring from settings (batch/run/wiring.py), the
nightly pipeline and its run ledger (batch/run/nightly.py) and the run lock live in batch/."""
