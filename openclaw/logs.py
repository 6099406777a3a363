"""Log observers for ``twistd --logger``: text (twistd's default) or JSON lines on stdout.

``twistd -n --logger openclaw.logs.json_stdout_observer openclaw …`` gives one JSON object per
line (``twisted.logger.eventAsJSON``), which log shippers can read without parsing prose.
"""
from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver, textFileLogObserver


def json_stdout_observer() -> ILogObserver:
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def text_stdout_observer() -> ILogObserver:
    return textFileLogObserver(sys.stdout)
