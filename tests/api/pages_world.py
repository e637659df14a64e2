"""A consortium for the explorer and portal page tests, on the in-process chain: Aster
(manufacturer), Borealis (supplier), Cobalt (lab) from tests/control/plant.py, with an
AnchorRegistry and an anchored batch (and its proof bundle), genealogy records, a rule's decision
that held Borealis through SupplierQuality (which opened 8D case 1), a second case opened
directly, and Borealis' tasks for both (the second one overdue), as its control service would
have made them. Plus the helpers the page tests share: sign in, read a form's CSRF token."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from node.anchoring.proofs import build_bundle
from node.api import create_app
from node.api.access import token_hash
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import embedded_chain
from node.chain.quality_ledger import QualityLedger
from node.control.actions.tasks import KIND_SUPPLIER_TASK, NewTask, TaskBoard
from node.control.chain_actions import text_hash
from node.control.decisions import Decision
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy
from node.offchain.records import RecordInput
from node.offchain.store import now_us
from node.oracles.digital_link import asset, product
from node.runtime import Deployment, Node
from node.settings import LOCAL_CHAIN_ID, Settings, settings_from_values
from tests.control.plant import Plant, build_plant, hold_by_rule

AUDITOR_TOKEN = "auditor-token-0123456789abcdef"
REPAIRER_TOKEN = "repairer-token-0123456789abcdef"
PORTAL_TOKEN = "portal-token-0123456789abcdef"
OBSERVED = 1_795_000_000_000_000
CELL = product("09506000134352", serial="CELL0001").uri()
CATHODE = product("09506000134352", lot="CATH-7").uri()
PRECURSOR = product("04006381333931", lot="NCM811-22").uri()
COATER = asset("4000001111-coater-3").uri()
DAY_US = 86_400_000_000


@dataclass
class PagesWorld:
    plant: Plant
    aster: Node
    borealis: Node
    bundle: dict[str, Any]
    batch_id: str
    anchored_ids: list[str]
    decision: Decision
    hold_tx: str
    held_case: int
    direct_case: int

    def aster_app(self, **api: Any) -> FastAPI:
        """Aster's API, with an authority token (the auditor's) and a legitimate-interest one."""
        tokens = [
            {"name": "auditor", "tier": "authority", "sha256": token_hash(AUDITOR_TOKEN)},
            {
                "name": "repairer",
                "tier": "legitimate_interest",
                "sha256": token_hash(REPAIRER_TOKEN),
            },
        ]
        settings = _with_api(self.aster.settings, {"tokens": tokens, **api})
        return create_app(settings, lambda: self.aster)

    def borealis_app(self, **api: Any) -> FastAPI:
        """Borealis' API with its supplier portal."""
        values = {"portal_token_sha256": token_hash(PORTAL_TOKEN), **api}
        return create_app(_with_api(self.borealis.settings, values), lambda: self.borealis)

    def close(self) -> None:
        self.plant.close()


def _with_api(settings: Settings, api: dict[str, Any]) -> Settings:
    values = settings.model_dump(mode="json")
    limits = {"requests_per_s": 10_000, "burst": 10_000, "misses_per_min": 600, "miss_burst": 60}
    values["api"] = {**values["api"], "rate_limit": limits, **api}
    return settings_from_values(values)


def build_pages_world(root: Path) -> PagesWorld:
    chain = embedded_chain(LOCAL_CHAIN_ID)
    plant = build_plant(root, "embedded", chain)
    aster, borealis = plant.nodes["aster"], plant.nodes["borealis"]
    consortium = aster.consortium()

    registry, receipt = AnchorRegistry.deploy(aster.sender, consortium.address)
    ledger, ledger_receipt = QualityLedger.deploy(aster.sender, consortium.address, 1)
    for node in plant.nodes.values():
        node.record_deployment("AnchorRegistry", Deployment.of(registry.address, receipt))
        node.record_deployment("QualityLedger", Deployment.of(ledger.address, ledger_receipt))
    store = aster.store()
    anchored = store.add_records(
        [
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
            for i in range(4)
        ]
    )
    batcher = aster.batcher()
    batcher.close_batches(force=True)
    oracle_sender = aster.oracle_sender()
    (batch,) = batcher.anchor_pending(aster.anchor_registry(oracle_sender))
    bundle = build_bundle(store, batcher, anchored[1].record_id)

    record_genealogy(
        store,
        [
            Genealogy(
                CELL,
                (GenealogyInput(CATHODE, InputKind.PARENT_LOT),),
                OBSERVED,
                process_step="cell_assembly",
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

    # Five lots over the USL: a decision, and Borealis held through SupplierQuality (case 1).
    decision, hold_tx = hold_by_rule(aster, borealis.address, oracle_sender, root)
    held_case = aster.supplier_quality().hold(1).case_id
    direct = aster.corrective_action().open(borealis.address, text_hash("burrs on lot L9"))

    # Borealis' tasks, as its control service opens them on CaseOpened.
    board = TaskBoard(borealis.store())
    for case_id, due in ((held_case, now_us() + 10 * DAY_US), (direct.case_id, now_us() - DAY_US)):
        board.create(
            NewTask(
                KIND_SUPPLIER_TASK,
                f"supplier_task:{case_id}:D0",
                borealis.address,
                f"8D case {case_id}: answer D0 (emergency response)",
                {"case_id": case_id, "hold_id": 1 if case_id == held_case else 0, "discipline": 0},
                due,
            )
        )
    return PagesWorld(
        plant=plant,
        aster=aster,
        borealis=borealis,
        bundle=bundle,
        batch_id=batch.batch_id,
        anchored_ids=[r.record_id for r in anchored],
        decision=decision,
        hold_tx=hold_tx,
        held_case=held_case,
        direct_case=direct.case_id,
    )


# -- helpers of the page tests -------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token of a page's forms."""
    found = _CSRF.search(page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def forged(bundle: dict[str, Any]) -> str:
    """The bundle with one anchored value changed (its record no longer hashes to its leaf)."""
    copy = json.loads(json.dumps(bundle))
    record = copy["record"]
    fields = record.get("fields") or record.get("public") or record
    for name, value in fields.items():
        if isinstance(value, float):
            fields[name] = value + 1
            break
    else:
        raise AssertionError(f"no number to forge in {record}")
    return json.dumps(copy)
