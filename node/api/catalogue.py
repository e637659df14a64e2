"""What this member's store knows about products: GTINs, lots and serialised items, the records
about each, and which of them changed since the last look.

The catalogue is an in-memory index, built from the store and brought up to date incrementally
(``refresh``): new records are read by their anchoring-outbox sequence, new anchors by their time,
newly confirmed attestations by their block. Each refresh says which product keys and record ids
changed, so that cached passports depending on them are dropped (and only those).

Identifiers in records are GS1 Digital Link URIs on any domain; they are indexed by their key
(GTIN-14, lot, serial), so ``https://id.gs1.org/01/…`` and the member's own domain meet.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from node.errors import IdentifierError
from node.offchain.models import AttestationRow, Base
from node.offchain.store import BATCHES, OUTBOX, RECORDS, Store
from node.oracles.digital_link import GTIN, DigitalLink, parse

ATTESTATIONS = Base.metadata.tables[AttestationRow.__tablename__]
GENEALOGY = "genealogy"
SETPOINT = "setpoint"
_PAGE = 5000


@dataclass(frozen=True, order=True)
class ProductKey:
    """A product class (``lot`` and ``serial`` None), a lot, or an item."""

    gtin: str
    lot: str | None = None
    serial: str | None = None

    @classmethod
    def of(cls, link: DigitalLink) -> ProductKey | None:
        if link.ai != GTIN:
            return None
        return cls(link.key, link.lot, link.serial)

    @property
    def level(self) -> str:
        return "item" if self.serial is not None else "lot" if self.lot is not None else "product"

    def link(self) -> DigitalLink:
        from node.oracles.digital_link import product

        return product(self.gtin, self.lot, self.serial)

    def parent(self) -> ProductKey | None:
        if self.serial is not None:
            return (
                ProductKey(self.gtin, self.lot) if self.lot is not None else ProductKey(self.gtin)
            )
        if self.lot is not None:
            return ProductKey(self.gtin)
        return None


def key_of(uri: object) -> ProductKey | None:
    """The product key of a Digital Link URI on any domain; None for anything else."""
    if not isinstance(uri, str) or "/01/" not in uri:
        return None
    try:
        return ProductKey.of(parse(uri, domains=None))
    except IdentifierError:
        return None


@dataclass
class Changes:
    """What a refresh found new: product keys, equipment ids and records touched."""

    keys: set[ProductKey] = field(default_factory=set)
    equipment: set[str] = field(default_factory=set)
    records: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.keys or self.equipment or self.records)


@dataclass(frozen=True)
class SubjectSpec:
    """Which field of a record type names the product or lot it is about."""

    record_type: str
    field: str


DEFAULT_SUBJECT_FIELDS: Mapping[str, str] = {
    "inspection": "part_id",
    "lab_result": "sample",
    "bake_curve": "cell_id",
    "incoming_lot": "lot",
    "carbon_footprint": "product",
    "due_diligence": "subject",
}
"""Record types about a product or lot, and the field holding its Digital Link URI. Types a
member's config does not define are simply never found."""


class Catalogue:
    """The index; ``refresh`` is safe to call from several threads (one runs, others skip)."""

    def __init__(self, store: Store, subject_fields: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.subject_fields = dict(subject_fields or DEFAULT_SUBJECT_FIELDS)
        self.types = (*self.subject_fields, GENEALOGY, SETPOINT)
        self._lock = threading.Lock()
        self._seq = 0
        self._anchored_at = 0
        self._attested_block = -1
        self._attested_seen: set[str] = set()
        # product key -> ids of records about it (its subject) and of genealogy records making it
        self.subjects: dict[ProductKey, list[str]] = {}
        self.made_by: dict[ProductKey, list[str]] = {}
        # product key -> the URI strings the store uses for it (genealogy links are by string)
        self.uris: dict[ProductKey, set[str]] = {}
        self.setpoints: dict[str, list[str]] = {}  # equipment id -> setpoint record ids
        self.items: dict[tuple[str, str], set[str | None]] = {}  # (gtin, serial) -> its lots
        self.lots: set[tuple[str, str]] = set()
        self.gtins: set[str] = set()
        self.refreshes = 0

    # -- lookups -----------------------------------------------------------------------------

    def knows(self, key: ProductKey) -> bool:
        if key.serial is not None:
            lots = self.items.get((key.gtin, key.serial))
            return lots is not None and (key.lot is None or key.lot in lots)
        if key.lot is not None:
            return (key.gtin, key.lot) in self.lots
        return key.gtin in self.gtins

    def record_ids(self, key: ProductKey) -> list[str]:
        return list(self.subjects.get(key, ()))

    # -- refreshing --------------------------------------------------------------------------

    def refresh(self) -> Changes | None:
        """Read what is new in the store; None if another thread is refreshing already."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            changes = Changes()
            self._read_records(changes)
            self._read_anchors(changes)
            self._read_attestations(changes)
            self.refreshes += 1
            return changes
        finally:
            self._lock.release()

    def _read_records(self, changes: Changes) -> None:
        with self.store.transaction() as connection:
            top = connection.execute(select(func.max(OUTBOX.c.seq))).scalar()
            if top is None or int(top) <= self._seq:
                return
            while self._seq < int(top):
                upto = min(int(top), self._seq + _PAGE * 8)
                rows = connection.execute(
                    select(
                        RECORDS.c.record_id,
                        RECORDS.c.record_type,
                        RECORDS.c.observed_at_us,
                        RECORDS.c.public_json,
                    )
                    .join(OUTBOX, OUTBOX.c.record_id == RECORDS.c.record_id)
                    .where(OUTBOX.c.seq > self._seq, OUTBOX.c.seq <= upto)
                    .where(RECORDS.c.record_type.in_(self.types))
                    .order_by(OUTBOX.c.seq)
                ).all()
                for row in rows:
                    self._index(
                        row.record_id, row.record_type, json.loads(row.public_json), changes
                    )
                self._seq = upto

    def _index(
        self, record_id: str, record_type: str, public: Mapping[str, Any], changes: Changes
    ) -> None:
        if record_type == GENEALOGY:
            output = public.get("output")
            key = key_of(output)
            if key is not None and isinstance(output, str):
                self._know(key, output)
                self.made_by.setdefault(key, []).append(record_id)
                changes.keys.add(key)
            for item in public.get("inputs") or ():
                if isinstance(item, Mapping):
                    input_key = key_of(item.get("id"))
                    if input_key is not None:
                        self._know(input_key, str(item["id"]))
            changes.records.add(record_id)
            return
        if record_type == SETPOINT:
            equipment = public.get("equipment")
            if isinstance(equipment, str):
                self.setpoints.setdefault(equipment, []).append(record_id)
                changes.equipment.add(equipment)
            return
        field_name = self.subject_fields.get(record_type)
        subject = public.get(field_name) if field_name else None
        key = key_of(subject)
        if key is None or not isinstance(subject, str):
            return
        self._know(key, subject)
        self.subjects.setdefault(key, []).append(record_id)
        changes.keys.add(key)

    def _know(self, key: ProductKey, uri: str) -> None:
        self.uris.setdefault(key, set()).add(uri)
        self.gtins.add(key.gtin)
        if key.lot is not None:
            self.lots.add((key.gtin, key.lot))
        if key.serial is not None:
            self.items.setdefault((key.gtin, key.serial), set()).add(key.lot)

    def _read_anchors(self, changes: Changes) -> None:
        with self.store.transaction() as connection:
            batches = connection.execute(
                select(BATCHES.c.batch_id, BATCHES.c.anchored_at_us).where(
                    BATCHES.c.anchored_at_us > self._anchored_at
                )
            ).all()
            if not batches:
                return
            ids = [b.batch_id for b in batches]
            for start in range(0, len(ids), 500):
                rows = connection.execute(
                    select(OUTBOX.c.record_id).where(
                        OUTBOX.c.batch_id.in_(ids[start : start + 500])
                    )
                )
                changes.records.update(r.record_id for r in rows)
        self._anchored_at = max(int(b.anchored_at_us) for b in batches)

    def _read_attestations(self, changes: Changes) -> None:
        with self.store.transaction() as connection:
            rows = connection.execute(
                select(ATTESTATIONS.c.digest, ATTESTATIONS.c.record_id, ATTESTATIONS.c.block_number)
                .where(ATTESTATIONS.c.status == "confirmed")
                .where(ATTESTATIONS.c.block_number >= max(self._attested_block, 0))
            ).all()
        fresh = [r for r in rows if r.digest not in self._attested_seen]
        if not fresh:
            return
        changes.records.update(r.record_id for r in fresh)
        top = max(int(r.block_number) for r in rows)
        if top != self._attested_block:
            self._attested_seen = set()
        self._attested_seen.update(r.digest for r in rows if int(r.block_number) == top)
        self._attested_block = top


def uris_of(catalogue: Catalogue, keys: Iterable[ProductKey]) -> set[str]:
    found: set[str] = set()
    for key in keys:
        found |= catalogue.uris.get(key, set())
    return found
