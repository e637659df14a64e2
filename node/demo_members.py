"""The demo consortium's cast and its provisioning: four members of a battery supply chain, their
directories, keys, configs and the contracts they share.

- Andes Lithium Refining (lithium refiner, role ``supplier``): battery-grade Li2CO3 from its
  crystallizer CR-2, whose temperature loop streams over MQTT;
- Borealis Cathode Materials (cathode supplier, role ``supplier``): NCM811 cathode lots made from
  the refiner's lithium; its node serves the supplier portal;
- Aster Cells (cell manufacturer, role ``manufacturer``): the coating line (an OPC UA PLC), the
  plant's MQTT sensors, incoming inspection, the closed loop and the ERP webhook;
- Cobalt Test Lab (third-party lab, role ``lab``): admitted by an M-of-N vote during the demo;
  co-signs the members' lab results and tests cells itself.

:func:`provision` writes every member (config, member key, oracle key) and deploys the shared
contracts; it runs in-process against any chain of the local chainId (the demo's Hardhat, or the
embedded chain in tests). The three founders run the consortium with a 2-of-3 threshold.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.api.access import token_hash
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection
from node.chain.consortium import Approval, Consortium, Founder, Role
from node.chain.quality_ledger import QualityLedger
from node.control.deploy import (
    deploy_control_contracts,
    record_control_deployments,
    register_lines,
)
from node.keys import hardhat_dev_key, read_keystore, write_keystore
from node.oracles.digital_link import asset, gtin14
from node.provisioning import CONFIG_FILE, MemberSpec, init_member
from node.runtime import Deployment, Node
from node.settings import LOCAL_CHAIN_ID, load_settings

__all__ = [
    "CATHODE",
    "CELLS",
    "DEMO_PASSWORD",
    "FOUNDERS",
    "LAB",
    "MEMBERS",
    "REFINER",
    "DemoMember",
    "Layout",
    "Provisioned",
    "admit",
    "member_dir",
    "open_member",
    "provision",
    "register_oracle",
    "station_account",
]

DEMO_PASSWORD = "qnode-demo"
DEMO_KDF_ITERATIONS = 2**10
"""Demo keystores are unlocked by every process start: a cheap KDF (the keys are throwaway)."""
THRESHOLD = 2
PROPOSAL_TTL_S = 7 * 24 * 3600
ORACLE_FUNDING_WEI = 10**18
LAB_QUORUM = 1
STATION_DIR = "keystore/stations"
"""Lab-instrument oracle keys: registered for the member, held apart from the node's own oracle
keys (``qnode run`` signs with those; a station signs only its instrument's results)."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DemoMember:
    key: str
    """Short name: the member's directory, and how the demo refers to it."""
    name: str
    role: str
    title: str
    dev_account: int
    """Hardhat's public development account N: its member key (funded on the local chain)."""
    company_prefix: str | None
    product_gtin: str | None
    product_name: str

    @property
    def founder(self) -> bool:
        return self.key != "lab"


REFINER = DemoMember(
    "refiner",
    "Andes Lithium Refining",
    "supplier",
    "lithium refiner",
    0,
    "7801234",
    gtin14("780123400001"),
    "Battery-grade lithium carbonate (Li2CO3 ≥ 99.5 %)",
)
CATHODE = DemoMember(
    "cathode",
    "Borealis Cathode Materials",
    "supplier",
    "cathode supplier",
    1,
    "4012345",
    gtin14("401234500001"),
    "NCM811 cathode active material",
)
CELLS = DemoMember(
    "cells",
    "Aster Cells",
    "manufacturer",
    "cell manufacturer",
    2,
    "950600",
    gtin14("950600013435"),
    "NCM811 pouch cell 50 Ah",
)
LAB = DemoMember(
    "lab",
    "Cobalt Test Lab",
    "lab",
    "third-party test lab",
    3,
    None,
    None,
    "",
)
MEMBERS = (REFINER, CATHODE, CELLS, LAB)
FOUNDERS = (REFINER, CATHODE, CELLS)

CRYSTALLIZER = asset("7801234CR2").uri()
KILN = asset("4012345KILN1").uri()
COATER = asset("950600COATER01").uri()
OVEN = asset("950600OVEN01").uri()


def member_dir(root: Path, member: DemoMember) -> Path:
    return root / member.key


@dataclass(frozen=True)
class Layout:
    """Where everything of one demo run lives and listens (written to ``demo.json``)."""

    root: Path
    chain_url: str
    mqtt_url: str
    run_id: str
    """Names this run's MQTT topics and sessions (a shared broker may serve other runs)."""
    api_ports: Mapping[str, int]
    plc_endpoint: str
    erp_url: str
    erp_secret: str
    authority_token: str
    portal_token: str
    trace_tokens: Mapping[str, str]
    """member key -> the legitimate-interest token its node gave the cell maker for traces."""
    rules_file: Path = field(default=Path("rules.yaml"))

    def api_url(self, member: DemoMember) -> str:
        return f"http://127.0.0.1:{self.api_ports[member.key]}"

    def topic_prefix(self, member: DemoMember) -> str:
        return f"qnode-demo/{self.run_id}/{member.key}"

    def mqtt_client_id(self, member: DemoMember) -> str:
        return f"qnode-demo-{self.run_id}-{member.key}"

    def config_file(self, member: DemoMember) -> Path:
        return member_dir(self.root, member) / CONFIG_FILE

    @classmethod
    def new(
        cls,
        root: Path,
        chain_url: str,
        mqtt_url: str,
        api_ports: Mapping[str, int],
        plc_endpoint: str,
        erp_url: str,
    ) -> Layout:
        return cls(
            root=root,
            chain_url=chain_url,
            mqtt_url=mqtt_url,
            run_id=secrets.token_hex(3),
            api_ports=dict(api_ports),
            plc_endpoint=plc_endpoint,
            erp_url=erp_url,
            erp_secret="erp-" + secrets.token_hex(16),
            authority_token="demo-authority-" + secrets.token_hex(8),
            portal_token="demo-portal-" + secrets.token_hex(8),
            trace_tokens={m.key: f"demo-trace-{m.key}-" + secrets.token_hex(8) for m in MEMBERS},
        )

    @property
    def trace_tokens_file(self) -> Path:
        """The tokens the cell maker's ``qnode trace`` presents to the other members' nodes."""
        return member_dir(self.root, CELLS) / "trace-tokens.toml"


@dataclass
class Provisioned:
    """The members as in-process nodes (the demo's operators act through them)."""

    layout: Layout
    nodes: dict[str, Node]
    contracts: dict[str, Deployment]

    def node(self, member: DemoMember) -> Node:
        return self.nodes[member.key]

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


# -- configs ---------------------------------------------------------------------------------

BLADE = {
    "unit": "MMT",
    "decimals": 3,
    "baseline": 1.0,
    "min_delta": -0.1,
    "max_delta": 0.1,
    "max_abs_offset": 0.5,
}
CV_RULE = """\
version: 1
quantities: {thickness: 4H}
rules:
  - id: coating-cv
    when:
      cv: {quantity: thickness, devices: "coater-gauge-*", subgroup_size: 5,
           above: 0.8 P1, consecutive: 3}
    then:
      compensate: {line: coater, parameter: blade_pressure, delta: -0.05 MMT,
                   bounds: {min: -0.10 MMT, max: 0.10 MMT}}
"""


def member_sections(
    layout: Layout,
    member: DemoMember,
    addresses: Mapping[str, str],
    oracles: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config sections the demo adds to a member's ``qnode.toml``."""
    api: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": layout.api_ports[member.key],
        "resolver_domain": layout.api_url(member),
        "tokens": [
            {
                "name": "demo authority",
                "tier": "authority",
                "sha256": token_hash(layout.authority_token),
            },
            {
                "name": f"{CELLS.name} traces",
                "tier": "legitimate_interest",
                "sha256": token_hash(layout.trace_tokens[member.key]),
            },
        ],
        "rate_limit": {
            "requests_per_s": 500.0,
            "burst": 1000,
            "misses_per_min": 600.0,
            "miss_burst": 200,
        },
        "peer_timeout_s": 5.0,
    }
    if member.company_prefix is not None:
        api["company_prefixes"] = [member.company_prefix]
    if member.product_gtin is not None:
        api["products"] = {
            member.product_gtin: {"name": member.product_name, "category": member.title}
        }
    sections: dict[str, Any] = {
        "anchoring": {"max_age_s": 1.0},
        "control": {"event_poll_s": 0.2, "action_poll_s": 0.25},
        "api": api,
    }
    if member is CATHODE:
        api["portal_token_sha256"] = token_hash(layout.portal_token)
    if member is CELLS:
        api["partners"] = {
            p.company_prefix: addresses[p.key]
            for p in (REFINER, CATHODE)
            if p.company_prefix is not None
        }
        api["products"][member.product_gtin] = {
            "name": member.product_name,
            "category": "EV battery cell",
            "model": "AC-50P",
            "attributes": {"chemistry": "NCM811 / graphite", "nominal_capacity_ah": 50},
        }
        sections["control"].update(
            {
                "rules_file": str(layout.root / layout.rules_file),
                "plc": {"url": layout.plc_endpoint, "ack_timeout_s": 10.0},
                "lines": {"coater": {"uri": COATER, "parameters": {"blade_pressure": BLADE}}},
                "erp": {"url": layout.erp_url, "secret": layout.erp_secret},
            }
        )
    if oracles:
        sections["oracles"] = dict(oracles)
    return sections


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def configure(config_file: Path, sections: Mapping[str, Any]) -> None:
    """Merge ``sections`` into a member's config file."""
    values = _merged(tomllib.loads(config_file.read_text(encoding="utf-8")), sections)
    config_file.write_text(tomli_w.dumps(values), encoding="utf-8")


# -- provisioning ----------------------------------------------------------------------------


def open_member(
    layout: Layout, member: DemoMember, connection: ChainConnection | None = None
) -> Node:
    return Node.open(load_settings(layout.config_file(member)), DEMO_PASSWORD, connection)


def provision(
    layout: Layout,
    oracles: Mapping[str, Mapping[str, Any]],
    connection: ChainConnection | None = None,
    progress: Progress = lambda _line: None,
) -> Provisioned:
    """Write the four members and deploy the consortium's contracts (the lab is not a member
    yet: it is admitted by vote during the demo). ``oracles``: each member's ``[oracles]``
    section (its shop-floor sources), by member key."""
    layout.root.mkdir(parents=True, exist_ok=True)
    (layout.root / layout.rules_file).write_text(CV_RULE, encoding="utf-8")
    addresses = {m.key: hardhat_dev_key(m.dev_account).address for m in MEMBERS}
    for member in MEMBERS:
        spec = MemberSpec(
            member.name, member.role, layout.api_url(member), layout.chain_url, LOCAL_CHAIN_ID
        )
        directory = member_dir(layout.root, member)
        init_member(
            directory,
            spec,
            DEMO_PASSWORD,
            hardhat_dev_key(member.dev_account),
            DEMO_KDF_ITERATIONS,
        )
        configure(
            layout.config_file(member),
            member_sections(layout, member, addresses, oracles.get(member.key)),
        )
    held = {str(addresses[m.key]): layout.trace_tokens[m.key] for m in MEMBERS if m is not CELLS}
    layout.trace_tokens_file.write_text(tomli_w.dumps(held), encoding="utf-8")
    nodes = {m.key: open_member(layout, m, connection) for m in MEMBERS}
    cells = nodes[CELLS.key]
    founders = [
        Founder(nodes[m.key].address, Role.parse(m.role), m.name, layout.api_url(m))
        for m in FOUNDERS
    ]
    consortium, receipt = Consortium.deploy(cells.sender, founders, THRESHOLD, PROPOSAL_TTL_S)
    contracts = {"Consortium": Deployment.of(consortium.address, receipt)}
    cells.record_deployment("Consortium", contracts["Consortium"])
    registry, receipt = AnchorRegistry.deploy(cells.sender, consortium.address)
    contracts["AnchorRegistry"] = Deployment.of(registry.address, receipt)
    ledger, receipt = QualityLedger.deploy(cells.sender, consortium.address, LAB_QUORUM)
    contracts["QualityLedger"] = Deployment.of(ledger.address, receipt)
    control = deploy_control_contracts(cells)
    contracts["LineControl"] = control.line_control
    contracts["CorrectiveAction"] = control.corrective_action
    contracts["SupplierQuality"] = control.supplier_quality
    for node in nodes.values():
        for name, deployment in contracts.items():
            node.record_deployment(name, deployment)
        record_control_deployments(node, control)
    progress(
        f"contracts deployed: Consortium {consortium.address} (founders "
        f"{', '.join(m.name for m in FOUNDERS)}; threshold {THRESHOLD} of {len(FOUNDERS)}), "
        f"AnchorRegistry, QualityLedger (lab quorum {LAB_QUORUM}), LineControl, "
        "SupplierQuality, CorrectiveAction"
    )
    for member in MEMBERS:
        nodes[member.key].create_oracle_key(DEMO_PASSWORD, DEMO_KDF_ITERATIONS)
    for member in FOUNDERS:
        oracle = register_oracle(nodes[member.key])
        progress(f"{member.name}: oracle key {oracle} registered and funded")
    for member in (REFINER, CATHODE):
        station = new_station(nodes[member.key])
        nodes[member.key].consortium().register_oracle(station.address)
        progress(f"{member.name}: QC lab station key {station.address} registered")
    for line in register_lines(cells):
        progress(f"{CELLS.name}: {line}")
    return Provisioned(layout, nodes, contracts)


def register_oracle(node: Node) -> str:
    """Register (and fund) the member's oracle key held by its node."""
    [oracle] = node.local_oracle_addresses()[:1]
    node.consortium().register_oracle(oracle)
    node.sender.transfer(oracle, ORACLE_FUNDING_WEI, label="fund oracle")
    return oracle


def new_station(node: Node) -> LocalAccount:
    """A new QC lab station key of the member, kept encrypted beside its node's keys."""
    account: LocalAccount = Account.create()
    path = node.settings.path(Path(STATION_DIR)) / f"{account.address}.json"
    write_keystore(path, account, DEMO_PASSWORD, DEMO_KDF_ITERATIONS)
    return account


def station_account(node: Node, active_only: bool = True) -> LocalAccount:
    """The member's QC lab station key (the active one, unless ``active_only`` is off)."""
    directory = node.settings.path(Path(STATION_DIR))
    consortium = node.consortium()
    for path in sorted(directory.glob("0x*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if not active_only or consortium.oracle_of(path.stem).active:
            return read_keystore(path, DEMO_PASSWORD)
    raise LookupError(f"no {'active ' if active_only else ''}station key in {directory}")


def admit(proposer: Node, approver: Node, newcomer: Node, member: DemoMember) -> list[Approval]:
    """Propose admitting ``newcomer`` (the proposer's approval counts) and approve it."""
    proposed = proposer.consortium().propose_admission(
        newcomer.address, Role.parse(member.role), member.name, newcomer.settings.member.endpoint
    )
    approved = approver.consortium().approve(proposed.proposal_id)
    return [proposed, approved]
