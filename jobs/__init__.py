"""The runner: the `achbatch` CLI, settings loading, wiring, the nightly pipeline, the run lock and
ledger, the scheduler and deployment unit rendering. Only this package prints, exits or reads the
environment."""
