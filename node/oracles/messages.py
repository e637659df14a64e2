"""The device message, wire format v1: parsing, canonical signing bytes, encoding.

A payload is UTF-8 JSON (docs/device-messages.md)::

    {"v":1,"device":"gauge-07","seq":42,"ts":"2026-11-25T10:15:30.123456+01:00",
     "points":[{"q":"thickness","v":85.2,"u":"4H"}],"sig":"<128 hex digits>"}

``sig`` is optional: an ed25519 signature over :func:`signing_bytes`, the canonical JSON of the
message without ``sig`` (``node.offchain.records.canonical_json``: sorted keys, no whitespace).
Parsing checks the shape only; whether the device, quantities and units are known, and whether a
value is finite, is the validator's business (``node.oracles.validation``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from nacl.signing import SigningKey

from node.errors import RecordError
from node.offchain.records import canonical_json

VERSION = 1
MAX_SEQ = 2**63
MAX_DEVICE_ID = 200
SIGNATURE_HEX_DIGITS = 128

OVERSIZE = "oversize"
MALFORMED = "malformed"

_FIELDS = frozenset({"v", "device", "seq", "ts", "points"})
_SIGNED_FIELDS = _FIELDS | {"sig"}
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?P<offset>Z|[+-]\d{2}:\d{2})?"
)
_HEX = re.compile(r"[0-9a-fA-F]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


class MessageError(RecordError):
    """A payload that is not a v1 device message. ``reason`` is ``oversize`` or ``malformed``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Point(NamedTuple):
    """One measured value. A named tuple, not a dataclass: messages carry thousands a second, and
    a tuple is built several times faster; it is just as immutable."""

    quantity: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    device: str
    seq: int
    ts: str
    """The timestamp exactly as sent (RFC 3339 with offset); part of the signed bytes."""
    ts_us: int
    """The same instant in µs since the Unix epoch, UTC."""
    points: tuple[Point, ...]
    signature: bytes | None = None


class Envelope(NamedTuple):
    """A message's fields, checked, with its points not yet looked at (see :func:`read_points`)."""

    device: str
    seq: int
    ts: str
    ts_us: int
    signature: bytes | None
    items: list[Any]


def parse_message(payload: bytes, max_payload_bytes: int, max_points: int) -> DeviceMessage:
    """The message in ``payload``; MessageError (reason ``oversize`` or ``malformed``) if it is
    not one. Values are not checked for finiteness here: NaN, ±Infinity and numbers beyond a
    double (``1e400``) come back as non-finite floats for the validator to refuse."""
    envelope = read_envelope(load_document(payload, max_payload_bytes), max_points)
    device, seq, ts, ts_us, signature, items = envelope
    return DeviceMessage(device, seq, ts, ts_us, read_points(items), signature)


def load_document(payload: bytes, max_payload_bytes: int) -> dict[str, Any]:
    """The JSON object in ``payload``, refused when oversize before any parsing."""
    if len(payload) > max_payload_bytes:
        raise MessageError(
            OVERSIZE, f"payload is {len(payload)} bytes, more than the {max_payload_bytes} allowed"
        )
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        document = _parse_with_non_finite(payload, exc)
    if type(document) is not dict:
        raise MessageError(MALFORMED, f"payload is a JSON {_kind(document)}, not an object")
    return document


def _parse_with_non_finite(payload: bytes, error: orjson.JSONDecodeError) -> Any:
    """The slow path for what orjson refuses: accept the document only if the reason was a
    non-finite number (NaN, Infinity, or a literal beyond a double), which the validator then
    rejects with its own reason; anything else is malformed with orjson's explanation."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(
            MALFORMED, f"payload is not UTF-8 (byte 0x{payload[exc.start]:02x} at {exc.start})"
        ) from None
    non_finite: list[str] = []

    def constant(token: str) -> float:
        non_finite.append(token)
        return float(token)

    def number(token: str) -> float:
        value = float(token)
        if value in (float("inf"), float("-inf")):
            non_finite.append(token)
        return value

    def integer(token: str) -> int | float:
        value = int(token)
        return value if -MAX_SEQ <= value < 2 * MAX_SEQ else number(token)

    try:
        document = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except ValueError:
        document = None
    if document is None or not non_finite:
        raise MessageError(MALFORMED, f"payload is not valid JSON: {error}") from None
    return document


def read_envelope(document: dict[str, Any], max_points: int) -> Envelope:
    """Every field of a message object but the shape of each point."""
    keys = document.keys()
    if keys != _FIELDS and keys != _SIGNED_FIELDS:
        raise MessageError(MALFORMED, _field_problem(keys))
    version = document["v"]
    if type(version) is not int or version != VERSION:
        raise MessageError(MALFORMED, f"unsupported message version v={version!r} (expected 1)")
    device = document["device"]
    if type(device) is not str or not 0 < len(device) <= MAX_DEVICE_ID:
        raise MessageError(MALFORMED, f"device must be a string of 1..{MAX_DEVICE_ID} characters")
    seq = document["seq"]
    if type(seq) is not int or not 0 <= seq < MAX_SEQ:
        raise MessageError(MALFORMED, f"seq must be an integer in [0, 2**63), got {seq!r}")
    ts = document["ts"]
    ts_us = parse_timestamp(ts)
    items = document["points"]
    if type(items) is not list or not items:
        raise MessageError(MALFORMED, "points must be a non-empty array")
    if len(items) > max_points:
        raise MessageError(MALFORMED, f"{len(items)} points, more than the {max_points} allowed")
    signature = _signature_of(document["sig"]) if "sig" in document else None
    return Envelope(device, seq, ts, ts_us, signature, items)


def read_points(items: list[Any]) -> tuple[Point, ...]:
    """The points of a message's ``points`` array; MessageError at the first one misshapen."""
    new = tuple.__new__
    points: list[Point] = []
    for item in items:
        if type(item) is not dict or len(item) != 3:
            raise MessageError(MALFORMED, _point_problem(len(points), item))
        quantity = item.get("q")
        value = item.get("v")
        unit = item.get("u")
        if (
            type(quantity) is not str
            or type(unit) is not str
            or (type(value) is not float and type(value) is not int)
        ):
            raise MessageError(MALFORMED, _point_problem(len(points), item))
        points.append(new(Point, (quantity, value, unit)))
    return tuple(points)


def _point_problem(index: int, item: Any) -> str:
    expected = 'an object {"q": quantity, "v": number, "u": unit code}'
    if type(item) is dict:
        if item.keys() != {"q", "v", "u"}:
            return f"point {index} has fields {sorted(item)}; expected {expected}"
        return f"point {index} has a wrongly typed field ({_describe(item)}); expected {expected}"
    return f"point {index} is a JSON {_kind(item)}; expected {expected}"


def _signature_of(text: Any) -> bytes:
    if type(text) is not str or len(text) != SIGNATURE_HEX_DIGITS or not _HEX.fullmatch(text):
        raise MessageError(MALFORMED, "sig must be 128 hex digits (an ed25519 signature)")
    return bytes.fromhex(text)


def parse_timestamp(text: Any) -> int:
    """µs since the epoch of an RFC 3339 timestamp with offset (``Z`` or ``±hh:mm``), µs at most.

    MessageError (malformed) for anything else, naive timestamps included: a device's local time
    without its offset cannot be placed on the timeline.
    """
    if type(text) is not str:
        raise MessageError(MALFORMED, f"ts must be an RFC 3339 string, got {_kind(text)}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise MessageError(
            MALFORMED,
            f"ts {text[:64]!r} is not RFC 3339 (YYYY-MM-DDThh:mm:ss[.ffffff] and Z or ±hh:mm)",
        )
    if match["offset"] is None:
        raise MessageError(
            MALFORMED, f"ts {text!r} has no UTC offset (naive local time); add Z or ±hh:mm"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MessageError(MALFORMED, f"ts {text!r} is not a valid time: {exc}") from None
    return (moment - _EPOCH) // _ONE_US


def _field_problem(keys: Any) -> str:
    missing = sorted(_FIELDS - keys)
    extra = sorted(keys - _SIGNED_FIELDS)
    parts = []
    if missing:
        parts.append(f"missing field(s) {', '.join(missing)}")
    if extra:
        parts.append(f"unknown field(s) {', '.join(extra)}")
    return "; ".join(parts)


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _describe(item: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}: {_kind(item[name])}" for name in ("q", "v", "u"))


# -- signing and encoding ----------------------------------------------------------------------


def message_fields(message: DeviceMessage) -> dict[str, Any]:
    """The JSON object of ``message`` without ``sig``: what a device signs."""
    return {
        "v": VERSION,
        "device": message.device,
        "seq": message.seq,
        "ts": message.ts,
        "points": [{"q": p[0], "v": p[1], "u": p[2]} for p in message.points],
    }


def signing_bytes(message: Mapping[str, Any] | DeviceMessage) -> bytes:
    """The bytes an ed25519 device signature covers: canonical JSON of the message without
    ``sig`` (sorted keys, no whitespace, UTF-8). RecordError for NaN or infinity.

    ``message`` is a message object (a payload's parsed JSON, or one about to be encoded) or
    a parsed :class:`DeviceMessage`; both give the same bytes."""
    fields = (
        message_fields(message)
        if isinstance(message, DeviceMessage)
        else {k: v for k, v in message.items() if k != "sig"}
    )
    return canonical_json(fields).encode()


def encode_message(message: Mapping[str, Any], signing_key: SigningKey | None = None) -> bytes:
    """The payload for ``message`` (canonical JSON), with ``sig`` when ``signing_key`` is given.

    Fault injection (NaN, oversize, broken JSON) has to build its payload bytes by hand: this
    only writes messages a device may send.
    """
    fields = {k: v for k, v in message.items() if k != "sig"}
    if signing_key is not None:
        fields["sig"] = signing_key.sign(signing_bytes(fields)).signature.hex()
    return canonical_json(fields).encode()
