"""Contingency-plan freshness: how long ago each plan was last reviewed, against its maximum.

A plan is kept as ``contingency_plan`` records (``plan_id``, ``title``, ``scope``, ``version``,
``review_interval_days``, ``document_blob``; the reviewer is private). Each review stores a new
record whose observation time is the review; the latest per ``plan_id`` counts. A plan is fresh
while its age (now - last review) is at most its own ``review_interval_days``, else the
configured ``plan_max_age_days``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.resilience.distribution import DAY_US
from node.resilience.facts import PlanReview

__all__ = ["CONTINGENCY_PLAN", "PlanFreshness", "plan_freshness"]

CONTINGENCY_PLAN = "contingency_plan"


@dataclass(frozen=True)
class PlanFreshness:
    plan_id: str
    title: str
    scope: str
    record_id: str
    reviewed_at_us: int
    reviews: int
    age_days: float
    max_age_days: float
    fresh: bool


def plan_freshness(
    reviews: Sequence[PlanReview], max_age_days: float, now_us: int
) -> list[PlanFreshness]:
    """Per plan, its latest review; the stalest first."""
    latest: dict[str, PlanReview] = {}
    counts: dict[str, int] = {}
    for review in reviews:
        counts[review.plan_id] = counts.get(review.plan_id, 0) + 1
        known = latest.get(review.plan_id)
        if known is None or (review.reviewed_at_us, review.record_id) > (
            known.reviewed_at_us,
            known.record_id,
        ):
            latest[review.plan_id] = review
    plans = []
    for plan_id, review in latest.items():
        age = max(0, now_us - review.reviewed_at_us) / DAY_US
        limit = review.review_interval_days or max_age_days
        plans.append(
            PlanFreshness(
                plan_id,
                review.title,
                review.scope,
                review.record_id,
                review.reviewed_at_us,
                counts[plan_id],
                age,
                limit,
                age <= limit,
            )
        )
    return sorted(plans, key=lambda p: (-p.age_days / p.max_age_days, p.plan_id))
