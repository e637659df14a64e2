"""The quality-disturbance recovery cycle (QRRC): from an anomaly to back-to-baseline.

A :class:`Disturbance` starts at an anomaly and ends when the process is back to its baseline.
Its recovery cycle is the time between (``now - start`` while it is open). The kinds:

- ``line_stop`` (a line): from the red-line decision that stopped the line (the one whose hash
  ``LineStopped`` carries as its reason), else the ``LineStopped`` block, to ``LineRestarted``;
- ``compensation`` (a line): from the decision whose hash ``CompensationRequested`` carries, else
  its block, to ``CompensationAcknowledged`` and then N consecutive in-control subgroups of the
  decision's characteristic (below);
- ``supplier_hold`` (a supplier): from the decision that placed the hold (``SupplierHeld``'s
  reason), else the ``SupplierHeld`` block, to ``HoldReleased`` (its 8D case closed, or the
  customer's override);
- ``out_of_spec`` (a supplier): from an incoming lot out of specification (strictly beyond its
  LSL/USL) to N consecutive in-spec lots of that supplier, part and characteristic;
- ``rule_task`` (a rule): from a decision whose action is a task to the task closed.

N is ``policy.baseline_subgroups``. For a compensation the decision's condition says what to
watch: for a ``cv`` condition, the measurements of its quantity from its devices after the
acknowledgement (of the decision's own device when the condition is per device), in subgroups
of its size, are in control when their CV is not beyond the threshold; for a ``reading``
condition each value (a subgroup of one) is in control when it does not breach the limit. A
compensation with neither (or no decision record) is back to baseline at the acknowledgement; a
``CompensationFailed`` leaves it open, marked ``failed``. A decision to compensate, stop or hold
that no chain event carries is open too ("no chain event carries the decision").

Only this member's disturbances count: lines in its config or registered by it, holds and 8D
cases where it is the customer or the supplier.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.control.rule_metrics import CvSpec, ReadingSpec, spec_from_parameters, subgroup_cv
from node.errors import ControlError
from node.oracles.units import UnitError
from node.resilience.distribution import Distribution, distribution
from node.resilience.facts import (
    ChainEvent,
    DecisionFact,
    LotResult,
    MeasurementValue,
    ResilienceFacts,
    TaskTimes,
    supplier_key,
)
from node.resilience.policy import ResiliencePolicy

__all__ = [
    "KINDS",
    "Disturbance",
    "Evidence",
    "RecoveryGroup",
    "disturbances",
    "line_label",
    "mine",
    "recovery_groups",
    "watched_condition",
]

KINDS = ("line_stop", "compensation", "supplier_hold", "out_of_spec", "rule_task")
RECOVERED, OPEN, FAILED = "recovered", "open", "failed"


@dataclass(frozen=True)
class Evidence:
    """A record, event or task a metric was computed from."""

    kind: str
    """``record``, ``event`` or ``task``."""
    ref: str
    """The record id, transaction hash or task key."""
    label: str
    at_us: int | None = None
    block_number: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "label": self.label,
            "atUs": self.at_us,
            "blockNumber": self.block_number,
        }


@dataclass(frozen=True)
class Disturbance:
    kind: str
    scope_kind: str
    """``line``, ``supplier`` or ``rule``."""
    scope: str
    label: str
    started_at_us: int
    recovered_at_us: int | None
    status: str
    """``recovered``, ``open`` or ``failed`` (failed ones are open too)."""
    detail: str
    evidence: tuple[Evidence, ...]

    @property
    def recovered(self) -> bool:
        return self.recovered_at_us is not None

    def duration_s(self, now_us: int) -> float:
        """The recovery cycle: to back-to-baseline, or to ``now`` while open."""
        end = self.recovered_at_us if self.recovered_at_us is not None else now_us
        return max(0, end - self.started_at_us) / 1e6


def _event_evidence(event: ChainEvent) -> Evidence:
    return Evidence("event", event.tx_hash, event.name, event.at_us, event.block_number)


def _decision_evidence(decision: DecisionFact) -> Evidence:
    label = f"decision {decision.rule_id}"
    return Evidence("record", decision.record_id, label, decision.fired_at_us)


def line_label(line_id: str, names: Mapping[str, str]) -> str:
    return names.get(line_id.lower()) or names.get(line_id) or f"line {line_id[:10]}…"


def _ordered(events: Iterable[ChainEvent]) -> list[ChainEvent]:
    return sorted(events, key=lambda e: (e.block_number, e.log_index))


def mine(facts: ResilienceFacts, *parties: Any) -> bool:
    """Whether one of ``parties`` (addresses) is this member (any, when the member is unknown)."""
    if facts.member is None:
        return True
    me = facts.member.lower()
    return any(isinstance(p, str) and p.lower() == me for p in parties)


def _my_lines(facts: ResilienceFacts) -> set[str] | None:
    """Line ids of this member (None: every line)."""
    if facts.member is None:
        return None
    lines = {line.lower() for line in facts.line_names}
    for event in facts.events:
        if event.name == "LineRegistered" and mine(facts, event.args.get("owner")):
            lines.add(str(event.args["line_id"]).lower())
    return lines


def disturbances(
    facts: ResilienceFacts, policy: ResiliencePolicy, now_us: int
) -> list[Disturbance]:
    """Every disturbance of this member, oldest first."""
    decisions = {d.record_id.lower(): d for d in facts.decisions}
    events = _ordered(facts.events)
    lines = _my_lines(facts)
    carried: set[str] = set()
    found: list[Disturbance] = []
    found += _line_stops(facts, events, decisions, lines, carried)
    found += _compensations(facts, policy, events, decisions, lines, carried)
    found += _holds(facts, events, decisions, carried)
    found += _unrecorded(facts, decisions, carried)
    found += _rule_tasks(facts)
    found += _out_of_spec_runs(facts.lots, policy, facts.names)
    return sorted(found, key=lambda d: (d.started_at_us, d.kind, d.scope))


def _start(anomaly: ChainEvent, decision: DecisionFact | None) -> int:
    if decision is None:
        return anomaly.at_us
    return min(decision.fired_at_us, anomaly.at_us)


def _with_decision(evidence: list[Evidence], decision: DecisionFact | None) -> list[Evidence]:
    return [_decision_evidence(decision), *evidence] if decision is not None else evidence


# -- lines ---------------------------------------------------------------------------------------


def _line_stops(
    facts: ResilienceFacts,
    events: Sequence[ChainEvent],
    decisions: Mapping[str, DecisionFact],
    lines: set[str] | None,
    carried: set[str],
) -> list[Disturbance]:
    stopped: dict[str, ChainEvent] = {}
    found = []

    def episode(stop: ChainEvent, restart: ChainEvent | None) -> Disturbance:
        line = str(stop.args["line_id"]).lower()
        reason = str(stop.args.get("reason_hash", "")).lower()
        decision = decisions.get(reason)
        if decision is not None:
            carried.add(decision.record_id.lower())
        evidence = _with_decision([_event_evidence(stop)], decision)
        if restart is not None:
            evidence.append(_event_evidence(restart))
        cause = f"stopped by rule {decision.rule_id}" if decision else "stopped"
        detail = f"{cause}; " + ("restarted" if restart else "not restarted yet")
        return Disturbance(
            "line_stop",
            "line",
            line,
            line_label(line, facts.line_names),
            _start(stop, decision),
            restart.at_us if restart is not None else None,
            RECOVERED if restart is not None else OPEN,
            detail,
            tuple(evidence),
        )

    for event in events:
        if event.name not in ("LineStopped", "LineRestarted"):
            continue
        line = str(event.args["line_id"]).lower()
        if lines is not None and line not in lines:
            continue
        if event.name == "LineStopped":
            stopped.setdefault(line, event)
        elif line in stopped:
            found.append(episode(stopped.pop(line), event))
    found += [episode(stop, None) for stop in stopped.values()]
    return found


def _compensations(
    facts: ResilienceFacts,
    policy: ResiliencePolicy,
    events: Sequence[ChainEvent],
    decisions: Mapping[str, DecisionFact],
    lines: set[str] | None,
    carried: set[str],
) -> list[Disturbance]:
    outcomes: dict[int, ChainEvent] = {}
    requests: list[ChainEvent] = []
    for event in events:
        if event.name == "CompensationRequested":
            line = str(event.args["line_id"]).lower()
            if lines is None or line in lines:
                requests.append(event)
        elif event.name in ("CompensationAcknowledged", "CompensationFailed"):
            outcomes.setdefault(int(event.args["request_id"]), event)
    found = []
    for request in requests:
        request_id = int(request.args["request_id"])
        line = str(request.args["line_id"]).lower()
        decision = decisions.get(str(request.args.get("decision_hash", "")).lower())
        if decision is not None:
            carried.add(decision.record_id.lower())
        evidence = _with_decision([_event_evidence(request)], decision)
        outcome = outcomes.get(request_id)
        recovered_at: int | None = None
        status = OPEN
        if outcome is None:
            detail = f"request {request_id}: awaiting the PLC's acknowledgement"
        elif outcome.name == "CompensationFailed":
            evidence.append(_event_evidence(outcome))
            status, detail = FAILED, f"request {request_id}: the PLC did not apply it"
        else:
            evidence.append(_event_evidence(outcome))
            recovered_at, detail, used = _baseline(decision, facts.measurements, outcome, policy)
            evidence += [
                Evidence("record", m.record_id, f"measurement {m.device}", m.observed_at_us)
                for m in used
            ]
            detail = f"request {request_id} acknowledged; {detail}"
            status = RECOVERED if recovered_at is not None else OPEN
        found.append(
            Disturbance(
                "compensation",
                "line",
                line,
                line_label(line, facts.line_names),
                _start(request, decision),
                recovered_at,
                status,
                detail,
                tuple(evidence),
            )
        )
    return found


def watched_condition(decision: DecisionFact | None) -> CvSpec | ReadingSpec | None:
    """The first ``cv`` or ``reading`` condition of a decision (what a compensation corrects)."""
    if decision is None:
        return None
    for leaf in _leaves(decision.condition):
        if leaf.get("metric") not in ("cv", "reading"):
            continue
        try:
            spec = spec_from_parameters(leaf)
        except (ControlError, KeyError, TypeError, ValueError):
            continue
        if isinstance(spec, CvSpec | ReadingSpec):
            return spec
    return None


def _leaves(condition: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for combinator in ("all", "any"):
        children = condition.get(combinator)
        if isinstance(children, list):
            for child in children:
                if isinstance(child, Mapping):
                    yield from _leaves(child)
            return
    yield condition


def _baseline(
    decision: DecisionFact | None,
    measurements: Sequence[MeasurementValue],
    acknowledged: ChainEvent,
    policy: ResiliencePolicy,
) -> tuple[int | None, str, list[MeasurementValue]]:
    """When the compensated characteristic was back in control after the acknowledgement:
    (time or None, why, the measurements of the in-control run)."""
    spec = watched_condition(decision)
    needed = policy.baseline_subgroups
    if spec is None or decision is None:
        return acknowledged.at_us, "back to baseline at the acknowledgement", []
    own_devices = set(decision.devices) if spec.devices.per_device else set()
    after = sorted(
        (
            m
            for m in measurements
            if m.observed_at_us >= acknowledged.at_us
            and m.quantity == spec.devices.quantity
            and spec.devices.matches(m.device)
            and (not own_devices or m.device in own_devices)
        ),
        key=lambda m: (m.observed_at_us, m.record_id),
    )
    size = spec.subgroup_size if isinstance(spec, CvSpec) else 1
    run: list[list[MeasurementValue]] = []
    for start in range(0, len(after) - size + 1, size):
        subgroup = after[start : start + size]
        if _in_control(spec, subgroup):
            run.append(subgroup)
            if len(run) >= needed:
                used = list(itertools.chain.from_iterable(run))
                what = f"{spec.devices.quantity} in control for {needed} subgroup(s) of {size}"
                return used[-1].observed_at_us, what, used
        else:
            run = []
    return None, f"awaiting {needed} in-control subgroup(s) ({len(run)} so far)", []


def _in_control(spec: CvSpec | ReadingSpec, subgroup: Sequence[MeasurementValue]) -> bool:
    if isinstance(spec, CvSpec):
        cv = subgroup_cv([m.value for m in subgroup])
        return cv is not None and not spec.beyond(cv)
    for m in subgroup:
        try:
            limit = spec.limit_in(m.unit)
        except UnitError:
            return False
        if spec.breached(m.value, limit):
            return False
    return True


# -- suppliers -------------------------------------------------------------------------------------


def _holds(
    facts: ResilienceFacts,
    events: Sequence[ChainEvent],
    decisions: Mapping[str, DecisionFact],
    carried: set[str],
) -> list[Disturbance]:
    held: dict[int, ChainEvent] = {}
    released: dict[int, ChainEvent] = {}
    for event in events:
        if event.name == "SupplierHeld":
            held.setdefault(int(event.args["hold_id"]), event)
        elif event.name == "HoldReleased":
            released.setdefault(int(event.args["hold_id"]), event)
    found = []
    for hold_id, event in held.items():
        if not mine(facts, event.args.get("customer"), event.args.get("supplier")):
            continue
        supplier = supplier_key(str(event.args["supplier"]))
        decision = decisions.get(str(event.args.get("reason_hash", "")).lower())
        if decision is not None:
            carried.add(decision.record_id.lower())
        evidence = _with_decision([_event_evidence(event)], decision)
        release = released.get(hold_id)
        case = event.args.get("case_id")
        if release is not None:
            evidence.append(_event_evidence(release))
            how = (
                f"its 8D case {case} closed"
                if release.args.get("by_closure")
                else "the customer's override"
            )
            detail = f"hold {hold_id} released by {how}"
        else:
            detail = f"hold {hold_id} active; 8D case {case} open"
        found.append(
            Disturbance(
                "supplier_hold",
                "supplier",
                supplier,
                facts.names.get(supplier, supplier),
                _start(event, decision),
                release.at_us if release is not None else None,
                RECOVERED if release is not None else OPEN,
                detail,
                tuple(evidence),
            )
        )
    return found


def _out_of_spec_runs(
    lots: Sequence[LotResult], policy: ResiliencePolicy, names: Mapping[str, str]
) -> list[Disturbance]:
    series: dict[tuple[str, str, str], list[LotResult]] = defaultdict(list)
    for lot in lots:
        if lot.assessable:
            series[(lot.supplier_key, lot.part, lot.characteristic)].append(lot)
    found = []
    needed = policy.baseline_subgroups
    for (supplier, part, characteristic), results in series.items():
        results.sort(key=lambda r: (r.observed_at_us, r.record_id))
        run: list[LotResult] = []
        in_spec = 0
        for result in results:
            if result.out_of_spec:
                run.append(result)
                in_spec = 0
                continue
            if not run:
                continue
            run.append(result)
            in_spec += 1
            if in_spec >= needed:
                found.append(_lot_run(supplier, part, characteristic, run, result, needed, names))
                run, in_spec = [], 0
        if run:
            found.append(_lot_run(supplier, part, characteristic, run, None, needed, names))
    return found


def _lot_run(
    supplier: str,
    part: str,
    characteristic: str,
    run: Sequence[LotResult],
    recovered: LotResult | None,
    needed: int,
    names: Mapping[str, str],
) -> Disturbance:
    out = sum(r.out_of_spec for r in run)
    ending = f"{needed} lots in spec again" if recovered else "not yet back in spec"
    return Disturbance(
        "out_of_spec",
        "supplier",
        supplier,
        names.get(supplier, supplier),
        run[0].observed_at_us,
        recovered.observed_at_us if recovered is not None else None,
        RECOVERED if recovered is not None else OPEN,
        f"{part} {characteristic}: {out} lot(s) out of spec, then {ending}",
        tuple(
            Evidence("record", r.record_id, f"incoming_lot {r.lot}", r.observed_at_us) for r in run
        ),
    )


# -- decisions without a chain record, tasks -------------------------------------------------------

_CHAIN_ACTIONS = {
    "compensate": ("compensation", "line", "line"),
    "stop_line": ("line_stop", "line", "line"),
    "hold_supplier": ("supplier_hold", "supplier", "supplier"),
}


def _unrecorded(
    facts: ResilienceFacts, decisions: Mapping[str, DecisionFact], carried: set[str]
) -> list[Disturbance]:
    """Decisions to act on the chain that no chain event carries (yet)."""
    names = {name.lower(): line_id for line_id, name in facts.line_names.items()}
    found = []
    for key, decision in decisions.items():
        shape = _CHAIN_ACTIONS.get(decision.action_kind)
        if shape is None or key in carried:
            continue
        kind, scope_kind, field = shape
        target = str(decision.action.get(field, "") or "")
        if scope_kind == "line":
            scope = names.get(target.lower(), target)
            label = target or "line ?"
        else:
            scope = supplier_key(target)
            label = facts.names.get(scope, scope or "supplier ?")
        found.append(
            Disturbance(
                kind,
                scope_kind,
                scope,
                label,
                decision.fired_at_us,
                None,
                OPEN,
                f"rule {decision.rule_id} decided to {decision.action_kind.replace('_', ' ')}; "
                "no chain event carries the decision",
                (_decision_evidence(decision),),
            )
        )
    return found


def _rule_tasks(facts: ResilienceFacts) -> list[Disturbance]:
    tasks: dict[str, TaskTimes] = {t.key: t for t in facts.tasks}
    found = []
    for decision in facts.decisions:
        if decision.action_kind != "task":
            continue
        task = tasks.get(f"improvement_task:{decision.record_id.lower()}")
        evidence = [_decision_evidence(decision)]
        if task is not None:
            evidence.append(Evidence("task", task.key, "improvement task", task.created_at_us))
        closed = task.closed_at_us if task is not None else None
        detail = (
            "no task opened yet"
            if task is None
            else ("task closed" if closed is not None else "task open")
        )
        found.append(
            Disturbance(
                "rule_task",
                "rule",
                decision.rule_id,
                f"rule {decision.rule_id}",
                decision.fired_at_us,
                closed,
                RECOVERED if closed is not None else OPEN,
                detail,
                tuple(evidence),
            )
        )
    return found


# -- groups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryGroup:
    """The recovery cycles of one scope (a line, a supplier, a rule; or ``*``: all of a kind)."""

    scope_kind: str
    scope: str
    label: str
    recovered: Distribution
    """Of the recovered disturbances' cycles, in seconds."""
    open: int
    failed: int
    oldest_open_s: float | None
    kinds: Mapping[str, int]

    @property
    def count(self) -> int:
        return self.recovered.count + self.open


def recovery_groups(
    found: Sequence[Disturbance], now_us: int, *, overall: bool = False
) -> list[RecoveryGroup]:
    """Per scope (``overall``: per scope kind, all scopes together), ordered by scope kind and
    label."""
    grouped: dict[tuple[str, str], list[Disturbance]] = defaultdict(list)
    labels: dict[tuple[str, str], str] = {}
    for item in found:
        key = (item.scope_kind, "*" if overall else item.scope)
        grouped[key].append(item)
        labels[key] = f"all {item.scope_kind}s" if overall else item.label
    groups = []
    for key, items in grouped.items():
        recovered = [d.duration_s(now_us) for d in items if d.recovered]
        still_open = [d.duration_s(now_us) for d in items if not d.recovered]
        kinds: dict[str, int] = defaultdict(int)
        for item in items:
            kinds[item.kind] += 1
        groups.append(
            RecoveryGroup(
                key[0],
                key[1],
                labels[key],
                distribution(recovered),
                len(still_open),
                sum(d.status == FAILED for d in items),
                max(still_open) if still_open else None,
                dict(kinds),
            )
        )
    order = {"line": 0, "supplier": 1, "rule": 2}
    return sorted(groups, key=lambda g: (order.get(g.scope_kind, 9), g.label))
