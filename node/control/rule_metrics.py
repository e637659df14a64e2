"""The conditions a rule can test: one frozen spec and one tracker per metric.

A spec is what the rule file says (parameters, thresholds with units). A tracker holds the running
state of one condition of one rule, per scope (a device, a supplier's part characteristic, a
process), and says in which scopes the condition holds. When a rule fires, the tracker gives the
:class:`Evidence`: the input records and the computed values. ``spec.replay`` recomputes those
values from the input records alone, which is how an auditor replays a decision.

Metrics (the exact semantics are in docs/rules.md):

* ``cv``: coefficient of variation of subgroups of N consecutive values of a quantity (from
  devices matching a pattern); holds after K consecutive subgroups beyond the threshold.
* ``lots_out_of_spec``: K consecutive incoming lots beyond their USL/LSL, per supplier, part and
  characteristic.
* ``cpk``: Cpk (within sigma MR̄/1.128) of the last N values of a quantity against LSL/USL.
* ``defect_rate_change``: relative change of a process's defect rate, this calendar month (to
  date) against the whole previous month (UTC), from inspection verdicts.
* ``reading``: each single value against a limit (red lines; see node/control/redlines.py).
* ``signal``: a signal emitted by another rule, within a time window.
"""

from __future__ import annotations

import operator
import statistics
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

import orjson

from node.control import spc
from node.control.observations import (
    INCOMING_LOT,
    INSPECTION,
    MEASUREMENT,
    IncomingLot,
    Inspection,
    Measurement,
    Observation,
    Signal,
)
from node.errors import ControlError, RecordError, SpcError
from node.offchain.records import StoredRecord, canonical_json
from node.oracles.units import Dimension, UnitError, converter, unit_of

GLOBAL_SCOPE = "{}"
"""The scope of a condition that keeps one state for everything it sees."""

InputRef = tuple[str, str]
"""(record_id, content_hash) of an input record."""


def scope_key(fields: Mapping[str, str]) -> str:
    """A scope's key: canonical JSON of its fields (``{"device":"gauge-1"}``)."""
    return canonical_json(dict(fields))


def scope_fields(key: str) -> dict[str, str]:
    fields = orjson.loads(key)
    return {str(name): str(value) for name, value in fields.items()}


class ReplayMismatch(ControlError):
    """The input records of a decision cannot produce what it says (wrong type, wrong quantity,
    a value the decision does not point at)."""


# -- thresholds ------------------------------------------------------------------------------


class Comparator(StrEnum):
    ABOVE = "above"
    AT_OR_ABOVE = "at_or_above"
    BELOW = "below"
    AT_OR_BELOW = "at_or_below"

    @property
    def test(self) -> Callable[[float, float], bool]:
        return _TESTS[self]


_TESTS: Mapping[Comparator, Callable[[float, float], bool]] = {
    Comparator.ABOVE: operator.gt,
    Comparator.AT_OR_ABOVE: operator.ge,
    Comparator.BELOW: operator.lt,
    Comparator.AT_OR_BELOW: operator.le,
}


@dataclass(frozen=True)
class Amount:
    """A number and its UN/ECE Rec 20 unit code (None: a plain number, e.g. a Cpk)."""

    value: float
    unit: str | None = None

    def to(self, code: str) -> float:
        """This amount in unit ``code`` (UnitError if the dimensions differ)."""
        if self.unit is None or self.unit == code:
            return self.value
        return converter(self.unit, code)(self.value)

    @property
    def dimension(self) -> Dimension | None:
        return None if self.unit is None else unit_of(self.unit).dimension

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Amount:
        return cls(float(data["value"]), data.get("unit"))

    def __str__(self) -> str:
        return f"{self.value:g}" if self.unit is None else f"{self.value:g} {self.unit}"


@dataclass(frozen=True)
class Threshold:
    comparator: Comparator
    limit: Amount

    def as_json(self) -> dict[str, Any]:
        return {"comparator": self.comparator.value, **self.limit.as_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Threshold:
        return cls(Comparator(data["comparator"]), Amount.from_json(data))

    @cached_property
    def ratio(self) -> float:
        """The limit as a plain fraction (0.8 P1 is 0.008)."""
        return self.limit.to("C62")

    def __str__(self) -> str:
        return f"{self.comparator.value.replace('_', ' ')} {self.limit}"


@dataclass(frozen=True)
class Devices:
    """Which values of a measurement a condition reads: one quantity, from devices matching any
    of the glob patterns (``fnmatch``, case-sensitive)."""

    quantity: str
    patterns: tuple[str, ...] = ("*",)
    per_device: bool = False

    def matches(self, device: str) -> bool:
        return any(fnmatchcase(device, pattern) for pattern in self.patterns)

    def scope(self, device: str) -> str:
        fields = {"quantity": self.quantity}
        if self.per_device:
            fields["device"] = device
        return scope_key(fields)

    @property
    def scope_names(self) -> frozenset[str]:
        return frozenset({"quantity", "device"} if self.per_device else {"quantity"})

    def as_json(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "devices": list(self.patterns),
            "per_device": self.per_device,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Devices:
        return cls(data["quantity"], tuple(data["devices"]), bool(data["per_device"]))

    def __str__(self) -> str:
        each = ", per device" if self.per_device else ""
        return f"{self.quantity} from {_listed(self.patterns)}{each}"


def _listed(patterns: Sequence[str]) -> str:
    return "|".join(patterns)


def matches_any(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(value, pattern) for pattern in patterns)


# -- evidence and replay ---------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Why a condition holds in ``scope``: its input records, in order, and what was computed
    from them. ``computed`` refers to inputs by their index in ``inputs``."""

    scope: str
    inputs: tuple[InputRef, ...]
    computed: Mapping[str, Any]


@dataclass(frozen=True)
class LeafReplay:
    holds: bool
    computed: Mapping[str, Any]


class _Inputs:
    """Distinct input records in first-seen order, and the index of each."""

    def __init__(self) -> None:
        self.refs: list[InputRef] = []
        self._index: dict[str, int] = {}

    def index(self, record_id: str, content_hash: str) -> int:
        found = self._index.get(record_id)
        if found is None:
            found = self._index[record_id] = len(self.refs)
            self.refs.append((record_id, content_hash))
        return found


def _record(records: Sequence[StoredRecord], index: int) -> StoredRecord:
    if not 0 <= index < len(records):
        raise ReplayMismatch(f"input {index} does not exist ({len(records)} inputs)")
    return records[index]


def _point_value(
    records: Sequence[StoredRecord], ref: Sequence[int], devices: Devices, unit: str
) -> float:
    """The value that ``ref`` = [input, point] points at, checked against ``devices``, in
    ``unit``."""
    record = _record(records, int(ref[0]))
    try:
        measurement = Measurement.from_record(record)
    except RecordError as exc:
        raise ReplayMismatch(str(exc)) from exc
    point_index = int(ref[1])
    if not 0 <= point_index < len(measurement.points):
        raise ReplayMismatch(f"record {record.record_id} has no point {point_index}")
    quantity, value, value_unit = measurement.points[point_index]
    if quantity != devices.quantity or not devices.matches(measurement.device):
        raise ReplayMismatch(
            f"record {record.record_id} point {point_index} is {quantity} of "
            f"{measurement.device}, which the condition does not read"
        )
    return _convert(value, value_unit, unit)


def _convert(value: float, from_unit: str, to_unit: str) -> float:
    return value if from_unit == to_unit else converter(from_unit, to_unit)(value)


# -- specs -------------------------------------------------------------------------------------


class LeafSpec(ABC):
    """A condition of a rule file (frozen dataclass subclasses)."""

    metric: ClassVar[str]
    observes: ClassVar[str]
    """The record type it reads ("measurement", "incoming_lot", "inspection"; "signal")."""

    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """Everything the condition is, as JSON data (the decision's thresholds)."""

    @property
    @abstractmethod
    def scope_names(self) -> frozenset[str]:
        """The fields of this condition's scopes (usable as ``{name}`` in actions)."""

    @abstractmethod
    def tracker(self) -> Tracker[Any]:
        """A fresh tracker."""

    @abstractmethod
    def describe(self) -> str:
        """One line for people (``qnode rules check``, logs)."""

    @abstractmethod
    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        """Recompute ``computed`` from ``records`` (the condition's inputs, in order)."""

    def fingerprint(self) -> str:
        """Changes when the condition changes (running state is then started afresh)."""
        return canonical_json({"metric": self.metric, **self.parameters()})


@dataclass(frozen=True)
class CvSpec(LeafSpec):
    metric: ClassVar[str] = "cv"
    observes: ClassVar[str] = MEASUREMENT
    devices: Devices
    subgroup_size: int
    threshold: Threshold
    consecutive: int

    def parameters(self) -> dict[str, Any]:
        return {
            **self.devices.as_json(),
            "subgroup_size": self.subgroup_size,
            "threshold": self.threshold.as_json(),
            "consecutive": self.consecutive,
        }

    @property
    def scope_names(self) -> frozenset[str]:
        return self.devices.scope_names

    def tracker(self) -> CvTracker:
        return CvTracker(self)

    def describe(self) -> str:
        return (
            f"CV of {self.devices} in subgroups of {self.subgroup_size} {self.threshold}, "
            f"{self.consecutive} consecutive"
        )

    def beyond(self, cv: float) -> bool:
        return self.threshold.comparator.test(cv, self.threshold.ratio)

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        unit = str(computed["unit"])
        subgroups = []
        for subgroup in computed["subgroups"]:
            refs = subgroup["points"]
            values = [_point_value(records, ref, self.devices, unit) for ref in refs]
            cv = subgroup_cv(values)
            subgroups.append({"points": refs, "cv": cv})
        holds = len(subgroups) >= self.consecutive and all(
            len(s["points"]) == self.subgroup_size and s["cv"] is not None and self.beyond(s["cv"])
            for s in subgroups
        )
        return LeafReplay(holds, {"unit": unit, "subgroups": subgroups})


@dataclass(frozen=True)
class LotsSpec(LeafSpec):
    metric: ClassVar[str] = "lots_out_of_spec"
    observes: ClassVar[str] = INCOMING_LOT
    limit: str
    """"usl" (value > USL), "lsl" (value < LSL) or "either"."""
    consecutive: int
    suppliers: tuple[str, ...] = ("*",)
    parts: tuple[str, ...] = ("*",)
    characteristics: tuple[str, ...] = ("*",)

    def parameters(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "consecutive": self.consecutive,
            "suppliers": list(self.suppliers),
            "parts": list(self.parts),
            "characteristics": list(self.characteristics),
        }

    @property
    def scope_names(self) -> frozenset[str]:
        return frozenset({"supplier", "part", "characteristic"})

    def tracker(self) -> LotsTracker:
        return LotsTracker(self)

    def describe(self) -> str:
        side = {"usl": "above the USL", "lsl": "below the LSL", "either": "out of spec"}
        return (
            f"{self.consecutive} consecutive lots {side[self.limit]} per supplier, part and "
            f"characteristic (suppliers {_listed(self.suppliers)}, parts {_listed(self.parts)}, "
            f"characteristics {_listed(self.characteristics)})"
        )

    def selects(self, lot: IncomingLot) -> bool:
        return (
            matches_any(lot.supplier, self.suppliers)
            and matches_any(lot.part, self.parts)
            and matches_any(lot.characteristic, self.characteristics)
        )

    def verdict(self, lot: IncomingLot) -> tuple[bool, float] | None:
        """(out of spec, the limit it was compared with), or None when the lot has no limit on
        the side(s) this condition checks."""
        checks = []
        if self.limit in ("usl", "either") and lot.usl is not None:
            checks.append((lot.value > lot.usl, lot.usl))
        if self.limit in ("lsl", "either") and lot.lsl is not None:
            checks.append((lot.value < lot.lsl, lot.lsl))
        if not checks:
            return None
        return next((check for check in checks if check[0]), checks[0])

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        lots = []
        scopes = set()
        for index in range(len(records)):
            try:
                lot = IncomingLot.from_record(records[index])
            except RecordError as exc:
                raise ReplayMismatch(str(exc)) from exc
            if not self.selects(lot):
                raise ReplayMismatch(f"lot record {lot.record_id} is not one this rule reads")
            checked = self.verdict(lot)
            scopes.add((lot.supplier, lot.part, lot.characteristic))
            lots.append(_lot_json(lot, checked))
        holds = (
            len(scopes) == 1
            and len(lots) >= self.consecutive
            and all(lot["out_of_spec"] for lot in lots)
        )
        return LeafReplay(holds, {"lots": lots})


def _lot_json(lot: IncomingLot, checked: tuple[bool, float] | None) -> dict[str, Any]:
    return {
        "lot": lot.lot,
        "value": lot.value,
        "unit": lot.unit,
        "limit": None if checked is None else checked[1],
        "out_of_spec": False if checked is None else checked[0],
    }


@dataclass(frozen=True)
class CpkSpec(LeafSpec):
    metric: ClassVar[str] = "cpk"
    observes: ClassVar[str] = MEASUREMENT
    devices: Devices
    window: int
    lsl: Amount | None
    usl: Amount | None
    threshold: Threshold

    @property
    def unit(self) -> str:
        """The unit values are converted to: the limits' (LSL's if both are given)."""
        limit = self.lsl if self.lsl is not None else self.usl
        assert limit is not None and limit.unit is not None  # checked when the file is read
        return limit.unit

    def spec_limits(self) -> spc.SpecLimits:
        unit = self.unit
        return spc.SpecLimits(
            None if self.lsl is None else self.lsl.to(unit),
            None if self.usl is None else self.usl.to(unit),
        )

    def parameters(self) -> dict[str, Any]:
        return {
            **self.devices.as_json(),
            "window": self.window,
            "lsl": None if self.lsl is None else self.lsl.as_json(),
            "usl": None if self.usl is None else self.usl.as_json(),
            "threshold": self.threshold.as_json(),
        }

    @property
    def scope_names(self) -> frozenset[str]:
        return self.devices.scope_names

    def tracker(self) -> CpkTracker:
        return CpkTracker(self)

    def describe(self) -> str:
        limits = ", ".join(
            f"{name} {limit}" for name, limit in (("LSL", self.lsl), ("USL", self.usl)) if limit
        )
        return f"Cpk of the last {self.window} {self.devices} ({limits}) {self.threshold}"

    def study(self, values: Sequence[float]) -> dict[str, Any]:
        """mean, sigma_within (MR̄/1.128) and cpk of ``values`` (cpk None if sigma is 0)."""
        mean = statistics.fmean(values)
        try:
            sigma = spc.within_sigma([[v] for v in values], spc.SigmaMethod.MOVING_RANGE)
            cpk: float | None = spc.capability_indices(mean, sigma, self.spec_limits()).k
        except SpcError:
            sigma, cpk = 0.0, None
        return {"count": len(values), "mean": mean, "sigma_within": sigma, "cpk": cpk}

    def beyond(self, study: Mapping[str, Any]) -> bool:
        cpk = study["cpk"]
        return (
            study["count"] == self.window
            and cpk is not None
            and self.threshold.comparator.test(cpk, self.threshold.limit.value)
        )

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        refs = computed["points"]
        values = [_point_value(records, ref, self.devices, self.unit) for ref in refs]
        study = self.study(values) if len(values) >= 2 else {"count": len(values), "cpk": None}
        return LeafReplay(self.beyond(study), {"points": refs, **study})


@dataclass(frozen=True)
class DefectRateSpec(LeafSpec):
    metric: ClassVar[str] = "defect_rate_change"
    observes: ClassVar[str] = INSPECTION
    processes: tuple[str, ...]
    threshold: Threshold
    """On the relative change (rate - previous rate) / previous rate, a ratio (15 P1)."""
    min_inspections: int = 1
    defect_verdicts: tuple[str, ...] = ("fail",)
    good_verdicts: tuple[str, ...] = ("pass",)

    def parameters(self) -> dict[str, Any]:
        return {
            "processes": list(self.processes),
            "threshold": self.threshold.as_json(),
            "min_inspections": self.min_inspections,
            "defect_verdicts": list(self.defect_verdicts),
            "good_verdicts": list(self.good_verdicts),
        }

    @property
    def scope_names(self) -> frozenset[str]:
        return frozenset({"process"})

    def tracker(self) -> DefectRateTracker:
        return DefectRateTracker(self)

    def describe(self) -> str:
        return (
            f"defect rate of process {_listed(self.processes)} this month against last month "
            f"{self.threshold} (at least {self.min_inspections} inspections a month)"
        )

    def counts(self, inspection: Inspection) -> bool | None:
        """True for a defect, False for a good part, None for a verdict that is not counted."""
        if inspection.verdict in self.defect_verdicts:
            return True
        if inspection.verdict in self.good_verdicts:
            return False
        return None

    def compare(
        self, month: str, tallies: Mapping[str, tuple[int, int]]
    ) -> tuple[bool, dict[str, Any]]:
        """Whether the rate of ``month`` against the month before it is beyond the threshold,
        from ``tallies``: month -> (inspections, defects)."""
        previous = previous_month(month)
        inspections, defects = tallies.get(month, (0, 0))
        before, defects_before = tallies.get(previous, (0, 0))
        rate = defects / inspections if inspections else None
        rate_before = defects_before / before if before else None
        change = None
        if rate is not None and rate_before:  # a previous rate of 0 has no relative change
            change = (rate - rate_before) / rate_before
        computed = {
            "month": month,
            "inspections": inspections,
            "defects": defects,
            "rate": rate,
            "previous_month": previous,
            "previous_inspections": before,
            "previous_defects": defects_before,
            "previous_rate": rate_before,
            "change": change,
        }
        holds = (
            change is not None
            and min(inspections, before) >= self.min_inspections
            and self.threshold.comparator.test(change, self.threshold.ratio)
        )
        return holds, computed

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        month = str(computed["month"])
        tallies: dict[str, tuple[int, int]] = {}
        processes = set()
        for record in records:
            try:
                inspection = Inspection.from_record(record)
            except RecordError as exc:
                raise ReplayMismatch(str(exc)) from exc
            verdict = self.counts(inspection)
            key = month_of(inspection.observed_at_us)
            if verdict is None or key not in (month, previous_month(month)):
                raise ReplayMismatch(f"inspection {record.record_id} does not count here")
            if not matches_any(inspection.process, self.processes):
                raise ReplayMismatch(f"inspection {record.record_id} is of another process")
            processes.add(inspection.process)
            count, defects = tallies.get(key, (0, 0))
            tallies[key] = (count + 1, defects + int(verdict))
        holds, recomputed = self.compare(month, tallies)
        return LeafReplay(holds and len(processes) == 1, recomputed)


@dataclass(frozen=True)
class ReadingSpec(LeafSpec):
    """A red line: every single value of a quantity against a limit."""

    metric: ClassVar[str] = "reading"
    observes: ClassVar[str] = MEASUREMENT
    devices: Devices
    threshold: Threshold
    absolute: bool = False
    """Compare |value| (a tolerance either side of zero, e.g. a weighing error)."""

    def parameters(self) -> dict[str, Any]:
        return {
            **self.devices.as_json(),
            "threshold": self.threshold.as_json(),
            "absolute": self.absolute,
        }

    @property
    def scope_names(self) -> frozenset[str]:
        return frozenset({"quantity", "device"})

    def tracker(self) -> Tracker[Any]:
        raise ControlError("reading conditions are red lines, evaluated by RedLines")

    def describe(self) -> str:
        quantity = self.devices.quantity
        value = f"|{quantity}|" if self.absolute else quantity
        return f"{value} of each reading from {_listed(self.devices.patterns)} {self.threshold}"

    def limit_in(self, unit: str) -> float:
        """The limit converted to ``unit`` (UnitError if it is of another dimension)."""
        return self.threshold.limit.to(unit)

    def breached(self, value: float, limit: float) -> bool:
        return self.threshold.comparator.test(abs(value) if self.absolute else value, limit)

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        ref = computed["point"]
        record = _record(records, int(ref[0]))
        try:
            measurement = Measurement.from_record(record)
        except RecordError as exc:
            raise ReplayMismatch(str(exc)) from exc
        value_unit = _checked_point(measurement, int(ref[1]), self.devices)[2]
        value = measurement.points[int(ref[1])][1]
        limit = self.limit_in(value_unit)
        computed = reading_computed(
            measurement.device, int(ref[0]), int(ref[1]), value, value_unit, limit
        )
        return LeafReplay(self.breached(value, limit), computed)


def reading_computed(
    device: str, input_index: int, point: int, value: float, unit: str, limit: float
) -> dict[str, Any]:
    return {
        "device": device,
        "point": [input_index, point],
        "value": value,
        "unit": unit,
        "limit": limit,
    }


def _checked_point(
    measurement: Measurement, index: int, devices: Devices
) -> tuple[str, float, str]:
    if not 0 <= index < len(measurement.points):
        raise ReplayMismatch(f"record {measurement.record_id} has no point {index}")
    point = measurement.points[index]
    if point[0] != devices.quantity or not devices.matches(measurement.device):
        raise ReplayMismatch(
            f"record {measurement.record_id} point {index} is {point[0]} of "
            f"{measurement.device}, which the condition does not read"
        )
    return point


@dataclass(frozen=True)
class SignalSpec(LeafSpec):
    """Holds from the moment another rule emits ``name`` until ``within_us`` later (0: only at
    that moment, a pulse)."""

    metric: ClassVar[str] = "signal"
    observes: ClassVar[str] = "signal"
    name: str
    within_us: int = 0

    def parameters(self) -> dict[str, Any]:
        return {"name": self.name, "within_us": self.within_us}

    @property
    def scope_names(self) -> frozenset[str]:
        """Unknown here: a signal's scope is its emitter's (the rule reader works them out)."""
        return frozenset()

    def tracker(self) -> SignalTracker:
        return SignalTracker(self)

    def describe(self) -> str:
        within = f" within {self.within_us / 1e6:g} s" if self.within_us else ""
        return f"signal {self.name}{within}"

    def holds_at(self, emitted_at_us: int, now_us: int) -> bool:
        return 0 <= now_us - emitted_at_us <= self.within_us

    def replay(
        self, records: Sequence[StoredRecord], computed: Mapping[str, Any], fired_at_us: int
    ) -> LeafReplay:
        record = _record(records, 0)
        action = record.public.get("action") if record.record_type == "decision" else None
        if not isinstance(action, Mapping) or action.get("kind") != "emit":
            raise ReplayMismatch(f"record {record.record_id} is not a decision that emits")
        emitted = action.get("signal")
        at = record.observed_at_us
        holds = emitted == self.name and self.holds_at(at, fired_at_us)
        return LeafReplay(holds, {"signal": emitted, "emitted_at_us": at})


# -- months --------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_of(timestamp_us: int) -> str:
    """The calendar month (UTC) of a timestamp, as ``YYYY-MM``."""
    moment = _EPOCH + timedelta(microseconds=timestamp_us)
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


# -- trackers -------------------------------------------------------------------------------

StateT = TypeVar("StateT")


class Tracker(ABC, Generic[StateT]):
    """The running state of one condition, per scope.

    ``observe`` takes one observation (for measurements: one of its points) and returns the
    scope whose state it changed, if any. ``holding`` is kept up to date for conditions that
    do not depend on the clock; signal trackers override :meth:`holds`.
    """

    def __init__(self) -> None:
        self.states: dict[str, StateT] = {}
        self.holding: set[str] = set()
        self.dirty: set[str] = set()

    @abstractmethod
    def observe(self, observation: Observation, point: int) -> str | None: ...

    @abstractmethod
    def evidence(self, scope: str, now_us: int) -> Evidence: ...

    @abstractmethod
    def dump(self, state: StateT) -> Any: ...

    @abstractmethod
    def restore(self, data: Any) -> StateT: ...

    def holds(self, scope: str, now_us: int) -> bool:
        return scope in self.holding

    def holding_scopes(self, now_us: int) -> list[str]:
        return sorted(self.holding)

    def load(self, scope: str, data: Any) -> None:
        self.states[scope] = state = self.restore(data)
        self._set_holding(scope, self._holds_state(state))

    def _holds_state(self, state: StateT) -> bool:
        return False

    def _set_holding(self, scope: str, holds: bool) -> None:
        if holds:
            self.holding.add(scope)
        else:
            self.holding.discard(scope)


class _UnitCache:
    """Converters from the units values arrive in to a working unit; None: another dimension."""

    def __init__(self) -> None:
        self._converters: dict[tuple[str, str], Callable[[float], float] | None] = {}

    def to(self, value: float, unit: str, target: str) -> float | None:
        if unit == target:
            return value
        key = (unit, target)
        if key not in self._converters:
            try:
                self._converters[key] = converter(unit, target)
            except UnitError:
                self._converters[key] = None
        convert = self._converters[key]
        return None if convert is None else convert(value)


# A value in a buffer: (record_id, content_hash, point index, value in the working unit).
_Value = tuple[str, str, int, float]


def _value_refs(values: Iterable[_Value], inputs: _Inputs) -> list[list[int]]:
    return [[inputs.index(rid, digest), point] for rid, digest, point, _ in values]


def subgroup_cv(values: Sequence[float]) -> float | None:
    """The CV of a subgroup, or None where it is undefined (mean 0)."""
    try:
        return spc.coefficient_of_variation(values)
    except SpcError:
        return None


@dataclass
class CvState:
    unit: str | None = None
    current: list[_Value] = field(default_factory=list)
    streak: list[tuple[list[_Value], float]] = field(default_factory=list)
    """The last ``consecutive`` subgroups beyond the threshold, with their CVs."""
    count: int = 0
    """Consecutive subgroups beyond the threshold so far (may exceed ``consecutive``)."""


class CvTracker(Tracker[CvState]):
    def __init__(self, spec: CvSpec) -> None:
        super().__init__()
        self.spec = spec
        self._matches: dict[str, bool] = {}
        self._units = _UnitCache()

    def observe(self, observation: Observation, point: int) -> str | None:
        assert isinstance(observation, Measurement)
        devices = self.spec.devices
        quantity, value, unit = observation.points[point]
        if quantity != devices.quantity or not _matches(self._matches, devices, observation):
            return None
        scope = devices.scope(observation.device)
        state = self.states.get(scope)
        if state is None:
            state = self.states[scope] = CvState(unit=unit)
        working = self._units.to(value, unit, state.unit or unit)
        if working is None:
            return None
        self.dirty.add(scope)
        state.current.append((observation.record_id, observation.content_hash, point, working))
        if len(state.current) < self.spec.subgroup_size:
            return None
        subgroup, state.current = state.current, []
        cv = subgroup_cv([v[3] for v in subgroup])
        if cv is not None and self.spec.beyond(cv):
            state.count += 1
            state.streak = [*state.streak, (subgroup, cv)][-self.spec.consecutive :]
        else:
            state.count, state.streak = 0, []
        self._set_holding(scope, self._holds_state(state))
        return scope

    def _holds_state(self, state: CvState) -> bool:
        return state.count >= self.spec.consecutive

    def evidence(self, scope: str, now_us: int) -> Evidence:
        state = self.states[scope]
        inputs = _Inputs()
        subgroups = [
            {"points": _value_refs(values, inputs), "cv": cv} for values, cv in state.streak
        ]
        computed = {"unit": state.unit, "subgroups": subgroups}
        return Evidence(scope, tuple(inputs.refs), computed)

    def dump(self, state: CvState) -> Any:
        return {
            "unit": state.unit,
            "current": state.current,
            "streak": state.streak,
            "count": state.count,
        }

    def restore(self, data: Any) -> CvState:
        return CvState(
            unit=data["unit"],
            current=[_value(v) for v in data["current"]],
            streak=[([_value(v) for v in values], float(cv)) for values, cv in data["streak"]],
            count=int(data["count"]),
        )


def _value(data: Sequence[Any]) -> _Value:
    return (str(data[0]), str(data[1]), int(data[2]), float(data[3]))


def _matches(cache: dict[str, bool], devices: Devices, measurement: Measurement) -> bool:
    found = cache.get(measurement.device)
    if found is None:
        found = cache[measurement.device] = devices.matches(measurement.device)
    return found


@dataclass
class CpkState:
    window: deque[_Value]
    study: dict[str, Any] | None = None


class CpkTracker(Tracker[CpkState]):
    def __init__(self, spec: CpkSpec) -> None:
        super().__init__()
        self.spec = spec
        self._matches: dict[str, bool] = {}
        self._units = _UnitCache()

    def observe(self, observation: Observation, point: int) -> str | None:
        assert isinstance(observation, Measurement)
        devices = self.spec.devices
        quantity, value, unit = observation.points[point]
        if quantity != devices.quantity or not _matches(self._matches, devices, observation):
            return None
        working = self._units.to(value, unit, self.spec.unit)
        if working is None:
            return None
        scope = devices.scope(observation.device)
        state = self.states.get(scope)
        if state is None:
            state = self.states[scope] = CpkState(deque(maxlen=self.spec.window))
        state.window.append((observation.record_id, observation.content_hash, point, working))
        state.study = None
        if len(state.window) == self.spec.window:
            state.study = self.spec.study([v[3] for v in state.window])
        self.dirty.add(scope)
        self._set_holding(scope, self._holds_state(state))
        return scope

    def _holds_state(self, state: CpkState) -> bool:
        return state.study is not None and self.spec.beyond(state.study)

    def evidence(self, scope: str, now_us: int) -> Evidence:
        state = self.states[scope]
        inputs = _Inputs()
        refs = _value_refs(state.window, inputs)
        return Evidence(scope, tuple(inputs.refs), {"points": refs, **(state.study or {})})

    def dump(self, state: CpkState) -> Any:
        return {"window": list(state.window), "study": state.study}

    def restore(self, data: Any) -> CpkState:
        window = deque((_value(v) for v in data["window"]), maxlen=self.spec.window)
        return CpkState(window, data["study"])


@dataclass
class LotsState:
    lots: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """The last ``consecutive`` out-of-spec lots: (record_id, content_hash, lot JSON)."""
    count: int = 0


class LotsTracker(Tracker[LotsState]):
    def __init__(self, spec: LotsSpec) -> None:
        super().__init__()
        self.spec = spec

    def observe(self, observation: Observation, point: int) -> str | None:
        assert isinstance(observation, IncomingLot)
        if not self.spec.selects(observation):
            return None
        checked = self.spec.verdict(observation)
        if checked is None:
            return None
        scope = scope_key(
            {
                "supplier": observation.supplier,
                "part": observation.part,
                "characteristic": observation.characteristic,
            }
        )
        state = self.states.setdefault(scope, LotsState())
        if checked[0]:
            state.count += 1
            lot = _lot_json(observation, checked)
            entry = (observation.record_id, observation.content_hash, lot)
            state.lots = [*state.lots, entry][-self.spec.consecutive :]
        else:
            state.count, state.lots = 0, []
        self.dirty.add(scope)
        self._set_holding(scope, self._holds_state(state))
        return scope

    def _holds_state(self, state: LotsState) -> bool:
        return state.count >= self.spec.consecutive

    def evidence(self, scope: str, now_us: int) -> Evidence:
        state = self.states[scope]
        inputs = tuple((rid, digest) for rid, digest, _ in state.lots)
        return Evidence(scope, inputs, {"lots": [lot for _, _, lot in state.lots]})

    def dump(self, state: LotsState) -> Any:
        return {"lots": state.lots, "count": state.count}

    def restore(self, data: Any) -> LotsState:
        lots = [(str(rid), str(digest), dict(lot)) for rid, digest, lot in data["lots"]]
        return LotsState(lots, int(data["count"]))


@dataclass
class DefectRateState:
    month: str | None = None
    """The latest month an inspection of this process was seen in."""
    months: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)
    """That month and the one before: (record_id, content_hash, defect) per inspection."""
    tallies: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per kept month: (inspections, defects), kept up to date with ``months``."""


class DefectRateTracker(Tracker[DefectRateState]):
    def __init__(self, spec: DefectRateSpec) -> None:
        super().__init__()
        self.spec = spec

    def observe(self, observation: Observation, point: int) -> str | None:
        assert isinstance(observation, Inspection)
        if not matches_any(observation.process, self.spec.processes):
            return None
        defect = self.spec.counts(observation)
        if defect is None:
            return None
        scope = scope_key({"process": observation.process})
        state = self.states.setdefault(scope, DefectRateState())
        month = month_of(observation.observed_at_us)
        if state.month is None or month > state.month:
            state.month = month
            kept = (month, previous_month(month))
            state.months = {key: state.months.get(key, []) for key in kept}
            state.tallies = {key: state.tallies.get(key, (0, 0)) for key in kept}
        if month not in state.months:
            return None  # older than the month before the latest: too late to count
        state.months[month].append((observation.record_id, observation.content_hash, defect))
        count, defects = state.tallies[month]
        state.tallies[month] = (count + 1, defects + defect)
        self.dirty.add(scope)
        self._set_holding(scope, self._holds_state(state))
        return scope

    def _holds_state(self, state: DefectRateState) -> bool:
        if state.month is None:
            return False
        return self.spec.compare(state.month, state.tallies)[0]

    def evidence(self, scope: str, now_us: int) -> Evidence:
        state = self.states[scope]
        assert state.month is not None
        computed = self.spec.compare(state.month, state.tallies)[1]
        inputs = tuple(
            (rid, digest)
            for month in (previous_month(state.month), state.month)
            for rid, digest, _ in state.months.get(month, [])
        )
        return Evidence(scope, inputs, computed)

    def dump(self, state: DefectRateState) -> Any:
        return {"month": state.month, "months": state.months}

    def restore(self, data: Any) -> DefectRateState:
        months = {
            str(month): [(str(rid), str(digest), bool(defect)) for rid, digest, defect in entries]
            for month, entries in data["months"].items()
        }
        tallies = {
            month: (len(entries), sum(defect for _, _, defect in entries))
            for month, entries in months.items()
        }
        return DefectRateState(data["month"], months, tallies)


@dataclass
class SignalState:
    emitted_at_us: int
    decision_id: str
    content_hash: str


class SignalTracker(Tracker[SignalState]):
    def __init__(self, spec: SignalSpec) -> None:
        super().__init__()
        self.spec = spec

    def observe(self, observation: Observation, point: int) -> str | None:
        assert isinstance(observation, Signal)
        if observation.name != self.spec.name:
            return None
        self.states[observation.scope] = SignalState(
            observation.observed_at_us, observation.decision_id, observation.content_hash
        )
        self.dirty.add(observation.scope)
        return observation.scope

    def holds(self, scope: str, now_us: int) -> bool:
        state = self.states.get(scope)
        return state is not None and self.spec.holds_at(state.emitted_at_us, now_us)

    def holding_scopes(self, now_us: int) -> list[str]:
        return sorted(scope for scope in self.states if self.holds(scope, now_us))

    def evidence(self, scope: str, now_us: int) -> Evidence:
        state = self.states[scope]
        computed = {"signal": self.spec.name, "emitted_at_us": state.emitted_at_us}
        return Evidence(scope, ((state.decision_id, state.content_hash),), computed)

    def dump(self, state: SignalState) -> Any:
        return [state.emitted_at_us, state.decision_id, state.content_hash]

    def restore(self, data: Any) -> SignalState:
        return SignalState(int(data[0]), str(data[1]), str(data[2]))


LEAF_SPECS: Mapping[str, type[LeafSpec]] = {
    spec.metric: spec
    for spec in (CvSpec, LotsSpec, CpkSpec, DefectRateSpec, ReadingSpec, SignalSpec)
}
"""Every metric a condition can name, by name."""


def spec_from_parameters(data: Mapping[str, Any]) -> LeafSpec:
    """A spec back from a decision's thresholds (``{"metric": ..., **parameters}``)."""
    metric = data.get("metric")
    if metric == "cv":
        return CvSpec(
            Devices.from_json(data),
            int(data["subgroup_size"]),
            Threshold.from_json(data["threshold"]),
            int(data["consecutive"]),
        )
    if metric == "lots_out_of_spec":
        return LotsSpec(
            str(data["limit"]),
            int(data["consecutive"]),
            tuple(data["suppliers"]),
            tuple(data["parts"]),
            tuple(data["characteristics"]),
        )
    if metric == "cpk":
        return CpkSpec(
            Devices.from_json(data),
            int(data["window"]),
            None if data["lsl"] is None else Amount.from_json(data["lsl"]),
            None if data["usl"] is None else Amount.from_json(data["usl"]),
            Threshold.from_json(data["threshold"]),
        )
    if metric == "defect_rate_change":
        return DefectRateSpec(
            tuple(data["processes"]),
            Threshold.from_json(data["threshold"]),
            int(data["min_inspections"]),
            tuple(data["defect_verdicts"]),
            tuple(data["good_verdicts"]),
        )
    if metric == "reading":
        return ReadingSpec(
            Devices.from_json(data), Threshold.from_json(data["threshold"]), bool(data["absolute"])
        )
    if metric == "signal":
        return SignalSpec(str(data["name"]), int(data["within_us"]))
    raise ReplayMismatch(f"unknown metric {metric!r} in the decision")
