"""A small consortium for the closed-loop tests: three members on one chain, each with its own
directory, store, member key and a registered, funded oracle key; the control contracts deployed
by the manufacturer and recorded by everyone. ``configure`` adds config sections to a member
(its qnode.toml is rewritten, so a ``qnode run`` subprocess sees them too)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import select

from node.chain.connection import ChainConnection
from node.chain.consortium import Consortium, Founder, Role
from node.control.deploy import (
    ControlDeployments,
    deploy_control_contracts,
    record_control_deployments,
)
from node.keys import hardhat_dev_key
from node.offchain.records import StoredRecord
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
