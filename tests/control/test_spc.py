"""SPC charts, capability and run rules, checked against published reference values.

Sources (each test names the one it checks):

[qcc-tour]  L. Scrucca, "A quick tour of qcc" (qcc 3.0 vignette, 19 Feb 2018), rendered output
            in github.com/luca-scr/qcc, docs/articles/qcc_a_quick_tour.html.
[qcc-pc]    qcc reference page "Process capability analysis" (processCapability, qcc 3.0),
            github.com/luca-scr/qcc, docs/reference/processCapability.html.
[qcc-data]  the qcc data files pistonrings.txt, orangejuice.txt, pcmanufact.txt
            (github.com/luca-scr/qcc, data/), and the pistonrings reference page's
            describe() output (StdDev 0.01007 for the 125 trial observations).
[NIST-616]  NIST/SEMATECH e-Handbook of Statistical Methods, 6.1.6 "What is Process Capability?"
            (itl.nist.gov/div898/handbook/pmc/section1/pmc16.htm): example USL = 20, LSL = 8,
            mean 16, sigma 2 -> Cp 1.0, Cpu 0.6667, Cpl 1.3333, Cpk 0.6667.
[NIST-6321] e-Handbook 6.3.2.1 "Shewhart X-bar and R and S Control Charts" (pmc321.htm): table
            of A2, D3, D4 (rows n = 2: 1.880, 0, 3.267 and n = 10: 0.308, 0.223, 1.777).
[NIST-6322] e-Handbook 6.3.2.2 "Individuals Control Charts" (pmc322.htm): flow rate of 10
            batches, mean 50.81, MR-bar 1.8778, UCL 55.8041, LCL 45.8159 (MR-bar/1.128).
[NIST-chi]  e-Handbook 1.3.6.7.4 "Critical Values of the Chi-Square Distribution" (eda3674.htm).
[SixSigma]  R package SixSigma, vignette "Shewhart Constants for Control Charts" (n = 2..24).

The NIST pages were read through transcriptions in public repositories that cite them (the page
bodies themselves were not retrievable here); the values agree across those transcriptions.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist

import pytest

from node.control import spc
from node.control.spc import SigmaMethod, SpecLimits
from node.errors import QnodeError, SpcError

DATA = Path(__file__).parent / "data"


def pistonrings() -> dict[int, list[float]]:
    """[qcc-data] pistonrings: sample number -> its 5 diameters."""
    samples: dict[int, list[float]] = {}
    with (DATA / "pistonrings.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            samples.setdefault(int(row["sample"]), []).append(float(row["diameter"]))
    return samples


def trial_samples() -> list[list[float]]:
    samples = pistonrings()
    return [samples[number] for number in range(1, 26)]


def approx(value: float, digits: int) -> object:
    """Equal to ``value`` as printed with ``digits`` decimals."""
    return pytest.approx(value, abs=0.5 * 10**-digits)


def printed(value: float, significant: int = 7) -> object:
    """Equal to ``value`` as printed with ``significant`` digits (R's default is 7)."""
    exponent = math.floor(math.log10(abs(value))) - significant + 1
    return pytest.approx(value, abs=0.5 * 10**exponent)


def assert_estimate(
    estimate: spc.Estimate | None, expected: tuple[float, ...], digits: int
) -> None:
    """``estimate`` (value, lower, upper) as printed with ``digits`` decimals."""
    assert estimate is not None
    for got, want in zip((estimate.value, estimate.lower, estimate.upper), expected, strict=True):
        assert got == approx(want, digits)


# -- the data transcription ----------------------------------------------------------------


def quartile_summary(values: Sequence[float]) -> list[float]:
    """R's summary(): min, type-7 quartiles, mean, max."""
    ordered = sorted(values)

    def quantile(p: float) -> float:
        position = p * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (position - low) * (ordered[high] - ordered[low])

    mean = sum(ordered) / len(ordered)
    return [ordered[0], quantile(0.25), quantile(0.5), mean, quantile(0.75), ordered[-1]]


def test_pistonrings_transcription_matches_qcc_group_summaries() -> None:
    """[qcc-tour] x-bar and R group summaries of samples 1-25 and 26-40."""
    samples = pistonrings()
    assert sorted(samples) == list(range(1, 41))
    assert all(len(values) == 5 for values in samples.values())
    trial = [samples[n] for n in range(1, 26)]
    later = [samples[n] for n in range(26, 41)]
    means = quartile_summary([sum(s) / 5 for s in trial])
    assert means == pytest.approx([73.9902, 73.9982, 74.0008, 74.00118, 74.0042, 74.0102], abs=6e-6)
    ranges = quartile_summary([max(s) - min(s) for s in trial])
    assert ranges == pytest.approx([0.008, 0.018, 0.021, 0.02276, 0.026, 0.039], abs=1e-9)
    later_means = quartile_summary([sum(s) / 5 for s in later])
    assert later_means == pytest.approx(
        [73.9922, 74.0029, 74.0072, 74.00765, 74.0127, 74.0234], abs=6e-6
    )
    later_ranges = quartile_summary([max(s) - min(s) for s in later])
    assert later_ranges == pytest.approx([0.014, 0.019, 0.025, 0.02453333, 0.0275, 0.044], abs=1e-8)


# -- chart constants -----------------------------------------------------------------------


def range_moments(n: int, step: float = 0.05) -> tuple[float, float]:
    """E[R] and SD[R] for the range of n standard normals, by Simpson's rule.

    E[R] = ∫ 1 - Φ(x)^n - (1 - Φ(x))^n dx; F_R(w) = n ∫ φ(x) (Φ(x + w) - Φ(x))^(n-1) dx and
    E[R²] = 2 ∫ w (1 - F_R(w)) dw. The w grid shares the x grid's step, so Φ(x + w) is a lookup.
    """
    normal = NormalDist()
    low, high, w_max = -8.0, 8.0, 12.0
    nx, nw = round((high - low) / step), round(w_max / step)
    cdf = [normal.cdf(low + i * step) for i in range(nx + nw + 1)]
    pdf = [normal.pdf(low + i * step) for i in range(nx + 1)]

    def weight(k: int, last: int) -> float:
        return 1.0 if k in (0, last) else 4.0 if k % 2 else 2.0

    mean = (
        step / 3 * sum(weight(i, nx) * (1 - cdf[i] ** n - (1 - cdf[i]) ** n) for i in range(nx + 1))
    )
    second_moment = 0.0
    for j in range(nw + 1):
        below_w = (
            n
            * step
            / 3
            * sum(weight(i, nx) * pdf[i] * (cdf[i + j] - cdf[i]) ** (n - 1) for i in range(nx + 1))
        )
        second_moment += weight(j, nw) * j * step * (1 - below_w)
    second_moment *= 2 * step / 3
    return mean, math.sqrt(second_moment - mean**2)


@pytest.mark.parametrize("n", range(2, 26))
def test_d2_is_the_rounded_expected_range_and_d3_its_standard_deviation(n: int) -> None:
    constants = spc.chart_constants(n)
    expected_range, range_sd = range_moments(n)
    assert constants.d2 == approx(expected_range, 3)
    assert constants.d3 == pytest.approx(range_sd, abs=2e-7)


def test_d2_for_two_is_2_over_root_pi_and_d3_is_exact() -> None:
    constants = spc.chart_constants(2)
    assert constants.d2 == approx(2 / math.sqrt(math.pi), 3)
    assert constants.d3 == pytest.approx(math.sqrt(2 - 4 / math.pi), abs=1e-7)


# [SixSigma] n: d2, d3, c4, A2, D3, D4, B3, B4 (four decimals, from exact d2 and d3).
SIXSIGMA_TABLE = {
    2: (1.1284, 0.8525, 0.7979, 1.8800, 0.0000, 3.2665, 0.0000, 3.2665),
    3: (1.6926, 0.8884, 0.8862, 1.0233, 0.0000, 2.5746, 0.0000, 2.5682),
    4: (2.0588, 0.8798, 0.9213, 0.7286, 0.0000, 2.2821, 0.0000, 2.2660),
    5: (2.3259, 0.8641, 0.9400, 0.5768, 0.0000, 2.1145, 0.0000, 2.0890),
    6: (2.5344, 0.8480, 0.9515, 0.4832, 0.0000, 2.0038, 0.0304, 1.9696),
    7: (2.7044, 0.8332, 0.9594, 0.4193, 0.0757, 1.9243, 0.1177, 1.8823),
    8: (2.8472, 0.8198, 0.9650, 0.3725, 0.1362, 1.8638, 0.1851, 1.8149),
    9: (2.9700, 0.8078, 0.9693, 0.3367, 0.1840, 1.8160, 0.2391, 1.7609),
    10: (3.0775, 0.7971, 0.9727, 0.3083, 0.2230, 1.7770, 0.2837, 1.7163),
    11: (3.1729, 0.7873, 0.9754, 0.2851, 0.2556, 1.7444, 0.3213, 1.6787),
    12: (3.2585, 0.7785, 0.9776, 0.2658, 0.2833, 1.7167, 0.3535, 1.6465),
    13: (3.3360, 0.7704, 0.9794, 0.2494, 0.3072, 1.6928, 0.3816, 1.6184),
    14: (3.4068, 0.7630, 0.9810, 0.2354, 0.3281, 1.6719, 0.4062, 1.5938),
    15: (3.4718, 0.7562, 0.9823, 0.2231, 0.3466, 1.6534, 0.4282, 1.5718),
    16: (3.5320, 0.7499, 0.9835, 0.2123, 0.3630, 1.6370, 0.4479, 1.5521),
    17: (3.5879, 0.7441, 0.9845, 0.2028, 0.3779, 1.6221, 0.4657, 1.5343),
    18: (3.6401, 0.7386, 0.9854, 0.1943, 0.3913, 1.6087, 0.4818, 1.5182),
    19: (3.6890, 0.7335, 0.9862, 0.1866, 0.4035, 1.5965, 0.4966, 1.5034),
    20: (3.7349, 0.7287, 0.9869, 0.1796, 0.4147, 1.5853, 0.5102, 1.4898),
    21: (3.7783, 0.7242, 0.9876, 0.1733, 0.4250, 1.5750, 0.5228, 1.4772),
    22: (3.8194, 0.7199, 0.9882, 0.1675, 0.4345, 1.5655, 0.5344, 1.4656),
    23: (3.8583, 0.7159, 0.9887, 0.1621, 0.4434, 1.5566, 0.5452, 1.4548),
}


@pytest.mark.parametrize(("n", "row"), sorted(SIXSIGMA_TABLE.items()))
def test_constants_match_the_sixsigma_table(n: int, row: tuple[float, ...]) -> None:
    """[SixSigma] computes A2, D3 and D4 from the exact d2; ours come from the three-decimal d2
    (at most 3.4e-4 off, relatively, at n = 2), so they may differ by that much."""
    c = spc.chart_constants(n)
    ours = (
        c.d2, c.d3, c.c4, c.xbar_range_factor, c.range_lcl_factor, c.range_ucl_factor,
        c.sd_lcl_factor, c.sd_ucl_factor,
    )  # fmt: skip
    rounding = 5e-5
    tolerances = (5.5e-4, rounding, rounding, None, 8e-4, 8e-4, rounding, rounding)
    for got, want, tolerance in zip(ours, row, tolerances, strict=True):
        if tolerance is None:  # A2 = 3/(d2·√n) carries d2's relative rounding
            assert got == pytest.approx(want, rel=3.5e-4, abs=rounding)
        else:
            assert got == pytest.approx(want, abs=tolerance)


@pytest.mark.parametrize(
    ("n", "a2", "d3_factor", "d4"), [(2, 1.880, 0.0, 3.267), (10, 0.308, 0.223, 1.777)]
)
def test_range_factors_match_nist(n: int, a2: float, d3_factor: float, d4: float) -> None:
    """[NIST-6321] A2, D3, D4 as printed (three decimals), except A2 for n = 2: with the
    d2 = 1.128 that NIST's own individuals example divides by, 3/(1.128·√2) is 1.8806."""
    c = spc.chart_constants(n)
    a2_tolerance = 1e-3 if n == 2 else 5e-4
    assert c.xbar_range_factor == pytest.approx(a2, abs=a2_tolerance)
    assert c.range_lcl_factor == approx(d3_factor, 3)
    assert c.range_ucl_factor == approx(d4, 3)


def test_a3_and_s_factors_follow_c4() -> None:
    c = spc.chart_constants(5)
    assert c.c4 == pytest.approx(0.9399856, abs=1e-7)
    assert c.xbar_sd_factor == approx(1.427, 3)
    assert c.sd_lcl_factor == 0.0
    assert c.sd_ucl_factor == approx(2.089, 3)


@pytest.mark.parametrize("n", [1, 26])
def test_subgroup_sizes_outside_the_tables_are_refused(n: int) -> None:
    with pytest.raises(SpcError, match=r"outside 2\.\.25"):
        spc.chart_constants(n)


# -- variables charts on the piston rings --------------------------------------------------


def test_xbar_r_chart_of_the_piston_rings_matches_qcc() -> None:
    """[qcc-tour] xbar chart: center 74.00118, sd 0.009785039, limits 73.98805 / 74.0143;
    R chart: center 0.02276, limits 0 / 0.04812533."""
    chart = spc.xbar_r_chart(trial_samples())
    assert chart.subgroup_size == 5
    assert chart.location.center == approx(74.00118, 5)
    assert chart.sigma_within == printed(0.009785039)
    lcl, ucl = chart.location.constant_limits or (math.nan, math.nan)
    assert (lcl, ucl) == (printed(73.98805), printed(74.0143))
    assert chart.location.beyond_limits == ()
    assert chart.spread.center == pytest.approx(0.02276, abs=1e-12)
    lcl, ucl = chart.spread.constant_limits or (math.nan, math.nan)
    assert lcl == 0.0
    # qcc's d3(5) table entry (about 0.864085) is 3e-6 above the integral (0.8640819).
    assert ucl == pytest.approx(0.04812533, rel=5e-6)
    assert chart.spread.beyond_limits == ()


def test_xbar_s_chart_of_the_piston_rings_matches_qcc() -> None:
    """[qcc-tour] S chart: center 0.009240037, sd 0.009829977, limits 0 / 0.01930242."""
    chart = spc.xbar_s_chart(trial_samples())
    assert chart.spread.center == printed(0.009240037)
    assert chart.sigma_within == printed(0.009829977)
    assert chart.spread.constant_limits == (0.0, printed(0.01930242))
    lcl, ucl = chart.location.constant_limits or (math.nan, math.nan)
    a3 = spc.chart_constants(5).xbar_sd_factor
    assert ucl == pytest.approx(chart.location.center + a3 * chart.spread.center, rel=1e-12)
    assert lcl == pytest.approx(chart.location.center - a3 * chart.spread.center, rel=1e-12)


def test_individuals_chart_matches_the_nist_flow_rate_example() -> None:
    """[NIST-6322] mean 50.81, MR-bar 1.8778, UCL 55.8041, LCL 45.8159."""
    flow_rates = [49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1]
    chart = spc.imr_chart(flow_rates)
    assert chart.location.center == pytest.approx(50.81, abs=1e-12)
    assert chart.spread.center == approx(1.8778, 4)
    assert chart.location.constant_limits == pytest.approx((45.8159, 55.8041), abs=5e-5)
    assert chart.location.beyond_limits == ()
    assert len(chart.spread.points) == len(flow_rates) - 1
    assert chart.spread.points[0] == pytest.approx(2.0)


def test_individuals_chart_matches_qcc_on_montgomerys_viscosity() -> None:
    """[qcc-tour] xbar.one chart: center 33.52333, sd 0.4261651, limits 32.24484 / 34.80183."""
    viscosity = [33.75, 33.05, 34, 33.81, 33.46, 34.02, 33.68, 33.27, 33.49, 33.20,
                 33.62, 33.00, 33.54, 33.12, 33.84]  # fmt: skip
    chart = spc.imr_chart(viscosity)
    assert chart.location.center == approx(33.52333, 5)
    assert chart.sigma_within == printed(0.4261651)
    assert chart.location.constant_limits == (printed(32.24484), printed(34.80183))


# -- attribute charts ----------------------------------------------------------------------

# [qcc-data] orangejuice, trial samples 1-30: defective cans in samples of 50.
ORANGE_JUICE_DEFECTIVES = [12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22,
                           8, 10, 5, 13, 11, 20, 18, 24, 15, 9, 12, 7, 13, 9, 6]  # fmt: skip
# [qcc-data] pcmanufact: nonconformities in 20 samples of 5 computers.
PC_NONCONFORMITIES = [10, 12, 8, 14, 10, 16, 11, 7, 10, 15, 9, 5, 7, 11, 12, 6, 8, 10, 7, 5]


def test_p_chart_matches_qcc_on_the_orange_juice_cans() -> None:
    """[qcc-tour] center 0.2313333, limits 0.05242755 / 0.4102391; qcc's help names samples 15
    and 23 as the out-of-control ones."""
    chart = spc.p_chart(ORANGE_JUICE_DEFECTIVES, [50] * 30)
    assert chart.center == printed(0.2313333)
    assert chart.constant_limits == (printed(0.05242755), printed(0.4102391))
    assert chart.beyond_limits == (14, 22)


def test_u_chart_matches_qcc_on_the_pc_nonconformities() -> None:
    """[qcc-tour] center 1.93, limits 0.06613305 / 3.793867."""
    chart = spc.u_chart(PC_NONCONFORMITIES, [5] * 20)
    assert chart.center == pytest.approx(1.93, abs=1e-12)
    assert chart.constant_limits == (printed(0.06613305), printed(3.793867))
    assert chart.beyond_limits == ()


def test_p_chart_limits_vary_with_the_sample_size() -> None:
    chart = spc.p_chart([5, 20, 2, 30], [100, 400, 25, 200])
    p_bar = 57 / 725
    assert chart.center == pytest.approx(p_bar)
    assert chart.constant_limits is None
    for size, low, high in zip(
        [100, 400, 25, 200], chart.lower_limits, chart.upper_limits, strict=True
    ):
        width = 3 * math.sqrt(p_bar * (1 - p_bar) / size)
        assert high == pytest.approx(p_bar + width)
        assert low == pytest.approx(max(0.0, p_bar - width))
    assert chart.lower_limits[2] == 0.0  # floored: the n = 25 limit would be negative
    assert chart.beyond_limits == (3,)  # 30/200 = 0.15 > its UCL


def test_u_chart_limits_vary_with_the_inspected_units() -> None:
    """The dyed cloth data of qcc (rolls of 8 to 13 inspection units)."""
    defects = [14, 12, 20, 11, 7, 10, 21, 16, 19, 23]
    units = [10, 8, 13, 10, 9.5, 10, 12, 10.5, 12, 12.5]
    chart = spc.u_chart(defects, units)
    u_bar = 153 / 107.5
    assert chart.center == pytest.approx(u_bar)
    for size, low, high in zip(units, chart.lower_limits, chart.upper_limits, strict=True):
        assert high == pytest.approx(u_bar + 3 * math.sqrt(u_bar / size))
        assert low == pytest.approx(u_bar - 3 * math.sqrt(u_bar / size))
    assert chart.sigmas[1] > chart.sigmas[2]  # fewer units, wider limits


# -- coefficient of variation --------------------------------------------------------------


def test_coefficient_of_variation_is_sd_over_mean() -> None:
    assert spc.coefficient_of_variation([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(
        math.sqrt(32 / 7) / 5
    )
    assert spc.coefficient_of_variation([-1.0, -3.0]) == pytest.approx(-math.sqrt(2) / 2)


def test_subgroup_coefficients_of_variation() -> None:
    cvs = spc.subgroup_coefficients_of_variation([[10.0, 10.1, 9.9], [20.0, 20.0, 20.6]])
    assert cvs == pytest.approx((0.01, math.sqrt(0.12) / 20.2))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "at least 2 values, got 0"),
        ([3.0], "at least 2 values, got 1"),
        ([1.0, -1.0], "the mean is 0"),
        ([1.0, math.nan], "value 2 is nan"),
    ],
)
def test_coefficient_of_variation_refuses(values: list[float], message: str) -> None:
    with pytest.raises(SpcError, match=message):
        spc.coefficient_of_variation(values)


def test_subgroup_cv_names_the_subgroup() -> None:
    with pytest.raises(SpcError, match=r"subgroup 2: .*at least 2 values"):
        spc.subgroup_coefficients_of_variation([[1.0, 2.0], [3.0]])


# -- capability ----------------------------------------------------------------------------


def test_capability_of_the_piston_rings_matches_qcc() -> None:
    """[qcc-pc] spec 73.95 / 74.05: 125 obs, center 74.00118, StdDev 0.009785039,
    Cp 1.703 (1.491, 1.915), Cp_l 1.743, Cp_u 1.663, Cp_k 1.663 (1.448, 1.878),
    nothing expected or observed out of spec (qcc prints expected tails below 0.01 % as 0)."""
    study = spc.capability(trial_samples(), SpecLimits(73.95, 74.05))
    assert study.count == 125
    assert study.mean == approx(74.00118, 5)
    assert study.sigma_within == printed(0.009785039)
    assert_estimate(study.cp, (1.703, 1.491, 1.915), 3)
    assert study.cpl is not None and study.cpl.value == approx(1.743, 3)
    assert study.cpu is not None and study.cpu.value == approx(1.663, 3)
    assert_estimate(study.cpk, (1.663, 1.448, 1.878), 3)
    assert study.observed_ppm == spc.PartsPerMillion(0.0, 0.0)
    assert study.expected_within_ppm.total < 100  # < 0.01 %


def test_capability_four_decimals_match_the_qcc_tour() -> None:
    """[qcc-tour] (target 74.02, which changes only Cpm): Cp 1.7033 (1.4914, 1.9148),
    Cp_k 1.6632 (1.4481, 1.8783); spec 73.99 / 74.01: Cp 0.3407 (0.2983, 0.3830),
    Cp_l 0.3807, Cp_u 0.3006, Cp_k 0.3006 (0.2312, 0.3700)."""
    wide = spc.capability(trial_samples(), SpecLimits(73.95, 74.05))
    assert_estimate(wide.cp, (1.7033, 1.4914, 1.9148), 4)
    assert_estimate(wide.cpk, (1.6632, 1.4481, 1.8783), 4)
    narrow = spc.capability(trial_samples(), SpecLimits(73.99, 74.01))
    assert_estimate(narrow.cp, (0.3407, 0.2983, 0.3830), 4)
    assert narrow.cpl is not None and narrow.cpl.value == approx(0.3807, 4)
    assert narrow.cpu is not None and narrow.cpu.value == approx(0.3006, 4)
    assert_estimate(narrow.cpk, (0.3006, 0.2312, 0.3700), 4)


def test_out_of_spec_fractions_match_qcc() -> None:
    """[qcc-pc] spec 73.99 / 74.01 prints Exp<LSL 0.13, Obs<LSL 0.12, Exp>USL 0.18,
    Obs>USL 0.16 (fractions, two significant digits, though labelled %)."""
    study = spc.capability(trial_samples(), SpecLimits(73.99, 74.01))
    assert study.observed_ppm == spc.PartsPerMillion(120_000.0, 160_000.0)  # 15 and 20 of 125
    below, above = study.expected_within_ppm.below, study.expected_within_ppm.above
    assert below is not None and above is not None
    assert round(below / 1e6, 2) == 0.13
    assert round(above / 1e6, 2) == 0.18
    sigma = study.sigma_within
    assert below == pytest.approx(NormalDist(study.mean, sigma).cdf(73.99) * 1e6)


def test_one_sided_upper_tail_matches_qcc() -> None:
    """[qcc-pc] spec 73.99 / 74.1: Cp 1.874 (1.641, 2.106), Cp_l 0.381, Cp_u 3.367,
    Cp_k 0.381 (0.305, 0.456), Exp>USL 0, Obs>USL 0."""
    study = spc.capability(trial_samples(), SpecLimits(73.99, 74.1))
    assert_estimate(study.cp, (1.874, 1.641, 2.106), 3)
    assert study.cpu is not None and study.cpu.value == approx(3.367, 3)
    assert_estimate(study.cpk, (0.381, 0.305, 0.456), 3)
    assert study.observed_ppm.above == 0.0


def test_qcc_side_intervals_are_bissell_at_a_one_sided_z() -> None:
    """[qcc-pc] prints Cp_l 1.743 (1.555, 1.932) and Cp_u 1.663 (1.483, 1.844): Bissell's
    interval with qnorm(0.95), i.e. our two-sided interval at 90 %. Ours, at 95 %, is wider."""
    study = spc.capability(trial_samples(), SpecLimits(73.95, 74.05))
    assert study.cpl is not None and study.cpu is not None
    cpl_90 = spc.bissell_interval(study.cpl.value, study.count, 0.90)
    cpu_90 = spc.bissell_interval(study.cpu.value, study.count, 0.90)
    assert_estimate(cpl_90, (1.743, 1.555, 1.932), 3)
    assert_estimate(cpu_90, (1.663, 1.483, 1.844), 3)
    assert study.cpl.lower < cpl_90.lower


def test_overall_sigma_is_the_sample_sd_of_all_values() -> None:
    """[qcc-data] describe(pistonrings, by = trial): StdDev 0.01007 for the trial rows."""
    study = spc.capability(trial_samples(), SpecLimits(73.95, 74.05))
    assert study.sigma_overall == approx(0.01007, 5)
    assert study.pp is not None
    assert study.pp.value == pytest.approx(0.1 / (6 * study.sigma_overall))
    assert study.ppk.value == pytest.approx((74.05 - study.mean) / (3 * study.sigma_overall))
    ppk = spc.bissell_interval(study.ppk.value, 125, 0.95)
    assert study.ppk == ppk


def test_capability_indices_match_the_nist_example() -> None:
    """[NIST-616] USL 20, LSL 8, mean 16, sigma 2."""
    indices = spc.capability_indices(16.0, 2.0, SpecLimits(lsl=8.0, usl=20.0))
    assert indices.potential == pytest.approx(1.0)
    assert indices.upper == approx(0.6667, 4)
    assert indices.lower == approx(1.3333, 4)
    assert indices.k == approx(0.6667, 4)


def test_one_sided_specifications() -> None:
    upper_only = spc.capability_indices(16.0, 2.0, SpecLimits(usl=20.0))
    assert upper_only.potential is None and upper_only.lower is None
    assert upper_only.k == upper_only.upper == pytest.approx(2 / 3)
    lower_only = spc.capability(trial_samples(), SpecLimits(lsl=73.95))
    assert lower_only.cp is None and lower_only.pp is None and lower_only.cpu is None
    assert lower_only.cpl is not None
    assert lower_only.cpk == lower_only.cpl
    assert lower_only.observed_ppm.above is None
    assert lower_only.expected_within_ppm.above is None
    assert lower_only.expected_within_ppm.total == lower_only.expected_within_ppm.below


def test_within_sigma_methods() -> None:
    samples = trial_samples()
    by_range = spc.capability(samples, SpecLimits(73.95, 74.05), SigmaMethod.RANGE)
    by_sd = spc.capability(samples, SpecLimits(73.95, 74.05), SigmaMethod.STANDARD_DEVIATION)
    assert by_range.sigma_within == printed(0.009785039)
    assert by_sd.sigma_within == printed(0.009829977)
    flow_rates = [49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1]
    individuals = spc.individuals_capability(flow_rates, SpecLimits(45.0, 56.0))
    assert individuals.sigma_within == pytest.approx(1.8777777777777784 / 1.128)
    assert individuals.sigma_method is SigmaMethod.MOVING_RANGE


def test_confidence_level_changes_the_interval_width() -> None:
    samples = trial_samples()
    at_95 = spc.capability(samples, SpecLimits(73.95, 74.05))
    at_99 = spc.capability(samples, SpecLimits(73.95, 74.05), confidence=0.99)
    assert at_95.cp is not None and at_99.cp is not None
    assert at_99.cp.lower < at_95.cp.lower < at_95.cp.value < at_95.cp.upper < at_99.cp.upper
    assert at_99.cpk.upper - at_99.cpk.lower > at_95.cpk.upper - at_95.cpk.lower


# -- distributions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probability", "df", "expected"),
    [
        (0.95, 10, 18.307),
        (0.99, 10, 23.209),
        (0.05, 10, 3.940),
        (0.95, 1, 3.841),
        (0.95, 5, 11.070),
        (0.95, 30, 43.773),
        (0.99, 20, 37.566),
    ],
)
def test_chi_square_quantiles_match_the_nist_table(
    probability: float, df: int, expected: float
) -> None:
    """[NIST-chi] critical values as printed (three decimals)."""
    assert spc.chi_square_quantile(probability, df) == approx(expected, 3)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 24, 124, 999])
def test_chi_square_quantile_inverts_the_cdf(df: int) -> None:
    for probability in (0.001, 0.025, 0.5, 0.975, 0.999):
        x = spc.chi_square_quantile(probability, df)
        assert spc.chi_square_cdf(x, df) == pytest.approx(probability, abs=1e-12)


def test_chi_square_cdf_closed_forms() -> None:
    for x in (0.1, 1.0, 4.0, 30.0):
        assert spc.chi_square_cdf(x, 2) == pytest.approx(1 - math.exp(-x / 2), abs=1e-14)
        assert spc.chi_square_cdf(x, 1) == pytest.approx(math.erf(math.sqrt(x / 2)), abs=1e-14)


def test_normal_quantile() -> None:
    assert spc.normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(SpcError, match="between 0 and 1"):
        spc.normal_quantile(1.0)


# -- run rules -----------------------------------------------------------------------------
#
# Center 0, sigma 1, so each point is its own z-score; 0.5 is "zone C above", -0.5 below.

CALM = [0.5, -0.5] * 10  # alternates sides within 1 sigma: no rule but Nelson 4 and 7 fire


def rule(detect: spc.RuleDetector, points: Sequence[float], sigma: float = 1.0) -> list[int]:
    return list(detect(points, 0.0, sigma))


def test_nelson_1_one_point_beyond_3_sigma() -> None:
    assert rule(spc.nelson_1, [0.0, 3.5, 0.0, -3.01, 3.0]) == [1, 3]  # exactly 3 does not fire
    assert rule(spc.nelson_1, [2.9, -2.9]) == []
    assert rule(spc.western_electric_1, [0.0, 3.5]) == [1]


def test_nelson_2_nine_in_a_row_on_one_side() -> None:
    assert rule(spc.nelson_2, [0.1] * 8 + [-0.1]) == []
    assert rule(spc.nelson_2, [0.1] * 10) == [8, 9]
    assert rule(spc.nelson_2, [-0.2] * 9) == [8]
    assert rule(spc.nelson_2, [0.1] * 4 + [0.0] + [0.1] * 4) == []  # on the line breaks it


def test_nelson_3_six_in_a_row_trending() -> None:
    assert rule(spc.nelson_3, [0, 0.1, 0.2, 0.3, 0.4, 0.5]) == [5]
    assert rule(spc.nelson_3, [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, -0.2]) == [5, 6]
    assert rule(spc.nelson_3, [0, 0.1, 0.2, 0.3, 0.4]) == []
    assert rule(spc.nelson_3, [0, 0.1, 0.2, 0.2, 0.3, 0.4]) == []  # a tie breaks the trend


def test_nelson_4_fourteen_alternating() -> None:
    assert rule(spc.nelson_4, [0.2, -0.2] * 7) == [13]
    assert rule(spc.nelson_4, [0.2, -0.2] * 7 + [0.2]) == [13, 14]
    assert rule(spc.nelson_4, [0.2, -0.2] * 6 + [0.2]) == []
    assert rule(spc.nelson_4, [0.2, -0.2] * 3 + [-0.3] + [0.2, -0.2] * 4) == []


def test_nelson_5_two_of_three_beyond_2_sigma() -> None:
    assert rule(spc.nelson_5, [2.5, 0.0, 2.1]) == [2]
    assert rule(spc.nelson_5, [2.5, 2.1]) == [1]
    assert rule(spc.nelson_5, [2.5, 0.0, 0.0, 2.1]) == []  # 4 apart
    assert rule(spc.nelson_5, [2.5, 0.0, -2.1]) == []  # opposite sides
    assert rule(spc.nelson_5, [2.5, 2.1, 0.0]) == [1]  # not at the calm point that follows
    assert rule(spc.western_electric_2, [-2.5, -2.1]) == [1]


def test_nelson_6_four_of_five_beyond_1_sigma() -> None:
    assert rule(spc.nelson_6, [1.5, 1.2, 0.0, 1.1, 1.9]) == [4]
    assert rule(spc.nelson_6, [1.5, 1.2, 0.0, 0.0, 1.1, 1.9]) == []
    assert rule(spc.nelson_6, [-1.5, -1.2, -1.1, -1.9]) == [3]
    assert rule(spc.nelson_6, [1.5, -1.2, 1.1, -1.9, 1.3]) == []
    assert rule(spc.western_electric_3, [1.5, 1.2, 1.1, 1.9]) == [3]


def test_nelson_7_fifteen_within_1_sigma() -> None:
    assert rule(spc.nelson_7, CALM[:15]) == [14]
    assert rule(spc.nelson_7, CALM[:14]) == []
    assert rule(spc.nelson_7, [*CALM[:7], 1.2, *CALM[:7]]) == []


def test_nelson_8_eight_beyond_1_sigma_on_both_sides() -> None:
    assert rule(spc.nelson_8, [1.5, -1.5] * 4) == [7]
    assert rule(spc.nelson_8, [1.5, -1.5] * 3 + [0.5, 1.5]) == []


def test_western_electric_4_eight_on_one_side() -> None:
    assert rule(spc.western_electric_4, [0.3] * 8) == [7]
    assert rule(spc.western_electric_4, [0.3] * 7 + [-0.3]) == []


def test_rules_scale_by_sigma_per_point() -> None:
    assert rule(spc.nelson_1, [7.0, 7.0], sigma=2.0) == [0, 1]
    assert list(spc.nelson_1([7.0, 7.0], 0.0, [2.0, 3.0])) == [0]
    assert list(spc.nelson_1([17.0], 10.0, 2.0)) == [0]


def test_a_calm_sequence_fires_only_the_stratification_and_alternation_rules() -> None:
    fired = {v.rule for v in spc.rule_violations(CALM, 0.0, 1.0)}
    assert fired == {"Nelson 4", "Nelson 7"}
    assert spc.rule_violations(CALM, 0.0, 1.0, spc.WESTERN_ELECTRIC_RULES) == ()


def test_chart_rule_violations_on_the_orange_juice_p_chart() -> None:
    chart = spc.p_chart(ORANGE_JUICE_DEFECTIVES, [50] * 30)
    violations = spc.chart_rule_violations(chart)
    first = violations[0]
    assert (first.rule, first.indices) == ("Nelson 1", (14, 22))


def test_rules_refuse_bad_sigmas() -> None:
    with pytest.raises(SpcError, match="2 points but 1 sigmas"):
        spc.nelson_1([1.0, 2.0], 0.0, [1.0])
    with pytest.raises(SpcError, match="sigma of point 1 is 0"):
        spc.nelson_2([1.0], 0.0, 0.0)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subgroups", "message"),
    [
        ([[1.0, 2.0]], "at least 2 subgroups, got 1"),
        ([[1.0, 2.0], []], "subgroup 2 is empty"),
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], r"unequal sizes \(2, 3\)"),
        ([[1.0, 2.0], [1.0, math.inf]], "subgroup 2: value 2 is inf"),
        ([[1.0], [2.0]], "subgroup 1 has 1 value"),
        ([[1.0, 1.0], [2.0, 2.0]], "R̄ is 0"),
    ],
)
def test_xbar_r_chart_refuses(subgroups: list[list[float]], message: str) -> None:
    with pytest.raises(SpcError, match=message):
        spc.xbar_r_chart(subgroups)


def test_unequal_subgroups_are_fine_for_moving_range_capability() -> None:
    study = spc.capability(
        [[1.0, 2.0], [1.5], [2.5, 1.0, 2.0]], SpecLimits(0.0, 3.0), SigmaMethod.MOVING_RANGE
    )
    assert study.count == 6


@pytest.mark.parametrize(
    ("lsl", "usl", "message"),
    [
        (None, None, "give an LSL, a USL or both"),
        (2.0, 2.0, "USL 2.0 must be greater than LSL 2.0"),
        (3.0, 1.0, "USL 1.0 must be greater than LSL 3.0"),
        (math.nan, 1.0, "LSL is nan"),
    ],
)
def test_spec_limits_refuse(lsl: float | None, usl: float | None, message: str) -> None:
    with pytest.raises(SpcError, match=message):
        SpecLimits(lsl, usl)


@pytest.mark.parametrize(
    ("counts", "sizes", "message"),
    [
        ([1, 2], [10], "2 defectives but 1 sample sizes"),
        ([1], [10], "at least 2 samples"),
        ([1, 11], [10, 10], "sample 2 has 11.0 defectives out of 10.0"),
        ([1, -1], [10, 10], "counts cannot be negative"),
        ([1, 1], [10, 0], "sample 2 has size 0.0"),
        ([0, 0], [10, 10], "every sample is good"),
        ([1, math.nan], [10, 10], "value 2 is nan"),
    ],
)
def test_p_chart_refuses(counts: list[float], sizes: list[float], message: str) -> None:
    with pytest.raises(SpcError, match=message):
        spc.p_chart(counts, sizes)


def test_other_refusals() -> None:
    with pytest.raises(SpcError, match="at least 2 values, got 1"):
        spc.imr_chart([1.0])
    with pytest.raises(SpcError, match="ū = 0"):
        spc.u_chart([0, 0], [1, 1])
    with pytest.raises(SpcError, match="confidence level"):
        spc.capability(trial_samples(), SpecLimits(73.95, 74.05), confidence=1.0)


def test_spc_error_is_a_qnode_error_with_the_config_exit_code() -> None:
    assert issubclass(SpcError, QnodeError)
    assert SpcError.exit_code == 2


def test_results_are_frozen() -> None:
    chart = spc.imr_chart([1.0, 2.0, 1.5])
    with pytest.raises(AttributeError):
        chart.sigma_within = 0.0  # type: ignore[misc]
