"""Persistence: the schema, migrations, database access, encryption, durable files, locks."""
