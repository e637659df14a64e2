"""Pytest plugin: real MQTT brokers (Mosquitto) on free loopback ports.

Fixtures:

* ``mqtt_url`` (session): QNODE_TEST_MQTT_URL when set (the machine's broker), else a Mosquitto
  this run starts. A shared broker may keep the default ``max_queued_messages`` (1000) and drop
  QoS 1 messages beyond it for offline sessions: tests on it stay well under that and use unique
  client ids and topics (``mqtt_prefix``) so parallel tests never see each other's messages.
* ``mqtt_prefix`` (function): a random topic prefix for one test.
* ``own_mqtt_broker`` (function): a Mosquitto of the test's own, with persistence (sessions and
  queued messages survive ``stop()``/``start()`` on the same port), for tests that kill the broker.
* ``mqtt_broker_factory`` (function): ``make(extra_config, persistence=..., anonymous=...)`` for
  brokers with authentication or TLS (``extra_config`` lines follow the listener line, so
  ``cafile``/``certfile``/``keyfile`` make it a TLS listener).

Without a ``mosquitto`` binary (and without QNODE_TEST_MQTT_URL for ``mqtt_url``) the tests that
use them are skipped, except when ``CI=true``: then they fail.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from node.chain.localnode import free_port

MQTT_URL_ENV = "QNODE_TEST_MQTT_URL"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class MosquittoBroker:
    """A Mosquitto process on 127.0.0.1:<port>, restartable on the same port."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        persistence: bool = False,
        anonymous: bool = True,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra_config = list(extra_config)
        self.persistence = persistence
        self.anonymous = anonymous
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = directory / "mosquitto.log"
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            # Mosquitto started as root drops to user "mosquitto", who cannot write our tmp dir.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "log_type error",
            "log_type warning",
            *self.extra_config,
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def start(self) -> None:
        binary = shutil.which("mosquitto")
        if binary is None:
            raise RuntimeError("mosquitto is not on PATH")
        config = self.directory / "mosquitto.conf"
        config.write_text(self.config_text(), encoding="utf-8")
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (Mosquitto then saves its persistence file) and wait for the exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: MQTT tests must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker shared by the run: QNODE_TEST_MQTT_URL, or a Mosquitto started here."""
    url = os.environ.get(MQTT_URL_ENV)
    if url:
        yield url
        return
    if not mosquitto_available():
        _skip_or_fail(f"no {MQTT_URL_ENV} and no mosquitto on PATH")
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto-shared"))
    broker.start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def mqtt_prefix() -> str:
    """A topic prefix (and client-id stem) unique to one test."""
    return f"qt{uuid.uuid4().hex[:10]}"


MakeBroker = Callable[..., MosquittoBroker]


@pytest.fixture
def mqtt_broker_factory(tmp_path: Path) -> Iterator[MakeBroker]:
    """``make(extra_config=(), persistence=False, anonymous=True)``: a started Mosquitto."""
    if not mosquitto_available():
        _skip_or_fail("no mosquitto on PATH")
    brokers: list[MosquittoBroker] = []

    def make(
        extra_config: Sequence[str] = (), persistence: bool = False, anonymous: bool = True
    ) -> MosquittoBroker:
        broker = MosquittoBroker(
            tmp_path / f"mosquitto-{len(brokers)}",
            extra_config=extra_config,
            persistence=persistence,
            anonymous=anonymous,
        )
        brokers.append(broker)
        broker.start()
        return broker

    try:
        yield make
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def own_mqtt_broker(mqtt_broker_factory: MakeBroker) -> MosquittoBroker:
    """A Mosquitto for this test alone, persistent across ``stop()``/``start()``."""
    return mqtt_broker_factory(persistence=True)
