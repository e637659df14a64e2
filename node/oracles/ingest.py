"""The ingest pipeline: readings in, "measurement" records and quarantine rows out, then acks.

A batch is one database transaction: the accepted messages become "measurement" records (and
anchoring outbox rows), the rejected readings quarantine rows, and the devices' sequence
high-water marks move, all together. Only after the commit is each reading acknowledged to its
source, so a crash at any point makes the source redeliver what was not yet durable, and a
redelivered message that was already stored is caught as a duplicate: every message is stored
exactly once or quarantined, never lost.

Record fields of a measurement (docs/device-messages.md): ``device``, ``seq``, ``sent_at`` (the
message's timestamp text), ``source``, ``quality``, ``points`` (``[{"q","v","u"}]`` in canonical
units) and, for a signed message, ``signature`` (hex) and ``signed_message``: the exact bytes the
signature covers, as text, since the converted points no longer reproduce them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, select

from node.errors import ConfigError, StoreError
from node.offchain.models import Base, DeviceSequenceRow
from node.offchain.records import RecordInput
from node.offchain.store import Store, now_us
from node.oracles.metrics import IngestMetrics
from node.oracles.quarantine import Quarantine, QuarantineEntry
from node.oracles.source import Reading
from node.oracles.validation import Accepted, Outcome, Rejection, Validator

MEASUREMENT = "measurement"
MEASUREMENT_FIELDS = (
    "device",
    "seq",
    "sent_at",
    "source",
    "quality",
    "points",
    "signature",
    "signed_message",
)
DEVICE_SEQUENCES = Base.metadata.tables[DeviceSequenceRow.__tablename__]
MAX_SOURCE_CHARS = 500
MAX_DEVICE_CHARS = 200

log = logging.getLogger(__name__)

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    points: int
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Rejected readings by reason."""
    record_ids: tuple[str, ...] = ()

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True)
class _End:
    """The source's iteration ended, normally or with ``error``."""

    error: Exception | None = None


class Ingestor:
    def __init__(
        self,
        store: Store,
        validator: Validator,
        metrics: IngestMetrics | None = None,
        max_batch: int = 1000,
        max_delay_s: float = 0.05,
        retries: int = 5,
        retry_backoff_s: float = 0.2,
    ) -> None:
        """``max_batch`` readings or ``max_delay_s`` after the first one, whichever comes first,
        make a batch in :meth:`run`. A failing store is retried ``retries`` times, waiting
        ``retry_backoff_s``, doubling (at most 5 s), before the error is raised."""
        if max_batch < 1 or max_delay_s < 0:
            raise ConfigError("an ingest batch needs max_batch >= 1 and max_delay_s >= 0")
        missing = set(MEASUREMENT_FIELDS) - store.classification.of(MEASUREMENT).fields.keys()
        if missing:
            raise ConfigError(
                f"record_types.{MEASUREMENT} lacks field(s) {', '.join(sorted(missing))}, "
                "which ingestion writes"
            )
        self.store = store
        self.validator = validator
        self.metrics = metrics or IngestMetrics()
        self.quarantine = Quarantine(store)
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self._high_water: dict[str, int] | None = None
        self._commit_lock = threading.Lock()

    # -- one batch -------------------------------------------------------------------------

    def ingest(self, readings: Sequence[Reading]) -> IngestResult:
        """Validate and store ``readings`` in one transaction, then acknowledge each."""
        result = self.commit(readings)
        acknowledge(readings)
        return result

    def commit(self, readings: Sequence[Reading]) -> IngestResult:
        """:meth:`ingest` without the acknowledgements (the caller sends them after this).
        Commits are serialised: several sources may share one ingestor, and each batch must be
        validated against the high-water marks the previous one left."""
        with self._commit_lock:
            return self._commit(readings)

    def _commit(self, readings: Sequence[Reading]) -> IngestResult:
        started = time.perf_counter()
        backoff = self.retry_backoff_s
        for attempt in range(self.retries + 1):
            try:
                # A retry validates again against the marks in the database: if the failed
                # attempt did commit after all, its messages are now duplicates, not doubles.
                marks = self.high_water() if attempt == 0 else self._load_high_water()
                outcomes, advanced = self.validator.validate_batch(readings, marks)
                record_ids = self._write(readings, outcomes, advanced)
                break
            except StoreError as exc:
                if attempt == self.retries:
                    raise StoreError(
                        f"a batch of {len(readings)} reading(s) could not be stored after "
                        f"{attempt + 1} attempts; none was acknowledged, so their sources will "
                        f"deliver them again: {exc}"
                    ) from exc
                log.warning("store failed (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.high_water().update(advanced)
        result = _result(outcomes, record_ids)
        self.metrics.record_batch(
            result.accepted, result.points, result.rejected, time.perf_counter() - started
        )
        return result

    def _write(
        self, readings: Sequence[Reading], outcomes: Sequence[Outcome], advanced: Mapping[str, int]
    ) -> tuple[str, ...]:
        inputs: list[RecordInput] = []
        entries: list[QuarantineEntry] = []
        for reading, outcome in zip(readings, outcomes, strict=True):
            if type(outcome) is Accepted:
                inputs.append(measurement_record(reading, outcome))
            else:
                assert isinstance(outcome, Rejection)
                entries.append(quarantine_entry(reading, outcome))
        with self.store.transaction() as connection:
            stored = self.store.write_records(connection, inputs)
            self.quarantine.write(connection, entries)
            _write_high_water(connection, advanced, now_us())
        return tuple(record.record_id for record in stored)

    # -- sequence high-water marks ---------------------------------------------------------

    def high_water(self) -> dict[str, int]:
        """Each device's highest accepted sequence number (loaded from the store once)."""
        if self._high_water is None:
            self._high_water = self._load_high_water()
        return self._high_water

    def _load_high_water(self) -> dict[str, int]:
        table = DEVICE_SEQUENCES
        with self.store.transaction() as connection:
            rows = connection.execute(select(table.c.device_id, table.c.last_seq)).all()
        self._high_water = {device: int(seq) for device, seq in rows}
        return self._high_water

    # -- a stream --------------------------------------------------------------------------

    async def run(self, source: AsyncIterable[Reading]) -> None:
        """Ingest ``source`` (a :class:`~node.oracles.source.Source`, or any async iterable of
        readings) until its iteration ends (or this task is cancelled).

        Readings are batched by size or delay; each batch is written in a worker thread, so the
        event loop keeps receiving meanwhile, and acknowledged on the event loop after its
        commit. A source error is raised after what arrived before it is stored; a store that
        stays down raises StoreError, with nothing of the failed batch acknowledged. The caller
        closes the source.
        """
        freeze_loaded_heap()
        batches = read_batches(source, self.max_batch, self.max_delay_s)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                await asyncio.to_thread(self.commit, batch)
                acknowledge(batch)


def freeze_loaded_heap() -> None:
    """Keep what is loaded by now (modules, settings, connections) out of full garbage
    collections, which would otherwise take a third of the time at tens of thousands of messages
    a second (every batch in flight holds many objects)."""
    gc.collect()
    gc.freeze()


async def read_batches(
    source: AsyncIterable[Reading], max_batch: int, max_delay_s: float
) -> AsyncGenerator[list[Reading], None]:
    """``source``'s readings in batches of ``max_batch``, or fewer once ``max_delay_s`` passed
    after a batch's first reading. A source error is raised after the readings before it."""
    queue: asyncio.Queue[Reading | _End] = asyncio.Queue(maxsize=4 * max_batch)
    receiver = asyncio.create_task(_receive(source, queue))
    try:
        while True:
            batch, end = await _next_batch(queue, max_batch, max_delay_s)
            if batch:
                yield batch
            if end is not None:
                if end.error is not None:
                    raise end.error
                return
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def _next_batch(
    queue: asyncio.Queue[Reading | _End], max_batch: int, max_delay_s: float
) -> tuple[list[Reading], _End | None]:
    first = await queue.get()
    if isinstance(first, _End):
        return [], first
    batch = [first]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_delay_s
    while len(batch) < max_batch:
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
        if isinstance(item, _End):
            return batch, item
        batch.append(item)
    return batch, None


async def _receive(source: AsyncIterable[Reading], queue: asyncio.Queue[Reading | _End]) -> None:
    error: Exception | None = None
    try:
        async for reading in source:
            await queue.put(reading)
    except Exception as exc:  # the source failed: what it delivered before is still stored
        error = exc
    await queue.put(_End(error))


def measurement_record(reading: Reading, accepted: Accepted) -> RecordInput:
    message = accepted.message
    fields: dict[str, Any] = {
        "device": message.device,
        "seq": message.seq,
        "sent_at": message.ts,
        "source": reading.source,
        "quality": accepted.quality,
        "points": [{"q": p[0], "v": p[1], "u": p[2]} for p in message.points],
    }
    if message.signature is not None:
        fields["signature"] = message.signature.hex()
        fields["signed_message"] = accepted.signed_message
    return RecordInput(MEASUREMENT, fields, message.ts_us)


def quarantine_entry(reading: Reading, rejection: Rejection) -> QuarantineEntry:
    device = rejection.device_id
    return QuarantineEntry(
        received_at_us=reading.received_at_us,
        source=reading.source[:MAX_SOURCE_CHARS],
        device_id=device[:MAX_DEVICE_CHARS] if device is not None else None,
        reason=rejection.reason.value,
        detail=rejection.detail,
        payload=reading.payload,
    )


def acknowledge(readings: Sequence[Reading]) -> None:
    """Tell each reading's source it is durable. A failed ack is logged, not raised: the source
    then redelivers the message, which is caught as a duplicate."""
    for reading in readings:
        try:
            reading.ack()
        except Exception as exc:
            log.warning("acknowledging a reading from %s failed: %s", reading.source, exc)


def _write_high_water(connection: Connection, marks: Mapping[str, int], now: int) -> None:
    if not marks:
        return
    mark = _PLACEHOLDERS[connection.dialect.paramstyle]
    connection.exec_driver_sql(
        f"INSERT INTO {DEVICE_SEQUENCES.name} (device_id, last_seq, updated_at_us) "
        f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (device_id) DO UPDATE SET "
        "last_seq = excluded.last_seq, updated_at_us = excluded.updated_at_us "
        f"WHERE {DEVICE_SEQUENCES.name}.last_seq < excluded.last_seq",
        [(device, seq, now) for device, seq in marks.items()],
    )


def _result(outcomes: Sequence[Outcome], record_ids: tuple[str, ...]) -> IngestResult:
    accepted = 0
    points = 0
    rejected: Counter[str] = Counter()
    for outcome in outcomes:
        if type(outcome) is Accepted:
            accepted += 1
            points += len(outcome.message.points)
        else:
            assert isinstance(outcome, Rejection)
            rejected[outcome.reason.value] += 1
    return IngestResult(accepted, points, MappingProxyType(dict(rejected)), record_ids)
