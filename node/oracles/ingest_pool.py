"""Ingestion on several cores: batches split by device across worker processes.

One process cannot both receive and store tens of thousands of messages a second: the MQTT
client's parsing and the validation and store code hold the same GIL. An :class:`IngestPool`
keeps receiving in this process and hands each batch's readings to ``workers`` processes, each
running an :class:`~node.oracles.ingest.Ingestor` on the member's store.

A device's readings always go to the same worker (a stable hash of the device id), so that each
device's sequence high-water mark has exactly one keeper and duplicates and replays are caught as
in a single process. A reading is acknowledged to its source only after every part of its batch
(and of every batch before it) is committed: a crash anywhere makes the source redeliver what was
not yet durable, which the store then refuses as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from node.errors import QnodeError, StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import Classification
from node.offchain.records import StoredRecord
from node.offchain.store import RecordListener, Store
from node.oracles.ingest import (
    MEASUREMENT,
    Ingestor,
    acknowledge,
    freeze_loaded_heap,
    read_batches,
)
from node.oracles.metrics import IngestMetrics
from node.oracles.source import Reading, SourceStatus
from node.oracles.validation import Validator
from node.settings import OracleSettings, Settings

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 2
"""Batches handed to the workers before the oldest must be committed: a worker always has the
next part waiting while it stores one."""
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_Row = tuple[str, bytes, int, str | None, SourceStatus, str]
"""A reading without its ack callback, as it crosses to a worker."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to open the member's store and validate (picklable)."""

    store_url: str
    record_types: Mapping[str, Mapping[str, str]]
    blob_path: Path
    oracles: OracleSettings
    always_private: tuple[str, ...] = ()
    max_blob_bytes: int | None = None
    retries: int = 5
    forward_quantities: frozenset[str] = frozenset()
    """Measurements with a point of one of these quantities are sent back to the node's process
    once stored (the rules there watch them); the rest stay in the worker."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerSpec:
        return cls(
            store_url=settings.store_url,
            record_types=settings.record_types,
            blob_path=settings.blob_path,
            oracles=settings.oracles,
            always_private=settings.privacy.always_private,
            max_blob_bytes=settings.store.max_blob_bytes,
        )

    def open_store(self) -> Store:
        classification = Classification.from_config(self.record_types, self.always_private)
        blobs = (
            BlobStore(self.blob_path)
            if self.max_blob_bytes is None
            else BlobStore(self.blob_path, self.max_blob_bytes)
        )
        return Store.open(self.store_url, classification, blobs)


@dataclass(frozen=True)
class _PartResult:
    accepted: int
    points: int
    rejected: dict[str, int] = field(default_factory=dict)
    forwarded: list[StoredRecord] = field(default_factory=list)


class IngestPool:
    """``async with IngestPool(spec, workers) as pool: await pool.run(source)``.

    ``run`` may be called for several sources at once; they share the workers.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        workers: int,
        metrics: IngestMetrics | None = None,
        max_batch: int = 2000,
        max_delay_s: float = 0.05,
        on_stored: RecordListener | None = None,
    ) -> None:
        """``on_stored`` hears of the records ``spec.forward_quantities`` selects, in this
        process, after they committed."""
        if workers < 1:
            raise QnodeError("an ingest pool needs at least one worker")
        self.spec = spec
        self.workers = workers
        self.metrics = metrics or IngestMetrics()
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.on_stored = on_stored
        self._channels: list[_WorkerChannel] = []

    async def __aenter__(self) -> IngestPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Migrate the store here (once), then start the workers and wait until each is ready."""
        await asyncio.to_thread(lambda: self.spec.open_store().close())
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for index in range(self.workers):
            self._channels.append(_WorkerChannel.start(context, self.spec, index, loop))
        await asyncio.gather(*(channel.ready for channel in self._channels))

    def worker_pids(self) -> list[int | None]:
        return [channel.process.pid for channel in self._channels]

    async def stop(self) -> None:
        channels, self._channels = self._channels, []
        await asyncio.gather(*(asyncio.to_thread(channel.stop) for channel in channels))

    async def run(self, source: AsyncIterable[Reading]) -> None:
        """Ingest ``source`` until its iteration ends, as :meth:`Ingestor.run` does: a source
        error is raised after what arrived before it is stored and acknowledged."""
        if not self._channels:
            raise QnodeError("IngestPool.run before start()")
        freeze_loaded_heap()
        slots = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        last: asyncio.Task[None] | None = None
        batches = read_batches(source, self.max_batch, self.max_delay_s)
        try:
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    await slots.acquire()
                    if last is not None and last.done():
                        last.result()  # a worker failed: stop receiving
                    parts = self._dispatch(batch)
                    last = asyncio.create_task(self._settle(batch, parts, last, slots))
        finally:
            if last is not None:
                await last

    def _dispatch(self, batch: list[Reading]) -> asyncio.Future[list[Any]]:
        parts: list[list[_Row]] = [[] for _ in self._channels]
        for reading in batch:
            parts[_worker_of(reading, len(parts))].append(
                (
                    reading.source,
                    reading.payload,
                    reading.received_at_us,
                    reading.device_id,
                    reading.status,
                    reading.status_detail,
                )
            )
        channels = zip(self._channels, parts, strict=True)
        return asyncio.gather(*(channel.submit(rows) for channel, rows in channels if rows))

    async def _settle(
        self,
        batch: list[Reading],
        parts: asyncio.Future[list[Any]],
        previous: asyncio.Task[None] | None,
        slots: asyncio.Semaphore,
    ) -> None:
        """Wait for the batch before (acks go out in batch order) and for this batch's parts,
        then count and acknowledge it."""
        started = time.perf_counter()
        try:
            if previous is not None:
                await previous
            results: list[_PartResult] = await parts
        except BaseException:
            parts.cancel()
            raise
        finally:
            slots.release()
        rejected: dict[str, int] = {}
        forwarded: list[StoredRecord] = []
        for result in results:
            forwarded.extend(result.forwarded)
            for reason, count in result.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
        if forwarded and self.on_stored is not None:
            self.on_stored(forwarded)
        self.metrics.record_batch(
            sum(r.accepted for r in results),
            sum(r.points for r in results),
            rejected,
            time.perf_counter() - started,
        )
        acknowledge(batch)


def _worker_of(reading: Reading, workers: int) -> int:
    if workers == 1:
        return 0
    key = reading.device_id or _payload_device(reading.payload) or reading.source
    return zlib.crc32(key.encode()) % workers


def _payload_device(payload: bytes) -> str | None:
    """The message's own device id, for a reading whose transport did not name one, so that it
    meets the same worker as the device's mapped readings (the validator rejects the rest)."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    device = document.get("device") if isinstance(document, dict) else None
    return device if isinstance(device, str) else None


class _WorkerChannel:
    """One worker process and the two threads that feed it and read its replies in order."""

    def __init__(
        self,
        index: int,
        process: multiprocessing.process.BaseProcess,
        connection: Connection,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.index = index
        self.process = process
        self.connection = connection
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self._requests: queue.SimpleQueue[list[_Row] | None] = queue.SimpleQueue()
        self._waiting: deque[asyncio.Future[_PartResult]] = deque()
        self._sender = threading.Thread(target=self._send_loop, daemon=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._failure: StoreError | None = None
        self._failing = threading.Lock()
        """Orders ``submit`` against the reader thread's ``_fail_all``: no future is left
        waiting on a worker that is gone."""
        self._reaping = threading.Lock()
        """Two threads reaping one child race: the loser's waitpid fails, and multiprocessing
        then reports the reaped child as still alive."""

    @classmethod
    def start(
        cls,
        context: Any,
        spec: WorkerSpec,
        index: int,
        loop: asyncio.AbstractEventLoop,
    ) -> _WorkerChannel:
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(spec, theirs), name=f"qnode-ingest-{index}", daemon=True
        )
        process.start()
        theirs.close()
        channel = cls(index, process, ours, loop)
        channel._sender.start()
        channel._reader.start()
        return channel

    def submit(self, rows: list[_Row]) -> asyncio.Future[_PartResult]:
        future: asyncio.Future[_PartResult] = self.loop.create_future()
        with self._failing:
            if self._failure is not None:
                future.set_exception(self._failure)
                return future
            self._waiting.append(future)
        self._requests.put(rows)
        return future

    def stop(self) -> None:
        self._requests.put(None)
        with self._reaping:
            self.process.join(STOP_TIMEOUT_S)
            if self.process.is_alive():
                log.warning("ingest worker %d did not stop; killing it", self.index)
                self.process.kill()
                self.process.join(STOP_TIMEOUT_S)
        self._sender.join(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        self.connection.close()

    def _send_loop(self) -> None:
        while True:
            rows = self._requests.get()
            try:
                self.connection.send(rows)
            except OSError:
                return  # the reader reports the dead worker
            if rows is None:
                return

    def _read_loop(self) -> None:
        while True:
            try:
                reply = self.connection.recv()
            except (EOFError, OSError):
                self._fail_all(self._exit_reason())
                return
            if reply[0] == "ready":
                self._resolve(self.ready, None)
            elif reply[0] == "ok":
                self._resolve(self._waiting.popleft(), _PartResult(*reply[1:]))
            else:
                self._fail_all(StoreError(f"ingest worker {self.index}: {reply[1]}"))
                return

    def _exit_reason(self) -> StoreError:
        with self._reaping:
            self.process.join(STOP_TIMEOUT_S)
        return StoreError(
            f"ingest worker {self.index} exited (code {self.process.exitcode}); the readings it "
            "held were not acknowledged and will be delivered again"
        )

    def _fail_all(self, error: StoreError) -> None:
        with self._failing:
            self._failure = error
            futures: list[asyncio.Future[Any]] = [self.ready, *self._waiting]
            self._waiting.clear()
        for future in futures:
            self.loop.call_soon_threadsafe(_fail, future, error)

    def _resolve(self, future: asyncio.Future[Any], value: Any) -> None:
        self.loop.call_soon_threadsafe(_set, future, value)


def _set(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: StoreError) -> None:
    if not future.done():
        future.set_exception(error)


def _worker_main(spec: WorkerSpec, connection: Connection) -> None:
    """A worker process: commit each part it is sent, reply with its counts, until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    forwarded: list[StoredRecord] = []
    try:
        store = spec.open_store()
        ingestor = Ingestor(store, Validator(spec.oracles), retries=spec.retries)
        if spec.forward_quantities:
            store.add_listener(partial(_collect, spec.forward_quantities, forwarded))
    except QnodeError as exc:
        connection.send(("error", str(exc)))
        return
    freeze_loaded_heap()
    connection.send(("ready",))
    try:
        while (rows := _receive_or_none(connection)) is not None:
            try:
                result = ingestor.commit([Reading(*row) for row in rows])
            except QnodeError as exc:
                connection.send(("error", str(exc)))
                return
            reply = ("ok", result.accepted, result.points, dict(result.rejected), forwarded[:])
            forwarded.clear()
            connection.send(reply)
    finally:
        store.close()


def _collect(
    quantities: frozenset[str], into: list[StoredRecord], records: Sequence[StoredRecord]
) -> None:
    for record in records:
        if record.record_type == MEASUREMENT and any(
            point.get("q") in quantities for point in record.public.get("points", ())
        ):
            into.append(record)


def _receive_or_none(connection: Connection) -> Any:
    try:
        return connection.recv()
    except EOFError:  # the parent is gone: what was not acknowledged comes again
        return None
