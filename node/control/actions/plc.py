"""PLC actions over OPC UA: a blade-pressure compensation and a line stop, each a handshake.

Compensation (kind ``plc_compensation``, payload ``{request_id, line, parameter, delta_mm,
decision_hash}``, ``request_id`` being LineControl's on-chain request id):

1. read AckId and RequestId: if either already holds the request id, the request reached the PLC
   before (a crash or a lost connection after the write), so nothing is written again;
2. otherwise read Actual, write Setpoint = Actual + delta, then write RequestId;
3. wait for AckId to echo the request id (``ack_timeout_s``; a timeout is retryable);
4. read Actual back: farther than ``read_back_tolerance`` from the setpoint is a permanent failure.

Whatever the end, one ``chain_compensation_ack`` action follows, so the outcome (applied or not,
with the error) is recorded on-chain and never silently lost.

Stop (kind ``plc_stop``, or :func:`stop_line` called directly by the edge fast path): write Stop =
True, then StopRequestId; wait for StopAckId to echo it, Running being read in the same request,
which must then be False. A ``chain_line_stop`` action follows.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from node.control.actions.plc_client import UINT32_MAX, PlcClient, PlcPoint
from node.control.outbox import ActionOutcome, ActionRequest, PendingAction
from node.errors import ActionError
from node.offchain.store import now_us

KIND_COMPENSATION = "plc_compensation"
KIND_STOP = "plc_stop"
KIND_CHAIN_COMPENSATION_ACK = "chain_compensation_ack"
KIND_CHAIN_LINE_STOP = "chain_line_stop"


@dataclass(frozen=True)
class Compensation:
    request_id: int
    line: str
    parameter: str
    delta_mm: float
    decision_hash: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Compensation:
        try:
            compensation = cls(
                request_id=_request_id(payload["request_id"]),
                line=str(payload["line"]),
                parameter=str(payload["parameter"]),
                delta_mm=float(payload["delta_mm"]),
                decision_hash=str(payload.get("decision_hash", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ActionError(f"malformed compensation payload: {exc!r}", retryable=False) from exc
        if not math.isfinite(compensation.delta_mm):
            raise ActionError("compensation delta_mm is not finite", retryable=False)
        return compensation


@dataclass(frozen=True)
class CompensationResult:
    applied: bool
    read_back: float
    setpoint: float
    ack_ms: float
    resumed: bool
    """True when the request had reached the PLC before this attempt (nothing written again)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StopResult:
    request_id: int
    stopped: bool
    stopped_at_us: int
    """Wall clock when the PLC's acknowledgement was seen."""
    ack_ms: float
    """From the first write to the acknowledgement seen."""
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReadBackMismatch(ActionError):
    """The PLC acknowledged but applied another value than the setpoint."""

    def __init__(self, message: str, read_back: float) -> None:
        super().__init__(message, retryable=False)
        self.read_back = read_back


async def apply_compensation(plc: PlcClient, compensation: Compensation) -> CompensationResult:
    """The compensation handshake; idempotent per request id."""
    async with plc.compensation_lock:
        return await _apply_compensation(plc, compensation)


async def _apply_compensation(plc: PlcClient, compensation: Compensation) -> CompensationResult:
    settings = plc.settings
    request_id = compensation.request_id
    ack_id, pending_id = await plc.read(PlcPoint.ACK_ID, PlcPoint.REQUEST_ID)
    resumed = request_id in (ack_id, pending_id)
    started = time.perf_counter()
    if resumed:
        (setpoint,) = await plc.read(PlcPoint.SETPOINT)
    else:
        (actual,) = await plc.read(PlcPoint.ACTUAL)
        setpoint = _number(actual, "Actual") + compensation.delta_mm
        await plc.write(PlcPoint.SETPOINT, setpoint)
        await plc.write(PlcPoint.REQUEST_ID, request_id)
    read_back = await _acknowledged(
        plc, PlcPoint.ACK_ID, PlcPoint.ACTUAL, request_id, settings.ack_timeout_s
    )
    ack_ms = (time.perf_counter() - started) * 1e3
    read_back, setpoint = _number(read_back, "Actual"), _number(setpoint, "Setpoint")
    if abs(read_back - setpoint) > settings.read_back_tolerance:
        raise ReadBackMismatch(
            f"PLC acknowledged request {request_id} but applied {read_back:g} mm for setpoint "
            f"{setpoint:g} mm (tolerance {settings.read_back_tolerance:g})",
            read_back,
        )
    return CompensationResult(True, read_back, setpoint, ack_ms, resumed)


async def stop_line(plc: PlcClient, request_id: int, reason: str) -> StopResult:
    """Stop the line now: the fast path calls this directly, then records the stop on-chain
    (:func:`line_stop_record`). Idempotent per request id. Raises ActionError: retryable when
    the PLC does not acknowledge in time, permanent when it acknowledges a line still running."""
    try:
        request_id = _request_id(request_id)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"bad stop request id: {exc}", retryable=False) from exc
    async with plc.stop_lock:
        return await _stop_line(plc, request_id, reason)


async def _stop_line(plc: PlcClient, request_id: int, reason: str) -> StopResult:
    started = time.perf_counter()
    await plc.write(PlcPoint.STOP, True)
    await plc.write(PlcPoint.STOP_REQUEST_ID, request_id)
    running = await _acknowledged(
        plc, PlcPoint.STOP_ACK_ID, PlcPoint.RUNNING, request_id, plc.settings.stop_ack_timeout_s
    )
    ack_ms = (time.perf_counter() - started) * 1e3
    if running is not False:
        raise ActionError(
            f"PLC acknowledged stop request {request_id} but Running is {running!r}",
            retryable=False,
        )
    return StopResult(request_id, True, now_us(), ack_ms, reason)


def stop_request_id(key: str) -> int:
    """A UInt32 stop request id derived from a unique key (e.g. the action key), the same on
    every retry; 0 is avoided (a PLC's initial StopAckId)."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return digest or 1


def line_stop_record(
    line: str,
    reason: str,
    decision_hash: str,
    request_id: int,
    result: StopResult | None,
    detail: str = "",
) -> ActionRequest:
    """The ``chain_line_stop`` action recording a stop, keyed by line and stop request id
    (``result`` None: the PLC did not confirm it, ``detail`` says why; the decision is
    recorded all the same)."""
    key = f"{KIND_CHAIN_LINE_STOP}:{line}:{request_id}"
    payload: dict[str, Any] = {
        "line": line,
        "reason": reason,
        "decision_hash": decision_hash,
        "stopped_at_us": None if result is None else result.stopped_at_us,
        "confirmed": result is not None,
        "detail": detail or ("" if result is None else f"acknowledged in {result.ack_ms:.1f} ms"),
    }
    return ActionRequest(KIND_CHAIN_LINE_STOP, key, payload)


async def _acknowledged(
    plc: PlcClient, ack: PlcPoint, observed: PlcPoint, request_id: int, timeout_s: float
) -> Any:
    """Poll ``ack`` (and ``observed``, in the same read) until ``ack`` echoes ``request_id``;
    return ``observed`` as it was then."""
    settings = plc.settings
    deadline = time.perf_counter() + timeout_s
    pause = settings.ack_poll_s
    while True:
        ack_id, value = await plc.read(ack, observed)
        if ack_id == request_id:
            return value
        if time.perf_counter() >= deadline:
            raise ActionError(
                f"PLC {plc.endpoint} did not acknowledge request {request_id} within "
                f"{timeout_s:g} s ({ack.value} is {ack_id})"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, settings.ack_poll_max_s)


class PlcCompensationExecutor:
    """Executor of ``plc_compensation`` actions on one PLC."""

    def __init__(self, plc: PlcClient) -> None:
        self.plc = plc
        self._read_backs: dict[str, float] = {}
        """The last Actual seen per failing action key, for its on-chain record."""

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        compensation = Compensation.from_payload(action.payload)
        _check_scope(self.plc, compensation.line, compensation.parameter)
        try:
            result = await apply_compensation(self.plc, compensation)
        except ReadBackMismatch as exc:
            self._read_backs[action.key] = exc.read_back
            raise
        return result.as_dict()

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        read_back = self._read_backs.pop(action.key, None)
        try:
            request_id = _request_id(action.payload.get("request_id"))
        except (TypeError, ValueError):
            return ()  # no on-chain request to record against
        if outcome.result is not None:
            result = outcome.result
            payload = {
                "request_id": request_id,
                "applied": True,
                "read_back": result["read_back"],
                "detail": f"setpoint {result['setpoint']:g} acknowledged in "
                f"{result['ack_ms']:.1f} ms",
            }
        else:
            payload = {
                "request_id": request_id,
                "applied": False,
                "read_back": read_back,
                "detail": outcome.error or "failed",
            }
        key = f"{KIND_CHAIN_COMPENSATION_ACK}:{request_id}"
        return [ActionRequest(KIND_CHAIN_COMPENSATION_ACK, key, payload)]


class PlcStopExecutor:
    """Executor of ``plc_stop`` actions (payload ``{line, reason, decision_hash}``, optional
    ``request_id``; by default derived from the action key)."""

    def __init__(self, plc: PlcClient) -> None:
        self.plc = plc

    async def execute(self, action: PendingAction) -> Mapping[str, Any]:
        payload = action.payload
        _check_scope(self.plc, str(payload.get("line", "")), None)
        try:
            request_id = _stop_request_id(action)
        except (TypeError, ValueError) as exc:
            raise ActionError(f"malformed stop payload: {exc}", retryable=False) from exc
        result = await stop_line(self.plc, request_id, str(payload.get("reason", "")))
        return result.as_dict()

    def follow_up(self, action: PendingAction, outcome: ActionOutcome) -> Sequence[ActionRequest]:
        payload = action.payload
        result = None
        if outcome.result is not None:
            values = outcome.result
            result = StopResult(
                int(values["request_id"]),
                bool(values["stopped"]),
                int(values["stopped_at_us"]),
                float(values["ack_ms"]),
                str(values["reason"]),
            )
        try:
            request_id = _stop_request_id(action)
        except (TypeError, ValueError):
            return ()  # refused before anything was sent: no stop to record
        record = line_stop_record(
            str(payload.get("line", "")),
            str(payload.get("reason", "")),
            str(payload.get("decision_hash", "")),
            request_id,
            result,
            detail=outcome.error or "",
        )
        return [record]


def _stop_request_id(action: PendingAction) -> int:
    return _request_id(action.payload.get("request_id") or stop_request_id(action.key))


def _check_scope(plc: PlcClient, line: str, parameter: str | None) -> None:
    settings = plc.settings
    if settings.lines and line not in settings.lines:
        raise ActionError(f"PLC {plc.endpoint} does not drive line {line!r}", retryable=False)
    if parameter is not None and settings.parameters and parameter not in settings.parameters:
        raise ActionError(
            f"PLC {plc.endpoint} does not compensate parameter {parameter!r}", retryable=False
        )


def _request_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"request_id must be an integer, got {value!r}")
    if not 0 < value <= UINT32_MAX:
        raise ValueError(f"request_id {value} does not fit the PLC's UInt32 (1..{UINT32_MAX})")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ActionError(f"PLC {name} is {value!r}, not a finite number", retryable=False)
    return float(value)
