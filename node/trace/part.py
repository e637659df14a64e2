"""What one member serves to a trace: its part of a genealogy, and the anomalies its data shows.

:class:`PartReader` answers the two questions a trace asks a member, from the member's own store
(through :mod:`node.trace.index`), in JSON-ready form. The same answers go to the member's own
traces (in-process) and, through the verifier API (``node.api.trace_routes``), to other members'
traces. Every record comes with its proof bundle (and, for a critical record, its EIP-712
attestation) so that the asking node checks it against the chain itself; a record not anchored
yet comes as it is, marked so. Nothing private is ever in an answer: records carry their public
fields and the salted commitment to their private ones, as their bundles do.

- :meth:`PartReader.links`: the genealogy records of the given products or lots, and of their
  inputs, as far as this store goes (``qnode-trace-links/1``). Inputs this store has no genealogy
  of are listed, with the member owning them when this member knows it (its ``api.partners``).
- :meth:`PartReader.anomalies`: for products and lots, the records judging them bad; for equipment
  within a time window, parameter drifts (:mod:`node.trace.drift`) of its setpoints and devices'
  measurements, quarantined readings and rule firings; for suppliers within a window, rule firings
  (``qnode-trace-anomalies/1``).

Access: record types are served from a tier up (:data:`TRACE_TIERS`); what the caller's tier may
not see is left out and counted in ``withheld``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select

from node.api.access import Tier
from node.api.passport import Ownership
from node.errors import RecordError
from node.offchain.records import StoredRecord
from node.offchain.store import RECORDS, Store, stored_record
from node.oracles.attestor import ATTESTED_TYPES
from node.oracles.quarantine import QUARANTINE
from node.trace import keys
from node.trace.anomalies import (
    PARAMETER_DRIFT,
    QUARANTINED_READINGS,
    RULE_FIRING,
    judge,
)
from node.trace.bundles import BundleSource
from node.trace.drift import DriftSettings, detect, needs_earlier
from node.trace.index import (
    DECISION,
    GENEALOGY,
    MEASUREMENT,
    QUARANTINE_KIND,
    QUARANTINE_REF,
    SETPOINT,
    TRACE_INDEX,
    TraceIndex,
)

LINKS_FORMAT = "qnode-trace-links/1"
ANOMALIES_FORMAT = "qnode-trace-anomalies/1"
TRACE_TIERS: Mapping[str, Tier] = {
    "genealogy": Tier.LEGITIMATE_INTEREST,
    "inspection": Tier.PUBLIC,
    "lab_result": Tier.PUBLIC,
    "setpoint": Tier.LEGITIMATE_INTEREST,
    "measurement": Tier.LEGITIMATE_INTEREST,
    "decision": Tier.LEGITIMATE_INTEREST,
    QUARANTINE_KIND: Tier.LEGITIMATE_INTEREST,
    "incoming_lot": Tier.AUTHORITY,
}
"""The lowest tier each kind of data is served to in a trace. The trace routes need a
legitimate-interest token at least: a genealogy is not public."""
MIN_TIER = Tier.LEGITIMATE_INTEREST
MAX_IDS = 200
MAX_DEPTH = 32
MAX_GENEALOGY_RECORDS = 5_000
MAX_WINDOW_US = 92 * 86_400 * 1_000_000
MAX_SERIES_RECORDS = 500_000
MAX_EXTENSIONS = 7
_LOT_KINDS = frozenset({"material_lot", "parent_lot"})
_IN_BATCH = 500


@dataclass(frozen=True)
class Window:
    id: str
    since_us: int
    until_us: int

    def __post_init__(self) -> None:
        if self.until_us < self.since_us:
            raise RecordError(f"{self.id}: the window ends before it starts")
        if self.until_us - self.since_us > MAX_WINDOW_US:
            raise RecordError(f"{self.id}: a window is at most 92 days")


@dataclass(frozen=True)
class AnomalyQuery:
    subjects: tuple[str, ...] = ()
    equipment: tuple[Window, ...] = ()
    suppliers: tuple[Window, ...] = ()


@dataclass
class _Answer:
    tier: Tier
    records: dict[str, StoredRecord] = field(default_factory=dict)
    withheld: dict[str, int] = field(default_factory=dict)

    def allowed(self, kind: str) -> bool:
        if TRACE_TIERS.get(kind, Tier.AUTHORITY) <= self.tier:
            return True
        self.withheld[kind] = self.withheld.get(kind, 0) + 1
        return False


@dataclass
class _Series:
    source: str
    device: str | None
    parameter: str
    unit: str | None = None
    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)


class PartReader:
    def __init__(
        self,
        store: Store,
        member: str,
        index: TraceIndex,
        ownership: Ownership | None = None,
        drift: DriftSettings | None = None,
        bundles: BundleSource | None = None,
    ) -> None:
        self.store = store
        self.member = member
        self.index = index
        self.ownership = ownership
        self.drift = drift or DriftSettings()
        self.bundles = bundles or BundleSource(store)

    # -- genealogy ---------------------------------------------------------------------------

    def links(
        self, ids: Sequence[str], tier: Tier = Tier.AUTHORITY, max_depth: int = MAX_DEPTH
    ) -> dict[str, Any]:
        if len(ids) > MAX_IDS:
            raise RecordError(f"at most {MAX_IDS} ids in one request")
        if not 0 <= max_depth <= MAX_DEPTH:
            raise RecordError(f"max_depth must be between 0 and {MAX_DEPTH}")
        self.index.catch_up()
        answer = _Answer(tier)
        frontier = list(dict.fromkeys(keys.canonical(i) for i in ids))
        seen = set(frontier)
        implied: dict[str, str] = {}
        unknown: list[str] = []
        truncated = False
        with self.store.transaction() as connection:
            for _depth in range(max_depth + 1):
                if not frontier:
                    break
                rows = self.index.keyed(
                    connection, [keys.key(keys.OUTPUT, i) for i in frontier], kinds=[GENEALOGY]
                )
                made: dict[str, list[str]] = {}
                for row in rows:
                    made.setdefault(row.key[len(keys.OUTPUT) :], []).append(row.ref)
                records = _records(connection, [r.ref for r in rows])
                following: list[str] = []
                for node_id in frontier:
                    refs = made.get(node_id, [])
                    if not refs:
                        lot = keys.lot_of(node_id)
                        if lot is not None:
                            implied[node_id] = lot
                            if lot not in seen:
                                seen.add(lot)
                                following.append(lot)
                        else:
                            unknown.append(node_id)
                        continue
                    for ref in refs:
                        record = records.get(ref)
                        if record is None or not answer.allowed(GENEALOGY):
                            continue
                        answer.records[ref] = record
                        for item in _inputs(record):
                            if item not in seen:
                                seen.add(item)
                                following.append(item)
                if len(answer.records) > MAX_GENEALOGY_RECORDS:
                    truncated = True
                    break
                frontier = following
        owners = {}
        if self.ownership is not None:
            for node_id in unknown:
                gtin = keys.gtin_of(node_id)
                owner = self.ownership.owner(gtin) if gtin is not None else None
                if owner is not None:
                    owners[node_id] = owner
        return {
            "format": LINKS_FORMAT,
            "member": self.member,
            "tier": tier.label,
            "records": self._served(answer.records.values()),
            "implied": implied,
            "unknown": unknown,
            "owners": owners,
            "withheld": answer.withheld,
            "truncated": truncated,
        }

    # -- anomalies ---------------------------------------------------------------------------

    def anomalies(self, query: AnomalyQuery, tier: Tier = Tier.AUTHORITY) -> dict[str, Any]:
        if len(query.subjects) > 5 * MAX_IDS or len(query.equipment) > MAX_IDS:
            raise RecordError("too many subjects or equipment in one request")
        if len(query.suppliers) > MAX_IDS:
            raise RecordError("too many suppliers in one request")
        self.index.catch_up()
        answer = _Answer(tier)
        found: list[dict[str, Any]] = []
        with self.store.transaction() as connection:
            found += self._subject_anomalies(connection, query.subjects, answer)
            budget = MAX_SERIES_RECORDS
            for window in query.equipment:
                anomalies, used = self._equipment_anomalies(connection, window, answer, budget)
                found += anomalies
                budget -= used
            for window in query.suppliers:
                found += self._supplier_anomalies(connection, window, answer)
        return {
            "format": ANOMALIES_FORMAT,
            "member": self.member,
            "tier": tier.label,
            "detector": self.drift.describe(),
            "anomalies": found,
            "records": self._served(answer.records.values()),
            "withheld": answer.withheld,
        }

    def _subject_anomalies(
        self, connection: Any, subjects: Sequence[str], answer: _Answer
    ) -> list[dict[str, Any]]:
        wanted = {keys.key(keys.SUBJECT, keys.canonical(s)): s for s in subjects}
        rows = self.index.keyed(connection, list(wanted))
        records = _records(connection, [r.ref for r in rows])
        found = []
        for row in rows:
            record = records.get(row.ref)
            if record is None or not answer.allowed(record.record_type):
                continue
            judged = judge(record.record_type, record.public)
            if judged is None:
                continue
            answer.records[record.record_id] = record
            found.append(
                {
                    "kind": judged[0],
                    "scope": "subject",
                    "subject": wanted[row.key],
                    "atUs": record.observed_at_us,
                    "summary": judged[1],
                    "records": [record.record_id],
                    "details": {"recordType": record.record_type},
                }
            )
        return found

    def _equipment_anomalies(
        self, connection: Any, window: Window, answer: _Answer, budget: int
    ) -> tuple[list[dict[str, Any]], int]:
        key = keys.key(keys.EQUIPMENT, keys.equipment_key(window.id))
        rows = self.index.rows(
            connection, key, window.since_us, window.until_us, [QUARANTINE_KIND, DECISION]
        )
        found: list[dict[str, Any]] = []
        quarantined = [r.ref[len(QUARANTINE_REF) :] for r in rows if r.kind == QUARANTINE_KIND]
        if quarantined and answer.allowed(QUARANTINE_KIND):
            found += _quarantine_anomalies(connection, window, quarantined)
        decisions = [r.ref for r in rows if r.kind == DECISION]
        if decisions and answer.allowed(DECISION):
            for record in _records(connection, decisions).values():
                answer.records[record.record_id] = record
                found.append(_decision_anomaly(record, "equipment", window.id))
        # the series; while a baseline is not settled (it trends: the drift began before the
        # window), the window is extended back by its own length, a few times at most, reading
        # only the added stretch each time
        since = window.since_us
        length = max(1, window.until_us - window.since_us)
        series, used = self._series(connection, key, since, window.until_us, answer)
        unsettled = [k for k, s in series.items() if needs_earlier(s.values, self.drift)]
        for _extension in range(MAX_EXTENSIONS):
            earlier = max(0, since - length)
            if not unsettled or earlier == since or window.until_us - earlier > MAX_WINDOW_US:
                break
            added, count = self._series(connection, key, earlier, since - 1, answer)
            used += count
            if used > budget:
                raise RecordError(
                    f"{window.id}: more than {MAX_SERIES_RECORDS} readings in one request; "
                    "ask for shorter windows"
                )
            since = earlier
            if not count:
                break
            for name, item in added.items():
                later = series.get(name)
                if later is not None:
                    item.times += later.times
                    item.values += later.values
                    item.refs += later.refs
                series[name] = item
            unsettled = [k for k in unsettled if needs_earlier(series[k].values, self.drift)]
        for item in series.values():
            anomaly = self._drift(connection, window, item, answer)
            if anomaly is not None:
                anomaly["details"]["windowSinceUs"] = since
                anomaly["details"]["windowExtendedUs"] = window.since_us - since
                found.append(anomaly)
        return found, used

    def _series(
        self, connection: Any, key: str, since: int, until: int, answer: _Answer
    ) -> tuple[dict[tuple[str, str | None, str], _Series], int]:
        series: dict[tuple[str, str | None, str], _Series] = {}
        count = 0
        for kind in (MEASUREMENT, SETPOINT):
            if TRACE_TIERS[kind] > answer.tier:
                if self.index.rows(connection, key, since, until, [kind]):
                    answer.allowed(kind)  # counted as withheld
                continue
            for ref, observed, public in _publics(connection, key, since, until, kind):
                count += 1
                _add_points(series, kind, ref, observed, public)
        return series, count

    def _drift(
        self, connection: Any, window: Window, series: _Series, answer: _Answer
    ) -> dict[str, Any] | None:
        drift = detect(series.values, self.drift)
        if drift is None:
            return None
        chosen = drift.evidence(self.drift.max_run)
        evidence_refs = [series.refs[i] for i in chosen]
        records = _records(connection, evidence_refs)
        answer.records.update(records)
        size = drift.baseline.count
        run_end = drift.alarm + 1
        baseline_refs = series.refs[:size]
        run_refs = [series.refs[i] for i in chosen if drift.onset <= i < run_end]
        confirm_refs = series.refs[run_end : drift.confirm_end]
        what = series.parameter + (f" of {series.device}" if series.device else "")
        direction = "up" if drift.direction > 0 else "down"
        unit = f" {series.unit}" if series.unit else ""
        return {
            "kind": PARAMETER_DRIFT,
            "scope": "equipment",
            "subject": window.id,
            "atUs": series.times[drift.onset],
            "summary": (
                f"{what} drifted {direction} from {drift.baseline.mean:.6g}{unit} "
                f"by {drift.shift:+.4g}{unit} ({drift.shift_sigma:+.1f} sigma)"
            ),
            "records": list(dict.fromkeys(evidence_refs)),
            "details": {
                "source": series.source,
                "device": series.device,
                "parameter": series.parameter,
                "unit": series.unit,
                "direction": drift.direction,
                "onsetAtUs": series.times[drift.onset],
                "alarmAtUs": series.times[drift.alarm],
                "baseline": {
                    "mean": drift.baseline.mean,
                    "sigma": drift.baseline.sigma,
                    "sigmaFloored": drift.baseline.sigma_floored,
                    "points": size,
                },
                "shift": drift.shift,
                "shiftSigma": drift.shift_sigma,
                "points": len(series.values),
                "evidence": {
                    "baseline": baseline_refs,
                    "run": run_refs,
                    "confirmation": confirm_refs,
                    "runTruncated": len(run_refs) < run_end - drift.onset,
                },
            },
        }

    def _supplier_anomalies(
        self, connection: Any, window: Window, answer: _Answer
    ) -> list[dict[str, Any]]:
        key = keys.key(keys.SUPPLIER, window.id.lower())
        rows = self.index.rows(connection, key, window.since_us, window.until_us, [DECISION])
        if not rows or not answer.allowed(DECISION):
            return []
        records = _records(connection, [r.ref for r in rows])
        answer.records.update(records)
        return [_decision_anomaly(r, "supplier", window.id) for r in records.values()]

    # -- serving records ---------------------------------------------------------------------

    def _served(self, records: Iterable[StoredRecord]) -> dict[str, dict[str, Any]]:
        chosen = {r.record_id: r for r in records}
        bundles = self.bundles.bundles(list(chosen.values()))
        critical = [r.record_id for r in chosen.values() if r.record_type in ATTESTED_TYPES]
        attestations = self.bundles.attestations(critical) if critical else {}
        served: dict[str, dict[str, Any]] = {}
        for record_id, record in chosen.items():
            bundle = bundles.get(record_id)
            entry: dict[str, Any] = (
                {"bundle": bundle}
                if bundle is not None
                else {"record": record.canonical(), "pending": "waiting to be anchored"}
            )
            if record_id in attestations:
                entry["attestation"] = attestations[record_id]
            served[record_id] = entry
        return served


# -- helpers ----------------------------------------------------------------------------------


def _records(connection: Any, refs: Sequence[str]) -> dict[str, StoredRecord]:
    ids = sorted({r for r in refs if r.startswith("0x")})
    found: dict[str, StoredRecord] = {}
    for start in range(0, len(ids), _IN_BATCH):
        rows = connection.execute(
            select(RECORDS).where(RECORDS.c.record_id.in_(ids[start : start + _IN_BATCH]))
        ).all()
        for row in rows:
            record = stored_record(row._mapping)
            found[record.record_id] = record
    return found


def _publics(
    connection: Any, key: str, since: int, until: int, kind: str
) -> Iterable[tuple[str, int, dict[str, Any]]]:
    """(record id, observation time, public fields) of one kind of an equipment's rows, in time
    order, read with the records in one join."""
    rows = connection.execute(
        select(RECORDS.c.record_id, RECORDS.c.observed_at_us, RECORDS.c.public_json)
        .join(TRACE_INDEX, TRACE_INDEX.c.ref == RECORDS.c.record_id)
        .where(TRACE_INDEX.c.key == key)
        .where(TRACE_INDEX.c.observed_at_us >= since)
        .where(TRACE_INDEX.c.observed_at_us <= until)
        .where(TRACE_INDEX.c.kind == kind)
        .order_by(TRACE_INDEX.c.observed_at_us, TRACE_INDEX.c.ref)
    )
    for record_id, observed, text in rows:
        try:
            public = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(public, dict):
            yield record_id, int(observed), public


def _add_points(
    series: dict[tuple[str, str | None, str], _Series],
    kind: str,
    ref: str,
    observed: int,
    public: Mapping[str, Any],
) -> None:
    if kind == SETPOINT:
        parameter, value = public.get("parameter"), _finite(public.get("value"))
        if isinstance(parameter, str) and value is not None:
            unit = public.get("unit")
            item = series.setdefault(
                (SETPOINT, None, parameter),
                _Series(SETPOINT, None, parameter, unit if isinstance(unit, str) else None),
            )
            item.times.append(observed)
            item.values.append(value)
            item.refs.append(ref)
        return
    device, points = public.get("device"), public.get("points")
    if not isinstance(device, str) or not isinstance(points, list):
        return
    for point in points:
        if not isinstance(point, Mapping):
            continue
        quantity, value, unit = point.get("q"), _finite(point.get("v")), point.get("u")
        if not isinstance(quantity, str) or value is None:
            continue
        found = series.get((MEASUREMENT, device, quantity))
        if found is None:
            found = series[(MEASUREMENT, device, quantity)] = _Series(
                MEASUREMENT, device, quantity, unit if isinstance(unit, str) else None
            )
        item = found
        if item.refs and item.refs[-1] == ref:
            continue  # one value per record and quantity
        item.times.append(observed)
        item.values.append(value)
        item.refs.append(ref)


def point_value(
    public: Mapping[str, Any], source: str, device: str | None, parameter: str
) -> float | None:
    """The value a record contributes to a series (the first point of the quantity), or None."""
    if source == SETPOINT:
        if public.get("parameter") != parameter:
            return None
        return _finite(public.get("value"))
    if public.get("device") != device or not isinstance(public.get("points"), list):
        return None
    for point in public["points"]:
        if isinstance(point, Mapping) and point.get("q") == parameter:
            return _finite(point.get("v"))
    return None


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _inputs(record: StoredRecord) -> list[str]:
    inputs = record.public.get("inputs")
    if not isinstance(inputs, list):
        return []
    return [
        keys.canonical(str(item["id"]))
        for item in inputs
        if isinstance(item, Mapping) and item.get("kind") in _LOT_KINDS and "id" in item
    ]


def _quarantine_anomalies(
    connection: Any, window: Window, ids: Sequence[str]
) -> list[dict[str, Any]]:
    numbers = sorted({int(i) for i in ids if i.isdigit()})
    groups: dict[tuple[str, str], list[int]] = {}
    for start in range(0, len(numbers), _IN_BATCH):
        rows = connection.execute(
            select(QUARANTINE.c.device_id, QUARANTINE.c.reason, QUARANTINE.c.received_at_us).where(
                QUARANTINE.c.id.in_(numbers[start : start + _IN_BATCH])
            )
        ).all()
        for row in rows:
            groups.setdefault((str(row.device_id), str(row.reason)), []).append(
                int(row.received_at_us)
            )
    found = []
    for (device, reason), times in sorted(groups.items()):
        times.sort()
        found.append(
            {
                "kind": QUARANTINED_READINGS,
                "scope": "equipment",
                "subject": window.id,
                "atUs": times[0],
                "summary": f"{len(times)} reading(s) of {device} quarantined: {reason}",
                "records": [],
                "details": {
                    "device": device,
                    "reason": reason,
                    "count": len(times),
                    "firstAtUs": times[0],
                    "lastAtUs": times[-1],
                },
            }
        )
    return found


def _decision_anomaly(record: StoredRecord, scope: str, subject: str) -> dict[str, Any]:
    public = record.public
    action = public.get("action") if isinstance(public.get("action"), Mapping) else {}
    assert isinstance(action, Mapping)
    kind = str(action.get("kind", "?"))
    rule = str(public.get("rule_id", "?"))
    return {
        "kind": RULE_FIRING,
        "scope": scope,
        "subject": subject,
        "atUs": record.observed_at_us,
        "summary": f"rule {rule} fired: {kind}",
        "records": [record.record_id],
        "details": {"ruleId": rule, "action": kind, "inputs": _count(public.get("inputs"))},
    }


def _count(value: object) -> int:
    return len(value) if isinstance(value, list) else 0
