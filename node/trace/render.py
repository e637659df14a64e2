"""A trace for people: the tree with its anomalies, the candidates and the members, as text lines
(``qnode trace``), and as a graph for the explorer's SVG drawing
(:func:`node.explorer.graph.render_svg`)."""

from __future__ import annotations

from node.api.verification import VERIFIED
from node.explorer.graph import Graph, GraphEdge, GraphNode
from node.trace.anomalies import TITLES
from node.trace.keys import label
from node.trace.model import Trace, TraceNode, iso_ms

MARKS = {
    "verified": "✓",
    "pending": "…",
    "unanchored": "~",
    "unavailable": "?",
    "failed": "✗",
}


def trace_text(trace: Trace, evidence: bool = False) -> list[str]:
    """The trace as lines of text (no markup)."""
    lines = [
        f"trace of {label(trace.root)}  {trace.root}",
        f"took {trace.elapsed_ms:.1f} ms; {len(trace.nodes)} nodes, {len(trace.anomalies)} "
        f"anomalies, {len(trace.members)} member(s) asked",
        "",
        "genealogy (✓ verified, … pending, ~ off-chain, ? unavailable, ✗ does not verify)",
    ]
    lines += _tree(trace)
    lines += ["", "anomalies"]
    if not trace.anomalies:
        lines.append("  none on the path")
    for anomaly in trace.anomalies:
        node = trace.node(anomaly.node)
        owner = anomaly.owner.name or anomaly.owner.member or "?"
        mark = MARKS.get(anomaly.check.status, "?")
        lines.append(
            f"  {anomaly.uid:>4} {mark} {TITLES.get(anomaly.kind, anomaly.kind)} on "
            f"{label(node.id)} ({owner}) at {iso_ms(anomaly.at_us)}"
        )
        lines.append(f"       {anomaly.summary}")
        lines.append(f"       {anomaly.check.status}: {anomaly.check.detail}")
        if evidence and anomaly.check.records:
            lines.append(f"       records: {', '.join(anomaly.check.records)}")
    lines += ["", "root-cause candidates"]
    if trace.symptoms:
        shown = ", ".join(f"{uid} ({trace.anomaly(uid).summary})" for uid in trace.symptoms)
        lines.append(f"  explaining the symptom: {shown}")
    if not trace.candidates:
        lines.append("  none")
    for candidate in trace.candidates:
        lines.append(f"  #{candidate.rank} [{candidate.score:g}] {candidate.anomaly}")
        lines.append(f"     {candidate.explanation}")
    lines += ["", "members"]
    for member in trace.members:
        lines.append(
            f"  {member.name or member.member}: {member.status}, {member.requests} request(s), "
            f"{member.elapsed_ms:.1f} ms — {member.detail}"
        )
    unverified = trace.unverified
    if unverified:
        lines += ["", "not verified"]
        lines += [f"  {what}: {check.status} — {check.detail}" for what, check in unverified]
    if trace.notes:
        lines += ["", "notes"]
        lines += [f"  {note}" for note in trace.notes]
    phases = ", ".join(f"{name} {ms:.1f}" for name, ms in trace.phases)
    lines += [
        "",
        f"drift detector: {trace.detector}",
        f"trace time: {trace.elapsed_ms:.1f} ms" + (f" ({phases} ms)" if phases else ""),
    ]
    return lines


def _tree(trace: Trace) -> list[str]:
    lines: list[str] = []
    shown: set[str] = set()
    stack: list[tuple[str, str, bool]] = [(trace.root, "", True)]
    first = True
    while stack:
        uid, prefix, last = stack.pop()
        node = trace.node(uid)
        branch = "" if first else ("└─ " if last else "├─ ")
        lines.append(f"  {prefix}{branch}{_node_line(node, trace)}")
        child_prefix = prefix if first else prefix + ("   " if last else "│  ")
        first = False
        if uid in shown:
            if node.children:
                lines.append(f"  {child_prefix}   (shown above)")
            continue
        shown.add(uid)
        for anomaly_uid in node.anomalies:
            anomaly = trace.anomaly(anomaly_uid)
            mark = MARKS.get(anomaly.check.status, "?")
            lines.append(f"  {child_prefix}  ! {anomaly_uid} {mark} {anomaly.summary}")
        children = list(node.children)
        for index, child in reversed(list(enumerate(children))):
            stack.append((child, child_prefix, index == len(children) - 1))
    return lines


def _node_line(node: TraceNode, trace: Trace) -> str:
    owner = node.owner.name or node.owner.member or "owner unknown"
    kind = node.kind.replace("_", " ")
    made = f", made {iso_ms(node.made_at_us)}" if node.made_at_us else ""
    text = f"{label(node.id)} ({kind}, {owner}{made}) {MARKS.get(node.check.status, '?')}"
    if node.check.status != VERIFIED:
        text += f" {node.check.status}: {node.check.detail}"
    if node.upstream is not None and node.upstream.status != VERIFIED:
        text += f" — upstream {node.upstream.status}: {node.upstream.detail}"
    return text


_STATUS = {"verified": "ok", "failed": "fail"}


def trace_graph(trace: Trace) -> Graph:
    """The trace as a graph: material flows left to right into the traced product; a node with
    anomalies lists them; borders show verification (green verified, red failed, amber else)."""
    depth = {node.uid: node.depth for node in trace.nodes}
    deepest = max(depth.values(), default=0)
    ranks = {c.anomaly: c.rank for c in trace.candidates}
    nodes = []
    edges = []
    for node in trace.nodes:
        detail = [node.kind.replace("_", " "), node.owner.name or node.owner.member or "?"]
        for anomaly_uid in node.anomalies:
            anomaly = trace.anomaly(anomaly_uid)
            rank = f"#{ranks[anomaly_uid]} " if anomaly_uid in ranks else ""
            detail.append(f"{rank}{TITLES.get(anomaly.kind, anomaly.kind)}")
        if not node.check.verified:
            detail.append(f"{node.check.status}: {node.check.detail}")
        status = _STATUS.get(node.check.status, "warn")
        if any(not trace.anomaly(a).check.verified for a in node.anomalies):
            status = "warn" if status == "ok" else status
        nodes.append(
            GraphNode(
                id=node.uid,
                label=label(node.id),
                kind="product" if node.uid == trace.root else node.kind,
                detail=tuple(detail),
                status=status,
                layer=deepest - node.depth,
                data={"id": node.id, "anomalies": list(node.anomalies)},
            )
        )
        edges += [GraphEdge(child, node.uid) for child in node.children]
    return Graph(f"Trace of {label(trace.root)}", tuple(nodes), tuple(edges))
