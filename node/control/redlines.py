"""Red lines: single readings checked against hard limits, on the ingest path, in microseconds.

A red-line rule is a rule whose whole condition is one ``reading`` condition (cold chain at or
above -18 CEL, |weighing error| above 1 GRM, a metal fragment at or above 0.3 MMT). ``check``
does no I/O and touches no store: per point it looks up the red lines of the point's quantity,
matches the device (cached), converts the limit to the point's unit (cached) and compares.
Building a decision (hashing) happens only when a red line fires.

Re-arming: a red line fires once when a device's reading breaches it, and again only after a
reading of that device has not breached it (per rule and device).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from node.control.decisions import Firing, firings
from node.control.observations import Measurement
from node.control.rule_metrics import Evidence, ReadingSpec, reading_computed, scope_key
from node.oracles.units import UnitError

if TYPE_CHECKING:
    from node.control.rules import Rule

ARMED = "armed"


class RedLine:
    """One red-line rule and its running state: which devices it is disarmed for."""

    __slots__ = (
        "_devices",
        "_limits",
        "absolute",
        "condition",
        "dirty",
        "disarmed",
        "fingerprint",
        "rule",
        "spec",
        "test",
    )

    def __init__(self, rule: Rule, spec: ReadingSpec) -> None:
        self.rule = rule
        self.spec = spec
        self.fingerprint = spec.fingerprint()
        self.condition = {"metric": spec.metric, **spec.parameters()}
        self.test = spec.threshold.comparator.test
        self.absolute = spec.absolute
        self.disarmed: set[str] = set()
        """Devices whose last reading breached this red line (it fired for them)."""
        self.dirty: set[str] = set()
        self._devices: dict[str, bool] = {}
        self._limits: dict[str, float | None] = {}

    def reads(self, device: str) -> bool:
        found = self._devices.get(device)
        if found is None:
            found = self._devices[device] = self.spec.devices.matches(device)
        return found

    def limit_in(self, unit: str) -> float | None:
        """The limit in ``unit``; None if ``unit`` is of another dimension (the point is then
        not comparable: counted in ``RedLines.unit_mismatches``)."""
        if unit in self._limits:
            return self._limits[unit]
        try:
            limit: float | None = self.spec.limit_in(unit)
        except UnitError:
            limit = None
        self._limits[unit] = limit
        return limit

    def scope(self, device: str) -> str:
        return scope_key({"quantity": self.spec.devices.quantity, "device": device})


class RedLines:
    """The red-line rules of a rule set, checked reading by reading."""

    def __init__(self, rules: Iterable[Rule], rule_hash: str, signer: str | None = None) -> None:
        self.rule_hash = rule_hash
        self.signer = signer
        self.unit_mismatches = 0
        self.lines: list[RedLine] = []
        self._by_quantity: dict[str, list[RedLine]] = {}
        for rule in rules:
            assert isinstance(rule.condition, ReadingSpec)
            line = RedLine(rule, rule.condition)
            self.lines.append(line)
            self._by_quantity.setdefault(line.spec.devices.quantity, []).append(line)

    def check(self, measurement: Measurement) -> list[Firing]:
        """The red lines ``measurement`` breaches now (each once per breach, per device)."""
        fired: list[Firing] = []
        device = measurement.device
        for index, (quantity, value, unit) in enumerate(measurement.points):
            lines = self._by_quantity.get(quantity)
            if lines is None:
                continue
            for line in lines:
                if not line.reads(device):
                    continue
                limit = line.limit_in(unit)
                if limit is None:
                    self.unit_mismatches += 1
                    continue
                if line.test(abs(value) if line.absolute else value, limit):
                    if device not in line.disarmed:
                        line.disarmed.add(device)
                        line.dirty.add(device)
                        fired.extend(self._fire(line, measurement, index, limit))
                elif device in line.disarmed:
                    line.disarmed.discard(device)
                    line.dirty.add(device)
        return fired

    def _fire(
        self, line: RedLine, measurement: Measurement, index: int, limit: float
    ) -> list[Firing]:
        _, value, unit = measurement.points[index]
        scope = line.scope(measurement.device)
        computed = reading_computed(measurement.device, 0, index, value, unit, limit)
        evidence = Evidence(scope, ((measurement.record_id, measurement.content_hash),), computed)
        return firings(
            rule_id=line.rule.id,
            rule_hash=self.rule_hash,
            scope=scope,
            fired_at_us=measurement.observed_at_us,
            condition=line.condition,
            evidence={"when": evidence},
            actions=line.rule.resolved_actions(scope, measurement.observed_at_us),
            signer=self.signer,
        )
