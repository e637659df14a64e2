"""What a member's node does with each closed-loop contract event.

Each handler turns an event into its reorg-proof key and the actions it causes, or ``None`` when
the event concerns other members. It decides, and the outbox's executors act:

| event | this member is | actions |
|---|---|---|
| CompensationRequested | the line's owner | write the PLC (OPC UA, or an MQTT command) |
| SupplierHeld | the customer | pause purchase orders (ERP webhook) |
| CaseOpened | the supplier | a task in the portal: answer D0 |
| DisciplineSubmitted | the customer | a review task for the quality engineer |
| DisciplineApproved | the supplier | a task: answer the next discipline |
| DisciplineRejected | the supplier | a task: answer the discipline again |
| CaseClosed (with a hold) | the customer | release the hold on-chain |
| HoldReleased | the customer | resume purchase orders (ERP webhook) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from node.chain.corrective_action import (
    CaseClosedEvent,
    CaseOpenedEvent,
    DisciplineApprovedEvent,
    DisciplineRejectedEvent,
    DisciplineSubmittedEvent,
)
from node.chain.line_control import CompensationRequestedEvent
from node.chain.supplier_quality import HoldReleasedEvent, SupplierHeldEvent
from node.control.events import Handled, Handler
from node.control.lines import Lines, from_fixed
from node.control.outbox import ActionRequest

LAST_DISCIPLINE = 8
TASK_DAYS_US = 7 * 86_400 * 1_000_000
"""How long a supplier has for each 8D discipline, from the event that asks for it."""


@dataclass(frozen=True)
class CaseParties:
    customer: str
    supplier: str


CaseLookup = Callable[[int], CaseParties]


def member_handlers(
    member: str,
    lines: Lines,
    case_parties: CaseLookup,
    now_us: Callable[[], int],
    review_assignee: str = "quality-engineer",
) -> dict[type, Handler]:
    """The handlers of the member whose account is ``member``. ``case_parties`` looks an 8D
    case's customer and supplier up (cached: they never change)."""
    parties = lru_cache(maxsize=4096)(case_parties)
    me = member.lower()

    def compensation(event: CompensationRequestedEvent) -> Handled | None:
        line = lines.by_id(event.line_id)
        if line is None:
            return None
        name, parameter = line.parameter_named_by(event.parameter_id)
        kind = "plc_compensation" if line.settings.actuator == "opcua" else "mqtt_command"
        payload = {
            "request_id": event.request_id,
            "line": line.name,
            "parameter": name,
            "delta_mm": from_fixed(event.delta, parameter.decimals),
            "decision_hash": event.decision_hash,
        }
        key = f"compensation:{event.request_id}:{event.decision_hash}"
        return Handled(key, [ActionRequest(kind, f"{kind}:{event.request_id}", payload)])

    def held(event: SupplierHeldEvent) -> Handled | None:
        if event.customer.lower() != me:
            return None
        payload = {
            "supplier": event.supplier,
            "hold_id": event.hold_id,
            "case_id": event.case_id,
            "reason_hash": event.reason_hash,
        }
        return Handled(
            f"held:{event.hold_id}",
            [ActionRequest("erp_po_pause", f"erp_po_pause:{event.hold_id}", payload)],
        )

    def released(event: HoldReleasedEvent) -> Handled | None:
        if event.customer.lower() != me:
            return None
        payload = {
            "supplier": event.supplier,
            "hold_id": event.hold_id,
            "by_closure": event.by_closure,
            "reason_hash": event.justification_hash,
        }
        return Handled(
            f"released:{event.hold_id}",
            [ActionRequest("erp_po_release", f"erp_po_release:{event.hold_id}", payload)],
        )

    def supplier_task(case_id: int, discipline: int, hold_id: int, title: str) -> ActionRequest:
        payload = {
            "supplier": me,
            "case_id": case_id,
            "hold_id": hold_id,
            "discipline": discipline,
            "due_at_us": now_us() + TASK_DAYS_US,
            "title": title,
        }
        return ActionRequest("supplier_task", f"supplier_task:{case_id}:D{discipline}", payload)

    def opened(event: CaseOpenedEvent) -> Handled | None:
        if event.supplier.lower() != me:
            return None
        title = f"8D case {event.case_id}: answer D0 (emergency response)"
        return Handled(
            f"opened:{event.case_id}", [supplier_task(event.case_id, 0, event.hold_id, title)]
        )

    def submitted(event: DisciplineSubmittedEvent) -> Handled | None:
        if parties(event.case_id).customer.lower() != me:
            return None
        key = f"review:{event.case_id}:D{event.discipline}:{event.report_hash}"
        payload = {
            "assignee": review_assignee,
            "title": f"8D case {event.case_id}: review D{event.discipline}",
            "due_at_us": now_us() + TASK_DAYS_US,
            "decision_hash": event.report_hash,
            "detail": {"case_id": event.case_id, "discipline": event.discipline, "by": event.by},
        }
        return Handled(key, [ActionRequest("improvement_task", key, payload)])

    def approved(event: DisciplineApprovedEvent) -> Handled | None:
        if parties(event.case_id).supplier.lower() != me:
            return None
        key = f"approved:{event.case_id}:D{event.discipline}"
        if event.discipline >= LAST_DISCIPLINE:
            return Handled(key)
        following = event.discipline + 1
        title = f"8D case {event.case_id}: answer D{following}"
        return Handled(key, [supplier_task(event.case_id, following, 0, title)])

    def rejected(event: DisciplineRejectedEvent) -> Handled | None:
        if parties(event.case_id).supplier.lower() != me:
            return None
        title = f"8D case {event.case_id}: D{event.discipline} was rejected, answer it again"
        task = supplier_task(event.case_id, event.discipline, 0, title)
        again = ActionRequest(task.kind, f"{task.key}:{event.reason_hash}", task.payload)
        return Handled(f"rejected:{event.case_id}:D{event.discipline}:{event.reason_hash}", [again])

    def closed(event: CaseClosedEvent) -> Handled | None:
        if event.customer.lower() != me or event.hold_id == 0:
            return None
        payload = {"hold_id": event.hold_id, "case_id": event.case_id}
        return Handled(
            f"closed:{event.case_id}",
            [ActionRequest("supplier_release", f"supplier_release:{event.hold_id}", payload)],
        )

    return {
        CompensationRequestedEvent: compensation,
        SupplierHeldEvent: held,
        HoldReleasedEvent: released,
        CaseOpenedEvent: opened,
        DisciplineSubmittedEvent: submitted,
        DisciplineApprovedEvent: approved,
        DisciplineRejectedEvent: rejected,
        CaseClosedEvent: closed,
    }
