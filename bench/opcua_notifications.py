"""OPC UA data-change notifications per second through OpcUaSource, next to bare asyncua.

A plain asyncua server runs in a child process (its own GIL) with ``--nodes`` Double variables and
rewrites every one of them as fast as it can (or ``--rate`` times a second), each value with a
fresh SourceTimestamp. This process then alternates rounds of two subscribers to all of them, with
the same subscription parameters (publishing interval, queue size 100, sampling interval 0):

- baseline: an asyncua Client whose subscription handler only counts its
  ``datachange_notification`` calls;
- source: ``OpcUaSource``, counting the readings (v1 device-message payloads) that come out of
  ``async for``.

Each round reports notifications/s and this process's CPU time per notification. On a small
machine the server, which writes and encodes every value in Python, is often the bottleneck: then
both subscribers see about the same rate, and the CPU per notification shows what turning a
notification into a reading costs.
Run: ``.venv/bin/python bench/opcua_notifications.py [--nodes 500] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import time
from datetime import UTC
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import ua
from asyncua.client.client import Client
from asyncua.server.server import Server

from node.chain.localnode import free_port
from node.oracles.opcua_source import OpcUaSource
from node.settings import OpcUaNode, OpcUaSettings

NAMESPACE = "urn:qnode:bench"
PUBLISHING_INTERVAL_MS = 50
QUEUE_SIZE = 100


def node_name(index: int) -> str:
    return f"Sensor{index:04d}.Value"


# -- the server (child process) ------------------------------------------------------------------


def serve(port: int, nodes: int, rate_hz: float, pipe: Connection) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    asyncio.run(_serve(port, nodes, rate_hz, pipe))


async def _serve(port: int, nodes: int, rate_hz: float, pipe: Connection) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    namespace = await server.register_namespace(NAMESPACE)
    folder = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Bench"), namespace), "Bench"
    )
    node_ids = []
    for index in range(nodes):
        node_id = ua.NodeId(ua.String(node_name(index)), ua.Int16(namespace))
        await folder.add_variable(node_id, node_name(index), ua.Variant(0.0, ua.VariantType.Double))
        node_ids.append(node_id)
    async with server:
        pipe.send(namespace)
        written = 0
        started = time.perf_counter()
        value = 0.0
        while not pipe.poll():
            round_started = time.perf_counter()
            now = ua.DateTime.now(UTC)
            value += 1.0
            for node_id in node_ids:
                variant = ua.Variant(value, ua.VariantType.Double)
                data = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
                await server.write_attribute_value(node_id, data)
            written += len(node_ids)
            pause = 0.0 if rate_hz <= 0 else 1 / rate_hz - (time.perf_counter() - round_started)
            await asyncio.sleep(max(0.0, pause))
        pipe.send(written / (time.perf_counter() - started))


# -- the subscribers -----------------------------------------------------------------------------


class Measured(NamedTuple):
    per_second: float
    cpu_us: float
    """This process's CPU time per notification, µs."""


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.count += 1


async def baseline_round(url: str, node_ids: list[str], seconds: float) -> Measured:
    client = Client(url)
    await client.connect()
    try:
        handler = CountingHandler()
        subscription = await client.create_subscription(PUBLISHING_INTERVAL_MS, handler)
        nodes = [client.get_node(node_id) for node_id in node_ids]
        await subscription.subscribe_data_change(
            nodes, queuesize=QUEUE_SIZE, sampling_interval=ua.Double(0.0)
        )
        await asyncio.sleep(1.0)  # warm-up: initial values, queues filled
        before, started, cpu = handler.count, time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        count = handler.count - before
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return Measured(count / elapsed, cpu / max(count, 1) * 1e6)
    finally:
        await client.disconnect()


async def source_round(url: str, node_ids: list[str], seconds: float) -> Measured:
    settings = OpcUaSettings(
        url=url,
        publishing_interval_ms=PUBLISHING_INTERVAL_MS,
        nodes=tuple(
            OpcUaNode(node_id=node_id, device=f"sensor-{i}", quantity="temperature", unit="CEL")
            for i, node_id in enumerate(node_ids)
        ),
    )
    source = OpcUaSource(settings)
    count = 0
    warm_until = time.perf_counter() + 1.0
    started = end = cpu = 0.0
    try:
        async for _reading in source:
            now = time.perf_counter()
            if not started:
                if now < warm_until:
                    continue
                started, end, cpu = now, now + seconds, time.process_time()
            count += 1
            if now >= end:
                break
    finally:
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        await source.close()
    return Measured(count / elapsed, cpu / max(count, 1) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500, help="variables on the server")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="writes/s per variable; 0: flat out"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each subscriber")
    args = parser.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)

    port = free_port()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve, args=(port, args.nodes, args.rate, theirs), daemon=True)
    child.start()
    namespace = ours.recv()
    url = f"opc.tcp://127.0.0.1:{port}"
    node_ids = [f"ns={namespace};s={node_name(i)}" for i in range(args.nodes)]
    print(f"asyncua server (pid {child.pid}) at {url}: {args.nodes} variables, ", end="")
    print("flat out" if args.rate <= 0 else f"{args.rate:g} writes/s each")

    baseline: list[Measured] = []
    source: list[Measured] = []
    for round_number in range(1, args.rounds + 1):
        baseline.append(asyncio.run(baseline_round(url, node_ids, args.seconds)))
        source.append(asyncio.run(source_round(url, node_ids, args.seconds)))
        print(
            f"round {round_number}: bare asyncua {baseline[-1].per_second:,.0f}/s "
            f"({baseline[-1].cpu_us:.1f} µs CPU each), OpcUaSource {source[-1].per_second:,.0f}/s "
            f"({source[-1].cpu_us:.1f} µs CPU each)"
        )
    ours.send("stop")
    written = ours.recv()
    child.join(timeout=10)

    rate = [statistics.median(m.per_second for m in runs) for runs in (baseline, source)]
    cpu = [statistics.median(m.cpu_us for m in runs) for runs in (baseline, source)]
    print(f"server wrote {written:,.0f} values/s")
    print(f"median of {args.rounds} rounds:")
    print(f"  bare asyncua handler: {rate[0]:,.0f} notifications/s, {cpu[0]:.1f} µs CPU each")
    print(f"  OpcUaSource:          {rate[1]:,.0f} readings/s, {cpu[1]:.1f} µs CPU each")
    print(f"ratio OpcUaSource / bare asyncua: throughput {rate[1] / rate[0]:.2f}, ", end="")
    print(f"CPU per notification {cpu[1] / cpu[0]:.2f}")


if __name__ == "__main__":
    main()
