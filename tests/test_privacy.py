"""Private and biometric data never reach a transaction, an event or a log, in a full run: the
demo consortium provisioned in-process (embedded chain), the lab admitted, a lab result co-signed
through the demo's lab desk, inspections attested and anchored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.chain.connection import embedded_chain
from node.chain.localnode import free_port
from node.demo_members import (
    CATHODE,
    CELLS,
    DEMO_PASSWORD,
    LAB,
    MEMBERS,
    REFINER,
    Layout,
    admit,
    provision,
    register_oracle,
    station_account,
)
from node.demo_records import LabDesk, Lot, genealogy, lab_result, store_genealogy
from node.keys import read_keystore
from node.offchain.records import RecordInput
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import Attestor
from node.settings import LOCAL_CHAIN_ID

BIOMETRIC = "9f3a77c1e2d4b6a8" * 8  # a fingerprint template, hex
PRIVATE_VALUES = ["badge-20931", "emp-4711-Zoë", BIOMETRIC, "ANALYST-0097-Mei"]


def test_no_private_value_reaches_the_chain_or_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connection = embedded_chain(LOCAL_CHAIN_ID)
    layout = Layout.new(
        tmp_path,
        "embedded",
        "mqtt://127.0.0.1:1",
        {m.key: free_port() for m in MEMBERS},
        "opc.tcp://127.0.0.1:4840",
        "http://127.0.0.1:9/purchase-orders",
    )
    members = provision(layout, {}, connection)
    try:
        cells, refiner, lab = members.node(CELLS), members.node(REFINER), members.node(LAB)
        admit(cells, refiner, lab, LAB)
        oracle = register_oracle(lab)
        desk = LabDesk(read_keystore(lab.oracle_keystore(oracle), DEMO_PASSWORD))
        sample = Lot(REFINER.product_gtin or "", "LC-1").uri
        [(cosigned, _)] = desk.record(
            refiner,
            station_account(refiner),
            [lab_result(sample, "Li2CO3 assay", 99.6, "P1", "pass", "ANALYST-0097-Mei")],
        )
        assert refiner.quality_ledger().lab_result(cosigned.record_id).co_signers == (oracle,)
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
        made = Lot(CATHODE.product_gtin or "", "NCM-1").uri
        store_genealogy(refiner.store(), [genealogy(made, [sample], operator="badge-20931")])
        for node in (lab, refiner):
            batcher = node.batcher()
            batcher.close_batches(force=True)
            assert batcher.anchor_pending(node.anchor_registry(node.oracle_sender()))
        ledger = lab.quality_ledger()  # inspections are critical: their public fields go on-chain
        attestor = Attestor(
            lab.store(), AttestationSigner(lab.oracle_sender().account, ledger.domain()), ledger
        )
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
        # the values are in the stores, where they belong
        private = lab.store().private_part(inspections[0].record_id)
        assert private is not None and private.values["biometric_template"] == BIOMETRIC
        analyst = refiner.store().private_part(cosigned.record_id)
        assert analyst is not None and analyst.values["analyst_id"] == "ANALYST-0097-Mei"
    finally:
        members.close()
