"""The off-chain store: SQLite (WAL) by default, PostgreSQL by URL, schema by Alembic.

``add_records`` is the batch API: every record, its private part and its outbox row are written in
one database transaction, so an accepted record is always on its way to being anchored.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from node.errors import RecordError, StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import Classification
from node.offchain.models import Base, BatchRow, OutboxRow, PrivateFieldsRow, RecordRow
from node.offchain.records import (
    PrivatePart,
    RecordInput,
    StoredRecord,
    canonical_json,
    check_record_id,
    commit_private,
    content_hash_of,
    new_record_id,
)

MIGRATIONS = Path(__file__).with_name("migrations")
ENTROPY_PER_RECORD = 56
RECORDS = Base.metadata.tables[RecordRow.__tablename__]
PRIVATE = Base.metadata.tables[PrivateFieldsRow.__tablename__]
OUTBOX = Base.metadata.tables[OutboxRow.__tablename__]
BATCHES = Base.metadata.tables[BatchRow.__tablename__]


RecordListener = Callable[[Sequence[StoredRecord]], None]
log = logging.getLogger(__name__)


def now_us() -> int:
    return time.time_ns() // 1000


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_store_engine(url: str) -> Engine:
    """An engine with SQLite set to WAL and foreign keys, and stale connections re-checked."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a crash of the process (kill -9);
    # only an OS crash or power loss can take back the last ones.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: index inserts stay in memory
    cursor.execute("PRAGMA wal_autocheckpoint=16384")
    cursor.close()


class Store:
    """Records and their private parts, with the anchoring outbox, in one database."""

    def __init__(self, engine: Engine, classification: Classification, blobs: BlobStore) -> None:
        self.engine = engine
        self.classification = classification
        self.blobs = blobs
        self._listeners: list[RecordListener] = []
        self._written: dict[int, list[StoredRecord]] = {}
        """The records each open transaction wrote (by connection), for the listeners; kept here
        rather than on the connection, which a lost database invalidates."""

    @classmethod
    def open(cls, url: str, classification: Classification, blobs: BlobStore) -> Store:
        """Connect and bring the schema to the latest migration."""
        store = cls(create_store_engine(url), classification, blobs)
        store.migrate()
        return store

    def migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.transaction() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    def add_listener(self, listener: RecordListener) -> None:
        """Call ``listener`` with the records of every transaction of this store object once it
        has committed (the control loop's rules watch the data this way). A listener that raises
        is logged; the records stay stored."""
        self._listeners.append(listener)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction; database failures become StoreError."""
        written: list[StoredRecord] = []
        try:
            with self.engine.begin() as connection:
                self._written[id(connection)] = written
                try:
                    yield connection
                finally:
                    self._written.pop(id(connection), None)
        except IntegrityError as exc:
            raise StoreError(f"the store refused the write: {_first_line(exc.orig)}") from exc
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"the database is unavailable: {_first_line(exc.orig)}") from exc
        if written:
            self._notify(written)

    def _notify(self, records: list[StoredRecord]) -> None:
        for listener in self._listeners:
            try:
                listener(records)
            except Exception:
                log.exception("a record listener failed; the records are stored")

    # -- writing -----------------------------------------------------------------------------

    def add_records(self, inputs: Sequence[RecordInput]) -> list[StoredRecord]:
        """Validate and store ``inputs`` with their outbox rows, all or nothing."""
        with self.transaction() as connection:
            return self.write_records(connection, inputs)

    def write_records(
        self, connection: Connection, inputs: Sequence[RecordInput]
    ) -> list[StoredRecord]:
        """Like :meth:`add_records`, inside the caller's transaction, so that other rows (device
        sequences, genealogy links) commit or roll back together with the records."""
        chunk = self._prepare_chunk(inputs, now_us(), set())
        chunk.write(connection)
        if self._listeners:
            written = self._written.get(id(connection))
            if written is not None:
                written.extend(chunk.records)
        return chunk.records

    def _prepare_chunk(
        self, inputs: Sequence[RecordInput], stored_at: int, seen: set[str]
    ) -> _PreparedChunk:
        chunk = _PreparedChunk([], [], [], [])
        entropy = os.urandom(ENTROPY_PER_RECORD * len(inputs))  # one system call, not two a record
        for index, item in enumerate(inputs):
            offset = index * ENTROPY_PER_RECORD
            record, public_json, private = self._prepare(
                item, entropy[offset : offset + ENTROPY_PER_RECORD]
            )
            if record.record_id in seen:
                raise RecordError(
                    f"the batch holds record id {record.record_id} twice; nothing stored"
                )
            seen.add(record.record_id)
            chunk.records.append(record)
            chunk.record_rows.append(
                (
                    record.record_id,
                    record.record_type,
                    record.observed_at_us,
                    stored_at,
                    public_json,
                    record.private_commitment,
                    record.content_hash,
                )
            )
            if private is not None:
                chunk.private_rows.append((record.record_id, private[0], private[1]))
            chunk.outbox_rows.append((record.record_id, stored_at))
        return chunk

    def _prepare(
        self, item: RecordInput, entropy: bytes
    ) -> tuple[StoredRecord, str, tuple[bytes, str] | None]:
        """The record as it will be stored, its public JSON, and (salt, private JSON) if any.

        ``entropy`` is 56 random bytes: 24 for a new record id, 32 for the commitment's salt.
        """
        record_type = self.classification.of(item.record_type)
        public, private_values = record_type.split(item.fields)
        record_id = (
            check_record_id(item.record_id) if item.record_id else new_record_id(entropy[:24])
        )
        try:
            public_json = canonical_json(public)
            private_json = canonical_json(private_values) if private_values else None
        except RecordError as exc:
            raise RecordError(f"record {record_id}: {exc}") from exc
        private = None
        commitment = None
        if private_json is not None:
            salt = entropy[24:]
            private = (salt, private_json)
            commitment = commit_private(salt, private_json)
        observed = int(item.observed_at_us)
        digest = content_hash_of(record_id, item.record_type, observed, public_json, commitment)
        record = StoredRecord(record_id, item.record_type, observed, public, commitment, digest)
        return record, public_json, private

    # -- reading -----------------------------------------------------------------------------

    def record(self, record_id: str) -> StoredRecord:
        found = self.records([record_id])
        if not found:
            raise StoreError(f"record {record_id} is not in the store")
        return found[0]

    def records(self, record_ids: Sequence[str]) -> list[StoredRecord]:
        """The records among ``record_ids`` that exist, as stored (hashes not recomputed)."""
        ids = [check_record_id(r) for r in record_ids]
        with self.transaction() as connection:
            rows = connection.execute(select(RECORDS).where(RECORDS.c.record_id.in_(ids))).all()
        return [stored_record(row._mapping) for row in rows]

    def private_part(self, record_id: str) -> PrivatePart | None:
        with self.transaction() as connection:
            row = connection.execute(
                select(PRIVATE).where(PRIVATE.c.record_id == check_record_id(record_id))
            ).first()
        if row is None:
            return None
        return PrivatePart(bytes(row.salt), json.loads(row.values_json))

    def count_records(self, record_type: str | None = None) -> int:
        query = select(func.count()).select_from(RECORDS)
        if record_type is not None:
            query = query.where(RECORDS.c.record_type == record_type)
        with self.transaction() as connection:
            return int(connection.execute(query).scalar_one())


@dataclass
class _PreparedChunk:
    records: list[StoredRecord]
    record_rows: list[tuple[Any, ...]]
    private_rows: list[tuple[Any, ...]]
    outbox_rows: list[tuple[Any, ...]]

    def write(self, connection: Connection) -> None:
        _insert_many(connection, "records", _RECORD_COLUMNS, self.record_rows)
        _insert_many(connection, "private_fields", _PRIVATE_COLUMNS, self.private_rows)
        _insert_many(connection, "anchor_outbox", _OUTBOX_COLUMNS, self.outbox_rows)


_RECORD_COLUMNS = (
    "record_id",
    "record_type",
    "observed_at_us",
    "stored_at_us",
    "public_json",
    "private_commitment",
    "content_hash",
)
_PRIVATE_COLUMNS = ("record_id", "salt", "values_json")
_OUTBOX_COLUMNS = ("record_id", "created_at_us")
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _insert_many(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """A driver-level executemany: the batch API's rows skip SQLAlchemy's per-row processing."""
    if not rows:
        return
    mark = _PLACEHOLDERS[connection.dialect.paramstyle]
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    )
    connection.exec_driver_sql(statement, list(rows))


def stored_record(row: Any) -> StoredRecord:
    return StoredRecord(
        record_id=row["record_id"],
        record_type=row["record_type"],
        observed_at_us=int(row["observed_at_us"]),
        public=json.loads(row["public_json"]),
        private_commitment=row["private_commitment"],
        content_hash=row["content_hash"],
    )


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
