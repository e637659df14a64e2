"""A line actuator on MQTT, for demos and tests: it takes the node's line commands
(:mod:`node.control.actions.mqtt_command`), applies each request id once and acknowledges it.

Commands arrive on ``command_filter`` (the line is the topic level that ``+`` stands for, or the
command's ``line`` field); the acknowledgement goes to ``ack_topic`` with ``{line}`` filled in:
``{"request_id", "status": "applied" | "rejected", "actual", "detail"}``. A request id seen
before is acknowledged again with its first answer and not applied twice. A command past its
``expires_at_us``, or malformed, is rejected. ``silent = True`` makes it take commands and answer
nothing (a hung actuator); ``ack_delay_s`` delays every acknowledgement.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from node.errors import SourceError

QOS = 1
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ActuatorConfig:
    command_filter: str = "qnode/lines/+/commands"
    ack_topic: str = "qnode/lines/{line}/acks"
    client_id: str = "qnode-actuator"
    initial: float = 1.0
    """Every (line, parameter) starts here."""
    minimum: float = 0.0
    maximum: float = 5.0
    """Limits: a value beyond them is applied clamped (and reported as such in ``actual``)."""
    ack_delay_s: float = 0.0


class CommandActuator:
    """``with CommandActuator(broker_url, config) as actuator:`` takes commands until the end."""

    def __init__(self, broker_url: str, config: ActuatorConfig = ActuatorConfig()) -> None:
        parts = urlsplit(broker_url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise SourceError(f"bad broker URL {broker_url!r}: expected mqtt://host[:port]")
        self.host, self.port = parts.hostname, parts.port or 1883
        self.config = config
        self.silent = False
        self.values: dict[tuple[str, str], float] = {}
        self.commands: list[dict[str, Any]] = []
        self.acks = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client: paho.Client | None = None

    def __enter__(self) -> CommandActuator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=paho.MQTTv5
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect(self.host, self.port, clean_start=True)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.stop()
            raise SourceError(f"the actuator could not subscribe at {self.host}:{self.port}")

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._subscribed.clear()

    def value(self, line: str, parameter: str) -> float:
        with self._lock:
            return self.values.get((line, parameter), self.config.initial)

    # -- paho's thread --------------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        client.subscribe(self.config.command_filter, qos=QOS)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            command = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(command, dict) or not isinstance(command.get("request_id"), int):
            return
        with self._lock:
            self.commands.append(command)
            if self.silent:
                return
            answer = self._answers.get(command["request_id"]) or self._apply(command, message)
            self._answers[command["request_id"]] = answer
        line = str(answer.get("line") or _line_of(message.topic, self.config.command_filter))
        topic = self.config.ack_topic.replace("{line}", line)
        ack = {key: answer[key] for key in ("request_id", "status", "actual", "detail")}
        if self.config.ack_delay_s > 0:
            timer = threading.Timer(self.config.ack_delay_s, self._publish, (topic, ack))
            timer.daemon = True
            timer.start()
        else:
            self._publish(topic, ack)

    def _publish(self, topic: str, ack: Mapping[str, Any]) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, json.dumps(ack), qos=QOS)
            with self._lock:
                self.acks += 1

    def _apply(self, command: dict[str, Any], message: paho.MQTTMessage) -> dict[str, Any]:
        """The answer to a new request (called with the lock held)."""
        line = str(command.get("line") or _line_of(message.topic, self.config.command_filter))
        parameter = str(command.get("parameter", ""))
        answer: dict[str, Any] = {"request_id": command["request_id"], "line": line}
        delta = command.get("delta")
        expires = command.get("expires_at_us")
        if not isinstance(delta, int | float) or not math.isfinite(delta) or not parameter:
            return answer | {"status": "rejected", "actual": None, "detail": "malformed"}
        if isinstance(expires, int) and expires < time.time_ns() // 1000:
            return answer | {"status": "rejected", "actual": None, "detail": "expired"}
        current = self.values.get((line, parameter), self.config.initial)
        applied = min(max(current + delta, self.config.minimum), self.config.maximum)
        self.values[(line, parameter)] = applied
        return answer | {"status": "applied", "actual": applied, "detail": ""}


def _line_of(topic: str, command_filter: str) -> str:
    """The topic level the filter's ``+`` matched (the line)."""
    for level, pattern in zip(topic.split("/"), command_filter.split("/"), strict=False):
        if pattern == "+":
            return level
    return ""
