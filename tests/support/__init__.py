"""Shared test helpers: a gateway on loopback, a WebSocket test client, signed connects."""
