"""The main job: the local consortium demo, on the embedded chain and through `qnode demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from node.chain.connection import embedded_chain
from node.chain.consortium import Role
from node.chain.localnode import LocalChain, free_port
from node.demo import run_demo
from node.settings import LOCAL_CHAIN_ID


def test_the_demo_builds_the_consortium_and_is_idempotent(tmp_path: Path) -> None:
    connection = embedded_chain(LOCAL_CHAIN_ID)
    messages: list[str] = []
    statuses = run_demo(tmp_path, "embedded", connection, progress=messages.append)
    assert [s.member.role for s in statuses if s.member] == [
        Role.MANUFACTURER,
        Role.SUPPLIER,
        Role.LAB,
        Role.AUDITOR,
    ]
    assert all(s.member and s.member.active for s in statuses)
    assert all(s.member_count == 4 and s.threshold == 2 for s in statuses)
    assert all(len(s.oracles) == 1 and s.oracles[0].active for s in statuses)
    assert len({s.consortium for s in statuses}) == 1
    assert any("admitted" in m for m in messages)
    shop_floor = "\n".join(messages)
    assert "OPC UA readings from the coating line stored (0 quarantined)" in shop_floor
    assert "1 attested, 1 recorded on-chain" in shop_floor  # the coating verdict
    assert "lab result 0.8123 on-chain" in shop_floor
    assert "EPCIS 2.0 events" in shop_floor
    bundle = json.loads((tmp_path / "attestation-example.json").read_text())
    assert bundle["primaryType"] == "LabResult"
    assert "EMP-7781" not in json.dumps(bundle)  # the analyst stays in the lab's store
    epcis = (tmp_path / "epcis-borealis.json").read_text()
    assert "sensorElementList" in epcis and "TransformationEvent" in epcis
    assert "badge-20931" not in epcis and "EMP-20931" not in epcis

    head = connection.head_block()
    again = run_demo(tmp_path, "embedded", connection, progress=messages.append)
    assert connection.head_block() == head  # nothing left to do: no transaction sent
    assert [s.oracles for s in again] == [s.oracles for s in statuses]


def test_qnode_demo_starts_the_chain_deploys_and_prints_status(
    tmp_path: Path, hardhat_available: None
) -> None:
    run_dir = tmp_path / "chain"
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    command = [
        sys.executable,
        "-m",
        "node",
        "demo",
        "--port",
        str(port),
        "--dir",
        str(tmp_path / "demo"),
        "--run-dir",
        str(run_dir),
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr
        assert f"chainId {LOCAL_CHAIN_ID}" in result.stdout
        assert "Consortium deployed at 0x" in result.stdout
        assert result.stdout.count(", active") == 4
        assert "Delta Assurance admitted" in result.stdout
        rerun = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL
        )
        assert rerun.returncode == 0, rerun.stderr
        assert "Consortium already deployed" in rerun.stdout
    finally:
        LocalChain(run_dir).stop()
