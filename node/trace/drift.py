"""Drift of a process parameter from its baseline: a tabular CUSUM with a confirmation step.

A *series* is one parameter of one equipment over a time window: the values of its setpoint
records (``setpoint``: equipment, parameter, value), or one quantity of one of its devices'
measurements (``points[q]``). :func:`detect` finds where it left its baseline:

1. **Baseline.** The first tenth of the window's values, at least ``baseline_points`` (30) and at
   most 200 (a series shorter than twice that: its first half, at least 3 values). Its mean is
   mu0; its sigma is the individuals-chart estimate (MR-bar/d2 with d2 = 1.128, as
   :func:`node.control.spc.imr_chart` computes it), robust to a slow trend in the baseline
   itself. A parameter held constant (a PID gain as configured) has MR-bar = 0; sigma is then
   floored at ``relative_floor`` * max(1, abs(mu0)) (1e-6), so that any real change of it counts.
2. **CUSUM** (Page's tabular form, two-sided, as in Montgomery section 9.1 and the NIST/SEMATECH
   e-Handbook 6.3.2.3): ``C+[i] = max(0, C+[i-1] + x[i] - mu0 - k)``,
   ``C-[i] = max(0, C-[i-1] + mu0 - k - x[i])``, with reference value k = 0.5 sigma and decision
   interval h = 5 sigma (an in-control average run length of about 465 points a side; a 1 sigma
   shift is detected in about 10). The **alarm** is the first point where C+ or C- exceeds h: the
   first out-of-control point.
3. **Onset.** The drift *began* at the point after the last one where the alarming side's sum was
   zero: the tabular CUSUM's change-point estimate (Montgomery), the start of the run of points
   whose excess over mu0 +/- k made up the alarm. Its observation time, in milliseconds, is the
   drift's timestamp.
4. **Confirmation.** A CUSUM on a long in-control series alarms now and then by chance; an alarm
   counts only if the mean of the next ``confirm_points`` values (30) stays at least
   ``confirm_sigma`` (1) sigma beyond mu0 on the same side (a drift persists; noise does not). An
   unconfirmed alarm restarts both sums at zero and the scan goes on. An alarm with fewer than
   ``min_confirm_points`` (5) values after it, at the very end of the window, is not confirmed:
   too recent to tell from noise.

**Baseline settled.** A window may start after the drift began: its first values then trend.
:func:`baseline_settled` tests the baseline's least-squares slope (|t| <= 5, or a slope too small
to matter against the sigma floor). A member serving a trace extends an equipment's window back,
by its own length, while a series' baseline is not settled or a drift's run starts right after
the baseline (:func:`needs_earlier`; 7 times at most), so that the onset is found where it is
rather than at the start of the window.

The **evidence** of a drift is the baseline, the run from the onset to the alarm and the
confirmation window: every value the decision was made from, apart from the in-control points
between baseline and onset. :func:`recheck` decides, from the evidence alone, whether it supports
the drift claimed: the run's sums stay above zero from the onset, cross h first at the alarm, and
the confirmation holds. A node checks the evidence of another member's drift that way, on values
taken from records it verified against the chain.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from node.control.spc import chart_constants, moving_ranges

DETECTOR = "CUSUM (tabular, two-sided)"


@dataclass(frozen=True)
class DriftSettings:
    baseline_points: int = 30
    max_baseline_points: int = 200
    k_sigma: float = 0.5
    h_sigma: float = 5.0
    confirm_points: int = 30
    confirm_sigma: float = 1.0
    min_confirm_points: int = 5
    relative_floor: float = 1e-6
    max_run: int = 400
    """A run from onset to alarm longer than this is reported, its evidence cut to the baseline,
    the run's first and last ``max_run // 2`` points and the confirmation (not recheckable)."""

    def describe(self) -> str:
        return (
            f"{DETECTOR}: k = {self.k_sigma:g} sigma, h = {self.h_sigma:g} sigma; baseline the "
            f"first tenth of the window ({self.baseline_points}..{self.max_baseline_points} "
            f"points), sigma = MR-bar/1.128 (at least {self.relative_floor:g} x |baseline|); "
            f"confirmed when the next {self.confirm_points} points stay >= "
            f"{self.confirm_sigma:g} sigma beyond the baseline"
        )


@dataclass(frozen=True)
class Baseline:
    mean: float
    sigma: float
    sigma_floored: bool
    count: int


@dataclass(frozen=True)
class Drift:
    """A confirmed drift; indices are positions in the series given to :func:`detect`."""

    baseline: Baseline
    direction: int
    """+1: the parameter went up; -1: down."""
    onset: int
    alarm: int
    confirm_end: int
    """One past the last confirmation point."""
    shift: float
    """Mean of the values from the onset through the confirmation window, minus the baseline."""
    cusum_at_alarm: float
    points: int

    @property
    def shift_sigma(self) -> float:
        return self.shift / self.baseline.sigma

    def evidence(self, max_run: int) -> list[int]:
        """Indices of the evidence values (baseline, run, confirmation), in order."""
        run = list(range(self.onset, self.alarm + 1))
        if len(run) > max_run:
            run = run[: max_run // 2] + run[-(max_run // 2) :]
        confirm = list(range(self.alarm + 1, self.confirm_end))
        return list(range(self.baseline.count)) + run + confirm


def baseline_count(points: int, settings: DriftSettings) -> int:
    wanted = min(max(settings.baseline_points, points // 10), settings.max_baseline_points)
    if points >= 2 * wanted:
        return wanted
    return max(3, points // 2)


def baseline_settled(values: Sequence[float], settings: DriftSettings | None = None) -> bool:
    """Whether the baseline of ``values`` (its first values, as :func:`detect` takes them) has
    no significant trend: least-squares slope t-statistic at most 5 in absolute value, or a
    change over the baseline below twice the sigma floor."""
    settings = settings or DriftSettings()
    if len(values) < 4:
        return True
    base = list(values[: baseline_count(len(values), settings)])
    count = len(base)
    if count < 3 or not all(math.isfinite(v) for v in base):
        return True
    centre = (count - 1) / 2
    mean = statistics.fmean(base)
    sxx = sum((i - centre) ** 2 for i in range(count))
    slope = sum((i - centre) * (v - mean) for i, v in enumerate(base)) / sxx
    floor = settings.relative_floor * max(1.0, abs(mean))
    if abs(slope) * count <= 2 * floor:
        return True
    residual = sum((v - mean - slope * (i - centre)) ** 2 for i, v in enumerate(base))
    error = math.sqrt(residual / (count - 2) / sxx) if count > 2 else 0.0
    return error > 0 and abs(slope) / error <= 5.0


def needs_earlier(values: Sequence[float], settings: DriftSettings | None = None) -> bool:
    """Whether a window should reach further back for ``values``: its baseline trends, or a drift
    starts right where the baseline ends (the change may lie in or before the baseline)."""
    settings = settings or DriftSettings()
    if not baseline_settled(values, settings):
        return True
    drift = detect(values, settings)
    return drift is not None and drift.onset <= drift.baseline.count


def baseline_of(values: Sequence[float], settings: DriftSettings) -> Baseline:
    mean = statistics.fmean(values)
    moving = statistics.fmean(moving_ranges(values)) if len(values) > 1 else 0.0
    sigma = moving / chart_constants(2).d2
    floor = settings.relative_floor * max(1.0, abs(mean))
    return Baseline(mean, max(sigma, floor), sigma < floor, len(values))


def detect(values: Sequence[float], settings: DriftSettings | None = None) -> Drift | None:
    """The first confirmed drift of ``values`` (in time order), or None."""
    settings = settings or DriftSettings()
    count = len(values)
    if count < 4 or not all(math.isfinite(v) for v in values):
        return None
    size = baseline_count(count, settings)
    if count <= size:
        return None
    baseline = baseline_of(values[:size], settings)
    mean, sigma = baseline.mean, baseline.sigma
    k, h = settings.k_sigma * sigma, settings.h_sigma * sigma
    high = low = 0.0
    high_zero = low_zero = size - 1
    for index in range(size, count):
        x = values[index]
        high = max(0.0, high + x - mean - k)
        low = max(0.0, low + mean - k - x)
        if high == 0.0:
            high_zero = index
        if low == 0.0:
            low_zero = index
        if high <= h and low <= h:
            continue
        direction = 1 if high >= low else -1
        onset = (high_zero if direction > 0 else low_zero) + 1
        confirm_end = min(count, index + 1 + settings.confirm_points)
        if _confirmed(values[index + 1 : confirm_end], mean, sigma, direction, settings):
            window = values[onset:confirm_end]
            return Drift(
                baseline=baseline,
                direction=direction,
                onset=onset,
                alarm=index,
                confirm_end=confirm_end,
                shift=statistics.fmean(window) - mean,
                cusum_at_alarm=max(high, low),
                points=count,
            )
        high = low = 0.0
        high_zero = low_zero = index
    return None


def _confirmed(
    after: Sequence[float], mean: float, sigma: float, direction: int, settings: DriftSettings
) -> bool:
    if len(after) < min(settings.min_confirm_points, settings.confirm_points):
        return False
    return (statistics.fmean(after) - mean) * direction >= settings.confirm_sigma * sigma


def recheck(
    baseline: Sequence[float],
    run: Sequence[float],
    confirmation: Sequence[float],
    direction: int,
    settings: DriftSettings | None = None,
) -> str | None:
    """None if the evidence supports the drift (see the module docstring); else why not."""
    settings = settings or DriftSettings()
    if len(baseline) < 3 or not run:
        return "the evidence has too few baseline or run values"
    values = [*baseline, *run, *confirmation]
    if not all(math.isfinite(v) for v in values):
        return "the evidence holds a value that is not a finite number"
    base = baseline_of(baseline, settings)
    k, h = settings.k_sigma * base.sigma, settings.h_sigma * base.sigma
    total = 0.0
    for position, x in enumerate(run):
        excess = (x - base.mean) * direction - k
        total = max(0.0, total + excess)
        if total <= 0.0:
            return f"the sum falls back to zero at run value {position + 1}: not the onset"
        last = position == len(run) - 1
        if total > h and not last:
            return f"the sum crosses h at run value {position + 1}, before the claimed alarm"
        if last and total <= h:
            return "the sum does not cross h at the claimed alarm"
    if not _confirmed(confirmation, base.mean, base.sigma, direction, settings):
        return "the values after the alarm do not stay beyond the baseline"
    return None
