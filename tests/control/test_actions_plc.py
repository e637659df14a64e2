"""PLC actions against the coating-line PLC simulator (a real asyncua server on loopback):
compensation handshake, idempotent re-runs, no-ack and read-back failures through a real
ActionRunner, reconnection after a PLC restart, security, and the line stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client

from node.control.actions.plc import (
    KIND_CHAIN_COMPENSATION_ACK,
    KIND_CHAIN_LINE_STOP,
    KIND_COMPENSATION,
    KIND_STOP,
    PlcCompensationExecutor,
    PlcStopExecutor,
    line_stop_record,
    stop_line,
    stop_request_id,
)
from node.control.actions.plc_client import PlcClient, PlcPoint
from node.control.outbox import (
    ActionOutbox,
    ActionOutcome,
    ActionRequest,
    ActionRunner,
    ActionStatus,
    PendingAction,
    RetryPolicy,
)
from node.errors import ActionError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from node.oracles.simulators.coating_plc import (
    BLADE_REQUEST_ID,
    BLADE_SETPOINT,
    LINE_RUNNING,
    CoatingLinePlc,
    Fault,
    PlcConfig,
    generate_certificate,
)

FAST_PLC = PlcConfig(gauge_interval_s=0.05, oven_interval_s=0.1, ack_delay_s=0.02, seed=5)
FAST_RETRIES = RetryPolicy(max_attempts=3, first_delay_s=0.01, max_delay_s=0.02)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def action(kind: str, key: str, payload: dict[str, Any], attempts: int = 0) -> PendingAction:
    return PendingAction(1, kind, key, payload, ActionStatus.RUNNING, attempts)


def compensation(request_id: int, delta_mm: float = 0.05) -> PendingAction:
    payload = {
        "request_id": request_id,
        "line": "coating-1",
        "parameter": "blade_pressure",
        "delta_mm": delta_mm,
        "decision_hash": "0x" + "ab" * 32,
    }
    return action(KIND_COMPENSATION, f"{KIND_COMPENSATION}:{request_id}", payload)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[ActionOutbox]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}", classification, BlobStore(tmp_path))
    yield ActionOutbox(store)
    store.close()


async def drain(runner: ActionRunner, rounds: int = 200) -> None:
    idle = 0
    for _ in range(rounds):
        if await runner.run_once():
            idle = 0
            continue
        idle += 1
        if idle > 10:
            return
        await asyncio.sleep(0.02)


def test_compensation_is_applied_acknowledged_and_read_back() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, PlcClient(plc.plc_settings()) as client:
            executor = PlcCompensationExecutor(client)
            pending = compensation(7, delta_mm=0.05)
            result = await executor.execute(pending)
            assert result["applied"] is True and result["resumed"] is False
            assert result["setpoint"] == pytest.approx(1.05)
            assert result["read_back"] == pytest.approx(1.05)
            assert 0 < result["ack_ms"] < 5000
            assert plc.snapshot().blade_actual_mm == pytest.approx(1.05)
            assert plc.snapshot().acks == 1

            (ack,) = executor.follow_up(pending, ActionOutcome(result=result))
            assert ack.kind == KIND_CHAIN_COMPENSATION_ACK
            assert ack.key == "chain_compensation_ack:7"
            assert ack.payload["request_id"] == 7 and ack.payload["applied"] is True
            assert ack.payload["read_back"] == pytest.approx(1.05)

            # The next request compensates from the applied value.
            second = await executor.execute(compensation(8, delta_mm=-0.1))
            assert second["setpoint"] == pytest.approx(0.95)
            assert plc.snapshot().blade_actual_mm == pytest.approx(0.95)

    run(scenario)


def test_concurrent_compensations_take_turns() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, PlcClient(plc.plc_settings()) as client:
            executor = PlcCompensationExecutor(client)
            first, second = await asyncio.gather(
                executor.execute(compensation(81)), executor.execute(compensation(82))
            )
            assert sorted([first["setpoint"], second["setpoint"]]) == pytest.approx([1.05, 1.10])
            assert plc.snapshot().blade_actual_mm == pytest.approx(1.10)
            assert plc.snapshot().acks == 2
            with pytest.raises(ActionError, match="bad stop request id") as caught:
                await stop_line(client, 2**32, "too big")
            assert not caught.value.retryable

    run(scenario)


def test_a_rerun_after_a_crash_does_not_write_again() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, PlcClient(plc.plc_settings()) as client:
            executor = PlcCompensationExecutor(client)
            first = await executor.execute(compensation(11))
            # Crash between the PLC's ack and the outbox's done mark: the action runs again.
            again = await executor.execute(compensation(11))
            assert again["resumed"] is True and again["applied"] is True
            assert again["setpoint"] == pytest.approx(first["setpoint"])
            assert plc.snapshot().blade_actual_mm == pytest.approx(1.05)  # not 1.10
            assert plc.snapshot().acks == 1

            # Crash right after the writes, before the ack: the re-run only waits for it.
            async with Client(plc.endpoint) as raw:
                setpoint = ua.DataValue(ua.Variant(1.2, ua.VariantType.Double))
                await raw.get_node(plc.node_id(BLADE_SETPOINT)).write_value(setpoint)
                request = ua.DataValue(ua.Variant(12, ua.VariantType.UInt32))
                await raw.get_node(plc.node_id(BLADE_REQUEST_ID)).write_value(request)
            resumed = await executor.execute(compensation(12))
            assert resumed["resumed"] is True
            assert resumed["setpoint"] == pytest.approx(1.2)
            assert plc.snapshot().blade_actual_mm == pytest.approx(1.2)  # not 1.25
            assert plc.snapshot().acks == 2

    run(scenario)


def test_a_plc_that_never_acknowledges_fails_after_bounded_retries_and_is_recorded(
    outbox: ActionOutbox,
) -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            plc.inject_fault(Fault.NO_ACK)
            async with PlcClient(plc.plc_settings(ack_timeout_s=0.1)) as client:
                executor = PlcCompensationExecutor(client)
                with pytest.raises(ActionError, match="did not acknowledge request 21") as caught:
                    await executor.execute(compensation(21))
                assert caught.value.retryable

                outbox.add(
                    [
                        ActionRequest(
                            KIND_COMPENSATION, "plc_compensation:22", {**compensation(22).payload}
                        )
                    ]
                )
                runner = ActionRunner(outbox, {KIND_COMPENSATION: executor}, FAST_RETRIES)
                await drain(runner)
            failed = outbox.get("plc_compensation:22")
            assert failed is not None and failed.status is ActionStatus.FAILED
            assert failed.attempts == FAST_RETRIES.max_attempts
            assert "gave up after 3 attempts" in (failed.last_error or "")
            record = outbox.get("chain_compensation_ack:22")
            assert record is not None and record.kind == KIND_CHAIN_COMPENSATION_ACK
            assert record.status is ActionStatus.PENDING
            assert record.payload["applied"] is False
            assert record.payload["request_id"] == 22
            assert "did not acknowledge request 22" in record.payload["detail"]
            assert plc.snapshot().blade_actual_mm == pytest.approx(1.0)

    run(scenario)


def test_a_read_back_mismatch_is_a_permanent_failure(outbox: ActionOutbox) -> None:
    clamping = PlcConfig(gauge_interval_s=0.05, ack_delay_s=0.01, blade_max_mm=1.02)

    async def scenario() -> None:
        async with CoatingLinePlc(clamping) as plc, PlcClient(plc.plc_settings()) as client:
            executor = PlcCompensationExecutor(client)
            outbox.add(
                [
                    ActionRequest(
                        KIND_COMPENSATION, "plc_compensation:31", {**compensation(31).payload}
                    )
                ]
            )
            runner = ActionRunner(outbox, {KIND_COMPENSATION: executor}, FAST_RETRIES)
            await drain(runner)
            failed = outbox.get("plc_compensation:31")
            assert failed is not None and failed.status is ActionStatus.FAILED
            assert failed.attempts == 1  # not retried
            assert "applied 1.02 mm for setpoint 1.05 mm" in (failed.last_error or "")
            record = outbox.get("chain_compensation_ack:31")
            assert record is not None
            assert record.payload["applied"] is False
            assert record.payload["read_back"] == pytest.approx(1.02)

    run(scenario)


def test_the_client_reconnects_after_a_plc_restart_mid_handshake() -> None:
    slow = PlcConfig(gauge_interval_s=0.05, ack_delay_s=0.4)

    async def scenario() -> None:
        plc = CoatingLinePlc(slow)
        await plc.start()
        settings = plc.plc_settings(reconnect_min_s=0.05, watchdog_s=0.2, request_timeout_s=1.0)
        async with PlcClient(settings) as client:
            executor = PlcCompensationExecutor(client)
            attempt = asyncio.create_task(executor.execute(compensation(41)))
            await asyncio.sleep(0.15)  # the request is written, the ack not yet given
            await plc.stop()
            with pytest.raises(ActionError) as caught:
                await attempt
            assert caught.value.retryable
            await plc.start()
            try:
                again = await executor.execute(compensation(41))
                assert again["resumed"] is True and again["applied"] is True
                assert again["read_back"] == pytest.approx(1.05)
                assert client.connections == 2
                assert plc.snapshot().acks == 1
                later = await executor.execute(compensation(42))
                assert later["setpoint"] == pytest.approx(1.10)
            finally:
                await plc.stop()

    run(scenario)


def test_an_unreachable_plc_is_a_retryable_failure() -> None:
    async def scenario() -> None:
        plc = CoatingLinePlc(FAST_PLC)  # never started
        settings = plc.plc_settings(connect_timeout_s=0.3, reconnect_min_s=0.05)
        client = PlcClient(settings)
        try:
            with pytest.raises(ActionError, match=r"not reachable within 0\.3 s") as caught:
                await PlcCompensationExecutor(client).execute(compensation(51))
            assert caught.value.retryable
        finally:
            await client.close()

    run(scenario)


def test_malformed_or_foreign_payloads_are_refused_for_good() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            settings = plc.plc_settings(lines=("coating-1",), parameters=("blade_pressure",))
            async with PlcClient(settings) as client:
                executor = PlcCompensationExecutor(client)
                cases = [
                    ({"request_id": 0}, "does not fit"),
                    ({"request_id": "7"}, "must be an integer"),
                    ({"delta_mm": float("nan")}, "not finite"),
                    ({"line": "coating-2"}, "does not drive line 'coating-2'"),
                    ({"parameter": "speed"}, "does not compensate parameter 'speed'"),
                ]
                for change, message in cases:
                    pending = compensation(61)
                    bad = action(KIND_COMPENSATION, pending.key, {**pending.payload, **change})
                    with pytest.raises(ActionError, match=message) as caught:
                        await executor.execute(bad)
                    assert not caught.value.retryable
                assert plc.snapshot().acks == 0

    run(scenario)


def test_a_secure_plc_with_a_user(tmp_path: Path) -> None:
    trusted = generate_certificate(tmp_path / "client", "client", "urn:qnode:control", server=False)
    config = PlcConfig(
        gauge_interval_s=0.05,
        ack_delay_s=0.01,
        security_modes=("SignAndEncrypt",),
        certificate_dir=tmp_path / "plc",
        trusted_clients=(trusted.certificate,),
        users={"operator": "s3cret"},
    )

    async def scenario() -> None:
        async with CoatingLinePlc(config) as plc:
            secure = {
                "security_policy": "Basic256Sha256",
                "security_mode": "SignAndEncrypt",
                "certificate": trusted.certificate,
                "private_key": trusted.private_key,
                "username": "operator",
                "password": "s3cret",
            }
            async with PlcClient(plc.plc_settings(**secure)) as client:
                result = await PlcCompensationExecutor(client).execute(compensation(71))
                assert result["applied"] is True

            wrong = plc.plc_settings(**{**secure, "password": "guess"}, connect_timeout_s=2)
            client = PlcClient(wrong)
            try:
                with pytest.raises(ActionError, match="refused the connection") as caught:
                    await client.connect()
                assert not caught.value.retryable
                with pytest.raises(ActionError, match="refused the connection"):
                    await client.connect()  # at once: no new attempt
            finally:
                await client.close()

    run(scenario)


def test_line_stop_handshake_stops_the_line_and_restart_runs_it_again() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc, PlcClient(plc.plc_settings()) as client:
            await asyncio.sleep(0.15)
            assert plc.snapshot().running is True
            result = await stop_line(client, stop_request_id("plc_stop:line-1:a"), "cold chain")
            assert result.stopped is True and result.reason == "cold chain"
            assert result.ack_ms > 0
            assert plc.snapshot().running is False and plc.snapshot().stop_acks == 1
            (running,) = await client.read(PlcPoint.RUNNING)
            assert running is False

            # A stopped line produces no thickness readings.
            first = plc.snapshot().thickness_um
            samples = plc.snapshot().samples
            await asyncio.sleep(0.2)
            assert plc.snapshot().thickness_um == first
            oven_only = plc.snapshot().samples - samples
            assert oven_only < 6  # the oven (every 0.1 s) goes on; 3 gauges at 0.05 s do not

            await plc.restart()
            async with Client(plc.endpoint) as raw:
                value = await raw.get_node(plc.node_id(LINE_RUNNING)).read_value()
                assert value is True
            await asyncio.sleep(0.15)
            assert plc.snapshot().thickness_um != first

            # A second stop: a new request id, acknowledged again.
            again = await stop_line(client, stop_request_id("plc_stop:line-1:b"), "red line")
            assert again.stopped and plc.snapshot().stop_acks == 2
            record = line_stop_record("line-1", "red line", "0x01", again.request_id, again)
            assert record.kind == KIND_CHAIN_LINE_STOP
            assert record.payload["stopped_at_us"] == again.stopped_at_us

    run(scenario)


def test_stop_executor_follow_up_and_no_ack() -> None:
    async def scenario() -> None:
        async with CoatingLinePlc(FAST_PLC) as plc:
            settings = plc.plc_settings(stop_ack_timeout_s=0.1)
            async with PlcClient(settings) as client:
                executor = PlcStopExecutor(client)
                payload = {"line": "line-1", "reason": "metal > 0.3 mm", "decision_hash": "0x02"}
                pending = action(KIND_STOP, "plc_stop:line-1:0x02", payload)
                result = await executor.execute(pending)
                assert result["stopped"] is True
                assert result["request_id"] == stop_request_id(pending.key)
                (record,) = executor.follow_up(pending, ActionOutcome(result=result))
                assert record.kind == KIND_CHAIN_LINE_STOP
                assert record.key == f"chain_line_stop:line-1:{stop_request_id(pending.key)}"
                assert record.payload == {
                    "line": "line-1",
                    "reason": "metal > 0.3 mm",
                    "decision_hash": "0x02",
                    "stopped_at_us": result["stopped_at_us"],
                    "confirmed": True,
                    "detail": record.payload["detail"],
                }
                # The same action again (a crash before its done mark): still acknowledged.
                assert (await executor.execute(pending))["stopped"] is True
                assert plc.snapshot().stop_acks == 1

                await plc.restart()
                plc.inject_fault(Fault.NO_STOP_ACK)
                other = action(KIND_STOP, "plc_stop:line-1:0x03", {**payload})
                with pytest.raises(ActionError, match="did not acknowledge") as caught:
                    await executor.execute(other)
                assert caught.value.retryable
                (unconfirmed,) = executor.follow_up(other, ActionOutcome(error="no ack"))
                assert unconfirmed.payload["confirmed"] is False
                assert unconfirmed.payload["stopped_at_us"] is None

    run(scenario)
