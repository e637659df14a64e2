"""The bake temperature curve: read from its blob, drawn as an inline SVG chart on the server.

A curve blob is JSON or CSV. Accepted shapes (the first that fits):

- ``{"t_s": [0, 0.5, ...], "c": [118.9, 120.1, ...]}``: times in seconds and values; the value
  series may be named ``c``, ``celsius``, ``temperature_c``, ``temp_c`` (°C), ``values``, ``v``
  or ``y`` (unit from ``"unit"``, a UN/ECE Rec 20 code such as ``CEL``, else °C);
- ``{"samples": [[t, v], ...]}`` (or ``"points"``), with an optional ``"unit"``;
- a JSON list of values sampled every ``sampling_ms`` (from the record), or of ``[t, v]`` pairs;
- CSV lines ``t,v`` (a header line is skipped).

The chart (:func:`curve_svg`) has both axes with "nice" ticks and their units, the samples as a
polyline (long curves are reduced to the minimum and maximum of each of at most 600 columns, so
no peak is lost), a title and a description for screen readers. It holds no script and no
external reference, and everything it writes from the data is a number it formatted itself.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any
from xml.sax.saxutils import escape

import orjson

from node.errors import RecordError
from node.oracles.units import unit_of

__all__ = ["Curve", "CurveError", "curve_svg", "parse_curve"]

MAX_POINTS = 2_000_000
_TIME_KEYS = ("t_s", "time_s", "times_s", "t")
_VALUE_KEYS = ("c", "celsius", "temperature_c", "temp_c", "values", "v", "y")
_CELSIUS_KEYS = frozenset({"c", "celsius", "temperature_c", "temp_c"})
_COLUMNS = 600


class CurveError(RecordError):
    """A curve blob that cannot be read as a curve (the reason says why)."""


@dataclass(frozen=True)
class Curve:
    times_s: tuple[float, ...]
    values: tuple[float, ...]
    unit: str
    """The values' unit symbol (°C)."""
    declared_sampling_s: float | None
    """The sampling interval the record states."""

    @property
    def sampling_s(self) -> float:
        """The median interval between samples."""
        steps = [b - a for a, b in itertools.pairwise(self.times_s)]
        return median(steps) if steps else 0.0

    @property
    def duration_s(self) -> float:
        return self.times_s[-1] - self.times_s[0]

    def summary(self) -> str:
        sampling = _number(self.declared_sampling_s or self.sampling_s)
        return (
            f"{len(self.values)} samples every {sampling} s over {_number(self.duration_s)} s; "
            f"min {_number(min(self.values))} {self.unit}, max {_number(max(self.values))} "
            f"{self.unit}, last {_number(self.values[-1])} {self.unit}"
        )


def parse_curve(data: bytes, sampling_ms: Any = None) -> Curve:
    """The curve in ``data`` (see the module's shapes); CurveError if it is none of them."""
    declared = _positive(sampling_ms)
    declared_s = None if declared is None else declared / 1000
    text = data.decode("utf-8", "replace").strip()
    if not text:
        raise CurveError("the curve blob is empty")
    unit = "°C"
    if text[0] in "[{":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CurveError(f"the curve blob is not valid JSON: {exc}") from exc
        times, values, unit = _from_json(document, declared_s)
    else:
        times, values = _from_csv(text)
    return _checked(times, values, unit, declared_s)


def _from_json(document: Any, declared_s: float | None) -> tuple[list[Any], list[Any], str]:
    unit = "°C"
    if isinstance(document, dict):
        unit = _unit(document.get("unit"), unit)
        pairs = document.get("samples", document.get("points"))
        if isinstance(pairs, list):
            return *_pairs(pairs), unit
        time_key = next((k for k in _TIME_KEYS if isinstance(document.get(k), list)), None)
        value_key = next((k for k in _VALUE_KEYS if isinstance(document.get(k), list)), None)
        if value_key is None:
            raise CurveError(
                "the curve blob names no value series (expected one of "
                + ", ".join(_VALUE_KEYS)
                + ")"
            )
        values = document[value_key]
        if value_key in _CELSIUS_KEYS and "unit" not in document:
            unit = "°C"
        if time_key is None:
            return _sampled(values, declared_s), values, unit
        return document[time_key], values, unit
    if isinstance(document, list):
        if document and all(isinstance(p, list) for p in document):
            return *_pairs(document), unit
        return _sampled(document, declared_s), document, unit
    raise CurveError("the curve blob is neither an object nor a list")


def _pairs(pairs: list[Any]) -> tuple[list[Any], list[Any]]:
    if not all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
        raise CurveError("each sample must be a [time, value] pair")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _sampled(values: list[Any], declared_s: float | None) -> list[float]:
    if declared_s is None:
        raise CurveError("the curve has no times and its record states no sampling interval")
    return [i * declared_s for i in range(len(values))]


def _from_csv(text: str) -> tuple[list[Any], list[Any]]:
    times: list[Any] = []
    values: list[Any] = []
    for number, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise CurveError(f"CSV line {number + 1} has no value column")
        try:
            time_s, value = float(row[0]), float(row[1])
        except ValueError:
            if number == 0:
                continue  # a header
            raise CurveError(f"CSV line {number + 1} is not two numbers") from None
        times.append(time_s)
        values.append(value)
        if len(values) > MAX_POINTS:
            break
    return times, values


def _unit(code: Any, default: str) -> str:
    if not isinstance(code, str) or not code.strip():
        return default
    try:
        return unit_of(code.strip()).symbol
    except RecordError:
        return code.strip()[:12]


def _checked(
    times: Sequence[Any], values: Sequence[Any], unit: str, declared_s: float | None
) -> Curve:
    if len(times) != len(values):
        raise CurveError(f"{len(times)} times but {len(values)} values")
    if len(values) < 2:
        raise CurveError("a curve needs at least two samples")
    if len(values) > MAX_POINTS:
        raise CurveError(f"more than {MAX_POINTS:,} samples")
    numbers = []
    for name, series in (("time", times), ("value", values)):
        checked = []
        for item in series:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise CurveError(f"a {name} is not a number: {str(item)[:40]!r}")
            if not math.isfinite(item):
                raise CurveError(f"a {name} is not finite")
            checked.append(float(item))
        numbers.append(checked)
    time_values, sample_values = numbers
    if any(b <= a for a, b in itertools.pairwise(time_values)):
        raise CurveError("the times do not increase")
    return Curve(tuple(time_values), tuple(sample_values), unit, declared_s)


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


# -- drawing -----------------------------------------------------------------------------------

WIDTH, HEIGHT = 360, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 14, 44


def curve_svg(curve: Curve, title: str, element_id: str = "curve") -> str:
    """The curve as an inline ``<svg>`` (no XML declaration): scales with its container's width."""
    x0, x1 = curve.times_s[0], curve.times_s[-1]
    minutes = curve.duration_s > 600
    scale_x = 60.0 if minutes else 1.0
    x_ticks = _ticks(x0 / scale_x, x1 / scale_x, 5)
    low, high = min(curve.values), max(curve.values)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    y_ticks = _ticks(low - pad, high + pad, 5)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    x_lo, x_hi = x_ticks[0] * scale_x, x_ticks[-1] * scale_x
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(t: float) -> float:
        return LEFT + (t - x_lo) / ((x_hi - x_lo) or 1) * plot_w

    def py(v: float) -> float:
        return TOP + plot_h - (v - y_lo) / ((y_hi - y_lo) or 1) * plot_h

    points = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in _reduced(curve))
    time_unit = "min" if minutes else "s"
    title_id, desc_id = f"{element_id}-title", f"{element_id}-desc"
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{title_id} {desc_id}" id="{element_id}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(curve.summary())}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#9ca3af"/>',
        '<g class="grid" stroke="#e5e7eb" stroke-width="1">',
    ]
    for tick in y_ticks[1:-1]:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(tick):.1f}" '
                     f'y2="{py(tick):.1f}"/>')  # fmt: skip
    for tick in x_ticks[1:-1]:
        x = px(tick * scale_x)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    parts.append("</g>")
    parts.append('<g class="y-axis" fill="#374151" text-anchor="end">')
    for tick in y_ticks:
        parts.append(f'<text x="{LEFT - 5}" y="{py(tick) + 4:.1f}">{_number(tick)}</text>')
    parts.append("</g>")
    parts.append('<g class="x-axis" fill="#374151" text-anchor="middle">')
    for tick in x_ticks:
        parts.append(
            f'<text x="{px(tick * scale_x):.1f}" y="{TOP + plot_h + 15}">{_number(tick)}</text>'
        )
    parts.append("</g>")
    parts.append(
        f'<text class="x-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" '
        f'text-anchor="middle" fill="#111827">time ({time_unit})</text>'
    )
    parts.append(
        f'<text class="y-label" x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'fill="#111827" transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">'
        f"temperature ({escape(curve.unit)})</text>"
    )
    parts.append(
        f'<polyline class="samples" fill="none" stroke="#b91c1c" stroke-width="1.8" '
        f'stroke-linejoin="round" points="{points}"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _reduced(curve: Curve) -> list[tuple[float, float]]:
    """At most two points (minimum and maximum, in time order) per column of the plot."""
    pairs = list(zip(curve.times_s, curve.values, strict=True))
    if len(pairs) <= 2 * _COLUMNS:
        return pairs
    start, span = curve.times_s[0], curve.duration_s or 1.0
    columns: dict[int, list[tuple[float, float]]] = {}
    for t, v in pairs:
        columns.setdefault(min(int((t - start) / span * _COLUMNS), _COLUMNS - 1), []).append((t, v))
    reduced: list[tuple[float, float]] = []
    for index in sorted(columns):
        group = columns[index]
        low = min(group, key=lambda p: p[1])
        high = max(group, key=lambda p: p[1])
        reduced.extend(sorted({low, high}))
    return reduced


def _ticks(low: float, high: float, count: int) -> list[float]:
    """Ticks at a 1-2-5 step covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    ticks = []
    value = first
    while value <= last + step / 2:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"
