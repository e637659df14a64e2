"""A product's genealogy (:class:`~node.offchain.genealogy.GenealogyTree`) as a graph.

Material flows left to right: in an upstream tree each input points at what was made from it, so
the product is on the right and its earliest material lots on the left; a downstream tree (a
recall) starts from the lot on the left. A node met on several branches is drawn once. Operators
appear only as their salted commitment, as the genealogy links hold them.
"""

from __future__ import annotations

from node.errors import IdentifierError
from node.explorer.graph import Graph, GraphEdge, GraphNode
from node.offchain.genealogy import GenealogyTree, InputKind
from node.oracles.digital_link import GIAI, GLN, GTIN, SSCC, DigitalLink, parse

__all__ = ["genealogy_graph", "identifier_label"]


def identifier_label(identifier: str, kind: str = "") -> tuple[str, tuple[str, ...]]:
    """A short label and detail lines for a genealogy node's identifier."""
    if kind == InputKind.OPERATOR_COMMITMENT:
        return f"operator {identifier[:10]}…", ("salted commitment", identifier)
    try:
        link = parse(identifier, domains=None)
    except IdentifierError:
        return identifier, ()
    return _link_label(link), _link_detail(link)


def _link_label(link: DigitalLink) -> str:
    if link.ai == GTIN:
        if link.serial is not None:
            return f"item {link.serial}"
        if link.lot is not None:
            return f"lot {link.lot}"
        return f"GTIN {link.key}"
    if link.ai == GIAI:
        return f"asset {link.key}"
    if link.ai == SSCC:
        return f"SSCC {link.key}"
    if link.ai == GLN:
        return f"location {link.key}"
    return f"{link.ai} {link.key}"


def _link_detail(link: DigitalLink) -> tuple[str, ...]:
    lines = []
    if link.ai == GTIN:
        lines.append(f"GTIN {link.key}")
        if link.lot is not None and link.serial is not None:
            lines.append(f"lot {link.lot}")
    return tuple(lines)


def genealogy_graph(tree: GenealogyTree, downstream: bool = False, title: str = "") -> Graph:
    """The tree as a graph (``downstream``: the tree is from ``genealogy.downstream``).

    Node ids are the identifiers; each node's ``data`` has its ``id``, link ``kind`` and the
    genealogy ``record_ids`` that link it; edges go from input to output.
    """
    nodes: dict[str, GraphNode] = {}
    edges: dict[tuple[str, str], GraphEdge] = {}
    depth = _depths(tree)
    deepest = max(depth.values())

    def add(node: GenealogyTree, is_root: bool) -> None:
        if node.id in nodes:
            return
        label, detail = identifier_label(node.id, node.kind)
        kind = "product" if is_root else node.kind
        lines = [kind.replace("_", " ")] if not is_root else []
        lines += list(detail)
        if node.record_ids:
            lines.append(f"{len(node.record_ids)} genealogy record(s)")
        status = None
        if node.cycle:
            lines.append("met again on its own path (a cycle)")
            status = "warn"
        if node.truncated:
            lines.append("deeper links not followed (depth limit)")
            status = "warn"
        nodes[node.id] = GraphNode(
            id=node.id,
            label=label,
            kind=kind,
            detail=tuple(lines),
            status=status,
            layer=depth[node.id] if downstream else deepest - depth[node.id],
            data={"id": node.id, "kind": node.kind, "record_ids": list(node.record_ids)},
        )

    add(tree, True)
    stack = [tree]
    while stack:
        parent = stack.pop()
        for child in parent.children:
            add(child, False)
            source, target = (parent.id, child.id) if downstream else (child.id, parent.id)
            edges.setdefault((source, target), GraphEdge(source, target))
            stack.append(child)
    root_label = nodes[tree.id].label
    heading = title or (f"Made from {root_label}" if downstream else f"Genealogy of {root_label}")
    return Graph(heading, tuple(nodes.values()), tuple(edges.values()))


def _depths(tree: GenealogyTree) -> dict[str, int]:
    """Each identifier's greatest depth in the tree: drawn at that distance from the root, every
    edge goes one way (a node met again on its own path is not followed further)."""
    depth: dict[str, int] = {}
    stack = [(tree, 0)]
    while stack:
        node, level = stack.pop()
        if depth.get(node.id, -1) >= level:
            continue
        depth[node.id] = level
        if not node.cycle:
            stack.extend((child, level + 1) for child in node.children)
    return depth
