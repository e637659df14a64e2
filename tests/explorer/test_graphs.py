"""The genealogy and decision-path graphs: their JSON, and their SVG pictures (well-formed XML
holding every node's label)."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

from node.control.decisions import replay
from node.explorer import Graph, GraphEdge, GraphNode, decision_graph, render_svg
from node.offchain.records import StoredRecord
from tests.explorer.conftest import CATHODE, CELL, COATER, ELECTROLYTE, PRECURSOR, World

SVG = "{http://www.w3.org/2000/svg}"


def drawn_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.encode("utf-8"))  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}script"))
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def assert_picture_of(graph: Graph) -> str:
    svg = render_svg(graph)
    texts = drawn_texts(svg)
    for node in graph.nodes:
        assert any(text.endswith(node.label) for text in texts), node.label
    assert graph.title in texts
    return svg


def edges_of(graph: Graph) -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in graph.edges}


# -- genealogy ----------------------------------------------------------------------------------


def test_the_genealogy_of_a_cell_is_drawn_from_its_materials_to_it(world: World) -> None:
    graph = world.explorer.genealogy(CELL)
    ids = {n.id for n in graph.nodes}
    assert {
        CELL,
        CATHODE,
        ELECTROLYTE,
        PRECURSOR,
        COATER,
        "cell_assembly",
        "cathode_coating",
    } <= ids
    (operator,) = [n for n in graph.nodes if n.kind == "operator_commitment"]
    assert operator.label.startswith("operator 0x")
    assert {(CATHODE, CELL), (ELECTROLYTE, CELL), (PRECURSOR, CATHODE), (COATER, CATHODE)} <= (
        edges_of(graph)
    )
    layers = {n["id"]: n["layer"] for n in graph.to_json()["nodes"]}
    assert layers[CELL] == max(layers.values())
    assert layers[PRECURSOR] < layers[CATHODE] < layers[CELL]
    assert all(layers[e.source] < layers[e.target] for e in graph.edges)
    labels = {n.id: n.label for n in graph.nodes}
    assert labels[CELL] == "item CELL0001" and labels[CATHODE] == "lot CATH-7"
    svg = assert_picture_of(graph)
    document = json.dumps(graph.to_json())
    assert "op-17" not in svg and "op-17" not in document  # the operator is a commitment only


def test_a_downstream_genealogy_runs_from_the_lot_to_the_products(world: World) -> None:
    graph = world.explorer.genealogy(PRECURSOR, downstream=True)
    assert {(PRECURSOR, CATHODE), (CATHODE, CELL)} <= edges_of(graph)
    assert graph.title == "Made from lot NCM811-22"
    layers = {n["id"]: n["layer"] for n in graph.to_json()["nodes"]}
    assert layers[PRECURSOR] == 0 and layers[CELL] == 2
    assert_picture_of(graph)


def test_an_unknown_product_is_a_graph_of_itself(world: World) -> None:
    graph = world.explorer.genealogy("https://id.example.com/01/09506000134352/21/NOPE")
    assert [n.label for n in graph.nodes] == ["item NOPE"] and graph.edges == ()
    assert_picture_of(graph)


# -- decision paths ------------------------------------------------------------------------------


def test_the_decision_path_of_a_supplier_hold_reaches_its_transaction(world: World) -> None:
    (listed,) = world.explorer.decisions()
    assert (listed.rule_id, listed.action_kind, listed.input_count) == (
        "incoming-usl",
        "hold_supplier",
        5,
    )
    path = world.explorer.decision(listed.record_id)
    assert path is not None
    assert path.decision == world.decision and path.replay.confirmed
    assert [a.kind for a in path.actions] == ["supplier_hold"]
    assert {log.tx_hash for log in path.logs} == {world.hold_tx}
    assert "SupplierHeld" in {log.event for log in path.logs}
    graph = path.graph
    by_kind: dict[str, list[GraphNode]] = {}
    for node in graph.nodes:
        by_kind.setdefault(node.kind, []).append(node)
    assert len(by_kind["input"]) == 5 and all(n.status == "ok" for n in by_kind["input"])
    (condition,) = by_kind["condition"]
    assert condition.label == "when: lots_out_of_spec" and "consecutive 5" in condition.detail
    (decision,) = by_kind["decision"]
    assert decision.status == "ok" and decision.data["decision_hash"] == world.decision.record_id
    (action,) = by_kind["action"]
    assert action.label == "action hold_supplier"
    (execution,) = by_kind["execution"]
    assert execution.status == "ok" and execution.data["result"]["tx_hash"] == world.hold_tx
    (tx,) = by_kind["transaction"]
    assert tx.data["tx_hash"] == world.hold_tx
    assert "SupplierQuality.SupplierHeld" in tx.data["events"]
    chain = [by_kind["input"][0].id, condition.id, decision.id, action.id, execution.id, tx.id]
    assert set(itertools.pairwise(chain)) <= edges_of(graph)
    layers = [n["layer"] for n in graph.to_json()["nodes"] if n["id"] in chain]
    assert sorted(layers) == [0, 1, 2, 3, 4, 5]
    json.dumps(graph.to_json())
    assert_picture_of(graph)


def test_a_tampered_input_is_marked_on_the_path(world: World) -> None:
    decision = world.decision
    records = {r.record_id: r for r in world.aster.store().records([i for i, _ in decision.inputs])}
    first = decision.inputs[0][0]
    altered: StoredRecord = replace(records[first], public={**records[first].public, "value": 18.2})
    records[first] = altered
    result = replay(decision, records)
    graph = decision_graph(decision, inputs=records, replay_result=result)
    statuses = {n.id: n.status for n in graph.nodes}
    assert statuses[f"input:{first}"] == "fail"
    assert statuses[f"decision:{decision.decision_hash}"] == "fail"
    decision_node = graph.node(f"decision:{decision.decision_hash}")
    assert decision_node is not None and any("TAMPERED" in line for line in decision_node.detail)
    assert_picture_of(graph)


def test_many_inputs_are_folded_into_one_node(world: World) -> None:
    graph = decision_graph(world.decision, max_inputs_per_leaf=2)
    inputs = [n for n in graph.nodes if n.kind == "input"]
    (more,) = [n for n in graph.nodes if n.kind == "more"]
    assert len(inputs) == 2 and more.label == "… 3 more input(s)"
    assert more.data["record_ids"] == [rid for rid, _ in world.decision.inputs[2:]]
    assert_picture_of(graph)


def test_unknown_decisions(world: World) -> None:
    assert world.explorer.decision("0x" + "00" * 32) is None
    assert world.explorer.decision("not-a-record-id") is None
    assert world.explorer.decision(world.anchored[0].record_id) is None  # not a decision


# -- the picture ---------------------------------------------------------------------------------


def test_hostile_labels_still_make_well_formed_svg() -> None:
    nasty = 'a <script>alert("x")</script> & \x00\x1b \ud800 "quoted" \'single\' 💥'
    graph = Graph(
        "title <b>&",
        (
            GraphNode("a", nasty, "input", detail=(nasty, "x" * 500)),
            GraphNode("b", "b]]>", "decision", status="fail"),
            GraphNode("c", "cycle", "unknown-kind", status="warn", href="/explorer/tx?x=1&y=<2>"),
        ),
        (GraphEdge("a", "b", nasty), GraphEdge("b", "c"), GraphEdge("c", "b"), GraphEdge("a", "z")),
    )
    svg = render_svg(graph)
    texts = drawn_texts(svg)
    assert any("<script>" in text for text in texts)  # shown as text, never as an element
    root = ET.fromstring(svg.encode())
    (link,) = root.iter(f"{SVG}a")
    assert link.get("href") == "/explorer/tx?x=1&y=<2>"
    linked = render_svg(graph, link=lambda node: f"/n/{node.id}")
    assert len(list(ET.fromstring(linked.encode()).iter(f"{SVG}a"))) == 3


def test_an_empty_graph_is_a_picture_too() -> None:
    texts = drawn_texts(render_svg(Graph("nothing", (), ())))
    assert texts == ["nothing"]
