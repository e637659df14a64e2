"""The dashboard's charts as self-contained SVG, drawn on the server: grouped bars, lines over
months, and a radar per supplier.

Like the explorer's graphs (:mod:`node.explorer.graph`) and the consumer page's curve, a chart
holds no script, no external reference and no font file; every text it writes from the data is
XML-escaped, every number formatted here. Each ``<svg>`` has ``role="img"``, a ``<title>`` and a
``<desc>`` that says in words what it shows (for screen readers and for a reader of the source),
and draws "no data" rather than nothing when it has nothing to show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "PALETTE",
    "Series",
    "bar_chart",
    "duration_text",
    "line_chart",
    "number",
    "percent_text",
    "radar_chart",
]

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
PALETTE = ("#1a56db", "#b45309", "#15803d", "#be185d", "#6d28d9", "#0e7490", "#dc2626", "#4b5563")
AXIS, GRID, INK, MUTED = "#9ca3af", "#e5e7eb", "#111827", "#374151"
LABEL_CHARS = 16


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]
    colour: str = PALETTE[0]


def number(value: float | None, digits: int = 3) -> str:
    """A number for people: thousands separated and whole from 1,000 up, else to ``digits``
    significant digits (no exponent notation above 1e-4)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return str(int(value))
    text = f"{value:.{digits}g}"
    return f"{value:.6f}".rstrip("0") if "e" in text and abs(value) >= 1e-4 else text


def duration_text(seconds: float | None) -> str:
    """A recovery cycle or an age for people: s, min, h or days."""
    if seconds is None:
        return "\u2013"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def percent_text(share: float | None) -> str:
    return "\u2013" if share is None else f"{share * 100:.0f} %"


def _short(text: str, keep: int = LABEL_CHARS) -> str:
    return text if len(text) <= keep else text[: keep - 1] + "…"


def _ticks(high: float, count: int = 5, whole: bool = False) -> list[float]:
    """Ticks from 0 at a 1-2-2.5-5 step covering ``high`` (``whole``: steps of at least 1)."""
    if not math.isfinite(high) or high <= 0:
        high = 1.0
    raw = high / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1.0, float(math.ceil(step)))
    ticks = [0.0]
    while ticks[-1] < high - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _open(width: float, height: float, element_id: str, title: str, desc: str) -> list[str]:
    title_id, desc_id = f"{element_id}-title", f"{element_id}-desc"
    return [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} '
        f'{height:.0f}" width="{width:.0f}" height="{height:.0f}" role="img" '
        f'aria-labelledby="{title_id} {desc_id}" id={quoteattr(element_id)} '
        f'font-family="{FONT}" font-size="11">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(desc)}</desc>',
    ]


def _no_data(parts: list[str], x: float, y: float) -> None:
    parts.append(
        f'<text class="no-data" x="{x:.1f}" y="{y:.1f}" text-anchor="middle" fill="{MUTED}" '
        'font-size="13">no data</text>'
    )


def _legend(parts: list[str], series: Sequence[Series], x: float, y: float, width: float) -> float:
    """Legend entries left to right, wrapping within ``width``; returns the height used."""
    cx, cy = x, y
    for item in series:
        text = _short(item.name, 28)
        span = 18 + len(text) * 6.6
        if cx + span > x + width and cx > x:
            cx, cy = x, cy + 16
        parts.append(
            f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="10" height="10" fill="{item.colour}"/>'
            f'<text x="{cx + 14:.1f}" y="{cy:.1f}" fill="{MUTED}">{escape(text)}</text>'
        )
        cx += span + 10
    return cy - y + 16


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    unit: str,
    element_id: str,
    *,
    reference: float | None = None,
    reference_label: str = "",
    whole: bool = False,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series; a dashed line at
    ``reference`` (a threshold) when given; ``whole``: counts (whole-number ticks)."""
    left, right, top, bottom = 56, 14, 34, 26
    per_group = max(44, 20 * len(series) + 18)
    plot_w = max(280, per_group * len(categories))
    plot_h = 170
    width, height = left + plot_w + right, top + plot_h + bottom
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    described = "; ".join(
        f"{category}: " + ", ".join(f"{s.name} {number(_at(s.values, i))} {unit}" for s in series)
        for i, category in enumerate(categories)
    )
    parts = _open(width, height, element_id, title, described or "no data")
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        f'stroke="{AXIS}"/>'
    )
    _legend(parts, series, left, 16, plot_w)
    if not categories or not values:
        _no_data(parts, left + plot_w / 2, top + plot_h / 2)
        parts.append("</svg>")
        return "".join(parts)
    high = max(values + ([reference] if reference is not None else []))
    ticks = _ticks(high, whole=whole)
    top_value = ticks[-1] or 1.0

    def py(value: float) -> float:
        return top + plot_h - max(0.0, value) / top_value * plot_h

    parts.append(f'<g class="grid" stroke="{GRID}">')
    for tick in ticks[1:]:
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
    parts.append("</g>")
    parts.append(f'<g class="y-axis" fill="{MUTED}" text-anchor="end">')
    for tick in ticks:
        parts.append(f'<text x="{left - 5}" y="{py(tick) + 4:.1f}">{number(tick)}</text>')
    parts.append("</g>")
    parts.append(
        f'<text class="y-label" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'fill="{INK}" transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(unit)}</text>'
    )
    group_w = plot_w / len(categories)
    bar_w = min(18.0, (group_w - 12) / max(len(series), 1))
    parts.append('<g class="bars">')
    for i, category in enumerate(categories):
        x0 = left + i * group_w + (group_w - bar_w * len(series)) / 2
        for j, item in enumerate(series):
            value = _at(item.values, i)
            x = x0 + j * bar_w
            label = f"{category}, {item.name}: {number(value)} {unit}"
            if value is None or not math.isfinite(value):
                parts.append(
                    f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 4}" text-anchor="middle" '
                    f'font-size="8" fill="{MUTED}">n/a<title>{escape(label)}</title></text>'
                )
                continue
            y = py(value)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{top + plot_h - y:.1f}" fill="{item.colour}">'
                f"<title>{escape(label)}</title></rect>"
            )
        parts.append(
            f'<text class="x-label" x="{left + (i + 0.5) * group_w:.1f}" y="{top + plot_h + 14}" '
            f'text-anchor="middle" fill="{MUTED}">{escape(_short(category))}'
            f"<title>{escape(category)}</title></text>"
        )
    parts.append("</g>")
    if reference is not None:
        y = py(reference)
        parts.append(
            f'<line class="reference" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#dc2626" stroke-dasharray="5 3"/>'
            f'<text x="{left + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#dc2626">'
            f"{escape(reference_label or number(reference))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _at(values: Sequence[float | None], index: int) -> float | None:
    return values[index] if index < len(values) else None


def line_chart(
    title: str, x_labels: Sequence[str], series: Sequence[Series], unit: str, element_id: str
) -> str:
    """Lines over evenly spaced ``x_labels`` (months); a missing value breaks its line."""
    left, right, top, bottom = 60, 16, 14, 40
    plot_w = max(320, 46 * len(x_labels))
    plot_h = 180
    legend_rows = 1 + sum(len(_short(s.name, 28)) * 6.6 + 28 for s in series) // plot_w
    width = left + plot_w + right
    height = top + plot_h + bottom + 16 * legend_rows + 6
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    described = "; ".join(
        f"{s.name}: "
        + ", ".join(f"{m} {number(v)}" for m, v in zip(x_labels, s.values, strict=False))
        for s in series
    )
    parts = _open(width, height, element_id, title, described or "no data")
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        f'stroke="{AXIS}"/>'
    )
    _legend(parts, series, left, top + plot_h + bottom + 8, plot_w)
    if not x_labels or not values:
        _no_data(parts, left + plot_w / 2, top + plot_h / 2)
        parts.append("</svg>")
        return "".join(parts)
    ticks = _ticks(max(values))
    top_value = ticks[-1] or 1.0
    step = plot_w / len(x_labels)

    def px(index: int) -> float:
        return left + (index + 0.5) * step

    def py(value: float) -> float:
        return top + plot_h - max(0.0, value) / top_value * plot_h

    parts.append(f'<g class="grid" stroke="{GRID}">')
    for tick in ticks[1:]:
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>')
    parts.append("</g>")
    parts.append(f'<g class="y-axis" fill="{MUTED}" text-anchor="end">')
    for tick in ticks:
        parts.append(f'<text x="{left - 5}" y="{py(tick) + 4:.1f}">{number(tick)}</text>')
    parts.append("</g>")
    parts.append(f'<g class="x-axis" fill="{MUTED}" text-anchor="middle">')
    every = max(1, math.ceil(len(x_labels) / 8))
    for i, label in enumerate(x_labels):
        if (len(x_labels) - 1 - i) % every == 0:  # the latest month always labelled
            parts.append(f'<text x="{px(i):.1f}" y="{top + plot_h + 15}">{escape(label)}</text>')
    parts.append("</g>")
    parts.append(
        f'<text class="y-label" x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'fill="{INK}" transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(unit)}</text>'
    )
    for item in series:
        parts.append(f'<g class="series" stroke="{item.colour}" fill="{item.colour}">')
        segment: list[str] = []
        for i, value in enumerate(item.values[: len(x_labels)]):
            if value is None or not math.isfinite(value):
                _segment(parts, segment)
                segment = []
                continue
            x, y = px(i), py(value)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>'
                f"{escape(f'{item.name}, {x_labels[i]}: {number(value)} {unit}')}</title></circle>"
            )
        _segment(parts, segment)
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _segment(parts: list[str], points: list[str]) -> None:
    if len(points) >= 2:
        parts.append(
            f'<polyline fill="none" stroke-width="2" stroke-linejoin="round" '
            f'points="{" ".join(points)}"/>'
        )


def radar_chart(
    title: str,
    axes: Sequence[tuple[str, float | None, str]],
    element_id: str,
    colour: str = PALETTE[0],
) -> str:
    """A radar of scores 0..1: one spoke per axis ``(name, score or None, raw value text)``;
    an axis without a score is drawn at the centre and labelled n/a."""
    size, radius = 400, 92
    cx, cy = size / 2, 150
    height = 300
    described = "; ".join(f"{name}: score {number(score, 2)} ({raw})" for name, score, raw in axes)
    parts = _open(size, height, element_id, title, described or "no axes")
    count = len(axes)
    if count < 3:
        _no_data(parts, cx, cy)
        parts.append("</svg>")
        return "".join(parts)

    def point(index: int, fraction: float) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * index / count
        return cx + radius * fraction * math.cos(angle), cy + radius * fraction * math.sin(angle)

    parts.append(f'<g class="grid" fill="none" stroke="{GRID}">')
    for ring in (0.25, 0.5, 0.75, 1.0):
        corners = (point(i, ring) for i in range(count))
        ring_points = " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
        parts.append(f'<polygon points="{ring_points}"/>')
    for i in range(count):
        x, y = point(i, 1.0)
        parts.append(
            f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="{AXIS}"/>'
        )
    parts.append("</g>")
    scored = [point(i, max(0.0, min(1.0, score or 0.0))) for i, (_, score, _) in enumerate(axes)]
    if any(score is not None for _, score, _ in axes):
        shape = " ".join(f"{x:.1f},{y:.1f}" for x, y in scored)
        parts.append(
            f'<polygon class="scores" points="{shape}" fill="{colour}" fill-opacity="0.25" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
    else:
        _no_data(parts, cx, cy + 4)
    parts.append(f'<g class="axis-labels" fill="{INK}">')
    for i, (name, score, raw) in enumerate(axes):
        x, y = point(i, 1.18)
        anchor = "middle" if abs(x - cx) < 8 else ("start" if x > cx else "end")
        dy = -4 if y < cy - 8 else (12 if y > cy + 8 else 4)
        value = "n/a" if score is None else f"{score:.2f}"
        parts.append(
            f'<text x="{x:.1f}" y="{y + dy:.1f}" text-anchor="{anchor}">'
            f"{escape(_short(name, 26))}"
            f'<tspan x="{x:.1f}" dy="13" fill="{MUTED}">{escape(value)}</tspan>'
            f"<title>{escape(f'{name}: {value} ({raw})')}</title></text>"
        )
    parts.append("</g>")
    for (x, y), (_, score, _) in zip(scored, axes, strict=True):
        if score is not None:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)
