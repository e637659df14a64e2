"""Typed binding of LineControl.sol: bounded line compensations, PLC acknowledgements, line stops.

Values (baselines, bounds, deltas, offsets, read-backs) are the contract's fixed-point integers:
``value / 10**decimals`` in the parameter's unit, ``decimals`` being the parameter's. ``bytes32``
ids and hashes may be given as 32 raw bytes or hex; they come back as ``"0x"`` + 64 hex digits.
Malformed arguments are a :class:`ValueError` before anything is sent; refusals by the contract
raise their decoded errors (:mod:`node.chain.contract_errors`).
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
    int_arg,
    to_bytes32,
    uint_arg,
)
from node.chain.artifacts import load_artifact
from node.chain.bindings import ContractBinding
from node.chain.contract_events import EventDecoder, LoggedEvent, of_type
from node.chain.sender import Receipt, TransactionSender

__all__ = [
    "ARTIFACT_NAME",
    "CompensationAcknowledgedEvent",
    "CompensationFailedEvent",
    "CompensationRequest",
    "CompensationRequestedEvent",
    "LineControl",
    "LineControlEvent",
    "LineRegisteredEvent",
    "LineRestartedEvent",
    "LineState",
    "LineStoppedEvent",
    "Parameter",
    "ParameterConfiguredEvent",
    "RequestStatus",
    "RequestedCompensation",
]

ARTIFACT_NAME = "LineControl"


class RequestStatus(IntEnum):
    """``ILineControl.RequestStatus``."""

    NONE = 0
    PENDING = 1
    APPLIED = 2
    FAILED = 3


@dataclass(frozen=True)
class LineState:
    """A registered line (``LineControl.line``)."""

    line_id: str
    owner: str
    stopped: bool
    registered_at: int


@dataclass(frozen=True)
class Parameter:
    """A line parameter's bounds and state (``LineControl.parameter``)."""

    line_id: str
    parameter_id: str
    baseline: int
    min_delta: int
    max_delta: int
    max_abs_offset: int
    offset: int
    pending_request_id: int | None
    decimals: int

    @property
    def current(self) -> int:
        """The parameter's value as the applied compensations left it: baseline + offset."""
        return self.baseline + self.offset


@dataclass(frozen=True)
class CompensationRequest:
    """A compensation request and its acknowledgement, once recorded (``LineControl.request``).

    ``requester`` and ``acknowledger`` are the accounts that sent them (the owner member's account
    or one of its oracle keys); the acknowledgement fields are ``None``/zero while pending.
    """

    request_id: int
    line_id: str
    parameter_id: str
    delta: int
    decision_hash: str
    requester: str
    requested_at: int
    status: RequestStatus
    read_back: int
    detail_hash: str
    acknowledger: str | None
    acknowledged_at: int


@dataclass(frozen=True)
class RequestedCompensation:
    """What ``request_compensation`` returns: the new request's id and its receipt."""

    request_id: int
    receipt: Receipt


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRegisteredEvent(LoggedEvent):
    line_id: str
    owner: str


@dataclass(frozen=True)
class ParameterConfiguredEvent(LoggedEvent):
    line_id: str
    parameter_id: str
    baseline: int
    min_delta: int
    max_delta: int
    max_abs_offset: int
    decimals: int


@dataclass(frozen=True)
class CompensationRequestedEvent(LoggedEvent):
    request_id: int
    line_id: str
    parameter_id: str
    delta: int
    decision_hash: str


@dataclass(frozen=True)
class CompensationAcknowledgedEvent(LoggedEvent):
    """The PLC applied the compensation; ``offset`` is the parameter's cumulative offset now."""

    request_id: int
    line_id: str
    parameter_id: str
    read_back: int
    offset: int
    detail_hash: str


@dataclass(frozen=True)
class CompensationFailedEvent(LoggedEvent):
    request_id: int
    line_id: str
    parameter_id: str
    read_back: int
    detail_hash: str


@dataclass(frozen=True)
class LineStoppedEvent(LoggedEvent):
    """``by`` is the account that stopped the line (the owner member's account or oracle key)."""

    line_id: str
    by: str
    reason_hash: str


@dataclass(frozen=True)
class LineRestartedEvent(LoggedEvent):
    line_id: str
    by: str
    reason_hash: str


LineControlEvent = (
    LineRegisteredEvent
    | ParameterConfiguredEvent
    | CompensationRequestedEvent
    | CompensationAcknowledgedEvent
    | CompensationFailedEvent
    | LineStoppedEvent
    | LineRestartedEvent
)

_EVENTS: dict[str, type[LineControlEvent]] = {
    "LineRegistered": LineRegisteredEvent,
    "ParameterConfigured": ParameterConfiguredEvent,
    "CompensationRequested": CompensationRequestedEvent,
    "CompensationAcknowledged": CompensationAcknowledgedEvent,
    "CompensationFailed": CompensationFailedEvent,
    "LineStopped": LineStoppedEvent,
    "LineRestarted": LineRestartedEvent,
}


class LineControl:
    """Line control, read and written through one account's sender: the line owner member's
    account (registration, configuration) or one of its oracle keys (requests, acknowledgements,
    stops and restarts)."""

    def __init__(self, binding: ContractBinding) -> None:
        self.binding = binding
        self._events: EventDecoder[LineControlEvent] = EventDecoder(binding, _EVENTS)

    @property
    def decoder(self) -> EventDecoder[LineControlEvent]:
        """Decodes this contract's logs (for an event consumer following several contracts)."""
        return self._events

    @classmethod
    def at(cls, sender: TransactionSender, address: str) -> LineControl:
        return cls(ContractBinding.at(sender, load_artifact(ARTIFACT_NAME), address))

    @classmethod
    def deploy(
        cls, sender: TransactionSender, consortium_address: str
    ) -> tuple[LineControl, Receipt]:
        binding, receipt = ContractBinding.deploy(
            sender,
            load_artifact(ARTIFACT_NAME),
            address_arg(consortium_address, "consortium_address"),
        )
        return cls(binding), receipt

    @property
    def address(self) -> str:
        return self.binding.address

    # -- lines and parameters ----------------------------------------------------------------

    def register_line(self, line_id: Bytes32) -> Receipt:
        """Register a line for the sending manufacturer member (its own account)."""
        return self.binding.transact("registerLine", to_bytes32(line_id, "line_id"))

    def configure_parameter(
        self,
        line_id: Bytes32,
        parameter_id: Bytes32,
        *,
        baseline: int,
        min_delta: int,
        max_delta: int,
        max_abs_offset: int,
        decimals: int,
    ) -> Receipt:
        """Configure (or re-base) a parameter: its offset restarts at zero from ``baseline``."""
        return self.binding.transact(
            "configureParameter",
            to_bytes32(line_id, "line_id"),
            to_bytes32(parameter_id, "parameter_id"),
            int_arg(baseline, "baseline"),
            int_arg(min_delta, "min_delta"),
            int_arg(max_delta, "max_delta"),
            int_arg(max_abs_offset, "max_abs_offset"),
            uint_arg(decimals, "decimals", 8),
        )

    # -- compensations -----------------------------------------------------------------------

    def request_compensation(
        self, line_id: Bytes32, parameter_id: Bytes32, delta: int, decision_hash: Bytes32
    ) -> RequestedCompensation:
        """Request a compensation; refused out of bounds (``DeltaOutOfBounds``,
        ``OffsetOutOfBounds``), on a stopped line (``LineIsStopped``) or while the parameter has a
        request in flight (``RequestPending``)."""
        receipt = self.binding.transact(
            "requestCompensation",
            to_bytes32(line_id, "line_id"),
            to_bytes32(parameter_id, "parameter_id"),
            int_arg(delta, "delta"),
            to_bytes32(decision_hash, "decision_hash"),
        )
        (event,) = of_type(self.events(receipt), CompensationRequestedEvent)
        return RequestedCompensation(event.request_id, receipt)

    def record_acknowledgement(
        self, request_id: int, *, applied: bool, read_back: int, detail_hash: Bytes32
    ) -> Receipt:
        """Record the PLC's acknowledgement of a request, once (``AlreadyAcknowledged``)."""
        return self.binding.transact(
            "recordAcknowledgement",
            uint_arg(request_id, "request_id"),
            bool(applied),
            int_arg(read_back, "read_back"),
            to_bytes32(detail_hash, "detail_hash"),
        )

    # -- stops -------------------------------------------------------------------------------

    def stop_line(self, line_id: Bytes32, reason_hash: Bytes32) -> Receipt:
        """Stop a running line (``LineAlreadyStopped`` if it is stopped)."""
        return self.binding.transact(
            "stopLine", to_bytes32(line_id, "line_id"), to_bytes32(reason_hash, "reason_hash")
        )

    def restart_line(self, line_id: Bytes32, reason_hash: Bytes32) -> Receipt:
        """Restart a stopped line (``LineNotStopped`` if it is running)."""
        return self.binding.transact(
            "restartLine", to_bytes32(line_id, "line_id"), to_bytes32(reason_hash, "reason_hash")
        )

    # -- reads -------------------------------------------------------------------------------

    def consortium(self) -> str:
        return address_out(self.binding.read("consortium"))

    def line(self, line_id: Bytes32) -> LineState:
        """``UnknownLine`` if never registered."""
        key = to_bytes32(line_id, "line_id")
        owner, stopped, registered_at = self.binding.read("line", key)
        return LineState(
            line_id=bytes32_out(key),
            owner=address_out(owner),
            stopped=bool(stopped),
            registered_at=int(registered_at),
        )

    def is_stopped(self, line_id: Bytes32) -> bool:
        return bool(self.binding.read("isStopped", to_bytes32(line_id, "line_id")))

    def parameter(self, line_id: Bytes32, parameter_id: Bytes32) -> Parameter:
        """``UnknownParameter`` if never configured."""
        line_key = to_bytes32(line_id, "line_id")
        parameter_key = to_bytes32(parameter_id, "parameter_id")
        raw = self.binding.read("parameter", line_key, parameter_key)
        baseline, min_delta, max_delta, max_abs_offset, offset, pending, decimals, _ = raw
        return Parameter(
            line_id=bytes32_out(line_key),
            parameter_id=bytes32_out(parameter_key),
            baseline=int(baseline),
            min_delta=int(min_delta),
            max_delta=int(max_delta),
            max_abs_offset=int(max_abs_offset),
            offset=int(offset),
            pending_request_id=int(pending) or None,
            decimals=int(decimals),
        )

    def offset(self, line_id: Bytes32, parameter_id: Bytes32) -> int:
        return int(
            self.binding.read(
                "offset", to_bytes32(line_id, "line_id"), to_bytes32(parameter_id, "parameter_id")
            )
        )

    def request(self, request_id: int) -> CompensationRequest:
        """``UnknownRequest`` if the id was never used."""
        raw = self.binding.read("request", uint_arg(request_id, "request_id"))
        return _request(request_id, raw)

    def request_count(self) -> int:
        return int(self.binding.read("requestCount"))

    # -- events ------------------------------------------------------------------------------

    def events(self, receipt: Receipt) -> list[LineControlEvent]:
        """The events this contract logged in ``receipt``, in log order."""
        return self._events.in_receipt(receipt)

    def events_between(
        self,
        from_block: int,
        to_block: int | Literal["latest"] = "latest",
        names: tuple[str, ...] | None = None,
    ) -> list[LineControlEvent]:
        """The events logged in the block range (inclusive), in chain order; only those named in
        ``names`` (Solidity event names) if given."""
        return self._events.between(from_block, to_block, names)


def _request(request_id: int, raw: Any) -> CompensationRequest:
    (
        line_id,
        parameter_id,
        delta,
        decision_hash,
        requester,
        requested_at,
        status,
        read_back,
        detail_hash,
        acknowledger,
        acknowledged_at,
    ) = raw
    return CompensationRequest(
        request_id=request_id,
        line_id=bytes32_out(line_id),
        parameter_id=bytes32_out(parameter_id),
        delta=int(delta),
        decision_hash=bytes32_out(decision_hash),
        requester=address_out(requester),
        requested_at=int(requested_at),
        status=RequestStatus(status),
        read_back=int(read_back),
        detail_hash=bytes32_out(detail_hash),
        acknowledger=address_or_none(acknowledger),
        acknowledged_at=int(acknowledged_at),
    )
