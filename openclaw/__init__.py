"""A Twisted gateway that speaks the OpenClaw gateway protocol (v4, with the v3 node window)."""

__version__ = "0.1.0"
