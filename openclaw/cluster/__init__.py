"""Cluster mode: several gateway processes share state on PostgreSQL and coordinate on Redis.

Off unless ``--cluster-postgres`` and ``--cluster-redis`` are given (see docs/cluster.md); the
single-process gateway imports nothing from here.
"""
