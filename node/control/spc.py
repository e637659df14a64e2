"""Statistical process control as pure functions over sequences of floats.

Control charts (X̄-R, X̄-S, I-MR, p, u), the coefficient of variation, process capability
(Cp/Cpk from the within-subgroup sigma, Pp/Ppk from the overall sample standard deviation, with
confidence intervals and parts per million out of specification) and the run rules of Nelson and
of the Western Electric handbook.

Conventions, chosen to reproduce the published references the tests check (R's qcc package on
Montgomery's piston-ring data, the NIST/SEMATECH e-Handbook examples):

* 3-sigma limits. A point is beyond a limit only strictly (``x > UCL`` or ``x < LCL``).
* d2 is the classic three-decimal table value (1.128, 1.693, 2.059, 2.326, ...) that NIST's
  individuals example (``MR̄/1.128``) and qcc's printed sigmas use; d3 is the standard deviation
  of the range of n standard normals to seven decimals; c4 is exact. The other factors are
  derived: ``A2 = 3/(d2√n)``, ``D3 = max(0, 1 - 3·d3/d2)``, ``D4 = 1 + 3·d3/d2``,
  ``A3 = 3/(c4√n)``, ``B3 = max(0, 1 - 3·√(1-c4²)/c4)``, ``B4 = 1 + 3·√(1-c4²)/c4``, so
  limits always equal center ± 3 estimated sigmas of the plotted statistic. The price: A2 for
  n = 2 is 1.8806 where tables built on the exact d2 (1.128379) print 1.880, and A2, D3, D4 may
  differ from such tables by up to 8e-4 elsewhere (D4 for n = 3: 2.5742 here, 2.5746 there).
* Confidence intervals use N, the number of individual observations: Cp and Pp with the
  chi-square distribution on N - 1 degrees of freedom, Cpl, Cpu, Cpk and their P counterparts
  with Bissell's (1990) normal approximation ``Ĉ ± z·√(1/(9N) + Ĉ²/(2(N-1)))``.

Every malformed input raises :class:`~node.errors.SpcError` with a message naming the problem.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from node.errors import SpcError

SIGMA_MULTIPLIER = 3.0
MIN_SUBGROUP_SIZE = 2
MAX_SUBGROUP_SIZE = 25

# Expected range of n standard normals, as tabulated (ASTM, NIST, Montgomery) for n = 2..25.
_D2_TABLE = (
    1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970, 3.078, 3.173, 3.258, 3.336,
    3.407, 3.472, 3.532, 3.588, 3.640, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931,
)  # fmt: skip
# Standard deviation of that range, n = 2..25, by numerical integration (checked in the tests).
_D3_TABLE = (
    0.8525025, 0.8883680, 0.8798082, 0.8640819, 0.8480397, 0.8332053, 0.8198315, 0.8078343,
    0.7970507, 0.7873146, 0.7784783, 0.7704162, 0.7630231, 0.7562114, 0.7499081, 0.7440518,
    0.7385909, 0.7334815, 0.7286863, 0.7241733, 0.7199148, 0.7158867, 0.7120682, 0.7084408,
)  # fmt: skip

_STANDARD_NORMAL = NormalDist()
_PPM = 1_000_000.0


# -- chart constants -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChartConstants:
    """The Shewhart factors for subgroups of ``n`` (definitions in the module docstring).

    Named after what they do; the table symbols are A2 = ``xbar_range_factor``,
    D3 = ``range_lcl_factor``, D4 = ``range_ucl_factor``, A3 = ``xbar_sd_factor``,
    B3 = ``sd_lcl_factor``, B4 = ``sd_ucl_factor``.
    """

    n: int
    d2: float  # E[R]/sigma
    d3: float  # SD[R]/sigma
    c4: float  # E[S]/sigma
    xbar_range_factor: float  # A2: X-bar limits x-double-bar +/- A2 * R-bar
    range_lcl_factor: float  # D3: R chart LCL = D3 * R-bar
    range_ucl_factor: float  # D4: R chart UCL = D4 * R-bar
    xbar_sd_factor: float  # A3: X-bar limits x-double-bar +/- A3 * S-bar
    sd_lcl_factor: float  # B3: S chart LCL = B3 * S-bar
    sd_ucl_factor: float  # B4: S chart UCL = B4 * S-bar


def c4(n: int) -> float:
    """E[S]/sigma for samples of ``n`` normal values: √(2/(n-1))·Γ(n/2)/Γ((n-1)/2), exact."""
    if n < 2:
        raise SpcError(f"c4 needs a sample size of at least 2, got {n}")
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


def chart_constants(n: int) -> ChartConstants:
    """The factors for subgroup size ``n`` (2..25)."""
    if not MIN_SUBGROUP_SIZE <= n <= MAX_SUBGROUP_SIZE:
        raise SpcError(
            f"subgroup size {n} is outside {MIN_SUBGROUP_SIZE}..{MAX_SUBGROUP_SIZE}, "
            "the range the chart constants cover"
        )
    d2 = _D2_TABLE[n - 2]
    d3 = _D3_TABLE[n - 2]
    c4_n = c4(n)
    spread_of_s = SIGMA_MULTIPLIER * math.sqrt(1.0 - c4_n**2) / c4_n
    return ChartConstants(
        n=n,
        d2=d2,
        d3=d3,
        c4=c4_n,
        xbar_range_factor=SIGMA_MULTIPLIER / (d2 * math.sqrt(n)),
        range_lcl_factor=max(0.0, 1.0 - SIGMA_MULTIPLIER * d3 / d2),
        range_ucl_factor=1.0 + SIGMA_MULTIPLIER * d3 / d2,
        xbar_sd_factor=SIGMA_MULTIPLIER / (c4_n * math.sqrt(n)),
        sd_lcl_factor=max(0.0, 1.0 - spread_of_s),
        sd_ucl_factor=1.0 + spread_of_s,
    )


# -- input checks --------------------------------------------------------------------------


def _finite(values: Sequence[float], what: str) -> tuple[float, ...]:
    checked = tuple(float(v) for v in values)
    for index, value in enumerate(checked):
        if not math.isfinite(value):
            raise SpcError(f"{what}: value {index + 1} is {value}, not a finite number")
    return checked


def _subgroups(
    subgroups: Sequence[Sequence[float]], *, equal_sizes: bool, min_size: int = 1
) -> tuple[tuple[float, ...], ...]:
    if len(subgroups) < 2:
        raise SpcError(f"need at least 2 subgroups, got {len(subgroups)}")
    checked = []
    for number, subgroup in enumerate(subgroups, start=1):
        if len(subgroup) == 0:
            raise SpcError(f"subgroup {number} is empty")
        if len(subgroup) < min_size:
            raise SpcError(
                f"subgroup {number} has {len(subgroup)} value(s); at least {min_size} needed"
            )
        checked.append(_finite(subgroup, f"subgroup {number}"))
    sizes = {len(subgroup) for subgroup in checked}
    if equal_sizes and len(sizes) > 1:
        raise SpcError(
            f"subgroups have unequal sizes ({', '.join(map(str, sorted(sizes)))}); "
            "this chart needs one subgroup size"
        )
    return tuple(checked)


def _positive_sigma(sigma: float, what: str) -> float:
    if sigma <= 0.0:
        raise SpcError(f"{what} is 0: the data show no variation, so limits would collapse")
    return sigma


# -- control charts ------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlChart:
    """One chart panel: the plotted statistic, its center line and per-point limits.

    ``sigmas`` holds the standard error of each plotted point (the zone width the run rules use);
    limits vary per point only where sample sizes do (p and u charts). ``beyond_limits`` lists
    the 0-based indices of points strictly above their upper or below their lower limit.
    """

    statistic: str
    points: tuple[float, ...]
    center: float
    lower_limits: tuple[float, ...]
    upper_limits: tuple[float, ...]
    sigmas: tuple[float, ...]
    beyond_limits: tuple[int, ...]

    @property
    def constant_limits(self) -> tuple[float, float] | None:
        """``(LCL, UCL)`` when every point shares them, else None."""
        if len(set(self.lower_limits)) == 1 and len(set(self.upper_limits)) == 1:
            return self.lower_limits[0], self.upper_limits[0]
        return None


@dataclass(frozen=True)
class VariablesChart:
    """A location chart (X̄ or individuals) with its spread chart (R, S or moving range)."""

    kind: str
    location: ControlChart
    spread: ControlChart
    sigma_within: float
    subgroup_size: int


def _chart(
    statistic: str,
    points: Sequence[float],
    center: float,
    sigmas: Sequence[float],
    lower_floor: float | None = None,
    upper_ceiling: float | None = None,
) -> ControlChart:
    lower = [center - SIGMA_MULTIPLIER * s for s in sigmas]
    upper = [center + SIGMA_MULTIPLIER * s for s in sigmas]
    if lower_floor is not None:
        lower = [max(lower_floor, value) for value in lower]
    if upper_ceiling is not None:
        upper = [min(upper_ceiling, value) for value in upper]
    limits = zip(points, lower, upper, strict=True)
    beyond = tuple(i for i, (x, lo, hi) in enumerate(limits) if x < lo or x > hi)
    return ControlChart(
        statistic, tuple(points), center, tuple(lower), tuple(upper), tuple(sigmas), beyond
    )


def _chart_with_factors(
    statistic: str, points: Sequence[float], center: float, lower: float, upper: float
) -> ControlChart:
    """A chart whose limits come from tabulated factors (R and S charts: lower limit floored)."""
    sigma = (upper - center) / SIGMA_MULTIPLIER
    count = len(points)
    beyond = tuple(i for i, x in enumerate(points) if x < lower or x > upper)
    return ControlChart(
        statistic,
        tuple(points),
        center,
        (lower,) * count,
        (upper,) * count,
        (sigma,) * count,
        beyond,
    )


def xbar_r_chart(subgroups: Sequence[Sequence[float]]) -> VariablesChart:
    """X̄ and R charts: X̄ limits x̿ ± A2·R̄, R limits D3·R̄ and D4·R̄, sigma = R̄/d2."""
    checked = _subgroups(subgroups, equal_sizes=True, min_size=MIN_SUBGROUP_SIZE)
    constants = chart_constants(len(checked[0]))
    means = [statistics.fmean(s) for s in checked]
    ranges = [max(s) - min(s) for s in checked]
    grand_mean = statistics.fmean(means)
    mean_range = statistics.fmean(ranges)
    sigma = _positive_sigma(mean_range / constants.d2, "the average range R̄")
    standard_error = sigma / math.sqrt(constants.n)
    location = _chart("mean", means, grand_mean, [standard_error] * len(means))
    spread = _chart_with_factors(
        "range",
        ranges,
        mean_range,
        constants.range_lcl_factor * mean_range,
        constants.range_ucl_factor * mean_range,
    )
    return VariablesChart("xbar-r", location, spread, sigma, constants.n)


def xbar_s_chart(subgroups: Sequence[Sequence[float]]) -> VariablesChart:
    """X̄ and S charts: X̄ limits x̿ ± A3·S̄, S limits B3·S̄ and B4·S̄, sigma = S̄/c4."""
    checked = _subgroups(subgroups, equal_sizes=True, min_size=MIN_SUBGROUP_SIZE)
    constants = chart_constants(len(checked[0]))
    means = [statistics.fmean(s) for s in checked]
    deviations = [statistics.stdev(s) for s in checked]
    grand_mean = statistics.fmean(means)
    mean_deviation = statistics.fmean(deviations)
    sigma = _positive_sigma(mean_deviation / constants.c4, "the average standard deviation S̄")
    standard_error = sigma / math.sqrt(constants.n)
    location = _chart("mean", means, grand_mean, [standard_error] * len(means))
    spread = _chart_with_factors(
        "standard deviation",
        deviations,
        mean_deviation,
        constants.sd_lcl_factor * mean_deviation,
        constants.sd_ucl_factor * mean_deviation,
    )
    return VariablesChart("xbar-s", location, spread, sigma, constants.n)


def moving_ranges(values: Sequence[float]) -> tuple[float, ...]:
    """``|x[i+1] - x[i]|`` for consecutive values (one fewer than the values)."""
    return tuple(abs(b - a) for a, b in itertools.pairwise(values))


def imr_chart(values: Sequence[float]) -> VariablesChart:
    """Individuals and moving-range charts: sigma = MR̄/1.128 (moving range of 2).

    Moving-range point ``k`` is ``|x[k+1] - x[k]|``, so its indices run one behind the values'.
    """
    checked = _finite(values, "values")
    if len(checked) < 2:
        raise SpcError(f"an individuals chart needs at least 2 values, got {len(checked)}")
    constants = chart_constants(2)
    ranges = moving_ranges(checked)
    mean_moving_range = statistics.fmean(ranges)
    sigma = _positive_sigma(mean_moving_range / constants.d2, "the average moving range MR̄")
    location = _chart("individual", checked, statistics.fmean(checked), [sigma] * len(checked))
    spread = _chart_with_factors(
        "moving range",
        ranges,
        mean_moving_range,
        constants.range_lcl_factor * mean_moving_range,
        constants.range_ucl_factor * mean_moving_range,
    )
    return VariablesChart("imr", location, spread, sigma, 1)


def _counts_and_sizes(
    counts: Sequence[float], sizes: Sequence[float], what: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    checked_counts = _finite(counts, what)
    checked_sizes = _finite(sizes, "sample sizes")
    if len(checked_counts) != len(checked_sizes):
        raise SpcError(
            f"{len(checked_counts)} {what} but {len(checked_sizes)} sample sizes: one each needed"
        )
    if len(checked_counts) < 2:
        raise SpcError(f"need at least 2 samples, got {len(checked_counts)}")
    for number, (count, size) in enumerate(zip(checked_counts, checked_sizes, strict=True), 1):
        if size <= 0:
            raise SpcError(f"sample {number} has size {size}; sizes must be positive")
        if count < 0:
            raise SpcError(f"sample {number} has {count} {what}; counts cannot be negative")
    return checked_counts, checked_sizes


def p_chart(defectives: Sequence[float], sizes: Sequence[float]) -> ControlChart:
    """Fraction-defective chart: p̄ = Σd/Σn, limits p̄ ± 3·√(p̄(1-p̄)/nᵢ) clipped to [0, 1]."""
    counts, sample_sizes = _counts_and_sizes(defectives, sizes, "defectives")
    for number, (count, size) in enumerate(zip(counts, sample_sizes, strict=True), 1):
        if count > size:
            raise SpcError(f"sample {number} has {count} defectives out of {size} inspected")
    p_bar = sum(counts) / sum(sample_sizes)
    if p_bar in (0.0, 1.0):
        raise SpcError(f"every sample is {'good' if p_bar == 0 else 'defective'}: p̄ = {p_bar}")
    points = [count / size for count, size in zip(counts, sample_sizes, strict=True)]
    sigmas = [math.sqrt(p_bar * (1.0 - p_bar) / size) for size in sample_sizes]
    return _chart("proportion", points, p_bar, sigmas, lower_floor=0.0, upper_ceiling=1.0)


def u_chart(defects: Sequence[float], units: Sequence[float]) -> ControlChart:
    """Defects-per-unit chart: ū = Σc/Σn, limits ū ± 3·√(ū/nᵢ), lower limit floored at 0."""
    counts, inspected_units = _counts_and_sizes(defects, units, "defects")
    u_bar = sum(counts) / sum(inspected_units)
    if u_bar == 0.0:
        raise SpcError("no defects in any sample: ū = 0")
    points = [count / size for count, size in zip(counts, inspected_units, strict=True)]
    sigmas = [math.sqrt(u_bar / size) for size in inspected_units]
    return _chart("defects per unit", points, u_bar, sigmas, lower_floor=0.0)


# -- coefficient of variation --------------------------------------------------------------


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over the mean, as a fraction (0.008 is 0.8 %).

    The sign follows the mean's.
    """
    checked = _finite(values, "values")
    if len(checked) < 2:
        raise SpcError(f"the coefficient of variation needs at least 2 values, got {len(checked)}")
    mean = statistics.fmean(checked)
    if mean == 0.0:
        raise SpcError("the coefficient of variation is undefined: the mean is 0")
    return statistics.stdev(checked) / mean


def subgroup_coefficients_of_variation(
    subgroups: Sequence[Sequence[float]],
) -> tuple[float, ...]:
    """The coefficient of variation of each subgroup, in order."""
    return tuple(
        _subgroup_cv(number, subgroup) for number, subgroup in enumerate(subgroups, start=1)
    )


def _subgroup_cv(number: int, subgroup: Sequence[float]) -> float:
    try:
        return coefficient_of_variation(subgroup)
    except SpcError as exc:
        raise SpcError(f"subgroup {number}: {exc}") from exc


# -- distributions -------------------------------------------------------------------------


def _lower_regularized_gamma(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x): a series below x = a + 1, the
    continued fraction of Q = 1 - P above it (Numerical Recipes, section 6.2)."""
    if x <= 0.0:
        return 0.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        while abs(term) > abs(total) * 1e-16:
            denominator += 1.0
            term *= x / denominator
            total += term
        return total * math.exp(log_prefactor)
    # Modified Lentz evaluation of the continued fraction for Q(a, x).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    fraction = d
    i = 0
    while True:
        i += 1
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < 1e-16 or i > 10_000:
            break
    return 1.0 - math.exp(log_prefactor) * fraction


def chi_square_cdf(x: float, degrees_of_freedom: float) -> float:
    """P(X ≤ x) for X chi-square distributed with the given degrees of freedom."""
    if degrees_of_freedom <= 0:
        raise SpcError(f"degrees of freedom must be positive, got {degrees_of_freedom}")
    return _lower_regularized_gamma(degrees_of_freedom / 2.0, x / 2.0)


def chi_square_quantile(probability: float, degrees_of_freedom: float) -> float:
    """The x with ``chi_square_cdf(x, df) == probability``, by bisection to full precision."""
    if not 0.0 < probability < 1.0:
        raise SpcError(f"a quantile needs a probability between 0 and 1, got {probability}")
    low, high = 0.0, max(1.0, float(degrees_of_freedom))
    while chi_square_cdf(high, degrees_of_freedom) < probability:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if chi_square_cdf(middle, degrees_of_freedom) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def normal_quantile(probability: float) -> float:
    """The standard normal quantile (``statistics.NormalDist().inv_cdf``)."""
    if not 0.0 < probability < 1.0:
        raise SpcError(f"a quantile needs a probability between 0 and 1, got {probability}")
    return _STANDARD_NORMAL.inv_cdf(probability)


# -- capability ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecLimits:
    """Specification limits; one of them may be absent (a one-sided specification)."""

    lsl: float | None = None
    usl: float | None = None

    def __post_init__(self) -> None:
        if self.lsl is None and self.usl is None:
            raise SpcError("specification limits: give an LSL, a USL or both")
        for name, limit in (("LSL", self.lsl), ("USL", self.usl)):
            if limit is not None and not math.isfinite(limit):
                raise SpcError(f"specification limits: {name} is {limit}, not a finite number")
        if self.lsl is not None and self.usl is not None and self.usl <= self.lsl:
            raise SpcError(
                f"specification limits: USL {self.usl} must be greater than LSL {self.lsl}"
            )


class SigmaMethod(StrEnum):
    """How the within-subgroup (short-term) sigma behind Cp and Cpk is estimated."""

    RANGE = "rbar"  # R̄/d2 over equal subgroups of 2..25
    STANDARD_DEVIATION = "sbar"  # S̄/c4 over equal subgroups of 2..25
    MOVING_RANGE = "mrbar"  # MR̄/1.128 over all values in time order


def within_sigma(subgroups: Sequence[Sequence[float]], method: SigmaMethod) -> float:
    """The within-subgroup sigma of ``subgroups`` by ``method``."""
    if method is SigmaMethod.MOVING_RANGE:
        values = [v for subgroup in subgroups for v in subgroup]
        return imr_chart(values).sigma_within
    if method is SigmaMethod.RANGE:
        return xbar_r_chart(subgroups).sigma_within
    return xbar_s_chart(subgroups).sigma_within


@dataclass(frozen=True)
class CapabilityIndices:
    """Indices for one sigma: ``potential`` is Cp (or Pp), two-sided specifications only;
    ``lower``/``upper`` are Cpl/Cpu; ``k`` is Cpk, the smaller of the sides that exist."""

    potential: float | None
    lower: float | None
    upper: float | None
    k: float


def capability_indices(mean: float, sigma: float, spec: SpecLimits) -> CapabilityIndices:
    """Cp = (USL - LSL)/(6 sigma), Cpl = (mean - LSL)/(3 sigma), Cpu = (USL - mean)/(3 sigma),
    Cpk = min(Cpl, Cpu) over the limits that exist."""
    _positive_sigma(sigma, "sigma")
    lower = None if spec.lsl is None else (mean - spec.lsl) / (SIGMA_MULTIPLIER * sigma)
    upper = None if spec.usl is None else (spec.usl - mean) / (SIGMA_MULTIPLIER * sigma)
    potential = None
    if spec.lsl is not None and spec.usl is not None:
        potential = (spec.usl - spec.lsl) / (2 * SIGMA_MULTIPLIER * sigma)
    k = min(side for side in (lower, upper) if side is not None)
    return CapabilityIndices(potential, lower, upper, k)


@dataclass(frozen=True)
class Estimate:
    """A capability index with its two-sided confidence interval."""

    value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class PartsPerMillion:
    """Out-of-specification parts per million below the LSL and above the USL (None: no limit)."""

    below: float | None
    above: float | None

    @property
    def total(self) -> float:
        return (self.below or 0.0) + (self.above or 0.0)


@dataclass(frozen=True)
class Capability:
    """A capability study: within (Cp family) and overall (Pp family) indices, with intervals."""

    count: int
    mean: float
    spec: SpecLimits
    confidence: float
    sigma_method: SigmaMethod
    sigma_within: float
    sigma_overall: float
    cp: Estimate | None
    cpl: Estimate | None
    cpu: Estimate | None
    cpk: Estimate
    pp: Estimate | None
    ppl: Estimate | None
    ppu: Estimate | None
    ppk: Estimate
    observed_ppm: PartsPerMillion
    expected_within_ppm: PartsPerMillion
    expected_overall_ppm: PartsPerMillion


def chi_square_interval(index: float, count: int, confidence: float) -> Estimate:
    """Cp/Pp interval: Ĉ·√(χ²(alpha/2, N-1)/(N-1)) .. Ĉ·√(χ²(1-alpha/2, N-1)/(N-1))."""
    alpha = 1.0 - confidence
    df = count - 1
    low = index * math.sqrt(chi_square_quantile(alpha / 2, df) / df)
    high = index * math.sqrt(chi_square_quantile(1 - alpha / 2, df) / df)
    return Estimate(index, low, high)


def bissell_interval(index: float, count: int, confidence: float) -> Estimate:
    """Cpk/Ppk interval (Bissell 1990): Ĉ ± z(1-alpha/2)·√(1/(9N) + Ĉ²/(2(N-1)))."""
    z = normal_quantile(1.0 - (1.0 - confidence) / 2)
    half_width = z * math.sqrt(1.0 / (9 * count) + index**2 / (2 * (count - 1)))
    return Estimate(index, index - half_width, index + half_width)


def expected_ppm(mean: float, sigma: float, spec: SpecLimits) -> PartsPerMillion:
    """Normal tail areas beyond each specification limit, in parts per million."""
    distribution = NormalDist(mean, sigma)
    below = None if spec.lsl is None else distribution.cdf(spec.lsl) * _PPM
    above = None if spec.usl is None else (1.0 - distribution.cdf(spec.usl)) * _PPM
    return PartsPerMillion(below, above)


def observed_ppm(values: Sequence[float], spec: SpecLimits) -> PartsPerMillion:
    """Values strictly below the LSL and strictly above the USL, per million values."""
    count = len(values)
    below = None if spec.lsl is None else sum(v < spec.lsl for v in values) / count * _PPM
    above = None if spec.usl is None else sum(v > spec.usl for v in values) / count * _PPM
    return PartsPerMillion(below, above)


def capability(
    subgroups: Sequence[Sequence[float]],
    spec: SpecLimits,
    sigma_method: SigmaMethod = SigmaMethod.RANGE,
    confidence: float = 0.95,
) -> Capability:
    """Capability of the values in ``subgroups`` against ``spec``.

    Cp/Cpk use the within sigma of ``sigma_method``; Pp/Ppk the overall sample standard
    deviation of all values. For individual values in time order pass one-value subgroups with
    :attr:`SigmaMethod.MOVING_RANGE` (or use :func:`individuals_capability`).
    """
    if not 0.0 < confidence < 1.0:
        raise SpcError(f"confidence level must be strictly between 0 and 1, got {confidence}")
    equal = sigma_method is not SigmaMethod.MOVING_RANGE
    checked = _subgroups(subgroups, equal_sizes=equal)
    values = [v for subgroup in checked for v in subgroup]
    mean = statistics.fmean(values)
    sigma_within = within_sigma(checked, sigma_method)
    sigma_overall = _positive_sigma(statistics.stdev(values), "the overall standard deviation")
    within = capability_indices(mean, sigma_within, spec)
    overall = capability_indices(mean, sigma_overall, spec)
    count = len(values)

    def chi(index: float | None) -> Estimate | None:
        return None if index is None else chi_square_interval(index, count, confidence)

    def bissell(index: float | None) -> Estimate | None:
        return None if index is None else bissell_interval(index, count, confidence)

    return Capability(
        count=count,
        mean=mean,
        spec=spec,
        confidence=confidence,
        sigma_method=sigma_method,
        sigma_within=sigma_within,
        sigma_overall=sigma_overall,
        cp=chi(within.potential),
        cpl=bissell(within.lower),
        cpu=bissell(within.upper),
        cpk=bissell_interval(within.k, count, confidence),
        pp=chi(overall.potential),
        ppl=bissell(overall.lower),
        ppu=bissell(overall.upper),
        ppk=bissell_interval(overall.k, count, confidence),
        observed_ppm=observed_ppm(values, spec),
        expected_within_ppm=expected_ppm(mean, sigma_within, spec),
        expected_overall_ppm=expected_ppm(mean, sigma_overall, spec),
    )


def individuals_capability(
    values: Sequence[float], spec: SpecLimits, confidence: float = 0.95
) -> Capability:
    """Capability of individual values in time order, within sigma MR̄/1.128."""
    return capability([[v] for v in values], spec, SigmaMethod.MOVING_RANGE, confidence)


# -- run rules -----------------------------------------------------------------------------
#
# Every rule takes the plotted points, the center line and the standard error of the points
# (one value, or one per point where limits vary) and returns the 0-based indices of the points
# at which the rule fires: the point that completes the pattern, and every later point while the
# pattern continues. "Beyond k sigma" is strict (|z| > k); a point exactly on the center line is on
# neither side, and equal consecutive points are neither increasing nor decreasing.

Sigma = float | Sequence[float]
RuleDetector = Callable[[Sequence[float], float, Sigma], tuple[int, ...]]


def _z_scores(points: Sequence[float], center: float, sigma: Sigma) -> list[float]:
    checked = _finite(points, "points")
    sigmas = [float(sigma)] * len(checked) if isinstance(sigma, int | float) else list(sigma)
    if len(sigmas) != len(checked):
        raise SpcError(f"{len(checked)} points but {len(sigmas)} sigmas")
    for index, s in enumerate(sigmas):
        if not (math.isfinite(s) and s > 0):
            raise SpcError(f"sigma of point {index + 1} is {s}; it must be positive and finite")
    return [(x - center) / s for x, s in zip(checked, sigmas, strict=True)]


def _run_ends(flags: Sequence[bool], length: int) -> list[int]:
    """Indices closing a run of at least ``length`` consecutive true flags."""
    ends, run = [], 0
    for index, flag in enumerate(flags):
        run = run + 1 if flag else 0
        if run >= length:
            ends.append(index)
    return ends


def _same_side_run(z: Sequence[float], length: int) -> tuple[int, ...]:
    above = _run_ends([v > 0 for v in z], length)
    below = _run_ends([v < 0 for v in z], length)
    return tuple(sorted(above + below))


def _k_of_m_beyond(z: Sequence[float], k: int, m: int, threshold: float) -> tuple[int, ...]:
    fired = []
    for index in range(len(z)):
        window = z[max(0, index - m + 1) : index + 1]
        for sign in (1.0, -1.0):
            beyond = [sign * v > threshold for v in window]
            if beyond[-1] and sum(beyond) >= k:
                fired.append(index)
                break
    return tuple(fired)


def _steps(points: Sequence[float]) -> list[int]:
    """Sign of each step between consecutive points: +1 up, -1 down, 0 flat."""
    return [(b > a) - (b < a) for a, b in itertools.pairwise(points)]


def nelson_1(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 1: one point more than 3 sigma from the center line (either side)."""
    return tuple(i for i, v in enumerate(_z_scores(points, center, sigma)) if abs(v) > 3)


def nelson_2(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 2: nine points in a row on the same side of the center line."""
    return _same_side_run(_z_scores(points, center, sigma), 9)


def nelson_3(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 3: six points in a row steadily increasing or decreasing (five like steps)."""
    steps = _steps(_finite(points, "points"))
    rising = _run_ends([s > 0 for s in steps], 5)
    falling = _run_ends([s < 0 for s in steps], 5)
    return tuple(sorted(step + 1 for step in rising + falling))


def nelson_4(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 4: fourteen points in a row alternating up and down (thirteen alternating steps)."""
    steps = _steps(_finite(points, "points"))
    alternating = [index > 0 and steps[index] * steps[index - 1] < 0 for index in range(len(steps))]
    # A run of 12 alternations spans 13 steps, i.e. 14 points; step k ends at point k + 1.
    return tuple(step + 1 for step in _run_ends(alternating, 12))


def nelson_5(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 5: two of three points in a row more than 2 sigma from the center, same side; fires
    at a point that is itself beyond 2 sigma and completes the pair."""
    return _k_of_m_beyond(_z_scores(points, center, sigma), 2, 3, 2.0)


def nelson_6(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 6: four of five points in a row more than 1 sigma from the center, same side; fires at
    a point that is itself beyond 1 sigma and completes the four."""
    return _k_of_m_beyond(_z_scores(points, center, sigma), 4, 5, 1.0)


def nelson_7(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 7: fifteen points in a row within 1 sigma of the center line (either side)."""
    return tuple(_run_ends([abs(v) < 1 for v in _z_scores(points, center, sigma)], 15))


def nelson_8(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Nelson 8: eight points in a row more than 1 sigma from the center line, on either side."""
    return tuple(_run_ends([abs(v) > 1 for v in _z_scores(points, center, sigma)], 8))


def western_electric_1(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Western Electric 1: one point beyond the 3 sigma limits."""
    return nelson_1(points, center, sigma)


def western_electric_2(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Western Electric 2: two of three successive points beyond 2 sigma on the same side."""
    return nelson_5(points, center, sigma)


def western_electric_3(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Western Electric 3: four of five successive points beyond 1 sigma on the same side."""
    return nelson_6(points, center, sigma)


def western_electric_4(points: Sequence[float], center: float, sigma: Sigma) -> tuple[int, ...]:
    """Western Electric 4: eight successive points on the same side of the center line."""
    return _same_side_run(_z_scores(points, center, sigma), 8)


@dataclass(frozen=True)
class RunRule:
    """A named run rule and its detector."""

    name: str
    description: str
    detect: RuleDetector


NELSON_RULES = (
    RunRule("Nelson 1", "1 point beyond 3 sigma", nelson_1),
    RunRule("Nelson 2", "9 points in a row on one side of the center", nelson_2),
    RunRule("Nelson 3", "6 points in a row increasing or decreasing", nelson_3),
    RunRule("Nelson 4", "14 points in a row alternating up and down", nelson_4),
    RunRule("Nelson 5", "2 of 3 points beyond 2 sigma, same side", nelson_5),
    RunRule("Nelson 6", "4 of 5 points beyond 1 sigma, same side", nelson_6),
    RunRule("Nelson 7", "15 points in a row within 1 sigma", nelson_7),
    RunRule("Nelson 8", "8 points in a row beyond 1 sigma, either side", nelson_8),
)
WESTERN_ELECTRIC_RULES = (
    RunRule("WE 1", "1 point beyond 3 sigma", western_electric_1),
    RunRule("WE 2", "2 of 3 points beyond 2 sigma, same side", western_electric_2),
    RunRule("WE 3", "4 of 5 points beyond 1 sigma, same side", western_electric_3),
    RunRule("WE 4", "8 points in a row on one side of the center", western_electric_4),
)


@dataclass(frozen=True)
class RuleViolation:
    """A rule that fired and the 0-based indices of the points where it did."""

    rule: str
    description: str
    indices: tuple[int, ...]


def rule_violations(
    points: Sequence[float],
    center: float,
    sigma: Sigma,
    rules: Sequence[RunRule] = NELSON_RULES,
) -> tuple[RuleViolation, ...]:
    """The rules of ``rules`` that fire on ``points``, in rule order."""
    found = []
    for rule in rules:
        indices = rule.detect(points, center, sigma)
        if indices:
            found.append(RuleViolation(rule.name, rule.description, indices))
    return tuple(found)


def chart_rule_violations(
    chart: ControlChart, rules: Sequence[RunRule] = NELSON_RULES
) -> tuple[RuleViolation, ...]:
    """:func:`rule_violations` on a chart's points, center line and per-point sigmas."""
    return rule_violations(chart.points, chart.center, chart.sigmas, rules)
