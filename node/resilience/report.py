"""The resilience report: every metric computed from one set of facts at one moment, with its
definition and what it was computed from, and its JSON form (``GET /api/v1/resilience``,
``qnode resilience --json``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from node.resilience.contingency import CONTINGENCY_PLAN, PlanFreshness, plan_freshness
from node.resilience.distribution import Distribution, month_of
from node.resilience.facts import ResilienceFacts, SourceStatus
from node.resilience.policy import ResiliencePolicy
from node.resilience.recovery import Disturbance, RecoveryGroup, disturbances, recovery_groups
from node.resilience.suppliers import (
    AXES,
    PpmPoint,
    SupplierRating,
    SupplierTrend,
    ppm_trend,
    rate_suppliers,
)
from node.resilience.task_handling import TaskHandling, task_handling

__all__ = ["DEFINITIONS", "ResilienceReport", "build_report"]

DEFINITIONS: Mapping[str, str] = {
    "qrrc": (
        "Quality-disturbance recovery cycle: the time from an anomaly to back-to-baseline. "
        "Anomalies: a red-line stop (LineStopped; from the decision that stopped it), a line "
        "compensation (CompensationRequested; from its decision), a supplier hold "
        "(SupplierHeld; from its decision), a run of out-of-spec incoming lots, a rule firing "
        "that opened a task. Back to baseline: the line restarted (LineRestarted); the "
        "compensation acknowledged by the PLC (CompensationAcknowledged) and the decision's "
        "characteristic in control for N consecutive subgroups after it; the hold released "
        "(HoldReleased, through its closed 8D or the customer's override); N consecutive "
        "in-spec lots; the task closed. N = baseline_subgroups. Per line and per supplier: the "
        "median and p90 (linear interpolation) of the recovered cycles, and the open ones with "
        "their age."
    ),
    "high_risk_suppliers": (
        "The share of suppliers (from incoming lots, holds and 8D cases) that are high-risk: on "
        "hold now, or the latest Cpk window of a characteristic below min_cpk, or the PPM of the "
        "last window_days above high_risk_ppm, or an 8D case open longer than overdue_8d_days."
    ),
    "task_handling": (
        "Task handling time: closed - created of each closed task of the node's task board "
        "(8D answers, reviews, improvement tasks); mean, median and p90 in hours; open tasks, "
        "and open tasks past their due time (overdue)."
    ),
    "contingency_plans": (
        "Contingency-plan freshness: per plan (contingency_plan records by plan_id, the latest "
        "review counting), the days since its last review against its review_interval_days, "
        "else plan_max_age_days; fresh when not older."
    ),
    "radar": (
        "Supplier capability radar, each axis 0..1 (1 the best): Cpk stability (variance of "
        "the Cpk of consecutive windows of cpk_window_lots lots, the least stable "
        "characteristic; 1 - var/cpk_variance_max), PPM (last window_days; 1 - ppm/ppm_max), "
        "8D closure time (mean days open to closed, open cases at their age; "
        "1 - days/closure_days_max), traceability completeness (share of its lots whose "
        "records are all anchored and that a genealogy names as an input), change management "
        "(share of the setpoints it recorded on QualityLedger that were on the chain before the "
        "first lot received after they took effect)."
    ),
    "ppm_trend": (
        "PPM per calendar month (UTC), per supplier and overall: incoming-lot values strictly "
        "beyond their LSL/USL per million values with a limit."
    ),
}

_CHAIN_RECOVERY = (
    "LineStopped",
    "LineRestarted",
    "CompensationRequested",
    "CompensationAcknowledged",
    "CompensationFailed",
    "SupplierHeld",
    "HoldReleased",
)
_CHAIN_SUPPLIERS = ("SupplierHeld", "HoldReleased", "CaseOpened", "CaseClosed")


@dataclass(frozen=True)
class ResilienceReport:
    member: str | None
    member_name: str | None
    generated_at_us: int
    policy: ResiliencePolicy
    sources: tuple[SourceStatus, ...]
    disturbances: tuple[Disturbance, ...]
    recovery_by_scope: tuple[RecoveryGroup, ...]
    recovery_overall: tuple[RecoveryGroup, ...]
    suppliers: tuple[SupplierRating, ...]
    tasks: TaskHandling
    tasks_by_kind: tuple[TaskHandling, ...]
    plans: tuple[PlanFreshness, ...]
    trend_months: tuple[str, ...]
    trend_overall: tuple[PpmPoint, ...]
    trend_suppliers: tuple[SupplierTrend, ...]
    computed_from: Mapping[str, Mapping[str, int]]

    @property
    def high_risk(self) -> tuple[SupplierRating, ...]:
        return tuple(s for s in self.suppliers if s.high_risk)

    @property
    def high_risk_share(self) -> float | None:
        return len(self.high_risk) / len(self.suppliers) if self.suppliers else None

    @property
    def open_disturbances(self) -> tuple[Disturbance, ...]:
        return tuple(d for d in self.disturbances if not d.recovered)

    @property
    def fresh_plans(self) -> int:
        return sum(p.fresh for p in self.plans)

    def as_json(self) -> dict[str, Any]:
        now = self.generated_at_us
        plans = len(self.plans)
        return {
            "member": self.member,
            "memberName": self.member_name,
            "generatedAtUs": now,
            "generatedAt": datetime.fromtimestamp(now / 1e6, UTC).isoformat(),
            "policy": {_camel(k): v for k, v in self.policy.as_json().items()},
            "sources": [
                {"name": s.name, "status": s.status, "detail": s.detail, "count": s.count}
                for s in self.sources
            ],
            "qrrc": {
                "definition": DEFINITIONS["qrrc"],
                "computedFrom": dict(self.computed_from["qrrc"]),
                "byScope": [_group(g) for g in self.recovery_by_scope],
                "overall": [_group(g) for g in self.recovery_overall],
                "disturbances": [_disturbance(d, now) for d in self.disturbances],
            },
            "highRiskSuppliers": {
                "definition": DEFINITIONS["high_risk_suppliers"],
                "computedFrom": dict(self.computed_from["high_risk_suppliers"]),
                "total": len(self.suppliers),
                "highRisk": len(self.high_risk),
                "share": self.high_risk_share,
                "suppliers": [_risk(s) for s in self.suppliers],
            },
            "taskHandling": {
                "definition": DEFINITIONS["task_handling"],
                "computedFrom": dict(self.computed_from["task_handling"]),
                "all": _tasks(self.tasks),
                "byKind": [_tasks(t) for t in self.tasks_by_kind],
            },
            "contingencyPlans": {
                "definition": DEFINITIONS["contingency_plans"],
                "computedFrom": dict(self.computed_from["contingency_plans"]),
                "maxAgeDays": self.policy.plan_max_age_days,
                "total": plans,
                "fresh": self.fresh_plans,
                "stale": plans - self.fresh_plans,
                "shareFresh": self.fresh_plans / plans if plans else None,
                "plans": [_plan(p) for p in self.plans],
            },
            "radar": {
                "definition": DEFINITIONS["radar"],
                "computedFrom": dict(self.computed_from["radar"]),
                "axes": [{"name": name, "title": title} for name, title in AXES],
                "suppliers": [_radar(s) for s in self.suppliers],
            },
            "ppmTrend": {
                "definition": DEFINITIONS["ppm_trend"],
                "computedFrom": dict(self.computed_from["ppm_trend"]),
                "months": list(self.trend_months),
                "overall": [_point(p) for p in self.trend_overall],
                "suppliers": [
                    {
                        "supplier": t.supplier,
                        "label": t.label,
                        "points": [_point(p) for p in t.points],
                    }
                    for t in self.trend_suppliers
                ],
            },
        }


def build_report(
    facts: ResilienceFacts,
    policy: ResiliencePolicy,
    now_us: int,
    member_name: str | None = None,
) -> ResilienceReport:
    """Every metric of ``facts`` at ``now_us``."""
    found = disturbances(facts, policy, now_us)
    overall_tasks, tasks_by_kind = task_handling(facts.tasks, now_us)
    months, overall, trends = ppm_trend(facts.lots, facts.names, now_us, policy.trend_months)
    return ResilienceReport(
        member=facts.member,
        member_name=member_name,
        generated_at_us=now_us,
        policy=policy,
        sources=facts.sources,
        disturbances=tuple(found),
        recovery_by_scope=tuple(recovery_groups(found, now_us)),
        recovery_overall=tuple(recovery_groups(found, now_us, overall=True)),
        suppliers=tuple(rate_suppliers(facts, policy, now_us)),
        tasks=overall_tasks,
        tasks_by_kind=tuple(tasks_by_kind),
        plans=tuple(plan_freshness(facts.plans, policy.plan_max_age_days, now_us)),
        trend_months=tuple(months),
        trend_overall=overall,
        trend_suppliers=tuple(trends),
        computed_from=_computed_from(facts, months),
    )


def _computed_from(facts: ResilienceFacts, months: Sequence[str]) -> dict[str, dict[str, int]]:
    events = Counter(event.name for event in facts.events)

    def named(names: Sequence[str]) -> dict[str, int]:
        return {f"{name} events": events[name] for name in names}

    lots = len(facts.lots)
    return {
        "qrrc": {
            "decision records": len(facts.decisions),
            "incoming_lot records": lots,
            "measurement records": len({m.record_id for m in facts.measurements}),
            "tasks": len(facts.tasks),
            **named(_CHAIN_RECOVERY),
        },
        "high_risk_suppliers": {"incoming_lot records": lots, **named(_CHAIN_SUPPLIERS)},
        "task_handling": {"tasks": len(facts.tasks)},
        "contingency_plans": {f"{CONTINGENCY_PLAN} records": len(facts.plans)},
        "radar": {
            "incoming_lot records": lots,
            "anchored incoming_lot records": sum(lot.anchored for lot in facts.lots),
            "incoming_lot records of lots in a genealogy": sum(lot.traced for lot in facts.lots),
            "SetpointRecorded events": len(facts.changes),
            **named(("CaseOpened", "CaseClosed")),
        },
        "ppm_trend": {
            "incoming_lot records": sum(
                1 for lot in facts.lots if lot.assessable and month_of(lot.observed_at_us) in months
            ),
        },
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _group(group: RecoveryGroup) -> dict[str, Any]:
    stats: Distribution = group.recovered
    return {
        "scopeKind": group.scope_kind,
        "scope": group.scope,
        "label": group.label,
        "count": group.count,
        "recovered": stats.count,
        "open": group.open,
        "failed": group.failed,
        "meanS": stats.mean,
        "medianS": stats.median,
        "p90S": stats.p90,
        "maxS": stats.max,
        "oldestOpenS": group.oldest_open_s,
        "kinds": dict(group.kinds),
    }


def _disturbance(item: Disturbance, now_us: int) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "scopeKind": item.scope_kind,
        "scope": item.scope,
        "label": item.label,
        "startedAtUs": item.started_at_us,
        "recoveredAtUs": item.recovered_at_us,
        "durationS": item.duration_s(now_us),
        "status": item.status,
        "detail": item.detail,
        "evidence": [e.as_json() for e in item.evidence],
    }


def _risk(rating: SupplierRating) -> dict[str, Any]:
    return {
        "supplier": rating.supplier,
        "label": rating.label,
        "highRisk": rating.high_risk,
        "reasons": list(rating.reasons),
        "onHold": rating.on_hold,
        "latestCpk": rating.latest_cpk,
        "ppm": rating.ppm,
        "lotsInWindow": rating.lots_in_window,
        "overdueCases": list(rating.overdue_cases),
    }


def _radar(rating: SupplierRating) -> dict[str, Any]:
    return {
        "supplier": rating.supplier,
        "label": rating.label,
        "axes": [
            {
                "name": axis.name,
                "title": axis.title,
                "raw": axis.raw,
                "unit": axis.unit,
                "score": axis.score,
                "basis": axis.basis,
            }
            for axis in rating.axes
        ],
        "evidence": [e.as_json() for e in rating.evidence],
    }


def _tasks(summary: TaskHandling) -> dict[str, Any]:
    hours = summary.handling_hours
    return {
        "kind": summary.kind,
        "count": summary.count,
        "closed": hours.count,
        "open": summary.open,
        "overdue": summary.overdue,
        "meanHours": hours.mean,
        "medianHours": hours.median,
        "p90Hours": hours.p90,
    }


def _plan(plan: PlanFreshness) -> dict[str, Any]:
    return {
        "planId": plan.plan_id,
        "title": plan.title,
        "scope": plan.scope,
        "recordId": plan.record_id,
        "reviewedAtUs": plan.reviewed_at_us,
        "reviews": plan.reviews,
        "ageDays": plan.age_days,
        "maxAgeDays": plan.max_age_days,
        "fresh": plan.fresh,
    }


def _point(point: PpmPoint) -> dict[str, Any]:
    return {
        "month": point.month,
        "ppm": point.ppm,
        "values": point.values,
        "outOfSpec": point.out_of_spec,
    }
