"""End-to-end MQTT ingest: broker -> MqttSource -> validation -> store (SQLite file).

Figures, in one run, for 23-point and 100-point messages:
* baseline: paho alone (QoS 1 subscription, auto-ack, nothing else) draining the broker;
* the node as it runs (MqttSource, validation, quarantine, store, acks after commit) draining
  the same messages, in messages/s and points/s, and its ratio to the baseline: once storing in
  its own process (``oracles.ingest_workers = 1``), once with ``--workers`` ingest worker
  processes (``IngestPool``, default 2: one per core).

Method: a Mosquitto of the bench's own on a free loopback port (queues, in-flight window and
memory unlimited). The subscribers' persistent sessions are created first; publisher processes
then load every message into the broker; only then does a subscriber connect and drain its queue,
so the measured process does nothing but receive, and the publishers' CPU is not in the figure.
Targets on 2 cores: >= 10,000 messages/s and >= 230,000 points/s.
Run: ``.venv/bin/python bench/mqtt_ingest.py`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.offchain.classification import DEFAULT_RECORD_TYPES
from node.oracles.ingest import Ingestor
from node.oracles.ingest_pool import IngestPool, WorkerSpec
from node.oracles.metrics import IngestMetrics
from node.oracles.mqtt_source import MqttSource
from node.oracles.simulators.device_fleet import DeviceFleet, FleetPublisher, FleetSpec
from node.oracles.validation import Validator
from node.settings import MqttSettings, OracleSettings
from tests.mqtt_broker import MosquittoBroker

TARGET_MESSAGES = 10_000
TARGET_POINTS = 230_000
RECEIVE_MAXIMUM = 20_000
LINGER_S = OracleSettings().ingest_linger_ms / 1000
"""The node's default: a batch waits this long for more readings after its first."""
IDLE_LIMIT_S = 5.0
"""Draining fails when nothing arrived for this long."""
TOPIC_PREFIX = "bench/devices"
BROKER_TUNING = (
    "max_queued_messages 0",
    "max_queued_bytes 0",
    "memory_limit 0",
    "max_inflight_messages 0",
    "set_tcp_nodelay true",
)


@dataclass(frozen=True)
class Scenario:
    points: int
    messages: int
    devices: int
    publishers: int
    sign: bool

    def spec(self, worker: int) -> FleetSpec:
        per_worker = self.devices // self.publishers
        return FleetSpec(
            devices=per_worker,
            gauge_share=0.0,
            first_device=1 + worker * per_worker,
            points=self.points,
            sign=self.sign,
            seed=worker,
            topic_prefix=TOPIC_PREFIX,
        )


# -- publishers (separate processes) -------------------------------------------------------------


def publish_worker(url: str, scenario: Scenario, worker: int, count: int) -> None:
    fleet = DeviceFleet(scenario.spec(worker))
    with FleetPublisher(url, f"bench-pub-{worker}-{uuid.uuid4().hex[:6]}", 20_000) as publisher:
        sent = 0
        while sent < count:
            batch = fleet.round()[: count - sent]
            sent += publisher.publish(batch)
            if publisher.client.want_write():
                time.sleep(0)
        publisher.flush(600)


def load_broker(url: str, scenario: Scenario) -> float:
    """Publish every message from ``scenario.publishers`` processes; the seconds it took."""
    started = time.perf_counter()
    per_worker = scenario.messages // scenario.publishers
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=publish_worker, args=(url, scenario, n, per_worker))
        for n in range(scenario.publishers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"publisher exited with {worker.exitcode}")
    return time.perf_counter() - started


# -- sessions and the paho baseline -------------------------------------------------------------


def _client(client_id: str, auto_ack: bool = True) -> paho.Client:
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=not auto_ack,
    )


def _connect_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return properties


def create_session(port: int, client_id: str, topic_filter: str) -> None:
    """Subscribe once with a persistent session, so the broker queues for it while it is away."""
    client = _client(client_id)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", port, clean_start=False, properties=_connect_properties())
    client.loop_start()
    client.subscribe(topic_filter, options=SubscribeOptions(qos=1))
    if not subscribed.wait(30):
        raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def paho_drain(port: int, client_id: str, topic_filter: str, count: int) -> float:
    """paho alone: receive ``count`` queued messages with auto-ack; seconds from first to last."""
    client = _client(client_id)
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(_client: Any, _userdata: Any, _message: Any) -> None:
        nonlocal received, first, last
        received += 1
        if received == 1:
            first = time.perf_counter()
        if received >= count:
            last = time.perf_counter()
            done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port, clean_start=False, properties=_connect_properties())
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"paho received only {received} of {count}")
    client.disconnect()
    client.loop_stop()
    return last - first


# -- the node ------------------------------------------------------------------------------------


def oracle_values(scenario: Scenario) -> dict[str, Any]:
    """The [oracles] settings accepting every publisher's devices."""
    values: dict[str, Any] = {"quantities": {}, "devices": {}}
    for worker in range(scenario.publishers):
        fragment = DeviceFleet(scenario.spec(worker)).oracle_settings()
        values["quantities"].update(fragment["quantities"])
        values["devices"].update(fragment["devices"])
    return values


def node_drain(
    port: int,
    client_id: str,
    topic_filter: str,
    count: int,
    directory: Path,
    oracles: Any,
    workers: int,
) -> tuple[float, int, int]:
    """The node's ingestion (in-process, or ``workers`` worker processes) into a fresh SQLite
    file until ``count`` readings are handled: (seconds from first to last, messages, points).
    The pool is started before the source connects, so its start-up is not timed."""
    spec = WorkerSpec(
        f"sqlite:///{directory / f'store-{workers}.db'}",
        DEFAULT_RECORD_TYPES,
        directory / "blobs",
        OracleSettings(**oracles),
    )
    metrics = IngestMetrics()
    settings = MqttSettings(
        url=f"mqtt://127.0.0.1:{port}",
        client_id=client_id,
        topics={topic_filter: "{2}"},
        receive_maximum=RECEIVE_MAXIMUM,
    )

    def handled() -> int:
        snapshot = metrics.snapshot()
        return snapshot.messages_accepted + snapshot.messages_rejected

    async def drain(ingest: Callable[[MqttSource], Awaitable[None]]) -> float:
        source = MqttSource(settings)
        task = asyncio.create_task(ingest(source))
        started = 0.0
        last_change, seen = time.perf_counter(), 0
        while handled() < count:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            if handled() != seen:
                if seen == 0:
                    started = now
                last_change, seen = now, handled()
            elif now - last_change > IDLE_LIMIT_S:
                raise RuntimeError(f"the node handled only {seen} of {count} messages")
        ended = time.perf_counter()
        await source.close()
        await task
        return ended - started

    async def run() -> float:
        if workers == 1:
            store = spec.open_store()
            try:
                ingestor = Ingestor(store, Validator(spec.oracles), metrics, max_delay_s=LINGER_S)
                return await drain(ingestor.run)
            finally:
                store.close()
        async with IngestPool(spec, workers, metrics, max_delay_s=LINGER_S) as pool:
            return await drain(pool.run)

    seconds = asyncio.run(run())
    snapshot = metrics.snapshot()
    if snapshot.messages_rejected:
        print(f"  (rejected: {dict(snapshot.rejected)})")
    return seconds, snapshot.messages_accepted, snapshot.points_accepted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="23-point messages")
    parser.add_argument("--messages-100", type=int, default=30_000, help="100-point messages")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--sign", action="store_true", help="ed25519-signed messages")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; mosquitto on loopback; SQLite file store", flush=True)
    with tempfile.TemporaryDirectory(prefix="qnode-mqtt-bench-") as tmp:
        for points, messages in ((23, args.messages), (100, args.messages_100)):
            scenario = Scenario(points, messages, args.devices, args.publishers, args.sign)
            run_scenario(Path(tmp) / f"p{points}", scenario, args.workers)


def run_scenario(directory: Path, scenario: Scenario, workers: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    broker = MosquittoBroker(directory / "broker", extra_config=BROKER_TUNING)
    broker.start()
    try:
        topic_filter = f"{TOPIC_PREFIX}/+/data"
        sessions = ("bench-paho", "bench-node-1", f"bench-node-{workers}")
        for client_id in sessions:
            create_session(broker.port, client_id, topic_filter)
        load_s = load_broker(broker.url, scenario)
        total = scenario.messages // scenario.publishers * scenario.publishers
        print(
            f"\n{scenario.points}-point messages: {total} loaded by {scenario.publishers} "
            f"publisher processes in {load_s:.1f} s",
            flush=True,
        )
        paho_rate = total / paho_drain(broker.port, "bench-paho", topic_filter, total)
        print(f"  baseline paho alone (auto-ack):  {paho_rate:10,.0f} msg/s", flush=True)
        oracles = oracle_values(scenario)
        for n, label in ((1, "node, ingest in-process"), (workers, f"node, {workers} workers")):
            seconds, messages, points = node_drain(
                broker.port, f"bench-node-{n}", topic_filter, total, directory, oracles, n
            )
            report(label, messages, points, seconds, paho_rate)
    finally:
        broker.stop()


def report(label: str, messages: int, points: int, seconds: float, baseline: float) -> None:
    rate = messages / seconds
    print(
        f"  {label:<32} {rate:10,.0f} msg/s {points / seconds:12,.0f} points/s "
        f"({rate / baseline:.2f} x paho alone; targets {TARGET_MESSAGES:,} msg/s, "
        f"{TARGET_POINTS:,} points/s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
