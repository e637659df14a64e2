"""The resilience report as text tables on a terminal (``qnode resilience``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from node.resilience.charts import duration_text as span
from node.resilience.charts import number
from node.resilience.charts import percent_text as share
from node.resilience.report import DEFINITIONS, ResilienceReport

__all__ = ["print_report"]


def print_report(report: ResilienceReport, out: Console, definitions: bool = False) -> None:
    """Every metric as a table; ``definitions``: each preceded by its definition."""
    now = report.generated_at_us

    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False)

    def title(name: str, key: str) -> None:
        out.rule(name)
        if definitions:
            say(DEFINITIONS[key])

    say(f"member  {report.member_name or '-'} ({report.member or 'unknown'})")
    sources = ", ".join(f"{s.name} {s.status.replace('_', ' ')}" for s in report.sources)
    say(f"sources {sources}")

    title("Quality-disturbance recovery cycle", "qrrc")
    table = Table("scope", "disturbances", "recovered", "median", "p90", "open", "oldest open")
    for group in (*report.recovery_by_scope, *report.recovery_overall):
        stats = group.recovered
        table.add_row(
            f"{group.scope_kind}: {group.label}" if group.scope != "*" else group.label,
            str(group.count),
            str(stats.count),
            span(stats.median),
            span(stats.p90),
            str(group.open) + (f" ({group.failed} failed)" if group.failed else ""),
            span(group.oldest_open_s),
        )
    out.print(table)
    for item in report.open_disturbances:
        say(f"open: {item.kind} {item.label} for {span(item.duration_s(now))}: {item.detail}")

    title("High-risk suppliers", "high_risk_suppliers")
    say(
        f"{share(report.high_risk_share)} of {len(report.suppliers)} supplier(s) high-risk "
        f"({len(report.high_risk)})"
    )
    table = Table("supplier", "risk", "latest Cpk", "PPM", "why")
    for rating in report.suppliers:
        table.add_row(
            rating.label,
            "high" if rating.high_risk else "normal",
            number(rating.latest_cpk),
            number(rating.ppm),
            "; ".join(rating.reasons) or "-",
        )
    out.print(table)

    title("Task handling time", "task_handling")
    table = Table("kind", "closed", "mean h", "median h", "p90 h", "open", "overdue")
    for summary in (report.tasks, *report.tasks_by_kind):
        hours = summary.handling_hours
        table.add_row(
            "all tasks" if summary.kind == "*" else summary.kind,
            str(hours.count),
            number(hours.mean),
            number(hours.median),
            number(hours.p90),
            str(summary.open),
            str(summary.overdue),
        )
    out.print(table)

    title("Contingency-plan freshness", "contingency_plans")
    table = Table("plan", "last review (days ago)", "maximum (days)", "status")
    for plan in report.plans:
        table.add_row(
            plan.plan_id,
            number(plan.age_days),
            number(plan.max_age_days),
            "fresh" if plan.fresh else "STALE",
        )
    out.print(table)
    say(f"{report.fresh_plans} of {len(report.plans)} plan(s) fresh")

    title("Supplier capability radar (0..1, 1 the best)", "radar")
    for rating in report.suppliers:
        table = Table("axis", "score", "raw", "from", title=rating.label)
        for axis in rating.axes:
            if axis.raw is None:
                raw = "-"
            elif axis.unit == "share":
                raw = share(axis.raw)
            else:
                raw = f"{number(axis.raw)} {axis.unit}"
            table.add_row(axis.title, number(axis.score), raw, axis.basis)
        out.print(table)

    title("PPM trend", "ppm_trend")
    table = Table("month", "all suppliers", *(t.label for t in report.trend_suppliers))
    for index, point in enumerate(report.trend_overall):
        table.add_row(
            point.month,
            f"{number(point.ppm)} ({point.out_of_spec}/{point.values})",
            *(number(t.points[index].ppm) for t in report.trend_suppliers),
        )
    out.print(table)
