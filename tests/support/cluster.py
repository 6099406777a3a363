"""Real PostgreSQL and Redis for cluster tests: a fresh schema / key prefix per test, cleaned up.

The servers are expected at 127.0.0.1:5432 (trust auth, database ``test``) and 127.0.0.1:6379,
or wherever ``OPENCLAW_TEST_POSTGRES`` / ``OPENCLAW_TEST_REDIS`` point. A test skips, saying
which server it could not reach, only when one is absent.
"""
from __future__ import annotations

import os
import secrets
import socket

from twisted.trial.unittest import SkipTest

POSTGRES_DSN = os.environ.get("OPENCLAW_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")
REDIS_URL = os.environ.get("OPENCLAW_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_postgres() -> str:
    try:
        import psycopg
    except ImportError:
        raise SkipTest("psycopg is not installed (pip install '.[test]')") from None
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=3).close()
    except psycopg.Error as exc:
        raise SkipTest(f"PostgreSQL not reachable at {POSTGRES_DSN!r}: {exc}") from None
    return POSTGRES_DSN


def require_redis() -> str:
    from openclaw.cluster.options import parse_redis_url

    address = parse_redis_url(REDIS_URL)
    try:
        with socket.create_connection((address.host, address.port), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as exc:
        raise SkipTest(f"Redis not reachable at {REDIS_URL!r}: {exc}") from None
    return REDIS_URL


def fresh_schema(testcase) -> str:
    """A new, empty schema name for this test; dropped (with its Redis keys) at cleanup."""
    import psycopg

    from openclaw.cluster.schema import drop_schema

    schema = f"t_{secrets.token_hex(6)}"

    def drop() -> None:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            drop_schema(connection, schema)
        _delete_redis_keys(f"{schema}:*")

    testcase.addCleanup(drop)
    return schema


def _delete_redis_keys(pattern: str) -> None:
    """Synchronous cleanup of a test's keys (a plain socket: cleanup runs after the reactor test)."""
    from openclaw.cluster.options import parse_redis_url

    address = parse_redis_url(REDIS_URL)
    try:
        with socket.create_connection((address.host, address.port), timeout=3) as sock:
            reader = sock.makefile("rb")

            def command(*args: str) -> object:
                sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args))
                return _read_reply(reader)

            cursor = "0"
            while True:
                cursor, keys = command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")  # type: ignore[misc]
                if keys:
                    command("DEL", *keys)
                if cursor == "0":
                    break
    except OSError:
        pass


def _read_reply(reader):
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise OSError(f"unexpected Redis reply {line!r}")


def missing_modules() -> str | None:
    """Why cluster tests cannot even be imported here (a venv without the cluster extras), or None."""
    try:
        import psycopg  # noqa: F401
        import txredisapi  # noqa: F401
    except ImportError as exc:
        return f"cluster mode's libraries are not installed ({exc}); pip install '.[test]'"
    return None
