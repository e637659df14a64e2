"""What the rule engine reads: stored records turned into small frozen values.

Each observation keeps the ``record_id`` and ``content_hash`` of the record it came from, so that
a decision can name its inputs and an auditor can fetch and re-hash them. A :class:`Signal` is the
exception: rules emit it, and it points at the decision record that emitted it instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from node.errors import RecordError
from node.offchain.records import StoredRecord

MEASUREMENT = "measurement"
INCOMING_LOT = "incoming_lot"
INSPECTION = "inspection"

Point = tuple[str, float, str]
"""(quantity, value in the quantity's canonical unit, UN/ECE Rec 20 unit code)."""


@dataclass(frozen=True)
class Measurement:
    """A device message as stored: its points in canonical units."""

    record_id: str
    content_hash: str
    device: str
    observed_at_us: int
    points: tuple[Point, ...]

    @classmethod
    def from_record(cls, record: StoredRecord) -> Measurement:
        fields = _fields_of(record, MEASUREMENT)
        raw_points = _field(record, fields, "points")
        if not isinstance(raw_points, list | tuple):
            raise RecordError(f"record {record.record_id}: points is not a list")
        points = tuple(_point(record, index, raw) for index, raw in enumerate(raw_points))
        return cls(
            record.record_id,
            record.content_hash,
            _text(record, fields, "device"),
            record.observed_at_us,
            points,
        )


@dataclass(frozen=True)
class IncomingLot:
    """One characteristic of a supplier's lot at incoming inspection, against its limits."""

    record_id: str
    content_hash: str
    supplier: str
    part: str
    characteristic: str
    lot: str
    value: float
    unit: str
    lsl: float | None
    usl: float | None
    observed_at_us: int

    @classmethod
    def from_record(cls, record: StoredRecord) -> IncomingLot:
        fields = _fields_of(record, INCOMING_LOT)
        return cls(
            record.record_id,
            record.content_hash,
            _text(record, fields, "supplier"),
            _text(record, fields, "part"),
            _text(record, fields, "characteristic"),
            _text(record, fields, "lot"),
            _number(record, "value", _field(record, fields, "value")),
            _text(record, fields, "unit"),
            _optional_number(record, fields, "lsl"),
            _optional_number(record, fields, "usl"),
            record.observed_at_us,
        )


@dataclass(frozen=True)
class Inspection:
    """An inspection verdict. ``process`` is the record's ``characteristic`` field: what was
    inspected names the process step whose defect rate the verdicts make up."""

    record_id: str
    content_hash: str
    process: str
    verdict: str
    observed_at_us: int

    @classmethod
    def from_record(cls, record: StoredRecord) -> Inspection:
        fields = _fields_of(record, INSPECTION)
        return cls(
            record.record_id,
            record.content_hash,
            _text(record, fields, "characteristic"),
            _text(record, fields, "verdict").strip().lower(),
            record.observed_at_us,
        )


@dataclass(frozen=True)
class Signal:
    """Emitted by a rule's ``emit`` action, for rules with a ``signal`` condition.

    ``scope`` is the emitting rule's scope (canonical JSON of its scope fields); ``decision_id``
    is the record id of the emitting decision and ``content_hash`` that record's content hash,
    so a signal is an input like any record.
    """

    name: str
    scope: str
    observed_at_us: int
    decision_id: str
    content_hash: str

    @property
    def record_id(self) -> str:
        return self.decision_id


Observation = Measurement | IncomingLot | Inspection | Signal

_BUILDERS: Mapping[str, Callable[[StoredRecord], Measurement | IncomingLot | Inspection]] = {
    MEASUREMENT: Measurement.from_record,
    INCOMING_LOT: IncomingLot.from_record,
    INSPECTION: Inspection.from_record,
}


def observation_from_record(record: StoredRecord) -> Measurement | IncomingLot | Inspection | None:
    """The observation a record makes, or None for record types rules do not read (decisions
    included: the engine handles the signals it emits itself)."""
    builder = _BUILDERS.get(record.record_type)
    return None if builder is None else builder(record)


def observations_from_records(
    records: Iterable[StoredRecord],
) -> list[Measurement | IncomingLot | Inspection]:
    """The observations of ``records``, in their order, skipping types rules do not read."""
    found = (observation_from_record(record) for record in records)
    return [observation for observation in found if observation is not None]


# -- field readers -------------------------------------------------------------------------


def _fields_of(record: StoredRecord, record_type: str) -> Mapping[str, Any]:
    if record.record_type != record_type:
        raise RecordError(
            f"record {record.record_id} is a {record.record_type!r} record, not {record_type!r}"
        )
    return record.public


def _field(record: StoredRecord, fields: Mapping[str, Any], name: str) -> Any:
    try:
        return fields[name]
    except KeyError:
        raise RecordError(
            f"record {record.record_id} ({record.record_type}) has no field {name!r}"
        ) from None


def _text(record: StoredRecord, fields: Mapping[str, Any], name: str) -> str:
    value = _field(record, fields, name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"record {record.record_id}: {name} is not text")
    return str(value)


def _number(record: StoredRecord, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"record {record.record_id}: {name} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise RecordError(f"record {record.record_id}: {name} is {number}")
    return number


def _optional_number(record: StoredRecord, fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return None if value is None else _number(record, name, value)


def _point(record: StoredRecord, index: int, raw: Any) -> Point:
    if not isinstance(raw, Mapping) or not {"q", "v", "u"} <= raw.keys():
        raise RecordError(f"record {record.record_id}: point {index} is not {{q, v, u}}")
    quantity, unit = raw["q"], raw["u"]
    if not isinstance(quantity, str) or not isinstance(unit, str):
        raise RecordError(f"record {record.record_id}: point {index} has a non-text q or u")
    return (quantity, _number(record, f"point {index}", raw["v"]), unit)
