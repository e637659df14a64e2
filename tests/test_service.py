"""The node service: its configured sources ingested in-process or by ingest worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from node.oracles.mqtt_source import MqttSource
from node.oracles.simulators.device_fleet import DeviceFleet, FleetPublisher, FleetSpec
from node.provisioning import MemberSpec, init_member
from node.runtime import Node
from node.service import NodeService, ServiceOptions, configured_sources
from node.settings import OracleSettings

PASSWORD = "correct horse"
TIMEOUT = 60.0


@pytest.mark.parametrize("workers", [1, 2])
def test_the_service_ingests_its_mqtt_source(
    mqtt_url: str, mqtt_prefix: str, tmp_path: Path, workers: int
) -> None:
    fleet = DeviceFleet(FleetSpec(devices=5, topic_prefix=f"{mqtt_prefix}/devices"))
    spec = MemberSpec("Aster Motors", "manufacturer", "http://127.0.0.1:8600", "embedded", 4717)
    settings = init_member(tmp_path, spec, PASSWORD, kdf_iterations=16)
    oracles = OracleSettings(
        **fleet.oracle_settings(),
        mqtt={"url": mqtt_url, "client_id": f"{mqtt_prefix}-node", "topics": fleet.mqtt_topics()},
        ingest_workers=workers,
    )
    node = Node.open(settings.model_copy(update={"oracles": oracles}), PASSWORD)
    messages = fleet.messages(40)
    sources = configured_sources(node)
    service = NodeService(node, sources, ServiceOptions(chain_interval_s=60))

    async def scenario() -> None:
        (source,) = sources
        assert isinstance(source, MqttSource)
        await source.connect()  # subscribed: what is published from now on is kept for us
        task = asyncio.create_task(service.run())
        with FleetPublisher(mqtt_url, f"fleet-{uuid.uuid4().hex[:8]}") as publisher:
            publisher.publish(messages)
            publisher.flush(TIMEOUT)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while service.metrics.snapshot().messages_accepted < len(messages):
            assert asyncio.get_running_loop().time() < deadline, service.metrics.snapshot()
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(scenario(), 2 * TIMEOUT))
    with node.store().transaction() as connection:
        rows = connection.execute(
            text("SELECT public_json FROM records WHERE record_type = 'measurement'")
        ).all()
    stored = sorted((f["device"], f["seq"]) for f in (json.loads(row[0]) for row in rows))
    assert stored == sorted((m.device, m.seq) for m in messages)
    node.close()
