"""Suppliers rated from the member's incoming inspection, its 8D cases and holds, and the
setpoints suppliers record on the chain: high-risk suppliers, the capability radar, the PPM trend.

Definitions (each used by the report and its JSON):

- **PPM** of a set of incoming-lot values: values strictly below the LSL or strictly above the
  USL, per million values with a limit (``spc.observed_ppm``). A supplier's rating PPM covers the
  last ``window_days``.
- **Cpk windows**: the lots of one (part, characteristic) in time order are cut into windows of
  ``cpk_window_lots`` consecutive lots, the latest ending at the latest lot (a partial oldest
  window is dropped). Each window's Cpk = min(mean - LSL, USL - mean) / (3 sigma) over the
  limits that exist, sigma = MR-bar/1.128 (the individuals chart's within sigma, as the rules'
  ``cpk``); a window without spread has no Cpk. The limits are the latest lot's of the window.
- **High-risk**: on hold now, or the latest Cpk window of any characteristic below ``min_cpk``, or
  the PPM above ``high_risk_ppm``, or an 8D case open longer than ``overdue_8d_days``.
- **Radar** (each axis 0..1, 1 the best; ``None`` without data):
  - *Cpk stability*: population variance of the window Cpks of each characteristic (two windows
    at least), the least stable characteristic's; score ``1 - min(var / cpk_variance_max, 1)``;
  - *PPM*: the rating PPM; score ``1 - min(ppm / ppm_max, 1)``;
  - *8D closure time*: mean days from opening to closing of its 8D cases, an open case counted
    at its age so far; score ``1 - min(days / closure_days_max, 1)``;
  - *traceability completeness*: the share of its lots (distinct lot ids) whose every incoming
    record is anchored on-chain and that a genealogy record names as an input;
  - *change management*: the share of the setpoints it recorded on QualityLedger (EIP-712 signed
    by its oracle, on the shared chain) whose record was on the chain before use: before the
    first lot this member received from it at or after the setpoint's effective time (no such
    lot yet: counts as managed when recorded).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node.control import spc
from node.errors import SpcError
from node.resilience.distribution import DAY_US, month_of, months_until
from node.resilience.facts import ChainEvent, LotResult, ParameterChange, ResilienceFacts
from node.resilience.facts import supplier_key as key_of
from node.resilience.policy import ResiliencePolicy
from node.resilience.recovery import Evidence, mine

__all__ = [
    "AXES",
    "Axis",
    "CaseTimes",
    "HoldTimes",
    "PpmPoint",
    "SupplierRating",
    "SupplierTrend",
    "cases_of",
    "cpk_of",
    "cpk_windows",
    "holds_of",
    "ppm_of",
    "ppm_trend",
    "rate_suppliers",
]

AXES = (
    ("cpk_stability", "Cpk stability"),
    ("ppm", "PPM"),
    ("closure_time", "8D closure time"),
    ("traceability", "Traceability completeness"),
    ("change_management", "Change management"),
)


@dataclass(frozen=True)
class CaseTimes:
    """An 8D case from ``CaseOpened`` (and ``CaseClosed``)."""

    case_id: int
    customer: str
    supplier: str
    hold_id: int
    opened_at_us: int
    closed_at_us: int | None
    evidence: tuple[Evidence, ...]

    def age_days(self, now_us: int) -> float:
        end = self.closed_at_us if self.closed_at_us is not None else now_us
        return max(0, end - self.opened_at_us) / DAY_US


@dataclass(frozen=True)
class HoldTimes:
    hold_id: int
    customer: str
    supplier: str
    case_id: int
    placed_at_us: int
    released_at_us: int | None


def _evidence(event: ChainEvent) -> Evidence:
    return Evidence("event", event.tx_hash, event.name, event.at_us, event.block_number)


def cases_of(facts: ResilienceFacts) -> list[CaseTimes]:
    """The 8D cases this member is the customer or the supplier of."""
    opened: dict[int, ChainEvent] = {}
    closed: dict[int, ChainEvent] = {}
    for event in facts.events:
        if event.name == "CaseOpened":
            opened.setdefault(int(event.args["case_id"]), event)
        elif event.name == "CaseClosed":
            closed.setdefault(int(event.args["case_id"]), event)
    cases = []
    for case_id, event in sorted(opened.items()):
        customer, supplier = str(event.args["customer"]), str(event.args["supplier"])
        if not mine(facts, customer, supplier):
            continue
        end = closed.get(case_id)
        evidence = (_evidence(event),) + ((_evidence(end),) if end is not None else ())
        cases.append(
            CaseTimes(
                case_id,
                key_of(customer),
                key_of(supplier),
                int(event.args.get("hold_id", 0)),
                event.at_us,
                end.at_us if end is not None else None,
                evidence,
            )
        )
    return cases


def holds_of(facts: ResilienceFacts) -> list[HoldTimes]:
    """The holds this member placed or is under."""
    released: dict[int, ChainEvent] = {}
    for event in facts.events:
        if event.name == "HoldReleased":
            released.setdefault(int(event.args["hold_id"]), event)
    holds = []
    for event in facts.events:
        if event.name != "SupplierHeld":
            continue
        customer, supplier = str(event.args["customer"]), str(event.args["supplier"])
        if not mine(facts, customer, supplier):
            continue
        hold_id = int(event.args["hold_id"])
        end = released.get(hold_id)
        holds.append(
            HoldTimes(
                hold_id,
                key_of(customer),
                key_of(supplier),
                int(event.args.get("case_id", 0)),
                event.at_us,
                end.at_us if end is not None else None,
            )
        )
    return holds


# -- capability and PPM ------------------------------------------------------------------------


def cpk_of(values: Sequence[float], lsl: float | None, usl: float | None) -> float | None:
    """Cpk of individual values in time order (sigma = MR-bar/1.128); None without spread or
    limits."""
    if len(values) < 2 or (lsl is None and usl is None):
        return None
    try:
        limits = spc.SpecLimits(lsl, usl)
        sigma = spc.imr_chart(list(values)).sigma_within
        return spc.capability_indices(statistics.fmean(values), sigma, limits).k
    except SpcError:
        return None


def cpk_windows(lots: Sequence[LotResult], size: int) -> list[float | None]:
    """The Cpk of each window of ``size`` consecutive lots (one characteristic), oldest first;
    the latest window ends at the latest lot."""
    ordered = sorted((lot for lot in lots if lot.assessable), key=_lot_order)
    windows = []
    for end in range(len(ordered), size - 1, -size):
        window = ordered[end - size : end]
        last = window[-1]
        windows.append(cpk_of([lot.value for lot in window], last.lsl, last.usl))
    return windows[::-1]


def _lot_order(lot: LotResult) -> tuple[int, str]:
    return (lot.observed_at_us, lot.record_id)


def ppm_of(lots: Sequence[LotResult]) -> tuple[float | None, int, int]:
    """(PPM, values with a limit, values out of spec)."""
    assessed = [lot for lot in lots if lot.assessable]
    out = sum(lot.out_of_spec for lot in assessed)
    if not assessed:
        return None, 0, 0
    return out / len(assessed) * 1e6, len(assessed), out


# -- ratings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    name: str
    title: str
    raw: float | None
    unit: str
    score: float | None
    basis: str
    """What the raw value was computed from (counts)."""


@dataclass(frozen=True)
class SupplierRating:
    supplier: str
    label: str
    high_risk: bool
    reasons: tuple[str, ...]
    on_hold: bool
    latest_cpk: float | None
    """The lowest latest-window Cpk over its characteristics."""
    ppm: float | None
    lots_in_window: int
    overdue_cases: tuple[int, ...]
    axes: tuple[Axis, ...]
    evidence: tuple[Evidence, ...]


def _score(raw: float | None, worst: float) -> float | None:
    if raw is None:
        return None
    return max(0.0, 1.0 - min(raw / worst, 1.0))


def rate_suppliers(
    facts: ResilienceFacts, policy: ResiliencePolicy, now_us: int
) -> list[SupplierRating]:
    """Every supplier this member deals with: from its incoming lots, holds and 8D cases (a
    supplier member's own node rates itself from its holds and cases)."""
    lots: dict[str, list[LotResult]] = defaultdict(list)
    for lot in facts.lots:
        lots[lot.supplier_key].append(lot)
    cases: dict[str, list[CaseTimes]] = defaultdict(list)
    for case in cases_of(facts):
        cases[case.supplier].append(case)
    holds: dict[str, list[HoldTimes]] = defaultdict(list)
    for hold in holds_of(facts):
        holds[hold.supplier].append(hold)
    changes: dict[str, list[ParameterChange]] = defaultdict(list)
    for change in facts.changes:
        changes[change.supplier_key].append(change)
    suppliers = sorted(set(lots) | set(cases) | set(holds))
    return [
        _rating(
            supplier,
            facts.names.get(supplier, supplier),
            lots.get(supplier, []),
            cases.get(supplier, []),
            holds.get(supplier, []),
            changes.get(supplier, []),
            policy,
            now_us,
        )
        for supplier in suppliers
    ]


def _rating(
    supplier: str,
    label: str,
    lots: Sequence[LotResult],
    cases: Sequence[CaseTimes],
    holds: Sequence[HoldTimes],
    changes: Sequence[ParameterChange],
    policy: ResiliencePolicy,
    now_us: int,
) -> SupplierRating:
    series: dict[tuple[str, str], list[LotResult]] = defaultdict(list)
    for lot in lots:
        series[(lot.part, lot.characteristic)].append(lot)
    latest: list[float] = []
    variances: list[float] = []
    windows_seen = 0
    for characteristic in series.values():
        cpks = [c for c in cpk_windows(characteristic, policy.cpk_window_lots) if c is not None]
        windows_seen += len(cpks)
        if cpks:
            latest.append(cpks[-1])
        if len(cpks) >= 2:
            variances.append(statistics.pvariance(cpks))
    latest_cpk = min(latest) if latest else None
    variance = max(variances) if variances else None

    since = now_us - int(policy.window_days * DAY_US)
    recent = [lot for lot in lots if since <= lot.observed_at_us <= now_us]
    ppm, assessed, out = ppm_of(recent)

    on_hold = any(hold.released_at_us is None for hold in holds)
    ages = [case.age_days(now_us) for case in cases]
    closure = statistics.fmean(ages) if ages else None
    overdue = tuple(
        case.case_id
        for case in cases
        if case.closed_at_us is None and case.age_days(now_us) > policy.overdue_8d_days
    )

    by_lot: dict[str, list[LotResult]] = defaultdict(list)
    for lot in lots:
        by_lot[lot.lot].append(lot)
    complete = sum(
        all(r.anchored for r in records) and any(r.traced for r in records)
        for records in by_lot.values()
    )
    traceability = complete / len(by_lot) if by_lot else None

    managed = sum(_managed(change, lots) for change in changes)
    change_share = managed / len(changes) if changes else None

    reasons = []
    if on_hold:
        reasons.append("on hold")
    if latest_cpk is not None and latest_cpk < policy.min_cpk:
        reasons.append(f"Cpk {latest_cpk:.2f} < {policy.min_cpk:g}")
    if ppm is not None and ppm > policy.high_risk_ppm:
        reasons.append(f"PPM {ppm:,.0f} > {policy.high_risk_ppm:,.0f}")
    if overdue:
        listed = ", ".join(str(c) for c in overdue)
        reasons.append(f"8D case(s) {listed} open > {policy.overdue_8d_days:g} days")

    axes = (
        Axis(
            "cpk_stability",
            "Cpk stability",
            variance,
            "variance",
            _score(variance, policy.cpk_variance_max),
            f"{windows_seen} Cpk window(s) of {policy.cpk_window_lots} lots over "
            f"{len(series)} characteristic(s)",
        ),
        Axis(
            "ppm",
            "PPM",
            ppm,
            "ppm",
            _score(ppm, policy.ppm_max),
            f"{out} of {assessed} value(s) out of spec in {policy.window_days:g} days",
        ),
        Axis(
            "closure_time",
            "8D closure time",
            closure,
            "days",
            _score(closure, policy.closure_days_max),
            f"{len(cases)} 8D case(s), {sum(c.closed_at_us is None for c in cases)} open",
        ),
        Axis(
            "traceability",
            "Traceability completeness",
            traceability,
            "share",
            traceability,
            f"{complete} of {len(by_lot)} lot(s) anchored and in a genealogy",
        ),
        Axis(
            "change_management",
            "Change management",
            change_share,
            "share",
            change_share,
            f"{managed} of {len(changes)} setpoint change(s) on-chain before use",
        ),
    )
    evidence = tuple(
        [e for case in cases for e in case.evidence]
        + [
            Evidence("event", c.tx_hash or c.record_id, f"SetpointRecorded {c.parameter}",
                     c.recorded_at_us, c.block_number)
            for c in changes
        ]
    )  # fmt: skip
    return SupplierRating(
        supplier,
        label,
        bool(reasons),
        tuple(reasons),
        on_hold,
        latest_cpk,
        ppm,
        assessed,
        overdue,
        axes,
        evidence,
    )


def _managed(change: ParameterChange, lots: Sequence[LotResult]) -> bool:
    """On the chain before the first lot received at or after it took effect."""
    if change.recorded_at_us is None:
        return False
    used = [lot.observed_at_us for lot in lots if lot.observed_at_us >= change.effective_at_us]
    return not used or change.recorded_at_us <= min(used)


# -- the trend -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PpmPoint:
    month: str
    ppm: float | None
    values: int
    out_of_spec: int


@dataclass(frozen=True)
class SupplierTrend:
    supplier: str
    label: str
    points: tuple[PpmPoint, ...]


def ppm_trend(
    lots: Sequence[LotResult], names: Mapping[str, str], now_us: int, months: int
) -> tuple[list[str], tuple[PpmPoint, ...], list[SupplierTrend]]:
    """(the months, overall points, per-supplier points): PPM per calendar month (UTC)."""
    shown = months_until(now_us, months)
    wanted = set(shown)
    overall: dict[str, list[LotResult]] = defaultdict(list)
    per: dict[str, dict[str, list[LotResult]]] = defaultdict(lambda: defaultdict(list))
    for lot in lots:
        month = month_of(lot.observed_at_us)
        if month in wanted and lot.assessable:
            overall[month].append(lot)
            per[lot.supplier_key][month].append(lot)

    def points(by_month: Mapping[str, list[LotResult]]) -> tuple[PpmPoint, ...]:
        result = []
        for month in shown:
            ppm, count, out = ppm_of(by_month.get(month, []))
            result.append(PpmPoint(month, ppm, count, out))
        return tuple(result)

    trends = [
        SupplierTrend(supplier, names.get(supplier, supplier), points(by_month))
        for supplier, by_month in sorted(per.items())
    ]
    return shown, points(overall), trends
