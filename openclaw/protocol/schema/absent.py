"""Params of the methods of families this gateway does not have (``methods/absent.py``).

They are validated like every other method's, with the reference's param shapes, so a client
that sends something malformed hears so instead of a silent empty answer.
"""
from .common import Schema

ABSENT_METHOD_PARAMS: dict[str, Schema] = {}
