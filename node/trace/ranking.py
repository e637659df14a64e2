"""Root-cause candidates: every anomaly on the path, ranked by how well it explains the symptom.

The **symptoms** are the effect anomalies (failed inspections or lab results, out-of-spec incoming
lots) on the traced product itself or on its lot: what the trace is asked to explain. Every other
anomaly is a **candidate**, scored by adding up, each in its own words in the result:

- *what it is* (a cause or an effect): a process parameter drift +40, a rule firing on the path's
  equipment or suppliers +25, a supplier hold or an open 8D case +20, quarantined readings of the
  equipment's devices +15 (a sensor problem can hide a process one), an effect upstream (a failed
  inspection of an intermediate lot) +10;
- *a setting changed*: +15 for a drift of a parameter that was held constant over its baseline (a
  controller's tuning, a configured value): the process variables it governs drift with it, but
  as its consequences;
- *how far upstream*: +10 per genealogy level between it and the traced product: the earliest
  upstream anomaly explains the most of what happened downstream;
- *time precedence* (causes only): +20 if it began before the output made with that equipment or
  from that supplier's lot was made, -60 if it began after (it cannot have caused it);
- *corroboration*: +10 for each level between it and the traced product where the defect shows
  (an effect anomaly on the way down, the symptom included): a cause whose consequences are seen
  at every step explains the symptom better than one whose chain is silent;
- *verification*: +15 verified against the chain, -15 pending, unavailable or unanchored,
  -40 failed (data that does not verify cannot carry a conclusion).

Ties go to the earlier anomaly. The order is a ranking for an investigator, with its reasons, not
a proof of causation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from node.api.verification import FAILED, VERIFIED
from node.trace.anomalies import (
    CORRECTIVE_ACTION_OPEN,
    EFFECT_KINDS,
    PARAMETER_DRIFT,
    QUARANTINED_READINGS,
    RULE_FIRING,
    SUPPLIER_HOLD,
    TITLES,
)
from node.trace.keys import label
from node.trace.model import Anomaly, Candidate, TraceNode, iso_ms

KIND_POINTS: Mapping[str, tuple[float, str]] = {
    PARAMETER_DRIFT: (40, "a process parameter drift: a cause, not a symptom"),
    RULE_FIRING: (25, "a rule fired on the path's equipment or supplier"),
    SUPPLIER_HOLD: (20, "the supplier is on hold"),
    CORRECTIVE_ACTION_OPEN: (20, "an 8D case is open with the supplier"),
    QUARANTINED_READINGS: (15, "readings of the equipment were refused (a sensor problem)"),
}
SETTING_POINTS = (
    15.0,
    "a setting held constant before (a controller's tuning, a configured value) changed: "
    "what it governs follows it",
)
EFFECT_POINTS = (10.0, "a defect upstream (an effect that may pass the cause on)")
LEVEL_POINTS = 10.0
PRECEDES_POINTS = 20.0
FOLLOWS_POINTS = -60.0
CORROBORATION_POINTS = 10.0
VERIFIED_POINTS = 15.0
UNVERIFIED_POINTS = -15.0
FAILED_POINTS = -40.0


def symptoms_of(
    root: str, nodes: Mapping[str, TraceNode], anomalies: Sequence[Anomaly]
) -> list[str]:
    """Effect anomalies on the traced product or on the lot its identifier names."""
    targets = {root} | {c for c in nodes[root].children if nodes[c].kind == "lot"}
    return [a.uid for a in anomalies if a.kind in EFFECT_KINDS and a.node in targets]


def rank(
    root: str,
    nodes: Mapping[str, TraceNode],
    anomalies: Sequence[Anomaly],
    names: Mapping[str, str],
) -> tuple[list[str], list[Candidate]]:
    """(symptoms, candidates best first)."""
    symptoms = symptoms_of(root, nodes, anomalies)
    symptom_nodes = {a.node for a in anomalies if a.uid in symptoms}
    parents: dict[str, list[str]] = {}
    for node in nodes.values():
        for child in node.children:
            parents.setdefault(child, []).append(node.uid)
    effects_at: dict[str, list[Anomaly]] = {}
    for anomaly in anomalies:
        if anomaly.kind in EFFECT_KINDS:
            effects_at.setdefault(anomaly.node, []).append(anomaly)
    scored: list[tuple[float, int, str, list[str], str]] = []
    for anomaly in anomalies:
        if anomaly.uid in symptoms:
            continue
        score, reasons = _score(anomaly, root, nodes, parents, effects_at, symptom_nodes)
        scored.append((score, anomaly.at_us, anomaly.uid, reasons, _where(anomaly, nodes)))
    scored.sort(key=lambda item: (-item[0], item[1], item[2]))
    candidates = []
    for rank_number, (score, at_us, uid, reasons, where) in enumerate(scored, start=1):
        anomaly = next(a for a in anomalies if a.uid == uid)
        owner = names.get((anomaly.owner.member or "").lower()) or anomaly.owner.member or "?"
        explanation = (
            f"{TITLES.get(anomaly.kind, anomaly.kind)} {where} ({owner}), from {iso_ms(at_us)}: "
            + "; ".join(reasons)
            + f". Score {score:g}."
        )
        candidates.append(Candidate(rank_number, uid, score, tuple(reasons), explanation))
    return symptoms, candidates


def _score(
    anomaly: Anomaly,
    root: str,
    nodes: Mapping[str, TraceNode],
    parents: Mapping[str, list[str]],
    effects_at: Mapping[str, list[Anomaly]],
    symptom_nodes: set[str],
) -> tuple[float, list[str]]:
    reasons: list[str] = []
    score = 0.0

    def add(points: float, reason: str) -> None:
        nonlocal score
        score += points
        reasons.append(f"{reason} ({points:+g})")

    if anomaly.kind in EFFECT_KINDS:
        add(*EFFECT_POINTS)
    else:
        points, why = KIND_POINTS.get(anomaly.kind, (0.0, "an anomaly"))
        add(points, why)
    if anomaly.kind == PARAMETER_DRIFT and _held_constant(anomaly):
        add(*SETTING_POINTS)
    node = nodes[anomaly.node]
    if node.depth > 0:
        add(LEVEL_POINTS * node.depth, f"{node.depth} level(s) upstream of the traced product")
    if anomaly.kind not in EFFECT_KINDS:
        users = [nodes[p] for p in parents.get(node.uid, ()) if nodes[p].made_at_us is not None]
        if users:
            latest = max(users, key=lambda n: n.made_at_us or 0)
            made = latest.made_at_us or 0
            lead = _duration(made - anomaly.at_us)
            if anomaly.at_us <= made:
                add(PRECEDES_POINTS, f"began {lead} before {label(latest.id)} was made from it")
            else:
                add(
                    FOLLOWS_POINTS,
                    f"began {lead} after {label(latest.id)} was made: not its cause",
                )
    path = _path_to_root(node.uid, root, parents)
    showing = [uid for uid in path[1:] if effects_at.get(uid)]
    if symptom_nodes and not symptom_nodes & set(showing):
        showing.append(sorted(symptom_nodes)[0])  # the symptom, reached by another branch
    if showing:
        shown = ", ".join(label(nodes[uid].id) for uid in showing[:4])
        more = f" and {len(showing) - 4} more" if len(showing) > 4 else ""
        add(
            CORROBORATION_POINTS * len(showing),
            f"the defect shows downstream at {len(showing)} level(s): {shown}{more}",
        )
    status = anomaly.check.status
    if status == VERIFIED:
        add(VERIFIED_POINTS, "verified against the chain")
    elif status == FAILED:
        add(FAILED_POINTS, f"does not verify: {anomaly.check.detail}")
    else:
        add(UNVERIFIED_POINTS, f"not verified ({status}): {anomaly.check.detail}")
    return score, reasons


def _held_constant(anomaly: Anomaly) -> bool:
    baseline = anomaly.details.get("baseline")
    return isinstance(baseline, Mapping) and baseline.get("sigmaFloored") is True


def _path_to_root(start: str, root: str, parents: Mapping[str, list[str]]) -> list[str]:
    """The shortest path from ``start`` up to the root (``start`` first), by genealogy links."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == root:
            path = []
            step: str | None = current
            while step is not None:
                path.append(step)
                step = previous[step]
            return list(reversed(path))  # start … root
        for parent in parents.get(current, ()):
            if parent not in previous:
                previous[parent] = current
                queue.append(parent)
    return [start]


def _where(anomaly: Anomaly, nodes: Mapping[str, TraceNode]) -> str:
    node = nodes[anomaly.node]
    details = anomaly.details
    if anomaly.kind == PARAMETER_DRIFT:
        return f"of {details.get('parameter')} on {label(node.id)}"
    return f"on {label(node.id)}"


def _duration(microseconds: int) -> str:
    seconds = abs(microseconds) / 1e6
    if seconds < 120:
        return f"{seconds:.3f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
