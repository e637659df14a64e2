"""A consortium for the trace tests: a lithium refiner, a cathode supplier and a cell maker, whose
genealogy crosses all three, plus a separator supplier whose node is down.

- **Rhea Lithium** (refiner, prefix 4098765): crystallizers CRYST-3 and CRYST-1; CRYST-3's PID
  gain (``pid_kp``, read every 30 s by device ``4098765CRYST-3/pid``) is constant at 2.4 until
  :attr:`World.drift_onset_us` (a millisecond timestamp), then ramps up; the temperature the
  loop controls runs 6 °C higher from the same reading on; lithium lot LI-1 is made on CRYST-3
  five hours later, LI-0 on CRYST-1; two readings of CRYST-3 were quarantined.
- **Sierra Cathodes** (cathode supplier, prefix 4012345): cathode lot CATH-7 from LI-1 and its own
  precursor PRE-3, calcined in KILN-2 (a rule fired on the kiln's temperature); CATH-7's Li/Me
  ratio inspection failed. CATH-8 is made from LI-0.
- **Cygnus Cells** (cell maker, prefix 950600): cell lot L-42 from CATH-7, its own electrolyte
  EL-1 and the down member's separator SEP-3, coated on COATER-1; L-42's capacity retention at
  -20 °C failed (the symptom). Item SER1 is known only by its identifier (serial of lot L-42),
  item SER2 has its own genealogy record. Cygnus holds Sierra (an open 8D case).
- **Delta Separators** (prefix 4055555): registered, its node never answers.

Sierra and Rhea serve their APIs on loopback ports (uvicorn, in threads); Cygnus traces in-process.
Every store holds private values (:data:`SECRETS`); every record is anchored and the critical
ones attested. One embedded chain.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import Response

from node.api import create_app
from node.api.access import token_hash
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection, embedded_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.localnode import free_port
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TransactionSender
from node.chain.supplier_quality import deploy_supplier_quality
from node.control.decisions import Decision
from node.keys import hardhat_dev_key
from node.offchain.classification import DEFAULT_RECORD_TYPES
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy
from node.offchain.records import RecordInput
from node.offchain.store import Store
from node.oracles.digital_link import asset, gtin14, product
from node.oracles.quarantine import Quarantine, QuarantineEntry
from node.runtime import Node
from node.settings import LOCAL_CHAIN_ID, Settings, settings_from_values
from tests.api.world import attest_and_anchor, serve

HOUR = 3600 * 1_000_000
T0 = 1_790_000_000_000_000
"""When cell lot L-42 was made."""
START = T0 - 30 * HOUR
SECRETS = (
    "OP-SECRET-RHEA-1",
    "OP-SECRET-SIERRA-2",
    "OP-SECRET-CYGNUS-3",
    "INSPECTOR-SECRET-4",
    "BIO-SECRET-5",
    "ANALYST-SECRET-6",
    "SETPOINT-OPERATOR-SECRET-7",
)
"""Private field values written into the stores: none may appear in any trace output."""
TRACE_TOKEN = "trace-li-token-0123456789"
AUTHORITY_TOKEN = "trace-authority-token-abcdef"


GTIN_CELL = gtin14("950600013435")
GTIN_ELECTROLYTE = gtin14("950600099999")
GTIN_CATHODE = gtin14("401234500001")
GTIN_PRECURSOR = gtin14("401234500002")
GTIN_LIOH = gtin14("409876500001")
GTIN_BRINE = gtin14("409876500002")
GTIN_SEPARATOR = gtin14("405555500001")

SERIAL_1 = "7Q2K9D4M8X1C5V3B"
SERIAL_2 = "9H3J5K7M2N4P6Q8R"
ITEM_1 = product(GTIN_CELL, "L-42", SERIAL_1).canonical_uri()
ITEM_2 = product(GTIN_CELL, "L-42", SERIAL_2).canonical_uri()
CELL_LOT = product(GTIN_CELL, "L-42").canonical_uri()
ELECTROLYTE = product(GTIN_ELECTROLYTE, "EL-1").canonical_uri()
SEPARATOR = product(GTIN_SEPARATOR, "SEP-3").canonical_uri()
CATHODE = product(GTIN_CATHODE, "CATH-7").canonical_uri()
CATHODE_8 = product(GTIN_CATHODE, "CATH-8").canonical_uri()
PRECURSOR = product(GTIN_PRECURSOR, "PRE-3").canonical_uri()
LITHIUM = product(GTIN_LIOH, "LI-1").canonical_uri()
LITHIUM_0 = product(GTIN_LIOH, "LI-0").canonical_uri()
BRINE = product(GTIN_BRINE, "BR-1").canonical_uri()
CRYSTALLIZER = asset("4098765CRYST-3").canonical_uri()
CRYSTALLIZER_1 = asset("4098765CRYST-1").canonical_uri()
KILN = asset("4012345KILN-2").canonical_uri()
COATER = asset("950600COATER-1").canonical_uri()
PID_DEVICE = "4098765CRYST-3/pid"
SAMPLE_US = 30_000_000
DRIFT_INDEX = 2640
"""The first drifted reading of CRYST-3's gain (22 h after START: 8 h before L-42)."""


def sample_time(index: int) -> int:
    """Readings every 30 s, each a few milliseconds late (so the onset is a ms timestamp)."""
    return START + index * SAMPLE_US + ((index * 7919) % 997) * 1000


@dataclass
class World:
    chain: ChainConnection
    nodes: dict[str, Node]
    settings: dict[str, Settings]
    addresses: dict[str, str]
    urls: dict[str, str]
    servers: list[uvicorn.Server] = field(default_factory=list)

    @property
    def drift_onset_us(self) -> int:
        return sample_time(DRIFT_INDEX)

    @property
    def tokens(self) -> dict[str, str]:
        return {self.addresses[n]: TRACE_TOKEN for n in ("sierra", "rhea")}

    def close(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for node in self.nodes.values():
            node.close()


def _settings(
    base: Path, name: str, role: str, endpoint: str, contracts: dict[str, str], api: dict[str, Any]
) -> Settings:
    tokens = [
        {
            "name": "consortium trace",
            "tier": "legitimate_interest",
            "sha256": token_hash(TRACE_TOKEN),
        },
        {"name": "auditor", "tier": "authority", "sha256": token_hash(AUTHORITY_TOKEN)},
    ]
    return settings_from_values(
        {
            "base_dir": str(base),
            "member": {"name": name, "role": role, "endpoint": endpoint},
            "contracts": contracts,
            "record_types": DEFAULT_RECORD_TYPES,
            "api": {
                "refresh_interval_s": 0,
                "tokens": tokens,
                "rate_limit": {"requests_per_s": 10_000, "burst": 10_000},
                "peer_timeout_s": 2.0,
                **api,
            },
        }
    )


def build_world(tmp: Path) -> World:
    chain = embedded_chain(LOCAL_CHAIN_ID)
    keys_ = {
        name: hardhat_dev_key(i) for i, name in enumerate(("cygnus", "sierra", "rhea", "delta"))
    }
    addresses = {name: key.address for name, key in keys_.items()}
    ports = {name: free_port() for name in keys_}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    senders = {name: TransactionSender(chain, key) for name, key in keys_.items()}
    founders = [
        Founder(addresses["cygnus"], Role.MANUFACTURER, "Cygnus Cells", urls["cygnus"]),
        Founder(addresses["sierra"], Role.SUPPLIER, "Sierra Cathodes", urls["sierra"]),
        Founder(addresses["rhea"], Role.SUPPLIER, "Rhea Lithium", urls["rhea"]),
        Founder(addresses["delta"], Role.SUPPLIER, "Delta Separators", urls["delta"]),
    ]
    consortium, _ = Consortium.deploy(senders["cygnus"], founders, 1, 3600)
    registry, _ = AnchorRegistry.deploy(senders["cygnus"], consortium.address)
    ledger, _ = QualityLedger.deploy(senders["cygnus"], consortium.address, 1)
    pair = deploy_supplier_quality(senders["cygnus"], consortium.address)
    contracts = {
        "consortium": consortium.address,
        "anchor_registry": registry.address,
        "quality_ledger": ledger.address,
        "supplier_quality": pair.supplier_quality.address,
        "corrective_action": pair.corrective_action.address,
    }
    oracles: dict[str, LocalAccount] = {}
    for name in ("cygnus", "sierra", "rhea"):
        oracle: LocalAccount = Account.create()
        senders[name].transfer(oracle.address, 10**18)
        Consortium.at(senders[name], consortium.address).register_oracle(oracle.address)
        oracles[name] = oracle
    settings = {
        "cygnus": _settings(
            tmp / "cygnus",
            "Cygnus Cells",
            "manufacturer",
            urls["cygnus"],
            contracts,
            {
                "company_prefixes": ["950600"],
                "partners": {"4012345": addresses["sierra"], "4055555": addresses["delta"]},
            },
        ),
        "sierra": _settings(
            tmp / "sierra",
            "Sierra Cathodes",
            "supplier",
            urls["sierra"],
            contracts,
            {"company_prefixes": ["4012345"], "partners": {"4098765": addresses["rhea"]}},
        ),
        "rhea": _settings(
            tmp / "rhea",
            "Rhea Lithium",
            "supplier",
            urls["rhea"],
            contracts,
            {"company_prefixes": ["4098765"]},
        ),
    }
    nodes = {name: Node(settings[name], chain, keys_[name]) for name in settings}
    _rhea(nodes["rhea"].store())
    _sierra(nodes["sierra"].store())
    _cygnus(nodes["cygnus"].store(), addresses["sierra"])
    for name, node in nodes.items():
        attest_and_anchor(
            node.store(), node, ledger.address, registry.address, oracles[name], chain
        )
    pair.supplier_quality.place_hold(addresses["sierra"], b"\x11" * 32)
    world = World(chain, nodes, settings, addresses, urls)
    for name in ("sierra", "rhea"):
        node = nodes[name]
        world.servers.append(serve(create_app(settings[name], lambda node=node: node), ports[name]))
    return world


# -- the members' data -----------------------------------------------------------------------


def _measurements(
    device: str, count: int, every: int, points: Callable[[int], list[dict[str, Any]]]
) -> list[RecordInput]:
    return [
        RecordInput(
            "measurement",
            {
                "device": device,
                "seq": index + 1,
                "sent_at": str(sample_time(index * every)),
                "source": "opcua://plc.local",
                "quality": "good",
                "points": points(index),
            },
            sample_time(index * every),
        )
        for index in range(count)
    ]


def _rhea(store: Store) -> None:
    rng = random.Random(42)

    def gain(index: int) -> list[dict[str, Any]]:
        kp = 2.4 if index < DRIFT_INDEX else 2.4 + 0.0015 * (index - DRIFT_INDEX + 1)
        overshoot = 0.0 if index < DRIFT_INDEX else 6.0  # the over-tuned loop's answer
        return [
            {"q": "pid_kp", "v": round(kp, 6), "u": "C62"},
            {"q": "temperature", "v": round(rng.gauss(45.0, 0.3) + overshoot, 3), "u": "CEL"},
        ]

    def steady(index: int) -> list[dict[str, Any]]:
        return [
            {"q": "pid_kp", "v": 2.1, "u": "C62"},
            {"q": "temperature", "v": round(rng.gauss(44.0, 0.3), 3), "u": "CEL"},
        ]

    store.add_records(_measurements(PID_DEVICE, 3600, 1, gain))
    store.add_records(_measurements("4098765CRYST-1/pid", 3600, 1, steady))
    store.add_records(
        [
            RecordInput(
                "setpoint",
                {
                    "equipment": CRYSTALLIZER,
                    "parameter": "pid_kp",
                    "value": 2.4,
                    "unit": "C62",
                    "reason": "commissioning",
                    "operator_id": "SETPOINT-OPERATOR-SECRET-7",
                },
                START - HOUR,
            )
        ]
    )
    record_genealogy(
        store,
        [
            Genealogy(
                LITHIUM,
                (GenealogyInput(BRINE, InputKind.MATERIAL_LOT),),
                T0 - 5 * HOUR,
                process_step="crystallization",
                equipment=CRYSTALLIZER,
                operator_id="OP-SECRET-RHEA-1",
            ),
            Genealogy(
                LITHIUM_0,
                (GenealogyInput(BRINE, InputKind.MATERIAL_LOT),),
                T0 - 5 * HOUR,
                process_step="crystallization",
                equipment=CRYSTALLIZER_1,
                operator_id="OP-SECRET-RHEA-1",
            ),
        ],
    )
    Quarantine(store).add(
        [
            QuarantineEntry(
                sample_time(DRIFT_INDEX + 40 + i),
                "opcua://plc.local",
                PID_DEVICE,
                "out_of_range",
                "pid_kp beyond its physical range",
                b'{"secret": "none"}',
            )
            for i in range(2)
        ]
    )


def _sierra(store: Store) -> None:
    rng = random.Random(7)
    store.add_records(
        _measurements(
            "4012345KILN-2/zone1",
            1800,
            2,
            lambda _i: [{"q": "temperature", "v": round(rng.gauss(780.0, 1.5), 2), "u": "CEL"}],
        )
    )
    record_genealogy(
        store,
        [
            Genealogy(
                CATHODE,
                (
                    GenealogyInput(LITHIUM, InputKind.MATERIAL_LOT),
                    GenealogyInput(PRECURSOR, InputKind.MATERIAL_LOT),
                ),
                T0 - 2 * HOUR,
                process_step="calcination",
                equipment=KILN,
                operator_id="OP-SECRET-SIERRA-2",
            ),
            Genealogy(
                CATHODE_8,
                (GenealogyInput(LITHIUM_0, InputKind.MATERIAL_LOT),),
                T0 - 2 * HOUR,
                process_step="calcination",
                equipment=KILN,
                operator_id="OP-SECRET-SIERRA-2",
            ),
        ],
    )
    scope = '{"device":"4012345KILN-2/zone1","quantity":"temperature"}'
    decision = Decision(
        rule_id="kiln-temperature-cv",
        rule_hash="0x" + "ab" * 32,
        fired_at_us=T0 - 3 * HOUR,
        inputs=(),
        thresholds={"condition": {"cv": {"quantity": "temperature"}}},
        computed={"conditions": {"when": {"holds": True, "scope": scope, "inputs": [0, 0]}}},
        action={"kind": "compensate", "line": "kiln", "parameter": "temp", "delta": -2.0},
        signer=None,
    )
    store.add_records(
        [
            decision.to_record_input(),
            RecordInput(
                "inspection",
                {
                    "part_id": CATHODE,
                    "characteristic": "li_me_ratio",
                    "value": 1.06,
                    "unit": "C62",
                    "verdict": "fail",
                    "inspector_id": "INSPECTOR-SECRET-4",
                },
                T0 - HOUR - HOUR // 2,
            ),
        ]
    )


def _cygnus(store: Store, sierra: str) -> None:
    rng = random.Random(3)
    store.add_records(
        _measurements(
            "950600COATER-1/thickness",
            1800,
            2,
            lambda _i: [{"q": "thickness", "v": round(rng.gauss(98.0, 0.4), 3), "u": "4H"}],
        )
    )
    record_genealogy(
        store,
        [
            Genealogy(
                CELL_LOT,
                (
                    GenealogyInput(CATHODE, InputKind.MATERIAL_LOT),
                    GenealogyInput(ELECTROLYTE, InputKind.MATERIAL_LOT),
                    GenealogyInput(SEPARATOR, InputKind.MATERIAL_LOT),
                ),
                T0,
                process_step="coating",
                equipment=COATER,
                operator_id="OP-SECRET-CYGNUS-3",
            ),
            Genealogy(
                ITEM_2,
                (GenealogyInput(CELL_LOT, InputKind.PARENT_LOT),),
                T0 + HOUR,
                process_step="formation",
                operator_id="OP-SECRET-CYGNUS-3",
            ),
        ],
    )
    store.add_records(
        [
            RecordInput(
                "inspection",
                {
                    "part_id": CELL_LOT,
                    "characteristic": "capacity_retention_-20C",
                    "value": 71.5,
                    "unit": "P1",
                    "verdict": "fail",
                    "inspector_id": "INSPECTOR-SECRET-4",
                    "biometric_template": "BIO-SECRET-5",
                },
                T0 + 48 * HOUR,
            ),
            RecordInput(
                "inspection",
                {
                    "part_id": ITEM_1,
                    "characteristic": "capacity_ah",
                    "value": 50.1,
                    "unit": "AMH",
                    "verdict": "pass",
                    "inspector_id": "INSPECTOR-SECRET-4",
                },
                T0 + 2 * HOUR,
            ),
            RecordInput(
                "incoming_lot",
                {
                    "supplier": sierra,
                    "part": "cathode",
                    "characteristic": "ni_ratio",
                    "lot": CATHODE,
                    "value": 0.84,
                    "unit": "P1",
                    "lsl": 0.78,
                    "usl": 0.82,
                    "inspector_id": "ANALYST-SECRET-6",
                },
                T0 - HOUR,
            ),
        ]
    )


# -- servers ---------------------------------------------------------------------------------


def proxy(target: str, rewrite: Callable[[str, dict[str, Any]], dict[str, Any]]) -> FastAPI:
    """An app forwarding every POST to ``target`` and rewriting the JSON answers with
    ``rewrite(path, answer)``: a member that serves data which does not verify."""
    app = FastAPI()

    @app.post("/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{target}/{path}",
                content=await request.body(),
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type")
                },
            )
        if answer.status_code != 200:
            return Response(answer.content, status_code=answer.status_code)
        body = rewrite("/" + path, orjson.loads(answer.content))
        return Response(orjson.dumps(body), media_type="application/json")

    return app
