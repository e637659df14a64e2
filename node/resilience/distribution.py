"""Summaries of durations and counts: percentiles by linear interpolation, calendar months.

``percentile(values, q)`` sorts the values and interpolates linearly between the two closest
ranks at position ``q·(n-1)`` (Hyndman and Fan's type 7: numpy's and R's default, and
``statistics.quantiles(method="inclusive")``); the median is ``q = 0.5``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Distribution", "distribution", "month_of", "months_until", "percentile"]

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` (None for no values)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within 0..1")
    ordered = sorted(values)
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float | None
    median: float | None
    p90: float | None
    max: float | None

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "mean": self.mean,
            "median": self.median,
            "p90": self.p90,
            "max": self.max,
        }


def distribution(values: Sequence[float]) -> Distribution:
    if not values:
        return Distribution(0, None, None, None, None)
    return Distribution(
        len(values),
        statistics.fmean(values),
        percentile(values, 0.5),
        percentile(values, 0.9),
        max(values),
    )


def month_of(timestamp_us: int) -> str:
    """The calendar month (UTC) of a time: ``2026-11``."""
    return datetime.fromtimestamp(timestamp_us / 1e6, UTC).strftime("%Y-%m")


def months_until(timestamp_us: int, count: int) -> list[str]:
    """The ``count`` calendar months ending with the month of ``timestamp_us``, oldest first."""
    moment = datetime.fromtimestamp(timestamp_us / 1e6, UTC)
    year, month = moment.year, moment.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return months[::-1]
