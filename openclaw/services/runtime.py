"""The root service: the ``reload`` service plus the gateway's service tree, restartable in-process.

Children start one after another, each waiting for the previous one's asynchronous start (stores
load before the listeners open), and stop in reverse order the same way (the port closes first,
the stores last). A restart stops the tree (clients get ``shutdown`` with ``restartExpectedMs``
and close 1012), builds a new one from the current settings, and starts it: same process, same
port when unchanged, the reload service untouched. The tree is one child ``MultiService`` (``gateway``): a restart is
``disownServiceParent()`` (which stops it), a new tree, ``setServiceParent()`` (which starts it),
with no edits to ``MultiService`` internals. When the new tree cannot start (its port is
taken, say), what did start of it is stopped and a tree from the last good settings (those that
were running) is started instead, so the gateway stays reachable; the reload service records
the config as not applied (``rolled-back``).
"""
from __future__ import annotations

import atexit
import os
import signal
import sys
from typing import Any
from collections.abc import Callable, Generator

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

RESTART_EXPECTED_MS = 1500


def exit_status_at_exit(status: int) -> None:
    """Make the process end with ``status`` once twistd has finished shutting down.

    twistd has no exit-status API: when the reactor stops it cleans up (logs, pidfile) and
    returns, and the process exits 0. This hook runs last, at interpreter exit, flushes the
    standard streams and ends the process with ``status`` instead.
    """

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)

    atexit.register(exit_now)


class ExecutorService(Service):
    """Stops a worker-thread executor with the tree (started first, so it stops last)."""

    def __init__(self, executor: Any):
        self._executor = executor

    def stopService(self) -> None:
        if self.running:
            super().stopService()
            self._executor.stop()


def _raised_instead(failure: Failure) -> None:
    """A child's failed start that was raised to the caller: nothing more to report here."""


class OrderedMultiService(MultiService):
    """A MultiService whose start and stop wait for each child before the next.

    ``started`` is the Deferred of the last ``startService``: ``MultiService.addService`` starts
    a child added to a running parent but drops what its start returns, so whoever adds one
    waits on this instead (buildbot's AsyncMultiService returns it from ``addService``).
    """

    _log = Logger()
    started: Deferred[None] | None = None

    def startService(self) -> Deferred[None]:
        Service.startService(self)
        self.started = self._start_from(list(self), 0)
        return self.started

    def _start_from(self, children: list[Any], index: int) -> Deferred[None]:
        # Synchronous failures (the first listener failing to bind) raise right here, so twistd
        # reports them and exits instead of idling with nothing listening.
        while index < len(children):
            result = children[index].startService()
            index += 1
            if isinstance(result, Deferred):
                if result.called and isinstance(result.result, Failure):
                    failure = result.result
                    result.addErrback(_raised_instead)
                    failure.raiseException()
                if not result.called:
                    return result.addCallback(self._start_next, children, index)
        return succeed(None)

    def _start_next(self, _: object, children: list[Any], index: int) -> Deferred[None]:
        return self._start_from(children, index)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self._stop_all(list(reversed(list(self))))

    @inlineCallbacks
    def _stop_all(self, children: list[Any]) -> Generator[Deferred[Any], Any, None]:
        for child in children:
            if not child.running:
                continue
            try:
                yield maybeDeferred(child.stopService)
            except Exception:
                self._log.failure("stopping {name} failed", name=child.name)


class GatewayTree(OrderedMultiService):
    """One gateway's services (``build_tree``'s list), started in order by ``startService``.

    Nothing starts at privileged start: the listeners open in ``startService``, after the
    stores they need have loaded, at start-up as on a restart.
    """

    def __init__(self, children: list[Service]):
        super().__init__()
        self.setName("gateway")
        for child in children:
            child.setServiceParent(self)

    def privilegedStartService(self) -> None:
        pass


class GatewayRuntime(OrderedMultiService):
    """``reload`` first, then the ``gateway`` tree that ``build_tree(settings)`` gives, swapped on restart."""

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        settings: Any,
        build_tree: Callable[[Any], tuple[Any, list[Service]]],
        install_signals: bool = False,
        exit_with: Callable[[int], None] | None = None,
        reloader: Any = None,
    ):
        """``exit_with`` is given when the gateway owns the process (twistd): a failed start
        then stops the reactor and sets the exit status through it. ``reloader`` (the config
        reload service) is the first child: it starts before the tree and stops after it."""
        super().__init__()
        self._exit_with = exit_with
        self.setName("openclaw")
        self._reactor = reactor
        self._build_tree = build_tree
        self._install_signals = install_signals
        self._previous_handlers: dict[int, Any] = {}
        self.settings = settings
        self.restarts = 0
        self.reloader = reloader
        if reloader is not None:
            reloader.setName("reload")
            reloader.setServiceParent(self)
            reloader.on_change = self._config_changed
        self.gateway, children = build_tree(settings)
        self.tree: GatewayTree | None = GatewayTree(children)
        self.tree.setServiceParent(self)

    def _config_changed(self, payload: Any) -> None:
        self.gateway.clients.broadcast("config.changed", payload)
    def startService(self) -> Deferred[None]:
        if self._install_signals:
            self._handle(signal.SIGHUP, lambda: self.reloader.check_now() if self.reloader is not None else None)
            self._handle(signal.SIGUSR1, lambda: self._signalled_restart())
        try:
            d = super().startService()
        except Exception:
            d = fail()
        return d.addErrback(self._start_failed)

    def _start_failed(self, failure: Failure) -> Deferred[None]:
        """Stop what did start; under twistd also stop the reactor, so the process exits.

        Under twistd nobody waits on ``startService``'s Deferred, so the failure is consumed
        here once logged (otherwise it is logged a second time as an unhandled error), and the
        process exits with status 1 so a supervisor sees it; an embedding application gets the
        failure back (the errback returns a fired Deferred so that both outcomes have one type).
        """
        self._log.failure("the gateway could not start", failure)
        stopping = self.stopService()
        if self._exit_with is not None:
            self._exit_with(1)
            stopping.addBoth(self._stop_reactor)
            return succeed(None)
        return fail(failure)

    def _stop_reactor(self, _: object) -> None:
        self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        for number, previous in self._previous_handlers.items():
            signal.signal(number, previous)
        self._previous_handlers.clear()
        return super().stopService()

    def _handle(self, number: int, action: Callable[[], Any]) -> None:
        self._previous_handlers[number] = signal.signal(number, lambda *_: self._reactor.callFromThread(action))

    def _signalled_restart(self) -> None:
        if self.reloader is None:
            self._log.warn("SIGUSR1: restart skipped, no reload service to carry it out")
            return
        self._log.info("SIGUSR1: in-process restart requested")
        self.reloader.request_restart("SIGUSR1")

    def apply_hot(self, settings: Any, plan: Any) -> None:
        self.settings = settings
        self.gateway.apply_settings(settings, plan.actions)

    @inlineCallbacks
    def restart(self, reason: str) -> Generator[Deferred[Any], Any, None]:
        """Stop the tree, build a new one from the current settings, start it (or the last good one)."""
        self._log.info("restarting the gateway in-process ({reason})", reason=reason)
        websocket = self._tree_child("websocket")
        if websocket is not None:
            websocket.restart_expected_ms = RESTART_EXPECTED_MS
            websocket.shutdown_reason = "gateway restarting"
        yield self._discard_tree()
        self.restarts += 1
        reloader = self.reloader
        previous = self.settings
        attempted = reloader.snapshot if reloader is not None else None
        try:
            settings = reloader.current_settings() if reloader is not None else self.settings
            yield self._start_tree(settings)
        except Exception:
            failure = Failure()
            error = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
            self._log.error(
                "in-process restart failed: {error}; starting the gateway again with the settings that were running",
                error=error,
            )
            # The traceback only at debug (as text, not log.failure: this failure is handled).
            self._log.debug("in-process restart failure:\n{traceback}", traceback=failure.getTraceback())
            yield self._discard_tree()
            recovered = True
            try:
                fallback = reloader.running_settings() if reloader is not None else previous
                yield self._start_tree(fallback)
            except Exception:
                recovered = False
                self._log.failure("the gateway could not start again with the last good settings; nothing is listening")
                yield self._discard_tree()
            if reloader is not None:
                reloader.restart_failed(attempted, error, recovered)
            return
        if reloader is not None:
            reloader.restart_succeeded(attempted)

    def _tree_child(self, name: str) -> Any:
        try:
            return self.tree.getServiceNamed(name) if self.tree is not None else None
        except KeyError:
            return None

    def _start_tree(self, settings: Any) -> Deferred[None]:
        """Build a tree from ``settings`` and add it: a running root starts it, in order."""
        self.settings = settings
        self.gateway, children = self._build_tree(settings)
        tree = self.tree = GatewayTree(children)
        try:
            tree.setServiceParent(self)
        except Exception:
            return fail()
        return tree.started if self.running and tree.started is not None else succeed(None)

    def _discard_tree(self) -> Deferred[None]:
        """Stop (children in reverse) and remove the current tree, if there is one."""
        tree, self.tree = self.tree, None
        if tree is None or tree.parent is None:
            return succeed(None)
        return maybeDeferred(tree.disownServiceParent)
