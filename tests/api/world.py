"""A small consortium for the API tests: Aster (the manufacturer, whose API is tested in-process),
Borealis (a supplier, whose API runs on a real loopback port) and Cobalt (a member whose node is
down). One embedded chain, the three contracts, oracles, stores with every record type a passport
shows, private fields in all of them, anchored and attested."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI

from node.anchoring.batcher import Batcher, BatchPolicy
from node.api import create_app
from node.api.access import token_hash
from node.api.serials import new_serial
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection, embedded_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.localnode import free_port
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TransactionSender
from node.keys import hardhat_dev_key
from node.offchain.classification import DEFAULT_RECORD_TYPES
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy
from node.offchain.records import RecordInput
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import Attestor
from node.oracles.digital_link import gtin14, product
from node.runtime import Node
from node.settings import LOCAL_CHAIN_ID, Settings, settings_from_values

T0 = 1_790_000_000_000_000
SECRETS = (
    "EMP-SECRET-77",
    "BADGE-SECRET-88",
    "EMP-SECRET-99",
    "BIO-SECRET-XYZ",
    "ANALYST-SECRET-5",
    "OPERATOR-SECRET-6",
    "INSPECTOR-SECRET-7",
    "ANALYST-SECRET-B",
)
"""Private field values written into the stores: none may appear in any response."""
TOKENS = {"legitimate_interest": "repairer-token-0123456789", "authority": "regulator-token-abc"}
EXTRA_TYPES = {
    "carbon_footprint": {
        "product": "anchored",
        "stage": "anchored",
        "kg_co2e": "anchored",
        "method": "anchored",
    },
    "due_diligence": {
        "subject": "anchored",
        "scheme": "anchored",
        "result": "anchored",
        "auditor": "anchored",
        "auditor_email": "private",
    },
}


GTIN_A = gtin14("950600013435")  # Aster's cells (company prefix 950600)
GTIN_A2 = gtin14("950600099999")  # Aster's electrolyte
GTIN_B = gtin14("401234500001")  # Borealis' cathode material (prefix 4012345)
GTIN_C = gtin14("409876500001")  # Cobalt's separator (prefix 4098765): its node is down
OVEN = "https://id.gs1.org/8004/950600OVEN-1"


@dataclass
class World:
    chain: ChainConnection
    aster: Node
    borealis: Node
    aster_settings: Settings
    borealis_settings: Settings
    borealis_url: str
    serial: str
    serial_pending: str
    weak_serial: str
    lot: str
    records: dict[str, str]
    server: uvicorn.Server

    def aster_app(self, **api: Any) -> FastAPI:
        settings = self.aster_settings
        if api:
            values = settings.model_dump(mode="json")
            values["api"] = {**values["api"], **api}
            settings = settings_from_values(values)
        return create_app(settings, lambda: self.aster)

    def item_path(self, serial: str | None = None) -> str:
        return product(GTIN_A, self.lot, serial or self.serial).uri("")


def _settings(
    base: Path, name: str, role: str, endpoint: str, contracts: dict[str, str], api: dict[str, Any]
) -> Settings:
    return settings_from_values(
        {
            "base_dir": str(base),
            "member": {"name": name, "role": role, "endpoint": endpoint},
            "contracts": contracts,
            "record_types": {**DEFAULT_RECORD_TYPES, **EXTRA_TYPES},
            "api": {"refresh_interval_s": 0, **api},
        }
    )


def build_world(tmp: Path) -> World:
    chain = embedded_chain(LOCAL_CHAIN_ID)
    aster_key, borealis_key, cobalt_key = (hardhat_dev_key(i) for i in range(3))
    aster_sender = TransactionSender(chain, aster_key)
    borealis_sender = TransactionSender(chain, borealis_key)
    port_b, port_c = free_port(), free_port()
    borealis_url = f"http://127.0.0.1:{port_b}"
    founders = [
        Founder(aster_key.address, Role.MANUFACTURER, "Aster Motors", "http://127.0.0.1:1"),
        Founder(borealis_key.address, Role.SUPPLIER, "Borealis Cells", borealis_url),
        Founder(
            cobalt_key.address, Role.SUPPLIER, "Cobalt Separators", f"http://127.0.0.1:{port_c}"
        ),
    ]
    consortium, _ = Consortium.deploy(aster_sender, founders, 1, 3600)
    registry, _ = AnchorRegistry.deploy(aster_sender, consortium.address)
    ledger, _ = QualityLedger.deploy(aster_sender, consortium.address, 1)
    contracts = {
        "consortium": consortium.address,
        "anchor_registry": registry.address,
        "quality_ledger": ledger.address,
    }
    oracles: dict[str, LocalAccount] = {}
    for name, sender in (("aster", aster_sender), ("borealis", borealis_sender)):
        oracle: LocalAccount = Account.create()
        sender.transfer(oracle.address, 10**18)
        Consortium.at(sender, consortium.address).register_oracle(oracle.address)
        oracles[name] = oracle
    aster_settings = _settings(
        tmp / "aster",
        "Aster Motors",
        "manufacturer",
        "http://127.0.0.1:1",
        contracts,
        {
            "company_prefixes": ["950600"],
            "partners": {"4012345": borealis_key.address, "4098765": cobalt_key.address},
            "tokens": [
                {
                    "name": "repair shop",
                    "tier": "legitimate_interest",
                    "sha256": token_hash(TOKENS["legitimate_interest"]),
                },
                {
                    "name": "market surveillance",
                    "tier": "authority",
                    "sha256": token_hash(TOKENS["authority"]),
                },
            ],
            "products": {
                GTIN_A: {
                    "name": "NCM 811 pouch cell",
                    "category": "EV battery cell",
                    "attributes": {"nominal_capacity_ah": 50},
                }
            },
            "peer_timeout_s": 2.0,
        },
    )
    borealis_settings = _settings(
        tmp / "borealis",
        "Borealis Cells",
        "supplier",
        borealis_url,
        contracts,
        {"company_prefixes": ["4012345"], "rate_limit": {"requests_per_s": 1000, "burst": 1000}},
    )
    aster = Node(aster_settings, chain, aster_key)
    borealis = Node(borealis_settings, chain, borealis_key)

    lot = "L42"
    serial, serial_pending = new_serial(), new_serial()
    weak_serial = "SN0001"
    item = product(GTIN_A, lot, serial).canonical_uri()
    item_pending = product(GTIN_A, lot, serial_pending).canonical_uri()
    item_weak = product(GTIN_A, lot, weak_serial).canonical_uri()
    lot_uri = product(GTIN_A, lot).canonical_uri()
    electrolyte = product(GTIN_A2, "E-1").canonical_uri()
    cathode = product(GTIN_B, "CATH-7").canonical_uri()
    separator = product(GTIN_C, "SEP-3").canonical_uri()

    # -- Borealis: its cathode lot, lab-tested, attested and anchored --------------------
    b_store = borealis.store()
    # (lab results need lab co-signatures on QualityLedger: the tests use inspections)
    [b_lab] = b_store.add_records(
        [
            RecordInput(
                "inspection",
                {
                    "part_id": cathode,
                    "characteristic": "Ni fraction",
                    "value": 0.8,
                    "unit": "P1",
                    "verdict": "pass",
                    "inspector_id": "ANALYST-SECRET-B",
                },
                T0,
            )
        ]
    )
    attest_and_anchor(
        b_store, borealis, ledger.address, registry.address, oracles["borealis"], chain
    )

    # -- Aster ------------------------------------------------------------------------
    store = aster.store()
    curve = store.blobs.put(json.dumps({"t_s": [0, 0.5, 1.0], "c": [118.9, 120.1, 120.0]}).encode())
    ids: dict[str, str] = {}
    [setpoint] = store.add_records(
        [
            RecordInput(
                "setpoint",
                {
                    "equipment": OVEN,
                    "parameter": "bake_temp",
                    "value": 120,
                    "unit": "CEL",
                    "reason": "spec rev B",
                    "operator_id": "OPERATOR-SECRET-6",
                },
                T0 - 10_000_000,
            )
        ]
    )
    ids["setpoint"] = setpoint.record_id
    genealogies = [
        Genealogy(
            output,
            (
                GenealogyInput(cathode, InputKind.MATERIAL_LOT),
                GenealogyInput(electrolyte, InputKind.MATERIAL_LOT),
                GenealogyInput(separator, InputKind.MATERIAL_LOT),
            ),
            T0 + i,
            process_step="cell-assembly",
            equipment=OVEN,
            operator_id="EMP-SECRET-77",
        )
        for i, output in enumerate((item, item_pending, item_weak))
    ]
    made = record_genealogy(store, genealogies)
    ids["genealogy"] = made[0].record_id
    stored = store.add_records(
        [
            RecordInput(
                "bake_curve",
                {
                    "cell_id": item,
                    "sampling_ms": 500,
                    "curve_blob": curve,
                    "operator_badge": "BADGE-SECRET-88",
                },
                T0 + 10,
            ),
            RecordInput(
                "inspection",
                {
                    "part_id": item,
                    "characteristic": "capacity_ah",
                    "value": 50.2,
                    "unit": "AMH",
                    "verdict": "pass",
                    "inspector_id": "EMP-SECRET-99",
                    "biometric_template": "BIO-SECRET-XYZ",
                },
                T0 + 20,
            ),
            RecordInput(
                "inspection",
                {
                    "part_id": electrolyte,
                    "characteristic": "LiPF6 content",
                    "value": 12.5,
                    "unit": "P1",
                    "verdict": "pass",
                    "inspector_id": "ANALYST-SECRET-5",
                },
                T0 + 30,
            ),
            RecordInput(
                "carbon_footprint",
                {
                    "product": lot_uri,
                    "stage": "cradle-to-gate",
                    "kg_co2e": 61.5,
                    "method": "PEF 3.1",
                },
                T0 + 40,
            ),
            RecordInput(
                "due_diligence",
                {
                    "subject": cathode,
                    "scheme": "OECD DDG",
                    "result": "conform",
                    "auditor": "Delta Assurance",
                    "auditor_email": "auditor@example.com",
                },
                T0 + 50,
            ),
            RecordInput(
                "incoming_lot",
                {
                    "supplier": borealis_key.address,
                    "part": "cathode",
                    "characteristic": "ni_ratio",
                    "lot": cathode,
                    "value": 0.8,
                    "unit": "P1",
                    "lsl": 0.78,
                    "usl": 0.82,
                    "inspector_id": "INSPECTOR-SECRET-7",
                },
                T0 + 60,
            ),
        ]
    )
    for name, record in zip(
        (
            "bake_curve",
            "inspection",
            "electrolyte_inspection",
            "carbon_footprint",
            "due_diligence",
            "incoming_lot",
        ),
        stored,
        strict=True,
    ):
        ids[name] = record.record_id
    attest_and_anchor(store, aster, ledger.address, registry.address, oracles["aster"], chain)
    # one more inspection, neither signed nor anchored yet: "pending"
    [late] = store.add_records(
        [
            RecordInput(
                "inspection",
                {
                    "part_id": item,
                    "characteristic": "internal_resistance_mohm",
                    "value": 0.9,
                    "unit": "C27",
                    "verdict": "pass",
                    "inspector_id": "EMP-SECRET-99",
                },
                T0 + 70,
            )
        ]
    )
    ids["pending_inspection"] = late.record_id
    ids["borealis_lab"] = b_lab.record_id

    server = serve(create_app(borealis_settings, lambda: borealis), port_b)
    return World(
        chain,
        aster,
        borealis,
        aster_settings,
        borealis_settings,
        borealis_url,
        serial,
        serial_pending,
        weak_serial,
        lot,
        ids,
        server,
    )


def attest_and_anchor(
    store: Any, node: Node, ledger: str, registry: str, oracle: LocalAccount, chain: ChainConnection
) -> None:
    oracle_sender = TransactionSender(chain, oracle)
    as_ledger = QualityLedger.at(node.sender, ledger)
    attestor = Attestor(store, AttestationSigner(oracle, as_ledger.domain()), as_ledger)
    attestor.attest_unattested()
    outcome = attestor.submit_pending()
    assert outcome.failed == (), outcome.failed
    batcher = Batcher(store, node.address, BatchPolicy(4096, 5.0))
    batcher.close_batches(force=True)
    batcher.anchor_pending(AnchorRegistry.at(oracle_sender, registry))


def serve(app: FastAPI, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("a test API did not start")
        time.sleep(0.01)
    return server
