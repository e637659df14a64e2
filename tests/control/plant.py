"""A small consortium for the closed-loop tests: three members on one chain, each with its own
directory, store, member key and a registered, funded oracle key; the control contracts deployed
by the manufacturer and recorded by everyone. ``configure`` adds config sections to a member
(its qnode.toml is rewritten, so a ``qnode run`` subprocess sees them too)."""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import select

from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import TransactionSender
from node.control.chain_actions import ChainActions
from node.control.decisions import Decision
from node.control.deploy import (
    ControlDeployments,
    deploy_control_contracts,
    record_control_deployments,
)
from node.control.lines import Lines
from node.control.observations import observations_from_records
from node.control.outbox import ActionOutbox, ActionRunner
from node.control.rules import RuleEngine, commit_firings, load_rules
from node.keys import hardhat_dev_key
from node.offchain.records import RecordInput, StoredRecord
from node.offchain.store import RECORDS, Store, stored_record
from node.provisioning import CONFIG_FILE, MemberSpec, init_member
from node.runtime import Deployment, Node
from node.settings import LOCAL_CHAIN_ID, load_settings

PASSWORD = "correct horse"
KDF_ITERATIONS = 16
MEMBERS = {
    "aster": ("Aster Motors", "manufacturer", 0),
    "borealis": ("Borealis Cells", "supplier", 1),
    "cobalt": ("Cobalt Test Lab", "lab", 2),
}


@dataclass
class Plant:
    root: Path
    rpc_url: str
    connection: ChainConnection | None
    nodes: dict[str, Node] = field(default_factory=dict)
    contracts: ControlDeployments | None = None

    def config_file(self, name: str) -> Path:
        return self.root / name / CONFIG_FILE

    def configure(self, name: str, sections: dict[str, Any]) -> Node:
        """Merge ``sections`` into the member's config and reopen its node."""
        path = self.config_file(name)
        values = _merged(tomllib.loads(path.read_text(encoding="utf-8")), sections)
        path.write_text(tomli_w.dumps(values), encoding="utf-8")
        self.nodes[name].close()
        self.nodes[name] = Node.open(load_settings(path), PASSWORD, self.connection)
        return self.nodes[name]

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


def build_plant(root: Path, rpc_url: str, connection: ChainConnection | None = None) -> Plant:
    plant = Plant(root, rpc_url, connection)
    for slug, (name, role, account) in MEMBERS.items():
        spec = MemberSpec(name, role, f"http://127.0.0.1:{8600 + account}", rpc_url, LOCAL_CHAIN_ID)
        settings = init_member(
            root / slug, spec, PASSWORD, hardhat_dev_key(account), KDF_ITERATIONS
        )
        plant.nodes[slug] = Node.open(settings, PASSWORD, connection)
    aster = plant.nodes["aster"]
    founders = [
        Founder(n.address, Role.parse(n.settings.member.role), n.settings.member.name, "")
        for n in plant.nodes.values()
    ]
    consortium, receipt = Consortium.deploy(aster.sender, founders, 2, 3600)
    for node in plant.nodes.values():
        node.record_deployment("Consortium", Deployment.of(consortium.address, receipt))
        oracle = node.create_oracle_key(PASSWORD, KDF_ITERATIONS)
        node.consortium().register_oracle(oracle.address)
        node.sender.transfer(oracle.address, 10**18, label="fund oracle")
    plant.contracts = deploy_control_contracts(aster)
    for slug in ("borealis", "cobalt"):
        record_control_deployments(plant.nodes[slug], plant.contracts)
    return plant


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def records_of(store: Store, record_type: str) -> list[StoredRecord]:
    """The records of one type, in the order they were stored."""
    with store.transaction() as connection:
        rows = connection.execute(
            select(RECORDS)
            .where(RECORDS.c.record_type == record_type)
            .order_by(RECORDS.c.stored_at_us, RECORDS.c.record_id)
        ).mappings()
        return [stored_record(row) for row in rows]


SUPPLIER_RULE = """
version: 1
quantities: {diameter: MMT}
rules:
  - id: incoming-usl
    when:
      lots_out_of_spec: {limit: usl, consecutive: 5}
    then:
      - hold_supplier: {}
"""


def hold_by_rule(
    aster: Node, supplier: str, oracle_sender: TransactionSender, root: Path
) -> tuple[Decision, str]:
    """One incoming lot of ``supplier`` in spec, then five over the USL, in Aster's store; the
    rule's decision committed and its supplier_hold action run, as Aster's control service does:
    the supplier held through SupplierQuality (which opens an 8D case). (decision, hold tx)"""
    rules_path = root / "rules.yaml"
    rules_path.write_text(SUPPLIER_RULE, encoding="utf-8")
    now = int(time.time() * 1e6)
    lots = [_lot(supplier, "L0", 18.25, now)]
    lots += [_lot(supplier, f"L{n}", 18.34 + n / 100, now + n) for n in range(1, 6)]
    store = aster.store()
    stored = store.add_records(lots)
    engine = RuleEngine(load_rules(rules_path), signer=oracle_sender.account.address)
    commit_firings(store, engine, engine.observe(observations_from_records(stored)))
    (decision_record,) = records_of(store, "decision")
    actions = ChainActions(
        Lines(aster.settings.control.lines),
        lambda: aster.line_control(oracle_sender),
        lambda: aster.supplier_quality(oracle_sender),
    )
    outbox = ActionOutbox(store)
    assert asyncio.run(ActionRunner(outbox, {"supplier_hold": actions}).run_once()) == 1
    (hold,) = outbox.actions(kind="supplier_hold")
    assert hold.result is not None, hold.last_error
    return Decision.from_record(decision_record), str(hold.result["tx_hash"])


def _lot(supplier: str, lot: str, value: float, at: int) -> RecordInput:
    fields = {
        "supplier": supplier, "part": "cathode-can", "characteristic": "diameter", "lot": lot,
        "value": value, "unit": "MMT", "lsl": 18.1, "usl": 18.3, "inspector_id": "badge-4411",
    }  # fmt: skip
    return RecordInput("incoming_lot", fields, at)
