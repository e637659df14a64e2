"""The metrics' definitions on facts built by hand, against values computed by hand."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from node.api.pages_resilience import ResilienceModel
from node.errors import ConfigError
from node.resilience import (
    ChainEvent,
    DecisionFact,
    LotResult,
    MeasurementValue,
    ParameterChange,
    PlanReview,
    ResilienceFacts,
    ResiliencePolicy,
    TaskTimes,
    build_report,
    disturbances,
    load_policy,
    percentile,
    plan_freshness,
    task_handling,
)
from node.resilience.recovery import recovery_groups
from node.resilience.suppliers import cpk_of, ppm_trend, rate_suppliers

S = 1_000_000  # µs per second
HOUR = 3600 * S
DAY = 86_400 * S
T0 = 1_790_000_000 * S  # 2026-09-21
ME = "0x" + "aa" * 20
OTHER = "0x" + "cc" * 20
SUPPLIER = "0xAbCdEf0123456789aBCdef0123456789ABcdEF01"
LINE = "0x" + "11" * 32
_IDS = itertools.count(1)
POLICY = ResiliencePolicy(baseline_subgroups=2, cpk_window_lots=4)
CV_CONDITION = {
    "metric": "cv",
    "quantity": "thickness",
    "devices": ["gauge-*"],
    "per_device": False,
    "subgroup_size": 3,
    "threshold": {"comparator": "above", "value": 0.8, "unit": "P1"},
    "consecutive": 3,
}


def event(name: str, at_s: float, block: int, **args: Any) -> ChainEvent:
    return ChainEvent(name, args, T0 + int(at_s * S), block, f"0x{block:064x}", 0)


def decision(
    record: str, at_s: float, action: Mapping[str, Any], condition: Mapping[str, Any] | None = None
) -> DecisionFact:
    record_id = "0x" + record * 32
    return DecisionFact(record_id, f"rule-{record}", T0 + int(at_s * S), action, condition or {})


def lot(
    supplier: str,
    name: str,
    value: float,
    at_us: int,
    *,
    anchored: bool = True,
    traced: bool = True,
    part: str = "can",
) -> LotResult:
    return LotResult(
        f"0x{next(_IDS):064x}",
        supplier,
        part,
        "diameter",
        name,
        value,
        1.0,
        2.0,
        at_us,
        anchored,
        traced,
    )


# -- distributions ---------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None


# -- the recovery cycle ----------------------------------------------------------------------------


def recovery_facts() -> ResilienceFacts:
    stop_rule = decision("d1", 90, {"kind": "stop_line", "line": "coater", "reason": "cold"})
    cv_rule = decision("d2", 3000, {"kind": "compensate", "line": "coater"}, CV_CONDITION)
    task_rule = decision("d3", 6000, {"kind": "task", "assignee": "process-engineer"})
    lost = decision("d4", 7000, {"kind": "compensate", "line": "coater"})
    events = [
        event("LineRegistered", 0, 1, line_id=LINE, owner=ME),
        event("LineStopped", 100, 10, line_id=LINE, by=ME, reason_hash=stop_rule.record_id),
        event("SupplierHeld", 200, 11, hold_id=1, customer=ME, supplier=SUPPLIER, case_id=1,
              reason_hash="0x" + "ee" * 32),
        event("LineRestarted", 1000, 12, line_id=LINE, by=ME, reason_hash="0x" + "00" * 32),
        event("LineStopped", 2000, 13, line_id=LINE, by=ME, reason_hash="0x" + "01" * 32),
        event("LineRestarted", 2600, 14, line_id=LINE, by=ME, reason_hash="0x" + "02" * 32),
        event("CompensationRequested", 3010, 15, request_id=1, line_id=LINE,
              parameter_id="0x" + "22" * 32, delta=-50, decision_hash=cv_rule.record_id),
        event("CompensationAcknowledged", 3020, 16, request_id=1, line_id=LINE,
              parameter_id="0x" + "22" * 32, read_back=950, offset=-50,
              detail_hash="0x" + "0" * 64),
        event("CompensationRequested", 4000, 17, request_id=2, line_id=LINE,
              parameter_id="0x" + "22" * 32, delta=50, decision_hash="0x" + "99" * 32),
        event("CompensationFailed", 4005, 18, request_id=2, line_id=LINE,
              parameter_id="0x" + "22" * 32, read_back=0, detail_hash="0x" + "0" * 64),
        event("LineStopped", 5000, 19, line_id=LINE, by=ME, reason_hash="0x" + "03" * 32),
        event("HoldReleased", 200 + 86_400, 20, hold_id=1, customer=ME, supplier=SUPPLIER,
              by_closure=True, justification_hash="0x" + "0" * 64),
        # another customer's hold, and another member's line: not this member's disturbances
        event("SupplierHeld", 300, 21, hold_id=2, customer=OTHER, supplier=SUPPLIER, case_id=2,
              reason_hash="0x" + "ee" * 32),
        event("LineStopped", 300, 22, line_id="0x" + "44" * 32, by=OTHER,
              reason_hash="0x" + "0" * 64),
    ]  # fmt: skip

    def gauge(at_s: float, value: float, n: int) -> MeasurementValue:
        return MeasurementValue(
            f"0x{n:064x}", "gauge-1", "thickness", value, "4H", T0 + int(at_s * S)
        )

    measurements = [gauge(3015, 100.0, 0)]  # before the acknowledgement: not counted
    measurements += [gauge(3030 + i, v, 1 + i) for i, v in enumerate((100, 110, 90))]  # CV 10 %
    measurements += [gauge(3040 + i, v, 4 + i) for i, v in enumerate((100, 100.1, 99.9))]
    measurements += [gauge(3050 + i, v, 7 + i) for i, v in enumerate((100, 100.2, 99.8))]
    measurements += [MeasurementValue("0x" + "f" * 64, "other-1", "thickness", 1, "4H", T0)]
    lots = [
        lot(SUPPLIER, "L1", 1.5, T0 + 10 * S),
        lot(SUPPLIER, "L2", 2.5, T0 + 20 * S),  # out: the run starts
        lot(SUPPLIER, "L3", 2.6, T0 + 30 * S),
        lot(SUPPLIER, "L4", 1.5, T0 + 40 * S),
        lot(SUPPLIER, "L5", 1.4, T0 + 50 * S),  # the 2nd in spec in a row: recovered
    ]
    tasks = [
        TaskTimes(f"improvement_task:{task_rule.record_id}", "improvement_task",
                  T0 + 6001 * S, T0 + 6001 * S + 7200 * S),
    ]  # fmt: skip
    return ResilienceFacts(
        member=ME,
        lots=tuple(lots),
        decisions=(stop_rule, cv_rule, task_rule, lost),
        measurements=tuple(measurements),
        events=tuple(events),
        tasks=tuple(tasks),
        line_names={LINE: "coater"},
        names={SUPPLIER.lower(): "Borealis Cells"},
    )


def test_each_disturbance_runs_from_its_anomaly_to_back_to_baseline() -> None:
    now = T0 + 10 * DAY
    found = disturbances(recovery_facts(), POLICY, now)
    summary = [(d.kind, d.scope, d.status, d.duration_s(now)) for d in found]
    supplier = SUPPLIER.lower()
    assert summary == [
        ("out_of_spec", supplier, "recovered", 30.0),  # L2 (20 s) to L5 (50 s)
        ("line_stop", LINE, "recovered", 910.0),  # decision at 90 s, restarted at 1000 s
        ("supplier_hold", supplier, "recovered", 86_400.0),
        ("line_stop", LINE, "recovered", 600.0),
        # decision at 3000 s; acknowledged at 3020 s, then the subgroups at 3030 s (CV 10 %,
        # out), 3040 s and 3050 s (in): back in control at the last value, 3052 s
        ("compensation", LINE, "recovered", 52.0),
        ("compensation", LINE, "failed", 10 * 86_400 - 4000.0),
        ("line_stop", LINE, "open", 10 * 86_400 - 5000.0),
        ("rule_task", "rule-d3", "recovered", 7201.0),
        ("compensation", LINE, "open", 10 * 86_400 - 7000.0),  # no chain event carries d4
    ]
    compensation = found[4]
    assert [e.label for e in compensation.evidence][:3] == [
        "decision rule-d2",
        "CompensationRequested",
        "CompensationAcknowledged",
    ]
    assert len([e for e in compensation.evidence if e.kind == "record"]) == 1 + 6
    assert found[1].label == "coater" and "stopped by rule rule-d1" in found[1].detail
    assert "no chain event" in found[-1].detail


def test_recovery_is_summarised_per_line_and_supplier() -> None:
    now = T0 + 10 * DAY
    groups = {(g.scope_kind, g.scope): g for g in recovery_groups(
        disturbances(recovery_facts(), POLICY, now), now)}  # fmt: skip
    line = groups[("line", LINE)]
    assert line.recovered.count == 3 and line.open == 3 and line.failed == 1
    assert line.recovered.median == 600.0
    assert line.recovered.p90 == pytest.approx(600 + 0.8 * 310)  # of 52, 600, 910
    assert line.recovered.mean == pytest.approx((52 + 600 + 910) / 3)
    assert line.oldest_open_s == 10 * 86_400 - 4000.0
    supplier = groups[("supplier", SUPPLIER.lower())]
    assert supplier.label == "Borealis Cells"
    assert supplier.recovered.median == pytest.approx((30 + 86_400) / 2)
    assert supplier.recovered.p90 == pytest.approx(30 + 0.9 * 86_370)
    assert supplier.open == 0 and dict(supplier.kinds) == {"out_of_spec": 1, "supplier_hold": 1}


def test_a_compensation_stays_open_until_enough_subgroups_are_in_control() -> None:
    facts = recovery_facts()
    strict = ResiliencePolicy(baseline_subgroups=3, cpk_window_lots=4)
    (compensation,) = [
        d for d in disturbances(facts, strict, T0 + DAY) if d.kind == "compensation" and
        d.recovered_at_us is None and "acknowledged" in d.detail
    ]  # fmt: skip
    assert compensation.status == "open"
    assert "awaiting 3 in-control subgroup(s) (2 so far)" in compensation.detail


# -- suppliers -------------------------------------------------------------------------------------


def test_cpk_is_the_individuals_capability() -> None:
    sigma = 0.2 / 1.128  # MR-bar / d2
    assert cpk_of([1.4, 1.6, 1.4, 1.6], 1.0, 2.0) == pytest.approx(0.5 / (3 * sigma))
    assert cpk_of([1.5, 1.5, 1.5], 1.0, 2.0) is None  # no spread
    assert cpk_of([1.5], 1.0, 2.0) is None


def test_high_risk_suppliers_are_held_incapable_defective_or_late() -> None:
    now = T0 + 50 * DAY
    a, b, c, d, e = (f"0x{n:040x}" for n in range(1, 6))
    lots = [lot(b, f"B{i}", v, now - DAY + i * S) for i, v in enumerate((1.4, 1.6, 1.4, 1.6))]
    lots += [lot(c, f"C{i}", v, now - DAY + i * S) for i, v in enumerate((1.5, 2.5, 1.5))]
    lots += [lot(d, f"D{i}", v, now - DAY + i * S) for i, v in enumerate((1.5, 1.52, 1.5, 1.52))]
    lots += [lot(d, "D-old", 9.0, now - 100 * DAY)]  # out of spec, but outside the 90 days
    events = [
        event("SupplierHeld", 45 * 86_400, 1, hold_id=1, customer=ME, supplier=a, case_id=1,
              reason_hash="0x"),
        event("CaseOpened", 45 * 86_400, 1, case_id=1, customer=ME, supplier=a, hold_id=1,
              problem_hash="0x"),
        event("CaseOpened", 0, 2, case_id=2, customer=ME, supplier=d, hold_id=0, problem_hash="0x"),
        event("CaseClosed", 5 * 86_400, 3, case_id=2, customer=ME, supplier=d, hold_id=0),
        event("CaseOpened", 10 * 86_400, 4, case_id=3, customer=ME, supplier=e, hold_id=0,
              problem_hash="0x"),
    ]  # fmt: skip
    facts = ResilienceFacts(member=ME, lots=tuple(lots), events=tuple(events))
    ratings = {r.supplier: r for r in rate_suppliers(facts, POLICY, now)}
    assert ratings[a].reasons == ("on hold",)
    assert ratings[b].latest_cpk == pytest.approx(0.5 * 1.128 / 0.6)
    assert ratings[b].reasons == (f"Cpk {0.5 * 1.128 / 0.6:.2f} < 1",)
    assert ratings[c].latest_cpk is None  # 3 lots: no window of 4
    assert ratings[c].ppm == pytest.approx(1e6 / 3)
    assert ratings[c].reasons == ("PPM 333,333 > 5,000",)
    assert not ratings[d].high_risk and ratings[d].ppm == 0.0 and ratings[d].lots_in_window == 4
    assert ratings[e].overdue_cases == (3,)  # open 40 days > 30
    report = build_report(facts, POLICY, now)
    assert report.high_risk_share == pytest.approx(4 / 5)
    assert {s.supplier for s in report.high_risk} == {a, b, c, e}


def test_the_radar_normalises_each_axis_and_keeps_its_raw_value() -> None:
    now = T0 + 30 * DAY
    values = (1.4, 1.6, 1.4, 1.6, 1.45, 1.55, 1.45, 1.55)  # two windows of 4
    lots = [
        lot(SUPPLIER, f"L{i}", v, T0 + i * HOUR, anchored=i < 7, traced=i < 6)
        for i, v in enumerate(values)
    ]
    changes = [
        ParameterChange("0x01", SUPPLIER, "kiln-1", "temp", T0 + HOUR // 2, T0 + 36 * HOUR // 60),
        ParameterChange("0x02", SUPPLIER, "kiln-1", "temp", T0 + 5 * HOUR // 2, T0 + 7 * HOUR // 2),
        ParameterChange("0x03", SUPPLIER, "kiln-1", "temp", T0 + 100 * HOUR, T0 + 101 * HOUR),
        ParameterChange("0x04", SUPPLIER, "kiln-1", "temp", T0 + 3 * HOUR, None),
    ]  # fmt: skip
    events = [
        event("CaseOpened", 0, 1, case_id=1, customer=ME, supplier=SUPPLIER, hold_id=0,
              problem_hash="0x"),
        event("CaseClosed", 10 * 86_400, 2, case_id=1, customer=ME, supplier=SUPPLIER, hold_id=0),
        event("CaseOpened", 10 * 86_400, 3, case_id=2, customer=ME, supplier=SUPPLIER, hold_id=0,
              problem_hash="0x"),
    ]  # fmt: skip
    facts = ResilienceFacts(
        member=ME, lots=tuple(lots), events=tuple(events), changes=tuple(changes)
    )
    (rating,) = rate_suppliers(facts, POLICY, now)
    axes = {a.name: a for a in rating.axes}
    cpk1, cpk2 = 0.5 * 1.128 / 0.6, 0.5 * 1.128 / 0.3
    variance = ((cpk2 - cpk1) / 2) ** 2
    assert axes["cpk_stability"].raw == pytest.approx(variance)
    assert axes["cpk_stability"].score == pytest.approx(1 - variance / 0.25)
    assert axes["ppm"].raw == 0.0 and axes["ppm"].score == 1.0
    assert axes["closure_time"].raw == pytest.approx(15.0)  # 10 days closed, 20 days open so far
    assert axes["closure_time"].score == pytest.approx(0.75)
    assert axes["traceability"].raw == pytest.approx(6 / 8)
    assert axes["change_management"].raw == pytest.approx(2 / 4)
    assert rating.latest_cpk == pytest.approx(cpk2)


def test_a_supplier_without_data_has_no_scores() -> None:
    events = [event("SupplierHeld", 0, 1, hold_id=1, customer=ME, supplier=SUPPLIER, case_id=1,
                    reason_hash="0x")]  # fmt: skip
    (rating,) = rate_suppliers(ResilienceFacts(member=ME, events=tuple(events)), POLICY, T0)
    assert {a.name: a.score for a in rating.axes} == {
        "cpk_stability": None,
        "ppm": None,
        "closure_time": None,
        "traceability": None,
        "change_management": None,
    }
    assert rating.on_hold and rating.reasons == ("on hold",)


def test_the_ppm_trend_is_per_calendar_month_per_supplier_and_overall() -> None:
    march = 1_773_532_800 * S  # 2026-03-15 00:00 UTC
    february = march - 20 * DAY
    a, b = SUPPLIER, OTHER
    lots = [lot(a, f"A{i}", v, february + i * S) for i, v in enumerate((1.5, 2.5, 1.5, 1.5))]
    lots += [lot(b, f"B{i}", 1.5, february + i * S) for i in range(2)]
    lots += [lot(a, f"A{i}", 1.5, march - HOUR + i * S) for i in range(5, 7)]
    months, overall, suppliers = ppm_trend(lots, {OTHER: "Cobalt"}, march, 3)
    assert months == ["2026-01", "2026-02", "2026-03"]
    assert [(p.ppm, p.values, p.out_of_spec) for p in overall] == [
        (None, 0, 0),
        (pytest.approx(1e6 / 6), 6, 1),
        (0.0, 2, 0),
    ]
    trend = {t.supplier: t for t in suppliers}
    assert [p.ppm for p in trend[a.lower()].points] == [None, 250_000.0, 0.0]
    assert [p.ppm for p in trend[b].points] == [None, 0.0, None]
    assert trend[b].label == "Cobalt"


# -- tasks and plans -------------------------------------------------------------------------------


def test_task_handling_is_closed_minus_created() -> None:
    now = T0 + DAY
    tasks = [
        TaskTimes("a", "supplier_task", T0, T0 + 2 * HOUR),
        TaskTimes("b", "supplier_task", T0, T0 + 4 * HOUR),
        TaskTimes("c", "improvement_task", T0, T0 + 12 * HOUR),
        TaskTimes("d", "supplier_task", T0, None, T0 + HOUR),  # open, overdue
        TaskTimes("e", "improvement_task", T0, None, None),  # open, no due time
    ]
    summary, kinds = task_handling(tasks, now)
    assert summary.handling_hours.mean == pytest.approx(6.0)
    assert summary.handling_hours.median == 4.0
    assert summary.handling_hours.p90 == pytest.approx(4 + 0.8 * 8)
    assert (summary.open, summary.overdue, summary.count) == (2, 1, 5)
    by_kind = {k.kind: k for k in kinds}
    assert by_kind["supplier_task"].handling_hours.mean == pytest.approx(3.0)
    assert (by_kind["supplier_task"].open, by_kind["supplier_task"].overdue) == (1, 1)
    assert by_kind["improvement_task"].handling_hours.count == 1


def test_a_plan_is_fresh_while_its_last_review_is_young_enough() -> None:
    now = T0 + 1000 * DAY
    reviews = [
        PlanReview("0x1", "P1", now - 400 * DAY, "Coater outage"),
        PlanReview("0x2", "P1", now - 100 * DAY, "Coater outage"),  # the latest review counts
        PlanReview("0x3", "P2", now - 400 * DAY),
        PlanReview("0x4", "P3", now - 40 * DAY, review_interval_days=30),
        PlanReview("0x5", "P4", now - 10 * DAY, review_interval_days=30),
    ]
    plans = {p.plan_id: p for p in plan_freshness(reviews, 365, now)}
    assert (plans["P1"].age_days, plans["P1"].fresh, plans["P1"].reviews) == (100.0, True, 2)
    assert plans["P1"].record_id == "0x2"
    assert (plans["P2"].fresh, plans["P2"].max_age_days) == (False, 365)
    assert (plans["P3"].fresh, plans["P3"].max_age_days) == (False, 30)
    assert plans["P4"].fresh
    assert plan_freshness(reviews, 365, now)[0].plan_id == "P3"  # the stalest first


# -- the report and the policy ---------------------------------------------------------------------


def test_the_report_json_is_what_the_api_documents() -> None:
    facts = recovery_facts()
    report = build_report(facts, POLICY, T0 + 10 * DAY, "Aster Motors")
    document = report.as_json()
    ResilienceModel.model_validate(document)
    assert document["qrrc"]["computedFrom"]["LineStopped events"] == 4
    assert document["qrrc"]["computedFrom"]["decision records"] == 4
    assert document["policy"]["baselineSubgroups"] == 2
    assert document["highRiskSuppliers"]["total"] == 1
    empty = build_report(ResilienceFacts(), ResiliencePolicy(), T0).as_json()
    ResilienceModel.model_validate(empty)
    assert empty["highRiskSuppliers"]["share"] is None
    assert empty["taskHandling"]["all"]["meanHours"] is None
    assert len(empty["ppmTrend"]["months"]) == 12


def test_a_policy_file_sets_thresholds_and_refuses_mistakes(tmp_path: Any) -> None:
    path = tmp_path / "resilience.toml"
    assert load_policy(path) == ResiliencePolicy()
    path.write_text("min_cpk = 1\nbaseline_subgroups = 5\n", encoding="utf-8")
    assert load_policy(path) == ResiliencePolicy(min_cpk=1.0, baseline_subgroups=5)
    path.write_text("[resilience]\nhigh_risk_ppm = 100\n", encoding="utf-8")
    assert load_policy(path).high_risk_ppm == 100.0
    for text, message in (
        ("min_cpc = 1\n", "unknown setting(s) min_cpc"),
        ("baseline_subgroups = 0\n", "baseline_subgroups must be a whole number >= 1"),
        ("cpk_window_lots = 2\n", "cpk_window_lots must be a whole number >= 3"),
        ("ppm_max = 0\n", "ppm_max must be above 0"),
        ("min_cpk = 'high'\n", "min_cpk must be a number"),
        ("min_cpk = \n", "resilience.toml"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_policy(path)


def test_a_per_device_condition_watches_only_its_own_device() -> None:
    facts = recovery_facts()
    per_device = {**CV_CONDITION, "per_device": True}
    decisions = tuple(
        DecisionFact(d.record_id, d.rule_id, d.fired_at_us, d.action, per_device, ("gauge-2",))
        if d.rule_id == "rule-d2"
        else d
        for d in facts.decisions
    )
    found = disturbances(replace(facts, decisions=decisions), POLICY, T0 + DAY)
    (compensation,) = [d for d in found if d.kind == "compensation" and "request 1" in d.detail]
    assert compensation.status == "open"  # gauge-1's subgroups are not gauge-2's
    assert "awaiting 2 in-control subgroup(s) (0 so far)" in compensation.detail
