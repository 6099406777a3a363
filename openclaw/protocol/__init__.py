"""The wire protocol: constants, JSON Schemas, validators, error shapes and frame encoding.

Everything a client in another language needs to know about frames lives here and nowhere
else; ``python -m openclaw.protocol.schema`` exports it as one JSON document.
"""
