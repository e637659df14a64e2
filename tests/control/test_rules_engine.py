"""The rule engine on constructed streams: each rule of the example file fires exactly when it
should, re-arms only after its condition cleared, and goes on counting after a restart."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from node.control.decisions import Firing
from node.control.observations import IncomingLot, Inspection, Measurement, Observation, Point
from node.control.outbox import ActionOutbox
from node.control.redlines import RedLines
from node.control.rule_metrics import month_of, previous_month
from node.control.rules import (
    RULE_STATE,
    RuleEngine,
    RuleSet,
    commit_firings,
    load_rules,
    parse_rules,
)
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store, sqlite_url

EXAMPLE = Path(__file__).parent / "data" / "rules-example.yaml"
US = 1_000_000
DAY_US = 86400 * US


def utc_us(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp()) * US  # type: ignore[misc]


OCT_1, NOV_1, DEC_1 = utc_us(2026, 10, 1), utc_us(2026, 11, 1), utc_us(2026, 12, 1)
HIGH = (98.0, 102.0, 100.0, 99.0, 101.0)  # CV 1.58 %
LOW = (100.0, 100.2, 99.8, 100.1, 99.9)  # CV 0.16 %
GAUGE = "coater-1/gauge-1"


class Stream:
    """Observations with fresh ids and hashes, one microsecond-ordered clock."""

    def __init__(self, start_us: int = NOV_1 + DAY_US) -> None:
        self.count = 0
        self.now_us = start_us

    def _ids(self, at_us: int | None) -> tuple[str, str, int]:
        self.count += 1
        self.now_us = at_us if at_us is not None else self.now_us + US
        return f"0x{self.count:064x}", f"0x{10**9 + self.count:064x}", self.now_us

    def measurement(self, device: str, *points: Point, at_us: int | None = None) -> Measurement:
        record_id, digest, at = self._ids(at_us)
        return Measurement(record_id, digest, device, at, tuple(points))

    def thickness(self, values: Sequence[float], device: str = GAUGE) -> list[Measurement]:
        return [self.measurement(device, ("thickness", v, "4H")) for v in values]

    def lot(
        self, supplier: str, value: float, part: str = "P-100", usl: float | None = 10.05
    ) -> IncomingLot:
        record_id, digest, at = self._ids(None)
        return IncomingLot(
            record_id, digest, supplier, part, "diameter", f"L{self.count}", value, "MMT",
            9.95, usl, at,
        )  # fmt: skip

    def inspection(self, process: str, verdict: str, at_us: int) -> Inspection:
        record_id, digest, at = self._ids(at_us)
        return Inspection(record_id, digest, process, verdict, at)

    def month(
        self, start_us: int, total: int, fails: int, process: str = "process-b"
    ) -> list[Inspection]:
        """``total`` inspections an hour apart from ``start_us``, ``fails`` of them failed,
        spread evenly (the rate so far stays close to fails/total)."""
        return [
            self.inspection(process, _verdict(i, total, fails), start_us + i * 3600 * US)
            for i in range(total)
        ]

    def diameters(
        self, spread: float, count: int = 50, device: str = "press-a/1"
    ) -> list[Measurement]:
        """10.0 ± spread, alternating: MR = 2·spread, Cpk = 0.05/(3·2·spread/1.128)."""
        return [
            self.measurement(device, ("diameter", 10.0 + (spread if i % 2 else -spread), "MMT"))
            for i in range(count)
        ]


def _verdict(index: int, total: int, fails: int) -> str:
    return "fail" if (index + 1) * fails // total > index * fails // total else "pass"


@pytest.fixture
def rules() -> RuleSet:
    return load_rules(EXAMPLE)


@pytest.fixture
def engine(rules: RuleSet) -> RuleEngine:
    return RuleEngine(rules, signer="0x00000000000000000000000000000000000000aa")


def fired_ids(firings: Sequence[Firing]) -> list[str]:
    return [f.rule_id for f in firings]


def feed(engine: RuleEngine, observations: Sequence[Observation]) -> list[Firing]:
    return engine.observe(observations)


# -- coating CV -----------------------------------------------------------------------------------


def test_the_subgroups_have_the_cvs_the_tests_assume() -> None:
    assert statistics.stdev(HIGH) / statistics.fmean(HIGH) == pytest.approx(0.0158, abs=1e-4)
    assert statistics.stdev(LOW) / statistics.fmean(LOW) == pytest.approx(0.0016, abs=1e-4)


def test_cv_above_in_two_subgroups_does_not_fire_in_three_does(engine: RuleEngine) -> None:
    stream = Stream()
    assert feed(engine, stream.thickness(HIGH * 2)) == []
    third = stream.thickness(HIGH)
    assert feed(engine, third[:4]) == []
    (firing,) = feed(engine, third[4:])
    decision = firing.decision
    assert firing.rule_id == "coating-cv" and decision.fired_at_us == third[4].observed_at_us
    assert len(decision.inputs) == 15 and decision.inputs[-1] == (
        third[4].record_id,
        third[4].content_hash,
    )
    leaf = decision.computed["conditions"]["when"]
    assert [s["cv"] for s in leaf["subgroups"]] == [pytest.approx(0.0158, abs=1e-4)] * 3
    assert leaf["subgroups"][2]["points"] == [[10, 0], [11, 0], [12, 0], [13, 0], [14, 0]]
    assert decision.thresholds["condition"]["threshold"] == {
        "comparator": "above", "value": 0.8, "unit": "P1",
    }  # fmt: skip
    assert decision.action == {
        "kind": "compensate", "line": "coater-1", "parameter": "blade_pressure",
        "delta": -0.05, "unit": "MMT", "bounds": {"min": -0.1, "max": 0.1},
    }  # fmt: skip
    (request,) = firing.action_requests()
    assert request.kind == "line_compensation"
    assert request.key == f"line_compensation:{decision.decision_hash}"
    assert request.payload == {
        "line": "coater-1", "parameter": "blade_pressure", "delta": -0.05, "unit": "MMT",
        "decision_hash": decision.decision_hash,
    }  # fmt: skip


def test_a_subgroup_within_the_limit_resets_the_count(engine: RuleEngine) -> None:
    stream = Stream()
    assert feed(engine, stream.thickness(HIGH * 2 + LOW + HIGH * 2)) == []
    assert fired_ids(feed(engine, stream.thickness(HIGH))) == ["coating-cv"]


def test_cv_fires_again_only_after_the_condition_cleared(engine: RuleEngine) -> None:
    stream = Stream()
    assert fired_ids(feed(engine, stream.thickness(HIGH * 3))) == ["coating-cv"]
    assert feed(engine, stream.thickness(HIGH * 4)) == []  # still above: no firing per subgroup
    assert feed(engine, stream.thickness(LOW)) == []  # cleared: re-armed
    assert feed(engine, stream.thickness(HIGH * 2)) == []
    assert fired_ids(feed(engine, stream.thickness(HIGH))) == ["coating-cv"]


def test_cv_pools_the_gauges_matching_the_pattern_only(engine: RuleEngine) -> None:
    stream = Stream()
    values = HIGH * 3
    observations: list[Observation] = []
    for index, value in enumerate(values):
        observations.append(stream.thickness([value], f"coater-1/gauge-{index % 2 + 1}")[0])
        observations.append(stream.thickness([LOW[0]], "coater-2/gauge-1")[0])  # another line
        observations.append(stream.measurement(GAUGE, ("temperature", 80.0, "CEL")))
    assert fired_ids(feed(engine, observations)) == ["coating-cv"]


def test_one_measurement_may_complete_several_subgroups(engine: RuleEngine) -> None:
    stream = Stream()
    message = stream.measurement(GAUGE, *(("thickness", v, "4H") for v in HIGH * 3))
    (firing,) = feed(engine, [message])
    assert firing.decision.inputs == ((message.record_id, message.content_hash),)
    points = firing.decision.computed["conditions"]["when"]["subgroups"][2]["points"]
    assert points == [[0, 10], [0, 11], [0, 12], [0, 13], [0, 14]]


def test_cv_values_in_another_unit_are_converted(engine: RuleEngine) -> None:
    stream = Stream()
    observations = stream.thickness(HIGH * 2) + stream.thickness(HIGH[:4])
    observations.append(stream.measurement(GAUGE, ("thickness", HIGH[4] / 1000, "MMT")))
    (firing,) = feed(engine, observations)
    assert firing.decision.computed["conditions"]["when"]["unit"] == "4H"
    assert firing.decision.computed["conditions"]["when"]["subgroups"][2]["cv"] == pytest.approx(
        statistics.stdev(HIGH) / statistics.fmean(HIGH)
    )


# -- incoming lots, and a chained rule ----------------------------------------------------------


def test_four_bad_lots_then_a_good_one_reset_the_count(engine: RuleEngine) -> None:
    stream = Stream()
    assert feed(engine, [stream.lot("acme", 10.06) for _ in range(4)]) == []
    assert feed(engine, [stream.lot("acme", 10.00)]) == []
    assert feed(engine, [stream.lot("acme", 10.06) for _ in range(4)]) == []
    fifth = stream.lot("acme", 10.07)
    firings = feed(engine, [fifth])
    assert fired_ids(firings) == ["incoming-usl", "incoming-usl", "supplier-corrective-task"]
    hold, emit, task = (f.decision for f in firings)
    assert hold.action == {
        "kind": "hold_supplier", "supplier": "acme", "part": "P-100", "characteristic": "diameter",
    }  # fmt: skip
    assert len(hold.inputs) == 5 and hold.inputs[-1] == (fifth.record_id, fifth.content_hash)
    assert [lot["value"] for lot in hold.computed["conditions"]["when"]["lots"]] == [10.06] * 4 + [
        10.07
    ]
    assert emit.action == {"kind": "emit", "signal": "supplier-out-of-spec"}
    assert emit.inputs == hold.inputs and emit.decision_hash != hold.decision_hash
    assert firings[1].action_requests() == ()
    # The chained rule's input is the emitting decision's record.
    assert task.inputs == ((emit.record_id, emit.record_content_hash),)
    assert task.fired_at_us == fifth.observed_at_us
    assert task.action["title"] == "8D with acme: P-100 diameter above USL"
    assert task.action["due_at_us"] == fifth.observed_at_us + 14 * DAY_US
    (request,) = firings[0].action_requests()
    assert request.kind == "supplier_hold"
    assert request.payload == {
        "supplier": "acme", "part": "P-100", "characteristic": "diameter",
        "decision_hash": hold.decision_hash,
    }  # fmt: skip
    (task_request,) = firings[2].action_requests()
    assert task_request.kind == "improvement_task"
    assert set(task_request.payload) == {
        "assignee",
        "title",
        "due_at_us",
        "detail",
        "decision_hash",
    }


def test_a_lot_at_the_usl_is_in_spec_and_lots_without_a_usl_do_not_count(
    engine: RuleEngine,
) -> None:
    stream = Stream()
    lots = [stream.lot("acme", 10.06) for _ in range(4)] + [stream.lot("acme", 10.05)]
    lots += [stream.lot("acme", 10.06) for _ in range(4)] + [stream.lot("acme", 11.0, usl=None)]
    assert feed(engine, lots) == []
    assert fired_ids(feed(engine, [stream.lot("acme", 10.06)]))[0] == "incoming-usl"


def test_lots_are_counted_per_supplier_part_and_characteristic(engine: RuleEngine) -> None:
    stream = Stream()
    observations = []
    for _ in range(4):
        observations += [stream.lot("acme", 10.1), stream.lot("bolt", 10.1),
                         stream.lot("acme", 10.1, part="P-200")]  # fmt: skip
    assert feed(engine, observations) == []
    firings = feed(engine, [stream.lot("bolt", 10.1)])
    assert {f.decision.action.get("supplier") for f in firings} == {"bolt", None}
    assert firings[0].scope == '{"characteristic":"diameter","part":"P-100","supplier":"bolt"}'
    assert feed(engine, [stream.lot("bolt", 10.1)]) == []  # still out: disarmed


# -- Cpk of process A and the defect rate of process B ------------------------------------------


def test_months_are_utc_calendar_months() -> None:
    assert month_of(NOV_1 - 1) == "2026-10"
    assert month_of(NOV_1) == "2026-11"
    assert previous_month("2026-11") == "2026-10"
    assert previous_month("2027-01") == "2026-12"


def test_cpk_and_defect_rate_rise_fire_together(engine: RuleEngine) -> None:
    stream = Stream(OCT_1)
    assert feed(engine, stream.month(OCT_1, 100, 10)) == []  # October: 10 %
    assert feed(engine, stream.diameters(spread=0.015)) == []  # Cpk 0.63, no November yet
    assert feed(engine, stream.month(NOV_1, 60, 6)) == []  # November: 10 %, no rise
    late = NOV_1 + 20 * DAY_US
    assert feed(engine, [stream.inspection("process-b", "fail", late)]) == []  # 7/61: +14.8 %
    second = stream.inspection("process-b", "fail", late + US)
    (firing,) = feed(engine, [second])  # 8/62: +29 %
    decision = firing.decision
    assert firing.rule_id == "capability-and-defects" and firing.scope == "{}"
    assert decision.fired_at_us == second.observed_at_us
    cpk = decision.computed["conditions"]["when.all[0]"]
    rate = decision.computed["conditions"]["when.all[1]"]
    assert cpk["cpk"] == pytest.approx(0.05 / (3 * 0.03 / 1.128))
    assert cpk["inputs"] == [0, 50] and rate["inputs"] == [50, 50 + 100 + 62]
    assert rate["month"] == "2026-11" and rate["previous_month"] == "2026-10"
    assert (rate["inspections"], rate["defects"]) == (62, 8)
    assert (rate["previous_inspections"], rate["previous_defects"]) == (100, 10)
    assert rate["change"] == pytest.approx((8 / 62 - 0.1) / 0.1)
    assert decision.action["assignee"] == "process-engineer"
    assert decision.action["due_at_us"] == second.observed_at_us + 7 * DAY_US
    (request,) = firing.action_requests()
    assert request.kind == "improvement_task"
    assert request.payload["detail"].startswith("Rule capability-and-defects: check")

    assert feed(engine, [stream.inspection("process-b", "fail", late + 2 * US)]) == []
    assert feed(engine, stream.diameters(spread=0.004)) == []  # Cpk 2.35: cleared, re-armed
    firings = feed(engine, stream.diameters(spread=0.015))
    assert fired_ids(firings) == ["capability-and-defects"]  # Cpk low again, defects still up


def test_a_defect_rate_rise_alone_or_a_low_cpk_alone_does_not_fire(engine: RuleEngine) -> None:
    stream = Stream(OCT_1)
    assert feed(engine, stream.month(OCT_1, 100, 10) + stream.month(NOV_1, 100, 20)) == []
    assert feed(engine, stream.diameters(spread=0.004)) == []  # capable: Cpk 2.35
    assert fired_ids(feed(engine, stream.diameters(spread=0.015))) == ["capability-and-defects"]


def test_too_few_inspections_in_a_month_do_not_count(engine: RuleEngine) -> None:
    stream = Stream(OCT_1)
    feed(engine, stream.diameters(spread=0.015))
    assert feed(engine, stream.month(OCT_1, 100, 10) + stream.month(NOV_1, 49, 25)) == []
    assert len(feed(engine, stream.month(NOV_1 + 10 * DAY_US, 1, 0))) == 1  # the 50th


def test_a_new_month_compares_month_to_date_with_the_month_before() -> None:
    text = """
rules:
  - id: rise
    when: {defect_rate_change: {process: "b*", above: 50 P1, min_inspections: 2}}
    then: {emit: risen}
"""
    engine = RuleEngine(parse_rules(text.encode()))
    stream = Stream(OCT_1)
    # October (ignored once December starts), November 1 fail in 4 (25 %).
    assert feed(engine, stream.month(OCT_1, 4, 4) + stream.month(NOV_1, 4, 1, "b1")) == []
    # The last microsecond of November still counts in November: 2 in 5 is +60 % on... nothing:
    # October's b1 had no inspections, so there is no rate to rise from.
    assert feed(engine, [stream.inspection("b1", "fail", DEC_1 - 1)]) == []
    december = [stream.inspection("b1", "fail", DEC_1), stream.inspection("b1", "fail", DEC_1 + US)]
    (firing,) = feed(engine, december)  # December 2 in 2 (100 %) against November 2 in 5 (40 %)
    computed = firing.decision.computed["conditions"]["when"]
    assert (computed["month"], computed["inspections"], computed["defects"]) == ("2026-12", 2, 2)
    assert (computed["previous_inspections"], computed["previous_defects"]) == (5, 2)
    assert firing.scope == '{"process":"b1"}'
    # An inspection of October arriving now is too old to count anywhere.
    assert feed(engine, [stream.inspection("b1", "pass", OCT_1 + DAY_US)]) == []


# -- red lines -------------------------------------------------------------------------------------


def reading(stream: Stream, device: str, quantity: str, value: float, unit: str) -> Measurement:
    return stream.measurement(device, (quantity, value, unit))


@pytest.mark.parametrize(
    ("device", "value", "unit", "fires"),
    [
        ("cold-store-1", -18.1, "CEL", False),
        ("cold-store-1", -18.0, "CEL", True),  # at the limit: "at or above -18 °C"
        ("cold-store-1", -17.9, "CEL", True),
        ("cold-store-f", -0.5, "FAH", False),  # -18.06 °C
        ("cold-store-f", -0.4, "FAH", True),  # exactly -18 °C
        ("cold-store-f", 0.0, "FAH", True),  # 0 °F is -17.78 °C: a breach
        ("cold-store-k", 255.1, "KEL", False),
        ("cold-store-k", 255.15, "KEL", True),
        ("freezer-9", 5.0, "CEL", False),  # not a device this red line reads
    ],
)
def test_cold_chain_red_line(
    engine: RuleEngine, device: str, value: float, unit: str, fires: bool
) -> None:
    firings = engine.red_lines.check(reading(Stream(), device, "temperature", value, unit))
    assert fired_ids(firings) == (["cold-chain"] if fires else [])


@pytest.mark.parametrize(
    ("value", "unit", "fires"),
    [
        (1.0, "GRM", False),  # "weighing error > 1 g": 1 g is still fine
        (1.001, "GRM", True),
        (-1.0, "GRM", False),
        (-1.001, "GRM", True),  # absolute: too light is as bad as too heavy
        (0.001, "KGM", False),
        (0.0011, "KGM", True),
        (-1001.0, "MGM", True),
    ],
)
def test_weighing_error_red_line(engine: RuleEngine, value: float, unit: str, fires: bool) -> None:
    firings = engine.red_lines.check(reading(Stream(), "scale-1", "weighing_error", value, unit))
    assert fired_ids(firings) == (["weighing-error"] if fires else [])


@pytest.mark.parametrize(
    ("value", "unit", "fires"),
    [(0.299, "MMT", False), (0.3, "MMT", True), (299.9, "4H", False), (300.0, "4H", True)],
)
def test_metal_fragment_red_line(engine: RuleEngine, value: float, unit: str, fires: bool) -> None:
    measured = reading(Stream(), "metal-detector-1", "metal_fragment", value, unit)
    assert fired_ids(engine.red_lines.check(measured)) == (["metal-fragment"] if fires else [])


def test_a_red_line_decision_and_its_stop(engine: RuleEngine) -> None:
    measured = reading(Stream(), "cold-store-f", "temperature", 0.0, "FAH")
    (firing,) = engine.red_lines.check(measured)
    decision = firing.decision
    assert decision.inputs == ((measured.record_id, measured.content_hash),)
    assert decision.computed["conditions"]["when"] == {
        "holds": True, "scope": '{"device":"cold-store-f","quantity":"temperature"}',
        "inputs": [0, 1], "device": "cold-store-f", "point": [0, 0], "value": 0.0,
        "unit": "FAH", "limit": pytest.approx(-0.4),
    }  # fmt: skip
    (request,) = firing.action_requests()
    assert (request.kind, request.key) == ("plc_stop", f"plc_stop:{decision.decision_hash}")
    assert request.payload == {
        "line": "cold-chain", "reason": "cold chain at cold-store-f at or above -18 °C",
        "decision_hash": decision.decision_hash,
    }  # fmt: skip


def test_a_red_line_fires_once_per_breach_per_device(engine: RuleEngine) -> None:
    stream = Stream()
    temperatures = [-20.0, -17.0, -16.0, -18.0, -19.0, -18.0]
    fired = [
        bool(engine.red_lines.check(reading(stream, "cold-store-1", "temperature", t, "CEL")))
        for t in temperatures
    ]
    assert fired == [False, True, False, False, False, True]
    # Another device breaching is another breach.
    assert engine.red_lines.check(reading(stream, "cold-store-2", "temperature", -17.0, "CEL"))


def test_a_reading_of_another_dimension_is_counted_not_compared(engine: RuleEngine) -> None:
    measured = reading(Stream(), "cold-store-1", "temperature", 5.0, "MMT")
    assert engine.red_lines.check(measured) == []
    assert engine.red_lines.unit_mismatches == 1


def test_red_lines_check_alone_decides_what_the_engine_decides(rules: RuleSet) -> None:
    stream = Stream()
    readings = [
        reading(stream, "scale-1", "weighing_error", v, "GRM") for v in (0.5, 1.5, 0.2, -2.0)
    ]
    alone = RedLines(rules.red_lines, rules.digest)
    from_check = [f.decision.decision_hash for m in readings for f in alone.check(m)]
    from_engine = [f.decision.decision_hash for f in RuleEngine(rules).observe(readings)]
    assert len(from_check) == 2 and from_check == from_engine


# -- determinism and signals -----------------------------------------------------------------------


def mixed_stream() -> list[Observation]:
    stream = Stream(OCT_1)
    observations: list[Observation] = []
    observations += stream.month(OCT_1, 100, 10)
    observations += stream.thickness(HIGH * 2 + LOW + HIGH * 3)
    observations += [stream.lot("acme", 10.1) for _ in range(6)]
    observations += stream.diameters(spread=0.015)
    observations += stream.month(NOV_1, 60, 30)
    observations += [
        reading(stream, "cold-store-1", "temperature", t, "CEL") for t in (-20, -10, -30, -5)
    ]
    return observations


def test_evaluation_is_deterministic_and_independent_of_batches(rules: RuleSet) -> None:
    observations = mixed_stream()
    whole = RuleEngine(rules).observe(observations)
    split = RuleEngine(rules)
    pieces = [split.observe(observations[i : i + 7]) for i in range(0, len(observations), 7)]
    assert [f.decision.decision_hash for f in whole] == [
        f.decision.decision_hash for piece in pieces for f in piece
    ]
    assert sorted(set(fired_ids(whole))) == [
        "capability-and-defects", "coating-cv", "cold-chain", "incoming-usl",
        "supplier-corrective-task",
    ]  # fmt: skip


def test_a_signal_with_a_window_holds_for_that_long() -> None:
    text = """
rules:
  - id: hot
    when: {reading: {quantity: t, above: 30 CEL}}
    then: {emit: hot}
  - id: hot-and-bad-lots
    when:
      all:
        - signal: {name: hot, within: 1h}
        - lots_out_of_spec: {limit: usl, consecutive: 1}
    then: {task: {assignee: pe, title: "bad lot while hot", due: 1d}}
"""
    engine = RuleEngine(parse_rules(text.encode()))
    stream = Stream()
    assert fired_ids(engine.observe([reading(stream, "d", "t", 31.0, "CEL")])) == ["hot"]
    assert fired_ids(engine.observe([stream.lot("acme", 11.0)])) == ["hot-and-bad-lots"]
    assert engine.observe([stream.lot("acme", 10.0)]) == []  # lot in spec: cleared
    stream.now_us += 3600 * US  # an hour and a second after the signal
    assert engine.observe([stream.lot("acme", 11.0)]) == []


# -- state across a restart ------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path


def open_store(directory: Path) -> Store:
    return Store.open(
        sqlite_url(directory / "store.db"),
        Classification.from_config(DEFAULT_RECORD_TYPES),
        BlobStore(directory / "blobs"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def test_a_restarted_engine_goes_on_counting(rules: RuleSet, tmp_path: Path) -> None:
    observations = mixed_stream()
    cut = (
        next(i for i, o in enumerate(observations) if isinstance(o, IncomingLot)) + 3
    )  # three lots in, two subgroups and a half of CV at most
    uninterrupted = [f.decision.decision_hash for f in RuleEngine(rules).observe(observations)]

    store = open_store(tmp_path)
    before = RuleEngine(rules)
    first = before.observe(observations[:cut])
    with store.transaction() as connection:
        assert before.save_state(connection) > 0
        assert before.save_state(connection) == 0  # nothing changed since
    store.close()

    store = open_store(tmp_path)
    after = RuleEngine(rules)
    with store.transaction() as connection:
        assert after.load_state(connection) > 0
    rest = after.observe(observations[cut:])
    store.close()
    assert [f.decision.decision_hash for f in first + rest] == uninterrupted


def test_a_restart_keeps_a_red_line_disarmed(rules: RuleSet, store: Store) -> None:
    stream = Stream()
    before = RuleEngine(rules)
    assert before.observe([reading(stream, "cold-store-1", "temperature", -5.0, "CEL")])
    with store.transaction() as connection:
        before.save_state(connection)
    after = RuleEngine(rules)
    with store.transaction() as connection:
        after.load_state(connection)
    assert after.observe([reading(stream, "cold-store-1", "temperature", -4.0, "CEL")]) == []
    assert after.observe([reading(stream, "cold-store-1", "temperature", -25.0, "CEL")]) == []
    assert after.observe([reading(stream, "cold-store-1", "temperature", -4.0, "CEL")])


def test_a_changed_rule_starts_afresh_and_the_others_keep_their_state(rules: RuleSet) -> None:
    engine = RuleEngine(rules)
    stream = Stream()
    engine.observe(stream.thickness(HIGH * 2) + [stream.lot("acme", 10.1) for _ in range(4)])
    changed = parse_rules(EXAMPLE.read_bytes().replace(b"consecutive: 3", b"consecutive: 4"))
    engine.use(changed)
    assert engine.observe(stream.thickness(HIGH * 3)) == []  # counting restarted at 0 of 4
    assert fired_ids(engine.observe(stream.thickness(HIGH))) == ["coating-cv"]
    firings = engine.observe([stream.lot("acme", 10.1)])  # the fifth lot: state kept
    assert fired_ids(firings)[0] == "incoming-usl"
    assert firings[0].decision.rule_hash == changed.digest != rules.digest


def test_saved_state_of_a_changed_rule_is_left_aside(rules: RuleSet, store: Store) -> None:
    stream = Stream()
    before = RuleEngine(rules)
    before.observe(stream.thickness(HIGH * 2) + [stream.lot("acme", 10.1) for _ in range(4)])
    with store.transaction() as connection:
        before.save_state(connection)
    changed = parse_rules(EXAMPLE.read_bytes().replace(b"consecutive: 3", b"consecutive: 4"))
    after = RuleEngine(changed)
    with store.transaction() as connection:
        after.load_state(connection)
    assert after.observe(stream.thickness(HIGH * 3)) == []
    assert fired_ids(after.observe([stream.lot("acme", 10.1)]))[0] == "incoming-usl"


def test_commit_firings_writes_decisions_actions_and_state_once(
    rules: RuleSet, store: Store
) -> None:
    engine = RuleEngine(rules)
    stream = Stream()
    firings = engine.observe([stream.lot("acme", 10.1) for _ in range(5)])
    assert len(firings) == 3
    records = commit_firings(store, engine, firings)
    assert [r.record_id for r in records] == [f.decision.record_id for f in firings]
    assert [r.content_hash for r in records] == [f.decision.record_content_hash for f in firings]
    assert store.count_records("decision") == 3
    actions = ActionOutbox(store).actions()
    assert [(a.kind, a.key) for a in actions] == [
        ("supplier_hold", f"supplier_hold:{firings[0].decision.decision_hash}"),
        ("improvement_task", f"improvement_task:{firings[2].decision.decision_hash}"),
    ]
    with store.transaction() as connection:
        rows = connection.execute(select(func.count()).select_from(RULE_STATE)).scalar_one()
    assert rows >= 2

    assert commit_firings(store, engine, firings) == []  # the same decisions again: nothing new
    assert store.count_records("decision") == 3 and len(ActionOutbox(store).actions()) == 2


def test_a_chained_rule_fires_again_on_the_next_episode(engine: RuleEngine) -> None:
    stream = Stream()
    first = feed(engine, [stream.lot("acme", 10.1) for _ in range(5)])
    assert fired_ids(first)[-1] == "supplier-corrective-task"
    assert feed(engine, [stream.lot("acme", 10.0)]) == []
    second = feed(engine, [stream.lot("acme", 10.1) for _ in range(5)])
    assert fired_ids(second) == ["incoming-usl", "incoming-usl", "supplier-corrective-task"]
    assert second[2].decision.decision_hash != first[2].decision.decision_hash


def test_cv_per_device_keeps_one_count_per_gauge() -> None:
    text = """
rules:
  - id: cv-each
    when:
      cv: {quantity: thickness, devices: "g-*", per_device: true, subgroup_size: 5,
           above: 0.8 P1, consecutive: 2}
    then: {emit: unstable}
"""
    engine = RuleEngine(parse_rules(text.encode()))
    stream = Stream()
    observations: list[Observation] = []
    for value in HIGH * 2:
        observations += stream.thickness([value], "g-1") + stream.thickness([value], "g-2")
    firings = engine.observe(observations)
    assert [f.scope for f in firings] == [
        '{"device":"g-1","quantity":"thickness"}',
        '{"device":"g-2","quantity":"thickness"}',
    ]
    assert firings[0].decision.action == {"kind": "emit", "signal": "unstable"}
