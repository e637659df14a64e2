"""A member node killed mid-scenario: the cell maker's ``qnode run`` gets SIGKILL twice, once
while the incoming lots it owes SupplierQuality are being recorded, once while the supplier
answers an 8D discipline in its portal. Meanwhile the other members go on (the refiner stores and
anchors its crystallizer's stream, the supplier's portal takes the report) and the plant's
devices keep publishing. Restarted, the node catches up from its event checkpoint, its action
outbox and its MQTT persistent session: nothing is lost and nothing is done twice, on-chain
(lots, holds, anchors) or in the stores (readings, tasks, ERP calls)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from node.anchoring.proofs import verify_store
from node.chain.contract_events import of_type
from node.chain.supplier_quality import HoldStatus, LotRecordedEvent
from node.control.actions.tasks import KIND_SUPPLIER_TASK, TaskBoard
from node.control.outbox import ActionOutbox, ActionStatus
from node.demo_members import CATHODE, CELLS, REFINER
from node.demo_scenario import SHORT
from node.offchain.store import RECORDS, Store
from node.runtime import Node
from tests.demo.conftest import RunningDemo, start_demo

pytestmark = pytest.mark.timeout(420)
DOWN_S = 4.0


@pytest.fixture
def demo(tmp_path: Path, mqtt_url: str) -> Iterator[RunningDemo]:
    yield from start_demo(tmp_path / "demo", mqtt_url)


def until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def readings(store: Store) -> Counter[tuple[str, int]]:
    """How many times each (device, seq) reading is stored."""
    query = select(RECORDS.c.public_json).where(RECORDS.c.record_type == "measurement")
    with store.transaction() as connection:
        rows = [orjson.loads(row[0]) for row in connection.execute(query)]
    mqtt = (r for r in rows if str(r.get("source", "")).startswith(("mqtt://", "mqtts://")))
    return Counter((r["device"], int(r["seq"])) for r in mqtt)


def anchored_batches(node: Node) -> int:
    return len(node.batcher().batches(["anchored", "confirmed"]))


def test_a_member_node_killed_mid_scenario_catches_up_without_losing_or_repeating_anything(
    demo: RunningDemo,
) -> None:
    consortium = demo.consortium
    scenario = consortium.scenario(SHORT, demo.lines.append)
    cells, cathode, refiner = demo.node(CELLS), demo.node(CATHODE), demo.node(REFINER)
    node = consortium.node_process(CELLS)
    fleet, erp = consortium.fleet, consortium.erp
    assert fleet is not None and erp is not None
    scenario.admit_lab()
    scenario.coating_drift()

    def others_go_on() -> None:
        """While the cell maker's node is down: the refiner stores and anchors, its API and the
        supplier's portal answer, the broker keeps the cell maker's readings."""
        stored, anchored = refiner.store().count_records(), anchored_batches(refiner)
        published = fleet.published_count("cells")
        until(
            lambda: (
                refiner.store().count_records() > stored + 2
                and anchored_batches(refiner) > anchored
            ),
            "the refiner's node to go on storing and anchoring",
        )
        assert fleet.published_count("cells") > published
        assert not node.running

    # 1. killed while the lots over the USL are owed to SupplierQuality
    def on_lot(index: int) -> None:
        if index == 2:
            node.kill()

    scenario.incoming_lots(on_lot=on_lot)
    others_go_on()
    time.sleep(DOWN_S)
    consortium.restart_node(CELLS)
    hold_id, case_id = scenario.wait_hold()

    # 2. killed while the supplier answers D2 in its portal: the event comes while it is down
    def before_submit(discipline: int) -> None:
        if discipline == 2:
            node.kill()

    def after_submit(discipline: int) -> None:
        if discipline == 2:
            others_go_on()
            consortium.restart_node(CELLS)

    scenario.answer_8d(hold_id, case_id, before_submit, after_submit)
    assert node.running and consortium.dead_processes() == []

    # every reading the devices published is stored once, none twice
    fleet.pause()
    published = fleet.published_keys("cells")
    until(lambda: published <= set(readings(cells.store())), "the broker's backlog drained")
    stored = readings(cells.store())
    assert set(stored) == published and set(stored.values()) == {1}
    refined = readings(refiner.store())
    assert set(refined) == fleet.published_keys("refiner") and set(refined.values()) == {1}

    # on-chain: each lot recorded once, one hold, released by its case
    quality = cells.supplier_quality()
    lots = of_type(quality.events_between(0, "latest", ("LotRecorded",)), LotRecordedEvent)
    assert len(lots) == 6 and len({lot.lot_id for lot in lots}) == 6
    assert [lot.consecutive for lot in lots] == [0, 1, 2, 3, 4, 5]
    assert quality.hold_count() == 1 and quality.hold(hold_id).status is HoldStatus.RELEASED
    assert cells.corrective_action().is_closed(case_id)

    # the node's outbox: every action done once; the ERP paused and resumed once
    actions = ActionOutbox(cells.store()).actions()
    assert {a.status for a in actions} == {ActionStatus.DONE}, [
        (a.key, a.status, a.last_error) for a in actions if a.status is not ActionStatus.DONE
    ]
    assert Counter(a.kind for a in actions)["incoming_lot"] == 6
    accepted = [r.key for r in erp.received if r.status < 300 and not r.replayed]
    assert accepted == [f"erp_po_pause:{hold_id}", f"erp_po_release:{hold_id}"]

    # events: each handled once (a review task per discipline, a supplier task per discipline)
    reviews = [t for t in TaskBoard(cells.store()).tasks() if t.key.startswith("review:")]
    assert sorted(int(t.key.split(":")[2][1:]) for t in reviews) == list(range(9))
    supplier_tasks = TaskBoard(cathode.store()).tasks(kind=KIND_SUPPLIER_TASK)
    assert sorted(t.key for t in supplier_tasks) == [
        f"supplier_task:{case_id}:D{d}" for d in range(9)
    ]

    # anchoring: each of the node's batches anchored once, the store matching the chain
    registry = cells.anchor_registry()
    events = registry.anchored_events(0, "latest", member=cells.address)
    assert len(events) == len({e.batch_id for e in events}) == anchored_batches(cells)
    assert verify_store(cells.store(), cells.batcher(), registry) == []
