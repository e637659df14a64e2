"""A node crash between a contract event and its action: ``qnode run`` is killed with SIGKILL
while the PLC write it owes for ``CompensationRequested`` waits for the PLC's acknowledgement.
Restarted, it neither misses the action nor repeats it: one request on-chain, one setpoint change
at the PLC, one acknowledgement recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.chain.contract_events import of_type
from node.chain.line_control import CompensationAcknowledgedEvent, CompensationRequestedEvent
from node.control.decisions import Decision
from node.control.deploy import register_lines
from node.control.outbox import ActionOutbox, ActionStatus
from node.keys import PASSWORD_ENV
from node.oracles.simulators.coating_plc import CoatingLinePlc, PlcConfig
from tests.control.plant import PASSWORD, Plant, build_plant, records_of
from tests.control.test_closed_loop import BLADE, COATER_URI, CV_RULE, rules_file
from tests.hardhat_node import HardhatChain

T = TypeVar("T")
TIMEOUT = 90.0


class PlcThread:
    """The coating-line PLC simulator on an event loop of its own thread, like a real PLC that
    goes on while the node is killed."""

    def __init__(self, config: PlcConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.plc = CoatingLinePlc(config)
        self.call(self.plc.start())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def snapshot(self) -> Any:
        async def take() -> Any:
            return self.plc.snapshot()

        return self.call(take())

    def close(self) -> None:
        self.call(self.plc.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def plc() -> Iterator[PlcThread]:
    running = PlcThread(
        PlcConfig(thickness_cv_pct=5.0, gauge_interval_s=0.05, ack_delay_s=3.0, seed=11)
    )
    yield running
    running.close()


def start_node(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, PASSWORD_ENV: PASSWORD, "NO_COLOR": "1"}
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "node", "run", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def wait_for(check: Any, what: str, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise AssertionError(f"timed out waiting for {what}; node log:\n{tail}")
        time.sleep(0.05)


@pytest.mark.hardhat
def test_a_node_killed_between_an_event_and_its_plc_write_neither_misses_nor_repeats_it(
    hardhat_chain: HardhatChain, tmp_path: Path, plc: PlcThread
) -> None:
    plant: Plant = build_plant(tmp_path, hardhat_chain.url)
    try:
        aster = plant.configure(
            "aster",
            {
                "oracles": plc.plc.oracle_settings_values(),
                "control": {
                    "rules_file": rules_file(tmp_path, CV_RULE),
                    "plc": {"url": plc.plc.endpoint, "ack_timeout_s": 10.0},
                    "lines": {
                        "coater": {"uri": COATER_URI, "parameters": {"blade_pressure": BLADE}}
                    },
                    "event_poll_s": 0.05,
                },
            },
        )
        register_lines(aster)
        outbox = ActionOutbox(aster.store())
        log = tmp_path / "node.log"
        config = plant.config_file("aster")

        def plc_write_in_flight() -> bool:
            action = outbox.get("plc_compensation:1")
            return action is not None and action.status is ActionStatus.RUNNING

        first = start_node(config, log)
        try:
            wait_for(plc_write_in_flight, "the PLC write of request 1", log)
            time.sleep(0.3)  # the setpoint and the request id are written; the ack is pending
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert plc.snapshot().acks == 0, "the PLC should still be acknowledging"

        second = start_node(config, log)
        try:
            control = aster.line_control()

            def acknowledged() -> bool:
                return control.request_count() >= 1 and control.request(1).acknowledged_at > 0

            wait_for(acknowledged, "the acknowledgement on-chain", log)
            time.sleep(1.0)  # anything repeated would show up now
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)

        # One request per decision (the rule may fire again once a subgroup re-armed it), one
        # PLC write and one acknowledgement per request: request 1 was neither lost nor doubled.
        events = control.events_between(0, "latest")
        requests = of_type(events, CompensationRequestedEvent)
        decisions = {
            Decision.from_record(r).decision_hash for r in records_of(aster.store(), "decision")
        }
        assert sorted(r.decision_hash for r in requests) == sorted(decisions)
        acks = of_type(events, CompensationAcknowledgedEvent)
        assert sorted(a.request_id for a in acks) == [r.request_id for r in requests]
        snapshot = plc.snapshot()
        assert snapshot.acks == len(requests)
        assert snapshot.blade_actual_mm == pytest.approx(1.0 - 0.05 * len(requests))
        action = outbox.get("plc_compensation:1")
        assert action is not None and action.status is ActionStatus.DONE
    finally:
        plant.close()
