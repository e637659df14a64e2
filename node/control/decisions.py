"""Decisions: what a rule firing decided and why, recorded so that an auditor can replay it.

A :class:`Decision` holds the whole path: the rule and its file's hash, the input records (id and
content hash), the thresholds (the rule's condition as data), the computed values, the action and
the key that signs it. Its ``decision_hash`` is keccak256 of its canonical JSON; the decision
record's id *is* that hash, so the same decision recorded twice is one record.

:func:`replay` checks the input records against the hashes in the decision and recomputes every
computed value from them, with the thresholds in the decision (not the current rule file).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from node.control.observations import Signal
from node.control.outbox import ActionRequest
from node.control.rule_metrics import (
    Evidence,
    InputRef,
    ReplayMismatch,
    spec_from_parameters,
)
from node.errors import ControlError
from node.hashing import keccak_hex
from node.offchain.records import (
    RecordInput,
    StoredRecord,
    canonical_json,
    content_hash,
    content_hash_of,
)

DECISION = "decision"
ROOT_PATH = "when"
_LEAF_META = ("holds", "inputs", "scope")

ACTION_KINDS = {
    "compensate": "line_compensation",
    "hold_supplier": "supplier_hold",
    "task": "improvement_task",
    "stop_line": "plc_stop",
}
"""Rule action kind -> the ActionRequest kind its executor handles (``emit`` has none)."""


@dataclass(frozen=True)
class Decision:
    rule_id: str
    rule_hash: str
    """sha256 of the rule file's bytes ("0x" + hex)."""
    fired_at_us: int
    """The observation time of the observation that completed the condition."""
    inputs: tuple[InputRef, ...]
    thresholds: Mapping[str, Any]
    computed: Mapping[str, Any]
    action: Mapping[str, Any]
    signer: str | None = None

    def fields(self) -> dict[str, Any]:
        """The decision record's fields."""
        return {
            "rule_id": self.rule_id,
            "rule_hash": self.rule_hash,
            "inputs": [list(ref) for ref in self.inputs],
            "thresholds": self.thresholds,
            "computed": self.computed,
            "action": self.action,
            "signer": self.signer,
        }

    @cached_property
    def canonical(self) -> str:
        return canonical_json({**self.fields(), "fired_at_us": self.fired_at_us})

    @cached_property
    def decision_hash(self) -> str:
        return keccak_hex(self.canonical.encode())

    @property
    def record_id(self) -> str:
        return self.decision_hash

    def to_record_input(self) -> RecordInput:
        return RecordInput(DECISION, self.fields(), self.fired_at_us, self.decision_hash)

    @cached_property
    def record_content_hash(self) -> str:
        """The content hash the store gives the decision record (it has no private fields)."""
        public_json = canonical_json(self.fields())
        return content_hash_of(self.record_id, DECISION, self.fired_at_us, public_json, None)

    @classmethod
    def from_record(cls, record: StoredRecord) -> Decision:
        if record.record_type != DECISION:
            raise ControlError(f"record {record.record_id} is a {record.record_type!r} record")
        fields = record.public
        try:
            return cls(
                rule_id=str(fields["rule_id"]),
                rule_hash=str(fields["rule_hash"]),
                fired_at_us=record.observed_at_us,
                inputs=tuple((str(rid), str(digest)) for rid, digest in fields["inputs"]),
                thresholds=fields["thresholds"],
                computed=fields["computed"],
                action=fields["action"],
                signer=fields.get("signer"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"decision record {record.record_id} is malformed: {exc}") from exc


def action_requests(decision: Decision) -> tuple[ActionRequest, ...]:
    """What the outbox must do for ``decision``; the key is derived from the decision hash, so
    recording the same decision twice enqueues nothing new."""
    action = decision.action
    kind = ACTION_KINDS.get(str(action.get("kind")))
    if kind is None:
        return ()
    digest = decision.decision_hash
    names: tuple[str, ...]
    if kind == "line_compensation":
        names = ("line", "parameter", "delta", "unit")
    elif kind == "supplier_hold":
        names = ("supplier", "part", "characteristic")
    elif kind == "improvement_task":
        names = ("assignee", "title", "due_at_us", "detail")
    else:
        names = ("line", "reason")
    payload = {name: action[name] for name in names}
    return (ActionRequest(kind, f"{kind}:{digest}", {**payload, "decision_hash": digest}),)


@dataclass(frozen=True)
class Firing:
    """A rule fired in ``scope``: one decision (one per action of the rule)."""

    rule_id: str
    scope: str
    decision: Decision

    def action_requests(self) -> tuple[ActionRequest, ...]:
        return action_requests(self.decision)

    def signal(self) -> Signal | None:
        """The signal an ``emit`` action sends to the rules listening for it."""
        action = self.decision.action
        if action.get("kind") != "emit":
            return None
        return Signal(
            name=str(action["signal"]),
            scope=self.scope,
            observed_at_us=self.decision.fired_at_us,
            decision_id=self.decision.record_id,
            content_hash=self.decision.record_content_hash,
        )


# -- building ------------------------------------------------------------------------------


def leaf_paths(condition: Mapping[str, Any]) -> list[str]:
    """The path of every leaf of a condition tree (``when``, ``when.all[0]``, ...)."""
    return [path for path, _ in _leaves(condition)]


def decide(
    *,
    rule_id: str,
    rule_hash: str,
    fired_at_us: int,
    condition: Mapping[str, Any],
    evidence: Mapping[str, Evidence | None],
    action: Mapping[str, Any],
    signer: str | None,
) -> Decision:
    """A decision from the evidence of each leaf (None: the leaf does not hold, in an ``any``).

    The inputs are the leaves' inputs one after the other; each leaf's computed values say which
    slice of them is its own (``inputs: [start, stop]``).
    """
    inputs: list[InputRef] = []
    computed: dict[str, Any] = {}
    for path in leaf_paths(condition):
        found = evidence.get(path)
        if found is None:
            computed[path] = {"holds": False, "inputs": [len(inputs), len(inputs)]}
            continue
        start = len(inputs)
        inputs.extend(found.inputs)
        computed[path] = {
            "holds": True,
            "scope": found.scope,
            "inputs": [start, len(inputs)],
            **found.computed,
        }
    return Decision(
        rule_id=rule_id,
        rule_hash=rule_hash,
        fired_at_us=fired_at_us,
        inputs=tuple(inputs),
        thresholds={"condition": condition},
        computed={"conditions": computed},
        action=action,
        signer=signer,
    )


def firings(
    *,
    rule_id: str,
    rule_hash: str,
    scope: str,
    fired_at_us: int,
    condition: Mapping[str, Any],
    evidence: Mapping[str, Evidence | None],
    actions: Sequence[Mapping[str, Any]],
    signer: str | None,
) -> list[Firing]:
    """One firing (one decision) per action of a rule that fired in ``scope``."""
    return [
        Firing(
            rule_id,
            scope,
            decide(
                rule_id=rule_id,
                rule_hash=rule_hash,
                fired_at_us=fired_at_us,
                condition=condition,
                evidence=evidence,
                action=action,
                signer=signer,
            ),
        )
        for action in actions
    ]


# -- replay --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputCheck:
    record_id: str
    expected_hash: str
    actual_hash: str | None
    """Recomputed from the record's content; None when the record is missing."""

    @property
    def status(self) -> str:
        if self.actual_hash is None:
            return "missing"
        return "ok" if self.actual_hash == self.expected_hash else "tampered"


@dataclass(frozen=True)
class ReplayResult:
    decision_hash: str
    inputs: tuple[InputCheck, ...]
    recomputed: Mapping[str, Any] | None
    """Per leaf path, the values recomputed from the inputs (None if the inputs failed)."""
    differences: tuple[str, ...]
    """Where recomputed values differ from the recorded ones."""
    fires: bool | None
    """Whether the condition holds on the inputs (None if they could not be checked)."""
    problem: str | None = None
    decision_altered: bool = False
    """The decision record's content no longer hashes to its id."""

    @property
    def tampered(self) -> tuple[str, ...]:
        return tuple(c.record_id for c in self.inputs if c.status == "tampered")

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(c.record_id for c in self.inputs if c.status == "missing")

    @property
    def confirmed(self) -> bool:
        return (
            bool(self.fires)
            and not self.differences
            and self.problem is None
            and not self.decision_altered
            and all(check.status == "ok" for check in self.inputs)
        )

    @property
    def verdict(self) -> str:
        if self.decision_altered:
            return "TAMPERED: the decision record was altered (its content does not hash to its id)"
        if self.tampered:
            return f"TAMPERED: {len(self.tampered)} input record(s) differ from the decision's hash"
        if self.missing:
            return f"INCOMPLETE: {len(self.missing)} input record(s) missing"
        if self.problem is not None:
            return f"NOT REPRODUCED: {self.problem}"
        if self.differences:
            return f"NOT REPRODUCED: computed values differ at {', '.join(self.differences)}"
        if not self.fires:
            return "NOT REPRODUCED: the condition does not hold on these inputs"
        return "CONFIRMED: same inputs, same values, the rule fires"


def replay(
    decision: Decision, records: Mapping[str, StoredRecord], record_id: str | None = None
) -> ReplayResult:
    """Check ``decision`` against its input records (by record id): hashes first, then every
    computed value and the outcome. ``record_id``: the id the decision was stored under, which
    must be its decision hash (else the decision record itself was altered)."""
    altered = record_id is not None and record_id.lower() != decision.decision_hash
    checks = tuple(_check_input(ref, records.get(ref[0])) for ref in decision.inputs)
    if altered or any(check.status != "ok" for check in checks):
        return ReplayResult(decision.decision_hash, checks, None, (), None, None, altered)
    ordered = [records[rid] for rid, _ in decision.inputs]
    try:
        condition = decision.thresholds["condition"]
        recorded = decision.computed["conditions"]
        recomputed = {
            path: _replay_leaf(leaf, recorded[path], ordered, decision.fired_at_us)
            for path, leaf in _leaves(condition)
        }
    except ReplayMismatch as exc:
        return ReplayResult(decision.decision_hash, checks, None, (), False, str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"the decision is malformed ({type(exc).__name__}: {exc})"
        return ReplayResult(decision.decision_hash, checks, None, (), None, problem)
    differences = tuple(
        path
        for path, values in recomputed.items()
        if not _same(_without_meta(values), _without_meta(recorded[path]))
    )
    fires = _holds(condition, ROOT_PATH, recomputed)
    return ReplayResult(decision.decision_hash, checks, recomputed, differences, fires)


def _check_input(ref: InputRef, record: StoredRecord | None) -> InputCheck:
    if record is None:
        return InputCheck(ref[0], ref[1], None)
    return InputCheck(ref[0], ref[1], content_hash(record.canonical()))


def _leaves(
    condition: Mapping[str, Any], path: str = ROOT_PATH
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for combinator in ("all", "any"):
        if combinator in condition:
            for index, child in enumerate(condition[combinator]):
                yield from _leaves(child, f"{path}.{combinator}[{index}]")
            return
    yield path, condition


def _replay_leaf(
    leaf: Mapping[str, Any],
    recorded: Mapping[str, Any],
    records: Sequence[StoredRecord],
    fired_at_us: int,
) -> dict[str, Any]:
    start, stop = (int(i) for i in recorded["inputs"])
    if not recorded["holds"]:
        return {"holds": False, "inputs": [start, stop]}
    spec = spec_from_parameters(leaf)
    result = spec.replay(records[start:stop], _without_meta(recorded), fired_at_us)
    return {
        "holds": result.holds,
        "scope": recorded.get("scope"),
        "inputs": [start, stop],
        **result.computed,
    }


def _holds(condition: Mapping[str, Any], path: str, leaves: Mapping[str, Any]) -> bool:
    if "all" in condition:
        return all(
            _holds(child, f"{path}.all[{i}]", leaves) for i, child in enumerate(condition["all"])
        )
    if "any" in condition:
        return any(
            _holds(child, f"{path}.any[{i}]", leaves) for i, child in enumerate(condition["any"])
        )
    return bool(leaves[path]["holds"])


def _without_meta(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if name not in _LEAF_META}


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON data, floats within a relative 1e-9 (a replay may sum in another order)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(_same, left, right))
    return bool(left == right)
