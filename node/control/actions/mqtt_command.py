"""Line commands over MQTT, the alternative to the OPC UA handshake for MQTT-driven actuators.

Kind ``mqtt_command``, payload ``{request_id, line, parameter, delta (or delta_mm),
decision_hash}``. The command goes with QoS 1 to ``command_topic`` (``{line}`` filled in)::

    {"v": 1, "request_id": 7, "line": "coater", "parameter": "blade_pressure", "delta": -0.05,
     "decision_hash": "0x…", "key": "mqtt_command:7", "expires_at_us": 1764…}

and the executor waits, up to ``ack_timeout_s``, for an acknowledgement on ``ack_topic``::

    {"request_id": 7, "status": "applied" | "rejected", "actual": 1.05, "detail": "…"}

The actuator must apply a request id once and acknowledge every copy (a retry sends the same
request id again). A command past ``expires_at_us`` must be refused (it also carries an MQTT 5
message expiry): a late command must not act after the node has recorded a failure. No ack in
time is retryable; ``rejected`` is permanent. Like the PLC compensation, every end is followed by a
``chain_compensation_ack`` action.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from node.control.actions.mqtt_link import MqttLink
from node.control.actions.plc import KIND_CHAIN_COMPENSATION_ACK
from node.control.outbox import ActionOutcome, ActionRequest, PendingAction
from node.errors import ActionError
from node.offchain.store import now_us
from node.settings import MqttCommandSettings

KIND_MQTT_COMMAND = "mqtt_command"
COMMAND_VERSION = 1
_TOPIC_FORBIDDEN = frozenset("/+#\x00")


@dataclass(frozen=True)
class LineCommand:
    request_id: int
    line: str
    parameter: str
    delta: float
    decision_hash: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> LineCommand:
        try:
            request_id = payload["request_id"]
            if isinstance(request_id, bool) or not isinstance(request_id, int) or request_id < 1:
                raise ValueError(f"request_id must be a positive integer, got {request_id!r}")
            delta = payload["delta"] if "delta" in payload else payload["delta_mm"]
            command = cls(
                request_id=request_id,
                line=str(payload["line"]),
                parameter=str(payload["parameter"]),
                delta=float(delta),
                decision_hash=str(payload.get("decision_hash", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ActionError(f"malformed command payload: {exc!r}", retryable=False) from exc
        if not math.isfinite(command.delta):
            raise ActionError("command delta is not finite", retryable=False)
        if not command.line or _TOPIC_FORBIDDEN & set(command.line):
            raise ActionError(
                f"line {command.line!r} cannot be an MQTT topic level", retryable=False
            )
        return command


@dataclass(frozen=True)
class CommandAck:
    request_id: int
    status: str
    actual: float | None
    detail: str

    @classmethod
    def parse(cls, payload: bytes) -> CommandAck | None:
        """None for anything that is not an acknowledgement (ignored, like a stray message)."""
        try:
            values = orjson.loads(payload)
            request_id = values["request_id"]
            actual = values.get("actual")
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                return None
            return cls(
                request_id,
                str(values.get("status", "")),
                None if actual is None else float(actual),
                str(values.get("detail", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


class MqttCommandExecutor:
    """Executor of ``mqtt_command`` actions over one broker connection; ``aclose()`` when done."""

    def __init__(self, settings: MqttCommandSettings, *, base_dir: Path | None = None) -> None:
        self.settings = settings
        ack_filter = settings.ack_topic.replace("{line}", "+")
        self.link = MqttLink(settings, subscriptions={ack_filter: self._on_ack}, base_dir=base_dir)
        self._waiters: defaultdict[int, list[asyncio.Future[CommandAck]]] = defaultdict(list)
        self._failures: dict[str, float | None] = {}
        """The actual value a rejecting actuator reported, per failing action key."""

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        command = LineCommand.from_payload(action.payload)
        await self.link.ready()  # the ack subscription is in place before the command leaves
        started = time.perf_counter()
        ack = await self._send_and_wait(command, action.key)
        ack_ms = (time.perf_counter() - started) * 1e3
        if ack.status != "applied":
            self._failures[action.key] = ack.actual
            raise ActionError(
                f"actuator of line {command.line} rejected request {command.request_id}: "
                f"{ack.status} {ack.detail}".rstrip(),
                retryable=False,
            )
        return {"applied": True, "actual": ack.actual, "ack_ms": ack_ms, "detail": ack.detail}

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        actual = self._failures.pop(action.key, None)
        request_id = action.payload.get("request_id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            return ()
        if outcome.result is not None:
            payload = {
                "request_id": request_id,
                "applied": True,
                "read_back": outcome.result.get("actual"),
                "detail": f"acknowledged over MQTT in {outcome.result['ack_ms']:.1f} ms",
            }
        else:
            payload = {
                "request_id": request_id,
                "applied": False,
                "read_back": actual,
                "detail": outcome.error or "failed",
            }
        key = f"{KIND_CHAIN_COMPENSATION_ACK}:{request_id}"
        return [ActionRequest(KIND_CHAIN_COMPENSATION_ACK, key, payload)]

    async def aclose(self) -> None:
        await self.link.aclose()

    async def _send_and_wait(self, command: LineCommand, key: str) -> CommandAck:
        timeout = self.settings.ack_timeout_s
        waiter: asyncio.Future[CommandAck] = asyncio.get_running_loop().create_future()
        self._waiters[command.request_id].append(waiter)
        try:
            body = {
                "v": COMMAND_VERSION,
                "request_id": command.request_id,
                "line": command.line,
                "parameter": command.parameter,
                "delta": command.delta,
                "decision_hash": command.decision_hash,
                "key": key,
                "expires_at_us": now_us() + int(timeout * 1e6),
            }
            topic = self.settings.command_topic.replace("{line}", command.line)
            await self.link.publish(topic, orjson.dumps(body), expiry_s=math.ceil(timeout))
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ActionError(
                f"no acknowledgement of request {command.request_id} from line {command.line} "
                f"within {timeout:g} s"
            ) from None
        finally:
            waiters = self._waiters.get(command.request_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(command.request_id, None)

    def _on_ack(self, _topic: str, payload: bytes) -> None:
        ack = CommandAck.parse(payload)
        if ack is None:
            return
        for waiter in self._waiters.get(ack.request_id, []):
            if not waiter.done():
                waiter.set_result(ack)
