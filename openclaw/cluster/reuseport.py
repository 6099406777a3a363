"""A TCP listening endpoint with ``SO_REUSEPORT``: several gateway processes on one port.

The kernel spreads new connections over every process listening this way, so N processes on
one machine use N cores. The socket is made here (Twisted's TCP endpoints do not set the option)
and handed to the reactor with ``adoptStreamPort``.
"""
from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import fail, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    def __init__(self, reactor: Any, port: int, interface: str, backlog: int = 1024):
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, factory: Any) -> Any:
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
            port = self._reactor.adoptStreamPort(sock.fileno(), family, factory)
        except Exception:
            return fail()
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor
        return succeed(port)
