"""Durable state in the state directory: SQLite databases driven off the reactor thread."""
