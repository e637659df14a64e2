"""ERP purchase-order actions against the ERP simulator (a real HTTP server on loopback):
signatures, idempotency keys, retryable and permanent answers, a server that is down, and the
retries a real ActionRunner makes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.control.actions.erp import KIND_PAUSE, KIND_RELEASE, ErpPurchaseOrderExecutor
from node.control.actions.webhook import SignedWebhook, encode_body, sign
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
from node.oracles.simulators.erp import ErpSimulator
from node.settings import WebhookSettings

SECRET = "erp-shared-secret-0123456789"
SUPPLIER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
FAST_RETRIES = RetryPolicy(max_attempts=4, first_delay_s=0.01, max_delay_s=0.02)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def erp() -> Iterator[ErpSimulator]:
    with ErpSimulator(SECRET) as simulator:
        yield simulator


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[ActionOutbox]:
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}", classification, BlobStore(tmp_path))
    yield ActionOutbox(store)
    store.close()


def webhook(url: str, secret: str = SECRET) -> SignedWebhook:
    return SignedWebhook(WebhookSettings(url=url, secret=secret, timeout_s=2.0), name="ERP")


def pending(kind: str, hold_id: str = "7", attempts: int = 0) -> PendingAction:
    payload = {
        "supplier": SUPPLIER,
        "hold_id": hold_id,
        "reason": "5 lots above USL",
        "decision_hash": "0x" + "cd" * 32,
    }
    return PendingAction(1, kind, f"{kind}:{hold_id}", payload, ActionStatus.RUNNING, attempts)


async def drain(runner: ActionRunner, rounds: int = 100) -> None:
    idle = 0
    for _ in range(rounds):
        if await runner.run_once():
            idle = 0
            continue
        idle += 1
        if idle > 10:
            return
        await asyncio.sleep(0.02)


def test_pause_then_release_with_signature_and_key(erp: ErpSimulator) -> None:
    async def scenario() -> None:
        hook = webhook(erp.url)
        executor = ErpPurchaseOrderExecutor(hook)
        try:
            result = await executor.execute(pending(KIND_PAUSE))
            assert result["status"] == 200
            assert result["erp"]["purchase_orders"] == "paused"
            assert erp.purchase_orders(SUPPLIER) == "paused"
            (request,) = erp.received
            assert request.key == "erp_po_pause:7" and request.status == 200
            assert request.body == {
                "operation": "pause",
                "supplier": SUPPLIER,
                "hold_id": "7",
                "reason": "5 lots above USL",
                "decision_hash": "0x" + "cd" * 32,
                "action_key": "erp_po_pause:7",
            }
            await executor.execute(pending(KIND_RELEASE))
            assert erp.purchase_orders(SUPPLIER) == "open"
            done = ActionOutcome(result={"status": 200})
            assert executor.follow_up(pending(KIND_RELEASE), done) == ()
        finally:
            await hook.aclose()

    run(scenario)


def test_the_simulator_checks_signatures_and_drops_duplicates(erp: ErpSimulator) -> None:
    async def scenario() -> None:
        forged = webhook(erp.url, secret="not-the-erp-secret-at-all")
        try:
            with pytest.raises(ActionError, match="answered 401") as caught:
                await ErpPurchaseOrderExecutor(forged).execute(pending(KIND_PAUSE))
            assert not caught.value.retryable
        finally:
            await forged.aclose()
        assert erp.purchase_orders(SUPPLIER) == "open"

        hook = webhook(erp.url)
        executor = ErpPurchaseOrderExecutor(hook)
        try:
            await executor.execute(pending(KIND_PAUSE, "8"))
            await executor.execute(pending(KIND_RELEASE, "8"))
            # A late retry of the pause (same key) must not pause the orders again.
            again = await executor.execute(pending(KIND_PAUSE, "8", attempts=1))
            assert again["erp"]["purchase_orders"] == "paused"  # the first answer, replayed
            assert erp.purchase_orders(SUPPLIER) == "open"
            assert [r.replayed for r in erp.received[-3:]] == [False, False, True]
        finally:
            await hook.aclose()

        # The signature is over the raw body: one changed byte is refused.
        body = encode_body({"operation": "pause", "supplier": SUPPLIER, "hold_id": "9"})
        headers = {"Idempotency-Key": "k", "X-Qnode-Signature": sign(SECRET, body)}
        async with httpx.AsyncClient() as client:
            tampered = body.replace(b'"9"', b'"6"')
            answer = await client.post(erp.url, content=tampered, headers=headers)
            assert answer.status_code == 401
            answer = await client.post(erp.url, content=body, headers=headers)
            assert answer.status_code == 200
        assert erp.holds(SUPPLIER) == {"9"}

    run(scenario)


def test_503_twice_then_success_through_the_runner(erp: ErpSimulator, outbox: ActionOutbox) -> None:
    async def scenario() -> None:
        hook = webhook(erp.url)
        try:
            erp.fail_next(2)
            payload = dict(pending(KIND_PAUSE).payload)
            outbox.add([ActionRequest(KIND_PAUSE, "erp_po_pause:7", payload)])
            executor = ErpPurchaseOrderExecutor(hook)
            runner = ActionRunner(outbox, {KIND_PAUSE: executor}, FAST_RETRIES)
            await drain(runner)
        finally:
            await hook.aclose()
        done = outbox.get("erp_po_pause:7")
        assert done is not None and done.status is ActionStatus.DONE
        assert done.attempts == 3
        assert [r.status for r in erp.received] == [503, 503, 200]
        assert {r.key for r in erp.received} == {"erp_po_pause:7"}
        assert erp.purchase_orders(SUPPLIER) == "paused"

    run(scenario)


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (429, True)])
def test_answers_are_classified(erp: ErpSimulator, status: int, retryable: bool) -> None:
    async def scenario() -> None:
        hook = webhook(erp.url)
        try:
            erp.fail_next(1, status=status)
            with pytest.raises(ActionError, match=f"answered {status}") as caught:
                await ErpPurchaseOrderExecutor(hook).execute(pending(KIND_PAUSE))
            assert caught.value.retryable is retryable
        finally:
            await hook.aclose()

    run(scenario)


def test_a_bad_request_fails_for_good_through_the_runner(
    erp: ErpSimulator, outbox: ActionOutbox
) -> None:
    async def scenario() -> None:
        hook = webhook(erp.url)
        try:
            outbox.add([ActionRequest(KIND_PAUSE, "erp_po_pause:x", {"supplier": SUPPLIER})])
            runner = ActionRunner(
                outbox, {KIND_PAUSE: ErpPurchaseOrderExecutor(hook)}, FAST_RETRIES
            )
            erp.fail_next(1, status=400)
            outbox.add(
                [ActionRequest(KIND_PAUSE, "erp_po_pause:y", dict(pending(KIND_PAUSE).payload))]
            )
            await drain(runner)
        finally:
            await hook.aclose()
        malformed = outbox.get("erp_po_pause:x")
        assert malformed is not None and malformed.status is ActionStatus.FAILED
        assert malformed.attempts == 1 and "lacks hold_id" in (malformed.last_error or "")
        refused = outbox.get("erp_po_pause:y")
        assert refused is not None and refused.status is ActionStatus.FAILED
        assert refused.attempts == 1 and "answered 400" in (refused.last_error or "")

    run(scenario)


def test_an_erp_that_is_down_is_retryable_and_served_once_back(erp: ErpSimulator) -> None:
    async def scenario() -> None:
        hook = webhook(erp.url)
        executor = ErpPurchaseOrderExecutor(hook)
        try:
            erp.stop()
            with pytest.raises(ActionError, match="unreachable") as caught:
                await executor.execute(pending(KIND_PAUSE))
            assert caught.value.retryable
            erp.start()
            result = await executor.execute(pending(KIND_PAUSE, attempts=1))
            assert result["status"] == 200 and erp.purchase_orders(SUPPLIER) == "paused"
        finally:
            await hook.aclose()

    run(scenario)
