"""Task handling time: how long the node's tasks (8D answers, reviews, improvement tasks) take.

A task's handling time is ``closed_at - created_at`` (the task board's own times). The average
is the mean over closed tasks, with the median and p90 beside it; open tasks are counted, and an
open task past its due time is overdue. Per kind too (``supplier_task``, ``improvement_task``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from node.resilience.distribution import HOUR_US, Distribution, distribution
from node.resilience.facts import TaskTimes

__all__ = ["TaskHandling", "task_handling"]


@dataclass(frozen=True)
class TaskHandling:
    kind: str
    """A task kind, or ``*`` for all."""
    handling_hours: Distribution
    open: int
    overdue: int

    @property
    def count(self) -> int:
        return self.handling_hours.count + self.open


def _summary(kind: str, tasks: Sequence[TaskTimes], now_us: int) -> TaskHandling:
    closed = [
        (t.closed_at_us - t.created_at_us) / HOUR_US for t in tasks if t.closed_at_us is not None
    ]
    still_open = [t for t in tasks if t.closed_at_us is None]
    overdue = sum(t.due_at_us is not None and t.due_at_us < now_us for t in still_open)
    return TaskHandling(kind, distribution([max(0.0, h) for h in closed]), len(still_open), overdue)


def task_handling(
    tasks: Sequence[TaskTimes], now_us: int
) -> tuple[TaskHandling, list[TaskHandling]]:
    """(all tasks, per kind)."""
    by_kind: dict[str, list[TaskTimes]] = defaultdict(list)
    for task in tasks:
        by_kind[task.kind].append(task)
    kinds = [_summary(kind, items, now_us) for kind, items in sorted(by_kind.items())]
    return _summary("*", tasks, now_us), kinds
