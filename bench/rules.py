"""Readings per second through the rules (issue 5, item 2: a red line within 1 ms of a reading).

In one run, over the example rule file (tests/control/data/rules-example.yaml):
* baseline: a bare Python loop that looks up each reading's limit by quantity and compares
  (``value >= limit``), the least any red-line check can do;
* ``RedLines.check(measurement)``: the ingest fast path (device patterns, unit conversion, the
  re-arm state), on readings of the three red-line quantities from matching and other devices,
  one in 1,000 breaching (a breach builds and hashes its decision);
* ``RuleEngine.observe`` on the same readings, and on a mixed stream: thickness for the CV rule,
  diameters for the Cpk window (a Cpk of 50 values is recomputed at each value), lots and
  inspections.

Each figure is the median of ``--rounds`` rounds. Run: ``.venv/bin/python bench/rules.py``
(``--help`` for sizes). Exits 1 if ``RedLines.check`` takes more than 1 ms per reading.
Input generation is not timed.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.control.observations import IncomingLot, Inspection, Measurement, Observation
from node.control.rules import RuleEngine, RuleSet, load_rules

RULES = Path(__file__).resolve().parents[1] / "tests" / "control" / "data" / "rules-example.yaml"
TARGET_US = 1000.0
US = 1_000_000
START_US = 1_793_491_200 * US  # 2026-11-01T00:00:00Z

# (device, quantity, unit, normal value, breaching value)
RED_LINE_READINGS = (
    ("cold-store-1", "temperature", "CEL", -22.0, -17.0),
    ("cold-store-2", "temperature", "FAH", -8.0, 1.0),
    ("scale-1", "weighing_error", "GRM", 0.3, 1.4),
    ("metal-detector-1", "metal_fragment", "MMT", 0.05, 0.4),
    ("freezer-9", "temperature", "CEL", -20.0, 5.0),  # no red line reads this device
)


def red_line_stream(count: int, seed: int) -> list[Measurement]:
    rng = random.Random(seed)
    readings = []
    for index in range(count):
        device, quantity, unit, normal, breach = RED_LINE_READINGS[index % len(RED_LINE_READINGS)]
        value = breach if rng.random() < 0.001 else normal + rng.uniform(-0.1, 0.1)
        readings.append(_measurement(index, device, ((quantity, value, unit),)))
    return readings


def mixed_stream(count: int, seed: int) -> list[Observation]:
    rng = random.Random(seed)
    observations: list[Observation] = []
    for index in range(count):
        kind = index % 10
        at = START_US + index * 1000
        if kind < 4:
            value = 85.0 + rng.gauss(0, 0.3)
            observations.append(
                _measurement(index, f"coater-1/gauge-{kind}", (("thickness", value, "4H"),))
            )
        elif kind < 7:
            value = 10.0 + rng.gauss(0, 0.01)
            observations.append(_measurement(index, "press-a/1", (("diameter", value, "MMT"),)))
        elif kind == 7:
            observations.append(
                IncomingLot(
                    *_ids(index),
                    "0xsupplier",
                    f"P-{index % 7}",
                    "diameter",
                    f"L{index}",
                    10.0 + rng.gauss(0, 0.03),
                    "MMT",
                    9.95,
                    10.05,
                    at,
                )
            )
        elif kind == 8:
            verdict = "fail" if rng.random() < 0.05 else "pass"
            observations.append(Inspection(*_ids(index), "process-b", verdict, at))
        else:
            observations.extend(red_line_stream(1, index))
    return observations


def _ids(index: int) -> tuple[str, str]:
    return f"0x{index:064x}", f"0x{index + 1:064x}"


def _measurement(
    index: int, device: str, points: tuple[tuple[str, float, str], ...]
) -> Measurement:
    return Measurement(*_ids(index), device, START_US + index * 1000, points)


def bare_loop(readings: Sequence[Measurement]) -> Callable[[], int]:
    """Limits by quantity in each reading's own unit, compared: no patterns, no conversion."""
    limits = {"temperature": -18.0, "weighing_error": 1.0, "metal_fragment": 0.3}

    def run() -> int:
        breaches = 0
        for reading in readings:
            for quantity, value, _unit in reading.points:
                limit = limits.get(quantity)
                if limit is not None and value >= limit:
                    breaches += 1
        return breaches

    return run


def red_lines_check(rules: RuleSet, readings: Sequence[Measurement]) -> Callable[[], int]:
    def run() -> int:
        check = RuleEngine(rules).red_lines.check
        return sum(len(check(reading)) for reading in readings)

    return run


def engine_observe(rules: RuleSet, observations: Sequence[Observation]) -> Callable[[], int]:
    def run() -> int:
        return len(RuleEngine(rules).observe(observations))

    return run


def median_rate(action: Callable[[], int], count: int, rounds: int) -> tuple[float, int]:
    """(readings per second, the action's result), median of ``rounds``."""
    rates, result = [], 0
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        result = action()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000, help="red-line readings")
    parser.add_argument("--mixed", type=int, default=100_000, help="mixed observations")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rules = load_rules(RULES)
    print(
        f"python {platform.python_version()} on {platform.machine()}; {args.rounds} rounds, "
        f"median; rules {RULES.name} ({len(rules.rules)} rules, {len(rules.red_lines)} red lines)"
    )
    readings = red_line_stream(args.readings, seed=1)
    mixed = mixed_stream(args.mixed, seed=2)

    base, _ = median_rate(bare_loop(readings), len(readings), args.rounds)
    check, fired = median_rate(red_lines_check(rules, readings), len(readings), args.rounds)
    observe, _ = median_rate(engine_observe(rules, readings), len(readings), args.rounds)
    observe_mixed, mixed_fired = median_rate(engine_observe(rules, mixed), len(mixed), args.rounds)

    print(f"bare comparison loop        {base:>12,.0f} readings/s  {1e6 / base:8.2f} µs/reading")
    rows = (
        ("RedLines.check", check, f"{fired} firings"),
        ("RuleEngine.observe (red)", observe, "same readings"),
        ("RuleEngine.observe (mixed)", observe_mixed, f"{mixed_fired} firings"),
    )
    for name, rate, note in rows:
        print(
            f"{name:<27} {rate:>12,.0f} readings/s  {1e6 / rate:8.2f} µs/reading  "
            f"{base / rate:5.1f}x the baseline's time ({note})"
        )
    per_reading_us = 1e6 / check
    verdict = "meets" if per_reading_us <= TARGET_US else "MISSES"
    print(f"verdict: RedLines.check {per_reading_us:.2f} µs a reading {verdict} the <= 1 ms target")
    return 0 if per_reading_us <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
