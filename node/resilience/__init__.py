"""The resilience dashboard's metrics, computed from a member's store and the chain.

- :func:`resilience_report` reads a node (:mod:`node.resilience.collect`) and computes every
  metric (:func:`build_report`) at one moment; ``report.as_json()`` is what the API serves;
- the metrics are pure functions of :class:`ResilienceFacts`, so they can be computed from facts
  built by hand: the quality-disturbance recovery cycle (:mod:`node.resilience.recovery`), the
  supplier ratings, radar and PPM trend (:mod:`node.resilience.suppliers`), the task handling time
  (:mod:`node.resilience.task_handling`) and the contingency plans' freshness
  (:mod:`node.resilience.contingency`);
- :mod:`node.resilience.charts` draws them as SVG;
- thresholds and scales are a :class:`ResiliencePolicy` (``resilience.toml`` beside the node's
  ``qnode.toml``, see :mod:`node.resilience.policy`).
"""

from __future__ import annotations

from pathlib import Path

from node.offchain.store import now_us as current_time_us
from node.resilience.collect import collect, store_facts
from node.resilience.contingency import CONTINGENCY_PLAN, PlanFreshness, plan_freshness
from node.resilience.distribution import Distribution, distribution, percentile
from node.resilience.facts import (
    ChainEvent,
    DecisionFact,
    LotResult,
    MeasurementValue,
    ParameterChange,
    PlanReview,
    ResilienceFacts,
    SourceStatus,
    TaskTimes,
)
from node.resilience.policy import POLICY_FILE, ResiliencePolicy, load_policy
from node.resilience.recovery import Disturbance, Evidence, RecoveryGroup, disturbances
from node.resilience.report import DEFINITIONS, ResilienceReport, build_report
from node.resilience.suppliers import Axis, PpmPoint, SupplierRating, SupplierTrend
from node.resilience.task_handling import TaskHandling, task_handling
from node.runtime import Node
from node.settings import Settings

__all__ = [
    "CONTINGENCY_PLAN",
    "DEFINITIONS",
    "POLICY_FILE",
    "Axis",
    "ChainEvent",
    "DecisionFact",
    "Distribution",
    "Disturbance",
    "Evidence",
    "LotResult",
    "MeasurementValue",
    "ParameterChange",
    "PlanFreshness",
    "PlanReview",
    "PpmPoint",
    "RecoveryGroup",
    "ResilienceFacts",
    "ResiliencePolicy",
    "ResilienceReport",
    "SourceStatus",
    "SupplierRating",
    "SupplierTrend",
    "TaskHandling",
    "TaskTimes",
    "build_report",
    "collect",
    "distribution",
    "disturbances",
    "load_policy",
    "percentile",
    "plan_freshness",
    "policy_for",
    "resilience_report",
    "store_facts",
    "task_handling",
]


def policy_for(settings: Settings) -> ResiliencePolicy:
    """The member's policy: ``resilience.toml`` beside its config, else the defaults."""
    return load_policy(settings.path(Path(POLICY_FILE)))


def resilience_report(
    node: Node, policy: ResiliencePolicy | None = None, now_us: int | None = None
) -> ResilienceReport:
    """Every metric of ``node`` now (or at ``now_us``)."""
    chosen = policy if policy is not None else policy_for(node.settings)
    facts = collect(node, chosen)
    moment = current_time_us() if now_us is None else now_us
    return build_report(facts, chosen, moment, node.settings.member.name)
