"""twistd plugin: ``twistd -n openclaw --port 18789 --token SECRET``.

This directory must stay without ``__init__.py``: Twisted scans every ``twisted/plugins``
directory on ``sys.path`` and a regular package here would hide Twisted's own plugins.
"""
from twisted.application.service import ServiceMaker

openclaw = ServiceMaker(
    "OpenClaw gateway",
    "openclaw.tap",
    "Control-plane gateway for OpenClaw operator apps and capability nodes",
    "openclaw",
)
