"""The local consortium demo: three founding members, M-of-N admission of a fourth, oracle keys.

It runs against any chain on the local chainId (the Hardhat node of ``scripts/chain`` or the
embedded chain) using Hardhat's public demo accounts, and is idempotent: run it again and it
reuses the members and the deployed contract, redeploying only when the chain lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node.anchoring.proofs import build_bundle, verify_bundle
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium, Founder, Role
from node.chain.quality_ledger import QualityLedger
from node.errors import AttestationError
from node.keys import hardhat_dev_key
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy, upstream
from node.offchain.records import RecordInput
from node.offchain.store import now_us
from node.oracles.attestation import AttestationSigner
from node.oracles.attestation import verify_bundle as verify_attestation
from node.oracles.attestor import Attestor
from node.oracles.digital_link import asset, check_digit, product
from node.oracles.epcis import export
from node.oracles.metrics import MetricsSnapshot
from node.oracles.simulators.coating_plc import CoatingLinePlc, PlcConfig
from node.provisioning import CONFIG_FILE, MemberSpec, init_member
from node.runtime import Deployment, Node, NodeStatus
from node.service import NodeService, ServiceOptions, configured_sources
from node.settings import LOCAL_CHAIN_ID, OracleSettings, load_settings

DEMO_PASSWORD = "qnode-demo"
DEMO_KDF_ITERATIONS = 2**14
DEMO_THRESHOLD = 2
DEMO_PROPOSAL_TTL = 7 * 24 * 3600
ORACLE_FUNDING_WEI = 10**18
SAMPLE_RECORDS = 1000
LINE_SECONDS = 3.0
CELL_GTIN = "0950600013435" + check_digit("0950600013435")
CATHODE_GTIN = "0950600099999" + check_digit("0950600099999")
CELL_LOT = product(CELL_GTIN, lot="L2611").uri()
CATHODE_LOT = product(CATHODE_GTIN, lot="NCM811-0457").uri()


@dataclass(frozen=True)
class DemoMember:
    name: str
    role: str
    dev_account: int
    port: int

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


FOUNDERS = (
    DemoMember("Aster Motors", "manufacturer", 0, 8601),
    DemoMember("Borealis Cells", "supplier", 1, 8602),
    DemoMember("Cobalt Test Lab", "lab", 2, 8603),
)
NEWCOMER = DemoMember("Delta Assurance", "auditor", 3, 8604)

Progress = Callable[[str], None]


def run_demo(
    root: Path,
    rpc_url: str,
    connection: ChainConnection | None = None,
    progress: Progress = lambda _message: None,
) -> list[NodeStatus]:
    """Bring the demo consortium to its full state on the chain at ``rpc_url``; return statuses."""
    nodes = [_open_member(root, m, rpc_url, connection) for m in (*FOUNDERS, NEWCOMER)]
    founders, newcomer = nodes[:3], nodes[3]
    consortium, fresh = _ensure_consortium(founders, progress)
    if fresh:  # a new chain: what the stores anchored before went with the old one
        for node in nodes:
            _clear_store(node)
    registry = _ensure_registry(founders[0], progress)
    for node in nodes[1:]:
        node.record_deployment("Consortium", consortium)
        node.record_deployment("AnchorRegistry", registry)
    _ensure_admitted(founders, newcomer, progress)
    for node in nodes:
        _ensure_oracle(node, progress)
    _anchor_sample(founders[0], root, progress)
    ledger = _ensure_ledger(founders[0], progress)
    for node in nodes[1:]:
        node.record_deployment("QualityLedger", ledger)
    if not _has_measurements(founders[1]):
        _run_coating_line(founders[1], progress)
        _attest_lab_result(founders[2], root, progress)
        _record_genealogy_and_export(founders[1], root, progress)
    return [node.status() for node in nodes]


def member_dir(root: Path, member: DemoMember) -> Path:
    return root / member.slug


def _open_member(
    root: Path, member: DemoMember, rpc_url: str, connection: ChainConnection | None
) -> Node:
    directory = member_dir(root, member)
    config = directory / CONFIG_FILE
    if config.exists():
        settings = load_settings(config)
    else:
        spec = MemberSpec(
            name=member.name,
            role=member.role,
            endpoint=f"http://127.0.0.1:{member.port}",
            rpc_url=rpc_url,
            chain_id=LOCAL_CHAIN_ID,
        )
        settings = init_member(
            directory, spec, DEMO_PASSWORD, hardhat_dev_key(member.dev_account), DEMO_KDF_ITERATIONS
        )
    return Node.open(settings, DEMO_PASSWORD, connection)


def _ensure_consortium(founders: list[Node], progress: Progress) -> tuple[Deployment, bool]:
    """The consortium's deployment, and whether it was deployed just now."""
    deployer = founders[0]
    recorded = deployer.deployment("Consortium")
    if recorded is not None and deployer.connection.has_code(recorded.address):
        progress(f"Consortium already deployed at {recorded.address}")
        return recorded, False
    specs = [
        Founder(
            n.address,
            Role.parse(n.settings.member.role),
            n.settings.member.name,
            n.settings.member.endpoint,
        )
        for n in founders
    ]
    consortium, receipt = Consortium.deploy(
        deployer.sender, specs, DEMO_THRESHOLD, DEMO_PROPOSAL_TTL
    )
    deployment = Deployment.of(consortium.address, receipt)
    deployer.record_deployment("Consortium", deployment)
    progress(
        f"Consortium deployed at {consortium.address} (block {receipt.block_number}, "
        f"{receipt.gas_used} gas), {len(specs)} founders, threshold {DEMO_THRESHOLD}"
    )
    return deployment, True


def _ensure_registry(deployer: Node, progress: Progress) -> Deployment:
    recorded = deployer.deployment("AnchorRegistry")
    if recorded is not None and deployer.connection.has_code(recorded.address):
        return recorded
    registry, receipt = AnchorRegistry.deploy(deployer.sender, deployer.consortium().address)
    deployment = Deployment.of(registry.address, receipt)
    deployer.record_deployment("AnchorRegistry", deployment)
    progress(f"AnchorRegistry deployed at {registry.address} ({receipt.gas_used} gas)")
    return deployment


def _clear_store(node: Node) -> None:
    node.close()
    for path in node.settings.data_path.glob("store.db*"):
        path.unlink()
    shutil.rmtree(node.settings.blob_path, ignore_errors=True)


def _ensure_admitted(founders: list[Node], newcomer: Node, progress: Progress) -> None:
    proposer, approver = founders[0].consortium(), founders[1].consortium()
    if proposer.is_active_member(newcomer.address):
        progress(f"{newcomer.settings.member.name} is already a member")
        return
    member = newcomer.settings.member
    proposed = proposer.propose_admission(
        newcomer.address, Role.parse(member.role), member.name, member.endpoint
    )
    progress(
        f"{founders[0].settings.member.name} proposed admitting {member.name} "
        f"(proposal {proposed.proposal_id}, {proposed.approvals}/{proposer.threshold()} approvals)"
    )
    approved = approver.approve(proposed.proposal_id)
    progress(
        f"{founders[1].settings.member.name} approved proposal {approved.proposal_id}: "
        f"{member.name} {'admitted' if approved.executed else 'still pending'}"
    )


def _ensure_oracle(node: Node, progress: Progress) -> None:
    consortium = node.consortium()
    if consortium.oracles_of(node.address):
        return
    local = [a for a in node.local_oracle_addresses() if consortium.oracle_of(a).member is None]
    oracle = (
        local[0] if local else node.create_oracle_key(DEMO_PASSWORD, DEMO_KDF_ITERATIONS).address
    )
    consortium.register_oracle(oracle)
    node.sender.transfer(oracle, ORACLE_FUNDING_WEI, label="fund oracle")
    progress(f"{node.settings.member.name} registered and funded oracle key {oracle}")


def _anchor_sample(node: Node, root: Path, progress: Progress) -> None:
    """Store a morning of coating measurements, anchor them, and prove one with a bundle."""
    store, batcher = node.store(), node.batcher()
    if store.count_records() == 0:
        start = now_us()
        samples = [
            RecordInput(
                "coating_thickness",
                {
                    "line": "C2",
                    "station": f"S{i % 4}",
                    "thickness_um": round(98.0 + (i % 7) * 0.3, 2),
                    "operator_id": "badge-20931",
                },
                start + i * 500_000,
            )
            for i in range(SAMPLE_RECORDS)
        ]
        store.add_records(samples)
        progress(f"{node.settings.member.name} stored {SAMPLE_RECORDS} coating measurements")
    batcher.close_batches(force=True)
    registry = node.anchor_registry(node.oracle_sender())
    for batch in batcher.anchor_pending(registry):
        progress(
            f"batch {batch.batch_id[:18]}… of {batch.leaf_count} records anchored in block "
            f"{batch.block_number}"
        )
    first = batcher.records_of(batcher.batches()[0])[0]
    bundle = build_bundle(store, batcher, first.record_id)
    path = root / "proof-example.json"
    path.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    verify_bundle(bundle, node.anchor_registry())
    progress(f"proof of record {first.record_id[:18]}… written to {path} and verified on-chain")


def _ensure_ledger(deployer: Node, progress: Progress) -> Deployment:
    recorded = deployer.deployment("QualityLedger")
    if recorded is not None and deployer.connection.has_code(recorded.address):
        return recorded
    ledger, receipt = QualityLedger.deploy(deployer.sender, deployer.consortium().address, 1)
    deployment = Deployment.of(ledger.address, receipt)
    deployer.record_deployment("QualityLedger", deployment)
    progress(f"QualityLedger deployed at {ledger.address} ({receipt.gas_used} gas), lab quorum 1")
    return deployment


def _has_measurements(node: Node) -> bool:
    return node.store().count_records("measurement") > 0


def _run_coating_line(node: Node, progress: Progress) -> None:
    """The coating line's PLC (simulated) read over OPC UA by the member's running node service,
    with one signed inspection verdict on the side; batches anchored, the verdict on-chain."""
    node.store().add_records([_inspection(CELL_LOT, 84.9, "pass")])
    snapshot = asyncio.run(_serve_coating_line(node, progress))
    progress(
        f"{node.settings.member.name}: {snapshot.messages_accepted} OPC UA readings from the "
        f"coating line stored ({snapshot.messages_rejected} quarantined)"
    )


async def _serve_coating_line(node: Node, progress: Progress) -> MetricsSnapshot:
    plc = CoatingLinePlc(PlcConfig(seed=7, gauge_interval_s=0.1))
    await plc.start()
    try:
        oracles = OracleSettings(**plc.oracle_settings_values())
        settings = node.settings.model_copy(update={"oracles": oracles})
        line_node = Node(settings, node.connection, node.account, DEMO_PASSWORD)
        service = NodeService(
            line_node,
            configured_sources(line_node),
            ServiceOptions(chain_interval_s=0.5, status_interval_s=LINE_SECONDS),
            progress,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.run(), LINE_SECONDS)
        progress(await asyncio.to_thread(service.chain_pass, True))  # anchor the last readings
        line_node.close()
        return service.metrics.snapshot()
    finally:
        await plc.stop()


def _inspection(lot: str, thickness_um: float, verdict: str) -> RecordInput:
    fields = {
        "part_id": lot,
        "characteristic": "coating_thickness",
        "value": thickness_um,
        "unit": "4H",
        "verdict": verdict,
        "inspector_id": "EMP-20931",
    }
    return RecordInput("inspection", fields, now_us())


def _attest_lab_result(lab: Node, root: Path, progress: Progress) -> None:
    """The lab measures the cathode lot's nickel share; its oracle signs, its member relays."""
    fields = {
        "sample": CATHODE_LOT,
        "method": "ICP-OES Ni/(Ni+Mn+Co)",
        "value": 0.8123,
        "unit": "C62",
        "verdict": "pass",
        "analyst_id": "EMP-7781",
    }
    record = lab.store().add_records([RecordInput("lab_result", fields, now_us())])[0]
    ledger = lab.quality_ledger()
    attestor = Attestor(
        lab.store(), AttestationSigner(lab.oracle_sender().account, ledger.domain()), ledger
    )
    [attestation] = attestor.attest([record])
    outcome = attestor.submit_pending()
    if outcome.failed:
        raise AttestationError(f"the lab result was refused: {outcome.failed[0][1]}")
    path = root / "attestation-example.json"
    path.write_text(json.dumps(attestation.to_bundle(), indent=2) + "\n", encoding="utf-8")
    signer = verify_attestation(attestation.to_bundle(), ledger.domain())
    on_chain = ledger.read_record(record.record_id)
    progress(
        f"{lab.settings.member.name}: lab result {on_chain.value} on-chain, signed by oracle "
        f"{signer}; bundle in {path}"
    )


def _record_genealogy_and_export(node: Node, root: Path, progress: Progress) -> None:
    cell = product(CELL_GTIN, lot="L2611", serial="C000123").uri()
    record_genealogy(
        node.store(),
        [
            Genealogy(
                output=cell,
                inputs=(
                    GenealogyInput(CELL_LOT, InputKind.PARENT_LOT),
                    GenealogyInput(CATHODE_LOT, InputKind.MATERIAL_LOT),
                    GenealogyInput(asset("0950600013435COATER01").uri(), InputKind.EQUIPMENT),
                ),
                observed_at_us=now_us(),
                process_step="coating",
                operator_id="badge-20931",
            )
        ],
    )
    tree = upstream(node.store(), cell)
    document = export(node.store())
    path = root / "epcis-borealis.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress(
        f"{node.settings.member.name}: cell {cell} traced to {len(tree.ids()) - 1} upstream "
        f"ids; {len(document['epcisBody']['eventList'])} EPCIS 2.0 events in {path}"
    )
