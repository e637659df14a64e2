"""The trace index: one row per thing a trace looks up, by key and time.

A trace asks a store questions the records table cannot answer by itself at a million records:
which genealogy records made this lot, which records judged it bad, what this equipment's devices
measured between two instants, which rules fired about it. The records table has only its id as a
key and keeps fields as JSON, so this index (``trace_index``, migration 0004) holds, per record,
the keys it answers to (:mod:`node.trace.keys`):

==================  =============================================  ======================
key                 rows                                           time
==================  =============================================  ======================
``out:`` + id       genealogy records making that product/lot      record's observation
``s:`` + id         inspections, lab results, incoming lots that   record's observation
                    judged it bad (only those: the others are not
                    anomalies)
``eq:`` + key       setpoints of the equipment; measurements and   observation (readings:
                    quarantined readings of its devices; decisions  when received)
                    whose scope names one of its devices or whose
                    action names its line
``sup:`` + address  decisions about that supplier                  decision's time
==================  =============================================  ======================

The primary key (key, time, ref) is the index: every question is one range scan. ``ref`` is the
record id, or ``quarantine:<id>`` for a quarantined reading (those are rows of their own table).

The index is derived, never authoritative: :meth:`TraceIndex.catch_up` reads what is new since its
last position (records by anchoring-outbox sequence, quarantine rows by id) and adds their rows in
one transaction with the new position. Every trace, and every trace request a node serves, catches
up first. Writing the same rows twice is harmless (``ON CONFLICT DO NOTHING``); on PostgreSQL,
where a transaction can commit a lower sequence after a higher one was read, the last few thousand
positions are read again each time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    func,
    select,
)

from node.offchain.store import OUTBOX, RECORDS, Store, now_us
from node.oracles.quarantine import QUARANTINE
from node.trace import keys
from node.trace.anomalies import judge, subject_of

METADATA = MetaData()
TRACE_INDEX = Table(
    "trace_index",
    METADATA,
    Column("key", String(520), primary_key=True),
    Column("observed_at_us", BigInteger, primary_key=True),
    Column("ref", String(80), primary_key=True),
    Column("kind", String(16), nullable=False),
)
TRACE_STATE = Table(
    "trace_index_state",
    METADATA,
    Column("name", String(40), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

GENEALOGY = "genealogy"
ANOMALY = "anomaly"
SETPOINT = "setpoint"
MEASUREMENT = "measurement"
DECISION = "decision"
QUARANTINE_KIND = "quarantine"
QUARANTINE_REF = "quarantine:"
INDEXED_TYPES = (
    GENEALOGY,
    SETPOINT,
    MEASUREMENT,
    DECISION,
    "inspection",
    "lab_result",
    "incoming_lot",
)

_RECORDS_STATE = "records"
_QUARANTINE_STATE = "quarantine"
_PAGE = 20_000
_REREAD = 2_000
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_DEVICE_PREFIX = '{"device":"'

Row = tuple[str, int, str, str]
"""(key, observed_at_us, ref, kind)"""


@dataclass(frozen=True)
class IndexedRow:
    key: str
    observed_at_us: int
    ref: str
    kind: str


class TraceIndex:
    """The index of one store. ``lines`` maps this member's line names (as rules name them) to
    their URIs, so that a decision about a line is found on that line's equipment."""

    def __init__(self, store: Store, lines: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.lines = dict(lines or {})
        self._lock = threading.Lock()

    # -- keeping up --------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Index what the store holds beyond the last position; returns how many rows were
        read (records and quarantine rows)."""
        with self._lock:
            done = 0
            while read := self._records_page():
                done += read
            while read := self._quarantine_page():
                done += read
            return done

    def _records_page(self) -> int:
        with self.store.transaction() as connection:
            position = _position(connection, _RECORDS_STATE)
            top = connection.execute(select(func.max(OUTBOX.c.seq))).scalar()
            if top is None or int(top) <= position:
                return 0
            start = position
            if connection.dialect.name != "sqlite":
                start = max(0, position - _REREAD)
            upto = min(int(top), position + _PAGE)
            rows = connection.execute(
                select(
                    RECORDS.c.record_id,
                    RECORDS.c.record_type,
                    RECORDS.c.observed_at_us,
                    RECORDS.c.public_json,
                )
                .join(OUTBOX, OUTBOX.c.record_id == RECORDS.c.record_id)
                .where(OUTBOX.c.seq > start, OUTBOX.c.seq <= upto)
                .where(RECORDS.c.record_type.in_(INDEXED_TYPES))
            ).all()
            entries = [
                entry
                for row in rows
                for entry in self.entries(
                    row.record_id, row.record_type, int(row.observed_at_us), row.public_json
                )
            ]
            _insert(connection, entries)
            _set_position(connection, _RECORDS_STATE, upto)
        return max(1, upto - position)

    def _quarantine_page(self) -> int:
        with self.store.transaction() as connection:
            position = _position(connection, _QUARANTINE_STATE)
            rows = connection.execute(
                select(QUARANTINE.c.id, QUARANTINE.c.device_id, QUARANTINE.c.received_at_us)
                .where(QUARANTINE.c.id > position)
                .order_by(QUARANTINE.c.id)
                .limit(_PAGE)
            ).all()
            if not rows:
                return 0
            entries = [
                (
                    keys.key(keys.EQUIPMENT, keys.device_equipment(row.device_id)),
                    int(row.received_at_us),
                    f"{QUARANTINE_REF}{row.id}",
                    QUARANTINE_KIND,
                )
                for row in rows
                if row.device_id
            ]
            _insert(connection, entries)
            _set_position(connection, _QUARANTINE_STATE, int(rows[-1].id))
        return len(rows)

    # -- what a record answers to ------------------------------------------------------------

    def entries(
        self, record_id: str, record_type: str, observed_at_us: int, public_json: str
    ) -> Iterator[Row]:
        if record_type == MEASUREMENT:
            device = _device(public_json)
            if device is not None:
                yield (
                    keys.key(keys.EQUIPMENT, keys.device_equipment(device)),
                    observed_at_us,
                    record_id,
                    MEASUREMENT,
                )
            return
        public = _loads(public_json)
        if public is None:
            return
        if record_type == GENEALOGY:
            output = public.get("output")
            if isinstance(output, str):
                yield (
                    keys.key(keys.OUTPUT, keys.canonical(output)),
                    observed_at_us,
                    record_id,
                    GENEALOGY,
                )
        elif record_type == SETPOINT:
            equipment = public.get("equipment")
            if isinstance(equipment, str):
                yield (
                    keys.key(keys.EQUIPMENT, keys.equipment_key(equipment)),
                    observed_at_us,
                    record_id,
                    SETPOINT,
                )
        elif record_type == DECISION:
            for found in sorted(set(self._decision_keys(public))):
                yield (found, observed_at_us, record_id, DECISION)
        else:
            subject = subject_of(record_type, public)
            if subject is not None and judge(record_type, public) is not None:
                yield (
                    keys.key(keys.SUBJECT, keys.canonical(subject)),
                    observed_at_us,
                    record_id,
                    ANOMALY,
                )

    def _decision_keys(self, public: Mapping[str, Any]) -> Iterator[str]:
        for scope in _scopes(public):
            device = scope.get("device")
            if isinstance(device, str):
                yield keys.key(keys.EQUIPMENT, keys.device_equipment(device))
            supplier = scope.get("supplier")
            if isinstance(supplier, str):
                yield keys.key(keys.SUPPLIER, supplier.lower())
        action = public.get("action")
        if isinstance(action, Mapping):
            line = action.get("line")
            if isinstance(line, str):
                yield keys.key(keys.EQUIPMENT, keys.equipment_key(self.lines.get(line, line)))
            supplier = action.get("supplier")
            if isinstance(supplier, str):
                yield keys.key(keys.SUPPLIER, supplier.lower())

    # -- asking ------------------------------------------------------------------------------

    def rows(
        self,
        connection: Connection,
        key: str,
        since_us: int | None = None,
        until_us: int | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[IndexedRow]:
        """The rows of ``key`` in ``[since_us, until_us]``, oldest first."""
        query = select(
            TRACE_INDEX.c.key, TRACE_INDEX.c.observed_at_us, TRACE_INDEX.c.ref, TRACE_INDEX.c.kind
        ).where(TRACE_INDEX.c.key == key[: keys.MAX_KEY_CHARS])
        if since_us is not None:
            query = query.where(TRACE_INDEX.c.observed_at_us >= since_us)
        if until_us is not None:
            query = query.where(TRACE_INDEX.c.observed_at_us <= until_us)
        if kinds is not None:
            query = query.where(TRACE_INDEX.c.kind.in_(list(kinds)))
        rows = connection.execute(query.order_by(TRACE_INDEX.c.observed_at_us)).all()
        return [IndexedRow(r.key, int(r.observed_at_us), r.ref, r.kind) for r in rows]

    def keyed(
        self, connection: Connection, wanted: Sequence[str], kinds: Sequence[str] | None = None
    ) -> list[IndexedRow]:
        """The rows of several keys at once (no time range), oldest first within a key."""
        found: list[IndexedRow] = []
        unique = sorted({k[: keys.MAX_KEY_CHARS] for k in wanted})
        for start in range(0, len(unique), 500):
            query = select(
                TRACE_INDEX.c.key,
                TRACE_INDEX.c.observed_at_us,
                TRACE_INDEX.c.ref,
                TRACE_INDEX.c.kind,
            ).where(TRACE_INDEX.c.key.in_(unique[start : start + 500]))
            if kinds is not None:
                query = query.where(TRACE_INDEX.c.kind.in_(list(kinds)))
            rows = connection.execute(
                query.order_by(TRACE_INDEX.c.key, TRACE_INDEX.c.observed_at_us)
            ).all()
            found += [IndexedRow(r.key, int(r.observed_at_us), r.ref, r.kind) for r in rows]
        return found


def _scopes(public: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The scope fields of each condition of a decision (``computed.conditions[*].scope`` holds
    canonical JSON of the scope's fields)."""
    computed = public.get("computed")
    conditions = computed.get("conditions") if isinstance(computed, Mapping) else None
    if not isinstance(conditions, Mapping):
        return
    for leaf in conditions.values():
        scope = leaf.get("scope") if isinstance(leaf, Mapping) else None
        if isinstance(scope, str):
            parsed = _loads(scope)
            if parsed is not None:
                yield parsed


def _device(public_json: str) -> str | None:
    """A measurement's device: canonical JSON sorts ``device`` first, so it is read without
    parsing the points (the whole text is parsed when the id holds an escape)."""
    if public_json.startswith(_DEVICE_PREFIX):
        end = public_json.find('"', len(_DEVICE_PREFIX))
        if end > 0 and "\\" not in public_json[len(_DEVICE_PREFIX) : end]:
            return public_json[len(_DEVICE_PREFIX) : end]
    public = _loads(public_json)
    device = public.get("device") if public is not None else None
    return device if isinstance(device, str) else None


def _loads(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _position(connection: Connection, name: str) -> int:
    value = connection.execute(
        select(TRACE_STATE.c.position).where(TRACE_STATE.c.name == name)
    ).scalar()
    return 0 if value is None else int(value)


def _set_position(connection: Connection, name: str, position: int) -> None:
    mark = _PLACEHOLDERS[connection.dialect.paramstyle]
    connection.exec_driver_sql(
        f"INSERT INTO {TRACE_STATE.name} (name, position, updated_at_us) VALUES "
        f"({mark}, {mark}, {mark}) ON CONFLICT (name) DO UPDATE SET "
        "position = excluded.position, updated_at_us = excluded.updated_at_us "
        f"WHERE {TRACE_STATE.name}.position < excluded.position",
        [(name, position, now_us())],
    )


def _insert(connection: Connection, rows: Sequence[Row]) -> None:
    if not rows:
        return
    mark = _PLACEHOLDERS[connection.dialect.paramstyle]
    connection.exec_driver_sql(
        f"INSERT INTO {TRACE_INDEX.name} (key, observed_at_us, ref, kind) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT DO NOTHING",
        list(rows),
    )
