"""End to end: the device fleet -> a real Mosquitto -> MqttSource -> Ingestor -> the store.

Every valid (device, seq) is stored exactly once; every fault the fleet injects lands in the
quarantine with its reason; redeliveries and replays become ``duplicate``; nothing is lost, also
when the broker is stopped and restarted while the fleet publishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from node.errors import StoreError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from node.oracles.ingest import Ingestor
from node.oracles.ingest_pool import IngestPool, WorkerSpec
from node.oracles.metrics import IngestMetrics
from node.oracles.mqtt_source import MqttSource
from node.oracles.simulators.device_fleet import (
    EXPECTED_REASON,
    DeviceFleet,
    Fault,
    FleetMessage,
    FleetPublisher,
    FleetSpec,
    valid_keys,
)
from node.oracles.validation import Validator
from node.settings import MqttSettings, OracleSettings
from tests.mqtt_broker import MosquittoBroker

TIMEOUT = 60.0


class Pipeline:
    """A node's ingest path on one store: source, validator, ingestor (or a pool of ingest
    worker processes when ``workers`` > 1), running in a task."""

    def __init__(
        self,
        store_url: str,
        tmp_path: Path,
        fleet: DeviceFleet,
        broker: str,
        workers: int = 1,
        client_id: str | None = None,
    ) -> None:
        classification = Classification.from_config(DEFAULT_RECORD_TYPES)
        self.store = Store.open(store_url, classification, BlobStore(tmp_path / "blobs"))
        self.metrics = IngestMetrics()
        oracles = OracleSettings(**fleet.oracle_settings())
        self.ingestor = Ingestor(self.store, Validator(oracles), self.metrics, max_delay_s=0.02)
        self.workers = workers
        self.spec = WorkerSpec(store_url, DEFAULT_RECORD_TYPES, tmp_path / "blobs", oracles)
        settings = MqttSettings(
            url=broker,
            client_id=client_id or f"node-{uuid.uuid4().hex[:10]}",
            topics=fleet.mqtt_topics(),
            reconnect_max_s=2,
        )
        self.source = MqttSource(settings)

    async def ingest(self) -> None:
        """Ingest the source until it is closed."""
        if self.workers == 1:
            await self.ingestor.run(self.source)
            return
        async with IngestPool(self.spec, self.workers, self.metrics, max_delay_s=0.02) as pool:
            await pool.run(self.source)

    def handled(self) -> int:
        snapshot = self.metrics.snapshot()
        return snapshot.messages_accepted + snapshot.messages_rejected

    async def until_handled(self, count: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.handled() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.handled()} of {count} readings handled")
            await asyncio.sleep(0.05)

    def stored_keys(self) -> list[tuple[str, int]]:
        with self.store.transaction() as connection:
            rows = connection.execute(
                text("SELECT public_json FROM records WHERE record_type = 'measurement'")
            ).all()
        fields = [json.loads(row[0]) for row in rows]
        return [(f["device"], f["seq"]) for f in fields]

    def quarantine(self) -> list[tuple[str, str | None, bytes]]:
        with self.store.transaction() as connection:
            rows = connection.execute(
                text("SELECT reason, device_id, payload FROM quarantine ORDER BY id")
            ).all()
        return [(row[0], row[1], bytes(row[2])) for row in rows]


async def ingest_while(
    pipeline: Pipeline, publish: Callable[[], Sequence[FleetMessage]], expected: Callable[[], int]
) -> Sequence[FleetMessage]:
    """Run the pipeline, publish (in a thread), wait until ``expected()`` readings are handled."""
    await pipeline.source.connect()
    task = asyncio.create_task(pipeline.ingest())
    try:
        published = await asyncio.to_thread(publish)
        await pipeline.until_handled(expected())
        await asyncio.sleep(0.3)  # anything beyond the expected would show up now
    finally:
        await pipeline.source.close()
        await asyncio.wait_for(task, TIMEOUT)
        pipeline.store.close()
    return published


def publish_all(broker: str, messages: Sequence[FleetMessage]) -> Sequence[FleetMessage]:
    with FleetPublisher(broker, f"fleet-{uuid.uuid4().hex[:10]}") as publisher:
        publisher.publish(messages)
        publisher.flush(TIMEOUT)
    return messages


@pytest.mark.parametrize("workers", [1, 2])
def test_every_fault_class_is_quarantined_with_its_reason_and_ingestion_goes_on(
    mqtt_url: str, mqtt_prefix: str, store_url: str, tmp_path: Path, workers: int
) -> None:
    spec = FleetSpec(
        devices=4,
        faults=tuple(Fault),
        fault_rate=0.25,
        replay_burst=3,
        topic_prefix=f"{mqtt_prefix}/devices",
        seed=7,
    )
    fleet = DeviceFleet(spec)
    messages = fleet.messages(30)
    # faults first and last: after them, valid messages must still be stored
    messages += fleet.round()
    assert {m.fault for m in messages if m.fault} == set(Fault)
    pipeline = Pipeline(store_url, tmp_path, fleet, mqtt_url, workers)

    asyncio.run(
        ingest_while(pipeline, lambda: publish_all(mqtt_url, messages), lambda: len(messages))
    )

    stored = pipeline.stored_keys()
    assert sorted(stored) == sorted(valid_keys(messages))
    quarantined = pipeline.quarantine()
    expected = Counter(EXPECTED_REASON[m.fault] for m in messages if m.fault is not None)
    assert Counter(reason for reason, _, _ in quarantined) == expected
    faulty_payloads = sorted(m.payload for m in messages if m.fault is not None)
    assert sorted(payload for _, _, payload in quarantined) == faulty_payloads


@pytest.mark.parametrize("workers", [1, 2])
def test_a_replay_burst_is_quarantined_as_duplicates(
    mqtt_url: str, mqtt_prefix: str, tmp_path: Path, workers: int
) -> None:
    fleet = DeviceFleet(FleetSpec(devices=3, topic_prefix=f"{mqtt_prefix}/devices"))
    originals = fleet.messages(40)
    burst = [FleetMessage(m.topic, m.payload, m.device, m.seq, Fault.REPLAY) for m in originals]
    pipeline = Pipeline(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, fleet, mqtt_url, workers)

    def publish() -> Sequence[FleetMessage]:
        publish_all(mqtt_url, originals)
        return publish_all(mqtt_url, burst)

    asyncio.run(ingest_while(pipeline, publish, lambda: len(originals) + len(burst)))

    assert sorted(pipeline.stored_keys()) == sorted(valid_keys(originals))
    quarantined = pipeline.quarantine()
    assert [reason for reason, _, _ in quarantined] == ["duplicate"] * len(burst)
    assert sorted(p for _, _, p in quarantined) == sorted(m.payload for m in burst)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
    own_mqtt_broker: MosquittoBroker, mqtt_prefix: str, tmp_path: Path, workers: int
) -> None:
    broker = own_mqtt_broker
    fleet = DeviceFleet(FleetSpec(devices=4, topic_prefix=f"{mqtt_prefix}/devices"))
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    pipeline = Pipeline(store_url, tmp_path, fleet, broker.url, workers)
    published: list[FleetMessage] = []
    publishing_done = threading.Event()

    def publish() -> Sequence[FleetMessage]:
        stop = threading.Event()
        with FleetPublisher(broker.url, f"fleet-{mqtt_prefix}") as publisher:
            restarter = threading.Thread(target=restart_broker, args=(stop,))
            restarter.start()
            while not stop.is_set():
                batch = fleet.round()
                published.extend(batch)
                publisher.publish(batch)
                time.sleep(0.01)
            restarter.join()
            publisher.flush(TIMEOUT)
        publishing_done.set()
        return published

    def restart_broker(stop: threading.Event) -> None:
        time.sleep(1.0)
        broker.stop()
        time.sleep(1.0)
        broker.start()
        time.sleep(1.5)
        stop.set()

    def expected() -> int:
        return len(published) if publishing_done.is_set() else 10**9

    async def scenario() -> None:
        await pipeline.source.connect()
        task = asyncio.create_task(pipeline.ingest())
        try:
            await asyncio.to_thread(publish)
            want = valid_keys(published)
            deadline = time.monotonic() + TIMEOUT
            while len(set(pipeline.stored_keys())) < len(want):
                assert time.monotonic() < deadline, "not every message was stored"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            connections = pipeline.source.connections
        finally:
            await pipeline.source.close()
            await asyncio.wait_for(task, TIMEOUT)
        assert connections >= 2, "the source should have reconnected"

    asyncio.run(scenario())

    stored = pipeline.stored_keys()
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert set(stored) == valid_keys(published)
    assert {reason for reason, _, _ in pipeline.quarantine()} <= {"duplicate"}
    pipeline.store.close()
    del expected


def test_a_killed_ingest_worker_stops_the_run_and_a_restart_loses_nothing(
    mqtt_url: str, mqtt_prefix: str, tmp_path: Path
) -> None:
    """SIGKILL of one worker mid-stream: the run fails with a clear StoreError; a new pool on the
    same MQTT session gets every unacknowledged message again; each is stored exactly once."""
    fleet = DeviceFleet(FleetSpec(devices=6, topic_prefix=f"{mqtt_prefix}/devices"))
    messages = fleet.messages(150)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    client_id = f"{mqtt_prefix}-node"

    async def until_killed() -> None:
        pipeline = Pipeline(store_url, tmp_path, fleet, mqtt_url, 2, client_id)
        await pipeline.source.connect()
        async with IngestPool(pipeline.spec, 2, pipeline.metrics, max_batch=50) as pool:
            task = asyncio.create_task(pool.run(pipeline.source))
            publisher = asyncio.create_task(asyncio.to_thread(publish_all, mqtt_url, messages))
            while pipeline.handled() == 0:
                await asyncio.sleep(0.01)
            os.kill(pool.worker_pids()[0], signal.SIGKILL)
            with pytest.raises(StoreError, match=r"ingest worker 0 exited \(code -9\)"):
                await asyncio.wait_for(task, TIMEOUT)
            await publisher
        await pipeline.source.close()
        pipeline.store.close()

    asyncio.run(until_killed())
    restarted = Pipeline(store_url, tmp_path, fleet, mqtt_url, 2, client_id)
    want = valid_keys(messages)

    async def after_restart() -> None:
        task = asyncio.create_task(restarted.ingest())
        try:
            deadline = time.monotonic() + TIMEOUT
            while set(restarted.stored_keys()) != want:
                assert time.monotonic() < deadline, "not every message was stored"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
        finally:
            await restarted.source.close()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(after_restart())
    stored = restarted.stored_keys()
    assert len(stored) == len(set(stored)) == len(messages), "a message was lost or stored twice"
    assert {reason for reason, _, _ in restarted.quarantine()} <= {"duplicate"}
    restarted.store.close()


def test_the_pool_sends_watched_measurements_back_once_stored(
    mqtt_url: str, mqtt_prefix: str, tmp_path: Path
) -> None:
    """Rules in the node's process see the measurements they watch, stored by a worker."""
    fleet = DeviceFleet(FleetSpec(devices=4, topic_prefix=f"{mqtt_prefix}/devices"))
    messages = fleet.messages(20)
    pipeline = Pipeline(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, fleet, mqtt_url, 2)
    heard: list[str] = []
    watched = frozenset({"dimension"})

    async def scenario() -> None:
        await pipeline.source.connect()
        spec = dataclasses.replace(pipeline.spec, forward_quantities=watched)
        async with IngestPool(
            spec,
            2,
            pipeline.metrics,
            max_delay_s=0.02,
            on_stored=lambda rs: heard.extend(r.record_id for r in rs),
        ) as pool:
            task = asyncio.create_task(pool.run(pipeline.source))
            await asyncio.to_thread(publish_all, mqtt_url, messages)
            await pipeline.until_handled(len(messages))
            await pipeline.source.close()
            await asyncio.wait_for(task, TIMEOUT)

    asyncio.run(scenario())
    with pipeline.store.transaction() as connection:
        rows = connection.execute(
            text("SELECT record_id, public_json FROM records WHERE record_type = 'measurement'")
        ).all()
    expected = [
        row[0] for row in rows if any(p["q"] in watched for p in json.loads(row[1])["points"])
    ]
    assert expected and sorted(heard) == sorted(expected)
    pipeline.store.close()
