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


def port_in_range(low: int = 23100, high: int = 23999) -> int:
    """A free loopback port in this suite's range (for servers that must come back on the same
    port after a restart)."""
    for port in range(low + secrets.randbelow(high - low), high):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SkipTest(f"no free port in {low}-{high}")


class PrivateRedis:
    """A redis-server of the test's own (no persistence) that the test can stop and start again
    on the same port, leaving the machine's Redis alone."""

    def __init__(self, testcase) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise SkipTest("redis-server is not installed: the Redis restart test needs its own server")
        self.port = port_in_range()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        testcase.addCleanup(self.stop)

    def start(self):
        """Fires once the server accepts connections."""
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
        from twisted.internet.protocol import ProcessProtocol

        ready, ended = Deferred(), Deferred()

        class Watch(ProcessProtocol):
            buffer = b""

            def outReceived(self, data):
                self.buffer += data
                if b"Ready to accept connections" in self.buffer and not ready.called:
                    ready.callback(None)

            def processEnded(self, reason):
                if not ready.called:
                    ready.errback(RuntimeError(f"redis-server ended: {self.buffer[-500:]!r}"))
                ended.callback(None)

        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = reactor.spawnProcess(Watch(), self.binary, args, env=None)
        self.ended = ended
        return ready.addTimeout(20, reactor)

    def stop(self):
        """Kill the server; fires once it has exited."""
        from twisted.internet.defer import succeed

        if self.process is None or self.process.pid is None:
            return succeed(None)
        self.process.signalProcess("KILL")
        self.process = None
        return self.ended


class CuttableProxy:
    """A TCP proxy in front of a server (PostgreSQL) that the test can cut — refusing new
    connections and dropping the open ones, as a server that went down — and restore."""

    def __init__(self, testcase, target_host: str, target_port: int) -> None:
        from twisted.internet.defer import Deferred
        from twisted.protocols.portforward import ProxyClient, ProxyClientFactory, ProxyFactory, ProxyServer

        self.port = port_in_range()
        self.open: dict = {}  # each side of each proxied connection -> Deferred fired when it is lost
        proxy = self

        class Tracked:
            def connectionMade(self):
                proxy.open[self] = Deferred()
                super().connectionMade()

            def connectionLost(self, reason):
                super().connectionLost(reason)
                lost = proxy.open.pop(self, None)
                if lost is not None:
                    lost.callback(None)

        class TrackedClient(Tracked, ProxyClient):
            pass

        class TrackedClientFactory(ProxyClientFactory):
            protocol = TrackedClient

        class TrackedServer(Tracked, ProxyServer):
            clientProtocolFactory = TrackedClientFactory

        self.factory = ProxyFactory(target_host, target_port)
        self.factory.protocol = TrackedServer
        self.listening = None
        testcase.addCleanup(self.cut)

    def restore(self) -> None:
        from twisted.internet import reactor

        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")

    def cut(self):
        """Stop listening and drop every proxied connection; fires once all are closed."""
        from twisted.internet.defer import gatherResults

        waits = list(self.open.values())
        for side in list(self.open):
            side.transport.abortConnection()
        listening, self.listening = self.listening, None
        if listening is not None:
            waits.append(listening.stopListening())
        return gatherResults([d for d in waits if d is not None])
