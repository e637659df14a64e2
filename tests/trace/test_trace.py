"""The trace across three members: the cell lot's low-temperature fade traced to the refiner's
crystallizer PID gain drift, with proofs; a member down; members serving data that does not
verify; the trace routes' access rules; nothing private in any output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from node.api.verification import FAILED, UNAVAILABLE, VERIFIED
from node.chain.localnode import free_port
from node.trace import open_tracer, trace_json
from node.trace.anomalies import INSPECTION_FAILED, PARAMETER_DRIFT, RULE_FIRING
from node.trace.bundles import BundleSource
from node.trace.model import Trace
from node.trace.render import trace_graph, trace_text
from tests.trace.world import (
    CATHODE,
    CELL_LOT,
    COATER,
    CRYSTALLIZER,
    ITEM_1,
    ITEM_2,
    KILN,
    LITHIUM,
    SECRETS,
    SEPARATOR,
    World,
    proxy,
    serve,
)


def _trace(world: World, item: str = ITEM_1, endpoints: dict[str, str] | None = None) -> Trace:
    tracer = open_tracer(world.nodes["cygnus"], world.tokens, endpoints=endpoints)
    try:
        return tracer.trace(item)
    finally:
        tracer.close()


def _node(trace: Trace, identifier: str) -> Any:
    return next(n for n in trace.nodes if n.id == identifier)


def _top(trace: Trace) -> Any:
    return trace.anomaly(trace.candidates[0].anomaly)


@pytest.fixture(scope="module")
def traced(world: World) -> Trace:
    return _trace(world)


def test_the_fade_is_traced_to_the_crystallizer_gain_drift_at_its_millisecond(
    world: World, traced: Trace
) -> None:
    top = _top(traced)
    assert top.kind == PARAMETER_DRIFT
    assert traced.node(top.node).id == CRYSTALLIZER
    assert top.owner.member == world.addresses["rhea"].lower()
    assert top.owner.name == "Rhea Lithium"
    assert top.details["parameter"] == "pid_kp"
    assert top.details["device"] == "4098765CRYST-3/pid"
    assert top.at_us == world.drift_onset_us
    assert top.details["onsetAtMs"] == world.drift_onset_us // 1000
    assert world.drift_onset_us % 1000 == 0 and (world.drift_onset_us // 1000) % 1000 != 0
    assert top.check.status == VERIFIED
    assert "recomputed here" in top.check.detail
    explanation = traced.candidates[0].explanation
    assert "drift" in explanation and "before lot LI-1 was made" in explanation
    assert "lot CATH-7" in explanation and "verified against the chain" in explanation
    # the symptom explained: the cell lot's failed low-temperature retention
    [symptom] = traced.symptoms
    assert traced.anomaly(symptom).kind == INSPECTION_FAILED
    assert traced.node(traced.anomaly(symptom).node).id == CELL_LOT


def test_the_genealogy_crosses_three_members_each_part_verified_with_its_owner(
    world: World, traced: Trace
) -> None:
    path = [ITEM_1, CELL_LOT, CATHODE, LITHIUM, CRYSTALLIZER]
    owners = ["cygnus", "cygnus", "sierra", "rhea", "rhea"]
    for depth, (identifier, owner) in enumerate(zip(path, owners, strict=True)):
        node = _node(traced, identifier)
        assert node.depth == depth, identifier
        assert node.owner.member == world.addresses[owner].lower(), identifier
        assert node.check.status == VERIFIED, (identifier, node.check)
        if depth:
            assert node.uid in traced.node(_node(traced, path[depth - 1]).uid).children
    assert _node(traced, CATHODE).made_at_us is not None
    kinds = {n.id: n.kind for n in traced.nodes}
    assert kinds[KILN] == kinds[COATER] == "equipment"
    assert kinds["calcination"] == "process_step"
    statuses = {m.name: m.status for m in traced.members}
    assert statuses == {
        "Cygnus Cells": "ok",
        "Sierra Cathodes": "ok",
        "Rhea Lithium": "ok",
        "Delta Separators": UNAVAILABLE,
    }


def test_every_anomaly_on_the_path_is_found_and_ranked_with_reasons(
    world: World, traced: Trace
) -> None:
    found = {(a.kind, traced.node(a.node).id) for a in traced.anomalies}
    assert (PARAMETER_DRIFT, CRYSTALLIZER) in found
    assert ("quarantined_readings", CRYSTALLIZER) in found
    assert (RULE_FIRING, KILN) in found
    assert (INSPECTION_FAILED, CATHODE) in found
    assert ("incoming_out_of_spec", CATHODE) in found
    assert ("supplier_hold", CATHODE) in found and ("corrective_action_open", CATHODE) in found
    # the gain and the temperature it governs, on the same readings from the same one on; no
    # drift on the steady crystallizer's lot, the kiln's or the coater's noise
    drifts = [a for a in traced.anomalies if a.kind == PARAMETER_DRIFT]
    assert sorted(a.details["parameter"] for a in drifts) == ["pid_kp", "temperature"]
    assert {a.at_us for a in drifts} == {world.drift_onset_us}
    ranked = [traced.anomaly(c.anomaly) for c in traced.candidates]
    assert [a.kind for a in ranked[:3]] == [PARAMETER_DRIFT, PARAMETER_DRIFT, RULE_FIRING]
    assert [a.details["parameter"] for a in ranked[:2]] == ["pid_kp", "temperature"]
    assert any("a setting held constant before" in r for r in traced.candidates[0].reasons)
    assert not any("a setting held constant" in r for r in traced.candidates[1].reasons)
    assert len(traced.candidates) == len(traced.anomalies) - len(traced.symptoms)
    for candidate in traced.candidates:
        assert (
            candidate.reasons
            and str(candidate.score).rstrip("0").rstrip(".") in (candidate.explanation)
        ) or f"Score {candidate.score:g}" in candidate.explanation
    quarantined = next(a for a in traced.anomalies if a.kind == "quarantined_readings")
    assert quarantined.check.status == "unanchored"
    holds = [a for a in traced.anomalies if a.kind == "supplier_hold"]
    assert holds[0].check.status == VERIFIED and "SupplierQuality" in holds[0].check.detail
    follows = [c for c in traced.candidates if traced.anomaly(c.anomaly).kind == "supplier_hold"]
    assert any("not its cause" in r for r in follows[0].reasons)


def test_an_item_with_its_own_genealogy_record_traces_the_same_way(world: World) -> None:
    trace = _trace(world, ITEM_2)
    assert _node(trace, ITEM_2).check.status == VERIFIED
    assert _node(trace, CELL_LOT).kind == "parent_lot"
    top = _top(trace)
    assert top.kind == PARAMETER_DRIFT and top.at_us == world.drift_onset_us


def test_the_member_whose_node_is_down_is_reported_and_the_trace_goes_on(traced: Trace) -> None:
    separator = _node(traced, SEPARATOR)
    assert separator.check.status == VERIFIED  # Cygnus' own record names it
    assert separator.upstream is not None and separator.upstream.status == UNAVAILABLE
    assert "Delta Separators's node" in separator.upstream.detail
    assert "did not answer" in separator.upstream.detail
    unverified = dict(traced.unverified)
    assert unverified[f"upstream of {SEPARATOR}"].status == UNAVAILABLE


def test_a_supplier_down_leaves_its_part_unavailable_and_the_rest_traced(world: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    trace = _trace(world, endpoints={world.addresses["sierra"]: dead})
    cathode = _node(trace, CATHODE)
    assert cathode.upstream is not None and cathode.upstream.status == UNAVAILABLE
    assert "Sierra Cathodes's node at" in cathode.upstream.detail
    assert "did not answer" in cathode.upstream.detail
    assert LITHIUM not in {n.id for n in trace.nodes}  # beyond the missing part
    kinds = {a.kind for a in trace.anomalies}
    assert "incoming_out_of_spec" in kinds and "supplier_hold" in kinds  # own store, chain
    assert trace.symptoms and trace.candidates
    assert any(what == f"upstream of {CATHODE}" for what, _ in trace.unverified)
    assert {m.name: m.status for m in trace.members}["Sierra Cathodes"] == UNAVAILABLE


@pytest.fixture
def proxied(world: World) -> Iterator[dict[str, Any]]:
    """A proxy in front of a member, with a rewrite chosen by the test."""
    state: dict[str, Any] = {"rewrite": lambda _path, body: body}
    servers = []

    def start(target: str) -> str:
        port = free_port()
        app = proxy(target, lambda path, body: state["rewrite"](path, body))
        servers.append(serve(app, port))
        return f"http://127.0.0.1:{port}"

    state["start"] = start
    try:
        yield state
    finally:
        for server in servers:
            server.should_exit = True


def _records_of_type(body: dict[str, Any], record_type: str) -> list[dict[str, Any]]:
    return [
        entry["bundle"]["record"]
        for entry in body.get("records", {}).values()
        if "bundle" in entry and entry["bundle"]["record"]["type"] == record_type
    ]


def test_a_tampered_genealogy_record_is_marked_and_the_trace_goes_on(
    world: World, proxied: dict[str, Any]
) -> None:
    def rewrite(path: str, body: dict[str, Any]) -> dict[str, Any]:
        for record in _records_of_type(body, "genealogy"):
            if record["fields"]["output"] == CATHODE:
                record["fields"]["process_step"] = "sintering"
        return body

    proxied["rewrite"] = rewrite
    url = proxied["start"](world.urls["sierra"])
    trace = _trace(world, endpoints={world.addresses["sierra"]: url})
    cathode = _node(trace, CATHODE)
    assert cathode.check.status == FAILED
    assert "altered" in cathode.check.detail
    assert cathode.upstream is not None and cathode.upstream.status == FAILED
    # the rest goes on: the refiner's part is fetched and verified, the drift still found
    assert _node(trace, LITHIUM).check.status == VERIFIED
    assert _top(trace).kind == PARAMETER_DRIFT
    assert _top(trace).check.status == VERIFIED
    assert any(what == f"parent_lot {CATHODE}" or CATHODE in what for what, _ in trace.unverified)


def test_drift_evidence_that_does_not_verify_fails_the_drift_and_drops_its_rank(
    world: World, proxied: dict[str, Any]
) -> None:
    def rewrite(path: str, body: dict[str, Any]) -> dict[str, Any]:
        for anomaly in body.get("anomalies", []):
            if anomaly["kind"] == PARAMETER_DRIFT:
                first = anomaly["details"]["evidence"]["baseline"][0]
                record = body["records"][first]["bundle"]["record"]
                record["fields"]["points"][0]["v"] = 2.5
        return body

    proxied["rewrite"] = rewrite
    url = proxied["start"](world.urls["rhea"])
    trace = _trace(world, endpoints={world.addresses["rhea"]: url})
    drift = next(a for a in trace.anomalies if a.kind == PARAMETER_DRIFT)
    assert drift.check.status == FAILED
    assert "altered" in drift.check.detail
    rank = next(c for c in trace.candidates if c.anomaly == drift.uid)
    assert rank.rank > 1 and any("does not verify" in r for r in rank.reasons)
    assert _top(trace).kind == RULE_FIRING  # the best verified candidate left


def test_an_attestation_by_another_members_oracle_is_refused(
    world: World, proxied: dict[str, Any]
) -> None:
    rhea = world.nodes["rhea"].store()
    setpoint = next(r.record_id for r in _all_records(rhea) if r.record_type == "setpoint")
    foreign = BundleSource(rhea).attestations([setpoint])[setpoint]

    def rewrite(path: str, body: dict[str, Any]) -> dict[str, Any]:
        for entry in body.get("records", {}).values():
            if "attestation" in entry and entry["bundle"]["record"]["type"] == "inspection":
                entry["attestation"] = foreign
        return body

    proxied["rewrite"] = rewrite
    url = proxied["start"](world.urls["sierra"])
    trace = _trace(world, endpoints={world.addresses["sierra"]: url})
    failed = next(
        a
        for a in trace.anomalies
        if a.kind == INSPECTION_FAILED and trace.node(a.node).id == CATHODE
    )
    assert failed.check.status == FAILED
    assert world.addresses["rhea"].lower() in failed.check.detail.lower()
    assert "attestation" in failed.check.detail


def test_a_node_answering_as_another_member_is_refused(
    world: World, proxied: dict[str, Any]
) -> None:
    proxied["rewrite"] = lambda path, body: {**body, "member": world.addresses["rhea"]}
    url = proxied["start"](world.urls["sierra"])
    trace = _trace(world, endpoints={world.addresses["sierra"]: url})
    cathode = _node(trace, CATHODE)
    assert cathode.upstream is not None and cathode.upstream.status == FAILED
    assert "answered as" in cathode.upstream.detail


def _all_records(store: Any) -> list[Any]:
    from sqlalchemy import select

    from node.offchain.store import RECORDS, stored_record

    with store.transaction() as connection:
        return [stored_record(r._mapping) for r in connection.execute(select(RECORDS)).all()]


def test_no_private_data_in_any_trace_output(world: World, traced: Trace) -> None:
    outputs = [
        orjson.dumps(trace_json(traced)).decode(),
        "\n".join(trace_text(traced, evidence=True)),
        repr(traced),
        repr(trace_graph(traced)),
    ]
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text
        for field in ("operator_id", "inspector_id", "biometric_template", "analyst_id"):
            assert field not in text


def test_the_trace_reports_its_time(world: World, traced: Trace) -> None:
    again = _trace(world)
    assert again.elapsed_ms > 0
    assert trace_json(again)["elapsedMs"] == pytest.approx(again.elapsed_ms, abs=0.01)


def test_a_window_starting_after_the_onset_is_extended_back_to_find_it(world: World) -> None:
    from node.api.access import Tier
    from node.trace.index import TraceIndex
    from node.trace.part import AnomalyQuery, PartReader, Window

    rhea = world.nodes["rhea"]
    reader = PartReader(rhea.store(), rhea.address, TraceIndex(rhea.store()))
    onset = world.drift_onset_us
    hour = 3600 * 1_000_000
    window = Window(CRYSTALLIZER, onset + hour, onset + 4 * hour)
    answer = reader.anomalies(AnomalyQuery(equipment=(window,)), Tier.LEGITIMATE_INTEREST)
    drifts = [a for a in answer["anomalies"] if a["kind"] == PARAMETER_DRIFT]
    assert {a["details"]["parameter"] for a in drifts} == {"pid_kp", "temperature"}
    [drift] = [a for a in drifts if a["details"]["parameter"] == "pid_kp"]
    assert drift["atUs"] == onset
    assert drift["details"]["windowExtendedUs"] >= hour


@pytest.mark.parametrize(
    "garbage",
    [
        lambda body: {**body, "records": {"0x12": "not a record"}, "unknown": [["a list"]]},
        lambda body: {**body, "records": [1, 2, 3], "implied": "nope", "owners": 7},
        lambda body: {
            **body,
            "records": {
                rid: {"bundle": {**entry["bundle"], "leafValue": 5, "proof": "x"}}
                for rid, entry in body.get("records", {}).items()
                if "bundle" in entry
            },
            "anomalies": [{"kind": 5, "scope": "equipment", "details": []}, "x"],
        },
    ],
)
def test_a_malformed_answer_fails_that_part_and_the_trace_goes_on(
    world: World, proxied: dict[str, Any], garbage: Any
) -> None:
    proxied["rewrite"] = lambda path, body: garbage(body)
    url = proxied["start"](world.urls["sierra"])
    trace = _trace(world, endpoints={world.addresses["sierra"]: url})
    cathode = _node(trace, CATHODE)
    assert cathode.upstream is not None and cathode.upstream.status == FAILED
    assert trace.symptoms  # Cygnus' own part is there
    assert any(a.kind == "incoming_out_of_spec" for a in trace.anomalies)
