"""The coating-line PLC simulator, driven with plain asyncua client calls on loopback."""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import sys
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client

from node.errors import ConfigError
from node.oracles.simulators.coating_plc import (
    BLADE_ACK_ID,
    BLADE_ACTUAL,
    BLADE_REQUEST_ID,
    BLADE_SETPOINT,
    LINE_RUNNING,
    LINE_STOP,
    LINE_STOP_ACK_ID,
    LINE_STOP_REQUEST_ID,
    OVEN_TEMPERATURE,
    BakeProfile,
    CoatingLinePlc,
    Drift,
    Fault,
    FaultSpec,
    PlcConfig,
)
from node.settings import OracleSettings, PlcSettings

FAST_PLC = PlcConfig(gauge_interval_s=0.05, oven_interval_s=0.1, ack_delay_s=0.05, seed=3)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


async def read(client: Client, plc: CoatingLinePlc, name: str) -> ua.DataValue:
    return await client.get_node(plc.node_id(name)).read_data_value(raise_on_bad_status=False)


async def request_setpoint(client: Client, plc: CoatingLinePlc, mm: float, request: int) -> None:
    """The client side of the handshake: the setpoint first, then a new request id; no
    timestamps in the written DataValues (servers may refuse client-set timestamps)."""
    setpoint = client.get_node(plc.node_id(BLADE_SETPOINT))
    await setpoint.write_value(ua.DataValue(ua.Variant(mm, ua.VariantType.Double)))
    request_id = client.get_node(plc.node_id(BLADE_REQUEST_ID))
    await request_id.write_value(ua.DataValue(ua.Variant(request, ua.VariantType.UInt32)))


async def acknowledged(client: Client, plc: CoatingLinePlc, request: int) -> None:
    while (await read(client, plc, BLADE_ACK_ID)).Value != ua.Variant(
        request, ua.VariantType.UInt32
    ):
        await asyncio.sleep(0.02)


def test_address_space_has_stable_node_ids_and_types() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, Client(plc.endpoint) as client:
            assert plc.node_id(BLADE_SETPOINT) == "ns=2;s=BladePressure.Setpoint"
            expected = {
                "Gauge1.Thickness": ua.VariantType.Double,
                "Gauge3.Thickness": ua.VariantType.Double,
                OVEN_TEMPERATURE: ua.VariantType.Double,
                BLADE_SETPOINT: ua.VariantType.Double,
                BLADE_REQUEST_ID: ua.VariantType.UInt32,
                BLADE_ACK_ID: ua.VariantType.UInt32,
                BLADE_ACTUAL: ua.VariantType.Double,
            }
            for name, variant_type in expected.items():
                value = await read(client, plc, name)
                assert value.Value is not None and value.Value.VariantType == variant_type, name
                assert value.SourceTimestamp is not None, name
            await asyncio.sleep(0.3)
            first = await read(client, plc, "Gauge1.Thickness")
            await asyncio.sleep(0.2)
            later = await read(client, plc, "Gauge1.Thickness")
            assert first.SourceTimestamp and later.SourceTimestamp
            assert later.SourceTimestamp > first.SourceTimestamp

    run(scenario)


def test_setpoint_handshake_applies_then_acknowledges() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, Client(plc.endpoint) as client:
            await request_setpoint(client, plc, 0.95, request=7)
            await asyncio.wait_for(acknowledged(client, plc, 7), 10)
            actual = await read(client, plc, BLADE_ACTUAL)
            assert actual.Value is not None and actual.Value.Value == 0.95
            assert plc.snapshot().acks == 1
            assert plc.snapshot().blade_actual_mm == 0.95

            await request_setpoint(client, plc, 1.05, request=8)
            await asyncio.wait_for(acknowledged(client, plc, 8), 10)
            actual = await read(client, plc, BLADE_ACTUAL)
            assert actual.Value is not None and actual.Value.Value == 1.05

    run(scenario)


@pytest.mark.parametrize("never", ["config", "fault"])
def test_a_plc_that_never_acknowledges_makes_the_client_time_out(never: str) -> None:
    config = PlcConfig(gauge_interval_s=0.05, ack_delay_s=None if never == "config" else 0.05)

    async def scenario() -> None:
        async with CoatingLinePlc(config) as plc, Client(plc.endpoint) as client:
            if never == "fault":
                plc.inject_fault(Fault.NO_ACK)
            await request_setpoint(client, plc, 0.9, request=1)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(acknowledged(client, plc, 1), 0.5)
            actual = await read(client, plc, BLADE_ACTUAL)
            assert actual.Value is not None and actual.Value.Value == config.nominal_blade_mm

            if never == "fault":  # cleared: the next request goes through
                plc.clear_faults()
                await request_setpoint(client, plc, 0.9, request=2)
                await asyncio.wait_for(acknowledged(client, plc, 2), 10)

    run(scenario)


def test_sensor_faults() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, Client(plc.endpoint) as client:
            await asyncio.sleep(0.2)
            plc.inject_fault(Fault.BAD, "Gauge1")
            plc.inject_fault(Fault.UNCERTAIN, "Gauge2")
            plc.inject_fault(Fault.NAN, "Gauge3")
            plc.inject_fault(Fault.STUCK, "BakeOven")
            await asyncio.sleep(0.3)

            bad = await read(client, plc, "Gauge1.Thickness")
            assert bad.StatusCode is not None and bad.StatusCode.name == "BadSensorFailure"
            uncertain = await read(client, plc, "Gauge2.Thickness")
            assert uncertain.StatusCode is not None and uncertain.StatusCode.is_uncertain()
            nan = await read(client, plc, "Gauge3.Thickness")
            assert nan.Value is not None and math.isnan(nan.Value.Value)

            stuck = [await read(client, plc, OVEN_TEMPERATURE)]
            for _ in range(2):
                await asyncio.sleep(0.25)
                stuck.append(await read(client, plc, OVEN_TEMPERATURE))
            assert len({value.Value.Value for value in stuck if value.Value}) == 1
            stamps = [value.SourceTimestamp for value in stuck]
            assert stamps == sorted(stamps) and len(set(stamps)) == 3

            plc.clear_faults()
            await asyncio.sleep(0.3)
            healthy = await read(client, plc, "Gauge1.Thickness")
            assert healthy.StatusCode is not None and healthy.StatusCode.is_good()

    run(scenario)


def test_thickness_drift_and_blade_compensation() -> None:
    config = PlcConfig(
        gauges=1,
        gauge_interval_s=0.05,
        thickness_cv_pct=0.0,
        drift=Drift(mean_um_per_min=600.0),  # 10 µm/s
        ack_delay_s=0.01,
    )

    async def sample(client: Client, plc: CoatingLinePlc) -> tuple[float, float]:
        """(µm, SourceTimestamp in s): the drift is linear in the sample's own time."""
        value = await read(client, plc, "Gauge1.Thickness")
        assert value.Value is not None and value.SourceTimestamp is not None
        return value.Value.Value, value.SourceTimestamp.timestamp()

    def change(early: tuple[float, float], late: tuple[float, float]) -> float:
        """What the thickness changed by, beyond the 10 µm/s drift."""
        assert late[1] > early[1]
        return late[0] - early[0] - 10.0 * (late[1] - early[1])

    async def scenario() -> None:
        async with CoatingLinePlc(config) as plc, Client(plc.endpoint) as client:
            await asyncio.sleep(0.2)
            early = await sample(client, plc)
            await asyncio.sleep(0.5)
            assert change(early, await sample(client, plc)) == pytest.approx(0.0, abs=0.01)

            # 0.5 mm more blade pressure thins the coating by 20 µm/mm * 0.5 mm = 10 µm.
            await request_setpoint(client, plc, config.nominal_blade_mm + 0.5, request=1)
            await asyncio.wait_for(acknowledged(client, plc, 1), 10)
            await asyncio.sleep(0.2)
            assert change(early, await sample(client, plc)) == pytest.approx(-10.0, abs=0.01)

    run(scenario)


def test_bake_profile_heats_soaks_and_cools() -> None:
    profile = BakeProfile(noise_c=0.0)
    rng = random.Random(0)
    curve = [profile.temperature(t / 2, rng) for t in range(120)]  # one 60 s pass at 0.5 s
    assert curve[0] == pytest.approx(25.0)
    assert curve[1] > curve[0]
    assert all(129 <= value <= 131 for value in curve[32:90])  # soak, PID ripple only
    assert curve[-1] < 50
    assert profile.temperature(60.0, rng) == pytest.approx(curve[0])


def test_fault_and_drift_specs() -> None:
    assert FaultSpec.parse("nan:Gauge2") == FaultSpec(Fault.NAN, "Gauge2")
    assert FaultSpec.parse("no-ack") == FaultSpec(Fault.NO_ACK)
    assert Drift.parse(["mean=0.5", "cv=0.1"]) == Drift(0.5, 0.1)
    with pytest.raises(ConfigError, match="unknown fault 'melt'"):
        FaultSpec.parse("melt")
    with pytest.raises(ConfigError, match="bad drift"):
        Drift.parse(["speed=3"])
    with pytest.raises(ConfigError, match="no sensor 'Gauge7'"):
        CoatingLinePlc(PlcConfig(faults=(FaultSpec(Fault.BAD, "Gauge7"),)))


def test_config_fragment_validates_as_oracle_settings() -> None:
    plc = CoatingLinePlc(PlcConfig(port=4841))
    oracles = OracleSettings(**plc.oracle_settings_values())
    assert oracles.opcua is not None
    assert oracles.opcua.url == "opc.tcp://127.0.0.1:4841"
    nodes = {node.node_id: node for node in oracles.opcua.nodes}
    gauge = nodes["ns=2;s=Gauge2.Thickness"]
    assert (gauge.device, gauge.quantity, gauge.unit) == ("coater-gauge-2", "thickness", "4H")
    assert nodes["ns=2;s=BakeOven.Temperature"].unit == "CEL"
    assert set(oracles.devices) == {node.device for node in oracles.opcua.nodes}
    assert {node.quantity for node in oracles.opcua.nodes} <= set(oracles.quantities)


def test_qnode_simulate_plc(tmp_path: Path) -> None:
    fragment = tmp_path / "plc.toml"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "node", "simulate", "plc", "--duration", "1"]
    options = ["--fault", "nan:Gauge2", "--drift", "mean=0.5", "--write-config", str(fragment)]
    result = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "coating-line PLC listening on opc.tcp://127.0.0.1:" in result.stdout
    assert "ns=2;s=Gauge1.Thickness -> coater-gauge-1 thickness [4H]" in result.stdout
    assert "samples=" in result.stdout
    values = tomllib.loads(fragment.read_text())
    assert values["oracles"]["opcua"]["url"].startswith("opc.tcp://127.0.0.1:")
    OracleSettings(**values["oracles"])


async def request_stop(client: Client, plc: CoatingLinePlc, request: int) -> None:
    stop = client.get_node(plc.node_id(LINE_STOP))
    await stop.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
    request_id = client.get_node(plc.node_id(LINE_STOP_REQUEST_ID))
    await request_id.write_value(ua.DataValue(ua.Variant(request, ua.VariantType.UInt32)))


async def stop_acknowledged(client: Client, plc: CoatingLinePlc, request: int) -> None:
    while (await read(client, plc, LINE_STOP_ACK_ID)).Value != ua.Variant(
        request, ua.VariantType.UInt32
    ):
        await asyncio.sleep(0.002)


def test_line_stop_handshake_stops_sampling_until_restart() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, Client(plc.endpoint) as client:
            types = {
                LINE_STOP: ua.VariantType.Boolean,
                LINE_STOP_REQUEST_ID: ua.VariantType.UInt32,
                LINE_STOP_ACK_ID: ua.VariantType.UInt32,
                LINE_RUNNING: ua.VariantType.Boolean,
            }
            for name, variant_type in types.items():
                value = await read(client, plc, name)
                assert value.Value is not None and value.Value.VariantType == variant_type, name
            assert (await read(client, plc, LINE_RUNNING)).Value == ua.Variant(
                True, ua.VariantType.Boolean
            )

            await request_stop(client, plc, 5)
            await asyncio.wait_for(stop_acknowledged(client, plc, 5), 1)
            running = await read(client, plc, LINE_RUNNING)
            assert running.Value is not None and running.Value.Value is False
            assert plc.snapshot().running is False and plc.snapshot().stop_acks == 1
            stamp = (await read(client, plc, "Gauge1.Thickness")).SourceTimestamp
            await asyncio.sleep(0.25)
            assert (await read(client, plc, "Gauge1.Thickness")).SourceTimestamp == stamp

            await plc.restart()
            assert (await read(client, plc, LINE_STOP)).Value == ua.Variant(
                False, ua.VariantType.Boolean
            )
            await asyncio.sleep(0.2)
            later = (await read(client, plc, "Gauge1.Thickness")).SourceTimestamp
            assert later is not None and stamp is not None and later > stamp

    run(scenario)


def test_stop_faults_clamped_blade_and_retained_handshake_across_restart() -> None:
    config = PlcConfig(gauge_interval_s=0.05, ack_delay_s=0.3, blade_max_mm=1.02)

    async def scenario() -> None:
        plc = CoatingLinePlc(config)
        await plc.start()
        try:
            async with Client(plc.endpoint) as client:
                plc.inject_fault(Fault.NO_STOP_ACK)
                await request_stop(client, plc, 1)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(stop_acknowledged(client, plc, 1), 0.3)
                assert plc.snapshot().running is True
                plc.clear_faults()
                await request_stop(client, plc, 2)
                await asyncio.wait_for(stop_acknowledged(client, plc, 2), 1)

                # The PLC clamps to its own limits, and still acknowledges.
                await request_setpoint(client, plc, 1.05, request=3)
            await plc.stop()  # before the ack (0.3 s): the request survives the restart
            await plc.start()
            async with Client(plc.endpoint) as client:
                await asyncio.wait_for(acknowledged(client, plc, 3), 5)
                actual = await read(client, plc, BLADE_ACTUAL)
                assert actual.Value is not None and actual.Value.Value == 1.02
        finally:
            await plc.stop()

    run(scenario)


def test_plc_settings_name_the_namespace_by_uri() -> None:
    plc = CoatingLinePlc(PlcConfig(port=4842))
    settings = plc.plc_settings(ack_timeout_s=2.0)
    assert settings.url == "opc.tcp://127.0.0.1:4842"
    assert settings.ack_timeout_s == 2.0
    defaults = PlcSettings()
    assert defaults.setpoint_node == "nsu=urn:qnode:coating-line;s=" + BLADE_SETPOINT
    assert defaults.stop_node == "nsu=urn:qnode:coating-line;s=" + LINE_STOP
    assert defaults.stop_ack_id_node == "nsu=urn:qnode:coating-line;s=" + LINE_STOP_ACK_ID
    assert defaults.running_node == "nsu=urn:qnode:coating-line;s=" + LINE_RUNNING
    assert FaultSpec.parse("no-stop-ack") == FaultSpec(Fault.NO_STOP_ACK)
