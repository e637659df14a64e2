"""Genealogy: which inputs a product or lot was made from, and the trees built from those links.

A "genealogy" record says: ``output`` (a GS1 Digital Link URI of a product, lot or item) was made
from ``inputs`` (material lots, parent lots, equipment, process steps), at ``process_step`` on
``equipment``, by ``operator_id``. The operator is private: only the record's salted commitment
leaves the store, and the genealogy link of kind ``operator_commitment`` points at that commitment,
never at the operator. The record and its links are written in one transaction.

``upstream`` walks from a product to everything it was made from (breadth first, one batched
``IN`` query per level, on SQLite and PostgreSQL alike); ``downstream`` walks from a lot to
everything made from it (a recall).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select

from node.errors import IdentifierError, RecordError
from node.offchain.models import Base, GenealogyLinkRow
from node.offchain.records import RecordInput, StoredRecord
from node.offchain.store import Store
from node.oracles.digital_link import parse

RECORD_TYPE = "genealogy"
LINKS = Base.metadata.tables[GenealogyLinkRow.__tablename__]
MAX_DEPTH = 256
_IN_BATCH = 500


class InputKind(StrEnum):
    MATERIAL_LOT = "material_lot"
    PARENT_LOT = "parent_lot"
    EQUIPMENT = "equipment"
    PROCESS_STEP = "process_step"
    OPERATOR_COMMITMENT = "operator_commitment"  # a link kind only, written by the store


RECORD_INPUT_KINDS = frozenset(k for k in InputKind if k is not InputKind.OPERATOR_COMMITMENT)
_LOT_KINDS = frozenset({InputKind.MATERIAL_LOT, InputKind.PARENT_LOT})


@dataclass(frozen=True)
class GenealogyInput:
    id: str
    kind: InputKind


@dataclass(frozen=True)
class Genealogy:
    """What a genealogy record says. Inputs are kept in a canonical order (kind, then id), so the
    same genealogy always makes the same record content."""

    output: str
    inputs: tuple[GenealogyInput, ...]
    observed_at_us: int
    process_step: str | None = None
    equipment: str | None = None
    operator_id: str | None = field(default=None, repr=False)
    record_id: str | None = None

    def __post_init__(self) -> None:
        _check_product_id("output", self.output)
        if not self.inputs:
            raise RecordError(f"genealogy of {self.output}: no inputs")
        for item in self.inputs:
            if item.kind not in RECORD_INPUT_KINDS:
                raise RecordError(f"genealogy of {self.output}: input kind {item.kind!r}")
            if item.kind in _LOT_KINDS:
                _check_product_id(item.kind.value, item.id)
            if item.id == self.output:
                raise RecordError(f"genealogy of {self.output}: the output is its own input")
        ordered = tuple(sorted(set(self.inputs), key=lambda i: (i.kind.value, i.id)))
        object.__setattr__(self, "inputs", ordered)

    def record_input(self) -> RecordInput:
        fields: dict[str, Any] = {
            "output": self.output,
            "inputs": [{"id": i.id, "kind": i.kind.value} for i in self.inputs],
        }
        if self.process_step is not None:
            fields["process_step"] = self.process_step
        if self.equipment is not None:
            fields["equipment"] = self.equipment
        if self.operator_id is not None:
            fields["operator_id"] = self.operator_id
        return RecordInput(RECORD_TYPE, fields, self.observed_at_us, self.record_id)

    @classmethod
    def from_fields(
        cls, public: Mapping[str, Any], observed_at_us: int, record_id: str | None = None
    ) -> Genealogy:
        """A genealogy from a record's public fields (its operator stays in the store)."""
        try:
            inputs = tuple(
                GenealogyInput(str(item["id"]), InputKind(item["kind"]))
                for item in public["inputs"]
            )
            return cls(
                output=str(public["output"]),
                inputs=inputs,
                observed_at_us=observed_at_us,
                process_step=public.get("process_step"),
                equipment=public.get("equipment"),
                record_id=record_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a genealogy record: {exc!r}") from exc


def _check_product_id(what: str, uri: str) -> None:
    try:
        parse(uri, domains=None)
    except IdentifierError as exc:
        raise RecordError(f"genealogy {what}: {exc}") from exc


# -- writing ---------------------------------------------------------------------------------


def record_genealogy(store: Store, genealogies: Sequence[Genealogy]) -> list[StoredRecord]:
    """Store genealogy records and their links in one transaction."""
    with store.transaction() as connection:
        return write_genealogy(store, connection, genealogies)


def write_genealogy(
    store: Store, connection: Connection, genealogies: Sequence[Genealogy]
) -> list[StoredRecord]:
    """Like :func:`record_genealogy`, inside the caller's transaction."""
    records = store.write_records(connection, [g.record_input() for g in genealogies])
    rows = [row for g, r in zip(genealogies, records, strict=True) for row in _link_rows(g, r)]
    if rows:
        connection.execute(insert(LINKS), rows)
    return records


def _link_rows(genealogy: Genealogy, record: StoredRecord) -> Iterator[dict[str, Any]]:
    inputs = [(i.id, i.kind.value) for i in genealogy.inputs]
    if genealogy.equipment is not None:
        inputs.append((genealogy.equipment, InputKind.EQUIPMENT.value))
    if genealogy.process_step is not None:
        inputs.append((genealogy.process_step, InputKind.PROCESS_STEP.value))
    if record.private_commitment is not None and genealogy.operator_id is not None:
        inputs.append((record.private_commitment, InputKind.OPERATOR_COMMITMENT.value))
    for input_id, kind in dict.fromkeys(inputs):
        yield {
            "record_id": record.record_id,
            "output_id": genealogy.output,
            "input_id": input_id,
            "input_kind": kind,
            "observed_at_us": record.observed_at_us,
        }


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenealogyTree:
    """A node of an upstream (or downstream) tree.

    ``kind`` is how it is linked to its parent node (``product`` for the root); ``record_ids`` are
    the genealogy records that link it to its parent (for the root: the records that made it, or
    used it downstream). ``cycle`` marks a node met again on its own path (not expanded again);
    ``truncated`` one at ``max_depth`` whose links were not followed.
    """

    id: str
    kind: str
    record_ids: tuple[str, ...] = ()
    children: tuple[GenealogyTree, ...] = ()
    cycle: bool = False
    truncated: bool = False

    def walk(self) -> Iterator[GenealogyTree]:
        """Every node, depth first (iterative: a deep tree does not hit the recursion limit)."""
        stack: list[GenealogyTree] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def ids(self) -> set[str]:
        return {node.id for node in self.walk()}


@dataclass(frozen=True)
class _Edge:
    target: str
    kind: str
    record_id: str


def upstream(store: Store, output_id: str, max_depth: int = 64) -> GenealogyTree:
    """Everything ``output_id`` was made from, to ``max_depth`` levels."""
    return _tree(store, output_id, max_depth, downstream=False)


def downstream(store: Store, input_id: str, max_depth: int = 64) -> GenealogyTree:
    """Everything made (directly or not) from ``input_id``: the products a recall must reach."""
    return _tree(store, input_id, max_depth, downstream=True)


def _tree(store: Store, root: str, max_depth: int, downstream: bool) -> GenealogyTree:
    if not 0 <= max_depth <= MAX_DEPTH:
        raise RecordError(f"max_depth must be between 0 and {MAX_DEPTH}, not {max_depth}")
    edges = _edges(store, root, max_depth, downstream)
    own = tuple(sorted({e.record_id for e in edges.get(root, ())}))
    return _Builder(edges, max_depth).node(root, "product" if not downstream else "input", own)


def _edges(store: Store, root: str, max_depth: int, downstream: bool) -> dict[str, list[_Edge]]:
    """Links of every node within ``max_depth`` of ``root``, one batched query per level; one
    level more, to tell which nodes at the limit have links (they are marked truncated)."""
    source, target = (
        (LINKS.c.input_id, LINKS.c.output_id)
        if downstream
        else (
            LINKS.c.output_id,
            LINKS.c.input_id,
        )
    )
    edges: dict[str, list[_Edge]] = {}
    seen = {root}
    frontier = [root]
    with store.transaction() as connection:
        for _ in range(max_depth + 1):
            if not frontier:
                break
            found: list[str] = []
            for start in range(0, len(frontier), _IN_BATCH):
                batch = frontier[start : start + _IN_BATCH]
                query = select(source, target, LINKS.c.input_kind, LINKS.c.record_id).where(
                    source.in_(batch)
                )
                rows = connection.execute(query.order_by(LINKS.c.id))
                for origin, other, kind, record_id in rows:
                    role = "output" if downstream else kind
                    edges.setdefault(origin, []).append(_Edge(other, role, record_id))
                    if other not in seen:
                        seen.add(other)
                        found.append(other)
            frontier = found
    return edges


class _Builder:
    """Builds the tree from the adjacency lists; subtrees without cycles are shared, not rebuilt."""

    def __init__(self, edges: Mapping[str, list[_Edge]], max_depth: int) -> None:
        self._edges = edges
        self._max_depth = max_depth
        self._done: dict[tuple[str, int], tuple[tuple[GenealogyTree, ...], bool, bool]] = {}
        self._path: set[str] = set()

    def node(self, node_id: str, kind: str, record_ids: tuple[str, ...]) -> GenealogyTree:
        children, truncated, _ = self._children(node_id, 0)
        return GenealogyTree(node_id, kind, record_ids, children, truncated=truncated)

    def _children(self, node_id: str, depth: int) -> tuple[tuple[GenealogyTree, ...], bool, bool]:
        """(children, truncated, met a cycle below)"""
        out = self._edges.get(node_id, [])
        if not out:
            return (), False, False
        if depth >= self._max_depth:
            return (), True, False
        remaining = self._max_depth - depth
        cached = self._done.get((node_id, remaining))
        if cached is not None:
            return cached
        self._path.add(node_id)
        grouped: dict[tuple[str, str], list[str]] = {}
        for edge in out:
            grouped.setdefault((edge.target, edge.kind), []).append(edge.record_id)
        children = []
        cyclic = False
        for (target, kind), record_ids in grouped.items():
            ids = tuple(sorted(set(record_ids)))
            if target in self._path:
                children.append(GenealogyTree(target, kind, ids, cycle=True))
                cyclic = True
                continue
            grandchildren, truncated, below = self._children(target, depth + 1)
            cyclic = cyclic or below
            children.append(GenealogyTree(target, kind, ids, grandchildren, truncated=truncated))
        self._path.discard(node_id)
        result = (tuple(children), False, cyclic)
        if not cyclic:
            self._done[(node_id, remaining)] = result
        return result
