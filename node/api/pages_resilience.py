"""The resilience dashboard: ``GET /api/v1/resilience`` (JSON, authority tier) and the page
``/explorer/resilience`` (the explorer's sign-in), both from
:func:`node.resilience.resilience_report`.

- The JSON is the report's ``as_json()``; its shape is :class:`ResilienceModel` (the OpenAPI
  document's schema). A request without a token is a 401, one with a token below the authority
  tier a 403 (problem details, like every error of the API).
- The page draws each metric as an inline SVG chart (:mod:`node.resilience.charts`): the recovery
  cycles per line and supplier, the share of high-risk suppliers, the task handling time, the
  contingency plans' ages, a capability radar per supplier and the PPM trend; each with its
  definition, the figures behind it and what they were computed from. It needs no script.

The metrics are computed on each request from the node's store and its chain connection (a
contract this node does not know, or a chain that does not answer, is listed as a source with its
status and the rest is computed all the same).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from node.api.access import Tier
from node.api.pages_html import SESSION_KEY, Html, SignInRequired, page_route
from node.api.pages_session import Session, SessionKeeper
from node.api.problems import problem_responses
from node.api.service import ApiService
from node.errors import CredentialsError, TierError
from node.resilience import DEFINITIONS, ResilienceReport, policy_for, resilience_report
from node.resilience.charts import (
    PALETTE,
    Series,
    bar_chart,
    duration_text,
    line_chart,
    number,
    percent_text,
    radar_chart,
)

__all__ = ["ResilienceModel", "dashboard_charts", "resilience_routers"]

_bearer = HTTPBearer(auto_error=False, description="An authority token.")
AuthHeader = Annotated[str | None, Header(include_in_schema=False)]
AXIS_LABELS = {
    "cpk_stability": "Cpk stability",
    "ppm": "PPM",
    "closure_time": "8D closure",
    "traceability": "Traceability",
    "change_management": "Change mgmt",
}


# -- the JSON's models ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceModel(_Model):
    name: str
    status: str = Field(description="ok, not_deployed or unavailable.")
    detail: str
    count: int


class EvidenceModel(_Model):
    kind: str = Field(description="record, event or task.")
    ref: str = Field(description="The record id, transaction hash or task key.")
    label: str
    atUs: int | None
    blockNumber: int | None


class RecoveryGroupModel(_Model):
    scopeKind: str = Field(description="line, supplier or rule.")
    scope: str = Field(description="The line id, supplier address or rule id; * for all.")
    label: str
    count: int
    recovered: int
    open: int
    failed: int
    meanS: float | None
    medianS: float | None
    p90S: float | None
    maxS: float | None
    oldestOpenS: float | None
    kinds: dict[str, int]


class DisturbanceModel(_Model):
    kind: str = Field(
        description="line_stop, compensation, supplier_hold, out_of_spec or rule_task."
    )
    scopeKind: str
    scope: str
    label: str
    startedAtUs: int
    recoveredAtUs: int | None
    durationS: float = Field(description="To back-to-baseline, or to now while open.")
    status: str = Field(description="recovered, open or failed.")
    detail: str
    evidence: list[EvidenceModel]


class QrrcModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    byScope: list[RecoveryGroupModel]
    overall: list[RecoveryGroupModel]
    disturbances: list[DisturbanceModel]


class RiskModel(_Model):
    supplier: str
    label: str
    highRisk: bool
    reasons: list[str]
    onHold: bool
    latestCpk: float | None
    ppm: float | None
    lotsInWindow: int
    overdueCases: list[int]


class HighRiskModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    total: int
    highRisk: int
    share: float | None
    suppliers: list[RiskModel]


class TaskSummaryModel(_Model):
    kind: str
    count: int
    closed: int
    open: int
    overdue: int
    meanHours: float | None
    medianHours: float | None
    p90Hours: float | None


class TaskHandlingModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    all: TaskSummaryModel
    byKind: list[TaskSummaryModel]


class PlanModel(_Model):
    planId: str
    title: str
    scope: str
    recordId: str
    reviewedAtUs: int
    reviews: int
    ageDays: float
    maxAgeDays: float
    fresh: bool


class PlansModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    maxAgeDays: float
    total: int
    fresh: int
    stale: int
    shareFresh: float | None
    plans: list[PlanModel]


class AxisNameModel(_Model):
    name: str
    title: str


class AxisModel(_Model):
    name: str
    title: str
    raw: float | None
    unit: str
    score: float | None = Field(description="0..1, 1 the best; null without data.")
    basis: str


class SupplierRadarModel(_Model):
    supplier: str
    label: str
    axes: list[AxisModel]
    evidence: list[EvidenceModel]


class RadarModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    axes: list[AxisNameModel]
    suppliers: list[SupplierRadarModel]


class PpmPointModel(_Model):
    month: str
    ppm: float | None
    values: int
    outOfSpec: int


class SupplierTrendModel(_Model):
    supplier: str
    label: str
    points: list[PpmPointModel]


class PpmTrendModel(_Model):
    definition: str
    computedFrom: dict[str, int]
    months: list[str]
    overall: list[PpmPointModel]
    suppliers: list[SupplierTrendModel]


class ResilienceModel(_Model):
    """The resilience metrics of this member, each with its definition and what it was computed
    from."""

    member: str | None
    memberName: str | None
    generatedAtUs: int
    generatedAt: str
    policy: dict[str, float | int]
    sources: list[SourceModel]
    qrrc: QrrcModel
    highRiskSuppliers: HighRiskModel
    taskHandling: TaskHandlingModel
    contingencyPlans: PlansModel
    radar: RadarModel
    ppmTrend: PpmTrendModel


# -- routes --------------------------------------------------------------------------------------


def resilience_routers(service: ApiService, html: Html) -> list[APIRouter]:
    """The JSON route and the page's router (with the explorer's sign-in: the cookie of
    ``/explorer`` covers ``/explorer/resilience``)."""
    settings = service.settings

    def report() -> ResilienceReport:
        return resilience_report(service.state().node, policy_for(settings))

    api = APIRouter(tags=["resilience"])

    @api.get(
        "/api/v1/resilience",
        summary="The resilience metrics (recovery cycles, high-risk suppliers, task handling, "
        "contingency plans, supplier radar, PPM trend); authority tier",
        response_model=ResilienceModel,
        responses=problem_responses(401, 403, 429, 503),
        dependencies=[Security(_bearer)],
    )
    async def resilience(authorization: AuthHeader = None) -> Response:
        tier = service.tokens.tier_for(authorization, None)
        if tier < Tier.AUTHORITY:
            if authorization is None:
                raise CredentialsError("the resilience metrics need an authority token")
            raise TierError(f"the resilience metrics need an authority token, not {tier.label}")
        built = await run_in_threadpool(report)
        return Response(orjson.dumps(built.as_json()), media_type="application/json")

    keeper = SessionKeeper(
        "explorer",
        "/explorer",
        service.tokens,
        Tier.AUTHORITY,
        settings.api.session_ttl_s,
        https=(settings.api.public_base_url or "").startswith("https://"),
    )
    pages = APIRouter(
        prefix="/explorer/resilience",
        route_class=page_route(html, "explorer"),
        include_in_schema=False,
    )

    def signed_in(request: Request) -> Session:
        session = keeper.session(request)
        if session is None:
            raise SignInRequired("explorer")
        request.scope[SESSION_KEY] = session
        return session

    @pages.get("")
    async def dashboard(request: Request) -> Response:
        session = signed_in(request)
        built = await run_in_threadpool(report)
        context = {
            "area": "explorer",
            "session": session,
            "path": request.url.path,
            "title": "Resilience",
            "report": built,
            "charts": dashboard_charts(built),
            "definitions": DEFINITIONS,
            "axis_labels": AXIS_LABELS,
            "num": number,
            "span": duration_text,
            "pct": percent_text,
        }
        return html.page("resilience/dashboard.html", context)

    return [api, pages]


# -- the page's charts ---------------------------------------------------------------------------


def dashboard_charts(report: ResilienceReport) -> dict[str, Any]:
    """Every chart of the page, as SVG text: ``qrrc``, ``risk``, ``risk_ppm``, ``tasks``,
    ``plans``, ``ppm_trend``, and ``radars`` (supplier, SVG) pairs."""
    policy = report.policy
    groups = [g for g in report.recovery_by_scope if g.scope_kind in ("line", "supplier")]

    def hours(seconds: float | None) -> float | None:
        return None if seconds is None else seconds / 3600

    qrrc = bar_chart(
        "Quality-disturbance recovery cycle per line and supplier",
        [f"{g.scope_kind}: {g.label}" for g in groups],
        [
            Series("median", tuple(hours(g.recovered.median) for g in groups), PALETTE[0]),
            Series("p90", tuple(hours(g.recovered.p90) for g in groups), PALETTE[1]),
            Series("oldest open", tuple(hours(g.oldest_open_s) for g in groups), PALETTE[6]),
        ],
        "hours",
        "chart-qrrc",
    )
    high = len(report.high_risk)
    share = report.high_risk_share
    risk = bar_chart(
        "High-risk suppliers"
        + (f": {share * 100:.0f} % of {len(report.suppliers)}" if share is not None else ""),
        ["high-risk", "other"] if report.suppliers else [],
        [Series("suppliers", (float(high), float(len(report.suppliers) - high)), PALETTE[6])],
        "suppliers",
        "chart-risk",
        whole=True,
    )
    rated = list(report.suppliers)
    risk_ppm = bar_chart(
        f"PPM per supplier over the last {policy.window_days:g} days",
        [s.label for s in rated],
        [Series("PPM", tuple(s.ppm for s in rated), PALETTE[1])],
        "PPM",
        "chart-risk-ppm",
        reference=policy.high_risk_ppm,
        reference_label=f"high-risk above {number(policy.high_risk_ppm)}",
    )
    kinds = [report.tasks, *report.tasks_by_kind]
    tasks = bar_chart(
        "Task handling time",
        ["all tasks" if k.kind == "*" else k.kind for k in kinds],
        [
            Series("mean", tuple(k.handling_hours.mean for k in kinds), PALETTE[0]),
            Series("median", tuple(k.handling_hours.median for k in kinds), PALETTE[2]),
            Series("p90", tuple(k.handling_hours.p90 for k in kinds), PALETTE[1]),
        ],
        "hours",
        "chart-tasks",
    )
    plans = bar_chart(
        "Contingency plans: days since the last review",
        [p.plan_id for p in report.plans],
        [Series("age", tuple(p.age_days for p in report.plans), PALETTE[4])],
        "days",
        "chart-plans",
        reference=policy.plan_max_age_days,
        reference_label=f"maximum {number(policy.plan_max_age_days)} days",
    )
    series = [Series("all suppliers", tuple(p.ppm for p in report.trend_overall), "#111827")]
    series += [
        Series(t.label, tuple(p.ppm for p in t.points), PALETTE[i % (len(PALETTE) - 1)])
        for i, t in enumerate(report.trend_suppliers)
    ]
    trend = line_chart(
        "PPM per month, per supplier and overall", report.trend_months, series, "PPM", "chart-ppm"
    )
    radars = [
        (
            rating,
            radar_chart(
                f"Capability radar: {rating.label}",
                [
                    (AXIS_LABELS.get(a.name, a.title), a.score, _raw_text(a.raw, a.unit))
                    for a in rating.axes
                ],
                f"radar-{index}",
                PALETTE[index % len(PALETTE)],
            ),
        )
        for index, rating in enumerate(report.suppliers)
    ]
    return {
        "qrrc": qrrc,
        "risk": risk,
        "risk_ppm": risk_ppm,
        "tasks": tasks,
        "plans": plans,
        "ppm_trend": trend,
        "radars": radars,
    }


def _raw_text(raw: float | None, unit: str) -> str:
    if raw is None:
        return "no data"
    if unit == "share":
        return percent_text(raw)
    return f"{number(raw)} {unit}"
