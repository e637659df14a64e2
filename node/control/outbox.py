"""The action outbox: what the node owes the outside world, written with the decision that owes it.

A rule firing or a contract event does not act directly. It enqueues an :class:`ActionRequest`
(a PLC write, a webhook, a notification, a chain record) in the ``control_actions`` table, inside
the same database transaction as whatever caused it (the event checkpoint, the decision record).
The :class:`ActionRunner` then executes each due action through the executor of its kind:
- Each action has a unique idempotency key, so enqueuing the same request twice is a no-op. An
  executor must be idempotent too: after a crash between its effect and its ``done`` mark, it runs
  again. The PLC handshake, for example, carries the request id.
- A failure marked retryable is tried again with exponential backoff, at most
  ``RetryPolicy.max_attempts`` times. After that, or after a permanent failure, the action is
  ``failed``, with its error kept. There is no silent retry storm.
- When an action ends, its executor may name follow-up actions (e.g. record the PLC's
  acknowledgement on-chain). They are enqueued in the transaction that closes the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, select, update

from node.errors import ActionError, StoreError
from node.offchain.models import Base, ControlActionRow
from node.offchain.store import Store, now_us

log = logging.getLogger(__name__)

ACTIONS = Base.metadata.tables[ControlActionRow.__tablename__]
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_CONFLICT_IGNORE = {
    "sqlite": "INSERT OR IGNORE INTO {table} ({columns}) VALUES ({values})",
    "postgresql": "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (key) DO NOTHING",
}
_COLUMNS = (
    "kind",
    "key",
    "payload_json",
    "status",
    "attempts",
    "next_attempt_at_us",
    "created_at_us",
    "updated_at_us",
)


class ActionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ActionRequest:
    """An action to take once: ``key`` names it uniquely (e.g. ``plc_compensation:7``)."""

    kind: str
    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    not_before_us: int = 0


@dataclass(frozen=True)
class PendingAction:
    id: int
    kind: str
    key: str
    payload: Mapping[str, Any]
    status: ActionStatus
    attempts: int
    """Attempts made before this one."""
    last_error: str | None = None
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ActionOutcome:
    """How an action ended: ``result`` when done, ``error`` when it failed for good."""

    result: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


class Executor(Protocol):
    """Carries out the actions of one or more kinds; must be idempotent per action key."""

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        """Do it; return what happened (JSON-able). Raise ActionError when it did not."""
        ...

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        """Actions owed once this one has ended (done or failed for good)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 60.0

    def delay_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        return float(min(self.first_delay_s * 2 ** (attempts - 1), self.max_delay_s))


class ActionOutbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(self, connection: Connection, requests: Sequence[ActionRequest]) -> int:
        """Insert ``requests`` inside the caller's transaction; a key already present is left as
        it is. Returns how many were new."""
        if not requests:
            return 0
        mark = _PLACEHOLDERS[connection.dialect.paramstyle]
        template = _CONFLICT_IGNORE[connection.dialect.name]
        statement = template.format(
            table=ACTIONS.name, columns=", ".join(_COLUMNS), values=", ".join([mark] * 8)
        )
        now = now_us()
        rows = [
            (
                r.kind,
                r.key,
                orjson.dumps(r.payload).decode(),
                ActionStatus.PENDING.value,
                0,
                max(r.not_before_us, 0),
                now,
                now,
            )
            for r in requests
        ]
        result = connection.exec_driver_sql(statement, rows)
        return max(result.rowcount, 0)

    def add(self, requests: Sequence[ActionRequest]) -> int:
        with self.store.transaction() as connection:
            return self.enqueue(connection, requests)

    def claim_due(
        self, kinds: Collection[str], limit: int = 100, now: int | None = None
    ) -> list[PendingAction]:
        """Mark up to ``limit`` due pending actions of ``kinds`` running, and return them."""
        now = now_us() if now is None else now
        with self.store.transaction() as connection:
            rows = connection.execute(
                select(ACTIONS)
                .where(
                    ACTIONS.c.status == ActionStatus.PENDING.value,
                    ACTIONS.c.next_attempt_at_us <= now,
                    ACTIONS.c.kind.in_(list(kinds)),
                )
                .order_by(ACTIONS.c.id)
                .limit(limit)
            ).all()
            if rows:
                connection.execute(
                    update(ACTIONS)
                    .where(ACTIONS.c.id.in_([row.id for row in rows]))
                    .values(status=ActionStatus.RUNNING.value, updated_at_us=now)
                )
        return [_action(row, ActionStatus.RUNNING) for row in rows]

    def recover(self) -> int:
        """After a restart: actions left running by a crash are pending again (executors are
        idempotent). Returns how many."""
        with self.store.transaction() as connection:
            result = connection.execute(
                update(ACTIONS)
                .where(ACTIONS.c.status == ActionStatus.RUNNING.value)
                .values(status=ActionStatus.PENDING.value, updated_at_us=now_us())
            )
        return max(result.rowcount, 0)

    def complete(
        self, action: PendingAction, result: Mapping[str, Any], follow_ups: Sequence[ActionRequest]
    ) -> None:
        with self.store.transaction() as connection:
            self._close(connection, action, ActionStatus.DONE, result=result)
            self.enqueue(connection, follow_ups)

    def retry_later(self, action: PendingAction, error: str, delay_s: float) -> None:
        now = now_us()
        with self.store.transaction() as connection:
            connection.execute(
                update(ACTIONS)
                .where(ACTIONS.c.id == action.id)
                .values(
                    status=ActionStatus.PENDING.value,
                    attempts=action.attempts + 1,
                    next_attempt_at_us=now + int(delay_s * 1e6),
                    updated_at_us=now,
                    last_error=error,
                )
            )

    def fail(self, action: PendingAction, error: str, follow_ups: Sequence[ActionRequest]) -> None:
        with self.store.transaction() as connection:
            self._close(connection, action, ActionStatus.FAILED, error=error)
            self.enqueue(connection, follow_ups)

    def _close(
        self,
        connection: Connection,
        action: PendingAction,
        status: ActionStatus,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "status": status.value,
            "attempts": action.attempts + 1,
            "updated_at_us": now_us(),
        }
        if result is not None:
            values["result_json"] = orjson.dumps(result).decode()
        if error is not None:
            values["last_error"] = error
        connection.execute(update(ACTIONS).where(ACTIONS.c.id == action.id).values(**values))

    def get(self, key: str) -> PendingAction | None:
        with self.store.transaction() as connection:
            row = connection.execute(select(ACTIONS).where(ACTIONS.c.key == key)).first()
        return None if row is None else _action(row)

    def actions(
        self, statuses: Collection[ActionStatus] | None = None, kind: str | None = None
    ) -> list[PendingAction]:
        query = select(ACTIONS).order_by(ACTIONS.c.id)
        if statuses is not None:
            query = query.where(ACTIONS.c.status.in_([s.value for s in statuses]))
        if kind is not None:
            query = query.where(ACTIONS.c.kind == kind)
        with self.store.transaction() as connection:
            return [_action(row) for row in connection.execute(query).all()]


def _action(row: Any, status: ActionStatus | None = None) -> PendingAction:
    return PendingAction(
        id=int(row.id),
        kind=row.kind,
        key=row.key,
        payload=orjson.loads(row.payload_json),
        status=status or ActionStatus(row.status),
        attempts=int(row.attempts),
        last_error=row.last_error,
        result=orjson.loads(row.result_json) if row.result_json else None,
    )


class ActionRunner:
    """Executes due actions with their kind's executor until cancelled.

    ``wake()`` (thread-safe) starts a pass at once, e.g. right after an enqueue; otherwise the
    outbox is looked at every ``poll_s``. Actions of different keys run concurrently, up to
    ``concurrency``.
    """

    def __init__(
        self,
        outbox: ActionOutbox,
        executors: Mapping[str, Executor],
        policy: RetryPolicy = RetryPolicy(),
        poll_s: float = 0.5,
        concurrency: int = 8,
    ) -> None:
        self.outbox = outbox
        self.executors = dict(executors)
        self.policy = policy
        self.poll_s = poll_s
        self.concurrency = concurrency
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def run(self) -> None:
        """Until cancelled. Each action runs as a task of its own, so that a slow one (a
        transaction waiting for its block) never holds back the others; at most
        ``concurrency`` at once. A StoreError of an action stops the runner."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        recovered = await asyncio.to_thread(self.outbox.recover)
        if recovered:
            log.info("%d action(s) interrupted by a restart will run again", recovered)
        running: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]
            wake.set()

        try:
            while True:
                if failures:
                    raise failures[0]
                wake.clear()
                free = self.concurrency - len(running)
                due = (
                    await asyncio.to_thread(self.outbox.claim_due, list(self.executors), free)
                    if free > 0
                    else []
                )
                for action in due:
                    task = asyncio.create_task(self._execute(action))
                    running.add(task)
                    task.add_done_callback(finished)
                if due:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.poll_s)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def run_once(self) -> int:
        """Execute the actions due now; how many ran."""
        due = await asyncio.to_thread(self.outbox.claim_due, list(self.executors), self.concurrency)
        if due:
            await asyncio.gather(*(self._execute(action) for action in due))
        return len(due)

    async def _execute(self, action: PendingAction) -> None:
        executor = self.executors[action.kind]
        started = time.perf_counter()
        try:
            result = await executor.execute(action)
        except ActionError as exc:
            await self._failed(executor, action, str(exc), exc.retryable)
            return
        except StoreError:
            raise
        except Exception as exc:  # an executor bug must not stop the runner or lose the action
            log.exception("action %s (%s) raised", action.key, action.kind)
            await self._failed(executor, action, f"{type(exc).__name__}: {exc}", True)
            return
        follow_ups = executor.follow_up(action, ActionOutcome(result=result))
        await asyncio.to_thread(self.outbox.complete, action, result, follow_ups)
        log.debug("action %s done in %.1f ms", action.key, (time.perf_counter() - started) * 1e3)

    async def _failed(
        self, executor: Executor, action: PendingAction, error: str, retryable: bool
    ) -> None:
        attempts = action.attempts + 1
        if retryable and attempts < self.policy.max_attempts:
            delay = self.policy.delay_s(attempts)
            log.warning(
                "action %s failed (attempt %d of %d), retrying in %.1f s: %s",
                action.key,
                attempts,
                self.policy.max_attempts,
                delay,
                error,
            )
            await asyncio.to_thread(self.outbox.retry_later, action, error, delay)
            return
        why = error if not retryable else f"{error} (gave up after {attempts} attempts)"
        log.error("action %s failed: %s", action.key, why)
        follow_ups = executor.follow_up(action, ActionOutcome(error=why))
        await asyncio.to_thread(self.outbox.fail, action, why, follow_ups)
