"""Tasks for people and suppliers (the supplier portal's list), and the executors that open them.

:class:`TaskBoard` keeps tasks in the store's ``tasks`` table: created once per key (a retried
action finds its task), listed by assignee and status, closed, and queried for the overdue ones.
Assignees are addresses (a supplier's member address, kept in lower case so that any spelling
finds it) or role names (``process-engineer``).

Executors:
- ``supplier_task`` (payload ``{supplier, case_id, hold_id, discipline, due_at_us, title}``): the
  portal entry, assigned to the supplier, then a notification to the supplier;
- ``improvement_task`` (payload ``{assignee, title, due_at_us, decision_hash, detail}``): the task,
  then, when configured, a notification.

Notifications go through a :class:`TaskNotifier`: a signed webhook (the same mechanism as the ERP,
one URL per supplier or a default) or an MQTT message (``qnode/suppliers/{supplier}/tasks`` by
default). Both carry the task key, so a receiver can drop the copy a retry sends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from node.control.actions.mqtt_link import MqttLink
from node.control.actions.webhook import SignedWebhook
from node.control.outbox import ActionOutcome, ActionRequest, PendingAction
from node.errors import ActionError, ControlError
from node.offchain.models import Base, TaskRow
from node.offchain.store import Store, now_us

TASKS = Base.metadata.tables[TaskRow.__tablename__]
KIND_SUPPLIER_TASK = "supplier_task"
KIND_IMPROVEMENT_TASK = "improvement_task"
NOTIFICATION_VERSION = 1
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TOPIC_FORBIDDEN = frozenset("/+#\x00")
_LIMITS = {"kind": 40, "key": 200, "assignee": 200, "title": 500}


class TaskStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


def normalize_assignee(assignee: str) -> str:
    """An address in lower case; any other name as it is (trimmed)."""
    assignee = assignee.strip()
    return assignee.lower() if _ADDRESS.match(assignee) else assignee


@dataclass(frozen=True)
class NewTask:
    kind: str
    key: str
    assignee: str
    title: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    due_at_us: int | None = None


@dataclass(frozen=True)
class Task:
    id: int
    kind: str
    key: str
    assignee: str
    title: str
    detail: Mapping[str, Any]
    status: TaskStatus
    due_at_us: int | None
    created_at_us: int
    closed_at_us: int | None

    def overdue(self, at_us: int) -> bool:
        return (
            self.status is TaskStatus.OPEN
            and self.due_at_us is not None
            and (self.due_at_us < at_us)
        )

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["detail"] = dict(self.detail)
        values["status"] = self.status.value
        return values


class TaskBoard:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, connection: Connection, task: NewTask, at_us: int | None = None) -> bool:
        """Insert ``task`` inside the caller's transaction unless its key exists; True if new."""
        values = _row_values(task, now_us() if at_us is None else at_us)
        statement = _insert_ignoring_key(connection.dialect.name).values(**values)
        return connection.execute(statement.returning(TASKS.c.id)).first() is not None

    def create(self, task: NewTask) -> tuple[Task, bool]:
        """The task with ``task.key`` (created now, or as it was), and whether it is new."""
        with self.store.transaction() as connection:
            created = self.add(connection, task)
            row = connection.execute(select(TASKS).where(TASKS.c.key == task.key)).one()
        return _task(row), created

    def get(self, key: str) -> Task | None:
        with self.store.transaction() as connection:
            row = connection.execute(select(TASKS).where(TASKS.c.key == key)).first()
        return None if row is None else _task(row)

    def tasks(
        self,
        *,
        assignee: str | None = None,
        status: TaskStatus | None = None,
        kind: str | None = None,
    ) -> list[Task]:
        """Tasks, oldest first, of an assignee (any spelling of an address), status, kind."""
        query = select(TASKS).order_by(TASKS.c.id)
        if assignee is not None:
            query = query.where(TASKS.c.assignee == normalize_assignee(assignee))
        if status is not None:
            query = query.where(TASKS.c.status == status.value)
        if kind is not None:
            query = query.where(TASKS.c.kind == kind)
        with self.store.transaction() as connection:
            return [_task(row) for row in connection.execute(query).all()]

    def close(self, key: str, at_us: int | None = None) -> Task:
        """Close the task (closing a closed task changes nothing)."""
        closed_at = now_us() if at_us is None else at_us
        with self.store.transaction() as connection:
            connection.execute(
                update(TASKS)
                .where(TASKS.c.key == key, TASKS.c.status == TaskStatus.OPEN.value)
                .values(status=TaskStatus.CLOSED.value, closed_at_us=closed_at)
            )
            row = connection.execute(select(TASKS).where(TASKS.c.key == key)).first()
        if row is None:
            raise ControlError(f"no task {key!r}")
        return _task(row)

    def overdue(self, at_us: int | None = None, *, assignee: str | None = None) -> list[Task]:
        """Open tasks whose due time has passed, the most overdue first."""
        moment = now_us() if at_us is None else at_us
        query = (
            select(TASKS)
            .where(
                TASKS.c.status == TaskStatus.OPEN.value,
                TASKS.c.due_at_us.is_not(None),
                TASKS.c.due_at_us < moment,
            )
            .order_by(TASKS.c.due_at_us, TASKS.c.id)
        )
        if assignee is not None:
            query = query.where(TASKS.c.assignee == normalize_assignee(assignee))
        with self.store.transaction() as connection:
            return [_task(row) for row in connection.execute(query).all()]


def _insert_ignoring_key(dialect: str) -> Insert:
    if dialect == "sqlite":
        return sqlite.insert(TASKS).on_conflict_do_nothing(index_elements=["key"])
    if dialect == "postgresql":
        return postgresql.insert(TASKS).on_conflict_do_nothing(index_elements=["key"])
    raise ControlError(f"tasks: unsupported database {dialect!r}")


def _row_values(task: NewTask, at_us: int) -> dict[str, Any]:
    assignee = normalize_assignee(task.assignee)
    for name, value in (("kind", task.kind), ("key", task.key), ("title", task.title)):
        if not value or len(value) > _LIMITS[name]:
            raise ControlError(f"task {name} must be 1 to {_LIMITS[name]} characters")
    if not assignee or len(assignee) > _LIMITS["assignee"]:
        raise ControlError(f"task assignee must be 1 to {_LIMITS['assignee']} characters")
    try:
        detail = orjson.dumps(dict(task.detail)).decode()
    except TypeError as exc:
        raise ControlError(f"task detail is not JSON: {exc}") from exc
    return {
        "kind": task.kind,
        "key": task.key,
        "assignee": assignee,
        "title": task.title,
        "detail_json": detail,
        "status": TaskStatus.OPEN.value,
        "due_at_us": task.due_at_us,
        "created_at_us": at_us,
        "closed_at_us": None,
    }


def _task(row: Any) -> Task:
    return Task(
        id=int(row.id),
        kind=row.kind,
        key=row.key,
        assignee=row.assignee,
        title=row.title,
        detail=orjson.loads(row.detail_json),
        status=TaskStatus(row.status),
        due_at_us=None if row.due_at_us is None else int(row.due_at_us),
        created_at_us=int(row.created_at_us),
        closed_at_us=None if row.closed_at_us is None else int(row.closed_at_us),
    )


# -- notifications ------------------------------------------------------------------------------


class TaskNotifier(Protocol):
    """Tells ``recipient`` of a task; returns where the notification went (a URL, a topic)."""

    async def notify(self, recipient: str, message: Mapping[str, Any], key: str) -> str: ...


class WebhookTaskNotifier:
    """Signed POSTs: to ``urls[recipient]`` when the recipient has its own receiver, else to the
    webhook's default URL; ``key`` is the Idempotency-Key."""

    def __init__(self, webhook: SignedWebhook, urls: Mapping[str, str] | None = None) -> None:
        self.webhook = webhook
        self.urls = {normalize_assignee(name): url for name, url in (urls or {}).items()}

    async def notify(self, recipient: str, message: Mapping[str, Any], key: str) -> str:
        url = self.urls.get(normalize_assignee(recipient), self.webhook.settings.url)
        await self.webhook.post(message, key=key, url=url)
        return url

    async def aclose(self) -> None:
        await self.webhook.aclose()


class MqttTaskNotifier:
    """QoS 1 messages to ``topic`` with ``{supplier}`` / ``{assignee}`` as the recipient."""

    def __init__(self, link: MqttLink, topic: str) -> None:
        self.link = link
        self.topic = topic

    async def notify(self, recipient: str, message: Mapping[str, Any], key: str) -> str:
        name = normalize_assignee(recipient)
        if not name or _TOPIC_FORBIDDEN & set(name):
            raise ActionError(f"{recipient!r} cannot be an MQTT topic level", retryable=False)
        topic = self.topic.replace("{supplier}", name).replace("{assignee}", name)
        await self.link.publish(topic, orjson.dumps(dict(message)))
        return topic

    async def aclose(self) -> None:
        await self.link.aclose()


def notification(task: Task) -> dict[str, Any]:
    """What a notification says: the task as the portal shows it."""
    return {"v": NOTIFICATION_VERSION, "event": "task_opened", "task": task.as_dict()}


# -- executors ----------------------------------------------------------------------------------


class SupplierTaskExecutor:
    """Executor of ``supplier_task``: the portal entry, then the supplier's notification
    (``notifier`` None: the portal only)."""

    def __init__(self, board: TaskBoard, notifier: TaskNotifier | None = None) -> None:
        self.board = board
        self.notifier = notifier

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        payload = action.payload
        supplier = _required(payload, "supplier", action.kind)
        case_id, discipline = payload.get("case_id"), payload.get("discipline")
        title = str(payload.get("title") or f"8D {discipline} for case {case_id}")
        detail = {
            "case_id": case_id,
            "hold_id": payload.get("hold_id"),
            "discipline": discipline,
        }
        task = NewTask(KIND_SUPPLIER_TASK, action.key, supplier, title, detail, _due(payload))
        return await _open_and_notify(self.board, task, self.notifier, supplier)

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        return ()


class ImprovementTaskExecutor:
    """Executor of ``improvement_task``: the task, then the assignee's notification when a
    ``notifier`` is given."""

    def __init__(self, board: TaskBoard, notifier: TaskNotifier | None = None) -> None:
        self.board = board
        self.notifier = notifier

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        payload = action.payload
        assignee = _required(payload, "assignee", action.kind)
        title = _required(payload, "title", action.kind)
        detail = {"decision_hash": payload.get("decision_hash"), "detail": payload.get("detail")}
        task = NewTask(KIND_IMPROVEMENT_TASK, action.key, assignee, title, detail, _due(payload))
        return await _open_and_notify(self.board, task, self.notifier, assignee)

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        return ()


async def _open_and_notify(
    board: TaskBoard, new: NewTask, notifier: TaskNotifier | None, recipient: str
) -> dict[str, Any]:
    try:
        task, created = await asyncio.to_thread(board.create, new)
    except ControlError as exc:
        raise ActionError(str(exc), retryable=False) from exc
    notified = None
    if notifier is not None:
        # Sent again on a retry (the task is there already): the key lets the receiver drop it.
        notified = await notifier.notify(recipient, notification(task), task.key)
    return {"task_id": task.id, "task_key": task.key, "created": created, "notified": notified}


def _required(payload: Mapping[str, Any], name: str, kind: str) -> str:
    value = payload.get(name)
    if value is None or not str(value).strip():
        raise ActionError(f"{kind} payload lacks {name}", retryable=False)
    return str(value)


def _due(payload: Mapping[str, Any]) -> int | None:
    due = payload.get("due_at_us")
    if due is None:
        return None
    if isinstance(due, bool) or not isinstance(due, int):
        raise ActionError(f"due_at_us must be an integer, got {due!r}", retryable=False)
    return due
