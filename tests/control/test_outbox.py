"""The action outbox and runner on SQLite and PostgreSQL: idempotent keys, bounded retries with
backoff, permanent failures, follow-ups, recovery after a crash."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from node.control.outbox import (
    ActionOutbox,
    ActionOutcome,
    ActionRequest,
    ActionRunner,
    ActionStatus,
    PendingAction,
    RetryPolicy,
)
from node.errors import ActionError
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store

FAST = RetryPolicy(max_attempts=3, first_delay_s=0.01, max_delay_s=0.02)


@pytest.fixture
def outbox(store_url: str, tmp_path: Path) -> Iterator[ActionOutbox]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(store_url, classification, BlobStore(tmp_path / "blobs"))
    yield ActionOutbox(store)
    store.close()


class ScriptedExecutor:
    """Answers each attempt of a key from a script: a result, or an ActionError to raise."""

    def __init__(self, script: Mapping[str, Sequence[Any]]) -> None:
        self.script = {key: list(steps) for key, steps in script.items()}
        self.calls: list[tuple[str, int]] = []
        self.outcomes: list[tuple[str, ActionOutcome]] = []

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        self.calls.append((action.key, action.attempts))
        step = self.script[action.key].pop(0)
        if isinstance(step, Exception):
            raise step
        return dict(step)

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        self.outcomes.append((action.key, outcome))
        return [ActionRequest("record", f"record:{action.key}", {"ok": outcome.succeeded})]


async def drain(runner: ActionRunner, rounds: int = 50) -> None:
    for _ in range(rounds):
        if not await runner.run_once():
            await asyncio.sleep(0.02)


def test_enqueue_is_idempotent_by_key(outbox: ActionOutbox) -> None:
    request = ActionRequest("plc_compensation", "plc_compensation:7", {"delta_mm": -0.05})
    assert outbox.add([request, request]) == 1
    assert outbox.add([request]) == 0
    (pending,) = outbox.actions()
    assert (pending.kind, pending.status, pending.payload) == (
        "plc_compensation",
        ActionStatus.PENDING,
        {"delta_mm": -0.05},
    )


def test_a_transient_failure_is_retried_then_done_with_its_follow_up(
    outbox: ActionOutbox,
) -> None:
    executor = ScriptedExecutor({"a:1": [ActionError("PLC busy"), {"applied": True}]})
    outbox.add([ActionRequest("a", "a:1")])
    asyncio.run(drain(ActionRunner(outbox, {"a": executor}, FAST)))

    assert executor.calls == [("a:1", 0), ("a:1", 1)]
    done = outbox.get("a:1")
    assert done is not None
    assert (done.status, done.attempts, done.result) == (ActionStatus.DONE, 2, {"applied": True})
    assert done.last_error == "PLC busy"
    follow_up = outbox.get("record:a:1")
    assert follow_up is not None and follow_up.payload == {"ok": True}


def test_retries_are_bounded_and_the_failure_is_kept_with_a_follow_up(
    outbox: ActionOutbox,
) -> None:
    executor = ScriptedExecutor({"a:2": [ActionError("no ack")] * 3})
    outbox.add([ActionRequest("a", "a:2")])
    asyncio.run(drain(ActionRunner(outbox, {"a": executor}, FAST)))

    assert len(executor.calls) == FAST.max_attempts
    failed = outbox.get("a:2")
    assert failed is not None and failed.status is ActionStatus.FAILED
    assert failed.last_error == "no ack (gave up after 3 attempts)"
    assert executor.outcomes == [("a:2", ActionOutcome(error="no ack (gave up after 3 attempts)"))]
    follow_up = outbox.get("record:a:2")
    assert follow_up is not None and follow_up.payload == {"ok": False}


def test_a_permanent_failure_is_not_retried(outbox: ActionOutbox) -> None:
    executor = ScriptedExecutor({"a:3": [ActionError("read-back differs", retryable=False)]})
    outbox.add([ActionRequest("a", "a:3")])
    asyncio.run(drain(ActionRunner(outbox, {"a": executor}, FAST)))
    failed = outbox.get("a:3")
    assert failed is not None
    assert (failed.status, failed.last_error) == (ActionStatus.FAILED, "read-back differs")
    assert len(executor.calls) == 1


def test_an_executor_bug_is_a_retried_failure_not_a_dead_runner(outbox: ActionOutbox) -> None:
    executor = ScriptedExecutor({"a:4": [ZeroDivisionError("oops"), {"fine": 1}]})
    outbox.add([ActionRequest("a", "a:4")])
    asyncio.run(drain(ActionRunner(outbox, {"a": executor}, FAST)))
    done = outbox.get("a:4")
    assert done is not None and done.status is ActionStatus.DONE
    assert done.last_error == "ZeroDivisionError: oops"


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=10, first_delay_s=0.5, max_delay_s=3.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_actions_not_yet_due_wait_and_other_kinds_are_left_alone(outbox: ActionOutbox) -> None:
    outbox.add(
        [
            ActionRequest("a", "a:later", not_before_us=2**62),
            ActionRequest("b", "b:now"),
            ActionRequest("a", "a:now"),
        ]
    )
    claimed = outbox.claim_due(["a"])
    assert [action.key for action in claimed] == ["a:now"]
    assert outbox.claim_due(["a"]) == []


def test_actions_left_running_by_a_crash_run_again(outbox: ActionOutbox) -> None:
    outbox.add([ActionRequest("a", "a:5")])
    assert [a.key for a in outbox.claim_due(["a"])] == ["a:5"]  # then the process died
    executor = ScriptedExecutor({"a:5": [{"again": True}]})
    runner = ActionRunner(outbox, {"a": executor}, FAST, poll_s=0.01)

    async def run_briefly() -> None:
        task = asyncio.create_task(runner.run())
        for _ in range(200):
            done = outbox.get("a:5")
            if done is not None and done.status is ActionStatus.DONE:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run_briefly())
    assert executor.calls == [("a:5", 0)]
    done = outbox.get("a:5")
    assert done is not None and done.status is ActionStatus.DONE
