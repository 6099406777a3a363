"""Method specs, the role/scope gate, and dispatch (protocol §1.5, §5).

The order of checks is part of the protocol: ``health`` bypasses everything; then the role gate
(node methods for nodes, everything else for operators); then ``unknown method``; then the scope
gate; then params; then the handler. The reference answers an unknown method to a caller without
``operator.admin`` with ``missing scope: operator.admin``, which sends people looking for a
permission problem that does not exist; the method list is public (``hello-ok`` advertises it), so
this gateway says what is true, ``unknown method``, to every operator.
"""
from __future__ import annotations

from inspect import iscoroutine

from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request, missing_scope
from ..security.scopes import ADMIN, scope_satisfied

if TYPE_CHECKING:
    from ..hub import GatewayHub
    from ..state.clients import ConnectedClient

ROLE_OPERATOR = "operator"
ROLE_NODE = "node"
ROLE_ANY = "any"

ScopeRule = str | None | Callable[[Any], str]
Handler = Callable[["RequestContext"], Any]


@attrs.frozen
class MethodSpec:
    """A method: its handler, who may call it, and whether ``hello-ok`` advertises it.

    ``scope`` is the operator scope required, ``None`` for none, or a callable that picks the
    scope from the (not yet validated) params for methods whose requirement depends on them.
    """

    name: str
    handler: Handler
    scope: ScopeRule = ADMIN
    role: str = ROLE_OPERATOR
    advertised: bool = True

    def required_scope(self, params: Any) -> str | None:
        if callable(self.scope):
            return self.scope(params)
        return self.scope


@attrs.define
class RequestContext:
    """What a handler gets: the gateway, the calling client, and the request."""

    gateway: GatewayHub
    client: ConnectedClient
    request_id: str
    method: str
    params: Any
    send_interim: Callable[[Any], None] = lambda payload: None


class UnauthorizedRole(GatewayError):
    """Marks role-gate failures so the connection can count them for the flood guard."""


class MethodRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, MethodSpec] = {}
        # Bumped by every registration: what hello-ok pre-encodes from this registry is keyed on it.
        self.version = 0
        self._advertised: list[str] | None = None

    def add(self, spec: MethodSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"method {spec.name} registered twice")
        self._specs[spec.name] = spec
        self.version += 1
        self._advertised = None

    def add_all(self, specs: Iterable[MethodSpec]) -> None:
        for spec in specs:
            self.add(spec)

    def get(self, name: str) -> MethodSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return list(self._specs)

    def advertised(self) -> list[str]:
        """The names hello-ok lists (a fresh list; the filtered one is kept until the next ``add``)."""
        if self._advertised is None:
            self._advertised = [name for name, spec in self._specs.items() if spec.advertised]
        return list(self._advertised)

    def authorize(self, client: ConnectedClient, method: str, params: Any) -> MethodSpec:
        """Apply the role and scope gates; return the spec, or raise the protocol's error."""
        spec = self._specs.get(method)
        if spec is not None and spec.role == ROLE_ANY:
            return spec
        if spec is None and client.role == ROLE_NODE:
            # A node asking for something that does not exist hears exactly that (a role error
            # would send its author looking for a permission problem).
            raise invalid_request(f"unknown method: {method}")
        expected_role = spec.role if spec is not None else ROLE_OPERATOR
        if client.role != expected_role:
            raise UnauthorizedRole("INVALID_REQUEST", f"unauthorized role: {client.role}")
        if spec is None:
            raise invalid_request(f"unknown method: {method}")
        if client.role == ROLE_OPERATOR:
            required = spec.required_scope(params)
            if required is not None and not scope_satisfied(required, client.scopes):
                raise missing_scope(required)
        return spec

    def dispatch(self, context: RequestContext) -> Deferred[Any]:
        """Gate, validate and run one request; fires with the payload or fails with GatewayError."""
        return maybeDeferred(self.run, context)

    def run(self, context: RequestContext) -> Any:
        """Gate, validate and run one request, synchronously where the handler is synchronous.

        Returns the payload, or a Deferred for asynchronous handlers; raises GatewayError. Most
        requests (``health``, ``status``, lists) never wait, and skipping the Deferred machinery
        for them is a measurable share of a round trip.
        """
        spec = self.authorize(context.client, context.method, context.params)
        try:
            context.gateway.validators.check_params(context.method, context.params)
        except GatewayError:
            raise
        except Exception as exc:  # a broken schema must cost one request, never the connection
            raise GatewayError(UNAVAILABLE, f"{context.method} could not be checked: {exc}") from exc
        result = spec.handler(context)
        if iscoroutine(result):
            return Deferred.fromCoroutine(result)
        return result

