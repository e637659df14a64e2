"""A member's world for the resilience tests, on the in-process chain with real contract events:
the plant of tests/control/plant.py (Aster the manufacturer, Borealis its supplier, Cobalt the
lab) where

- Aster's CV rule fires on the coater's thickness gauges, the compensation is requested through
  LineControl and acknowledged, and the thickness is back in control afterwards;
- five of Borealis' lots over the USL make Aster's rule hold it through SupplierQuality; the 8D
  case is answered D0..D8 by Borealis, approved by Aster, verified by Cobalt, and the hold is
  released; three lots in spec follow;
- a cold-chain red-line decision stops the packing line on-chain, and the line is restarted;
- Borealis records two setpoints on QualityLedger (one before it took effect, one after);
- Aster's incoming lots are anchored and one of them is named in a genealogy; Aster has tasks
  and contingency plans.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import embedded_chain
from node.chain.quality_ledger import QualityLedger
from node.control.actions.tasks import KIND_IMPROVEMENT_TASK, NewTask, TaskBoard
from node.control.chain_actions import ChainActions, text_hash
from node.control.decisions import Decision
from node.control.deploy import register_lines
from node.control.lines import Lines, line_id
from node.control.observations import observations_from_records
from node.control.outbox import ActionOutbox, ActionRequest, ActionRunner
from node.control.rules import RuleEngine, commit_firings, load_rules
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, record_genealogy
from node.offchain.records import RecordInput, StoredRecord
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import Attestor
from node.oracles.digital_link import product
from node.runtime import Deployment, Node
from tests.control.plant import Plant, build_plant, records_of

COATER_URI = "https://id.example.com/8004/0950600013435COATER01"
PACKING_URI = "https://id.example.com/8004/0950600013435PACK01"
BLADE = {
    "unit": "MMT",
    "decimals": 3,
    "baseline": 1.0,
    "min_delta": -0.1,
    "max_delta": 0.1,
    "max_abs_offset": 0.5,
}
RULES = """
version: 1
quantities: {thickness: 4H, diameter: MMT}
rules:
  - id: coating-cv
    when:
      cv: {quantity: thickness, devices: "coater-gauge-*", subgroup_size: 5,
           above: 0.8 P1, consecutive: 3}
    then:
      compensate: {line: coater, parameter: blade_pressure, delta: -0.05 MMT,
                   bounds: {min: -0.10 MMT, max: 0.10 MMT}}
  - id: incoming-usl
    when:
      lots_out_of_spec: {limit: usl, consecutive: 5}
    then:
      - hold_supplier: {}
"""
RED_LINE = {
    "metric": "reading",
    "quantity": "temperature",
    "devices": ["cold-store-*"],
    "per_device": False,
    "threshold": {"comparator": "at_or_above", "value": -18.0, "unit": "CEL"},
    "absolute": False,
}
LOT_GTIN = "09506000134352"
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


@dataclass
class ResilienceWorld:
    plant: Plant
    aster: Node
    borealis: Node
    cv_decision: Decision
    hold_decision: Decision
    stop_decision: Decision
    ack_at_us: int
    """The block time of the compensation's acknowledgement."""
    back_in_control_at_us: int
    """The last thickness value of the third in-control subgroup after it."""
    hold_released_block: int
    restart_block: int

    def close(self) -> None:
        self.plant.close()


def now_us() -> int:
    return time.time_ns() // 1000


def measurement(
    device: str, seq: int, quantity: str, value: float, unit: str, at: int
) -> RecordInput:
    fields = {
        "device": device,
        "seq": seq,
        "sent_at": "2026-01-01T00:00:00Z",
        "source": "test",
        "quality": "good",
        "points": [{"q": quantity, "v": value, "u": unit}],
    }
    return RecordInput("measurement", fields, at)


def incoming_lot(supplier: str, lot: str, value: float, at: int) -> RecordInput:
    fields = {
        "supplier": supplier, "part": "cathode-can", "characteristic": "diameter", "lot": lot,
        "value": value, "unit": "MMT", "lsl": 18.1, "usl": 18.3, "inspector_id": "badge-4411",
    }  # fmt: skip
    return RecordInput("incoming_lot", fields, at)


def build_world(root: Path) -> ResilienceWorld:
    plant = build_plant(root, "embedded", embedded_chain(4717))
    aster = plant.configure(
        "aster",
        {
            "control": {
                "lines": {
                    "coater": {"uri": COATER_URI, "parameters": {"blade_pressure": BLADE}},
                    "packing": {"uri": PACKING_URI},
                }
            }
        },
    )
    borealis, cobalt = plant.nodes["borealis"], plant.nodes["cobalt"]
    register_lines(aster)
    store = aster.store()
    oracle = aster.oracle_sender()
    rules_path = root / "rules.yaml"
    rules_path.write_text(RULES, encoding="utf-8")
    engine = RuleEngine(load_rules(rules_path), signer=oracle.account.address)
    actions = ChainActions(
        Lines(aster.settings.control.lines),
        lambda: aster.line_control(oracle),
        lambda: aster.supplier_quality(oracle),
    )
    outbox = ActionOutbox(store)
    runner = ActionRunner(outbox, {kind: actions for kind in ("line_compensation",
                                                             "supplier_hold",
                                                             "chain_line_stop")})  # fmt: skip

    def observe(records: list[StoredRecord]) -> None:
        commit_firings(store, engine, engine.observe(observations_from_records(records)))
        asyncio.run(runner.run_once())

    # -- the coater: CV beyond 0.8 % in three subgroups -> compensation -> acknowledged -----------
    start = now_us() - HOUR_US
    drifting = [70.0, 80.0, 75.0, 78.0, 72.0]  # CV about 5 %
    observe(
        store.add_records(
            [
                measurement("coater-gauge-1", n, "thickness", drifting[n % 5], "4H", start + n)
                for n in range(15)
            ]
        )
    )
    (cv_record,) = [r for r in records_of(store, "decision")]
    cv_decision = Decision.from_record(cv_record)
    line_control = aster.line_control(oracle)
    assert line_control.request(1).decision_hash == cv_decision.decision_hash
    ack = line_control.record_acknowledgement(
        1, applied=True, read_back=950, detail_hash=text_hash("applied")
    )
    ack_at = int(aster.connection.w3.eth.get_block(ack.block_number)["timestamp"]) * 1_000_000
    after = [75.0, 80.0, 70.0, 79.0, 71.0]  # still out of control: the first subgroup
    after += [75.0, 75.1, 74.9, 75.0, 75.05] * 3  # CV about 0.1 %: three subgroups in control
    stored = store.add_records(
        [
            measurement("coater-gauge-1", 100 + n, "thickness", v, "4H", ack_at + 1000 * (n + 1))
            for n, v in enumerate(after)
        ]
    )
    back_in_control = stored[-1].observed_at_us

    # -- Borealis held after 5 lots over the USL; its 8D answered; the hold released -----------
    supplier = borealis.address
    lots_at = now_us() - 30 * 60 * 1_000_000
    lots = [incoming_lot(supplier, "L0", 18.25, lots_at)]
    lots += [incoming_lot(supplier, f"L{n}", 18.34 + n / 100, lots_at + n) for n in range(1, 6)]
    observe(store.add_records(lots))
    hold_record = next(
        r for r in records_of(store, "decision") if r.record_id != cv_record.record_id
    )
    hold_decision = Decision.from_record(hold_record)
    quality = aster.supplier_quality()
    assert quality.hold(1).reason_hash == hold_decision.decision_hash
    as_supplier, as_customer = borealis.corrective_action(), aster.corrective_action()
    for discipline in range(9):
        as_supplier.submit(1, discipline, text_hash(f"D{discipline} report of case 1"))
        if discipline == 8:
            cobalt.corrective_action().verify_effectiveness(1, text_hash("lab: lots in spec"))
        as_customer.approve(1, discipline)
    released = quality.release(1)
    store.add_records([incoming_lot(supplier, f"L{n}", 18.2, now_us() + n) for n in range(6, 9)])

    # -- the packing line: a red line stops it, it is restarted -------------------------------
    stop_decision = Decision(
        rule_id="cold-chain",
        rule_hash="0x" + "ab" * 32,
        fired_at_us=now_us() - 1_000_000,
        inputs=(),
        thresholds={"condition": RED_LINE},
        computed={},
        action={"kind": "stop_line", "line": "packing", "reason": "cold chain at -17.6 °C"},
        signer=oracle.account.address,
    )
    store.add_records([stop_decision.to_record_input()])
    outbox.add(
        [
            ActionRequest(
                "chain_line_stop",
                f"chain_line_stop:{stop_decision.decision_hash}",
                {"line": "packing", "decision_hash": stop_decision.decision_hash},
            )
        ]
    )
    asyncio.run(runner.run_once())
    restart = line_control.restart_line(line_id(PACKING_URI), text_hash("below -18 °C again"))

    # -- Borealis' setpoints on QualityLedger ------------------------------------------------
    ledger, ledger_receipt = QualityLedger.deploy(aster.sender, aster.consortium().address, 1)
    registry, registry_receipt = AnchorRegistry.deploy(aster.sender, aster.consortium().address)
    for node in plant.nodes.values():
        node.record_deployment("QualityLedger", Deployment.of(ledger.address, ledger_receipt))
        node.record_deployment("AnchorRegistry", Deployment.of(registry.address, registry_receipt))
    b_store = borealis.store()
    b_store.add_records(
        [
            RecordInput(
                "setpoint",
                {"equipment": "https://id.example.com/8004/4012345KILN1", "parameter": "kiln_c",
                 "value": value, "unit": "CEL", "reason": "recipe", "operator_id": "op-9"},
                at,
            )
            for value, at in ((742.0, lots_at - HOUR_US), (745.0, now_us() + DAY_US))
        ]
    )  # fmt: skip
    b_ledger = QualityLedger.at(borealis.sender, ledger.address)
    attestor = Attestor(
        b_store, AttestationSigner(borealis.oracle_sender().account, b_ledger.domain()), b_ledger
    )
    attestor.attest_unattested()
    outcome = attestor.submit_pending()
    assert len(outcome.confirmed) == 2, outcome

    # -- traceability, tasks, plans --------------------------------------------------------------
    batcher = aster.batcher()
    batcher.close_batches(force=True)
    batcher.anchor_pending(aster.anchor_registry(oracle))
    record_genealogy(
        store,
        [
            Genealogy(
                product(LOT_GTIN, lot="CATH-1").uri(),
                (GenealogyInput(product(LOT_GTIN, lot="L0").uri(), InputKind.MATERIAL_LOT),),
                now_us(),
            )
        ],
    )
    board = TaskBoard(store)
    board.create(NewTask(KIND_IMPROVEMENT_TASK, "review:1", "quality-engineer", "Review D0"))
    board.close("review:1", now_us() + 2 * HOUR_US)
    board.create(
        NewTask(
            KIND_IMPROVEMENT_TASK, "review:2", "quality-engineer", "Review D1",
            due_at_us=now_us() - HOUR_US,
        )
    )  # fmt: skip
    store.add_records(
        [
            RecordInput(
                "contingency_plan",
                {"plan_id": "coater-outage", "title": "Coater outage", "scope": "line coater",
                 "version": "3", "review_interval_days": 180, "reviewer_id": "emp-12"},
                now_us() - 10 * DAY_US,
            ),
            RecordInput(
                "contingency_plan",
                {"plan_id": "cathode-shortage", "title": "Cathode shortage", "scope": "supplier",
                 "version": "1"},
                now_us() - 400 * DAY_US,
            ),
        ]
    )  # fmt: skip
    return ResilienceWorld(
        plant=plant,
        aster=aster,
        borealis=borealis,
        cv_decision=cv_decision,
        hold_decision=hold_decision,
        stop_decision=stop_decision,
        ack_at_us=ack_at,
        back_in_control_at_us=back_in_control,
        hold_released_block=released.block_number,
        restart_block=restart.block_number,
    )
