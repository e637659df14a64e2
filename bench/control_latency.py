"""Closed-loop latency, both paths, p50/p99 (2 cores; everything on loopback, in this process
except Hardhat and Mosquitto).

* Edge fast path (red line): an MQTT reading of a cold store at -17 °C, published -> the node's
  MQTT source -> validated and checked against the red lines before batching -> the coating-line
  PLC simulator's Line.Stop handshake acknowledged. Measured from just before the publish to the
  acknowledgement. Target p99 <= 20 ms.
* Contract-mediated path: three subgroups of five thickness readings with a CV over 0.8 %,
  published -> ingested (batched, stored) -> the rule fires -> decision and request committed ->
  LineControl.requestCompensation mined -> CompensationRequested seen by the event consumer ->
  the PLC setpoint written and acknowledged, its action committed done. Measured from just
  before the last reading's publish to that commit. Targets p99 <= 250 ms on an automining
  chain; <= block time + 100 ms on a chain mining a block a second.
* Baseline, same run: the MQTT transport alone (publish -> a bare paho subscriber's callback).

Run: ``.venv/bin/python bench/control_latency.py [--samples N] [--interval-samples N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.chain.localnode import LocalChain, free_port
from node.control.deploy import register_lines
from node.control.outbox import ActionOutbox, ActionStatus
from node.control.service import ControlService
from node.oracles.messages import encode_message
from node.oracles.simulators.coating_plc import CoatingLinePlc, PlcConfig
from node.oracles.simulators.device_fleet import FleetPublisher
from node.service import NodeService, ServiceOptions, configured_sources
from tests.control.plant import build_plant
from tests.mqtt_broker import MosquittoBroker

FAST_TARGET_MS = 20.0
CONTRACT_TARGET_MS = 250.0
BLOCK_MS = 1000
RULES = """
version: 1
quantities: {thickness: 4H, temperature: CEL}
rules:
  - id: coating-cv
    when:
      cv: {quantity: thickness, devices: "coater-gauge-*", subgroup_size: 5,
           above: 0.8 P1, consecutive: 3}
    then:
      compensate: {line: coater, parameter: blade_pressure, delta: -0.05 MMT,
                   bounds: {min: -0.10 MMT, max: 0.10 MMT}}
  - id: cold-chain
    when:
      reading: {quantity: temperature, devices: "cold-store-*", at_or_above: -18 CEL}
    then:
      stop_line: {line: packing, reason: "cold chain at {device}"}
"""
HIGH_CV = (80.0, 84.0, 88.0, 82.0, 86.0)  # CV about 3.8 %
LOW_CV = (85.0, 85.1, 85.0, 84.9, 85.0)  # CV about 0.08 %


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):7.2f} ms  p99 {p99:7.2f} ms  max {ordered[-1]:7.2f} ms"
        f"  (n={len(ordered)})"
    )


class Sensors:
    """Publishes device messages (QoS 1) with increasing sequence numbers per device."""

    def __init__(self, broker: str, prefix: str) -> None:
        self.prefix = prefix
        self.publisher = FleetPublisher(broker, f"bench-sensors-{uuid.uuid4().hex[:6]}")
        self.publisher.__enter__()
        self.seq: dict[str, int] = {}

    def send(self, device: str, quantity: str, value: float, unit: str) -> float:
        """Publish one reading; the wall clock (µs) just before the publish."""
        seq = self.seq.get(device, 0)
        self.seq[device] = seq + 1
        message = {
            "v": 1,
            "device": device,
            "seq": seq,
            "ts": datetime.now(UTC).isoformat(),
            "points": [{"q": quantity, "v": value, "u": unit}],
        }
        payload = encode_message(message)
        started = time.time_ns() / 1000
        self.publisher.send(f"{self.prefix}/{device}/data", payload)
        return started

    def close(self) -> None:
        self.publisher.flush(30)
        self.publisher.__exit__(None, None, None)


def transport_baseline(broker: MosquittoBroker, samples: int) -> list[float]:
    """Publish -> a bare paho subscriber's on_message, in ms."""
    topic = f"bench/{uuid.uuid4().hex[:6]}/ping"
    received: dict[bytes, float] = {}
    arrived = threading.Event()

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        received[bytes(message.payload)] = time.time_ns() / 1000
        arrived.set()

    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{topic[6:12]}")
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.subscribe(topic, qos=1)
    subscriber.loop_start()
    time.sleep(0.3)
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{topic[6:12]}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    latencies = []
    for n in range(samples):
        arrived.clear()
        payload = b"%d" % n
        started = time.time_ns() / 1000
        publisher.publish(topic, payload, qos=1)
        arrived.wait(5)
        latencies.append((received[payload] - started) / 1e3)
        time.sleep(0.005)
    for client in (publisher, subscriber):
        client.disconnect()
        client.loop_stop()
    return latencies


async def measure(
    broker: MosquittoBroker, rpc_url: str, root: Path, samples: int, fast_samples: int
) -> tuple[list[float], list[float]]:
    plc = CoatingLinePlc(
        PlcConfig(gauge_interval_s=3600.0, ack_delay_s=0.0, blade_min_mm=-1000.0, seed=1)
    )
    await plc.start()
    plant = build_plant(root, rpc_url)
    prefix = f"bench{uuid.uuid4().hex[:6]}/devices"
    try:
        aster = plant.configure(
            "aster",
            {
                "oracles": {
                    "quantities": {
                        "thickness": {"unit": "4H", "min": 0, "max": 1000},
                        "temperature": {"unit": "CEL", "min": -60, "max": 60},
                    },
                    "devices": {"coater-gauge-1": {}, "cold-store-1": {}},
                    "mqtt": {
                        "url": broker.url,
                        "client_id": f"bench-node-{prefix[5:11]}",
                        "topics": {f"{prefix}/+/data": "{2}"},
                    },
                },
                "control": {
                    "rules_file": str(root / "rules.yaml"),
                    "plc": {"url": plc.endpoint},
                    "event_poll_s": 0.02,
                    "action_poll_s": 0.05,
                    "lines": {
                        "coater": {
                            "uri": "https://id.example.com/8004/0950600013435COATER01",
                            "parameters": {
                                "blade_pressure": {
                                    "unit": "MMT",
                                    "decimals": 3,
                                    "baseline": 1.0,
                                    "min_delta": -0.1,
                                    "max_delta": 0.1,
                                    "max_abs_offset": 1000.0,
                                }
                            },
                        },
                        "packing": {"uri": "https://id.example.com/8004/0950600013435PACK01"},
                    },
                },
            },
        )
        register_lines(aster)
        control = ControlService(aster)
        sources = configured_sources(aster)
        service = NodeService(
            aster, sources, ServiceOptions(chain_interval_s=3600), control=control
        )
        task = asyncio.create_task(service.run())
        try:
            await sources[0].connect()  # type: ignore[attr-defined]
            await asyncio.sleep(0.5)
            sensors = Sensors(broker.url, prefix)
            try:
                fast = await fast_path(control, plc, sensors, fast_samples)
                contract = await contract_path(aster, sensors, samples)
            finally:
                sensors.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return fast, contract
    finally:
        plant.close()
        await plc.stop()


async def fast_path(
    control: ControlService, plc: CoatingLinePlc, sensors: Sensors, samples: int
) -> list[float]:
    latencies = []
    for _ in range(samples):
        before = len(control.fast_stops)
        started = sensors.send("cold-store-1", "temperature", -17.0, "CEL")
        while len(control.fast_stops) == before:
            await asyncio.sleep(0.0005)
        latencies.append((control.fast_stops[-1].stopped_at_us - started) / 1e3)
        sensors.send("cold-store-1", "temperature", -24.0, "CEL")  # back under: re-armed
        await asyncio.sleep(0.3)  # the stored readings' decision and its records settle
        await plc.restart()
    return latencies


async def contract_path(aster: Any, sensors: Sensors, samples: int) -> list[float]:
    outbox = ActionOutbox(aster.store())
    latencies = []
    for n in range(1, samples + 1):
        for value in LOW_CV:  # one subgroup within the limit re-arms the rule
            sensors.send("coater-gauge-1", "thickness", value, "4H")
        await asyncio.sleep(0.1)
        started = 0.0
        for _ in range(3):
            for value in HIGH_CV:
                started = sensors.send("coater-gauge-1", "thickness", value, "4H")
        key = f"plc_compensation:{n}"
        await _done(outbox, key)
        done_at = await asyncio.to_thread(_updated_at, aster.store(), key)
        latencies.append((done_at - started) / 1e3)
        # LineControl keeps one request per parameter in flight: the next sample starts once
        # this one's acknowledgement is on-chain, so that it measures one compensation alone.
        await _done(outbox, f"chain_compensation_ack:{n}")
    return latencies


async def _done(outbox: ActionOutbox, key: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        action = await asyncio.to_thread(outbox.get, key)
        if action is not None and action.status is ActionStatus.DONE:
            return
        if action is not None and action.status is ActionStatus.FAILED:
            raise RuntimeError(f"{key} failed: {action.last_error}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} did not complete")
        await asyncio.sleep(0.002)


def _updated_at(store: Any, key: str) -> int:
    from sqlalchemy import text

    with store.transaction() as connection:
        return int(
            connection.execute(
                text("SELECT updated_at_us FROM control_actions WHERE key = :k"), {"k": key}
            ).scalar_one()
        )


def run_chain(mining: str, samples: int, fast_samples: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="qnode-latency-") as tmp:
        root = Path(tmp)
        rules = root / "rules.yaml"
        rules.write_text(RULES, encoding="utf-8")
        chain = LocalChain(root / "chain")
        status = chain.start(port=free_port(), mining=mining, interval_ms=BLOCK_MS)
        broker = MosquittoBroker(root / "broker", extra_config=("set_tcp_nodelay true",))
        broker.start()
        try:
            assert status.url is not None
            return asyncio.run(measure(broker, status.url, root, samples, fast_samples))
        finally:
            broker.stop()
            chain.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="contract path, automine")
    parser.add_argument("--fast-samples", type=int, default=200, help="red-line stops")
    parser.add_argument("--interval-samples", type=int, default=20, help="1 s blocks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qnode-latency-broker-") as tmp:
        broker = MosquittoBroker(Path(tmp), extra_config=("set_tcp_nodelay true",))
        broker.start()
        try:
            baseline = transport_baseline(broker, 200)
        finally:
            broker.stop()
    print(f"baseline: MQTT publish -> bare paho callback     {percentiles(baseline)}", flush=True)
    fast, automine = run_chain("auto", args.samples, args.fast_samples)
    print(f"fast path: reading -> PLC stop acknowledged      {percentiles(fast)}", flush=True)
    ratio = statistics.median(fast) / statistics.median(baseline)
    print(f"  (target p99 <= {FAST_TARGET_MS:g} ms; median {ratio:.1f}x the bare transport)")
    print(f"contract path, Hardhat automine               {percentiles(automine)}", flush=True)
    print(f"  (target p99 <= {CONTRACT_TARGET_MS:g} ms)")
    if args.interval_samples:
        _, interval = run_chain("interval", args.interval_samples, 1)
        print(f"contract path, 1 s blocks                     {percentiles(interval)}")
        print(f"  (target <= block time + 100 ms = {BLOCK_MS + 100} ms)")


if __name__ == "__main__":
    main()
