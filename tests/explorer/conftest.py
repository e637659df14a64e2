"""One small consortium on the in-process chain, with something of every kind to explore: three
members (tests/control/plant.py), an oracle key registered and revoked, an AnchorRegistry with an
anchored batch, a QualityLedger with a recorded inspection, genealogy records, and a rule's
decision whose supplier hold reached the chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.anchoring.batcher import Batch
from node.anchoring.proofs import build_bundle
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import embedded_chain
from node.chain.quality_ledger import QualityLedger
from node.control.decisions import Decision
from node.explorer import Explorer
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy
from node.offchain.records import RecordInput, StoredRecord
from node.oracles.attestation import Attestation, AttestationKind, AttestationSigner
from node.oracles.digital_link import asset, product
from node.runtime import Deployment, Node
from node.settings import LOCAL_CHAIN_ID
from tests.control.plant import Plant, build_plant, hold_by_rule

OBSERVED = 1_795_000_000_000_000
CELL = product("09506000134352", serial="CELL0001").uri()
CATHODE = product("09506000134352", lot="CATH-7").uri()
PRECURSOR = product("04006381333931", lot="NCM811-22").uri()
ELECTROLYTE = product("00036000291452", lot="EL-9").uri()
COATER = asset("4000001111-coater-3").uri()


@dataclass
class World:
    plant: Plant
    aster: Node
    explorer: Explorer
    registry: AnchorRegistry
    ledger: QualityLedger
    batch: Batch
    anchored: list[StoredRecord]
    bundle: dict[str, object]
    attestation: Attestation
    oracle: LocalAccount
    revoked_oracle: str
    decision: Decision
    hold_tx: str


def _inspections(count: int) -> list[RecordInput]:
    return [
        RecordInput(
            "inspection",
            {
                "part_id": f"P-{i}",
                "characteristic": "bore",
                "value": 10.01 + i / 1000,
                "unit": "MMT",
                "verdict": "pass",
                "inspector_id": "emp-4711",
            },
            OBSERVED + i,
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("explorer")
    chain = embedded_chain(LOCAL_CHAIN_ID)
    plant = build_plant(root, "embedded", chain)
    try:
        yield _populate(plant, root)
    finally:
        plant.close()


def _populate(plant: Plant, root: Path) -> World:
    aster, borealis = plant.nodes["aster"], plant.nodes["borealis"]
    consortium = aster.consortium()

    # Borealis rotates out a key: one revoked oracle in the listing.
    spare: LocalAccount = Account.create()
    borealis.consortium().register_oracle(spare.address)
    borealis.consortium().revoke_oracle(spare.address)

    # Anchoring: a batch of five inspections.
    registry, receipt = AnchorRegistry.deploy(aster.sender, consortium.address)
    ledger, ledger_receipt = QualityLedger.deploy(aster.sender, consortium.address, 1)
    for node in plant.nodes.values():
        node.record_deployment("AnchorRegistry", Deployment.of(registry.address, receipt))
        node.record_deployment("QualityLedger", Deployment.of(ledger.address, ledger_receipt))
    store = aster.store()
    anchored = store.add_records(_inspections(5))
    batcher = aster.batcher()
    batcher.close_batches(force=True)
    oracle_sender = aster.oracle_sender()
    (batch,) = batcher.anchor_pending(aster.anchor_registry(oracle_sender))
    bundle = build_bundle(store, batcher, anchored[2].record_id)

    # An inspection attested by Aster's oracle and recorded on the ledger.
    oracle = oracle_sender.account
    domain = ledger.domain()
    head = aster.connection.w3.eth.get_block("latest")
    attestation = AttestationSigner(oracle, domain).sign(
        AttestationKind.INSPECTION,
        {
            "recordId": anchored[0].record_id,
            "subject": CELL,
            "characteristic": "coating_thickness",
            "value": Decimal("85.20"),
            "unit": "4H",
            "verdict": "pass",
            "observedAtUs": OBSERVED,
            "contentHash": anchored[0].content_hash,
            "nonce": ledger.nonce_of(oracle.address),
            "deadline": int(head["timestamp"]) + 3600,
        },
    )
    ledger.record(attestation)

    # Genealogy: a cell from a cathode lot (coated on a coater) and an electrolyte lot.
    record_genealogy(
        store,
        [
            Genealogy(
                CELL,
                (
                    GenealogyInput(CATHODE, InputKind.PARENT_LOT),
                    GenealogyInput(ELECTROLYTE, InputKind.MATERIAL_LOT),
                ),
                OBSERVED,
                process_step="cell_assembly",
                operator_id="op-17",
            ),
            Genealogy(
                CATHODE,
                (GenealogyInput(PRECURSOR, InputKind.MATERIAL_LOT),),
                OBSERVED,
                process_step="cathode_coating",
                equipment=COATER,
            ),
        ],
    )

    # A decision: five lots over the USL hold the supplier, through SupplierQuality.
    decision, hold_tx = hold_by_rule(aster, borealis.address, oracle_sender, root)
    return World(
        plant=plant,
        aster=aster,
        explorer=Explorer.for_node(aster),
        registry=registry,
        ledger=ledger,
        batch=batch,
        anchored=anchored,
        bundle=bundle,
        attestation=attestation,
        oracle=oracle,
        revoked_oracle=spare.address,
        decision=decision,
        hold_tx=hold_tx,
    )
