"""Typed binding of CorrectiveAction.sol: the 8D workflow (D0 to D8), one state machine per case.

The supplier submits each discipline's report hash in order, the customer approves or rejects it,
the customer or a lab verifies the effectiveness once D7 is approved, and D8's approval closes the
case. ``bytes32`` hashes may be given as 32 raw bytes or hex; they come back as ``"0x"`` + 64 hex
digits. Refusals raise their decoded contract errors (:mod:`node.chain.contract_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from node.chain.abi_values import (
    Bytes32,
    address_arg,
    address_or_none,
    address_out,
    bytes32_out,
    to_bytes32,
    uint_arg,
)
from node.chain.artifacts import load_artifact
from node.chain.bindings import ContractBinding
from node.chain.contract_events import EventDecoder, LoggedEvent, of_type
from node.chain.sender import Receipt, TransactionSender

__all__ = [
    "ARTIFACT_NAME",
    "Case",
    "CaseClosedEvent",
    "CaseOpenedEvent",
    "CaseStatus",
    "CorrectiveAction",
    "CorrectiveActionEvent",
    "Discipline",
    "DisciplineApprovedEvent",
    "DisciplineRejectedEvent",
    "DisciplineSubmittedEvent",
    "EffectivenessVerifiedEvent",
    "OpenedCase",
    "SupplierQualitySetEvent",
]

ARTIFACT_NAME = "CorrectiveAction"


class Discipline(IntEnum):
    """The eight disciplines and the preparation step, in the order they are worked through."""

    D0 = 0
    D1 = 1
    D2 = 2
    D3 = 3
    D4 = 4
    D5 = 5
    D6 = 6
    D7 = 7
    D8 = 8

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Discipline.D0: "Plan and emergency response",
    Discipline.D1: "Team",
    Discipline.D2: "Problem description",
    Discipline.D3: "Interim containment",
    Discipline.D4: "Root cause",
    Discipline.D5: "Permanent corrective actions chosen",
    Discipline.D6: "Permanent corrective actions implemented and validated",
    Discipline.D7: "Recurrence prevented",
    Discipline.D8: "Closure and team recognition",
}


class CaseStatus(IntEnum):
    """``ICorrectiveAction.CaseStatus``."""

    NONE = 0
    OPEN = 1
    CLOSED = 2


@dataclass(frozen=True)
class Case:
    """An 8D case (``CorrectiveAction.caseRecord``).

    ``discipline`` is the discipline the case is at: awaiting its submission, or its review when
    ``awaiting_review``. ``hold_id`` is the SupplierQuality hold it was opened for (``None`` if
    opened directly); ``verified_by`` the member that verified the effectiveness.
    """

    case_id: int
    customer: str
    supplier: str
    status: CaseStatus
    discipline: Discipline
    awaiting_review: bool
    effectiveness_verified: bool
    opened_at: int
    closed_at: int
    verified_by: str | None
    hold_id: int | None
    problem_hash: str
    evidence_hash: str

    @property
    def closed(self) -> bool:
        return self.status is CaseStatus.CLOSED


@dataclass(frozen=True)
class OpenedCase:
    """What ``open`` returns: the new case's id and its receipt."""

    case_id: int
    receipt: Receipt


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupplierQualitySetEvent(LoggedEvent):
    supplier_quality: str


@dataclass(frozen=True)
class CaseOpenedEvent(LoggedEvent):
    """``hold_id`` is 0 for a case opened directly."""

    case_id: int
    customer: str
    supplier: str
    hold_id: int
    problem_hash: str


@dataclass(frozen=True)
class DisciplineSubmittedEvent(LoggedEvent):
    """``by`` is the account that submitted (the supplier member's account or oracle key)."""

    case_id: int
    discipline: int
    by: str
    report_hash: str


@dataclass(frozen=True)
class DisciplineApprovedEvent(LoggedEvent):
    case_id: int
    discipline: int
    by: str


@dataclass(frozen=True)
class DisciplineRejectedEvent(LoggedEvent):
    case_id: int
    discipline: int
    by: str
    reason_hash: str


@dataclass(frozen=True)
class EffectivenessVerifiedEvent(LoggedEvent):
    """``member``: the member it was verified for (customer or lab); ``by``: the sending account."""

    case_id: int
    member: str
    by: str
    evidence_hash: str


@dataclass(frozen=True)
class CaseClosedEvent(LoggedEvent):
    """``hold_id`` is 0 for a case opened directly."""

    case_id: int
    customer: str
    supplier: str
    hold_id: int


CorrectiveActionEvent = (
    SupplierQualitySetEvent
    | CaseOpenedEvent
    | DisciplineSubmittedEvent
    | DisciplineApprovedEvent
    | DisciplineRejectedEvent
    | EffectivenessVerifiedEvent
    | CaseClosedEvent
)

_EVENTS: dict[str, type[CorrectiveActionEvent]] = {
    "SupplierQualitySet": SupplierQualitySetEvent,
    "CaseOpened": CaseOpenedEvent,
    "DisciplineSubmitted": DisciplineSubmittedEvent,
    "DisciplineApproved": DisciplineApprovedEvent,
    "DisciplineRejected": DisciplineRejectedEvent,
    "EffectivenessVerified": EffectivenessVerifiedEvent,
    "CaseClosed": CaseClosedEvent,
}


class CorrectiveAction:
    """The 8D workflow, read and written through one account's sender: a customer's (manufacturer)
    account or oracle key to open, approve, reject and verify; a supplier's to submit; a lab's to
    verify effectiveness."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding
        self._events: EventDecoder[CorrectiveActionEvent] = EventDecoder(binding, _EVENTS)

    @property
    def decoder(self) -> EventDecoder[CorrectiveActionEvent]:
        """Decodes this contract's logs (for an event consumer following several contracts)."""
        return self._events

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> CorrectiveAction:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls, sender: TransactionSender, consortium_address: str
    ) -> tuple[CorrectiveAction, Receipt]:
        """Deploy; the sender becomes the deployer that may wire SupplierQuality once (see
        :func:`node.chain.supplier_quality.deploy_supplier_quality`, which does both)."""
        binding, receipt = ContractBinding.deploy(
            sender,
            load_artifact(ARTIFACT_NAME),
            address_arg(consortium_address, "consortium_address"),
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    # -- wiring ------------------------------------------------------------------------------

    def set_supplier_quality(self, supplier_quality_address: str) -> Receipt:
        """Wire the SupplierQuality contract, once, from the deployer's sender."""
        return self.binding.transact(
            "setSupplierQuality", address_arg(supplier_quality_address, "supplier_quality_address")
        )

    # -- cases -------------------------------------------------------------------------------

    def open(self, supplier: str, problem_hash: Bytes32) -> OpenedCase:
        """Open a case for a supplier member, as the sending manufacturer (the customer)."""
        receipt = self.binding.transact(
            "open", address_arg(supplier, "supplier"), to_bytes32(problem_hash, "problem_hash")
        )
        (event,) = of_type(self.events(receipt), CaseOpenedEvent)
        return OpenedCase(event.case_id, receipt)

    def submit(self, case_id: int, discipline: int, report_hash: Bytes32) -> Receipt:
        """Submit the report hash of the discipline the case is at (the supplier's side)."""
        return self.binding.transact(
            "submit",
            uint_arg(case_id, "case_id"),
            uint_arg(int(discipline), "discipline", 8),
            to_bytes32(report_hash, "report_hash"),
        )

    def approve(self, case_id: int, discipline: int) -> Receipt:
        """Approve the submitted discipline (the customer's side); D8's approval closes the case."""
        return self.binding.transact(
            "approve", uint_arg(case_id, "case_id"), uint_arg(int(discipline), "discipline", 8)
        )

    def reject(self, case_id: int, discipline: int, reason_hash: Bytes32) -> Receipt:
        """Reject the submitted discipline (the customer's side): the supplier submits it again."""
        return self.binding.transact(
            "reject",
            uint_arg(case_id, "case_id"),
            uint_arg(int(discipline), "discipline", 8),
            to_bytes32(reason_hash, "reason_hash"),
        )

    def verify_effectiveness(self, case_id: int, evidence_hash: Bytes32) -> Receipt:
        """Record the effectiveness check, once D7 is approved (the customer or a lab)."""
        return self.binding.transact(
            "verifyEffectiveness",
            uint_arg(case_id, "case_id"),
            to_bytes32(evidence_hash, "evidence_hash"),
        )

    # -- reads -------------------------------------------------------------------------------

    def consortium(self) -> str:
        return address_out(self.binding.read("consortium"))

    def supplier_quality(self) -> str | None:
        """The wired SupplierQuality contract, or ``None`` until wired."""
        return address_or_none(self.binding.read("supplierQuality"))

    def case(self, case_id: int) -> Case:
        """``UnknownCase`` if the id was never used."""
        return _case(case_id, self.binding.read("caseRecord", uint_arg(case_id, "case_id")))

    def is_closed(self, case_id: int) -> bool:
        return bool(self.binding.read("isClosed", uint_arg(case_id, "case_id")))

    def report(self, case_id: int, discipline: int) -> str | None:
        """The latest report hash submitted for a discipline (the approved one once approved), or
        ``None`` if none was."""
        raw = self.binding.read(
            "report", uint_arg(case_id, "case_id"), uint_arg(int(discipline), "discipline", 8)
        )
        return None if bytes(raw) == bytes(32) else bytes32_out(raw)

    def case_count(self) -> int:
        return int(self.binding.read("caseCount"))

    # -- events ------------------------------------------------------------------------------

    def events(self, receipt: Receipt) -> list[CorrectiveActionEvent]:
        """The events this contract logged in ``receipt``, in log order."""
        return self._events.in_receipt(receipt)

    def events_between(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        names: tuple[str, ...] | None = None,
    ) -> list[CorrectiveActionEvent]:
        """The events logged in the block range (inclusive), in chain order; only those named in
        ``names`` (Solidity event names) if given."""
        return self._events.between(from_block, to_block, names)


def _case(case_id: int, raw: Any) -> Case:
    (
        customer,
        status,
        discipline,
        awaiting_review,
        effectiveness_verified,
        opened_at,
        supplier,
        closed_at,
        verified_by,
        hold_id,
        problem_hash,
        evidence_hash,
    ) = raw
    return Case(
        case_id=case_id,
        customer=address_out(customer),
        supplier=address_out(supplier),
        status=CaseStatus(status),
        discipline=Discipline(discipline),
        awaiting_review=bool(awaiting_review),
        effectiveness_verified=bool(effectiveness_verified),
        opened_at=int(opened_at),
        closed_at=int(closed_at),
        verified_by=address_or_none(verified_by),
        hold_id=int(hold_id) or None,
        problem_hash=bytes32_out(problem_hash),
        evidence_hash=bytes32_out(evidence_hash),
    )
