"""``twistd openclaw``: option checks, plugin discovery, and the service tree ``makeService`` builds.

The tree is built on a ``MemoryReactorClock`` so that listening is recorded rather than performed.
The device store runs on its own one-thread pool; the reactor below implements ``callFromThread``
with a queue that the test drains explicitly, so the worker's results are delivered on the test's
thread in a deterministic order and stopping the tree really joins the worker.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any
from collections.abc import Callable

from twisted.application.service import IServiceMaker, MultiService, Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from openclaw import tap
from openclaw.gateway import Gateway
from openclaw.http.site import GatewaySite
from openclaw.settings import GatewaySettings
from openclaw.services.listener import EndpointListener
from openclaw.services.runtime import GatewayRuntime
from openclaw.stores.preflight import GatewayStartError
from openclaw.stores.sqlite import StoreUnavailable

WORKER_TIMEOUT_S = 10.0
SQLITE_THREAD_PREFIX = "PoolThread-sqlite:"


@implementer(IReactorFromThreads)
class ThreadedMemoryReactor(MemoryReactorClock):
    """A MemoryReactorClock that accepts calls from worker threads and runs them when asked.

    ``getThreadPool`` fails loudly: the gateway's disk work must use its own pool (which it can
    join on stop), never the reactor's shared one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._from_threads: queue.Queue = queue.Queue()
        self.thread_pool_requested = False

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._from_threads.put((f, args, kwargs))

    def getThreadPool(self) -> Any:
        self.thread_pool_requested = True
        raise AssertionError("the gateway must not use the reactor's shared thread pool")

    def run_thread_results(self, done: Callable[[], bool]) -> None:
        """Run calls delivered from worker threads until ``done()``; fail instead of hanging."""
        while not done():
            try:
                f, args, kwargs = self._from_threads.get(timeout=WORKER_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError("a worker thread never delivered its result") from None
            f(*args, **kwargs)


class RefusingReactor(ThreadedMemoryReactor):
    """Refuses to listen on the given interfaces, as a host without IPv6 refuses ``::1``."""

    def __init__(self, refused: tuple[str, ...]) -> None:
        super().__init__()
        self._refused = refused

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if interface in self._refused:
            raise CannotListenError(interface, port, OSError("address not available"))
        return super().listenTCP(port, factory, backlog, interface)


def pool_threads() -> list[threading.Thread]:
    """Every worker thread a gateway tree owns (stores, the config file, the files executor)."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("PoolThread-")]


def sqlite_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(SQLITE_THREAD_PREFIX)]


def _without_openclaw_environment(testcase: SynchronousTestCase) -> None:
    """``Options`` reads ``os.environ``; keep a developer's OPENCLAW_* variables out of the tests."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("OPENCLAW_")}
    for key in saved:
        del os.environ[key]
    testcase.addCleanup(os.environ.update, saved)


class _TreeMixin:
    """Parse options against a temp state dir and build the tree on a recording reactor."""

    def setUp(self) -> None:
        _without_openclaw_environment(self)
        self.state_dir = os.path.abspath(self.mktemp())

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["--state-dir", self.state_dir, *args])
        return options

    def build(self, *args: str, reactor: ThreadedMemoryReactor | None = None) -> tuple[MultiService, ThreadedMemoryReactor]:
        reactor = reactor if reactor is not None else ThreadedMemoryReactor()
        root = tap.makeService(self.parse(*args), reactor=reactor)
        self.addCleanup(self._stop, root, reactor)
        return root, reactor

    def start(self, root: MultiService, reactor: ThreadedMemoryReactor) -> None:
        root.startService()
        reactor.run_thread_results(
            lambda: root.gateway.pairing.loaded and root.gateway.sessions_loaded and root.gateway.node_pairing.loaded
        )

    def _stop(self, root: MultiService, reactor: ThreadedMemoryReactor) -> None:
        if root.running:
            stopped = root.stopService()
            reactor.run_thread_results(lambda: stopped.called)
            self.successResultOf(stopped)


class ServiceTreeTests(_TreeMixin, SynchronousTestCase):
    """The shape of the tree: names, order, and one listener per interface."""

    def test_root_is_a_named_multiservice(self):
        """Embedding applications find the gateway's tree by this name."""
        root, _ = self.build("--token", "secret")
        self.assertIsInstance(root, MultiService)
        self.assertEqual(root.name, "openclaw")

    def test_children_in_start_order(self):
        """State first, listeners last: nothing is accepted before the services it needs run."""
        root, _ = self.build("--token", "secret")
        self.assertEqual([service.name for service in root], ["reload", "gateway"])
        self.assertEqual(
            [service.name for service in root.tree],
            ["files", "log-file", "pairing", "node-pairing", "agents", "event-loop", "tick", "health", "heartbeat", "websocket", "listeners"],
        )

    def test_loopback_has_ipv4_and_ipv6_listeners(self):
        root, _ = self.build("--token", "secret")
        listeners = root.tree.getServiceNamed("listeners")
        self.assertEqual([service.name for service in listeners], ["127.0.0.1", "::1"])
        for service in listeners:
            self.assertIsInstance(service, EndpointListener)
            self.assertIsInstance(service.factory, GatewaySite)

    def test_both_listeners_share_one_site(self):
        """One Site means one set of routes and one WebSocket factory whichever address is used."""
        root, _ = self.build("--token", "secret")
        sites = {id(service.factory) for service in root.tree.getServiceNamed("listeners")}
        self.assertEqual(len(sites), 1)

    def test_lan_has_one_wildcard_listener(self):
        root, _ = self.build("--bind", "lan", "--token", "secret")
        self.assertEqual([service.name for service in root.tree.getServiceNamed("listeners")], ["0.0.0.0"])

    def test_gateway_is_exposed_for_embedding(self):
        root, _ = self.build("--token", "secret", "--port", "4321")
        self.assertIsInstance(root.gateway, Gateway)
        self.assertEqual(root.gateway.settings.port, 4321)
        self.assertIs(root.tree.getServiceNamed("pairing"), root.gateway.pairing)
        self.assertIs(root.tree.getServiceNamed("event-loop"), root.gateway.event_loop)

    def test_state_dir_is_created_private(self):
        """Device keys and tokens live there: only the owner may read it."""
        self.build("--token", "secret")
        self.assertTrue(os.path.isdir(self.state_dir))
        self.assertEqual(os.stat(self.state_dir).st_mode & 0o777, 0o700)

    def test_building_starts_no_thread(self):
        """``makeService`` runs before twistd forks into a daemon; a thread started there is lost."""
        before = sqlite_threads()
        self.build("--token", "secret")
        self.assertEqual(sqlite_threads(), before)

    def test_accepts_a_plain_mapping(self):
        """An embedding app may pass a dict instead of parsed Options; settings are resolved then."""
        reactor = ThreadedMemoryReactor()
        root = tap.makeService({"state-dir": self.state_dir, "token": "secret", "port": 2468}, reactor=reactor)
        self.addCleanup(self._stop, root, reactor)
        self.assertEqual(root.gateway.settings.port, 2468)
        self.assertEqual(root.gateway.settings.auth.mode, "token")


class ServiceLifecycleTests(_TreeMixin, SynchronousTestCase):
    """Starting listens on the configured port; stopping closes everything and joins the worker."""

    def test_start_listens_on_the_port_for_each_interface(self):
        root, reactor = self.build("--token", "secret", "--port", "19999")
        self.start(root, reactor)
        site = root.tree.getServiceNamed("listeners").getServiceNamed("127.0.0.1").factory
        self.assertEqual(
            [(port, factory, interface) for port, factory, _backlog, interface in reactor.tcpServers],
            [(19999, site, "127.0.0.1"), (19999, site, "::1")],
        )

    def test_lan_start_listens_on_the_wildcard(self):
        root, reactor = self.build("--bind", "lan", "--token", "secret")
        self.start(root, reactor)
        self.assertEqual([(s[0], s[3]) for s in reactor.tcpServers], [(18789, "0.0.0.0")])

    def test_not_ready_until_the_device_store_loaded(self):
        """A connect before the pairing table is read could not be checked, so readyz says no."""
        root, reactor = self.build("--token", "secret")
        self.assertIn("device-store", root.gateway.failing_checks())
        self.assertIn("session-store", root.gateway.failing_checks())
        self.start(root, reactor)
        self.assertEqual(root.gateway.failing_checks(), [])

    def test_stop_joins_the_sqlite_worker(self):
        """After stop no worker thread survives, so trial (and twistd) can exit cleanly."""
        root, reactor = self.build("--token", "secret")
        self.start(root, reactor)
        self.assertEqual(len(sqlite_threads()), 3)  # devices, sessions and nodes
        stopped = root.stopService()
        reactor.run_thread_results(lambda: stopped.called)
        self.successResultOf(stopped)
        self.assertEqual(sqlite_threads(), [])
        self.assertFalse(reactor.thread_pool_requested)

    def test_stop_stops_listening_and_refuses_connects(self):
        """The ports close and the WebSocket side stops admitting before the state is closed."""
        root, reactor = self.build("--token", "secret")
        self.start(root, reactor)
        self.assertTrue(root.gateway.accepting)
        stopped = root.stopService()
        reactor.run_thread_results(lambda: stopped.called)
        self.successResultOf(stopped)
        self.assertFalse(root.gateway.accepting)
        self.assertEqual([service.running for service in root.tree.getServiceNamed("listeners")], [0, 0])
        self.assertEqual([service.running for service in root], [0, 0])
        self.assertEqual([service.running for service in root.tree], [0] * 11)

    def test_periodic_services_run_on_the_injected_reactor(self):
        """Ticks are scheduled on the reactor given to makeService, never the global one."""
        root, reactor = self.build("--token", "secret")
        self.start(root, reactor)
        self.assertTrue(reactor.getDelayedCalls())
        stopped = root.stopService()
        reactor.run_thread_results(lambda: stopped.called)
        self.assertEqual([call for call in reactor.getDelayedCalls() if call.active()], [])

    def test_missing_ipv6_loopback_does_not_stop_start_up(self):
        """Hosts without IPv6 still serve on 127.0.0.1; the ::1 failure is only logged."""
        reactor = RefusingReactor(refused=("::1",))
        root, _ = self.build("--token", "secret", reactor=reactor)
        self.start(root, reactor)
        self.assertEqual([s[3] for s in reactor.tcpServers], ["127.0.0.1"])
        self.assertEqual(len(self.flushLoggedErrors(CannotListenError)), 1)

    def test_unreadable_store_is_refused_before_anything_starts(self):
        """makeService opens every store inline first: a corrupt one is a GatewayStartError naming
        the file (under twistd: exit status 1), before any thread or listener exists."""
        for name, label in (("devices.sqlite", "device store"), ("sessions.sqlite", "session store"), ("nodes.sqlite", "node store")):
            self.state_dir = os.path.abspath(self.mktemp())
            os.makedirs(self.state_dir)
            corrupt = os.path.join(self.state_dir, name)
            with open(corrupt, "wb") as handle:
                handle.write(b"this is not an SQLite database" * 100)
            error = self.assertRaises(GatewayStartError, self.build, "--token", "secret")
            self.assertEqual(str(error), f"could not open the {label} at {corrupt}: file is not a database")
            self.assertEqual(pool_threads(), [])

    def test_failed_start_of_a_process_owning_runtime_sets_exit_status(self):
        """Under twistd (``exit_with`` given) any failed start stops the reactor with status 1."""
        reactor, statuses = MemoryReactorClock(), []

        class Failing(Service):
            def startService(self):
                super().startService()
                raise StoreUnavailable("the disk went away")

        runtime = GatewayRuntime(reactor, None, lambda settings: (None, [Failing()]), exit_with=statuses.append)
        self.assertIsNone(self.successResultOf(runtime.startService()))
        self.assertEqual(statuses, [1])
        self.assertTrue(reactor.hasStopped)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)

    def test_store_that_breaks_after_the_check_fails_start_up_naming_the_file(self):
        """A store that became unreadable between makeService and start-up still stops start-up
        with its path, instead of a gateway that listens but answers "gateway starting" forever."""
        for name, label in (("devices.sqlite", "device store"), ("sessions.sqlite", "session store"), ("nodes.sqlite", "node store")):
            self.state_dir = os.path.abspath(self.mktemp())
            root, reactor = self.build("--token", "secret")
            corrupt = os.path.join(self.state_dir, name)
            with open(corrupt, "wb") as handle:
                handle.write(b"this is not an SQLite database" * 100)
            outcome: list = []
            root.startService().addBoth(outcome.append)
            reactor.run_thread_results(lambda outcome=outcome: outcome)
            self.assertTrue(outcome[0].check(StoreUnavailable), outcome[0])
            self.assertIn(f"could not open the {label} at {corrupt}", outcome[0].getErrorMessage())
            self.flushLoggedErrors(StoreUnavailable)
            reactor.run_thread_results(lambda root=root: not root.running and not root.tree.getServiceNamed("agents").running)
            reactor.run_thread_results(lambda: not pool_threads())
            self.assertEqual(pool_threads(), [])  # every store and executor that started was stopped
            self.assertEqual(reactor.tcpServers, [])  # never listened
            with open(corrupt, "rb") as handle:
                self.assertTrue(handle.read().startswith(b"this is not"))  # left for the operator

    def test_ipv4_bind_failure_fails_start_up(self):
        """If the primary address cannot bind, start-up fails and what did start is stopped."""
        reactor = RefusingReactor(refused=("127.0.0.1",))
        root, _ = self.build("--token", "secret", reactor=reactor)
        outcome: list = []
        root.startService().addBoth(outcome.append)
        reactor.run_thread_results(lambda: outcome)
        self.assertTrue(outcome[0].check(CannotListenError), outcome[0])
        reactor.run_thread_results(lambda: not root.tree.getServiceNamed("agents").running)
        self.flushLoggedErrors(CannotListenError)
        self.assertFalse(root.running)
        reactor.run_thread_results(lambda: not pool_threads())
        self.assertEqual(pool_threads(), [])


class OptionsTests(_TreeMixin, SynchronousTestCase):
    """Mistakes on the command line are usage errors that say what to fix."""

    def test_settings_resolved_at_parse_time(self):
        """Config errors surface while parsing, before twistd daemonizes and loses stderr."""
        options = self.parse("--token", "secret", "--port", "1234")
        self.assertIsInstance(options["settings"], GatewaySettings)
        self.assertEqual(options["settings"].port, 1234)
        self.assertEqual(options["settings"].auth.mode, "token")

    def test_token_mode_without_token(self):
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--auth", "token")
        self.assertIn("token", str(caught.exception))

    def test_unknown_auth_mode(self):
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--auth", "bogus")
        self.assertIn("bogus", str(caught.exception))

    def test_lan_without_auth(self):
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--bind", "lan")
        self.assertIn("loopback", str(caught.exception))

    def test_non_numeric_port(self):
        with self.assertRaises(usage.UsageError):
            self.parse("--port", "http")

    def test_broken_config_file_is_a_usage_error(self):
        path = os.path.join(os.path.abspath(self.mktemp()) + ".json")
        with open(path, "w") as handle:
            handle.write("{nope")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", path)
        self.assertIn(path, str(caught.exception))

    def test_empty_config_file_is_a_usage_error(self):
        """A truncated file would start the gateway on defaults, without the token it held."""
        path = os.path.join(os.path.abspath(self.mktemp()) + ".json")
        with open(path, "w"):
            pass
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--config", path)
        self.assertIn(path, str(caught.exception))
        self.assertIn("the file is empty", str(caught.exception))

    def test_the_reloader_starts_from_the_same_read_as_the_settings(self):
        """An edit between parsing and makeService must not hand the reloader a different file
        (a truncated one would make the next SIGUSR1 restart fail, or run unchecked)."""
        path = os.path.join(os.path.abspath(self.mktemp()) + ".json")
        text = '{gateway: {auth: {mode: "token", token: "file-token"}}}'
        with open(path, "w") as handle:
            handle.write(text)
        options = self.parse("--config", path)
        with open(path, "w"):
            pass
        root = tap.makeService(options, reactor=ThreadedMemoryReactor())
        self.assertEqual(root.reloader.snapshot.raw, text)
        self.assertEqual(root.reloader.current_settings().auth.token, "file-token")
        self.assertEqual(root.gateway.settings.auth.token, "file-token")

    def test_environment_token_is_read(self):
        """Secrets should not have to appear in ``ps`` output: the environment works too."""
        os.environ["OPENCLAW_GATEWAY_TOKEN"] = "from-env"
        self.addCleanup(os.environ.pop, "OPENCLAW_GATEWAY_TOKEN", None)
        options = self.parse()
        self.assertEqual(options["settings"].auth.token, "from-env")
        self.assertEqual(options["settings"].auth.mode, "token")


class PluginTests(SynchronousTestCase):
    """``twistd openclaw`` works because the plugin is discoverable and points at openclaw.tap."""

    def _plugin(self) -> Any:
        makers = [maker for maker in getPlugins(IServiceMaker) if maker.tapname == "openclaw"]
        self.assertEqual(len(makers), 1, "exactly one 'openclaw' service maker")
        return makers[0]

    def test_plugin_is_discoverable(self):
        self.assertTrue(self._plugin().description)

    def test_plugin_uses_tap_options_and_make_service(self):
        plugin = self._plugin()
        self.assertIs(plugin.options, tap.Options)
        self.assertIs(plugin.makeService, tap.makeService)

    def test_twisted_plugins_is_not_a_package(self):
        """An ``__init__.py`` there would hide Twisted's own plugins (ecosystem §2.2)."""
        import twisted.plugins

        project_plugins = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "twisted", "plugins")
        self.assertTrue(os.path.exists(os.path.join(project_plugins, "openclaw_plugin.py")))
        self.assertFalse(os.path.exists(os.path.join(project_plugins, "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(project_plugins), "__init__.py")))
        self.assertTrue(twisted.plugins.__path__)
