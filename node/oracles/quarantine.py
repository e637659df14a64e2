"""The quarantine: every rejected reading, its reason and its payload exactly as received.

Rows are written inside the ingest batch's transaction (:meth:`Quarantine.write`), together with
the records accepted from the same batch, so a reading is acknowledged to its source only once it
is durable either way. Rows are never updated or deleted by the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, desc, func, select

from node.errors import StoreError
from node.offchain.models import Base, QuarantineRow
from node.offchain.store import Store

QUARANTINE = Base.metadata.tables[QuarantineRow.__tablename__]
_COLUMNS = ("received_at_us", "source", "device_id", "reason", "detail", "payload")
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class QuarantineEntry:
    received_at_us: int
    source: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    id: int | None = None
    """Assigned by the database; None before the entry is written."""


class Quarantine:
    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, connection: Connection, entries: Sequence[QuarantineEntry]) -> None:
        """Insert ``entries`` inside the caller's transaction."""
        if not entries:
            return
        mark = _PLACEHOLDERS[connection.dialect.paramstyle]
        statement = (
            f"INSERT INTO {QUARANTINE.name} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})"
        )
        connection.exec_driver_sql(
            statement,
            [
                (e.received_at_us, e.source, e.device_id, e.reason, e.detail, e.payload)
                for e in entries
            ],
        )

    def add(self, entries: Sequence[QuarantineEntry]) -> None:
        """Insert ``entries`` in a transaction of their own."""
        with self.store.transaction() as connection:
            self.write(connection, entries)

    def entries(
        self, reason: str | None = None, device: str | None = None, limit: int = 100
    ) -> list[QuarantineEntry]:
        """The newest entries first, optionally only of one reason and/or device."""
        query = select(QUARANTINE).order_by(desc(QUARANTINE.c.id)).limit(limit)
        if reason is not None:
            query = query.where(QUARANTINE.c.reason == reason)
        if device is not None:
            query = query.where(QUARANTINE.c.device_id == device)
        with self.store.transaction() as connection:
            rows = connection.execute(query).all()
        return [_entry(row._mapping) for row in rows]

    def entry(self, entry_id: int) -> QuarantineEntry:
        with self.store.transaction() as connection:
            row = connection.execute(select(QUARANTINE).where(QUARANTINE.c.id == entry_id)).first()
        if row is None:
            raise StoreError(f"quarantine entry {entry_id} does not exist")
        return _entry(row._mapping)

    def count_by_reason(self) -> dict[str, int]:
        query = select(QUARANTINE.c.reason, func.count()).group_by(QUARANTINE.c.reason)
        with self.store.transaction() as connection:
            return {reason: int(count) for reason, count in connection.execute(query).all()}


def _entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(
        received_at_us=int(row["received_at_us"]),
        source=row["source"],
        device_id=row["device_id"],
        reason=row["reason"],
        detail=row["detail"],
        payload=bytes(row["payload"]),
        id=int(row["id"]),
    )
