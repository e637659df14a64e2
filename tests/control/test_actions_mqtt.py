"""MQTT line commands against a real Mosquitto and the CommandActuator simulator: ack received,
re-runs applied once, no actuator, a rejection, a broker that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from node.control.actions.mqtt_command import KIND_MQTT_COMMAND, MqttCommandExecutor
from node.control.outbox import ActionOutcome, ActionStatus, PendingAction
from node.errors import ActionError
from node.oracles.simulators.mqtt_actuator import ActuatorConfig, CommandActuator
from node.settings import MqttCommandSettings
from tests.mqtt_broker import MosquittoBroker


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def settings(url: str, prefix: str, **overrides: Any) -> MqttCommandSettings:
    values: dict[str, Any] = {
        "url": url,
        "client_id": f"{prefix}-node",
        "command_topic": f"{prefix}/lines/{{line}}/commands",
        "ack_topic": f"{prefix}/lines/{{line}}/acks",
        "ack_timeout_s": 2.0,
        "connect_timeout_s": 2.0,
    }
    return MqttCommandSettings(**(values | overrides))


def actuator_config(prefix: str, **overrides: Any) -> ActuatorConfig:
    values: dict[str, Any] = {
        "command_filter": f"{prefix}/lines/+/commands",
        "ack_topic": f"{prefix}/lines/{{line}}/acks",
        "client_id": f"{prefix}-actuator",
    }
    return ActuatorConfig(**(values | overrides))


def command(request_id: int, delta: float = -0.05, line: str = "coater") -> PendingAction:
    payload = {
        "request_id": request_id,
        "line": line,
        "parameter": "blade_pressure",
        "delta": delta,
        "decision_hash": "0x" + "ef" * 32,
    }
    key = f"{KIND_MQTT_COMMAND}:{request_id}"
    return PendingAction(1, KIND_MQTT_COMMAND, key, payload, ActionStatus.RUNNING, 0)


def test_the_command_is_applied_and_acknowledged_once(mqtt_url: str, mqtt_prefix: str) -> None:
    async def scenario() -> None:
        with CommandActuator(mqtt_url, actuator_config(mqtt_prefix)) as actuator:
            executor = MqttCommandExecutor(settings(mqtt_url, mqtt_prefix))
            try:
                pending = command(7)
                result = await executor.execute(pending)
                assert result["applied"] is True
                assert result["actual"] == pytest.approx(0.95)
                assert result["ack_ms"] > 0
                assert actuator.value("coater", "blade_pressure") == pytest.approx(0.95)
                (sent,) = actuator.commands
                assert sent["request_id"] == 7 and sent["delta"] == -0.05
                assert sent["key"] == "mqtt_command:7" and sent["expires_at_us"] > 0

                # A retry of the same request: acknowledged again, not applied twice.
                again = await executor.execute(pending)
                assert again["actual"] == pytest.approx(0.95)
                assert actuator.value("coater", "blade_pressure") == pytest.approx(0.95)
                assert len(actuator.commands) == 2

                (record,) = executor.follow_up(pending, ActionOutcome(result=result))
                assert record.key == "chain_compensation_ack:7"
                assert record.payload["applied"] is True
                assert record.payload["read_back"] == pytest.approx(0.95)
            finally:
                await executor.aclose()

    run(scenario)


def test_no_actuator_is_retryable_then_served(mqtt_url: str, mqtt_prefix: str) -> None:
    async def scenario() -> None:
        executor = MqttCommandExecutor(settings(mqtt_url, mqtt_prefix, ack_timeout_s=0.3))
        try:
            with pytest.raises(ActionError, match="no acknowledgement of request 8") as caught:
                await executor.execute(command(8))
            assert caught.value.retryable
            (record,) = executor.follow_up(command(8), ActionOutcome(error=str(caught.value)))
            assert record.payload["applied"] is False
            assert "no acknowledgement" in record.payload["detail"]

            with CommandActuator(mqtt_url, actuator_config(mqtt_prefix)) as actuator:
                result = await executor.execute(command(8))
                assert result["applied"] is True
                # The first attempt's command reached nobody (and expires in the broker).
                assert [c["request_id"] for c in actuator.commands] == [8]

                actuator.silent = True
                with pytest.raises(ActionError, match="no acknowledgement of request 9"):
                    await executor.execute(command(9))
        finally:
            await executor.aclose()

    run(scenario)


def test_a_rejected_command_is_a_permanent_failure(mqtt_url: str, mqtt_prefix: str) -> None:
    async def scenario() -> None:
        with CommandActuator(mqtt_url, actuator_config(mqtt_prefix)):
            executor = MqttCommandExecutor(settings(mqtt_url, mqtt_prefix))
            try:
                bad = command(11)
                bad = PendingAction(
                    bad.id, bad.kind, bad.key, {**bad.payload, "parameter": ""}, bad.status, 0
                )
                with pytest.raises(ActionError, match="rejected request 11") as caught:
                    await executor.execute(bad)
                assert not caught.value.retryable
                with pytest.raises(ActionError, match="cannot be an MQTT topic level"):
                    await executor.execute(command(12, line="a/b"))
            finally:
                await executor.aclose()

    run(scenario)


def test_a_broker_that_is_down_is_retryable(own_mqtt_broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        url = own_mqtt_broker.url
        prefix = "down"
        with CommandActuator(url, actuator_config(prefix)):
            executor = MqttCommandExecutor(
                settings(url, prefix, connect_timeout_s=0.5, reconnect_max_s=1)
            )
            try:
                assert (await executor.execute(command(20)))["applied"] is True
                own_mqtt_broker.stop()
                with pytest.raises(ActionError) as caught:
                    await executor.execute(command(21))
                assert caught.value.retryable
                own_mqtt_broker.start()
                for _ in range(50):  # paho reconnects by itself (1 s backoff here)
                    try:
                        result = await executor.execute(command(21))
                        break
                    except ActionError as exc:
                        assert exc.retryable
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail("the executor never reconnected")
                assert result["applied"] is True
            finally:
                await executor.aclose()

    run(scenario)
