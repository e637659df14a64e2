"""Records as EPCIS 2.0 JSON-LD events, and EPCIS documents into records.

- "measurement" -> ObjectEvent (OBSERVE, ``sensor_reporting``) with a sensorElementList: one
  sensorReport per point (``gs1:`` type where CBV has one, value, Rec 20 ``uom``);
- "inspection" -> ObjectEvent (OBSERVE, ``inspecting``, disposition from the verdict);
- "genealogy" -> TransformationEvent (lots as class-level ``inputQuantityList`` entries, serialised
  items in ``inputEPCList``; same for the output);
- "packing" -> AggregationEvent (``parentID``, ``childEPCs`` / ``childQuantityList``);
- any other record type -> ObjectEvent (OBSERVE) carrying only the qnode extension.

Every event carries, in the ``qnode:`` namespace, the record's id, type, public fields (canonical
JSON) and content hash (with its private commitment when it has one): with them anyone can
recompute the record's Merkle leaf and check it against its proof. Private fields never appear.
``eventID`` is the CBV 2.0 event hash (:mod:`node.oracles.event_hash`) of the event as exported.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from node.errors import EpcisError, IdentifierError, QnodeError, RecordError
from node.offchain.classification import PERSONAL_FIELDS
from node.offchain.genealogy import RECORD_TYPE as GENEALOGY
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, write_genealogy
from node.offchain.records import (
    RecordInput,
    StoredRecord,
    canonical_json,
    check_record_id,
    content_hash_of,
)
from node.offchain.store import RECORDS, Store, stored_record
from node.oracles.digital_link import DEFAULT_DOMAIN, location, parse
from node.oracles.event_hash import GS1_VOC, context_prefixes, event_hash, normalise_gs1_uri
from node.oracles.units import Dimension, unit_of

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
QNODE_NAMESPACE = "https://ns.qnode.example/epcis/"
PREFIXES = {"gs1": GS1_VOC, "qnode": QNODE_NAMESPACE}
DOCUMENT_CONTEXT: list[Any] = [EPCIS_CONTEXT, PREFIXES]
EVENT_TYPES = frozenset(
    {
        "ObjectEvent",
        "AggregationEvent",
        "TransactionEvent",
        "TransformationEvent",
        "AssociationEvent",
    }
)
MEASUREMENT, INSPECTION, PACKING = "measurement", "inspection", "packing"

Q_RECORD_ID = "qnode:recordId"
Q_RECORD_TYPE = "qnode:recordType"
Q_FIELDS = "qnode:fields"
Q_CONTENT_HASH = "qnode:contentHash"
Q_COMMITMENT = "qnode:privateCommitment"
Q_QUANTITY = "qnode:quantity"

_OFFSET = re.compile(r"^[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00)$")

# Quantity names (by keyword) to the GS1 sensor measurement types; the first match wins.
_SENSOR_TYPES = (
    ("humidity", "RelativeHumidity"),
    ("temperature", "Temperature"),
    ("temp", "Temperature"),
    ("pressure", "Pressure"),
    ("thickness", "Length"),
    ("length", "Length"),
    ("width", "Length"),
    ("diameter", "Length"),
    ("distance", "Length"),
    ("height", "Length"),
    ("weight", "Mass"),
    ("mass", "Mass"),
    ("speed", "Speed"),
    ("velocity", "Speed"),
    ("voltage", "Voltage"),
    ("current", "ElectricCurrent"),
    ("frequency", "Frequency"),
    ("force", "Force"),
    ("power", "Power"),
    ("energy", "Energy"),
    ("resistance", "Resistance"),
    ("duration", "Time"),
    ("count", "Count"),
)


@dataclass(frozen=True)
class EpcisProfile:
    """Where events happen and how devices are named: GLN Digital Link URIs of the read point and
    business location, the Digital Link domain, and device ids -> DL URIs (GIAI) or URNs."""

    domain: str = DEFAULT_DOMAIN
    read_point: str | None = None
    biz_location: str | None = None
    devices: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_glns(
        cls,
        read_point_gln: str | None = None,
        biz_location_gln: str | None = None,
        domain: str = DEFAULT_DOMAIN,
        devices: Mapping[str, str] | None = None,
    ) -> EpcisProfile:
        def uri(gln: str | None) -> str | None:
            return None if gln is None else location(gln).uri(domain)

        return cls(domain, uri(read_point_gln), uri(biz_location_gln), dict(devices or {}))

    def device_uri(self, device: str) -> str:
        return self.devices.get(device) or f"urn:qnode:device:{device}"


@dataclass(frozen=True)
class ImportResult:
    stored: Mapping[str, int]
    """Records stored, by record type."""
    already_present: int
    skipped: Mapping[str, int]
    """Events with no record form (e.g. TransactionEvent), by event type."""

    @property
    def total(self) -> int:
        return sum(self.stored.values())


# -- export ------------------------------------------------------------------------------------


def export(
    store: Store,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
    types: Iterable[str] | None = None,
    profile: EpcisProfile | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """An EPCISDocument of the records observed in [since, until) (µs or datetimes)."""
    chosen = profile or EpcisProfile()
    events = [
        record_event(r, chosen, _private_names(store, r.record_type))
        for r in iter_records(store, since, until, types)
    ]
    return document(events, created_at)


def document(
    events: Sequence[Mapping[str, Any]], created_at: datetime | None = None
) -> dict[str, Any]:
    moment = (created_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "@context": DOCUMENT_CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "epcisBody": {"eventList": list(events)},
    }


def iter_records(
    store: Store,
    since: datetime | int | None = None,
    until: datetime | int | None = None,
    types: Iterable[str] | None = None,
    page: int = 5000,
) -> Iterator[StoredRecord]:
    """Records by observation time (then id), read a page at a time."""
    low, high = _as_us(since), _as_us(until)
    wanted = sorted(set(types)) if types is not None else None
    after: tuple[int, str] | None = None
    while True:
        query = select(RECORDS)
        if low is not None:
            query = query.where(RECORDS.c.observed_at_us >= low)
        if high is not None:
            query = query.where(RECORDS.c.observed_at_us < high)
        if wanted is not None:
            query = query.where(RECORDS.c.record_type.in_(wanted))
        if after is not None:
            query = query.where(
                (RECORDS.c.observed_at_us > after[0])
                | ((RECORDS.c.observed_at_us == after[0]) & (RECORDS.c.record_id > after[1]))
            )
        query = query.order_by(RECORDS.c.observed_at_us, RECORDS.c.record_id).limit(page)
        with store.transaction() as connection:
            rows = connection.execute(query).all()
        for row in rows:
            yield stored_record(row._mapping)
        if len(rows) < page:
            return
        after = (int(rows[-1].observed_at_us), str(rows[-1].record_id))


def _as_us(moment: datetime | int | None) -> int | None:
    if moment is None or isinstance(moment, int):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _private_names(store: Store, record_type: str) -> frozenset[str]:
    names = set(PERSONAL_FIELDS)
    if record_type in store.classification.types:
        names |= store.classification.types[record_type].private_fields
    return frozenset(names)


def record_event(
    record: StoredRecord, profile: EpcisProfile, private: Iterable[str] = PERSONAL_FIELDS
) -> dict[str, Any]:
    """The EPCIS event of a record, with its eventID."""
    hidden = frozenset(private)
    public = {k: v for k, v in record.public.items() if k not in hidden}
    mapper = _MAPPERS.get(record.record_type, _generic_event)
    try:
        event = mapper(record, public, profile)
    except (KeyError, TypeError, ValueError, QnodeError):
        # A record whose fields do not fit its type's standard form keeps the generic form.
        event = _generic_event(record, public, profile)
    event.update(_qnode_extension(record, public))
    return {"eventID": event_hash(event, PREFIXES), **event}


def _qnode_extension(record: StoredRecord, public: Mapping[str, Any]) -> dict[str, Any]:
    extension = {
        Q_RECORD_ID: record.record_id,
        Q_RECORD_TYPE: record.record_type,
        Q_FIELDS: canonical_json(public),
        Q_CONTENT_HASH: record.content_hash,
    }
    if record.private_commitment is not None:
        extension[Q_COMMITMENT] = record.private_commitment
    return extension


def _base(kind: str, observed_at_us: int, offset: str = "+00:00") -> dict[str, Any]:
    return {"type": kind, "eventTime": event_time(observed_at_us), "eventTimeZoneOffset": offset}


def event_time(observed_at_us: int) -> str:
    """UTC, with microseconds when there are any (import gives the same µs back)."""
    moment = datetime.fromtimestamp(observed_at_us / 1_000_000, UTC).replace(
        microsecond=observed_at_us % 1_000_000
    )
    spec = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _where(event: dict[str, Any], profile: EpcisProfile) -> None:
    if profile.read_point:
        event["readPoint"] = {"id": profile.read_point}
    if profile.biz_location:
        event["bizLocation"] = {"id": profile.biz_location}


def _offset_of(text: Any) -> str:
    if isinstance(text, str):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return "+00:00"
        if moment.utcoffset() is not None:
            minutes = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
            sign = "-" if minutes < 0 else "+"
            return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return "+00:00"


_TYPE_DIMENSIONS: dict[str, Dimension] = {
    "RelativeHumidity": Dimension.RATIO,
    "Temperature": Dimension.TEMPERATURE,
    "Pressure": Dimension.PRESSURE,
    "Length": Dimension.LENGTH,
    "Mass": Dimension.MASS,
    "Speed": Dimension.SPEED,
    "Voltage": Dimension.VOLTAGE,
    "ElectricCurrent": Dimension.CURRENT,
    "Frequency": Dimension.FREQUENCY,
    "Force": Dimension.FORCE,
    "Power": Dimension.POWER,
    "Energy": Dimension.ENERGY,
    "Resistance": Dimension.RESISTANCE,
    "Time": Dimension.TIME,
}
_DIMENSION_TYPES: dict[Dimension, str] = {
    d: n for n, d in _TYPE_DIMENSIONS.items() if d is not Dimension.RATIO
}


def sensor_type(quantity: str, unit: str | None = None) -> str | None:
    """The GS1 sensor measurement type of a quantity (by name, consistent with its unit's
    dimension), else of its unit's dimension; None where CBV has none (e.g. a ratio)."""
    try:
        dimension: Dimension | None = unit_of(unit).dimension if unit else None
    except RecordError:
        dimension = None
    lowered = quantity.lower()
    for keyword, name in _SENSOR_TYPES:
        if keyword in lowered and dimension in (None, _TYPE_DIMENSIONS.get(name, dimension)):
            return "gs1:" + name
    fallback = _DIMENSION_TYPES.get(dimension) if dimension is not None else None
    return None if fallback is None else "gs1:" + fallback


def _measurement_event(
    record: StoredRecord, public: Mapping[str, Any], profile: EpcisProfile
) -> dict[str, Any]:
    event = _base("ObjectEvent", record.observed_at_us, _offset_of(public.get("sent_at")))
    event.update({"epcList": [], "action": "OBSERVE", "bizStep": "sensor_reporting"})
    _where(event, profile)
    reports = []
    for point in public["points"]:
        report: dict[str, Any] = {}
        kind = sensor_type(str(point["q"]), str(point["u"]))
        if kind is not None:
            report["type"] = kind
        report.update({"value": point["v"], "uom": point["u"], Q_QUANTITY: point["q"]})
        reports.append(report)
    metadata: dict[str, Any] = {}
    if isinstance(public.get("sent_at"), str):
        metadata["time"] = public["sent_at"]
    if "device" in public:
        metadata["deviceID"] = profile.device_uri(str(public["device"]))
    element: dict[str, Any] = {"sensorMetadata": metadata} if metadata else {}
    element["sensorReport"] = reports
    event["sensorElementList"] = [element]
    return event


def _inspection_event(
    record: StoredRecord, public: Mapping[str, Any], profile: EpcisProfile
) -> dict[str, Any]:
    event = _base("ObjectEvent", record.observed_at_us)
    part = public.get("part_id")
    event["epcList"] = [part] if isinstance(part, str) and _is_uri(part) else []
    event.update({"action": "OBSERVE", "bizStep": "inspecting"})
    verdict = str(public.get("verdict", "")).lower()
    if verdict in ("pass", "ok", "conformant", "accepted"):
        event["disposition"] = "conformant"
    elif verdict in ("fail", "nok", "non_conformant", "rejected"):
        event["disposition"] = "non_conformant"
    _where(event, profile)
    value = public.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        report: dict[str, Any] = {}
        kind = sensor_type(str(public.get("characteristic", "")), public.get("unit"))
        if kind is not None:
            report["type"] = kind
        report["value"] = value
        if isinstance(public.get("unit"), str):
            report["uom"] = public["unit"]
        event["sensorElementList"] = [{"sensorReport": [report]}]
    return event


def _is_uri(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$", text))


def _is_class_level(uri: str) -> bool:
    try:
        return parse(uri, domains=None).is_class_level
    except IdentifierError:
        return False


def _split_ids(ids: Iterable[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """(instance-level EPCs, class-level quantity elements)"""
    epcs: list[str] = []
    classes: list[dict[str, Any]] = []
    for uri in ids:
        if _is_class_level(uri):
            classes.append({"epcClass": uri})
        else:
            epcs.append(uri)
    return epcs, classes


def _genealogy_event(
    record: StoredRecord, public: Mapping[str, Any], profile: EpcisProfile
) -> dict[str, Any]:
    genealogy = Genealogy.from_fields(public, record.observed_at_us, record.record_id)
    event = _base("TransformationEvent", record.observed_at_us)
    lots = [i.id for i in genealogy.inputs if i.kind.value in ("material_lot", "parent_lot")]
    epcs, classes = _split_ids(lots)
    if epcs:
        event["inputEPCList"] = epcs
    if classes:
        event["inputQuantityList"] = classes
    out_epcs, out_classes = _split_ids([genealogy.output])
    if out_epcs:
        event["outputEPCList"] = out_epcs
    if out_classes:
        event["outputQuantityList"] = out_classes
    event["bizStep"] = "commissioning"
    _where(event, profile)
    return event


def _packing_event(
    record: StoredRecord, public: Mapping[str, Any], profile: EpcisProfile
) -> dict[str, Any]:
    action = str(public.get("action", "ADD")).upper()
    if action not in ("ADD", "DELETE"):
        raise ValueError(f"packing action {action!r}")
    event = _base("AggregationEvent", record.observed_at_us)
    event["parentID"] = str(public["parent"])
    epcs, classes = _split_ids(str(c) for c in public.get("children", []))
    event["childEPCs"] = epcs
    if classes:
        event["childQuantityList"] = classes
    event.update({"action": action, "bizStep": "packing" if action == "ADD" else "unpacking"})
    _where(event, profile)
    return event


def _generic_event(
    record: StoredRecord, public: Mapping[str, Any], profile: EpcisProfile
) -> dict[str, Any]:
    event = _base("ObjectEvent", record.observed_at_us)
    event.update({"epcList": [], "action": "OBSERVE"})
    _where(event, profile)
    return event


_MAPPERS = {
    MEASUREMENT: _measurement_event,
    INSPECTION: _inspection_event,
    GENEALOGY: _genealogy_event,
    PACKING: _packing_event,
}


# -- validation ------------------------------------------------------------------------------


def validate_document(document: Any) -> list[Mapping[str, Any]]:
    """The document's events, once its structure and every eventID are checked."""
    if not isinstance(document, Mapping):
        raise EpcisError("an EPCIS document must be a JSON object")
    if document.get("type") != "EPCISDocument":
        raise EpcisError(
            f"document field 'type': expected 'EPCISDocument', not {document.get('type')!r}"
        )
    if "@context" not in document:
        raise EpcisError("document field '@context' is missing")
    if str(document.get("schemaVersion")) != "2.0":
        raise EpcisError(
            f"document field 'schemaVersion': expected '2.0', not {document.get('schemaVersion')!r}"
        )
    body = document.get("epcisBody")
    if not isinstance(body, Mapping) or not isinstance(body.get("eventList"), list):
        raise EpcisError("document field 'epcisBody.eventList' must be a list of events")
    prefixes = {**PREFIXES, **context_prefixes(document["@context"])}
    events: list[Mapping[str, Any]] = body["eventList"]
    for index, event in enumerate(events):
        _validate_event(index, event, prefixes)
    return events


def _fail(index: int, event: Any, name: str, problem: str) -> EpcisError:
    kind = event.get("type") if isinstance(event, Mapping) else None
    label = f"event {index}" + (f" ({kind})" if isinstance(kind, str) else "")
    return EpcisError(f"{label}: field {name!r}: {problem}")


def _validate_event(index: int, event: Any, prefixes: Mapping[str, str]) -> None:
    if not isinstance(event, Mapping):
        raise EpcisError(f"event {index}: must be a JSON object")
    if event.get("type") not in EVENT_TYPES:
        raise _fail(index, event, "type", f"expected one of {', '.join(sorted(EVENT_TYPES))}")
    _check_time(index, event, "eventTime", event.get("eventTime"))
    offset = event.get("eventTimeZoneOffset")
    if not isinstance(offset, str) or not _OFFSET.match(offset):
        raise _fail(index, event, "eventTimeZoneOffset", f"expected ±hh:mm, not {offset!r}")
    needs_action = event["type"] != "TransformationEvent" or "action" in event
    if needs_action and event.get("action") not in ("ADD", "OBSERVE", "DELETE"):
        raise _fail(
            index,
            event,
            "action",
            f"expected ADD, OBSERVE or DELETE, not {event.get('action')!r}",
        )
    for name in ("epcList", "inputEPCList", "outputEPCList", "childEPCs"):
        if name in event:
            _check_uris(index, event, name, event[name])
    for name in ("quantityList", "inputQuantityList", "outputQuantityList", "childQuantityList"):
        if name in event:
            _check_quantities(index, event, name, event[name])
    if "parentID" in event and not _is_uri_value(event["parentID"]):
        raise _fail(index, event, "parentID", "must be a URI")
    if "sensorElementList" in event:
        _check_sensors(index, event, event["sensorElementList"])
    if "eventID" in event:
        try:
            expected = event_hash(event, prefixes)
        except (IndexError, ValueError, TypeError) as exc:
            raise _fail(index, event, "eventID", f"the event cannot be hashed ({exc})") from exc
        if event["eventID"] != expected:
            raise _fail(
                index,
                event,
                "eventID",
                f"{event['eventID']} does not match the event's CBV 2.0 hash {expected}",
            )


def _check_time(index: int, event: Mapping[str, Any], name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise _fail(index, event, name, "must be an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(index, event, name, f"{value!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise _fail(index, event, name, f"{value!r} has no UTC offset")
    return moment


def _is_uri_value(value: Any) -> bool:
    return isinstance(value, str) and _is_uri(value)


def _check_uris(index: int, event: Mapping[str, Any], name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _fail(index, event, name, "must be a list of URIs")
    for position, item in enumerate(value):
        if not _is_uri_value(item):
            raise _fail(index, event, f"{name}[{position}]", f"{item!r} is not a URI")


def _check_quantities(index: int, event: Mapping[str, Any], name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise _fail(index, event, name, "must be a list of quantity elements")
    for position, item in enumerate(value):
        where = f"{name}[{position}]"
        if not isinstance(item, Mapping) or not _is_uri_value(item.get("epcClass")):
            raise _fail(index, event, where, "needs an epcClass URI")
        quantity = item.get("quantity")
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int | float)
        ):
            raise _fail(index, event, f"{where}.quantity", f"{quantity!r} is not a number")


def _check_sensors(index: int, event: Mapping[str, Any], value: Any) -> None:
    if not isinstance(value, list):
        raise _fail(index, event, "sensorElementList", "must be a list of sensor elements")
    for position, element in enumerate(value):
        where = f"sensorElementList[{position}]"
        if not isinstance(element, Mapping) or not isinstance(element.get("sensorReport"), list):
            raise _fail(index, event, f"{where}.sensorReport", "must be a list of sensor reports")
        metadata = element.get("sensorMetadata", {})
        if not isinstance(metadata, Mapping):
            raise _fail(index, event, f"{where}.sensorMetadata", "must be an object")
        if "time" in metadata:
            _check_time(index, event, f"{where}.sensorMetadata.time", metadata["time"])
        for number, report in enumerate(element["sensorReport"]):
            spot = f"{where}.sensorReport[{number}]"
            if not isinstance(report, Mapping):
                raise _fail(index, event, spot, "must be an object")
            reading = report.get("value")
            if reading is not None and (
                isinstance(reading, bool) or not isinstance(reading, int | float)
            ):
                raise _fail(index, event, f"{spot}.value", f"{reading!r} is not a number")


# -- import ----------------------------------------------------------------------------------


def import_document(store: Store, document: Any) -> ImportResult:
    """Validate ``document`` and store its events as records, all in one transaction.

    Events exported by a qnode keep their record id, type and public fields (``qnode:`` extension;
    the stated content hash must match them). Other ObjectEvents with sensor reports become
    "measurement" records, TransformationEvents "genealogy" records (EPC URNs become Digital Link
    URIs), AggregationEvents "packing" records. Records already in the store are left alone.
    """
    events = validate_document(document)
    plain: list[RecordInput] = []
    genealogies: list[Genealogy] = []
    skipped: Counter[str] = Counter()
    for index, event in enumerate(events):
        try:
            found = _records_of(event)
        except (QnodeError, KeyError, TypeError, ValueError) as exc:
            raise EpcisError(f"event {index} ({event['type']}): {exc}") from exc
        if not found:
            skipped[str(event["type"])] += 1
        for item in found:
            if isinstance(item, Genealogy):
                genealogies.append(item)
            else:
                plain.append(item)
    present = _existing_ids(
        store, [r.record_id for r in plain] + [g.record_id for g in genealogies]
    )
    plain = [r for r in plain if r.record_id not in present]
    genealogies = [g for g in genealogies if g.record_id not in present]
    with store.transaction() as connection:
        stored = store.write_records(connection, plain) + write_genealogy(
            store, connection, genealogies
        )
    counts = Counter(r.record_type for r in stored)
    return ImportResult(dict(counts), len(present), dict(skipped))


def _existing_ids(store: Store, ids: Sequence[str | None]) -> set[str]:
    wanted = [i for i in ids if i is not None]
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found |= {r.record_id for r in store.records(wanted[start : start + 500])}
    return found


def _records_of(event: Mapping[str, Any]) -> list[RecordInput | Genealogy]:
    observed = _observed_us(event["eventTime"])
    if Q_RECORD_TYPE in event:
        return [_qnode_record(event, observed)]
    kind = event["type"]
    if kind == "ObjectEvent" and event.get("sensorElementList"):
        return [_foreign_measurement(event, observed)]
    if kind == "TransformationEvent":
        return _foreign_genealogies(event, observed)
    if kind == "AggregationEvent" and "parentID" in event:
        children = list(event.get("childEPCs", [])) + [
            q["epcClass"] for q in event.get("childQuantityList", [])
        ]
        fields = {"parent": event["parentID"], "children": children, "action": event["action"]}
        return [RecordInput(PACKING, fields, observed)]
    return []


def _observed_us(text: str) -> int:
    moment = datetime.fromisoformat(text)
    seconds = int(moment.replace(microsecond=0).timestamp())
    return seconds * 1_000_000 + moment.microsecond


def _qnode_record(event: Mapping[str, Any], observed: int) -> RecordInput | Genealogy:
    record_type = str(event[Q_RECORD_TYPE])
    record_id = check_record_id(str(event[Q_RECORD_ID])) if Q_RECORD_ID in event else None
    fields = json.loads(event[Q_FIELDS]) if Q_FIELDS in event else {}
    if not isinstance(fields, dict):
        raise RecordError(f"{Q_FIELDS} is not a JSON object")
    stated = event.get(Q_CONTENT_HASH)
    if record_id is not None and stated is not None and Q_COMMITMENT not in event:
        actual = content_hash_of(record_id, record_type, observed, canonical_json(fields), None)
        if actual != stated:
            raise RecordError(f"{Q_CONTENT_HASH} {stated} does not match its fields ({actual})")
    if record_type == GENEALOGY:
        return Genealogy.from_fields(fields, observed, record_id)
    return RecordInput(record_type, fields, observed, record_id)


def _foreign_measurement(event: Mapping[str, Any], observed: int) -> RecordInput:
    points = []
    device = sent_at = None
    for element in event["sensorElementList"]:
        metadata = element.get("sensorMetadata", {})
        device = device or metadata.get("deviceID")
        sent_at = sent_at or metadata.get("time")
        for report in element["sensorReport"]:
            if "value" not in report:
                continue
            quantity = report.get(Q_QUANTITY) or _local_name(str(report.get("type", "value")))
            points.append({"q": quantity, "v": report["value"], "u": report.get("uom", "")})
    fields: dict[str, Any] = {"source": "epcis", "quality": "good", "points": points}
    if device is not None:
        fields["device"] = device
    fields["sent_at"] = sent_at or event["eventTime"]
    return RecordInput(MEASUREMENT, fields, observed)


def _local_name(term: str) -> str:
    return re.split(r"[:/#]", term)[-1].lower()


def _as_digital_link(uri: str) -> str:
    converted = normalise_gs1_uri(uri) if uri.startswith("urn:epc:") else None
    return converted or uri


def _foreign_genealogies(event: Mapping[str, Any], observed: int) -> list[RecordInput | Genealogy]:
    inputs = [str(u) for u in event.get("inputEPCList", [])] + [
        str(q["epcClass"]) for q in event.get("inputQuantityList", [])
    ]
    outputs = [str(u) for u in event.get("outputEPCList", [])] + [
        str(q["epcClass"]) for q in event.get("outputQuantityList", [])
    ]
    lots = tuple(GenealogyInput(_as_digital_link(u), InputKind.MATERIAL_LOT) for u in inputs)
    if not lots:
        return []
    return [Genealogy(_as_digital_link(out), lots, observed) for out in outputs]
