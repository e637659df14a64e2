"""What the resilience metrics are computed from: small frozen values read out of the member's
store and the chain (:mod:`node.resilience.collect`), or built by hand in a test.

Every fact keeps where it came from (a record id, a transaction hash and block), so that each
metric can name the records and events behind it. Times are UTC microseconds; a chain event's
time is its block's timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChainEvent",
    "DecisionFact",
    "LotResult",
    "MeasurementValue",
    "ParameterChange",
    "PlanReview",
    "ResilienceFacts",
    "SourceStatus",
    "TaskTimes",
    "supplier_key",
]


def supplier_key(name: str) -> str:
    """A supplier as the metrics key it: an address in lower case, any other name trimmed."""
    text = name.strip()
    if len(text) == 42 and text.startswith("0x"):
        return text.lower()
    return text


@dataclass(frozen=True)
class ChainEvent:
    """A decoded contract event: its Solidity name, its arguments (snake case, as the bindings
    decode them), its block's time and where it was logged."""

    name: str
    args: Mapping[str, Any]
    at_us: int
    block_number: int
    tx_hash: str
    log_index: int = 0


@dataclass(frozen=True)
class LotResult:
    """One characteristic of a supplier's lot at incoming inspection (an ``incoming_lot``
    record), with what the store knows of its traceability."""

    record_id: str
    supplier: str
    part: str
    characteristic: str
    lot: str
    value: float
    lsl: float | None
    usl: float | None
    observed_at_us: int
    anchored: bool = False
    """The record is in a batch whose root is anchored on-chain."""
    traced: bool = False
    """A genealogy record names the lot as a material or parent lot (where it was used)."""

    @property
    def supplier_key(self) -> str:
        return supplier_key(self.supplier)

    @property
    def assessable(self) -> bool:
        return self.lsl is not None or self.usl is not None

    @property
    def out_of_spec(self) -> bool:
        """Strictly below the LSL or strictly above the USL (as ``spc.observed_ppm``)."""
        return (self.lsl is not None and self.value < self.lsl) or (
            self.usl is not None and self.value > self.usl
        )


@dataclass(frozen=True)
class DecisionFact:
    """A ``decision`` record: a rule firing."""

    record_id: str
    rule_id: str
    fired_at_us: int
    action: Mapping[str, Any]
    condition: Mapping[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    """The devices its conditions held for (a per-device condition's scope), if any."""

    @property
    def action_kind(self) -> str:
        return str(self.action.get("kind", ""))


@dataclass(frozen=True)
class MeasurementValue:
    """One point of a ``measurement`` record, in its canonical unit."""

    record_id: str
    device: str
    quantity: str
    value: float
    unit: str
    observed_at_us: int


@dataclass(frozen=True)
class TaskTimes:
    """A task of the node's task board (created, closed, due)."""

    key: str
    kind: str
    created_at_us: int
    closed_at_us: int | None = None
    due_at_us: int | None = None


@dataclass(frozen=True)
class PlanReview:
    """A ``contingency_plan`` record: one review (version) of a plan."""

    record_id: str
    plan_id: str
    reviewed_at_us: int
    title: str = ""
    scope: str = ""
    review_interval_days: float | None = None


@dataclass(frozen=True)
class ParameterChange:
    """A setpoint a member recorded on QualityLedger: signed by its oracle (EIP-712) and written
    on the shared chain at ``recorded_at_us``; in force from ``effective_at_us``."""

    record_id: str
    supplier: str
    equipment: str
    parameter: str
    effective_at_us: int
    recorded_at_us: int | None
    tx_hash: str | None = None
    block_number: int | None = None

    @property
    def supplier_key(self) -> str:
        return supplier_key(self.supplier)


@dataclass(frozen=True)
class SourceStatus:
    """Whether a source could be read: ``ok``, ``not_deployed`` or ``unavailable``."""

    name: str
    status: str
    detail: str = ""
    count: int = 0


@dataclass(frozen=True)
class ResilienceFacts:
    """Everything the metrics read. ``member`` is this node's account (None: every hold, case
    and line on the chain counts); ``line_names`` and ``names`` label lines and members."""

    member: str | None = None
    lots: tuple[LotResult, ...] = ()
    decisions: tuple[DecisionFact, ...] = ()
    measurements: tuple[MeasurementValue, ...] = ()
    events: tuple[ChainEvent, ...] = ()
    tasks: tuple[TaskTimes, ...] = ()
    plans: tuple[PlanReview, ...] = ()
    changes: tuple[ParameterChange, ...] = ()
    line_names: Mapping[str, str] = field(default_factory=dict)
    """On-chain line id (bytes32 hex) -> the line's name in this node's config."""
    names: Mapping[str, str] = field(default_factory=dict)
    """Member address (lower case) -> the member's name."""
    sources: tuple[SourceStatus, ...] = ()
