"""The metrics of a member whose disturbances went through the real contracts (in-process chain):
a compensation acknowledged, a hold released through its 8D, a line stopped and restarted."""

from __future__ import annotations

import pytest

from node.chain.contract_events import of_type
from node.chain.line_control import CompensationAcknowledgedEvent
from node.control.lines import line_id
from node.resilience import Disturbance, ResilienceReport, resilience_report
from tests.resilience.world import COATER_URI, PACKING_URI, ResilienceWorld


def block_time_us(world: ResilienceWorld, number: int) -> int:
    return int(world.aster.connection.w3.eth.get_block(number)["timestamp"]) * 1_000_000


@pytest.fixture(scope="module")
def report(world: ResilienceWorld) -> ResilienceReport:
    return resilience_report(world.aster)


def only(report: ResilienceReport, kind: str) -> Disturbance:
    (found,) = [d for d in report.disturbances if d.kind == kind]
    return found


def test_every_source_was_read(report: ResilienceReport, world: ResilienceWorld) -> None:
    assert {s.name: s.status for s in report.sources} == {
        "store": "ok",
        "LineControl": "ok",
        "SupplierQuality": "ok",
        "CorrectiveAction": "ok",
        "QualityLedger": "ok",
        "Consortium": "ok",
    }
    assert report.member == world.aster.address
    assert report.member_name == "Aster Motors"


def test_a_compensation_recovers_when_the_thickness_is_back_in_control(
    report: ResilienceReport, world: ResilienceWorld
) -> None:
    compensation = only(report, "compensation")
    assert compensation.scope == line_id(COATER_URI) and compensation.label == "coater"
    assert compensation.status == "recovered"
    assert compensation.started_at_us == world.cv_decision.fired_at_us
    assert compensation.recovered_at_us == world.back_in_control_at_us
    assert compensation.recovered_at_us > world.ack_at_us
    labels = [e.label for e in compensation.evidence]
    assert labels[:3] == [
        "decision coating-cv",
        "CompensationRequested",
        "CompensationAcknowledged",
    ]
    assert labels.count("measurement coater-gauge-1") == 15  # three subgroups of five
    (ack,) = of_type(
        world.aster.line_control().events_between(0, "latest", ("CompensationAcknowledged",)),
        CompensationAcknowledgedEvent,
    )
    assert compensation.evidence[2].ref == ack.tx_hash
    assert compensation.evidence[0].ref == world.cv_decision.decision_hash


def test_a_hold_recovers_when_its_8d_closes_and_releases_it(
    report: ResilienceReport, world: ResilienceWorld
) -> None:
    hold = only(report, "supplier_hold")
    assert hold.scope == world.borealis.address.lower() and hold.label == "Borealis Cells"
    assert hold.started_at_us == world.hold_decision.fired_at_us
    assert hold.recovered_at_us == block_time_us(world, world.hold_released_block)
    assert hold.detail == "hold 1 released by its 8D case 1 closed"
    assert [e.label for e in hold.evidence] == [
        "decision incoming-usl",
        "SupplierHeld",
        "HoldReleased",
    ]
    run = only(report, "out_of_spec")
    assert run.status == "recovered" and len(run.evidence) == 5 + 3  # 5 out, then 3 in spec
    assert run.started_at_us == run.evidence[0].at_us
    assert run.recovered_at_us == run.evidence[-1].at_us


def test_a_line_stop_recovers_at_its_restart(
    report: ResilienceReport, world: ResilienceWorld
) -> None:
    stop = only(report, "line_stop")
    assert stop.scope == line_id(PACKING_URI) and stop.label == "packing"
    assert stop.started_at_us == world.stop_decision.fired_at_us
    assert stop.recovered_at_us == block_time_us(world, world.restart_block)
    assert "stopped by rule cold-chain" in stop.detail


def test_the_cycles_are_grouped_per_line_and_supplier(report: ResilienceReport) -> None:
    groups = {(g.scope_kind, g.label): g for g in report.recovery_by_scope}
    assert set(groups) == {("line", "coater"), ("line", "packing"), ("supplier", "Borealis Cells")}
    supplier = groups[("supplier", "Borealis Cells")]
    assert supplier.recovered.count == 2 and supplier.open == 0
    cycles = sorted(
        d.duration_s(report.generated_at_us)
        for d in report.disturbances
        if d.scope_kind == "supplier"
    )
    assert supplier.recovered.median == pytest.approx(sum(cycles) / 2)
    assert not report.open_disturbances


def test_the_supplier_is_rated_from_its_lots_cases_and_setpoints(
    report: ResilienceReport, world: ResilienceWorld
) -> None:
    (rating,) = report.suppliers
    assert rating.supplier == world.borealis.address.lower()
    assert not rating.on_hold  # released
    assert rating.ppm == pytest.approx(5 / 9 * 1e6)  # L1..L5 over the USL of L0..L8
    assert rating.reasons == ("PPM 555,556 > 5,000",)
    assert report.high_risk_share == 1.0
    axes = {a.name: a for a in rating.axes}
    assert axes["cpk_stability"].raw is None  # 9 lots: no window of 10
    assert axes["closure_time"].raw is not None and axes["closure_time"].raw < 1
    assert axes["traceability"].raw == pytest.approx(1 / 9)  # all anchored, L0 in a genealogy
    # one setpoint took effect before lots already received and was recorded after them; the
    # other is recorded before it takes effect
    assert axes["change_management"].raw == 0.5
    assert [e.label for e in rating.evidence].count("SetpointRecorded kiln_c") == 2


def test_tasks_plans_and_the_trend(report: ResilienceReport) -> None:
    assert report.tasks.handling_hours.count == 1
    assert report.tasks.handling_hours.mean == pytest.approx(2.0, abs=0.01)
    assert (report.tasks.open, report.tasks.overdue) == (1, 1)
    assert [(p.plan_id, p.fresh) for p in report.plans] == [
        ("cathode-shortage", False),
        ("coater-outage", True),
    ]
    recent = report.trend_overall[-2:]  # the lots are from the last half hour
    assert sum(p.values for p in recent) == 9 and sum(p.out_of_spec for p in recent) == 5
