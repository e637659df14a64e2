"""The demo's shop floors, simulated in the demo's own process: the cell maker's coating-line PLC
(OPC UA), its plant sensors (an MQTT device fleet), its ERP (a webhook receiver), and the
refiner's crystallizer CR-2 streaming its temperature loop over MQTT.

Each runs on its own thread, so the member nodes (separate processes) see real servers and
brokers, and the scenario can steer them: :meth:`CoatingLine.set_cv` makes the coating drift,
:meth:`Crystallizer.drift` makes the crystallizer's PID integral time drift (its loop swings).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from node.oracles.messages import encode_message
from node.oracles.simulators.coating_plc import (
    BakeProfile,
    CoatingLinePlc,
    PlcConfig,
    PlcSnapshot,
)
from node.oracles.simulators.device_fleet import (
    DeviceFleet,
    FleetPublisher,
    FleetSpec,
    device_key,
)
from node.oracles.simulators.erp import ErpSimulator

__all__ = ["CoatingLine", "Crystallizer", "PlantFleet", "start_erp"]

T = TypeVar("T")
BASELINE_CV_PCT = 0.3
"""The coating's normal thickness CV: far enough below the 0.8 % rule that it never fires alone."""
DRIFT_CV_PCT = 2.5
CRYSTALLIZER_DEVICE = "7801234CR2/temperature-loop"
"""The crystallizer's loop controller: a device of the equipment whose GIAI is 7801234CR2."""
TI_BEFORE_S = 180.0
TI_AFTER_S = 95.0
FLEET_SEED = 26
BAKE_PASS = BakeProfile(heat_s=3.0, soak_s=6.0, cool_s=3.0, tau_s=0.8, ripple_c=0.5)
"""One oven pass in 12 s (a plant's takes hours): heat to 130 °C, soak with PID ripple, cool;
each cell's bake curve is one whole pass, read at 0.5 s."""
CRYSTALLIZER_SETPOINT_C = 92.0


class CoatingLine:
    """The coating-line PLC simulator on an event loop of its own thread (it goes on whatever
    the member nodes do, like a real PLC)."""

    def __init__(self, port: int | None = None, seed: int = 7) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo-plc", daemon=True)
        self.thread.start()
        config = PlcConfig(
            port=port,
            gauge_interval_s=0.25,
            thickness_cv_pct=BASELINE_CV_PCT,
            ack_delay_s=0.2,
            bake=BAKE_PASS,
            seed=seed,
        )
        self.plc = CoatingLinePlc(config)
        self._call(self.plc.start())
        self.started_at_us = time.time_ns() // 1000
        """When the oven's first pass began (the PLC's profile runs from its start)."""

    @property
    def pass_s(self) -> float:
        """The duration of one oven pass: heat up, soak, cool down."""
        bake = self.plc.config.bake
        return bake.heat_s + bake.soak_s + bake.cool_s

    def last_pass(self, now_us: int, settle_s: float = 1.5) -> tuple[int, int] | None:
        """(start, end) in µs of the last oven pass that ended ``settle_s`` before ``now_us``."""
        period = int(self.pass_s * 1e6)
        done = (now_us - int(settle_s * 1e6) - self.started_at_us) // period
        if done < 1:
            return None
        start = self.started_at_us + (done - 1) * period
        return start, start + period

    @property
    def endpoint(self) -> str:
        return self.plc.endpoint

    def oracle_settings(self) -> dict[str, Any]:
        return self.plc.oracle_settings_values()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    async def _shutdown(self) -> None:
        """Stop the server, then end what its clients' sessions left running (a killed node
        never closes its session)."""
        await self.plc.stop()
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def set_cv(self, cv_pct: float) -> None:
        """The coating's thickness CV from now on (the gauges read the config at every sample)."""

        async def change() -> None:
            self.plc.config = dataclasses.replace(self.plc.config, thickness_cv_pct=cv_pct)

        self._call(change())

    def snapshot(self) -> PlcSnapshot:
        async def take() -> PlcSnapshot:
            return self.plc.snapshot()

        return self._call(take())

    def close(self) -> None:
        if not self.loop.is_closed():
            self._call(self._shutdown())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Crystallizer:
    """Crystallizer CR-2's temperature loop, one signed message a second from its controller
    (device ``7801234CR2/temperature-loop``, a device of the crystallizer's GIAI): the process
    temperature, the steam valve's opening, and the loop's tuning (proportional gain, integral
    time). :meth:`drift` makes the auto-tuner walk the integral time down; the loop then swings."""

    def __init__(self, seed: int = FLEET_SEED) -> None:
        self.key = device_key(seed, CRYSTALLIZER_DEVICE)
        self.amplitude_c = 0.0
        self.period_s = 20.0
        self.gain = 2.4
        self.integral_time_s = TI_BEFORE_S
        self._target_ti = TI_BEFORE_S
        self.drift_started_at: datetime | None = None
        self._seq = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def drift(self, to_ti_s: float = TI_AFTER_S) -> None:
        """From the next message on, the integral time walks down to ``to_ti_s`` (about 8 s/s)."""
        with self._lock:
            self._target_ti = to_ti_s

    def oracle_settings(self) -> dict[str, Any]:
        return {
            "quantities": {
                "temperature": {"unit": "CEL", "min": -40.0, "max": 200.0},
                "valve": {"unit": "P1", "min": 0.0, "max": 100.0},
                "integral_time": {"unit": "SEC", "min": 0.0, "max": 10000.0},
                "proportional_gain": {"unit": "C62", "min": 0.0, "max": 100.0},
            },
            "devices": {
                CRYSTALLIZER_DEVICE: {
                    "public_key": self.key.verify_key.encode().hex(),
                    "require_signature": True,
                    "quantities": ["temperature", "valve", "integral_time", "proportional_gain"],
                }
            },
        }

    def message(self, now: datetime) -> tuple[int, bytes]:
        with self._lock:
            amplitude = self.amplitude_c  # the loop answers the tuning it had a second ago
            if self._target_ti < self.integral_time_s:
                if self.drift_started_at is None:
                    self.drift_started_at = now
                self.integral_time_s = max(self._target_ti, self.integral_time_s - 8.5)
                # the shorter the integral time, the wider the swing of an over-tuned loop
                share = (TI_BEFORE_S - self.integral_time_s) / (TI_BEFORE_S - TI_AFTER_S)
                self.amplitude_c = 2.4 * share
            ti, drifting_since = self.integral_time_s, self.drift_started_at
        swinging_s = 0.0 if drifting_since is None else (now - drifting_since).total_seconds()
        swing = amplitude * math.sin(2 * math.pi * swinging_s / self.period_s)
        temperature = CRYSTALLIZER_SETPOINT_C + swing + self._random.gauss(0, 0.05)
        valve = min(100.0, max(0.0, 48.0 - 9.0 * swing + self._random.gauss(0, 0.3)))
        seq = self._seq
        self._seq += 1
        fields = {
            "v": 1,
            "device": CRYSTALLIZER_DEVICE,
            "seq": seq,
            "ts": now.isoformat(timespec="microseconds"),
            "points": [
                {"q": "temperature", "v": round(temperature, 3), "u": "CEL"},
                {"q": "valve", "v": round(valve, 2), "u": "P1"},
                {"q": "integral_time", "v": round(ti, 1), "u": "SEC"},
                {"q": "proportional_gain", "v": self.gain, "u": "C62"},
            ],
        }
        return seq, encode_message(fields, self.key)


class PlantFleet:
    """Publishes, once a second: the cell maker's device fleet (environment sensors and
    incoming-inspection gauges) and the refiner's crystallizer. Remembers every (device, seq)
    it published, so a test can check that each was stored exactly once."""

    def __init__(
        self,
        broker_url: str,
        client_id: str,
        cells_prefix: str,
        refiner_prefix: str,
        rate_hz: float = 1.0,
    ) -> None:
        self.fleet = DeviceFleet(
            FleetSpec(
                devices=4,
                suppliers=("cathode",),
                seed=FLEET_SEED,
                topic_prefix=cells_prefix,
            )
        )
        self.crystallizer = Crystallizer()
        self.refiner_prefix = refiner_prefix
        self.broker_url = broker_url
        self.client_id = client_id
        self.rate_hz = rate_hz
        self.published: dict[str, set[tuple[str, int]]] = {"cells": set(), "refiner": set()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._publisher: FleetPublisher | None = None
        self._thread: threading.Thread | None = None

    def cells_oracle_settings(self) -> dict[str, Any]:
        values = self.fleet.oracle_settings()
        values["mqtt"] = {"topics": self.fleet.mqtt_topics()}
        return values

    def refiner_oracle_settings(self) -> dict[str, Any]:
        values = self.crystallizer.oracle_settings()
        values["mqtt"] = {"topics": {self.crystallizer_topic: CRYSTALLIZER_DEVICE}}
        return values

    @property
    def crystallizer_topic(self) -> str:
        return f"{self.refiner_prefix}/cr2/data"

    def topic_filters(self) -> dict[str, str]:
        """member key -> the topic filter its node subscribes to."""
        return {"cells": self.fleet.topic_filter(), "refiner": self.crystallizer_topic}

    def start(self) -> None:
        publisher = FleetPublisher(self.broker_url, self.client_id)
        publisher.connect()
        self._publisher = publisher
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop publishing; what was published is acknowledged by the broker when this returns."""
        self._paused.set()
        if self._publisher is not None:
            with self._lock:
                self._publisher.flush(30.0)

    def resume(self) -> None:
        self._paused.clear()

    def published_count(self, member: str) -> int:
        with self._lock:
            return len(self.published[member])

    def published_keys(self, member: str) -> set[tuple[str, int]]:
        with self._lock:
            return set(self.published[member])

    def _run(self) -> None:
        assert self._publisher is not None
        interval = 1.0 / self.rate_hz
        while not self._stop.wait(interval):
            if self._paused.is_set():
                continue
            now = datetime.now(UTC)
            with self._lock:
                for message in self.fleet.round(now):
                    self._publisher.send(message.topic, message.payload)
                    if message.fault is None and message.seq is not None:
                        self.published["cells"].add((message.device, message.seq))
                seq, payload = self.crystallizer.message(now)
                self._publisher.send(self.crystallizer_topic, payload)
                self.published["refiner"].add((CRYSTALLIZER_DEVICE, seq))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._publisher is not None:
            try:
                with self._lock:
                    self._publisher.flush(10.0)
            finally:
                self._publisher.close()
            self._publisher = None


def start_erp(secret: str, port: int | None = None) -> ErpSimulator:
    erp = ErpSimulator(secret, port=port)
    erp.start()
    return erp
