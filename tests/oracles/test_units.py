"""UN/ECE Rec 20 unit conversion."""

from __future__ import annotations

import pytest

from node.oracles.units import UNITS, Dimension, UnitError, coefficients, convert


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (212, "FAH", "CEL", 100.0),
        (-40, "CEL", "FAH", -40.0),
        (32, "FAH", "KEL", 273.15),
        (21.5, "CEL", "KEL", 294.65),
        (0, "KEL", "CEL", -273.15),
        (85.2, "4H", "MMT", 0.0852),
        (0.0852, "MMT", "4H", 85.2),
        (1, "INH", "MMT", 25.4),
        (1, "FOT", "INH", 12.0),
        (500, "C45", "4H", 0.5),
        (2.5, "CMT", "MTR", 0.025),
        (1, "LBR", "GRM", 453.59237),
        (1500, "MGM", "GRM", 1.5),
        (1, "TNE", "KGM", 1000.0),
        (1, "BAR", "KPA", 100.0),
        (1013.25, "MBR", "A97", 1013.25),
        (2, "MPA", "BAR", 20.0),
        (1, "PS", "PAL", 6894.757293168362),
        (1500, "C26", "SEC", 1.5),
        (2, "HUR", "MIN", 120.0),
        (250, "B98", "C26", 0.25),
        (2.4, "KHZ", "HTZ", 2400.0),
        (45, "P1", "C62", 0.45),
        (0.5, "C62", "P1", 50.0),
        (2, "B47", "NEW", 2000.0),
        (36, "KMH", "MTS", 10.0),
        (120, "2X", "MTS", 2.0),
        (3, "KJO", "JOU", 3000.0),
        (1.5, "KWT", "WTT", 1500.0),
    ],
)
def test_conversions(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == expected


def test_every_unit_converts_to_itself_exactly() -> None:
    for code, unit in UNITS.items():
        assert unit.code == code
        assert coefficients(code, code) == (1.0, 0.0, 1.0)
        assert convert(123.456, code, code) == 123.456


def test_every_dimension_has_units_that_convert_among_themselves() -> None:
    for dimension in Dimension:
        codes = [c for c, u in UNITS.items() if u.dimension is dimension]
        assert codes, dimension
        for source in codes:
            for target in codes:
                there = convert(10.0, source, target)
                assert convert(there, target, source) == pytest.approx(10.0, rel=1e-12)


def test_unknown_and_mismatched_units() -> None:
    with pytest.raises(UnitError) as unknown:
        convert(1, "XYZ", "MMT")
    assert unknown.value.reason == "unknown_unit"
    with pytest.raises(UnitError) as target_unknown:
        convert(1, "MMT", "mm")
    assert target_unknown.value.reason == "unknown_unit"
    with pytest.raises(UnitError) as mismatch:
        convert(1, "CEL", "MMT")
    assert mismatch.value.reason == "unit_mismatch"
    assert "temperature" in str(mismatch.value) and "length" in str(mismatch.value)
