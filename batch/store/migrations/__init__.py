"""Alembic migrations of the achbatch schema, shipped inside the package (run by batch.store.db.upgrade)."""
