"""The demo's scenario: what happens in the consortium once its nodes run, step by step, each
step waiting until its effect is on-chain and in the members' stores and pages.

1. **Governance: the test lab is admitted** by a 2-of-3 vote of the founders, and registers its
   oracle key.
2. **Lab co-signed results and the first production:** the refiner's Li2CO3 assay and the cathode
   supplier's NCM ratio, each signed by the member's QC lab station and co-signed by the test lab
   (QualityLedger's lab quorum); genealogy refiner lot -> cathode lot -> cell lot -> cells; each
   cell with its bake curve (the oven's 0.5 s readings) and inspections. The consumer page of a
   cell shows them verified.
3. **Coating CV drift:** the coating's thickness CV rises over 0.8 %; the cell maker's rule fires,
   LineControl records the compensation, the PLC applies -0.05 mm of blade pressure and
   acknowledges, and the acknowledgement goes on-chain.
4. **Supplier hold and 8D:** five cathode lots in a row above the USL at incoming inspection:
   SupplierQuality holds the supplier and opens an 8D case, the ERP pauses its purchase orders,
   the supplier answers D0-D8 in its portal (over HTTP, like its quality engineer would), the cell
   maker approves each, the lab verifies the effectiveness, the case closes, the hold is released
   and the ERP resumes.
5. **Crystallizer PID drift -> low-temperature fade:** at the refiner, crystallizer CR-2's
   temperature loop is re-tuned wrongly (the integral time drifts, at a millisecond timestamp);
   its lot goes into a cathode lot and then a cell lot whose cells fade at -20 °C (cell maker's
   inspection and the lab's test), then ``qnode trace`` (see :meth:`Scenario.trace`).
6. **Governance: key rotation:** the cathode supplier rotates its QC lab station's oracle key; a
   result signed with the revoked key is refused on-chain (the revert decoded).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from eth_account.signers.local import LocalAccount

from node.anchoring.batcher import ANCHORED, CONFIRMED
from node.chain.contract_events import of_type
from node.chain.line_control import CompensationAcknowledgedEvent
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import TxRequest
from node.control.actions.tasks import Task, TaskBoard
from node.control.outbox import ActionOutbox, ActionStatus
from node.demo_members import (
    CATHODE,
    CELLS,
    COATER,
    CRYSTALLIZER,
    DEMO_PASSWORD,
    KILN,
    LAB,
    OVEN,
    REFINER,
    DemoMember,
    Layout,
    Provisioned,
    admit,
    new_station,
    register_oracle,
    station_account,
)
from node.demo_plant import (
    BASELINE_CV_PCT,
    DRIFT_CV_PCT,
    TI_AFTER_S,
    TI_BEFORE_S,
    CoatingLine,
    PlantFleet,
)
from node.demo_processes import DemoError
from node.demo_records import (
    LabDesk,
    Lot,
    bake_curve,
    bake_curve_blob,
    contingency_plan,
    genealogy,
    incoming_inspection,
    incoming_lot,
    inspection,
    lab_result,
    new_cells,
    oven_readings,
    setpoint,
    store_genealogy,
)
from node.errors import ContractRevertError
from node.keys import PASSWORD_ENV, read_keystore
from node.offchain.records import RecordInput
from node.offchain.store import Store, now_us
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import RECORD_GAS
from node.oracles.digital_link import gtin14
from node.oracles.epcis import export, import_document
from node.oracles.simulators.erp import ErpSimulator
from node.resilience.charts import duration_text
from node.resilience.distribution import DAY_US
from node.runtime import Node

__all__ = ["FULL", "PRIVATE_VALUES", "SHORT", "Scenario", "ScenarioSize", "Step"]

T = TypeVar("T")
Say = Callable[[str], None]

OPERATORS = {
    "refiner": "badge-R-20931",
    "refiner_qc": "EMP-7781-Inés",
    "cathode": "badge-B-5514",
    "cathode_qc": "EMP-3302-Oskar",
    "cells": "badge-A-4471",
    "cells_qc": "EMP-4711-Zoë",
    "lab": "ANALYST-0097-Mei",
}
PRIVATE_VALUES = tuple(OPERATORS.values())
"""Operator and analyst identities the scenario writes: private fields, never on-chain or logged."""

BRINE_GTIN = gtin14("780123400002")
PRECURSOR_GTIN = gtin14("401234500002")
MOISTURE_USL_PPM = 300.0
HISTORY_MONTHS = 11
"""Months of incoming inspections the cell maker kept before the demo."""
LOW_TEMP_LSL_PCT = 80.0
DISCIPLINES = (
    (
        "D0",
        "Emergency response",
        "Lots NCM-0461..0465 quarantined at Aster Cells and at our "
        "warehouse; sorting by Karl Fischer on every drum; shipments on hold.",
    ),
    (
        "D1",
        "Team",
        "Quality manager (lead), calcination process engineer, logistics, "
        "Aster Cells SQE as customer contact.",
    ),
    (
        "D2",
        "Problem description",
        "Moisture 342-402 ppm vs USL 300 ppm on five consecutive "
        "lots, all packed on line P2 during the week of the dryer maintenance.",
    ),
    (
        "D3",
        "Containment",
        "100 % re-drying of stock at 180 °C, re-test per lot before release; "
        "certificate of analysis with moisture per drum.",
    ),
    (
        "D4",
        "Root cause",
        "Dryer D-3 door seal replaced with a wrong part: humid air leak; the "
        "dew-point alarm was bypassed during maintenance and not restored.",
    ),
    (
        "D5",
        "Permanent corrective actions chosen",
        "Correct seal fitted; dew-point alarm interlocked "
        "with the packing line; maintenance checklist item added.",
    ),
    (
        "D6",
        "Corrective actions implemented",
        "Seal and interlock in place since shift 2; checklist released as MC-114 rev C.",
    ),
    (
        "D7",
        "Recurrence prevented",
        "PFMEA updated (dryer seal, alarm bypass); control plan "
        "adds dew point as a special characteristic; audit of all bypassable alarms.",
    ),
    (
        "D8",
        "Team recognised and case closed",
        "30 lots after the fix within 150-190 ppm; "
        "team recognised; lessons learned shared with the precursor plant.",
    ),
)


@dataclass(frozen=True)
class ScenarioSize:
    name: str
    cells_per_lot: int
    timeout_s: float
    """How long any one effect may take to show up."""


FULL = ScenarioSize("full", cells_per_lot=6, timeout_s=120.0)
SHORT = ScenarioSize("short", cells_per_lot=2, timeout_s=90.0)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: Callable[[], None]


@dataclass
class Production:
    """One lot through the chain: the refiner's lot, the cathode lot, the cell lot, its cells."""

    lithium: Lot
    cathode: Lot
    cells: Lot
    serials: list[str] = field(default_factory=list)


def until(check: Callable[[], T | None], what: str, timeout: float, interval: float = 0.1) -> T:
    """Wait until ``check`` returns something (not None, not False); DemoError when it does not
    within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class PortalClient:
    """The supplier's quality engineer in the supplier portal, over HTTP: signed in with the
    portal token, each form with its CSRF token, each discipline's report as a file upload."""

    CSRF = re.compile(r'name="csrf" value="([^"]+)"')

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30.0)
        self.headers = {"Origin": base_url}

    def close(self) -> None:
        self.http.close()

    def login(self) -> None:
        response = self.http.post("/portal/login", data={"token": self.token}, headers=self.headers)
        if response.status_code != 303:
            raise DemoError(f"portal sign-in refused: {response.status_code}")

    def home(self) -> str:
        response = self.http.get("/portal")
        if response.status_code != 200:
            raise DemoError(f"the portal answered {response.status_code}")
        return response.text

    def submit(self, case_id: int, discipline: int, name: str, report: bytes) -> str:
        """Submit a discipline's report from the portal's form; the receipt page."""
        page = self.home()
        found = self.CSRF.search(page)
        if found is None:
            raise DemoError("the portal page has no CSRF token")
        response = self.http.post(
            f"/portal/cases/{case_id}/disciplines/{discipline}",
            data={"csrf": found.group(1)},
            files={"report_file": (name, report, "text/markdown")},
            headers=self.headers,
        )
        if response.status_code != 303:
            raise DemoError(
                f"the portal refused D{discipline}: {response.status_code} "
                f"{_text_of(response.text)[:300]}"
            )
        receipt = self.http.get(response.headers["location"])
        if receipt.status_code != 200 or "DisciplineSubmitted" not in receipt.text:
            raise DemoError(f"no receipt for D{discipline}: {receipt.status_code}")
        return response.headers["location"].rsplit("/", 1)[1]


def _text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


class Scenario:
    """The steps, played against a running demo consortium. ``facts`` collects what each step
    left on-chain and in the stores (ids, hashes, URLs) for the summary and the tests."""

    def __init__(
        self,
        layout: Layout,
        members: Provisioned,
        line: CoatingLine,
        fleet: PlantFleet,
        erp: ErpSimulator,
        size: ScenarioSize = FULL,
        say: Say = lambda _line: None,
    ) -> None:
        self.layout = layout
        self.members = members
        self.line = line
        self.fleet = fleet
        self.erp = erp
        self.size = size
        self.say = say
        self.facts: dict[str, Any] = {}
        self.lots: dict[str, Production] = {}
        self._lab_desk: LabDesk | None = None
        self.steps = [
            Step("admit", "Governance: the test lab admitted by a 2-of-3 vote", self.admit_lab),
            Step("coating", "Coating CV drift -> blade-pressure compensation", self.coating_drift),
            Step("hold", "5 cathode lots over USL -> hold -> 8D in the portal", self.supplier_8d),
            Step(
                "cosigned",
                "Lab co-signed results; lot A: refiner -> cathode -> cells",
                self.first_production,
            ),
            Step("fade", "Crystallizer PID drift -> cell lot with low-temperature fade", self.fade),
            Step("trace", "qnode trace: root cause across three members", self.trace),
            Step("rotate", "Governance: oracle key rotated, revoked key refused", self.rotate_key),
            Step("resilience", "Resilience dashboard", self.resilience),
        ]

    # -- helpers ------------------------------------------------------------------------------

    def node(self, member: DemoMember) -> Node:
        return self.members.node(member)

    def wait(self, check: Callable[[], T | None], what: str) -> T:
        return until(check, what, self.size.timeout_s)

    def run(self, on_step: Callable[[Step, str], None] = lambda _step, _state: None) -> None:
        for step in self.steps:
            on_step(step, "running")
            step.run()
            on_step(step, "done")

    def lab_desk(self) -> LabDesk:
        if self._lab_desk is None:
            lab = self.node(LAB)
            [oracle] = [
                a for a in lab.local_oracle_addresses() if lab.consortium().oracle_of(a).active
            ][:1]
            self._lab_desk = LabDesk(read_keystore(lab.oracle_keystore(oracle), DEMO_PASSWORD))
        return self._lab_desk

    def cell_url(self, production: Production, serial: str) -> str:
        return production.cells.url(self.layout.api_url(CELLS), serial)

    # -- 1. governance: admission ------------------------------------------------------------

    def admit_lab(self) -> None:
        cells, refiner, lab = self.node(CELLS), self.node(REFINER), self.node(LAB)
        proposed, approved = admit(cells, refiner, lab, LAB)
        self.say(
            f"{CELLS.name} proposed admitting {LAB.name} (proposal {proposed.proposal_id}): "
            f"{proposed.approvals} of {self.node(CELLS).consortium().threshold()} approvals, "
            "not admitted yet"
        )
        if not approved.executed or not lab.consortium().is_active_member(lab.address):
            raise DemoError(f"proposal {proposed.proposal_id} did not admit {LAB.name}")
        self.say(
            f"{REFINER.name} approved: {approved.approvals} approvals, {LAB.name} admitted "
            f"(tx {approved.receipt.tx_hash[:12]}…, block {approved.receipt.block_number})"
        )
        oracle = register_oracle(lab)
        self.say(f"{LAB.name} registered its oracle key {oracle}")
        self.facts.update(
            admission_proposal=proposed.proposal_id,
            admission_tx=approved.receipt.tx_hash,
            lab_oracle=oracle,
        )

    # -- 2. lab co-signed results and the first production ------------------------------------

    def first_production(self) -> None:
        production = self.produce("A", pid_drift=False)
        serial = production.serials[0]
        url = self.cell_url(production, serial)
        passport = self.wait_passport(url)
        self.facts.update(cell_a_url=url, cell_a_serial=serial)
        self.say(
            f"consumer page of cell {serial}: {url} ({passport['summary']['verified']} values "
            "verified, upstream parts of 2 members included)"
        )

    def produce(self, name: str, pid_drift: bool) -> Production:
        """One lot through the chain, each member writing its own records."""
        suffix = time.strftime("%y%m") + ("-07" if name == "A" else "-19")
        production = Production(
            lithium=Lot(REFINER.product_gtin or "", f"LC-{suffix}"),
            cathode=Lot(CATHODE.product_gtin or "", f"NCM811-{suffix}"),
            cells=Lot(CELLS.product_gtin or "", f"L{suffix}-{name}"),
        )
        self.lots[name] = production
        self.refine(production, pid_drift)
        self.make_cathode(production)
        self.make_cells(production, faded=pid_drift)
        return production

    def refine(self, production: Production, drifted: bool) -> None:
        refiner = self.node(REFINER)
        store = refiner.store()
        brine = Lot(BRINE_GTIN, "BR-" + production.lithium.lot[3:])
        if not drifted:  # the loop's tuning as commissioned (the drift step changes it)
            store.add_records(
                [
                    setpoint(
                        CRYSTALLIZER,
                        "temperature_loop.proportional_gain",
                        2.4,
                        "C62",
                        "commissioning",
                        OPERATORS["refiner"],
                    ),
                    setpoint(
                        CRYSTALLIZER,
                        "temperature_loop.integral_time",
                        TI_BEFORE_S,
                        "SEC",
                        "commissioning",
                        OPERATORS["refiner"],
                    ),
                ]
            )
        store_genealogy(
            store,
            [
                genealogy(
                    production.lithium.uri,
                    materials=[brine.uri],
                    equipment=[CRYSTALLIZER],
                    step="evaporative crystallization",
                    operator=OPERATORS["refiner"],
                )
            ],
        )
        d50 = 7.9 if drifted else 5.1
        [d50_record] = store.add_records(
            [
                inspection(
                    production.lithium.uri,
                    "D50 particle size",
                    d50,
                    "4H",
                    "pass",
                    OPERATORS["refiner_qc"],
                )
            ]
        )
        assay = 99.58 if drifted else 99.62
        [(record, _)] = self.lab_desk().record(
            refiner,
            station_account(refiner),
            [
                lab_result(
                    production.lithium.uri,
                    "Li2CO3 assay, ICP-OES (GB/T 11075)",
                    assay,
                    "P1",
                    "pass",
                    OPERATORS["refiner_qc"],
                )
            ],
        )
        self.check_cosigned(refiner, record.record_id)
        ledger = refiner.quality_ledger()
        self.wait(lambda: ledger.is_recorded(d50_record.record_id), "the refiner's D50 on-chain")
        self.wait_anchored(refiner, [record.record_id, d50_record.record_id])
        self.say(
            f"{REFINER.name}: lot {production.lithium.lot} on crystallizer CR-2, assay {assay} % "
            f"signed by its QC station, co-signed by {LAB.name}, on-chain"
        )

    def make_cathode(self, production: Production) -> None:
        cathode = self.node(CATHODE)
        store = cathode.store()
        precursor = Lot(PRECURSOR_GTIN, "pCAM-" + production.cathode.lot[7:])
        store_genealogy(
            store,
            [
                genealogy(
                    production.cathode.uri,
                    materials=[production.lithium.uri, precursor.uri],
                    equipment=[KILN],
                    step="lithiation and calcination",
                    operator=OPERATORS["cathode"],
                )
            ],
        )
        fractions = (("Ni", 0.812), ("Mn", 0.097), ("Co", 0.091))
        results = self.lab_desk().record(
            cathode,
            station_account(cathode),
            [
                lab_result(
                    production.cathode.uri,
                    f"ICP-OES molar fraction {metal}/(Ni+Mn+Co)",
                    value,
                    "C62",
                    "pass",
                    OPERATORS["cathode_qc"],
                )
                for metal, value in fractions
            ],
        )
        for record, _ in results:
            self.check_cosigned(cathode, record.record_id)
        self.wait_anchored(cathode, [record.record_id for record, _ in results])
        ratio = ":".join(f"{v:.3f}" for _, v in fractions)
        self.say(
            f"{CATHODE.name}: lot {production.cathode.lot} from {production.lithium.lot}, "
            f"NCM ratio {ratio} co-signed by {LAB.name}, on-chain"
        )

    def wait_anchored(self, member: Node, record_ids: Sequence[str]) -> None:
        """Until ``member``'s running node has anchored every one of ``record_ids``."""
        batcher = member.batcher()

        def anchored() -> bool:
            batches = [batcher.batch_of(record_id) for record_id in record_ids]
            return all(b is not None and b.status in (ANCHORED, CONFIRMED) for b in batches)

        self.wait(anchored, f"{member.settings.member.name}'s records anchored")

    def check_cosigned(self, member: Node, record_id: str) -> None:
        ledger: QualityLedger = member.quality_ledger()
        on_chain = ledger.lab_result(record_id)
        lab_oracle = self.facts.get("lab_oracle")
        if lab_oracle is None or [c.lower() for c in on_chain.co_signers] != [lab_oracle.lower()]:
            raise DemoError(f"lab result {record_id} is not co-signed by {LAB.name} on-chain")
        self.facts.setdefault("cosigned", []).append(record_id)

    def make_cells(self, production: Production, faded: bool) -> None:
        cells = self.node(CELLS)
        store = cells.store()
        # the cathode lot's genealogy, shipped by the supplier as EPCIS with the delivery
        shipped = export(self.node(CATHODE).store(), types=["genealogy"])
        import_document(store, shipped)
        incoming_lot(  # the delivery's incoming inspection, recorded on-chain by the node
            store,
            self.node(CATHODE).address,
            "NCM811 cathode active material",
            "moisture (Karl Fischer)",
            production.cathode.uri,
            176.0 if not faded else 181.0,
            "59",
            (0.0, MOISTURE_USL_PPM),
            OPERATORS["cells_qc"],
        )
        production.serials = new_cells(self.size.cells_per_lot)
        store.add_records(
            [
                setpoint(
                    OVEN,
                    "bake_temperature",
                    130.0,
                    "CEL",
                    "recipe AC-50P rev D",
                    OPERATORS["cells"],
                )
            ]
        )
        genealogies = [
            genealogy(
                production.cells.uri,
                materials=[production.cathode.uri],
                equipment=[COATER, OVEN],
                step="electrode coating and cell assembly",
                operator=OPERATORS["cells"],
            )
        ] + [
            genealogy(
                production.cells.item(serial),
                parents=[production.cells.uri],
                equipment=[OVEN],
                step="bake, formation and grading",
                operator=OPERATORS["cells"],
            )
            for serial in production.serials
        ]
        store_genealogy(store, genealogies)
        readings = self.wait(
            lambda: self.bake_pass(store), "a whole oven pass read from the coating-line PLC"
        )
        digest = store.blobs.put(bake_curve_blob(readings))
        records = []
        for index, serial in enumerate(production.serials):
            item = production.cells.item(serial)
            retention = (71.2 if faded else 86.9) + 0.3 * index
            records += [
                bake_curve(item, digest, OPERATORS["cells"]),
                inspection(
                    item, "capacity", 50.4 + 0.1 * index, "AMH", "pass", OPERATORS["cells_qc"]
                ),
                inspection(
                    item, "DC internal resistance", 0.92, "C27", "pass", OPERATORS["cells_qc"]
                ),
                inspection(
                    item,
                    "capacity retention at -20 °C",
                    round(retention, 1),
                    "P1",
                    "fail" if retention < LOW_TEMP_LSL_PCT else "pass",
                    OPERATORS["cells_qc"],
                ),
            ]
        store.add_records(records)
        self.say(
            f"{CELLS.name}: lot {production.cells.lot} from {production.cathode.lot}, "
            f"{len(production.serials)} cells with random 80-bit serials, bake curves of "
            f"{len(readings)} oven readings (0.5 s), inspections signed by its node"
        )

    def bake_pass(self, store: Store) -> list[tuple[int, float]] | None:
        """The oven's readings of its last whole pass, once (nearly) all of them are stored."""
        window = self.line.last_pass(now_us())
        if window is None:
            return None
        readings = oven_readings(store, *window)
        expected = self.line.pass_s / 0.5
        return readings if len(readings) >= 0.9 * expected else None

    def wait_passport(self, url: str) -> dict[str, Any]:
        """The passport at ``url`` once every value in it is verified (anchored, signed)."""

        def verified() -> dict[str, Any] | None:
            response = httpx.get(url, headers={"Accept": "application/json"}, timeout=30.0)
            if response.status_code != 200:
                return None
            passport: dict[str, Any] = response.json()
            summary = passport["summary"]
            materials = passport["aspects"]["materials"]
            owners = {v["source"]["member"].lower() for v in materials}
            if summary["values"] == summary["verified"] and len(owners) >= 2:
                return passport
            return None

        return self.wait(verified, f"every value of {url} verified")

    # -- 3. coating drift ---------------------------------------------------------------------

    def coating_drift(self) -> None:
        cells = self.node(CELLS)
        control = cells.line_control()
        before = control.request_count()
        self.line.set_cv(DRIFT_CV_PCT)
        self.say(f"coating thickness CV raised from {BASELINE_CV_PCT} % to {DRIFT_CV_PCT} %")
        try:
            request_id = before + 1
            self.wait(
                lambda: (
                    control.request_count() >= request_id
                    and control.request(request_id).acknowledged_at > 0
                ),
                "the PLC's acknowledgement of the compensation on-chain",
            )
        finally:
            self.line.set_cv(BASELINE_CV_PCT)
        request = control.request(request_id)
        events = control.events_between(0, "latest", ("CompensationAcknowledged",))
        acks = [
            a for a in of_type(events, CompensationAcknowledgedEvent) if a.request_id == request_id
        ]
        snapshot = self.line.snapshot()
        self.say(
            f"rule coating-cv fired: LineControl request {request_id}, blade pressure "
            f"{request.delta / 1000:+.3f} mm (decision {request.decision_hash[:12]}…); the PLC "
            f"applied it (blade {snapshot.blade_actual_mm:.3f} mm) and acknowledged; "
            f"read back {acks[0].read_back / 1000 if acks else '?'} mm on-chain"
        )
        self.say(f"coating thickness CV back to {BASELINE_CV_PCT} %")
        self.facts.update(
            compensation_request=request_id,
            compensation_decision=request.decision_hash,
            blade_mm=snapshot.blade_actual_mm,
        )

    # -- 4. supplier hold and 8D ----------------------------------------------------------------

    def supplier_8d(self) -> None:
        self.incoming_lots()
        hold_id, case_id = self.wait_hold()
        self.answer_8d(hold_id, case_id)

    def incoming_lots(self, on_lot: Callable[[int], None] = lambda _index: None) -> list[str]:
        """The first cathode lot in spec, then five over the moisture USL (inspected one after
        the other: the in-spec lot is on-chain before the others come). ``on_lot`` is called
        after each lot is stored, with its index."""
        cells, cathode = self.node(CELLS), self.node(CATHODE)
        lots = [
            Lot(CATHODE.product_gtin or "", f"NCM811-{time.strftime('%y%m')}-{60 + n}")
            for n in range(6)
        ]
        values = [(lots[0].uri, 182.0)] + [
            (lot.uri, 342.0 + 14.5 * n) for n, lot in enumerate(lots[1:])
        ]
        outbox = ActionOutbox(cells.store())
        ids = []
        for index, (lot, ppm) in enumerate(values):
            record = incoming_lot(
                cells.store(),
                cathode.address,
                "NCM811 cathode active material",
                "moisture (Karl Fischer)",
                lot,
                ppm,
                "59",
                (0.0, MOISTURE_USL_PPM),
                OPERATORS["cells_qc"],
            )
            ids.append(record.record_id)
            on_lot(index)
            if index == 0:
                key = f"incoming_lot:{record.record_id}"
                self.wait(_action_done(outbox, key), "the in-spec lot on SupplierQuality")
        over = ", ".join(f"{ppm:.0f}" for _, ppm in values[1:])
        self.say(
            f"{CELLS.name} incoming inspection: cathode lot at {values[0][1]:.0f} ppm, then 5 "
            f"over the {MOISTURE_USL_PPM:.0f} ppm USL ({over} ppm), recorded on SupplierQuality "
            f"by its node"
        )
        self.facts["incoming_lots"] = ids
        return ids

    def wait_hold(self) -> tuple[int, int]:
        cells, cathode = self.node(CELLS), self.node(CATHODE)
        quality = cells.supplier_quality()
        hold_id = self.wait(
            lambda: quality.active_hold(cells.address, cathode.address),
            "SupplierQuality's hold on the cathode supplier",
        )
        hold = quality.hold(hold_id)
        self.wait(
            lambda: self.erp.purchase_orders(cathode.address) == "paused",
            "the ERP pausing the supplier's purchase orders",
        )
        self.say(
            f"SupplierQuality: hold {hold_id} on {CATHODE.name} after 5 lots in a row over the "
            f"USL, 8D case {hold.case_id} opened; ERP: purchase orders paused"
        )
        self.facts.update(hold_id=hold_id, case_id=hold.case_id)
        return hold_id, hold.case_id

    def answer_8d(
        self,
        hold_id: int,
        case_id: int,
        before_submit: Callable[[int], None] = lambda _discipline: None,
        after_submit: Callable[[int], None] = lambda _discipline: None,
    ) -> None:
        """The supplier answers D0..D8 in its portal; the cell maker reviews and approves each
        (the lab verifies the effectiveness before D8). ``before_submit`` and ``after_submit``
        are called around each portal submission, with the discipline's number."""
        cells, cathode, lab = self.node(CELLS), self.node(CATHODE), self.node(LAB)
        portal = PortalClient(self.layout.api_url(CATHODE), self.layout.portal_token)
        reviews = TaskBoard(cells.store())
        corrective = cells.corrective_action()
        try:
            portal.login()
            for number, (name, title, text) in enumerate(DISCIPLINES):
                key = f'data-key="supplier_task:{case_id}:D{number}"'
                self.wait(_shows(portal, key), f"the portal's {name} task")
                before_submit(number)
                report = f"# 8D case {case_id}, {name}: {title}\n\n{text}\n".encode()
                tx = portal.submit(case_id, number, f"8D-{case_id}-{name}.md", report)
                after_submit(number)
                digest = "0x" + hashlib.sha256(report).hexdigest()
                review = f"review:{case_id}:D{number}:{digest}"
                self.wait(_task(reviews, review), f"the review task of {name}")
                if number == len(DISCIPLINES) - 1:
                    evidence = b"Effectiveness: 30 lots after the fix, moisture 150-190 ppm."
                    blob = lab.store().blobs.put(evidence)
                    lab.corrective_action().verify_effectiveness(case_id, "0x" + blob)
                    self.say(f"{LAB.name} verified the effectiveness (evidence 0x{blob[:12]}…)")
                corrective.approve(case_id, number)
                reviews.close(review)
                self.facts.setdefault("reports", []).append(digest)
                self.facts.setdefault("portal_txs", []).append(tx)
                self.say(
                    f"{name} submitted in {CATHODE.name}'s portal (tx {tx[:12]}…, report "
                    f"{digest[:12]}…), approved by {CELLS.name}"
                )
        finally:
            portal.close()
        quality = cells.supplier_quality()
        self.wait(
            lambda: not quality.is_on_hold(cells.address, cathode.address),
            "the hold's release after the case's closure",
        )
        self.wait(
            lambda: self.erp.purchase_orders(cathode.address) == "open",
            "the ERP resuming the supplier's purchase orders",
        )
        self.say(f"8D case {case_id} closed, hold {hold_id} released, ERP: purchase orders open")

    # -- 5. PID drift and low-temperature fade --------------------------------------------------

    def fade(self) -> None:
        refiner = self.node(REFINER)
        crystallizer = self.fleet.crystallizer
        crystallizer.drift()
        started = self.wait(
            lambda: crystallizer.drift_started_at, "the crystallizer's loop to drift"
        )
        drift_at = _epoch_us(started) // 1000 * 1000  # its message's millisecond
        refiner.store().add_records(
            [
                setpoint(
                    CRYSTALLIZER,
                    "temperature_loop.integral_time",
                    TI_AFTER_S,
                    "SEC",
                    f"auto-tune run AT-0419 (was {TI_BEFORE_S:.0f} s)",
                    OPERATORS["refiner"],
                    at_us=drift_at,
                )
            ]
        )
        self.wait(
            lambda: crystallizer.integral_time_s <= TI_AFTER_S,
            "the crystallizer's integral time at its drifted value",
        )
        self.say(
            f"{REFINER.name}: crystallizer CR-2's temperature-loop integral time drifted "
            f"{TI_BEFORE_S:.0f} s -> {TI_AFTER_S:.0f} s from {_iso_ms(drift_at)}; the loop "
            f"swings ±{crystallizer.amplitude_c:.1f} °C"
        )
        production = self.produce("B", pid_drift=True)
        record = lab_result(
            production.cells.uri,
            "capacity retention at -20 °C, 0.2 C (IEC 62660-1)",
            71.4,
            "P1",
            "fail",
            OPERATORS["lab"],
        )
        lab = self.node(LAB)
        [stored] = lab.store().add_records([record])
        ledger = lab.quality_ledger()
        self.wait(lambda: ledger.is_recorded(stored.record_id), "the lab's fade result on-chain")
        serial = production.serials[0]
        url = self.cell_url(production, serial)
        self.wait_passport(url)
        self.say(
            f"{CELLS.name}: cells of lot {production.cells.lot} keep 71 % of their capacity at "
            f"-20 °C (LSL {LOW_TEMP_LSL_PCT:.0f} %); {LAB.name} confirms 71.4 % (signed by its "
            "oracle, on-chain)"
        )
        self.facts.update(
            drift_at_us=drift_at,
            drift_equipment=CRYSTALLIZER,
            cell_b_url=url,
            cell_b_serial=serial,
            faded_lot=production.cells.uri,
            lab_fade_record=stored.record_id,
        )

    # -- 6. the trace ------------------------------------------------------------------------

    def trace(self) -> None:
        """``qnode trace`` (issue 7, item 4, node/trace) from a faded cell, run by the cell maker
        with the legitimate-interest tokens the other members gave it; its top root-cause
        candidate, as it ranks them, and the drift it should find."""
        production = self.lots.get("B")
        if production is None:
            return
        cell = production.cells.item(production.serials[0])
        drift_at = _iso_ms(self.facts["drift_at_us"])
        expected = (
            f"{REFINER.name}'s crystallizer CR-2 (7801234CR2): temperature-loop integral time "
            f"{TI_BEFORE_S:.0f} s -> {TI_AFTER_S:.0f} s from {drift_at}"
        )
        svg = self.layout.root / f"trace-{production.serials[0]}.svg"
        config = str(self.layout.config_file(CELLS))
        tokens = str(self.layout.trace_tokens_file)
        command = ["trace", cell, "-c", config, "--tokens", tokens]
        self.say(f"$ {PASSWORD_ENV}={DEMO_PASSWORD} qnode " + " ".join(command))
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "node", *command, "--json", "--svg", str(svg)],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env_with_password(),
        )
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            raise DemoError(f"qnode trace failed: {result.stderr.strip()[-500:]}")
        traced: dict[str, Any] = json.loads(result.stdout)
        anomalies = {a["uid"]: a for a in traced["anomalies"]}
        for candidate in traced["candidates"][:3]:
            anomaly = anomalies.get(candidate["anomaly"], {})
            owner = anomaly.get("owner", {}).get("name")
            self.say(
                f"  #{candidate['rank']} [{candidate['score']:.0f}] {anomaly.get('summary', '?')}"
                f" ({owner}, from {anomaly.get('at')})"
            )
        for member in traced["members"]:
            self.say(
                f"  {member['name']}: {member['status']}, {member['requests']} request(s), "
                f"{member['elapsedMs']:.0f} ms"
            )
        self.say(
            f"traced across {len(traced['members'])} members in {traced['elapsedMs']:.0f} ms "
            f"({elapsed:.1f} s with the command's start); graph in {svg}"
        )
        top = anomalies.get(traced["candidates"][0]["anomaly"], {}) if traced["candidates"] else {}
        found = (
            top.get("details", {}).get("parameter") == "integral_time"
            and top.get("atMs") == self.facts["drift_at_us"] // 1000
        )
        verdict = "found as the top candidate" if found else "NOT the top candidate"
        self.say(f"the root cause put in, {verdict}: {expected}")
        self.facts["trace"] = traced

    # -- 7. governance: key rotation ------------------------------------------------------------

    def rotate_key(self) -> None:
        cathode = self.node(CATHODE)
        old = station_account(cathode)
        new = new_station(cathode)
        receipt = cathode.consortium().rotate_oracle(old.address, new.address)
        status = cathode.consortium().oracle_of(old.address)
        self.say(
            f"{CATHODE.name} rotated its QC station key {old.address[:10]}… -> "
            f"{new.address[:10]}… (block {receipt.block_number}); old key active: {status.active}"
        )
        lot = self.lots["A"].cathode.uri if "A" in self.lots else CATHODE.product_gtin or ""
        error, tx_hash = self.relay_with(cathode, old, lot)
        self.say(
            f"a result signed with the revoked key was refused on-chain (tx {tx_hash[:12]}…): "
            f"{type(error).__name__}({_args(error)})"
        )
        [(record, _)] = self.lab_desk().record(cathode, new, [self._retest(lot)])
        self.check_cosigned(cathode, record.record_id)
        self.say(f"the same result signed with the new key {new.address[:10]}… is on-chain")
        self.facts.update(
            revoked_key=old.address,
            new_key=new.address,
            revoked_error=type(error).__name__,
            revoked_tx=tx_hash,
        )

    def _retest(self, lot: str) -> Any:
        return lab_result(
            lot,
            "ICP-OES molar fraction Ni/(Ni+Mn+Co), re-test",
            0.811,
            "C62",
            "pass",
            OPERATORS["cathode_qc"],
        )

    def relay_with(
        self, member: Node, station: LocalAccount, lot: str
    ) -> tuple[ContractRevertError, str]:
        """Sign a result with ``station`` (co-signed by the lab) and send it with a fixed gas
        limit, so that the chain itself refuses it; the decoded revert and the failed tx."""
        store = member.store()
        ledger = member.quality_ledger()
        [record] = store.add_records([self._retest(lot)])
        signer = AttestationSigner(station, ledger.domain())
        attestation = LabDesk.sign(signer, store, record, ledger.nonce_of(station.address))
        attestation = AttestationSigner(self.lab_desk().lab_oracle, ledger.domain()).co_sign(
            attestation
        )
        request = ledger.record_request(attestation, gas=RECORD_GAS)
        sender = member.sender
        head = member.connection.head_block()
        try:
            sender.transact(TxRequest(request.to, request.data, gas=RECORD_GAS, label="relay"))
        except ContractRevertError as exc:
            return exc, _failed_tx(member, sender.address, head)
        raise DemoError("the chain accepted a result signed with a revoked oracle key")

    # -- 8. the resilience dashboard ------------------------------------------------------------

    def resilience(self) -> None:
        """Aster's records from before the demo (incoming inspections of Borealis' lots over the
        past months, kept in its store; its contingency plans' reviews), then its dashboard's
        JSON from its API, summarised, and the page's URL."""
        cells, cathode = self.node(CELLS), self.node(CATHODE)
        history = past_inspections(cathode.address, OPERATORS["cells_qc"])
        cells.store().add_records([*history, *contingency_plans(OPERATORS["cells_qc"])])
        response = httpx.get(
            f"{self.layout.api_url(CELLS)}/api/v1/resilience",
            headers={"Authorization": f"Bearer {self.layout.authority_token}"},
            timeout=60.0,
        )
        if response.status_code != 200:
            raise DemoError(f"GET /api/v1/resilience answered {response.status_code}")
        report: dict[str, Any] = response.json()
        self.say(
            f"{CELLS.name} had inspected {len(history)} lots of {CATHODE.name} over the past "
            f"{HISTORY_MONTHS} months (in its store, before the demo) and reviews 3 contingency "
            "plans"
        )
        for group in report["qrrc"]["byScope"]:
            median = group["medianS"]
            self.say(
                f"recovery cycle, {group['scopeKind']} {group['label']}: {group['recovered']} of "
                f"{group['count']} back to baseline"
                + (f", median {duration_text(median)}" if median is not None else "")
                + (f", {group['open']} open" if group["open"] else "")
            )
        risk, tasks = report["highRiskSuppliers"], report["taskHandling"]["all"]
        plans = report["contingencyPlans"]
        self.say(
            f"high-risk suppliers: {risk['highRisk']} of {risk['total']}; tasks: "
            f"{tasks['closed']} of {tasks['count']} closed; contingency plans: {plans['fresh']} "
            f"of {plans['total']} fresh"
        )
        for supplier in report["radar"]["suppliers"]:
            axes = ", ".join(
                f"{a['title']} {a['score']:.2f}" if a["score"] is not None else f"{a['title']} -"
                for a in supplier["axes"]
            )
            self.say(f"capability radar, {supplier['label']}: {axes}")
        self.say(f"dashboard: {self.layout.api_url(CELLS)}/explorer/resilience")
        self.facts.update(resilience=report, history_lots=len(history))


def past_inspections(supplier: str, inspector: str) -> list[RecordInput]:
    """Four lots a month over the HISTORY_MONTHS months before this one, moisture in spec but
    for a two-lot excursion seven months ago (seeded: the same history every run)."""
    rng = random.Random(4711)
    now = datetime.now(UTC)
    records = []
    for months_ago in range(HISTORY_MONTHS, 0, -1):
        month_start = (now.replace(day=1) - timedelta(days=30 * months_ago)).replace(day=1)
        for n in range(4):
            at = month_start + timedelta(days=3 + 7 * n, hours=rng.uniform(6, 18))
            ppm = round(rng.gauss(170.0, 22.0), 1)
            if months_ago == 7 and n < 2:
                ppm = round(MOISTURE_USL_PPM + rng.uniform(10, 40), 1)
            lot = Lot(CATHODE.product_gtin or "", f"NCM811-{at:%y%m}-{n + 1:02d}")
            records.append(
                incoming_inspection(
                    supplier,
                    "NCM811 cathode active material",
                    "moisture (Karl Fischer)",
                    lot.uri,
                    ppm,
                    "59",
                    (0.0, MOISTURE_USL_PPM),
                    inspector,
                    _epoch_us(at),
                )
            )
    return records


def contingency_plans(reviewer: str) -> list[RecordInput]:
    """Three plans of the cell maker: two reviewed within their interval, one overdue."""
    now, day = now_us(), DAY_US
    return [
        contingency_plan("coater-outage", "Coater outage", "line coater", "3", 180, reviewer,
                         now - 40 * day),
        contingency_plan("cathode-supply", "Cathode supply interruption",
                         f"supplier {CATHODE.name}", "2", 365, reviewer, now - 120 * day),
        contingency_plan("formation-oven", "Formation-oven failure", "line formation", "1", 365,
                         reviewer, now - 420 * day),
    ]  # fmt: skip


def _action_done(outbox: ActionOutbox, key: str) -> Callable[[], bool]:
    def done() -> bool:
        action = outbox.get(key)
        return action is not None and action.status is ActionStatus.DONE

    return done


def _shows(portal: PortalClient, text: str) -> Callable[[], bool]:
    return lambda: text in portal.home()


def _task(board: TaskBoard, key: str) -> Callable[[], Task | None]:
    return lambda: board.get(key)


def _failed_tx(member: Node, sender: str, since_block: int) -> str:
    """The hash of the latest failed transaction of ``sender`` since ``since_block``."""
    w3 = member.connection.w3
    for number in range(w3.eth.block_number, since_block, -1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            if str(tx["from"]).lower() == sender.lower():
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                if receipt["status"] == 0:
                    return "0x" + bytes(tx["hash"]).hex()
    return "(not mined)"


def _args(error: ContractRevertError) -> str:
    return ", ".join(f"{k}={v}" for k, v in error.args_by_name.items())


def _epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _iso_ms(timestamp_us: int) -> str:
    seconds, micros = divmod(timestamp_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros // 1000:03d}Z"


def _env_with_password() -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: DEMO_PASSWORD, "NO_COLOR": "1"}


def private_values() -> Sequence[str]:
    return PRIVATE_VALUES
