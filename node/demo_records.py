"""The records the demo's members write about their products, as their plants would: lots and
their genealogy (refiner lot -> cathode lot -> cell lot -> cells with random 80-bit serials), PID
setpoints, lab results co-signed by the test lab, cell inspections, bake curves from the oven's
0.5 s readings, incoming inspections of cathode lots (and the months of them kept before the
demo), contingency-plan reviews.

Records go into a member's store directly, as the member's LIMS or MES would put them; the
member's running node (``qnode run``, another process) anchors them, and signs and relays the
critical ones. Two paths are the demo's own, because a running node does not see records that
another process writes:
- a lab result co-signed by the test lab (:class:`LabDesk`) is stored together with its
  attestation (signed by the member's QC lab station key, co-signed by the lab's oracle key) and
  relayed by the member's account;
- an incoming lot (:func:`incoming_lot`) is stored together with the ``incoming_lot`` action the
  node's closed loop owes for it (``SupplierQuality.recordLot``), as ``qnode run`` itself does for
  lots it stores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from node.api.serials import new_serial
from node.control.outbox import ActionOutbox, ActionRequest
from node.errors import AttestationError
from node.offchain.genealogy import Genealogy, GenealogyInput, InputKind, write_genealogy
from node.offchain.records import RecordInput, StoredRecord
from node.offchain.store import RECORDS, Store, now_us
from node.oracles.attestation import (
    Attestation,
    AttestationSigner,
    fields_from_record,
    write_attestation,
)
from node.oracles.attestor import ATTESTED_TYPES, Attestor
from node.oracles.digital_link import product
from node.runtime import Node

__all__ = [
    "LabDesk",
    "Lot",
    "bake_curve_blob",
    "contingency_plan",
    "genealogy",
    "incoming_inspection",
    "incoming_lot",
    "inspection",
    "lab_result",
    "new_cells",
    "setpoint",
]

LOT_DECIMALS = 4
"""Fixed-point decimals of incoming lots on SupplierQuality.sol (as ``qnode run`` uses)."""
OVEN_DEVICE = "bake-oven-1"
ATTESTATION_VALIDITY_S = 3600


@dataclass(frozen=True)
class Lot:
    gtin: str
    lot: str

    @property
    def uri(self) -> str:
        return product(self.gtin, self.lot).canonical_uri()

    def item(self, serial: str) -> str:
        return product(self.gtin, self.lot, serial).canonical_uri()

    def url(self, base: str, serial: str | None = None) -> str:
        """Where the owner's resolver serves it."""
        return product(self.gtin, self.lot, serial).uri(base)


def new_cells(count: int) -> list[str]:
    """Random serials: 16 Crockford base-32 characters, 80 random bits each."""
    return [new_serial() for _ in range(count)]


def genealogy(
    output: str,
    materials: Sequence[str] = (),
    parents: Sequence[str] = (),
    equipment: Sequence[str] = (),
    step: str | None = None,
    operator: str | None = None,
    at_us: int | None = None,
) -> Genealogy:
    inputs = (
        [GenealogyInput(m, InputKind.MATERIAL_LOT) for m in materials]
        + [GenealogyInput(p, InputKind.PARENT_LOT) for p in parents]
        + [GenealogyInput(e, InputKind.EQUIPMENT) for e in equipment]
    )
    return Genealogy(
        output,
        tuple(inputs),
        now_us() if at_us is None else at_us,
        process_step=step,
        equipment=equipment[0] if equipment else None,
        operator_id=operator,
    )


def store_genealogy(store: Store, genealogies: Sequence[Genealogy]) -> list[StoredRecord]:
    with store.transaction() as connection:
        return write_genealogy(store, connection, genealogies)


def setpoint(
    equipment: str,
    parameter: str,
    value: float,
    unit: str,
    reason: str,
    operator: str,
    at_us: int | None = None,
) -> RecordInput:
    fields = {
        "equipment": equipment,
        "parameter": parameter,
        "value": value,
        "unit": unit,
        "reason": reason,
        "operator_id": operator,
    }
    return RecordInput("setpoint", fields, now_us() if at_us is None else at_us)


def inspection(
    part: str, characteristic: str, value: float, unit: str, verdict: str, inspector: str
) -> RecordInput:
    fields = {
        "part_id": part,
        "characteristic": characteristic,
        "value": value,
        "unit": unit,
        "verdict": verdict,
        "inspector_id": inspector,
    }
    return RecordInput("inspection", fields, now_us())


def lab_result(
    sample: str,
    method: str,
    value: float,
    unit: str,
    verdict: str,
    analyst: str,
    report_blob: str | None = None,
) -> RecordInput:
    fields: dict[str, Any] = {
        "sample": sample,
        "method": method,
        "value": value,
        "unit": unit,
        "verdict": verdict,
        "analyst_id": analyst,
    }
    if report_blob is not None:
        fields["report_blob"] = report_blob
    return RecordInput("lab_result", fields, now_us())


def incoming_lot(
    store: Store,
    supplier: str,
    part: str,
    characteristic: str,
    lot: str,
    value: float,
    unit: str,
    limits: tuple[float, float],
    inspector: str,
) -> StoredRecord:
    """Store an incoming inspection of a supplier member's lot together with the
    ``incoming_lot`` action that records it on SupplierQuality.sol (done by the running node)."""
    inspected = incoming_inspection(
        supplier, part, characteristic, lot, value, unit, limits, inspector, now_us()
    )
    on_chain = ("supplier", "part", "characteristic", "lot", "value", "lsl", "usl")
    with store.transaction() as connection:
        [record] = store.write_records(connection, [inspected])
        payload = {name: inspected.fields[name] for name in on_chain}
        payload.update(decimals=LOT_DECIMALS, record_id=record.record_id)
        key = f"incoming_lot:{record.record_id}"
        ActionOutbox(store).enqueue(connection, [ActionRequest("incoming_lot", key, payload)])
    return record


def incoming_inspection(
    supplier: str,
    part: str,
    characteristic: str,
    lot: str,
    value: float,
    unit: str,
    limits: tuple[float, float],
    inspector: str,
    at_us: int,
) -> RecordInput:
    """An incoming inspection of a supplier's lot. On its own (as for the months before the
    demo) it is kept in the store and anchored, not recorded on SupplierQuality.sol."""
    lsl, usl = limits
    fields = {
        "supplier": supplier,
        "part": part,
        "characteristic": characteristic,
        "lot": lot,
        "value": value,
        "unit": unit,
        "lsl": lsl,
        "usl": usl,
        "inspector_id": inspector,
    }
    return RecordInput("incoming_lot", fields, at_us)


def contingency_plan(
    plan_id: str,
    title: str,
    scope: str,
    version: str,
    review_interval_days: float,
    reviewer: str,
    reviewed_at_us: int,
) -> RecordInput:
    """One review of a contingency plan (its observation time is the review)."""
    fields = {
        "plan_id": plan_id,
        "title": title,
        "scope": scope,
        "version": version,
        "review_interval_days": review_interval_days,
        "reviewer_id": reviewer,
    }
    return RecordInput("contingency_plan", fields, reviewed_at_us)


def oven_readings(store: Store, since_us: int, until_us: int) -> list[tuple[int, float]]:
    """The bake oven's temperature readings (µs, °C) in [since, until) from the store."""
    query = (
        select(RECORDS.c.observed_at_us, RECORDS.c.public_json)
        .where(
            RECORDS.c.record_type == "measurement",
            RECORDS.c.observed_at_us >= since_us,
            RECORDS.c.observed_at_us < until_us,
        )
        .order_by(RECORDS.c.observed_at_us)
    )
    readings = []
    with store.transaction() as connection:
        for observed, public_json in connection.execute(query):
            fields = orjson.loads(public_json)
            if fields.get("device") != OVEN_DEVICE:
                continue
            for point in fields.get("points", []):
                if point.get("q") == "temperature":
                    readings.append((int(observed), float(point["v"])))
    return readings


def bake_curve_blob(readings: Sequence[tuple[int, float]]) -> bytes:
    """A bake curve blob (times from the first sample, °C) from the oven's readings."""
    first = readings[0][0]
    curve = {
        "t_s": [round((at - first) / 1e6, 3) for at, _ in readings],
        "c": [round(value, 2) for _, value in readings],
        "unit": "CEL",
        "source": f"{OVEN_DEVICE}: BakeOven.Temperature over OPC UA, sampled every 0.5 s",
    }
    return json.dumps(curve, separators=(",", ":")).encode()


def bake_curve(cell: str, blob_digest: str, operator: str) -> RecordInput:
    fields = {
        "cell_id": cell,
        "sampling_ms": 500,
        "curve_blob": blob_digest,
        "operator_badge": operator,
    }
    return RecordInput("bake_curve", fields, now_us())


class LabDesk:
    """Lab results co-signed by the test lab: a member's QC lab station signs a result with its
    own oracle key, the test lab co-signs it with its oracle key (QualityLedger counts the lab's
    approval towards its lab quorum), and the member's account relays it."""

    def __init__(self, lab_oracle: LocalAccount) -> None:
        self.lab_oracle = lab_oracle

    def record(
        self, member: Node, station: LocalAccount, results: Sequence[RecordInput]
    ) -> list[tuple[StoredRecord, Attestation]]:
        """Store ``results`` with their co-signed attestations (one transaction), relay them,
        and wait until the chain has them."""
        store = member.store()
        ledger = member.quality_ledger()
        signer = AttestationSigner(station, ledger.domain())
        co_signer = AttestationSigner(self.lab_oracle, ledger.domain())
        nonce = ledger.nonce_of(station.address)
        done = []
        with store.transaction() as connection:
            stored = store.write_records(connection, results)
            for offset, record in enumerate(stored):
                attestation = co_signer.co_sign(self.sign(signer, store, record, nonce + offset))
                write_attestation(connection, attestation)
                done.append((record, attestation))
        outcome = Attestor(store, signer, ledger).submit_pending()
        if outcome.failed:
            raise AttestationError(f"the chain refused a co-signed result: {outcome.failed[0][1]}")
        return done

    @staticmethod
    def sign(
        signer: AttestationSigner, store: Store, record: StoredRecord, nonce: int
    ) -> Attestation:
        kind = ATTESTED_TYPES[record.record_type]
        record_type = store.classification.of(record.record_type)
        fields = fields_from_record(kind, record, record_type)
        fields.update(nonce=nonce, deadline=int(time.time()) + ATTESTATION_VALIDITY_S)
        return signer.sign(kind, fields, record_type)
