"""``openclaw-gateway state …``: the cluster schema and the one-shot import of a SQLite state dir.

    openclaw-gateway state migrate --cluster-postgres DSN [--cluster-schema openclaw]
    openclaw-gateway state status  --cluster-postgres DSN
    openclaw-gateway state import  --cluster-postgres DSN --state-dir ~/.openclaw

These are offline tools (no reactor, plain blocking psycopg): run them before starting, or while
upgrading, the gateways. ``import`` copies devices, tokens, pairing requests, nodes, sessions and
transcripts from a single-process state directory into an empty cluster schema, in one
transaction, so it either all lands or nothing does.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any, TextIO
from collections.abc import Sequence

import psycopg

from . import schema as cluster_schema
from .options import DEFAULT_SCHEMA, ENV_POSTGRES, ENV_SCHEMA, ClusterConfigError, check_dsn

# (file, table, columns) in copy order; ids are kept so transcript order and paging survive.
IMPORTED = (
    ("devices.sqlite", "paired_devices", ("device_id", "record")),
    ("devices.sqlite", "device_tokens", ("device_id", "role", "record")),
    ("devices.sqlite", "pending_requests", ("request_id", "device_id", "record")),
    ("nodes.sqlite", "paired_nodes", ("node_id", "record")),
    ("nodes.sqlite", "pending_nodes", ("request_id", "node_id", "record")),
    (
        "sessions.sqlite",
        "sessions",
        ("id", "key", "agent_id", "session_id", "updated_at", "label", "spawned_by", "hidden", "archived",
         "search_text", "first_user_text", "last_message_preview", "entry"),
    ),
    ("sessions.sqlite", "transcript", ("id", "session_id", "entry")),
    (
        "sessions.sqlite",
        "usage_ledger",
        ("ts", "agent_id", "session_key", "provider", "model", "input", "output", "cache_read", "cache_write", "total"),
    ),
)
BATCH = 1000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openclaw-gateway state", description="Cluster-mode storage on PostgreSQL.")
    parser.add_argument("action", choices=("migrate", "status", "import"))
    parser.add_argument("--cluster-postgres", default=os.environ.get(ENV_POSTGRES), help=f"connection string [${ENV_POSTGRES}]")
    parser.add_argument(
        "--cluster-schema", default=os.environ.get(ENV_SCHEMA, DEFAULT_SCHEMA), help=f"schema [${ENV_SCHEMA}, else {DEFAULT_SCHEMA}]"
    )
    parser.add_argument("--state-dir", help="import: the single-process state directory to copy from")
    return parser


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(list(argv))
    try:
        if not args.cluster_postgres:
            raise ClusterConfigError(f"--cluster-postgres (or {ENV_POSTGRES}) is required")
        check_dsn(args.cluster_postgres)
        with psycopg.connect(args.cluster_postgres, autocommit=True, connect_timeout=10) as connection:
            if args.action == "migrate":
                before, after = cluster_schema.migrate(connection, args.cluster_schema)
                out.write(f"schema {args.cluster_schema}: version {before} -> {after}\n")
            elif args.action == "status":
                found = cluster_schema.current_version(connection, args.cluster_schema)
                state = "missing" if found is None else f"version {found}"
                out.write(f"schema {args.cluster_schema}: {state} (this gateway needs {cluster_schema.SCHEMA_VERSION})\n")
            else:
                if not args.state_dir:
                    raise ClusterConfigError("import needs --state-dir")
                counts = import_state_dir(connection, args.cluster_schema, args.state_dir)
                out.write("".join(f"{table}: {count} row(s)\n" for table, count in counts.items()))
    except (ClusterConfigError, cluster_schema.SchemaError, ImportRefused) as exc:
        err.write(f"openclaw-gateway state: {exc}\n")
        return 2
    except psycopg.Error as exc:
        err.write(f"openclaw-gateway state: PostgreSQL error: {exc}\n")
        return 1
    return 0


class ImportRefused(Exception):
    """The import would mix two states (target not empty) or has nothing to read."""


def import_state_dir(connection: Any, schema: str, state_dir: str) -> dict[str, int]:
    """Copy a single-process state directory into ``schema`` (migrated first); all or nothing."""
    files = {name: os.path.join(state_dir, name) for name in {entry[0] for entry in IMPORTED}}
    if not any(os.path.exists(path) for path in files.values()):
        raise ImportRefused(f"no devices/nodes/sessions .sqlite files in {state_dir}")
    cluster_schema.migrate(connection, schema)
    counts: dict[str, int] = {}
    with connection.transaction():
        connection.execute(f'SET LOCAL search_path TO "{schema}"')
        for table in {entry[1] for entry in IMPORTED}:
            if connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                raise ImportRefused(f"table {schema}.{table} is not empty; import only into a new schema")
        for name, table, columns in IMPORTED:
            path = files[name]
            counts[table] = _copy_table(connection, path, table, columns) if os.path.exists(path) else 0
        for table in ("sessions", "transcript"):
            connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        connection.execute("UPDATE session_count SET visible = (SELECT count(*) FROM sessions WHERE hidden = 0)")
    return counts


def _copy_table(connection: Any, path: str, table: str, columns: Sequence[str]) -> int:
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        exists = source.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        if not exists:
            return 0
        cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})"
        copied = 0
        with connection.cursor() as target:
            while rows := cursor.fetchmany(BATCH):
                target.executemany(insert, rows)
                copied += len(rows)
        return copied
    finally:
        source.close()
