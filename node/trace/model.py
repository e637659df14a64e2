"""What a trace finds: the upstream genealogy as nodes, the anomalies on it, the ranked root-cause
candidates, and how far each member's part could be fetched and verified.

Statuses (:data:`STATUSES`): ``verified`` (checked here against the chain: Merkle proof to a root
the owner anchored, and for critical records the owner's oracle signature recorded on
QualityLedger; or read from a contract), ``pending`` (not anchored or signed yet), ``failed`` (the
data does not verify: altered, signed or anchored by someone else, or contradicting what it is
claimed to show), ``unavailable`` (the owner's node or the chain did not answer), ``unanchored``
(data kept off-chain by design: quarantined readings, as the member reports them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from node.api.verification import FAILED, PENDING, UNAVAILABLE, VERIFIED, Verification

UNANCHORED = "unanchored"
STATUSES = (VERIFIED, PENDING, UNANCHORED, UNAVAILABLE, FAILED)
"""From best to worst."""
FORMAT = "qnode-trace/1"


def worst(statuses: list[str]) -> str:
    return max(statuses, key=STATUSES.index) if statuses else VERIFIED


@dataclass(frozen=True)
class Check:
    """The verification of one node, anomaly or part: a status and why."""

    status: str
    detail: str
    records: tuple[str, ...] = ()

    @classmethod
    def of(cls, verification: Verification, records: tuple[str, ...] = ()) -> Check:
        return cls(verification.status, verification.detail, records)

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED


@dataclass(frozen=True)
class Owner:
    member: str | None
    name: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class TraceNode:
    uid: str
    """Unique in the trace: the canonical URI of a product or lot; ``equipment|owner|id`` and
    ``step|owner|id`` for equipment and process steps (the same name at two members is two)."""
    id: str
    kind: str
    """product (the traced one), lot (implied by an item's identifier), material_lot, parent_lot,
    equipment, process_step."""
    owner: Owner
    depth: int
    made_at_us: int | None
    records: tuple[str, ...]
    """The genealogy records it rests on: those that made it, else those that name it."""
    check: Check
    upstream: Check | None
    """Whether its own upstream part could be fetched (products and lots only)."""
    children: tuple[str, ...]
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Anomaly:
    uid: str
    kind: str
    node: str
    """The uid of the node it is on."""
    owner: Owner
    at_us: int
    """When it began (a drift's onset, a record's observation, a hold's placing)."""
    summary: str
    details: Mapping[str, Any]
    check: Check


@dataclass(frozen=True)
class Candidate:
    rank: int
    anomaly: str
    score: float
    reasons: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class MemberPart:
    member: str
    name: str | None
    status: str
    detail: str
    requests: int
    elapsed_ms: float


@dataclass(frozen=True)
class Trace:
    root: str
    member: str
    nodes: tuple[TraceNode, ...]
    anomalies: tuple[Anomaly, ...]
    symptoms: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    members: tuple[MemberPart, ...]
    notes: tuple[str, ...]
    detector: str
    started_at_us: int
    elapsed_ms: float
    phases: tuple[tuple[str, float], ...] = ()
    """(name, ms): genealogy (the rounds between members, verification included), anomalies
    (asked and verified), holds (read from the chain), ranking."""
    _by_uid: dict[str, TraceNode] = field(default_factory=dict, repr=False, compare=False)

    def node(self, uid: str) -> TraceNode:
        if not self._by_uid:
            self._by_uid.update((n.uid, n) for n in self.nodes)
        return self._by_uid[uid]

    def anomaly(self, uid: str) -> Anomaly:
        return next(a for a in self.anomalies if a.uid == uid)

    @property
    def unverified(self) -> list[tuple[str, Check]]:
        """(what, check) of every node, part and anomaly that is not verified."""
        found: list[tuple[str, Check]] = []
        for node in self.nodes:
            if not node.check.verified:
                found.append((f"{node.kind} {node.id}", node.check))
            if node.upstream is not None and not node.upstream.verified:
                found.append((f"upstream of {node.id}", node.upstream))
        for anomaly in self.anomalies:
            if not anomaly.check.verified:
                found.append((f"{anomaly.kind} on {self.node(anomaly.node).id}", anomaly.check))
        return found


def iso_ms(timestamp_us: int | None) -> str | None:
    if timestamp_us is None:
        return None
    moment = datetime.fromtimestamp(timestamp_us // 1000 / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trace_json(trace: Trace) -> dict[str, Any]:
    """The trace as JSON data (``qnode-trace/1``); times in ms since the epoch and ISO 8601."""
    return {
        "format": FORMAT,
        "root": trace.root,
        "member": trace.member,
        "startedAt": iso_ms(trace.started_at_us),
        "elapsedMs": round(trace.elapsed_ms, 3),
        "phasesMs": {name: round(ms, 3) for name, ms in trace.phases},
        "detector": trace.detector,
        "nodes": [_node_json(n) for n in trace.nodes],
        "anomalies": [_anomaly_json(a) for a in trace.anomalies],
        "symptoms": list(trace.symptoms),
        "candidates": [
            {
                "rank": c.rank,
                "anomaly": c.anomaly,
                "score": round(c.score, 3),
                "reasons": list(c.reasons),
                "explanation": c.explanation,
            }
            for c in trace.candidates
        ],
        "members": [
            {
                "member": m.member,
                "name": m.name,
                "status": m.status,
                "detail": m.detail,
                "requests": m.requests,
                "elapsedMs": round(m.elapsed_ms, 3),
            }
            for m in trace.members
        ],
        "unverified": [
            {"part": what, "status": check.status, "reason": check.detail}
            for what, check in trace.unverified
        ],
        "notes": list(trace.notes),
    }


def _owner_json(owner: Owner) -> dict[str, Any]:
    return {"member": owner.member, "name": owner.name, "role": owner.role}


def _check_json(check: Check | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {"status": check.status, "detail": check.detail, "records": list(check.records)}


def _node_json(node: TraceNode) -> dict[str, Any]:
    return {
        "uid": node.uid,
        "id": node.id,
        "kind": node.kind,
        "owner": _owner_json(node.owner),
        "depth": node.depth,
        "madeAt": iso_ms(node.made_at_us),
        "madeAtMs": None if node.made_at_us is None else node.made_at_us // 1000,
        "records": list(node.records),
        "verification": _check_json(node.check),
        "upstream": _check_json(node.upstream),
        "children": list(node.children),
        "anomalies": list(node.anomalies),
    }


def _anomaly_json(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "uid": anomaly.uid,
        "kind": anomaly.kind,
        "node": anomaly.node,
        "owner": _owner_json(anomaly.owner),
        "at": iso_ms(anomaly.at_us),
        "atMs": anomaly.at_us // 1000,
        "summary": anomaly.summary,
        "details": dict(anomaly.details),
        "verification": _check_json(anomaly.check),
    }


__all__ = [
    "FAILED",
    "PENDING",
    "UNANCHORED",
    "UNAVAILABLE",
    "VERIFIED",
    "Anomaly",
    "Candidate",
    "Check",
    "MemberPart",
    "Owner",
    "Trace",
    "TraceNode",
    "iso_ms",
    "trace_json",
    "worst",
]
