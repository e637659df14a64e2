"""Latency of the PLC actions against the coating-line PLC simulator on loopback.

The simulator (a real asyncua server) runs in a child process, with its own GIL, acknowledging
at once (``ack_delay_s = 0``, ``stop_ack_delay_s = 0``): what is measured is the protocol work,
not a simulated mechanical delay. This process measures, in one run:

- baseline: a bare asyncua client writing a Double (no timestamps) and reading a value back,
  two round trips, as the simplest write-and-confirm a client can do;
- compensation: ``apply_compensation`` (read AckId/RequestId, read Actual, write Setpoint, write
  RequestId, poll AckId with Actual until acknowledged), each with a new request id;
- line stop: ``stop_line`` (write Stop, write StopRequestId, poll StopAckId with Running), the
  line restarted between samples (not timed).

The client uses the default PlcSettings (first ack poll after 1 ms, doubling up to 50 ms).

Run: ``.venv/bin/python bench/plc_actions.py [--samples 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import ua
from asyncua.client.client import Client

from node.chain.localnode import free_port
from node.control.actions.plc import Compensation, apply_compensation, stop_line
from node.control.actions.plc_client import PlcClient
from node.oracles.simulators.coating_plc import (
    BLADE_ACTUAL,
    BLADE_SETPOINT,
    CoatingLinePlc,
    PlcConfig,
)
from node.settings import PlcSettings

WARM_UP = 20


# -- the PLC (child process) ---------------------------------------------------------------------


def serve(port: int, pipe: Connection) -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    asyncio.run(_serve(port, pipe))


async def _serve(port: int, pipe: Connection) -> None:
    config = PlcConfig(port=port, ack_delay_s=0.0, stop_ack_delay_s=0.0, blade_max_mm=1e9)
    async with CoatingLinePlc(config) as plc:
        pipe.send(plc.node_id(BLADE_SETPOINT).split(";")[0])
        while True:
            if not pipe.poll():
                await asyncio.sleep(0.001)
                continue
            message = pipe.recv()
            if message == "restart":
                await plc.restart()
                pipe.send("restarted")
            elif message == "stop":
                pipe.send(plc.snapshot().acks)
                return


# -- the measurements ----------------------------------------------------------------------------


async def baseline(url: str, namespace: str, samples: int) -> list[float]:
    async with Client(url) as client:
        setpoint = client.get_node(f"{namespace};s={BLADE_SETPOINT}")
        actual = client.get_node(f"{namespace};s={BLADE_ACTUAL}")
        out = []
        for n in range(samples + WARM_UP):
            started = time.perf_counter()
            await setpoint.write_value(
                ua.DataValue(ua.Variant(1.0 + n * 1e-6, ua.VariantType.Double))
            )
            await actual.read_value()
            if n >= WARM_UP:
                out.append((time.perf_counter() - started) * 1e3)
        return out


async def compensations(url: str, samples: int) -> tuple[list[float], list[float]]:
    total, acks = [], []
    async with PlcClient(PlcSettings(url=url)) as client:
        for n in range(samples + WARM_UP):
            command = Compensation(1000 + n, "coater", "blade_pressure", 0.0001, "")
            started = time.perf_counter()
            result = await apply_compensation(client, command)
            if n >= WARM_UP:
                total.append((time.perf_counter() - started) * 1e3)
                acks.append(result.ack_ms)
    return total, acks


async def stops(url: str, samples: int, pipe: Connection) -> list[float]:
    out = []
    async with PlcClient(PlcSettings(url=url)) as client:
        for n in range(samples + WARM_UP):
            started = time.perf_counter()
            result = await stop_line(client, 5000 + n, "bench")
            elapsed = (time.perf_counter() - started) * 1e3
            assert result.stopped
            if n >= WARM_UP:
                out.append(elapsed)
            pipe.send("restart")
            await asyncio.to_thread(pipe.recv)
    return out


def describe(name: str, values: list[float], base: float | None = None) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    ratio = "" if base is None else f"  ({p50 / base:.1f}x baseline p50)"
    return (
        f"  {name:<34} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
        f"mean {statistics.fmean(ordered):6.2f} ms  n={len(ordered)}{ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="measured samples of each")
    args = parser.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)

    port = free_port()
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve, args=(port, theirs), daemon=True)
    child.start()
    namespace = ours.recv()
    url = f"opc.tcp://127.0.0.1:{port}"
    print(f"coating-line PLC simulator (pid {child.pid}) at {url}, acknowledging at once")

    base = asyncio.run(baseline(url, namespace, args.samples))
    total, acks = asyncio.run(compensations(url, args.samples))
    stop = asyncio.run(stops(url, args.samples, ours))
    ours.send("stop")
    acknowledged = ours.recv()
    child.join(timeout=10)

    base_p50 = statistics.median(base)
    print(f"latency over loopback ({args.samples} samples each, after {WARM_UP} warm-up):")
    print(describe("bare asyncua write + read", base))
    print(describe("compensation handshake (total)", total, base_p50))
    print(describe("  of which write to ack seen", acks, base_p50))
    print(describe("line stop (stop_line)", stop, base_p50))
    print(f"PLC acknowledged {acknowledged} compensations")


if __name__ == "__main__":
    main()
