"""Reading the facts of the resilience metrics out of a member's store and the chain.

From the store: ``incoming_lot`` records (with whether each is in an anchored batch, and whether
a genealogy record names its lot as an input), ``decision`` and ``contingency_plan`` records, the
task board, and the ``measurement`` records after each acknowledged compensation (at most
``policy.measurement_scan_limit`` each). From the chain, over the node's own connection: the
events of LineControl, SupplierQuality and CorrectiveAction from their deployment blocks (read in
bounded ranges), each with its block's time; the setpoints members recorded on QualityLedger;
the members' names.

A contract this node does not know is ``not_deployed``, a chain that does not answer
``unavailable``: the metrics are computed from what could be read, and the report lists each
source with its status, so nothing missing passes for zero.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import select

from node.anchoring.batcher import ANCHORED, CONFIRMED
from node.chain.connection import translate_chain_errors
from node.chain.contract_events import EventDecoder, LoggedEvent
from node.control.actions.tasks import TaskBoard
from node.control.decisions import DECISION, Decision
from node.control.lines import Lines
from node.control.observations import INCOMING_LOT, MEASUREMENT, IncomingLot, Measurement
from node.control.rule_metrics import scope_fields
from node.errors import ChainError, ConfigError, IdentifierError, QnodeError, RecordError
from node.offchain.genealogy import LINKS, InputKind
from node.offchain.store import BATCHES, OUTBOX, RECORDS, Store, stored_record
from node.oracles.attestation import AttestationKind
from node.oracles.digital_link import parse
from node.resilience.contingency import CONTINGENCY_PLAN
from node.resilience.facts import (
    ChainEvent,
    DecisionFact,
    LotResult,
    MeasurementValue,
    ParameterChange,
    PlanReview,
    ResilienceFacts,
    SourceStatus,
    TaskTimes,
)
from node.resilience.policy import ResiliencePolicy
from node.resilience.recovery import watched_condition
from node.runtime import Node

__all__ = ["chain_event", "collect", "store_facts"]

log = logging.getLogger(__name__)
T = TypeVar("T")
BLOCK_RANGE = 5_000
"""Blocks per ``eth_getLogs`` call."""
_LOCATION = {"block_number", "tx_hash", "log_index"}
_LOT_KINDS = (InputKind.MATERIAL_LOT.value, InputKind.PARENT_LOT.value)


def collect(node: Node, policy: ResiliencePolicy) -> ResilienceFacts:
    """The facts of ``node``: its store and what its chain connection can read."""
    store = node.store()
    sources: list[SourceStatus] = []
    lots, decisions, plans, tasks = store_facts(store)
    sources.append(
        SourceStatus(
            "store",
            "ok",
            f"{len(lots)} incoming lot(s), {len(decisions)} decision(s), "
            f"{len(plans)} plan review(s), {len(tasks)} task(s)",
            len(lots) + len(decisions) + len(plans) + len(tasks),
        )
    )
    blocks = _BlockTimes(node)
    events: list[ChainEvent] = []
    contracts: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("LineControl", node.line_control),
        ("SupplierQuality", node.supplier_quality),
        ("CorrectiveAction", node.corrective_action),
    )
    for name, binding in contracts:

        def read(name: str = name, binding: Callable[[], Any] = binding) -> list[ChainEvent]:
            return _events(node, name, binding(), blocks)

        events += _read(sources, name, read) or []
    changes = _read(sources, "QualityLedger", lambda: _changes(node, blocks)) or []
    names = _read(sources, "Consortium", lambda: _names(node)) or {}
    measurements = _measurements(store, decisions, events, policy)
    return ResilienceFacts(
        member=node.address,
        lots=tuple(lots),
        decisions=tuple(decisions),
        measurements=tuple(measurements),
        events=tuple(events),
        tasks=tuple(tasks),
        plans=tuple(plans),
        changes=tuple(changes),
        line_names={line.id: line.name for line in Lines(node.settings.control.lines)},
        names=names,
        sources=tuple(sources),
    )


def _read(sources: list[SourceStatus], name: str, read: Callable[[], T]) -> T | None:
    try:
        value = read()
    except ConfigError as exc:
        sources.append(SourceStatus(name, "not_deployed", str(exc)))
        return None
    except ChainError as exc:
        log.warning("resilience: %s could not be read: %s", name, exc)
        sources.append(SourceStatus(name, "unavailable", str(exc)))
        return None
    count = len(value) if isinstance(value, list | dict) else 0
    sources.append(SourceStatus(name, "ok", "", count))
    return value


# -- the store -----------------------------------------------------------------------------------


def store_facts(
    store: Store,
) -> tuple[list[LotResult], list[DecisionFact], list[PlanReview], list[TaskTimes]]:
    """(incoming lots, decisions, contingency-plan reviews, tasks) of a store; a malformed record
    is left out (and logged)."""
    with store.transaction() as connection:
        rows = connection.execute(
            select(RECORDS)
            .where(RECORDS.c.record_type.in_([INCOMING_LOT, DECISION, CONTINGENCY_PLAN]))
            .order_by(RECORDS.c.observed_at_us, RECORDS.c.record_id)
        ).mappings()
        records = [stored_record(row) for row in rows]
        anchored = set(
            connection.execute(
                select(OUTBOX.c.record_id)
                .join(BATCHES, OUTBOX.c.batch_id == BATCHES.c.batch_id)
                .join(RECORDS, RECORDS.c.record_id == OUTBOX.c.record_id)
                .where(
                    RECORDS.c.record_type == INCOMING_LOT,
                    BATCHES.c.status.in_([ANCHORED, CONFIRMED]),
                )
            ).scalars()
        )
        inputs = set(
            connection.execute(
                select(LINKS.c.input_id).where(LINKS.c.input_kind.in_(_LOT_KINDS)).distinct()
            ).scalars()
        )
    traced = _lot_names(inputs)
    lots, decisions, plans = [], [], []
    for record in records:
        try:
            if record.record_type == INCOMING_LOT:
                lot = IncomingLot.from_record(record)
                lots.append(
                    LotResult(
                        lot.record_id,
                        lot.supplier,
                        lot.part,
                        lot.characteristic,
                        lot.lot,
                        lot.value,
                        lot.lsl,
                        lot.usl,
                        lot.observed_at_us,
                        anchored=lot.record_id in anchored,
                        traced=lot.lot in traced,
                    )
                )
            elif record.record_type == DECISION:
                decisions.append(_decision(Decision.from_record(record), record.record_id))
            else:
                plans.append(_plan(record.record_id, record.observed_at_us, record.public))
        except (QnodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("resilience: record %s left out: %s", record.record_id, exc)
    tasks = [
        TaskTimes(t.key, t.kind, t.created_at_us, t.closed_at_us, t.due_at_us)
        for t in TaskBoard(store).tasks()
    ]
    return lots, decisions, plans, tasks


def _lot_names(inputs: Iterable[str]) -> set[str]:
    """Each lot input as written, and its lot (AI 10) when it is a Digital Link."""
    names = set()
    for uri in inputs:
        names.add(uri)
        try:
            lot = parse(uri, domains=None).lot
        except IdentifierError:
            continue
        if lot:
            names.add(lot)
    return names


def _decision(decision: Decision, record_id: str) -> DecisionFact:
    condition = decision.thresholds.get("condition")
    leaves = decision.computed.get("conditions")
    devices = set()
    for leaf in leaves.values() if isinstance(leaves, dict) else ():
        scope = leaf.get("scope") if isinstance(leaf, dict) else None
        if isinstance(scope, str):
            with contextlib.suppress(ValueError, AttributeError):
                device = scope_fields(scope).get("device")
                if device:
                    devices.add(device)
    return DecisionFact(
        record_id.lower(),
        decision.rule_id,
        decision.fired_at_us,
        dict(decision.action),
        dict(condition) if isinstance(condition, dict) else {},
        tuple(sorted(devices)),
    )


def _plan(record_id: str, observed_at_us: int, fields_: Any) -> PlanReview:
    plan_id = fields_.get("plan_id")
    if not isinstance(plan_id, str) or not plan_id.strip():
        raise RecordError("a contingency plan needs a plan_id")
    interval = fields_.get("review_interval_days")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise RecordError("review_interval_days must be a number above 0")
        interval = float(interval)
    return PlanReview(
        record_id,
        plan_id.strip(),
        observed_at_us,
        str(fields_.get("title") or ""),
        str(fields_.get("scope") or ""),
        interval,
    )


def _measurements(
    store: Store,
    decisions: Sequence[DecisionFact],
    events: Sequence[ChainEvent],
    policy: ResiliencePolicy,
) -> list[MeasurementValue]:
    """The measurements after each acknowledged compensation whose decision watches a
    characteristic (only the points of the quantities watched)."""
    by_id = {d.record_id: d for d in decisions}
    requested = {
        int(e.args["request_id"]): str(e.args.get("decision_hash", "")).lower()
        for e in events
        if e.name == "CompensationRequested"
    }
    starts: dict[int, set[str]] = {}
    for event in events:
        if event.name != "CompensationAcknowledged":
            continue
        spec = watched_condition(by_id.get(requested.get(int(event.args["request_id"]), "")))
        if spec is not None:
            starts.setdefault(event.at_us, set()).add(spec.devices.quantity)
    found: dict[tuple[str, int], MeasurementValue] = {}
    for start, quantities in sorted(starts.items()):
        with store.transaction() as connection:
            rows = connection.execute(
                select(RECORDS)
                .where(RECORDS.c.record_type == MEASUREMENT, RECORDS.c.observed_at_us >= start)
                .order_by(RECORDS.c.observed_at_us, RECORDS.c.record_id)
                .limit(policy.measurement_scan_limit)
            ).mappings()
            records = [stored_record(row) for row in rows]
        for record in records:
            try:
                measurement = Measurement.from_record(record)
            except RecordError:
                continue
            for index, (quantity, value, unit) in enumerate(measurement.points):
                if quantity in quantities:
                    found[(record.record_id, index)] = MeasurementValue(
                        record.record_id,
                        measurement.device,
                        quantity,
                        value,
                        unit,
                        record.observed_at_us,
                    )
    return list(found.values())


# -- the chain -----------------------------------------------------------------------------------


class _BlockTimes:
    """Block timestamps in µs, each block asked for once."""

    def __init__(self, node: Node) -> None:
        self.connection = node.connection
        self._times: dict[int, int] = {}

    def __call__(self, number: int) -> int:
        known = self._times.get(number)
        if known is None:
            with translate_chain_errors(self.connection.url):
                block = self.connection.w3.eth.get_block(number)
            known = self._times[number] = int(block["timestamp"]) * 1_000_000
        return known


def chain_event(event: LoggedEvent, at_us: int) -> ChainEvent:
    """A binding's decoded event as a fact (its name without the class's ``Event`` suffix)."""
    name = type(event).__name__.removesuffix("Event")
    args = {f.name: getattr(event, f.name) for f in fields(event) if f.name not in _LOCATION}
    return ChainEvent(name, args, at_us, event.block_number, event.tx_hash, event.log_index)


def _events(node: Node, name: str, binding: Any, blocks: _BlockTimes) -> list[ChainEvent]:
    decoder: EventDecoder[Any] = binding.decoder
    deployment = node.deployment(name)
    start = deployment.block if deployment is not None else 0
    head = node.connection.head_block()
    found = []
    for first in range(start, head + 1, BLOCK_RANGE):
        last = min(first + BLOCK_RANGE - 1, head)
        for event in decoder.between(first, last):
            found.append(chain_event(event, blocks(event.block_number)))
    return found


def _changes(node: Node, blocks: _BlockTimes) -> list[ParameterChange]:
    if node.quality_ledger_address() is None:
        raise ConfigError("no QualityLedger address: set contracts.quality_ledger or deploy it")
    ledger = node.quality_ledger()
    deployment = node.deployment("QualityLedger")
    start = deployment.block if deployment is not None else 0
    head = node.connection.head_block()
    changes = []
    for first in range(start, head + 1, BLOCK_RANGE):
        last = min(first + BLOCK_RANGE - 1, head)
        for event in ledger.recorded_events(first, last, kinds=(AttestationKind.SETPOINT,)):
            message = ledger.setpoint(event.record_id).message
            changes.append(
                ParameterChange(
                    event.record_id,
                    event.member,
                    str(message.get("equipment", "")),
                    str(message.get("parameter", "")),
                    int(message["effectiveAtUs"]),
                    blocks(event.block_number),
                    event.tx_hash,
                    event.block_number,
                )
            )
    return changes


def _names(node: Node) -> dict[str, str]:
    if node.consortium_address() is None:
        raise ConfigError("no Consortium address: this node knows no consortium")
    return {m.address.lower(): m.name for m in node.consortium().members()}
