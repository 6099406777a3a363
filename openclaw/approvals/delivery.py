"""Who is shown an exec approval, and who may read or decide it (the reference's rules).

An *approval client* is an operator that holds ``operator.approvals`` (or admin) and is an app
that can show approvals: the Control UI, the macOS/iOS/Android apps, or any client that
declares the ``approvals`` / ``exec-approvals`` cap. When no approval client is connected, a
request has nobody to ask and ends at once with no decision (``no-approval-route``), as in the
reference.

An admin sees every approval; anyone else only the ones their own device (or, without a
device, their own connection) asked for. So an approval id from another client is as good as
unknown.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..security.scopes import ADMIN, APPROVALS

if TYPE_CHECKING:
    from ..state.clients import ConnectedClient
    from .records import ApprovalRecord

APPROVAL_CLIENT_IDS = frozenset(("openclaw-control-ui", "openclaw-macos", "openclaw-ios", "openclaw-android"))
APPROVAL_CAPS = frozenset(("approvals", "exec-approvals"))


def shows_exec_approvals(client: ConnectedClient) -> bool:
    if client.role != "operator" or not (ADMIN in client.scopes or APPROVALS in client.scopes):
        return False
    return client.client_id in APPROVAL_CLIENT_IDS or any(cap in APPROVAL_CAPS for cap in client.caps)


def may_see(record: ApprovalRecord, client: ConnectedClient) -> bool:
    if ADMIN in client.scopes:
        return True
    if record.requested_by_device_id:
        return record.requested_by_device_id == client.device_id
    if record.requested_by_conn_id:
        return record.requested_by_conn_id == client.conn_id
    return not record.requested_by_client_id
