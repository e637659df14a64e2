"""Graphs the explorer draws (a product's genealogy, an automated action's decision path): the
graph as JSON data, and as a self-contained SVG picture.

The picture is a layered drawing, left to right: each node's layer is its explicit ``layer`` or,
if it has none, the length of the longest path reaching it; within a layer, nodes are ordered by
the mean position of their neighbours in the previous layer (a few sweeps each way), which keeps
edge crossings low on the trees and funnels these graphs are. Nodes are boxes with their label in
bold and a few detail lines; an edge is a curve with an arrowhead and an optional label. The SVG
has no script, no external reference and no font file: it shows as it is in a browser, an ``<img>``
or a report. A node may carry a link (``href``) that the page resolves to one of its own pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape as _xml_escape
from xml.sax.saxutils import quoteattr as _xml_quoteattr

__all__ = ["Graph", "GraphEdge", "GraphNode", "render_svg"]

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
LABEL_PX, DETAIL_PX = 13, 11
CHAR_W_LABEL, CHAR_W_DETAIL = 8.6, 6.9
"""Approximate advance widths (sans-serif at those sizes): boxes are sized from them."""
LINE_H_LABEL, LINE_H_DETAIL = 18, 15
PAD_X, PAD_Y = 10, 8
GAP_X, GAP_Y, MARGIN = 70, 18, 20
MAX_DETAIL_CHARS = 56
MAX_DETAIL_LINES = 8
SWEEPS = 4

KIND_COLOURS: dict[str, tuple[str, str]] = {
    # kind: (fill, stroke)
    "product": ("#e8f0fe", "#1a56db"),
    "output": ("#e8f0fe", "#1a56db"),
    "material_lot": ("#fef3c7", "#b45309"),
    "parent_lot": ("#fde68a", "#b45309"),
    "equipment": ("#e0f2fe", "#0369a1"),
    "process_step": ("#ede9fe", "#6d28d9"),
    "operator_commitment": ("#f3f4f6", "#6b7280"),
    "input": ("#f0fdf4", "#15803d"),
    "condition": ("#fff7ed", "#c2410c"),
    "decision": ("#eef2ff", "#4338ca"),
    "action": ("#fdf2f8", "#be185d"),
    "execution": ("#fdf4ff", "#a21caf"),
    "transaction": ("#ecfeff", "#0e7490"),
    "more": ("#ffffff", "#9ca3af"),
}
DEFAULT_COLOURS = ("#ffffff", "#374151")
STATUS_STROKES = {"ok": "#15803d", "fail": "#dc2626", "warn": "#d97706"}


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str
    kind: str
    detail: tuple[str, ...] = ()
    status: str | None = None
    """``ok``, ``fail`` or ``warn`` (drawn as a coloured border and a mark), or None."""
    layer: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    """JSON data for the page (ids, hashes, values); not drawn."""
    href: str | None = None


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    label: str = ""


@dataclass(frozen=True)
class Graph:
    title: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def node(self, node_id: str) -> GraphNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def to_json(self) -> dict[str, Any]:
        """``{"title", "nodes": [...], "edges": [...]}``, each node with its drawn layer."""
        layers = _layers(self)
        return {
            "title": self.title,
            "nodes": [
                {
                    "id": n.id,
                    "label": n.label,
                    "kind": n.kind,
                    "detail": list(n.detail),
                    "status": n.status,
                    "layer": layers[n.id],
                    "data": dict(n.data),
                    "href": n.href,
                }
                for n in self.nodes
            ],
            "edges": [
                {"source": e.source, "target": e.target, "label": e.label} for e in self.edges
            ],
        }


# -- layout -----------------------------------------------------------------------------------


def _layers(graph: Graph) -> dict[str, int]:
    """Explicit layers, else longest-path layering from the sources (back edges of a cycle are
    ignored, so every graph gets one)."""
    ids = [n.id for n in graph.nodes]
    known = set(ids)
    outgoing: dict[str, list[str]] = {i: [] for i in ids}
    for edge in graph.edges:
        if edge.source in known and edge.target in known and edge.source != edge.target:
            outgoing[edge.source].append(edge.target)
    order = _topological(ids, outgoing)
    position = {node_id: index for index, node_id in enumerate(order)}
    layer = {n.id: (n.layer if n.layer is not None else 0) for n in graph.nodes}
    fixed = {n.id for n in graph.nodes if n.layer is not None}
    for node_id in order:
        for target in outgoing[node_id]:
            if target in fixed or position[target] <= position[node_id]:
                continue
            layer[target] = max(layer[target], layer[node_id] + 1)
    return layer


def _topological(ids: Sequence[str], outgoing: Mapping[str, list[str]]) -> list[str]:
    """A DFS post-order reversed: a topological order if acyclic, a usable order otherwise."""
    seen: set[str] = set()
    order: list[str] = []
    for start in ids:
        if start in seen:
            continue
        seen.add(start)
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node_id, index = stack.pop()
            targets = outgoing[node_id]
            if index < len(targets):
                stack.append((node_id, index + 1))
                target = targets[index]
                if target not in seen:
                    seen.add(target)
                    stack.append((target, 0))
            else:
                order.append(node_id)
    order.reverse()
    return order


def _ordered(graph: Graph, layers: Mapping[str, int]) -> list[list[str]]:
    count = max(layers.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(count)]
    for node in graph.nodes:
        columns[layers[node.id]].append(node.id)
    neighbours: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for edge in graph.edges:
        if edge.source in neighbours and edge.target in neighbours:
            neighbours[edge.source].append(edge.target)
            neighbours[edge.target].append(edge.source)
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        indices = range(1, count) if forward else range(count - 2, -1, -1)
        for index in indices:
            reference = columns[index - 1] if forward else columns[index + 1]
            rank = {node_id: i for i, node_id in enumerate(reference)}
            current = {node_id: i for i, node_id in enumerate(columns[index])}
            keys = {
                node_id: (_barycentre(neighbours[node_id], rank, i), i)
                for node_id, i in current.items()
            }
            columns[index].sort(key=keys.__getitem__)
    return columns


def _barycentre(linked: Sequence[str], rank: Mapping[str, int], default: int) -> float:
    positions = [rank[n] for n in linked if n in rank]
    return sum(positions) / len(positions) if positions else float(default)


# -- drawing ----------------------------------------------------------------------------------

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold, even escaped (control characters, lone surrogates)."""


def escape(text: str) -> str:
    return _xml_escape(_NOT_XML.sub("\ufffd", text))


def quoteattr(text: str) -> str:
    return _xml_quoteattr(_NOT_XML.sub("\ufffd", text))


@dataclass(frozen=True)
class _Box:
    node: GraphNode
    x: float
    y: float
    width: float
    height: float
    lines: tuple[str, ...]


_LONG_HEX = re.compile(r"0x[0-9a-fA-F]{16,}")


def _shortened(text: str) -> str:
    """Long hex (addresses, hashes) drawn as its ends; the tooltip and the JSON keep it whole."""
    return _LONG_HEX.sub(lambda m: f"{m.group()[:8]}…{m.group()[-4:]}", text)


def _detail_lines(node: GraphNode) -> tuple[str, ...]:
    lines = [_clip(_shortened(line)) for line in node.detail[:MAX_DETAIL_LINES]]
    if len(node.detail) > MAX_DETAIL_LINES:
        lines.append(f"… {len(node.detail) - MAX_DETAIL_LINES} more")
    return tuple(lines)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _size(node: GraphNode, lines: Sequence[str]) -> tuple[float, float]:
    mark = 2 if node.status else 0
    width = max(
        [(len(node.label) + mark) * CHAR_W_LABEL] + [len(line) * CHAR_W_DETAIL for line in lines]
    )
    height = LINE_H_LABEL + len(lines) * LINE_H_DETAIL
    return width + 2 * PAD_X, height + 2 * PAD_Y


def render_svg(graph: Graph, link: Callable[[GraphNode], str | None] | None = None) -> str:
    """The graph as a standalone SVG document (UTF-8 text). ``link`` gives a node's URL (default:
    its ``href``); a linked node is wrapped in an ``<a>``."""
    layers = _layers(graph)
    columns = _ordered(graph, layers)
    nodes = {n.id: n for n in graph.nodes}
    boxes: dict[str, _Box] = {}
    x = float(MARGIN)
    column_heights = []
    for column in columns:
        sized = [(nodes[i], _detail_lines(nodes[i])) for i in column]
        dims = [_size(node, lines) for node, lines in sized]
        column_width = max((w for w, _ in dims), default=0.0)
        y = float(MARGIN + LINE_H_LABEL + GAP_Y)  # room for the title
        for (node, lines), (_, height) in zip(sized, dims, strict=True):
            boxes[node.id] = _Box(node, x, y, column_width, height, lines)
            y += height + GAP_Y
        column_heights.append(y)
        x += column_width + GAP_X
    width = max(x - GAP_X + MARGIN, 240.0)
    height = max(column_heights, default=float(MARGIN + LINE_H_LABEL + GAP_Y)) + MARGIN
    # Centre each column vertically.
    for column, column_height in zip(columns, column_heights, strict=True):
        shift = (height - column_height) / 2
        for node_id in column:
            box = boxes[node_id]
            boxes[node_id] = _Box(box.node, box.x, box.y + shift, box.width, box.height, box.lines)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label={quoteattr(graph.title)} '
        f'font-family="{FONT}">',
        f"<title>{escape(graph.title)}</title>",
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker>'
        "</defs>",
        f'<rect width="100%" height="100%" fill="#ffffff"/>'
        f'<text x="{MARGIN}" y="{MARGIN + LABEL_PX}" font-size="{LABEL_PX + 2}" '
        f'font-weight="600" fill="#111827">{escape(graph.title)}</text>',
    ]
    parts.append('<g class="edges" fill="none" stroke="#9ca3af" stroke-width="1.4">')
    for edge in graph.edges:
        if edge.source in boxes and edge.target in boxes:
            parts.append(_edge(boxes[edge.source], boxes[edge.target], edge.label))
    parts.append("</g>")
    parts.append('<g class="nodes">')
    for node in graph.nodes:
        url = link(node) if link is not None else node.href
        parts.append(_node(boxes[node.id], url))
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


def _edge(source: _Box, target: _Box, label: str) -> str:
    x1, y1 = source.x + source.width, source.y + source.height / 2
    x2, y2 = target.x, target.y + target.height / 2
    if x2 <= x1:  # same or earlier column: leave from the bottom, enter from the top
        x1, y1 = source.x + source.width / 2, source.y + source.height
        x2, y2 = target.x + target.width / 2, target.y
        bend = max(abs(y2 - y1) / 2, 30.0)
        c1, c2 = (x1, y1 + bend), (x2, y2 - bend)
    else:
        bend = (x2 - x1) / 2
        c1, c2 = (x1 + bend, y1), (x2 - bend, y2)
    path = f"M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}"
    out = f'<path d="{path}" marker-end="url(#arrow)"/>'
    if label:  # on the curve, at t = 1/2
        mx = (x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8
        my = (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8 - 4
        out += (
            f'<text x="{mx:.1f}" y="{my:.1f}" font-size="{DETAIL_PX - 1}" fill="#6b7280" '
            f'stroke="#ffffff" stroke-width="3" paint-order="stroke" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return out


def _node(box: _Box, url: str | None) -> str:
    node = box.node
    fill, stroke = KIND_COLOURS.get(node.kind, DEFAULT_COLOURS)
    stroke = STATUS_STROKES.get(node.status or "", stroke)
    width = 2.4 if node.status in ("fail", "warn") else 1.4
    tooltip = "\n".join([node.label, *node.detail])
    mark = {"ok": "✓ ", "fail": "✗ ", "warn": "! "}.get(node.status or "", "")
    text_x = box.x + PAD_X
    lines = [
        f'<g class="node {escape(node.kind)}" id={quoteattr("n-" + node.id)}>',
        f"<title>{escape(tooltip)}</title>",
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" '
        f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>',
        f'<text x="{text_x:.1f}" y="{box.y + PAD_Y + LABEL_PX:.1f}" font-size="{LABEL_PX}" '
        f'font-weight="600" fill="#111827">'
        + (f'<tspan fill="{stroke}">{escape(mark)}</tspan>' if mark else "")
        + f"{escape(node.label)}</text>",
    ]
    y = box.y + PAD_Y + LINE_H_LABEL + DETAIL_PX
    for line in box.lines:
        lines.append(
            f'<text x="{text_x:.1f}" y="{y:.1f}" font-size="{DETAIL_PX}" fill="#374151">'
            f"{escape(line)}</text>"
        )
        y += LINE_H_DETAIL
    lines.append("</g>")
    body = "".join(lines)
    if url:
        return f"<a href={quoteattr(url)}>{body}</a>"
    return body
