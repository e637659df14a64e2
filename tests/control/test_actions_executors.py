"""ActionExecutors built from [control] settings, run by a real ActionRunner against the PLC
simulator, the ERP simulator and Mosquitto: one action of each kind, and their follow-ups."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from node.control.actions.executors import ActionExecutors
from node.control.actions.plc import stop_line, stop_request_id
from node.control.outbox import ActionOutbox, ActionRequest, ActionRunner, ActionStatus, RetryPolicy
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from node.oracles.simulators.coating_plc import CoatingLinePlc, PlcConfig
from node.oracles.simulators.erp import ErpSimulator
from node.oracles.simulators.mqtt_actuator import ActuatorConfig, CommandActuator
from node.settings import ControlSettings

SECRET = "consortium-erp-secret-42-42-42"
SUPPLIER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


def test_every_kind_through_one_runner(tmp_path: Path, mqtt_url: str, mqtt_prefix: str) -> None:
    store = Store.open(
        f"sqlite:///{tmp_path / 'store.db'}",
        Classification.from_config(DEFAULT_RECORD_TYPES),
        BlobStore(tmp_path / "blobs"),
    )
    outbox = ActionOutbox(store)

    async def scenario() -> None:
        async with CoatingLinePlc(PlcConfig(gauge_interval_s=0.05, ack_delay_s=0.01)) as plc:
            with (
                ErpSimulator(SECRET) as erp,
                CommandActuator(
                    mqtt_url,
                    ActuatorConfig(
                        command_filter=f"{mqtt_prefix}/lines/+/commands",
                        ack_topic=f"{mqtt_prefix}/lines/{{line}}/acks",
                        client_id=f"{mqtt_prefix}-actuator",
                    ),
                ) as actuator,
            ):
                settings = ControlSettings(
                    plc=plc.plc_settings().model_dump(),
                    mqtt_command={
                        "url": mqtt_url,
                        "client_id": f"{mqtt_prefix}-commands",
                        "command_topic": f"{mqtt_prefix}/lines/{{line}}/commands",
                        "ack_topic": f"{mqtt_prefix}/lines/{{line}}/acks",
                    },
                    erp={"url": erp.url, "secret": SECRET},
                    tasks={
                        "supplier_channel": "webhook",
                        "improvement_channel": "mqtt",
                        "webhook": {"url": erp.hook_url("suppliers"), "secret": SECRET},
                        "mqtt": {"url": mqtt_url, "client_id": f"{mqtt_prefix}-notify"},
                        "assignee_topic": f"{mqtt_prefix}/tasks/{{assignee}}",
                    },
                )
                built = ActionExecutors(settings, store)
                try:
                    await run_all(built, outbox)
                    assert built.plc is not None
                    direct = await stop_line(built.plc, stop_request_id("fast:1"), "red line")
                    assert direct.stopped
                finally:
                    await built.aclose()
                assert erp.purchase_orders(SUPPLIER) == "paused"
                assert actuator.value("coater", "blade_pressure") == 1.05
                assert plc.snapshot().blade_actual_mm == 0.95
                assert plc.snapshot().running is False

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        store.close()


async def run_all(built: ActionExecutors, outbox: ActionOutbox) -> None:
    hash_ = "0x" + "aa" * 32
    requests = [
        ActionRequest("plc_compensation", "plc_compensation:1", _compensation(1, -0.05)),
        ActionRequest("mqtt_command", "mqtt_command:2", _compensation(2, 0.05)),
        ActionRequest("erp_po_pause", "erp_po_pause:3", {"supplier": SUPPLIER, "hold_id": 3}),
        ActionRequest(
            "supplier_task",
            "supplier_task:3:D3",
            {"supplier": SUPPLIER, "case_id": 3, "hold_id": 3, "discipline": "D3"},
        ),
        ActionRequest(
            "improvement_task",
            "improvement_task:9",
            {"assignee": "process-engineer", "title": "Cpk A < 1.33", "decision_hash": hash_},
        ),
        ActionRequest("plc_stop", "plc_stop:coater:1", {"line": "coater", "reason": "cold chain"}),
    ]
    outbox.add(requests)
    runner = ActionRunner(outbox, built.executors, RetryPolicy(max_attempts=2, first_delay_s=0.05))
    for _ in range(100):
        await runner.run_once()
        statuses = {r.key: outbox.get(r.key) for r in requests}
        if all(a is not None and a.status is ActionStatus.DONE for a in statuses.values()):
            break
        await asyncio.sleep(0.05)
    for request in requests:
        action = outbox.get(request.key)
        assert action is not None and action.status is ActionStatus.DONE, action
    follow_ups = {a.key: a for a in outbox.actions(statuses=[ActionStatus.PENDING])}
    assert set(follow_ups) == {
        "chain_compensation_ack:1",
        "chain_compensation_ack:2",
        f"chain_line_stop:coater:{stop_request_id('plc_stop:coater:1')}",
    }
    assert follow_ups["chain_compensation_ack:1"].payload["applied"] is True
    stop_record = follow_ups[f"chain_line_stop:coater:{stop_request_id('plc_stop:coater:1')}"]
    assert stop_record.payload["confirmed"] is True


def _compensation(request_id: int, delta: float) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "line": "coater",
        "parameter": "blade_pressure",
        "delta_mm": delta,
        "decision_hash": "0x" + "bb" * 32,
    }
