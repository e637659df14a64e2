"""The task board (SQLite and PostgreSQL) and the supplier/improvement task executors, with
notifications received on a real Mosquitto and by a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from node.control.actions.mqtt_link import MqttLink
from node.control.actions.tasks import (
    KIND_IMPROVEMENT_TASK,
    KIND_SUPPLIER_TASK,
    ImprovementTaskExecutor,
    MqttTaskNotifier,
    NewTask,
    SupplierTaskExecutor,
    TaskBoard,
    TaskStatus,
    WebhookTaskNotifier,
)
from node.control.actions.webhook import SignedWebhook
from node.control.outbox import ActionStatus, PendingAction
from node.errors import ActionError, ControlError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store
from node.oracles.simulators.erp import ErpSimulator
from node.settings import MqttBrokerSettings, WebhookSettings

SUPPLIER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER_SUPPLIER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
SECRET = "supplier-hook-secret-0123456789"
DAY_US = 86_400_000_000


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def board(store_url: str, tmp_path: Path) -> Iterator[TaskBoard]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(store_url, classification, BlobStore(tmp_path / "blobs"))
    yield TaskBoard(store)
    store.close()


def supplier_task(key: str = "supplier_task:case-3:D4", supplier: str = SUPPLIER) -> PendingAction:
    payload = {
        "supplier": supplier,
        "case_id": 3,
        "hold_id": 7,
        "discipline": "D4",
        "due_at_us": 1_900_000_000_000_000,
        "title": "D4 root cause: bore diameter above USL",
    }
    return PendingAction(1, KIND_SUPPLIER_TASK, key, payload, ActionStatus.RUNNING, 0)


class TopicListener:
    """A plain paho subscriber collecting the JSON messages of one topic filter."""

    def __init__(self, url: str, topic_filter: str, client_id: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[str, Any]] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, json.loads(m.payload))
        )
        self._client.connect(host, int(port))
        self._client.loop_start()
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    async def wait_for(self, count: int) -> None:
        for _ in range(200):
            if len(self.messages) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.messages)} messages, expected {count}")


def test_tasks_are_created_once_per_key_and_listed(board: TaskBoard) -> None:
    task = NewTask("improvement_task", "improve:1", "process-engineer", "Raise Cpk of A", {"n": 1})
    first, created = board.create(task)
    again, created_again = board.create(task)
    assert created and not created_again
    assert again == first and first.status is TaskStatus.OPEN and first.detail == {"n": 1}

    board.create(NewTask(KIND_SUPPLIER_TASK, "s:1", SUPPLIER, "D3 containment"))
    board.create(NewTask(KIND_SUPPLIER_TASK, "s:2", SUPPLIER.lower(), "D4 root cause"))
    board.create(NewTask(KIND_SUPPLIER_TASK, "s:3", OTHER_SUPPLIER, "D3 containment"))
    mine = board.tasks(assignee=SUPPLIER)  # checksummed or not, the same supplier
    assert [t.key for t in mine] == ["s:1", "s:2"]
    assert {t.assignee for t in mine} == {SUPPLIER.lower()}
    assert [t.key for t in board.tasks(kind="improvement_task")] == ["improve:1"]

    closed = board.close("s:1", at_us=123)
    assert closed.status is TaskStatus.CLOSED and closed.closed_at_us == 123
    assert board.close("s:1", at_us=456).closed_at_us == 123  # closing twice changes nothing
    assert [t.key for t in board.tasks(assignee=SUPPLIER, status=TaskStatus.OPEN)] == ["s:2"]
    assert [t.key for t in board.tasks(status=TaskStatus.CLOSED)] == ["s:1"]
    with pytest.raises(ControlError, match="no task 'nope'"):
        board.close("nope")
    with pytest.raises(ControlError, match="title must be 1 to 500"):
        board.create(NewTask("k", "long", "someone", "x" * 501))
    assert board.get("long") is None


def test_overdue_tasks_are_the_open_ones_past_their_due_time(board: TaskBoard) -> None:
    now = 10 * DAY_US
    board.create(NewTask("t", "late-2", "a", "two days late", due_at_us=now - 2 * DAY_US))
    board.create(NewTask("t", "late-1", "b", "one day late", due_at_us=now - DAY_US))
    board.create(NewTask("t", "future", "a", "due tomorrow", due_at_us=now + DAY_US))
    board.create(NewTask("t", "undated", "a", "no due time"))
    board.create(NewTask("t", "done", "a", "late but closed", due_at_us=now - 3 * DAY_US))
    board.close("done")
    assert [t.key for t in board.overdue(now)] == ["late-2", "late-1"]
    assert [t.key for t in board.overdue(now, assignee="a")] == ["late-2"]
    assert board.get("late-1") is not None and board.get("late-1").overdue(now)  # type: ignore[union-attr]
    assert [t.key for t in board.overdue(now + 2 * DAY_US)] == ["late-2", "late-1", "future"]


def test_supplier_task_notified_on_mqtt(board: TaskBoard, mqtt_url: str, mqtt_prefix: str) -> None:
    async def scenario() -> None:
        listener = TopicListener(mqtt_url, f"{mqtt_prefix}/suppliers/+/tasks", f"{mqtt_prefix}-l")
        broker = MqttBrokerSettings(url=mqtt_url, client_id=f"{mqtt_prefix}-node")
        notifier = MqttTaskNotifier(MqttLink(broker), f"{mqtt_prefix}/suppliers/{{supplier}}/tasks")
        try:
            executor = SupplierTaskExecutor(board, notifier)
            result = await executor.execute(supplier_task())
            assert result["created"] is True
            assert result["notified"] == f"{mqtt_prefix}/suppliers/{SUPPLIER.lower()}/tasks"
            await listener.wait_for(1)
            topic, message = listener.messages[0]
            assert topic == result["notified"]
            assert message["event"] == "task_opened"
            task = message["task"]
            assert task["key"] == "supplier_task:case-3:D4" and task["assignee"] == SUPPLIER.lower()
            assert task["detail"] == {"case_id": 3, "hold_id": 7, "discipline": "D4"}
            assert task["due_at_us"] == 1_900_000_000_000_000

            # A retry (say the first notification failed): the same task, notified again.
            again = await executor.execute(supplier_task())
            assert again["created"] is False and again["task_id"] == result["task_id"]
            await listener.wait_for(2)
            assert listener.messages[1][1]["task"]["key"] == task["key"]
            (portal,) = board.tasks(assignee=SUPPLIER, status=TaskStatus.OPEN)
            assert portal.title == "D4 root cause: bore diameter above USL"
        finally:
            await notifier.aclose()
            listener.close()

    run(scenario)


def test_supplier_task_notified_by_webhook(board: TaskBoard) -> None:
    async def scenario() -> None:
        with ErpSimulator(SECRET) as receiver:
            settings = WebhookSettings(url=receiver.hook_url("default"), secret=SECRET)
            own = {SUPPLIER: receiver.hook_url("borealis")}
            notifier = WebhookTaskNotifier(SignedWebhook(settings, name="supplier hook"), own)
            try:
                executor = SupplierTaskExecutor(board, notifier)
                first = await executor.execute(supplier_task())
                assert first["notified"] == receiver.hook_url("borealis")
                await executor.execute(supplier_task())  # a retry: dropped by its key
                other = supplier_task("supplier_task:case-4:D3", OTHER_SUPPLIER)
                assert (await executor.execute(other))["notified"] == receiver.hook_url("default")

                received = receiver.received
                assert [(r.path, r.status, r.replayed) for r in received] == [
                    ("/hooks/borealis", 200, False),
                    ("/hooks/borealis", 200, True),
                    ("/hooks/default", 200, False),
                ]
                assert received[0].key == "supplier_task:case-3:D4"
                assert received[0].body["task"]["assignee"] == SUPPLIER.lower()

                receiver.fail_next(1)
                with pytest.raises(ActionError, match="answered 503") as caught:
                    await executor.execute(supplier_task("supplier_task:case-5:D5"))
                assert caught.value.retryable
                assert board.get("supplier_task:case-5:D5") is not None  # in the portal anyway
            finally:
                await notifier.aclose()

    run(scenario)


def test_improvement_task_for_the_process_engineer(
    board: TaskBoard, mqtt_url: str, mqtt_prefix: str
) -> None:
    payload = {
        "assignee": "process-engineer",
        "title": "Process A Cpk 1.21 < 1.33 and B defects +17 % month over month",
        "due_at_us": 1_900_000_000_000_000,
        "decision_hash": "0x" + "12" * 32,
        "detail": {"cpk_a": 1.21, "defect_rate_change_b": 0.17},
    }

    async def scenario() -> None:
        quiet = ImprovementTaskExecutor(board)
        action = PendingAction(
            1, KIND_IMPROVEMENT_TASK, "improve:7", payload, ActionStatus.RUNNING, 0
        )
        result = await quiet.execute(action)
        assert result["created"] is True and result["notified"] is None
        (task,) = board.tasks(assignee="process-engineer")
        assert task.detail["detail"] == {"cpk_a": 1.21, "defect_rate_change_b": 0.17}
        assert task.detail["decision_hash"] == "0x" + "12" * 32

        listener = TopicListener(mqtt_url, f"{mqtt_prefix}/tasks/+", f"{mqtt_prefix}-l")
        broker = MqttBrokerSettings(url=mqtt_url, client_id=f"{mqtt_prefix}-node")
        notifier = MqttTaskNotifier(MqttLink(broker), f"{mqtt_prefix}/tasks/{{assignee}}")
        try:
            second = PendingAction(
                2, KIND_IMPROVEMENT_TASK, "improve:8", payload, ActionStatus.RUNNING, 0
            )
            notified = await ImprovementTaskExecutor(board, notifier).execute(second)
            assert notified["notified"] == f"{mqtt_prefix}/tasks/process-engineer"
            await listener.wait_for(1)
            assert listener.messages[0][1]["task"]["key"] == "improve:8"

            for bad, message in (
                ({"title": "t"}, "lacks assignee"),
                ({"assignee": "x"}, "lacks title"),
                ({"assignee": "x", "title": "t", "due_at_us": "soon"}, "due_at_us"),
            ):
                wrong = PendingAction(
                    3, KIND_IMPROVEMENT_TASK, "improve:9", bad, ActionStatus.RUNNING, 0
                )
                with pytest.raises(ActionError, match=message) as caught:
                    await quiet.execute(wrong)
                assert not caught.value.retryable
        finally:
            await notifier.aclose()
            listener.close()

    run(scenario)
