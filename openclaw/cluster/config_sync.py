"""Config changes made through ``config.set`` / ``config.patch`` / ``config.apply`` on one
instance reach every instance.

The instance that took a client's write into use stores its text as the newest revision in the
PostgreSQL ``config_revisions`` table, then publishes only the revision's number on the control
channel (the text holds secrets: they stay in PostgreSQL, never on Redis). Each peer reads that
revision and puts it through its own reload path exactly as if a client had written it there:
:meth:`ConfigReloader.write` (the same validity and auth-downgrade checks, an atomic write of its
own file) and :meth:`ConfigReloader.consider` (hot apply or in-process restart per
``gateway.reload.mode``). The settings of one process — ``gateway.port``, ``gateway.bind``,
``gateway.customBindHost``, ``gateway.tls`` — keep this instance's own values.

Revisions are numbered by PostgreSQL, and an instance never applies one older than the newest
it wrote or applied, so two writes made at once on two instances end with every instance on the
later one. On start and after every bus reconnect an instance catches up with the newest
revision (it may have missed notices). Hand edits of a file stay on that machine.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from ..config.loader import ConfigError
from ..config.parsing import parse_config_text

PER_INSTANCE_PATHS = (("gateway", "port"), ("gateway", "bind"), ("gateway", "customBindHost"), ("gateway", "tls"))


def localized(text: str, current: Any) -> str:
    """The revision's text with this instance's own per-process settings (file thread)."""
    document = parse_config_text(text)
    if not isinstance(document, dict):
        return text
    own = current.parsed if current is not None and isinstance(current.parsed, dict) else {}
    changed = False
    for section, key in PER_INSTANCE_PATHS:
        theirs = (document.get(section) or {}).get(key) if isinstance(document.get(section), dict) else None
        mine = (own.get(section) or {}).get(key) if isinstance(own.get(section), dict) else None
        if theirs == mine:
            continue
        changed = True
        block = document.setdefault(section, {})
        if mine is None:
            block.pop(key, None)
        else:
            block[key] = mine
    # Unchanged: keep the text as written (comments and all).
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n" if changed else text


def _insert_revision(connection: Any, text: str, instance_id: str, now_ms: int) -> int:
    row = connection.execute(
        "INSERT INTO config_revisions (text, instance_id, created_at) VALUES (?, ?, ?) RETURNING id", (text, instance_id, now_ms)
    ).fetchone()
    return int(row[0])


def _read_revision(connection: Any, revision: int | None) -> tuple[int, str, str] | None:
    if revision is None:
        row = connection.execute("SELECT id, text, instance_id FROM config_revisions ORDER BY id DESC LIMIT 1").fetchone()
    else:
        row = connection.execute("SELECT id, text, instance_id FROM config_revisions WHERE id = ?", (revision,)).fetchone()
    return (int(row[0]), row[1], row[2]) if row else None


class ClusterConfigSync:
    _log = Logger()

    def __init__(self, clock: Any, database: Any, bus: Any):
        self._clock = clock
        self._db = database
        self._bus = bus
        self.control: Any = None  # the ConfigReloader; None when the gateway has no config file
        self.revision = 0  # the newest revision written or applied here
        self._applying: Deferred[Any] | None = None
        bus.config_sync = self

    def attach(self, control: Any) -> None:
        """Share this reloader's client writes, and apply the peers' through it."""
        self.control = control
        control.on_written = self.shared

    def shared(self, text: str) -> Deferred[Any]:
        """A ``config.*`` write taken into use here: the newest revision, announced to peers."""
        now_ms = int(self._clock.seconds() * 1000)
        d: Deferred[Any] = self._db.run(_insert_revision, text, self._bus.instance_id, now_ms)

        def stored(revision: int) -> Any:
            self.revision = max(self.revision, revision)
            return self._bus.publish(self._bus.control_channel, {"k": "config", "i": self._bus.instance_id, "rev": revision})

        d.addCallback(stored)
        d.addErrback(lambda failure: self._log.error("config change not shared with the cluster: {error}", error=failure.getErrorMessage()))
        return d

    def received(self, revision: int | None) -> Deferred[Any]:
        """A peer's revision (None: the newest, to catch up); applied in order, one at a time."""
        previous = self._applying
        d: Deferred[Any] = self._apply(revision) if previous is None else previous.addBoth(lambda _: self._apply(revision))
        self._applying = d

        def done(result: Any) -> Any:
            if self._applying is d:
                self._applying = None
            return result

        d.addBoth(done)
        d.addErrback(lambda failure: self._log.error("config revision from the cluster not applied: {error}", error=failure.getErrorMessage()))
        return d

    @inlineCallbacks
    def _apply(self, revision: int | None) -> Any:
        control = self.control
        if control is None or (revision is not None and revision <= self.revision):
            return
        found = yield self._db.run(_read_revision, revision)
        if found is None or found[0] <= self.revision:
            return
        number, text, origin = found
        self.revision = number
        current = yield control.read_current()
        wanted = yield control.off_thread(localized, text, current)
        if current.exists and current.raw == wanted:
            return  # already what this instance's file says
        try:
            written = yield control.write(wanted)
        except ConfigError as exc:
            self._log.error("config revision {rev} from instance {origin} refused here: {error}", rev=number, origin=origin, error=exc)
            return
        if not written.valid:
            self._log.error("config revision {rev} from instance {origin} is invalid here: {issues}", rev=number, origin=origin, issues=written.issue_summary())
            return
        self._log.info("config revision {rev} from instance {origin} taken", rev=number, origin=origin)
        control.consider(written)
