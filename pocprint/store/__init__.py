"""Persistence: tables, the unit of work, migrations and the content-addressed file store."""
