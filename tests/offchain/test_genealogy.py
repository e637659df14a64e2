"""Genealogy records, their links, and upstream/downstream trees on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from node.errors import RecordError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.genealogy import (
    LINKS,
    Genealogy,
    GenealogyInput,
    InputKind,
    downstream,
    record_genealogy,
    upstream,
)
from node.offchain.store import Store
from node.oracles.digital_link import asset, product

CELL = product("09506000134352", serial="CELL-0001").uri()
CATHODE = product("09506000134352", lot="CATH-7").uri()
PRECURSOR = product("04006381333931", lot="NCM811-22").uri()
LITHIUM = product("00036000291452", lot="LI-2026-03").uri()
ELECTROLYTE = product("00036000291452", lot="EL-9").uri()
COATER = asset("4000001111-coater-3").uri()
CRYSTALLIZER = asset("4000001111-cryst-1").uri()


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    opened = Store.open(store_url, classification, BlobStore(tmp_path / "blobs"))
    yield opened
    opened.close()


def made(output: str, *inputs: tuple[str, InputKind], **extra: object) -> Genealogy:
    return Genealogy(
        output=output,
        inputs=tuple(GenealogyInput(i, k) for i, k in inputs),
        observed_at_us=1_764_000_000_000_000,
        **extra,  # type: ignore[arg-type]
    )


def battery_chain(store: Store) -> None:
    record_genealogy(
        store,
        [
            made(
                CELL,
                (CATHODE, InputKind.PARENT_LOT),
                (ELECTROLYTE, InputKind.MATERIAL_LOT),
                process_step="cell_assembly",
                operator_id="op-17",
            ),
            made(
                CATHODE,
                (PRECURSOR, InputKind.MATERIAL_LOT),
                equipment=COATER,
                process_step="cathode_coating",
            ),
        ],
    )
    record_genealogy(
        store,
        [
            made(
                PRECURSOR,
                (LITHIUM, InputKind.MATERIAL_LOT),
                (CRYSTALLIZER, InputKind.EQUIPMENT),
                process_step="crystallization",
            ),
        ],
    )


def test_the_upstream_tree_of_a_cell_reaches_the_lithium_lot(store: Store) -> None:
    battery_chain(store)
    tree = upstream(store, CELL)
    assert tree.id == CELL and tree.kind == "product" and len(tree.record_ids) == 1
    kinds = {child.id: child.kind for child in tree.children}
    assert kinds[CATHODE] == "parent_lot" and kinds[ELECTROLYTE] == "material_lot"
    assert kinds["cell_assembly"] == "process_step"
    assert [k for k in kinds.values()].count("operator_commitment") == 1
    cathode = next(c for c in tree.children if c.id == CATHODE)
    assert {c.id for c in cathode.children} == {PRECURSOR, COATER, "cathode_coating"}
    precursor = next(c for c in cathode.children if c.id == PRECURSOR)
    assert {(c.id, c.kind) for c in precursor.children} == {
        (LITHIUM, "material_lot"),
        (CRYSTALLIZER, "equipment"),
        ("crystallization", "process_step"),
    }
    assert LITHIUM in tree.ids() and not any(n.cycle or n.truncated for n in tree.walk())


def test_the_operator_never_leaves_the_store_only_the_commitment(store: Store) -> None:
    battery_chain(store)
    with store.transaction() as connection:
        rows = connection.execute(select(LINKS)).all()
    assert all("op-17" not in str(tuple(row)) for row in rows)
    commitment_links = [r for r in rows if r.input_kind == "operator_commitment"]
    record = store.record(commitment_links[0].record_id)
    assert commitment_links[0].input_id == record.private_commitment
    assert "operator_id" not in record.public


def test_depth_limits_the_tree(store: Store) -> None:
    battery_chain(store)
    tree = upstream(store, CELL, max_depth=1)
    cathode = next(c for c in tree.children if c.id == CATHODE)
    assert cathode.truncated and not cathode.children
    assert LITHIUM not in tree.ids()
    assert upstream(store, CELL, max_depth=0).truncated


def test_downstream_finds_every_product_made_from_a_lot(store: Store) -> None:
    battery_chain(store)
    recall = downstream(store, LITHIUM)
    assert recall.ids() == {LITHIUM, PRECURSOR, CATHODE, CELL}
    assert downstream(store, CRYSTALLIZER).ids() == {CRYSTALLIZER, PRECURSOR, CATHODE, CELL}


def test_a_cycle_is_marked_not_followed(store: Store) -> None:
    a, b = product("09506000134352", lot="A").uri(), product("09506000134352", lot="B").uri()
    record_genealogy(
        store, [made(a, (b, InputKind.PARENT_LOT)), made(b, (a, InputKind.PARENT_LOT))]
    )
    tree = upstream(store, a)
    (child,) = tree.children
    assert child.id == b
    (grandchild,) = child.children
    assert grandchild.id == a and grandchild.cycle and not grandchild.children


def test_bad_genealogies_are_refused(store: Store) -> None:
    with pytest.raises(RecordError, match="the output is its own input"):
        made(CELL, (CELL, InputKind.PARENT_LOT))
    with pytest.raises(RecordError, match="no inputs"):
        made(CELL)
    with pytest.raises(RecordError, match="check digit"):
        made("https://id.gs1.org/01/09506000134353/10/X", (CELL, InputKind.PARENT_LOT))
    with pytest.raises(RecordError, match="input kind"):
        made(CELL, ("x", InputKind.OPERATOR_COMMITMENT))


def test_records_and_links_commit_together(store: Store) -> None:
    good = made(CELL, (CATHODE, InputKind.PARENT_LOT))
    duplicate = Genealogy(
        CATHODE,
        (GenealogyInput(PRECURSOR, InputKind.MATERIAL_LOT),),
        1,
        record_id="0x" + "11" * 32,
    )
    record_genealogy(store, [duplicate])
    with pytest.raises(Exception, match="refused"):
        record_genealogy(store, [good, duplicate])  # the second reuses a record id: all rolled back
    assert upstream(store, CELL).children == ()


def test_a_ten_thousand_node_tree(store: Store) -> None:
    root = product("09506000134352", serial="PACK-1").uri()
    modules = [product("09506000134352", lot=f"M{m}").uri() for m in range(100)]
    genealogies = [made(root, *((m, InputKind.PARENT_LOT) for m in modules))]
    for m, module in enumerate(modules):
        cells = [product("04006381333931", lot=f"C{m}-{c}").uri() for c in range(99)]
        genealogies.append(made(module, *((c, InputKind.PARENT_LOT) for c in cells)))
    record_genealogy(store, genealogies)
    tree = upstream(store, root)
    assert sum(1 for _ in tree.walk()) == 1 + 100 + 100 * 99
