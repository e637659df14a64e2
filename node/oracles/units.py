"""UN/ECE Recommendation 20 unit codes and exact conversion between units of one dimension.

Each unit is ``SI value = value * factor + offset``, with factor and offset as exact fractions.
A conversion from one code to another is reduced to ``(value * p + q) / r`` with integer p, q, r,
so that the common cases come out exact: 212 FAH is 100 CEL, 85.2 4H is 0.0852 MMT, not
0.08520000000000001.

Codes are those of Rec 20 (checked against the UNECE list, as carried by OPC UA's
EUInformation table); only units a shop floor measures in are listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from node.errors import RecordError

UNKNOWN_UNIT = "unknown_unit"
UNIT_MISMATCH = "unit_mismatch"


class Dimension(StrEnum):
    TEMPERATURE = "temperature"
    LENGTH = "length"
    MASS = "mass"
    PRESSURE = "pressure"
    TIME = "time"
    FREQUENCY = "frequency"
    RATIO = "ratio"
    VOLTAGE = "voltage"
    CURRENT = "current"
    RESISTANCE = "resistance"
    FORCE = "force"
    SPEED = "speed"
    ENERGY = "energy"
    POWER = "power"


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    symbol: str
    dimension: Dimension
    factor: Fraction
    """SI value of one of this unit."""
    offset: Fraction = Fraction(0)
    """SI value of this unit's zero (temperatures only)."""


class UnitError(RecordError):
    """A unit code that is unknown, or of another dimension than the quantity's unit.
    ``reason`` is ``unknown_unit`` or ``unit_mismatch``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _unit(
    code: str, name: str, symbol: str, dimension: Dimension, factor: str, offset: str = "0"
) -> Unit:
    return Unit(code, name, symbol, dimension, Fraction(factor), Fraction(offset))


_D = Dimension
_POUND_KG = "0.45359237"
_PSI_PA = Fraction("4.4482216152605") / Fraction("0.0254") ** 2  # lbf / in²

UNITS: Mapping[str, Unit] = {
    u.code: u
    for u in (
        _unit("KEL", "kelvin", "K", _D.TEMPERATURE, "1"),
        _unit("CEL", "degree Celsius", "°C", _D.TEMPERATURE, "1", "273.15"),
        Unit(
            "FAH",
            "degree Fahrenheit",
            "°F",
            _D.TEMPERATURE,
            Fraction(5, 9),
            Fraction("273.15") - Fraction(32 * 5, 9),
        ),
        _unit("MTR", "metre", "m", _D.LENGTH, "1"),
        _unit("CMT", "centimetre", "cm", _D.LENGTH, "1e-2"),
        _unit("MMT", "millimetre", "mm", _D.LENGTH, "1e-3"),
        _unit("4H", "micrometre (micron)", "µm", _D.LENGTH, "1e-6"),
        _unit("C45", "nanometre", "nm", _D.LENGTH, "1e-9"),
        _unit("INH", "inch", "in", _D.LENGTH, "0.0254"),
        _unit("FOT", "foot", "ft", _D.LENGTH, "0.3048"),
        _unit("KGM", "kilogram", "kg", _D.MASS, "1"),
        _unit("GRM", "gram", "g", _D.MASS, "1e-3"),
        _unit("MGM", "milligram", "mg", _D.MASS, "1e-6"),
        _unit("TNE", "tonne (metric ton)", "t", _D.MASS, "1e3"),
        _unit("LBR", "pound", "lb", _D.MASS, _POUND_KG),
        _unit("PAL", "pascal", "Pa", _D.PRESSURE, "1"),
        _unit("A97", "hectopascal", "hPa", _D.PRESSURE, "1e2"),
        _unit("KPA", "kilopascal", "kPa", _D.PRESSURE, "1e3"),
        _unit("MPA", "megapascal", "MPa", _D.PRESSURE, "1e6"),
        _unit("BAR", "bar", "bar", _D.PRESSURE, "1e5"),
        _unit("MBR", "millibar", "mbar", _D.PRESSURE, "1e2"),
        Unit("PS", "pound-force per square inch", "psi", _D.PRESSURE, _PSI_PA),
        _unit("SEC", "second", "s", _D.TIME, "1"),
        _unit("C26", "millisecond", "ms", _D.TIME, "1e-3"),
        _unit("B98", "microsecond", "µs", _D.TIME, "1e-6"),
        _unit("MIN", "minute", "min", _D.TIME, "60"),
        _unit("HUR", "hour", "h", _D.TIME, "3600"),
        _unit("HTZ", "hertz", "Hz", _D.FREQUENCY, "1"),
        _unit("KHZ", "kilohertz", "kHz", _D.FREQUENCY, "1e3"),
        _unit("MHZ", "megahertz", "MHz", _D.FREQUENCY, "1e6"),
        _unit("C62", "one", "1", _D.RATIO, "1"),
        _unit("P1", "percent", "%", _D.RATIO, "1e-2"),
        _unit("VLT", "volt", "V", _D.VOLTAGE, "1"),
        _unit("AMP", "ampere", "A", _D.CURRENT, "1"),
        _unit("OHM", "ohm", "Ω", _D.RESISTANCE, "1"),
        _unit("NEW", "newton", "N", _D.FORCE, "1"),
        _unit("B47", "kilonewton", "kN", _D.FORCE, "1e3"),
        _unit("C20", "millinewton", "mN", _D.FORCE, "1e-3"),
        _unit("MTS", "metre per second", "m/s", _D.SPEED, "1"),
        _unit("C16", "millimetre per second", "mm/s", _D.SPEED, "1e-3"),
        _unit("2X", "metre per minute", "m/min", _D.SPEED, "1/60"),
        _unit("KMH", "kilometre per hour", "km/h", _D.SPEED, "1000/3600"),
        _unit("JOU", "joule", "J", _D.ENERGY, "1"),
        _unit("KJO", "kilojoule", "kJ", _D.ENERGY, "1e3"),
        _unit("WTT", "watt", "W", _D.POWER, "1"),
        _unit("KWT", "kilowatt", "kW", _D.POWER, "1e3"),
    )
}
"""The unit codes the node converts, by Rec 20 common code."""

_EXACT_LIMIT = 2**53


def unit_of(code: str) -> Unit:
    try:
        return UNITS[code]
    except KeyError:
        raise UnitError(
            UNKNOWN_UNIT, f"unit code {code!r} is not a known UN/ECE Rec 20 code"
        ) from None


def converter(from_code: str, to_code: str) -> Callable[[float], float]:
    """A function converting values from ``from_code`` to ``to_code`` (UnitError if it cannot)."""
    p, q, r = coefficients(from_code, to_code)
    if (p, q, r) == (1, 0, 1):
        return float
    return lambda value: (value * p + q) / r


def convert(value: float, from_code: str, to_code: str) -> float:
    return converter(from_code, to_code)(value)


def coefficients(from_code: str, to_code: str) -> tuple[float, float, float]:
    """(p, q, r) with ``to = (value * p + q) / r``: integers (as floats) when they are exact
    in a double, else the nearest doubles with r = 1."""
    source, target = unit_of(from_code), unit_of(to_code)
    if source.dimension is not target.dimension:
        raise UnitError(
            UNIT_MISMATCH,
            f"unit {from_code} ({source.name}) is a {source.dimension}, "
            f"not a {target.dimension} like {to_code} ({target.name})",
        )
    scale = source.factor / target.factor
    shift = (source.offset - target.offset) / target.factor
    r = math.lcm(scale.denominator, shift.denominator)
    p, q = scale * r, shift * r
    if abs(p) < _EXACT_LIMIT and abs(q) < _EXACT_LIMIT and r < _EXACT_LIMIT:
        return float(p), float(q), float(r)
    return float(scale), float(shift), 1.0
