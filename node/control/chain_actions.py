"""The actions that write the chain, as an outbox executor (node/control/outbox.py).

Each kind is idempotent, so running it again after a crash is harmless:
- ``line_compensation`` calls LineControl.requestCompensation. A request already on-chain with
  the decision's hash (since ``since_block``) is found and not sent again.
- ``chain_compensation_ack`` calls LineControl.recordAcknowledgement; ``AlreadyAcknowledged``
  counts as done.
- ``chain_line_stop`` calls LineControl.stopLine; a line already stopped counts as done.
- ``supplier_hold`` calls SupplierQuality.placeHold; a supplier already on hold by this member
  counts as done.
- ``supplier_release`` calls SupplierQuality.release; a hold no longer active counts as done.
- ``incoming_lot`` calls SupplierQuality.recordLot; ``LotAlreadyRecorded`` counts as done.

A chain that is down, or a transaction without a receipt, is a retryable failure. A revert is
final (the contract said no, e.g. a compensation out of its on-chain bounds), except
``RequestPending``: the parameter's previous request is still waiting for the PLC's answer.
Reverted transactions stay on the chain as failed ones, and the action keeps the decoded error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eth_utils.crypto import keccak

from node.chain.contract_events import of_type
from node.chain.line_control import CompensationRequestedEvent, LineControl
from node.chain.supplier_quality import SupplierQuality
from node.control.lines import Lines, parameter_id, to_fixed
from node.control.outbox import ActionOutcome, ActionRequest, PendingAction
from node.errors import ActionError, ChainError, ContractRevertError
from node.oracles.units import UnitError, coefficients

KINDS = (
    "line_compensation",
    "chain_compensation_ack",
    "chain_line_stop",
    "supplier_hold",
    "supplier_release",
    "incoming_lot",
)
RETRYABLE_REVERTS = frozenset({"RequestPending"})
DONE_REVERTS = {
    "chain_compensation_ack": frozenset({"AlreadyAcknowledged"}),
    "chain_line_stop": frozenset({"LineAlreadyStopped"}),
    "supplier_hold": frozenset({"AlreadyOnHold"}),
    "supplier_release": frozenset({"HoldNotActive"}),
    "incoming_lot": frozenset({"LotAlreadyRecorded"}),
}


def text_hash(text: str) -> str:
    """bytes32 of a free text (a reason, an error) that goes on-chain only as its hash."""
    return "0x" + keccak(text=text).hex()


class ChainActions:
    """Executes the chain-writing kinds through this member's (oracle) bindings.

    ``line_control`` and ``supplier_quality`` are called when first needed, so a node whose
    contracts are not deployed yet still starts; ``on_mined`` is called after each transaction
    (to make the event consumer look at once).
    """

    def __init__(
        self,
        lines: Lines,
        line_control: Callable[[], LineControl],
        supplier_quality: Callable[[], SupplierQuality],
        on_mined: Callable[[], None] = lambda: None,
    ) -> None:
        self.lines = lines
        self._line_control_factory = line_control
        self._supplier_quality_factory = supplier_quality
        self._line_control: LineControl | None = None
        self._supplier_quality: SupplierQuality | None = None
        self.on_mined = on_mined

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        run = getattr(self, f"_{action.kind}")
        try:
            result: Mapping[str, Any] = await asyncio.to_thread(run, action.payload)
        except ContractRevertError as exc:
            name = type(exc).__name__
            if name in DONE_REVERTS.get(action.kind, ()):
                return {"already": name}
            raise ActionError(str(exc), retryable=name in RETRYABLE_REVERTS) from exc
        except ChainError as exc:
            raise ActionError(str(exc)) from exc
        self.on_mined()
        return result

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        return ()

    # -- bindings --------------------------------------------------------------------------

    def line_control(self) -> LineControl:
        if self._line_control is None:
            self._line_control = self._line_control_factory()
        return self._line_control

    def supplier_quality(self) -> SupplierQuality:
        if self._supplier_quality is None:
            self._supplier_quality = self._supplier_quality_factory()
        return self._supplier_quality

    # -- one method per kind ---------------------------------------------------------------

    def _line_compensation(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        line = self.lines.named(payload["line"])
        parameter = line.parameter(payload["parameter"])
        amount = _in_unit(float(payload["delta"]), payload.get("unit"), parameter.unit)
        delta = to_fixed(round(amount, parameter.decimals), parameter.decimals)
        decision_hash = payload["decision_hash"]
        control = self.line_control()
        earlier = self._requested(control, decision_hash, int(payload.get("since_block", 0)))
        if earlier is not None:
            return {"request_id": earlier.request_id, "tx_hash": earlier.tx_hash, "resent": False}
        started = time.perf_counter()
        requested = control.request_compensation(
            line.id, parameter_id(payload["parameter"]), delta, decision_hash
        )
        return {
            "request_id": requested.request_id,
            "tx_hash": requested.receipt.tx_hash,
            "block_number": requested.receipt.block_number,
            "mined_ms": round((time.perf_counter() - started) * 1e3, 3),
        }

    def _requested(
        self, control: LineControl, decision_hash: str, since_block: int
    ) -> CompensationRequestedEvent | None:
        """A request already on-chain for this decision (sent before a crash)."""
        events = control.events_between(since_block, "latest", ("CompensationRequested",))
        for event in of_type(events, CompensationRequestedEvent):
            if event.decision_hash == decision_hash:
                return event
        return None

    def _chain_compensation_ack(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        control = self.line_control()
        request = control.request(int(payload["request_id"]))
        line = self.lines.by_id(request.line_id)
        decimals = line.parameter_named_by(request.parameter_id)[1].decimals if line else 3
        read_back = payload.get("read_back")
        receipt = control.record_acknowledgement(
            int(payload["request_id"]),
            applied=bool(payload["applied"]),
            read_back=to_fixed(round(float(read_back), decimals), decimals) if read_back else 0,
            detail_hash=text_hash(str(payload.get("detail", ""))),
        )
        return {"tx_hash": receipt.tx_hash, "block_number": receipt.block_number}

    def _chain_line_stop(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        line = self.lines.named(payload["line"])
        if payload.get("confirmed") is False:
            # The chain records stops that happened; the decision record keeps this one.
            return {"recorded": False, "why": f"the PLC did not confirm: {payload.get('detail')}"}
        control = self.line_control()
        if control.is_stopped(line.id):
            return {"already": "stopped"}
        reason = payload.get("decision_hash") or text_hash(str(payload.get("reason", "")))
        receipt = control.stop_line(line.id, reason)
        return {"tx_hash": receipt.tx_hash, "block_number": receipt.block_number}

    def _supplier_hold(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        quality = self.supplier_quality()
        me = quality.binding.sender.account.address
        existing = quality.active_hold(me, payload["supplier"])
        if existing is not None:
            return {"hold_id": existing, "already": "on hold"}
        placed = quality.place_hold(payload["supplier"], payload["decision_hash"])
        return {
            "hold_id": placed.hold_id,
            "case_id": placed.case_id,
            "tx_hash": placed.receipt.tx_hash,
        }

    def _supplier_release(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        receipt = self.supplier_quality().release(int(payload["hold_id"]))
        return {"tx_hash": receipt.tx_hash, "block_number": receipt.block_number}

    def _incoming_lot(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        decimals = int(payload["decimals"])
        outcome = self.supplier_quality().record_lot(
            payload["supplier"],
            text_hash(payload["part"]),
            text_hash(payload["characteristic"]),
            text_hash(payload["lot"]),
            measured=to_fixed(float(payload["value"]), decimals),
            lsl=to_fixed(float(payload["lsl"]), decimals),
            usl=to_fixed(float(payload["usl"]), decimals),
            decimals=decimals,
        )
        return {
            "in_spec": outcome.in_spec,
            "consecutive": outcome.consecutive,
            "hold_id": outcome.hold_id,
            "case_id": outcome.case_id,
            "tx_hash": outcome.receipt.tx_hash,
        }


def _in_unit(amount: float, unit: str | None, target: str) -> float:
    """A difference (a delta) from ``unit`` into ``target``: scaled, never shifted (a delta of
    1 CEL is 1 KEL)."""
    if unit is None or unit == target:
        return amount
    try:
        p, _, r = coefficients(unit, target)
    except UnitError as exc:
        raise ActionError(f"delta in {unit}: {exc}", retryable=False) from exc
    return amount * p / r
