"""Purchase orders paused and released in the ERP when a supplier hold is placed or lifted.

Kinds ``erp_po_pause`` and ``erp_po_release``, payload ``{supplier, hold_id, reason,
decision_hash}``. The ERP receives a signed JSON POST (:mod:`node.control.actions.webhook`)::

    {"operation": "pause" | "release", "supplier": ..., "hold_id": ..., "reason": ...,
     "decision_hash": ..., "action_key": ...}

with the action key as ``Idempotency-Key``: a retry after a lost answer is a copy the ERP drops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from node.control.actions.webhook import SignedWebhook
from node.control.outbox import ActionOutcome, ActionRequest, PendingAction
from node.errors import ActionError

KIND_PAUSE = "erp_po_pause"
KIND_RELEASE = "erp_po_release"
OPERATIONS: Mapping[str, str] = {KIND_PAUSE: "pause", KIND_RELEASE: "release"}


class ErpPurchaseOrderExecutor:
    """Executor of ``erp_po_pause`` and ``erp_po_release`` through one ERP webhook."""

    def __init__(self, webhook: SignedWebhook) -> None:
        self.webhook = webhook

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        body = purchase_order_request(action)
        reply = await self.webhook.post(body, key=action.key)
        return {"status": reply.status, "erp": reply.body}

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        return ()


def purchase_order_request(action: PendingAction) -> dict[str, Any]:
    operation = OPERATIONS.get(action.kind)
    if operation is None:
        raise ActionError(f"no ERP operation for action kind {action.kind!r}", retryable=False)
    payload = action.payload
    missing = [name for name in ("supplier", "hold_id") if payload.get(name) in (None, "")]
    if missing:
        raise ActionError(f"{action.kind} payload lacks {', '.join(missing)}", retryable=False)
    return {
        "operation": operation,
        "supplier": str(payload["supplier"]),
        "hold_id": str(payload["hold_id"]),
        "reason": str(payload.get("reason", "")),
        "decision_hash": str(payload.get("decision_hash", "")),
        "action_key": action.key,
    }
