"""Private and biometric data never reach a transaction, an event or a log, in a full run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.chain.connection import embedded_chain
from node.demo import DEMO_PASSWORD, FOUNDERS, member_dir, run_demo
from node.offchain.records import RecordInput
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import Attestor
from node.runtime import Node
from node.settings import LOCAL_CHAIN_ID, load_settings

BIOMETRIC = "9f3a77c1e2d4b6a8" * 8  # a fingerprint template, hex
PRIVATE_VALUES = ["badge-20931", "emp-4711-Zoë", BIOMETRIC]


def test_no_private_value_reaches_the_chain_or_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = embedded_chain(LOCAL_CHAIN_ID)
    run_demo(tmp_path, "embedded", connection)
    settings = load_settings(member_dir(tmp_path, FOUNDERS[2]) / "qnode.toml")
    lab = Node.open(settings, DEMO_PASSWORD, connection)
    inspections = lab.store().add_records(
        [
            RecordInput(
                "inspection",
                {
                    "part_id": f"CELL-{i}",
                    "characteristic": "NCM ratio",
                    "value": 0.811,
                    "unit": "1",
                    "verdict": "pass",
                    "inspector_id": "emp-4711-Zoë",
                    "biometric_template": BIOMETRIC,
                },
                1_795_000_000_000_000 + i,
            )
            for i in range(50)
        ]
    )
    batcher = lab.batcher()
    batcher.close_batches(force=True)
    assert batcher.anchor_pending(lab.anchor_registry(lab.oracle_sender()))
    ledger = lab.quality_ledger()  # inspections are critical: their public fields go on-chain
    oracle = AttestationSigner(lab.oracle_sender().account, ledger.domain())
    attestor = Attestor(lab.store(), oracle, ledger)
    attestor.attest(inspections)
    assert len(attestor.submit_pending().confirmed) == 50

    w3 = connection.w3
    payloads: list[bytes] = []
    for number in range(w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            payloads.append(bytes(tx.get("input", tx.get("data", b""))))  # type: ignore[union-attr]
            receipt = w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
            for log in receipt["logs"]:
                payloads.append(bytes(log["data"]))
                payloads.extend(bytes(topic) for topic in log["topics"])
    assert len(payloads) > 20 and any(len(p) > 4000 for p in payloads)  # deployments included
    chain_bytes = b"".join(payloads)
    for value in PRIVATE_VALUES:
        encoded = value.encode()
        assert encoded not in chain_bytes, value
        if all(c in "0123456789abcdef" for c in value):
            assert bytes.fromhex(value) not in chain_bytes, value
        assert value not in caplog.text
    # the values are in the store, where they belong
    private = lab.store().private_part(inspections[0].record_id)
    assert private is not None and private.values["biometric_template"] == BIOMETRIC
