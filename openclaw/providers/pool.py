"""An HTTP connection pool that does not log a line for every upstream connection.

``twisted.web.client.HTTPConnectionPool`` builds one ``_HTTP11ClientFactory`` per new
connection, and factories are ``noisy`` by default: every model call that opens a connection
logged "Starting factory …" and "Stopping factory …", drowning the lines people look for.
Subclassing the factory the pool uses (its documented ``_factory`` hook) is the way Twisted
offers to quiet it.
"""
from __future__ import annotations

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


class QuietConnectionPool(HTTPConnectionPool):
    """``HTTPConnectionPool`` whose per-connection factories log nothing when they start or stop."""

    _factory = _QuietHTTP11ClientFactory
