"""Typed binding of SupplierQuality.sol: incoming lots, out-of-spec counters and supplier holds.

A customer (a manufacturer member's account or oracle key) records the lots it receives; the
contract counts consecutive out-of-spec lots per (customer, supplier, part, characteristic) and,
at the customer's threshold (default 5), puts the supplier on hold and opens an 8D case in
CorrectiveAction. A hold is released by its closed 8D case (anyone may ask) or by the customer
member's own signed override. Values are fixed-point (``value / 10**decimals``). ``bytes32`` ids
and hashes may be given as 32 raw bytes or hex; they come back as ``"0x"`` + 64 hex digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from node.chain.abi_values import (
    Bytes32,
    address_arg,
    address_out,
    bytes32_out,
    int_arg,
    to_bytes32,
    uint_arg,
)
from node.chain.artifacts import load_artifact
from node.chain.bindings import ContractBinding
from node.chain.contract_events import EventDecoder, LoggedEvent, of_type
from node.chain.corrective_action import CorrectiveAction
from node.chain.sender import Receipt, TransactionSender

__all__ = [
    "ARTIFACT_NAME",
    "DEFAULT_HOLD_THRESHOLD",
    "Hold",
    "HoldReleasedEvent",
    "HoldStatus",
    "HoldThresholdSetEvent",
    "Lot",
    "LotOutcome",
    "LotRecordedEvent",
    "PlacedHold",
    "SupplierHeldEvent",
    "SupplierQuality",
    "SupplierQualityDeployment",
    "SupplierQualityEvent",
    "deploy_supplier_quality",
]

ARTIFACT_NAME = "SupplierQuality"
DEFAULT_HOLD_THRESHOLD = 5
"""Consecutive out-of-spec lots that place a hold when the customer set no threshold."""


class HoldStatus(IntEnum):
    """``ISupplierQuality.HoldStatus``: ``RELEASED`` by a closed 8D case, ``OVERRIDDEN`` by the
    customer."""

    NONE = 0
    ACTIVE = 1
    RELEASED = 2
    OVERRIDDEN = 3


@dataclass(frozen=True)
class Lot:
    """A recorded lot (``SupplierQuality.lot``); in spec means ``lsl <= measured <= usl``."""

    lot_id: str
    customer: str
    supplier: str
    part_id: str
    characteristic_id: str
    measured: int
    lsl: int
    usl: int
    decimals: int
    in_spec: bool
    recorded_at: int


@dataclass(frozen=True)
class Hold:
    """A hold (``SupplierQuality.hold``).

    For an automatic hold ``part_id``, ``characteristic_id`` and ``consecutive`` name the counter
    that reached its threshold and ``reason_hash`` is the id of the lot that reached it; for an
    explicit hold they are zero and ``reason_hash`` is the customer's. ``case_id`` is its 8D case.
    """

    hold_id: int
    customer: str
    supplier: str
    status: HoldStatus
    part_id: str
    characteristic_id: str
    consecutive: int
    case_id: int
    reason_hash: str
    justification_hash: str
    placed_at: int
    released_at: int

    @property
    def active(self) -> bool:
        return self.status is HoldStatus.ACTIVE


@dataclass(frozen=True)
class LotOutcome:
    """What ``record_lot`` returns: the lot's verdict, the counter after it, and the hold (with its
    8D case) it placed, if any."""

    lot_id: str
    in_spec: bool
    consecutive: int
    hold_id: int | None
    case_id: int | None
    receipt: Receipt


@dataclass(frozen=True)
class PlacedHold:
    """What ``place_hold`` returns."""

    hold_id: int
    case_id: int
    receipt: Receipt


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotRecordedEvent(LoggedEvent):
    """``consecutive`` is the out-of-spec count after the lot (0 when it was in spec)."""

    lot_id: str
    customer: str
    supplier: str
    part_id: str
    characteristic_id: str
    measured: int
    in_spec: bool
    consecutive: int


@dataclass(frozen=True)
class HoldThresholdSetEvent(LoggedEvent):
    customer: str
    supplier: str
    part_id: str
    characteristic_id: str
    threshold: int


@dataclass(frozen=True)
class SupplierHeldEvent(LoggedEvent):
    hold_id: int
    customer: str
    supplier: str
    part_id: str
    characteristic_id: str
    consecutive: int
    case_id: int
    reason_hash: str


@dataclass(frozen=True)
class HoldReleasedEvent(LoggedEvent):
    """``by_closure``: released by its closed 8D case; otherwise by the customer's override."""

    hold_id: int
    customer: str
    supplier: str
    by_closure: bool
    justification_hash: str


SupplierQualityEvent = (
    LotRecordedEvent | HoldThresholdSetEvent | SupplierHeldEvent | HoldReleasedEvent
)

_EVENTS: dict[str, type[SupplierQualityEvent]] = {
    "LotRecorded": LotRecordedEvent,
    "HoldThresholdSet": HoldThresholdSetEvent,
    "SupplierHeld": SupplierHeldEvent,
    "HoldReleased": HoldReleasedEvent,
}


class SupplierQuality:
    """Supplier quality, read and written through one account's sender: a customer's (manufacturer)
    account or oracle key to record lots and place holds; the customer's own account to set
    thresholds and override; anyone's to release a hold whose 8D case is closed."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding
        self._events: EventDecoder[SupplierQualityEvent] = EventDecoder(binding, _EVENTS)

    @property
    def decoder(self) -> EventDecoder[SupplierQualityEvent]:
        """Decodes this contract's logs (for an event consumer following several contracts)."""
        return self._events

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> SupplierQuality:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls, sender: TransactionSender, consortium_address: str, corrective_action_address: str
    ) -> tuple[SupplierQuality, Receipt]:
        """Deploy over an existing CorrectiveAction (which must then be wired to it); see
        :func:`deploy_supplier_quality` for the whole sequence."""
        binding, receipt = ContractBinding.deploy(
            sender,
            load_artifact(ARTIFACT_NAME),
            address_arg(consortium_address, "consortium_address"),
            address_arg(corrective_action_address, "corrective_action_address"),
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    # -- lots and thresholds -----------------------------------------------------------------

    def record_lot(
        self,
        supplier: str,
        part_id: Bytes32,
        characteristic_id: Bytes32,
        lot_id: Bytes32,
        *,
        measured: int,
        lsl: int,
        usl: int,
        decimals: int,
    ) -> LotOutcome:
        """Record an incoming lot as the sending customer; the outcome says whether it placed a
        hold (and opened its 8D case)."""
        receipt = self.binding.transact(
            "recordLot",
            address_arg(supplier, "supplier"),
            to_bytes32(part_id, "part_id"),
            to_bytes32(characteristic_id, "characteristic_id"),
            to_bytes32(lot_id, "lot_id"),
            int_arg(measured, "measured"),
            int_arg(lsl, "lsl"),
            int_arg(usl, "usl"),
            uint_arg(decimals, "decimals", 8),
        )
        events = self.events(receipt)
        (recorded,) = of_type(events, LotRecordedEvent)
        held = of_type(events, SupplierHeldEvent)
        return LotOutcome(
            lot_id=recorded.lot_id,
            in_spec=recorded.in_spec,
            consecutive=recorded.consecutive,
            hold_id=held[0].hold_id if held else None,
            case_id=held[0].case_id if held else None,
            receipt=receipt,
        )

    def set_hold_threshold(
        self, supplier: str, part_id: Bytes32, characteristic_id: Bytes32, threshold: int
    ) -> Receipt:
        """Set the sending customer's threshold (its own account; 0 restores the default)."""
        return self.binding.transact(
            "setHoldThreshold",
            address_arg(supplier, "supplier"),
            to_bytes32(part_id, "part_id"),
            to_bytes32(characteristic_id, "characteristic_id"),
            uint_arg(threshold, "threshold", 32),
        )

    # -- holds -------------------------------------------------------------------------------

    def place_hold(self, supplier: str, reason_hash: Bytes32) -> PlacedHold:
        """Put a supplier on hold explicitly (``AlreadyOnHold`` if it is), with an 8D case."""
        receipt = self.binding.transact(
            "placeHold", address_arg(supplier, "supplier"), to_bytes32(reason_hash, "reason_hash")
        )
        (held,) = of_type(self.events(receipt), SupplierHeldEvent)
        return PlacedHold(held.hold_id, held.case_id, receipt)

    def release(self, hold_id: int) -> Receipt:
        """Release a hold whose 8D case is closed (``CaseNotClosed`` otherwise); anyone may."""
        return self.binding.transact("release", uint_arg(hold_id, "hold_id"))

    def override_release(self, hold_id: int, justification_hash: Bytes32) -> Receipt:
        """The customer member's signed override (its own account, not an oracle key)."""
        return self.binding.transact(
            "overrideRelease",
            uint_arg(hold_id, "hold_id"),
            to_bytes32(justification_hash, "justification_hash"),
        )

    # -- reads -------------------------------------------------------------------------------

    def consortium(self) -> str:
        return address_out(self.binding.read("consortium"))

    def corrective_action(self) -> str:
        return address_out(self.binding.read("correctiveAction"))

    def is_on_hold(self, customer: str, supplier: str) -> bool:
        return bool(
            self.binding.read(
                "isOnHold", address_arg(customer, "customer"), address_arg(supplier, "supplier")
            )
        )

    def active_hold(self, customer: str, supplier: str) -> int | None:
        """The customer's active hold on the supplier, or ``None``."""
        hold_id = self.binding.read(
            "activeHold", address_arg(customer, "customer"), address_arg(supplier, "supplier")
        )
        return int(hold_id) or None

    def hold(self, hold_id: int) -> Hold:
        """``UnknownHold`` if the id was never used."""
        return _hold(hold_id, self.binding.read("hold", uint_arg(hold_id, "hold_id")))

    def hold_count(self) -> int:
        return int(self.binding.read("holdCount"))

    def lot(self, lot_id: Bytes32) -> Lot:
        """``UnknownLot`` if never recorded."""
        key = to_bytes32(lot_id, "lot_id")
        return _lot(bytes32_out(key), self.binding.read("lot", key))

    def consecutive_out_of_spec(
        self, customer: str, supplier: str, part_id: Bytes32, characteristic_id: Bytes32
    ) -> int:
        return int(
            self.binding.read(
                "consecutiveOutOfSpec",
                *_counter_key(customer, supplier, part_id, characteristic_id),
            )
        )

    def hold_threshold(
        self, customer: str, supplier: str, part_id: Bytes32, characteristic_id: Bytes32
    ) -> int:
        """The threshold in force (the default when unset)."""
        return int(
            self.binding.read(
                "holdThreshold", *_counter_key(customer, supplier, part_id, characteristic_id)
            )
        )

    # -- events ------------------------------------------------------------------------------

    def events(self, receipt: Receipt) -> list[SupplierQualityEvent]:
        """The events this contract logged in ``receipt``, in log order (the 8D case opened with
        a hold is CorrectiveAction's ``CaseOpened``, in the same receipt)."""
        return self._events.in_receipt(receipt)

    def events_between(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        names: tuple[str, ...] | None = None,
    ) -> list[SupplierQualityEvent]:
        """The events logged in the block range (inclusive), in chain order; only those named in
        ``names`` (Solidity event names) if given."""
        return self._events.between(from_block, to_block, names)


@dataclass(frozen=True)
class SupplierQualityDeployment:
    """SupplierQuality and its CorrectiveAction, deployed and wired, with the three receipts."""

    supplier_quality: SupplierQuality
    corrective_action: CorrectiveAction
    corrective_action_receipt: Receipt
    supplier_quality_receipt: Receipt
    wiring_receipt: Receipt


def deploy_supplier_quality(
    sender: TransactionSender, consortium_address: str
) -> SupplierQualityDeployment:
    """Deploy CorrectiveAction(consortium), SupplierQuality(consortium, correctiveAction), then
    wire them (``CorrectiveAction.setSupplierQuality``, the deployer's one-time call)."""
    corrective_action, action_receipt = CorrectiveAction.deploy(sender, consortium_address)
    supplier_quality, quality_receipt = SupplierQuality.deploy(
        sender, consortium_address, corrective_action.address
    )
    wiring = corrective_action.set_supplier_quality(supplier_quality.address)
    return SupplierQualityDeployment(
        supplier_quality=supplier_quality,
        corrective_action=corrective_action,
        corrective_action_receipt=action_receipt,
        supplier_quality_receipt=quality_receipt,
        wiring_receipt=wiring,
    )


def _counter_key(
    customer: str, supplier: str, part_id: Bytes32, characteristic_id: Bytes32
) -> tuple[str, str, bytes, bytes]:
    return (
        address_arg(customer, "customer"),
        address_arg(supplier, "supplier"),
        to_bytes32(part_id, "part_id"),
        to_bytes32(characteristic_id, "characteristic_id"),
    )


def _lot(lot_id: str, raw: Any) -> Lot:
    (
        customer,
        decimals,
        in_spec,
        recorded_at,
        supplier,
        part_id,
        characteristic_id,
        measured,
        lsl,
        usl,
    ) = raw
    return Lot(
        lot_id=lot_id,
        customer=address_out(customer),
        supplier=address_out(supplier),
        part_id=bytes32_out(part_id),
        characteristic_id=bytes32_out(characteristic_id),
        measured=int(measured),
        lsl=int(lsl),
        usl=int(usl),
        decimals=int(decimals),
        in_spec=bool(in_spec),
        recorded_at=int(recorded_at),
    )


def _hold(hold_id: int, raw: Any) -> Hold:
    (
        customer,
        status,
        placed_at,
        supplier,
        consecutive,
        released_at,
        part_id,
        characteristic_id,
        case_id,
        reason_hash,
        justification_hash,
    ) = raw
    return Hold(
        hold_id=hold_id,
        customer=address_out(customer),
        supplier=address_out(supplier),
        status=HoldStatus(status),
        part_id=bytes32_out(part_id),
        characteristic_id=bytes32_out(characteristic_id),
        consecutive=int(consecutive),
        case_id=int(case_id),
        reason_hash=bytes32_out(reason_hash),
        justification_hash=bytes32_out(justification_hash),
        placed_at=int(placed_at),
        released_at=int(released_at),
    )
