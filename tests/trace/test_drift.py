"""The drift detector: where a parameter left its baseline, and nothing on in-control series."""

from __future__ import annotations

import random

import pytest

from node.trace.drift import DriftSettings, baseline_settled, detect, recheck


def test_a_constant_parameter_that_starts_to_ramp_is_caught_at_its_first_changed_value() -> None:
    values = [2.40] * 300 + [2.40 + 0.004 * (i + 1) for i in range(200)]
    drift = detect(values)
    assert drift is not None
    assert (drift.onset, drift.alarm, drift.direction) == (300, 300, 1)
    assert drift.baseline.sigma_floored
    assert drift.shift > 0


def test_a_step_down_of_two_sigma_on_a_noisy_series_is_found_near_the_change() -> None:
    found = []
    for seed in range(100):
        rng = random.Random(seed)
        values = [rng.gauss(50.0, 0.5) for _ in range(400)]
        values += [rng.gauss(49.0, 0.5) for _ in range(200)]
        drift = detect(values)
        assert drift is not None, seed
        assert drift.direction == -1
        assert 360 <= drift.onset <= drift.alarm <= 430, (seed, drift)
        found.append(drift.onset)
    # the tabular CUSUM's change-point estimate: mostly within a few points of the step (a chance
    # alarm shortly before the step is confirmed by the step itself)
    assert sum(abs(onset - 400) <= 5 for onset in found) >= 70, found


def test_in_control_noise_does_not_make_a_confirmed_drift() -> None:
    false_alarms = 0
    for seed in range(100):
        rng = random.Random(1000 + seed)
        values = [rng.gauss(120.0, 1.5) for _ in range(3000)]
        false_alarms += detect(values) is not None
    assert false_alarms == 0


@pytest.mark.parametrize("values", [[], [1.0, 2.0, 3.0], [float("nan")] * 50])
def test_too_short_or_not_finite_series_have_no_drift(values: list[float]) -> None:
    assert detect(values) is None


def test_recheck_accepts_the_evidence_of_a_drift_and_refuses_a_moved_onset() -> None:
    settings = DriftSettings()
    rng = random.Random(7)
    values = [rng.gauss(10.0, 0.1) for _ in range(100)] + [rng.gauss(10.3, 0.1) for _ in range(100)]
    drift = detect(values, settings)
    assert drift is not None
    size = drift.baseline.count
    baseline = values[:size]
    run = values[drift.onset : drift.alarm + 1]
    confirmation = values[drift.alarm + 1 : drift.confirm_end]
    assert recheck(baseline, run, confirmation, drift.direction, settings) is None
    problem = recheck(baseline, run[:-1], confirmation, drift.direction, settings)
    assert problem is not None and "does not cross" in problem
    problem = recheck(baseline, run, confirmation, -drift.direction, settings)
    assert problem is not None
    back = [10.0] * 30
    assert recheck(baseline, run, back, drift.direction, settings) is not None


def test_a_trending_baseline_is_not_settled() -> None:
    rng = random.Random(3)
    assert baseline_settled([2.4] * 500)
    assert baseline_settled([rng.gauss(5.0, 0.2) for _ in range(500)])
    assert not baseline_settled([2.4 + 0.0005 * i for i in range(500)])
    assert not baseline_settled([rng.gauss(5.0 + 0.01 * i, 0.2) for i in range(500)])
