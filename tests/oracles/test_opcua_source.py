"""OpcUaSource against a real asyncua server (the coating-line PLC simulator) on loopback."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from node.chain.localnode import free_port
from node.errors import SourceError
from node.oracles.messages import parse_message
from node.oracles.opcua_source import OpcUaSource
from node.oracles.simulators.coating_plc import (
    NAMESPACE,
    OVEN_TEMPERATURE,
    CoatingLinePlc,
    Fault,
    PlcConfig,
    generate_certificate,
)
from node.oracles.source import Reading, SourceStatus
from node.settings import OpcUaNode, OpcUaSettings

FAST_PLC = PlcConfig(gauge_interval_s=0.05, oven_interval_s=0.1, seed=7)
FAST_SOURCE: dict[str, Any] = {
    "publishing_interval_ms": 20,
    "watchdog_s": 0.2,
    "reconnect_min_s": 0.05,
    "reconnect_max_s": 0.5,
    "request_timeout_s": 2.0,
}
WAIT_S = 20.0


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


class Collector:
    """Iterates a source in a background task and keeps every reading (or the error)."""

    def __init__(self, source: OpcUaSource) -> None:
        self.source = source
        self.readings: list[Reading] = []
        self.error: SourceError | None = None
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for reading in self.source:
                self.readings.append(reading)
        except SourceError as exc:
            self.error = exc

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not condition():
            assert self.error is None, f"source failed while waiting for {what}: {self.error}"
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def quiet(self, seconds: float) -> None:
        """Until nothing has arrived for ``seconds``."""
        seen = -1
        while seen != len(self.readings):
            seen = len(self.readings)
            await asyncio.sleep(seconds)

    def of(self, device: str, start: int = 0) -> list[Reading]:
        return [r for r in self.readings[start:] if r.device_id == device]

    async def close(self) -> None:
        await self.source.close()
        await self._task


async def first_error(settings: OpcUaSettings) -> SourceError:
    collector = Collector(OpcUaSource(settings))
    try:
        await collector.until(lambda: collector.error is not None, "a SourceError")
    finally:
        await collector.close()
    assert collector.error is not None
    assert not collector.readings
    return collector.error


def message(reading: Reading) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(reading.payload)
    return document


def test_values_arrive_as_v1_messages_mapped_to_device_quantity_and_unit() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            settings = plc.opcua_settings(**FAST_SOURCE)
            # One node by namespace URI instead of index: resolved after connecting.
            oven = plc.node_settings(OVEN_TEMPERATURE)
            by_uri = oven.model_copy(update={"node_id": f"nsu={NAMESPACE};s={OVEN_TEMPERATURE}"})
            nodes = tuple(by_uri if n.node_id == oven.node_id else n for n in settings.nodes)
            settings = settings.model_copy(update={"nodes": nodes})
            collector = Collector(OpcUaSource(settings))
            try:
                await collector.until(
                    lambda: (
                        all(len(collector.of(node.device)) >= 3 for node in nodes[:-1])
                        and collector.of("coater-blade-1")
                    ),
                    "readings from every sensor",
                )
            finally:
                await collector.close()

        for node in nodes:
            readings = collector.of(node.device)
            for reading in readings:
                assert reading.status is SourceStatus.GOOD
                assert reading.status_detail == "Good"
                assert reading.source == f"{plc.endpoint}#{node.node_id}"
                parsed = parse_message(reading.payload, 4096, 10)
                assert parsed.device == node.device
                assert parsed.seq == parsed.ts_us  # seq is the SourceTimestamp in µs
                assert parsed.ts.endswith("+00:00")
                [point] = parsed.points
                assert (point.quantity, point.unit) == (node.quantity, node.unit)
                assert math.isfinite(point.value)
            seqs = [parse_message(r.payload, 4096, 10).seq for r in readings]
            assert seqs == sorted(set(seqs)), f"{node.device}: seq not strictly increasing"
        thickness = [message(r)["points"][0]["v"] for r in collector.of("coater-gauge-1")[1:]]
        assert all(70 < value < 100 for value in thickness)

    run(scenario)


def test_bad_uncertain_and_nan_values_arrive_with_their_status() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            collector = Collector(OpcUaSource(plc.opcua_settings(**FAST_SOURCE)))
            try:
                await collector.until(lambda: collector.of("coater-gauge-3"), "first values")
                plc.inject_fault(Fault.BAD, "Gauge1")
                plc.inject_fault(Fault.UNCERTAIN, "Gauge2")
                plc.inject_fault(Fault.NAN, "Gauge3")
                start = len(collector.readings)

                def faulted() -> bool:
                    return (
                        any(r.status is SourceStatus.BAD for r in collector.of("coater-gauge-1"))
                        and any(r.status_detail.startswith("Uncertain") for r in collector.readings)
                        and any(b"NaN" in r.payload for r in collector.of("coater-gauge-3", start))
                    )

                await collector.until(faulted, "faulted values")
            finally:
                await collector.close()

        bad = next(r for r in collector.of("coater-gauge-1", start) if r.status is SourceStatus.BAD)
        assert bad.status_detail == "BadSensorFailure"
        # The server drops a Bad value's Variant: the payload carries what there is, for quarantine.
        assert message(bad)["points"] == [{"q": "thickness", "u": "4H", "v": None}]
        assert message(bad)["seq"] > 0
        uncertain = [
            r for r in collector.of("coater-gauge-2", start) if r.status is SourceStatus.UNCERTAIN
        ]
        assert uncertain[0].status_detail == "UncertainSensorNotAccurate"
        assert math.isfinite(message(uncertain[0])["points"][0]["v"])
        nan = next(r for r in collector.of("coater-gauge-3", start) if b"NaN" in r.payload)
        assert nan.status is SourceStatus.GOOD
        assert math.isnan(parse_message(nan.payload, 4096, 10).points[0].value)

    run(scenario)


def test_reconnects_after_a_server_restart_and_resent_values_keep_their_seq() -> None:
    async def scenario() -> None:
        plc = CoatingLinePlc(FAST_PLC)
        await plc.start()
        source = OpcUaSource(plc.opcua_settings(**FAST_SOURCE))
        collector = Collector(source)
        try:
            await collector.until(lambda: len(collector.of("coater-gauge-1")) >= 3, "values")
            plc.pause()
            await collector.quiet(0.5)  # everything sampled so far has arrived
            last = {r.device_id: message(r)["seq"] for r in collector.readings}
            await plc.stop()
            await asyncio.sleep(1.0)  # a few refused reconnect attempts
            restart = len(collector.readings)
            await plc.start()
            await collector.until(lambda: source.connections == 2, "the reconnect")
            await collector.until(
                lambda: all(collector.of(device, restart) for device in last),
                "the values re-sent on re-subscription",
            )
            for device, seq in last.items():
                assert message(collector.of(device, restart)[0])["seq"] == seq, device
            plc.resume()
            await collector.until(
                lambda: any(
                    message(r)["seq"] > last["coater-gauge-1"]
                    for r in collector.of("coater-gauge-1", restart)
                ),
                "new values after the restart",
            )
        finally:
            await collector.close()
            await plc.stop()

    run(scenario)


def test_an_unknown_node_id_is_a_source_error_naming_it() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            missing = OpcUaNode(
                node_id="ns=2;s=Gauge9.Thickness", device="g9", quantity="t", unit="4H"
            )
            settings = plc.opcua_settings(**FAST_SOURCE)
            settings = settings.model_copy(update={"nodes": (*settings.nodes, missing)})
            error = await first_error(settings)
            assert "ns=2;s=Gauge9.Thickness" in str(error)
            assert "BadNodeIdUnknown" in str(error)

            nowhere = missing.model_copy(update={"node_id": "nsu=urn:nowhere;s=X"})
            error = await first_error(settings.model_copy(update={"nodes": (nowhere,)}))
            assert "urn:nowhere" in str(error)

    run(scenario)


def test_a_malformed_node_id_or_no_nodes_is_refused_at_once() -> None:
    node = OpcUaNode(node_id="Gauge1", device="g1", quantity="thickness", unit="4H")
    with pytest.raises(SourceError, match="malformed NodeId 'Gauge1'"):
        OpcUaSource(OpcUaSettings(nodes=(node,)))
    with pytest.raises(SourceError, match="no OPC UA nodes"):
        OpcUaSource(OpcUaSettings())


def test_encrypted_session_with_a_trusted_certificate_and_refusals(tmp_path: Path) -> None:
    trusted = generate_certificate(tmp_path / "trusted", "client", "urn:qnode:test", server=False)
    stranger = generate_certificate(tmp_path / "stranger", "client", "urn:qnode:test", server=False)
    config = PlcConfig(
        gauge_interval_s=0.05,
        security_modes=("SignAndEncrypt",),
        certificate_dir=tmp_path / "plc",
        trusted_clients=(trusted.certificate,),
        users={"operator": "s3cret"},
    )
    secure: dict[str, Any] = {
        **FAST_SOURCE,
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate": trusted.certificate,
        "private_key": trusted.private_key,
        "username": "operator",
        "password": "s3cret",
    }

    async def scenario() -> None:
        async with CoatingLinePlc(config) as plc:
            assert plc.server_certificate is not None
            pinned = {"server_certificate": plc.server_certificate.certificate}
            relative = {  # resolved against base_dir, as against a config file's directory
                "certificate": trusted.certificate.relative_to(tmp_path),
                "private_key": trusted.private_key.relative_to(tmp_path),
            }
            for extra, base_dir in (({}, None), (pinned, None), (relative, tmp_path)):
                settings = plc.opcua_settings(**(secure | extra))
                collector = Collector(OpcUaSource(settings, base_dir=base_dir))
                try:
                    await collector.until(lambda c=collector: bool(c.readings), "encrypted values")
                finally:
                    await collector.close()

            untrusted = {"certificate": stranger.certificate, "private_key": stranger.private_key}
            error = await first_error(plc.opcua_settings(**(secure | untrusted)))
            assert "BadCertificateUntrusted" in str(error)
            error = await first_error(plc.opcua_settings(**(secure | {"password": "wrong"})))
            assert "BadUserAccessDenied" in str(error)
            error = await first_error(plc.opcua_settings(**FAST_SOURCE))
            assert "no endpoint with security policy None" in str(error)

    run(scenario)


def test_security_without_key_files_is_a_source_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = OpcUaSettings(
            security_policy="Basic256Sha256",
            security_mode="Sign",
            certificate=tmp_path / "missing.der",
            private_key=tmp_path / "missing.pem",
            nodes=(OpcUaNode(node_id="ns=2;s=X", device="d", quantity="q", unit="4H"),),
        )
        error = await first_error(settings)
        assert "missing.der not found" in str(error)

    run(scenario)


def test_a_server_that_never_answers_is_a_source_error_after_the_connect_timeout() -> None:
    async def scenario() -> None:
        node = OpcUaNode(node_id="ns=2;s=X", device="d", quantity="q", unit="4H")
        settings = OpcUaSettings(
            url=f"opc.tcp://127.0.0.1:{free_port()}",
            nodes=(node,),
            **(FAST_SOURCE | {"connect_timeout_s": 0.5}),
        )
        error = await first_error(settings)
        assert "not reachable within 0.5 s" in str(error)
        assert "ConnectionRefusedError" in str(error)

    run(scenario)
