"""Validation of device readings: each one is accepted (values in canonical units) or rejected
with one reason from :class:`Reason`, for the quarantine.

Checks, in order: transport status, size, shape (``node.oracles.messages``), device, signature,
then per point quantity, finiteness, unit and range (the first failing point decides), then the
timestamp against the clock, and last the sequence number against the device's high-water mark.

This is the hot path of ingestion: per quantity, the conversion coefficients of every unit code
seen are computed once and kept; a point costs a few dict look-ups and float operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from node.errors import ConfigError, RecordError
from node.offchain.store import now_us
from node.oracles.messages import (
    DeviceMessage,
    MessageError,
    Point,
    load_document,
    read_envelope,
    read_points,
    signing_bytes,
)
from node.oracles.source import Reading, SourceStatus
from node.oracles.units import UnitError, coefficients
from node.settings import DeviceSpec, OracleSettings, QuantitySpec

_INF = math.inf
_SORTED = orjson.OPT_SORT_KEYS


class Reason(StrEnum):
    """Why a reading was quarantined."""

    BAD_STATUS = "bad_status"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_QUANTITY = "unknown_quantity"
    NON_FINITE = "non_finite"
    UNKNOWN_UNIT = "unknown_unit"
    UNIT_MISMATCH = "unit_mismatch"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str
    device_id: str | None = None
    """The device the payload names, else the one the transport names, else None."""


@dataclass(frozen=True, slots=True)
class Accepted:
    message: DeviceMessage
    """The message with every point in its quantity's canonical unit."""
    quality: str
    """``good``, or ``uncertain`` when the transport said so (OPC UA)."""
    signed_message: str | None = None
    """For a signed message, the exact bytes its signature covers (canonical JSON, as text)."""


Outcome = Accepted | Rejection


class _QuantityRule:
    __slots__ = ("maximum", "minimum", "name", "unit")

    def __init__(self, name: str, spec: QuantitySpec) -> None:
        self.name = name
        self.unit = spec.unit
        self.minimum = spec.min
        self.maximum = spec.max


_Conversion = tuple[float, float, float, float, float, str, str]
"""(p, q, r, min, max, quantity, canonical unit): ``canonical = (value * p + q) / r``."""


class _DevicePolicy:
    __slots__ = ("conversions", "quantities", "require_signature", "verify_key")

    def __init__(
        self,
        quantities: frozenset[str] | None,
        verify_key: VerifyKey | None,
        require_signature: bool,
    ) -> None:
        self.quantities = quantities
        self.verify_key = verify_key
        self.require_signature = require_signature
        self.conversions: dict[str, dict[str, _Conversion]] = {}
        """By quantity and unit code: every pair seen that this device may send, learnt once."""


class Validator:
    def __init__(self, settings: OracleSettings, clock: Callable[[], int] = now_us) -> None:
        """``clock`` returns the current time in µs since the epoch (injectable for tests)."""
        limits = settings.validation
        self._max_bytes = limits.max_payload_bytes
        self._max_points = limits.max_points
        self._skew_us = int(limits.clock_skew_s * 1_000_000)
        self._max_age_us = int(limits.max_age_s * 1_000_000)
        self._clock = clock
        for name, spec in settings.quantities.items():
            try:
                coefficients(spec.unit, spec.unit)
            except UnitError as exc:
                raise ConfigError(f"oracles.quantities.{name}.unit: {exc}") from exc
        self._rules = {
            name: _QuantityRule(name, spec) for name, spec in settings.quantities.items()
        }
        for name, device in settings.devices.items():
            unknown = sorted(set(device.quantities) - settings.quantities.keys())
            if unknown:
                raise ConfigError(
                    f"oracles.devices.{name}.quantities: {', '.join(unknown)} not configured "
                    "in oracles.quantities"
                )
        self._devices = {name: _policy(name, spec) for name, spec in settings.devices.items()}

    def validate(self, reading: Reading, high_water: Mapping[str, int] | None = None) -> Outcome:
        """One reading, against the highest accepted sequence number of each device."""
        return self.validate_batch([reading], high_water or {})[0][0]

    def validate_batch(
        self, readings: Sequence[Reading], high_water: Mapping[str, int]
    ) -> tuple[list[Outcome], dict[str, int]]:
        """The outcome of each reading, in order, and the new high-water mark of every device
        that had a message accepted. Sequence numbers must grow within the batch too: a second
        message with a number already seen is a duplicate. ``high_water`` is not modified, so
        that a batch that fails to commit leaves no trace."""
        now = self._clock()
        advanced: dict[str, int] = {}
        outcomes: list[Outcome] = []
        for reading in readings:
            outcome = self._check(reading, high_water, advanced, now)
            if type(outcome) is Accepted:
                advanced[outcome.message.device] = outcome.message.seq
            outcomes.append(outcome)
        return outcomes, advanced

    def _check(
        self,
        reading: Reading,
        high_water: Mapping[str, int],
        advanced: Mapping[str, int],
        now: int,
    ) -> Outcome:
        if reading.status is SourceStatus.BAD:
            detail = reading.status_detail or "no detail"
            return Rejection(
                Reason.BAD_STATUS, f"the transport marked it bad: {detail}", reading.device_id
            )
        try:
            document = load_document(reading.payload, self._max_bytes)
            device, seq, ts, ts_us, signature, items = read_envelope(document, self._max_points)
        except MessageError as exc:
            return Rejection(Reason(exc.reason), exc.detail, reading.device_id)
        policy = self._devices.get(device)
        # The fast path checks each point's shape and converts it in one pass; anything unusual
        # (a rejection, or a quantity/unit pair not seen before) takes the slow path below, which
        # finds the reason in the documented order.
        points = _convert_known(items, policy.conversions) if policy is not None else None
        if points is None:
            try:
                parsed = read_points(items)
            except MessageError as exc:
                return Rejection(Reason.MALFORMED, exc.detail, device)
        if policy is None:
            return Rejection(Reason.UNKNOWN_DEVICE, f"device {device!r} is not registered", device)
        if reading.device_id is not None and reading.device_id != device:
            return Rejection(
                Reason.DEVICE_MISMATCH,
                f"the payload says device {device!r}, the transport {reading.device_id!r}",
                device,
            )
        signed = _check_signature(document, device, signature, policy, points is not None)
        if isinstance(signed, Rejection):
            return signed
        if points is None:
            converted = self._convert(parsed, policy)
            if isinstance(converted, Rejection):
                return Rejection(converted.reason, converted.detail, device)
            points = converted
        if ts_us > now + self._skew_us:
            return Rejection(
                Reason.FUTURE_TIMESTAMP,
                f"ts {ts} is {(ts_us - now) / 1e6:.3f} s ahead of the node's clock "
                f"(at most {self._skew_us / 1e6:g} s allowed)",
                device,
            )
        if ts_us < now - self._max_age_us:
            return Rejection(
                Reason.STALE_TIMESTAMP,
                f"ts {ts} is {(now - ts_us) / 1e6:.3f} s old "
                f"(at most {self._max_age_us / 1e6:g} s allowed)",
                device,
            )
        last = advanced.get(device)
        if last is None:
            last = high_water.get(device)
        if last is not None and seq <= last:
            return Rejection(
                Reason.DUPLICATE,
                f"seq {seq} of {device!r} is not above {last}, the highest accepted",
                device,
            )
        quality = "uncertain" if reading.status is SourceStatus.UNCERTAIN else "good"
        return Accepted(DeviceMessage(device, seq, ts, ts_us, points, signature), quality, signed)

    def _convert(
        self, points: tuple[Point, ...], policy: _DevicePolicy
    ) -> tuple[Point, ...] | Rejection:
        """The slow path: per point, quantity, finiteness, unit and range, in this order; each
        good (quantity, unit) pair is remembered for the fast path."""
        converted = []
        for quantity, value, code in points:
            rule = self._rules.get(quantity)
            allowed = policy.quantities
            if rule is None or (allowed is not None and quantity not in allowed):
                why = "a configured quantity" if rule is None else "one this device reports"
                return Rejection(Reason.UNKNOWN_QUANTITY, f"quantity {quantity!r} is not {why}")
            if not -_INF < value < _INF:  # False for NaN too
                return Rejection(
                    Reason.NON_FINITE, f"{quantity} value is {value}, not a finite number"
                )
            by_unit = policy.conversions.setdefault(quantity, {})
            conversion = by_unit.get(code)
            if conversion is None:
                try:
                    p, q, r = coefficients(code, rule.unit)
                except UnitError as exc:
                    return Rejection(Reason(exc.reason), f"{quantity}: {exc.detail}")
                conversion = (p, q, r, rule.minimum, rule.maximum, quantity, rule.unit)
                by_unit[code] = conversion
            canonical = (value * conversion[0] + conversion[1]) / conversion[2]
            if not rule.minimum <= canonical <= rule.maximum:
                return _out_of_range(rule, value, code, canonical)
            converted.append(Point(quantity, canonical, rule.unit))
        return tuple(converted)


def _convert_known(
    items: list[Any], conversions: Mapping[str, Mapping[str, _Conversion]]
) -> tuple[Point, ...] | None:
    """The points of ``items`` in canonical units if every one is well formed, of a known
    (quantity, unit) pair, finite and in range; otherwise None."""
    new = tuple.__new__
    lookup = conversions.get
    converted: list[Point] = []
    append = converted.append
    try:
        for item in items:
            if len(item) != 3:
                return None
            value = item["v"]
            # KeyError, or TypeError for an unknown quantity (None) or a non-object item
            p, q, r, low, high, quantity, unit = lookup(item["q"])[item["u"]]  # type: ignore[index]
            kind = type(value)
            if kind is float:
                if not -_INF < value < _INF:  # False for NaN too
                    return None
            elif kind is not int:
                return None
            canonical = (value * p + q) / r
            if canonical < low or canonical > high:
                return None
            append(new(Point, (quantity, canonical, unit)))
    except (KeyError, TypeError):
        return None
    return tuple(converted)


def _check_signature(
    document: dict[str, Any],
    device: str,
    signature: bytes | None,
    policy: _DevicePolicy,
    finite: bool,
) -> str | Rejection | None:
    """The signed text of a good signature, None for an unsigned message that may be so, or
    the rejection. ``finite``: every value is known to be finite already."""
    if signature is None:
        if policy.require_signature:
            return Rejection(
                Reason.MISSING_SIGNATURE, f"device {device!r} must sign its messages", device
            )
        return None
    if policy.verify_key is None:
        return Rejection(
            Reason.BAD_SIGNATURE,
            f"the message is signed, but device {device!r} has no registered public key",
            device,
        )
    try:
        # The same bytes as signing_bytes(): a parsed document holds only JSON types, so
        # sorted keys are all canonical_json adds, and its NaN walk is not needed when the
        # values were already found finite.
        signed = (
            orjson.dumps({k: v for k, v in document.items() if k != "sig"}, option=_SORTED)
            if finite
            else signing_bytes(document)
        )
    except RecordError:
        return Rejection(
            Reason.NON_FINITE, "a point value is NaN or infinite (cannot be signed)", device
        )
    try:
        policy.verify_key.verify(signed, signature)
    except BadSignatureError:
        return Rejection(
            Reason.BAD_SIGNATURE,
            f"the signature does not verify with device {device!r}'s public key",
            device,
        )
    return signed.decode()


def _out_of_range(rule: _QuantityRule, value: float, code: str, canonical: float) -> Rejection:
    sent = "" if code == rule.unit else f" (sent as {value!r} {code})"
    return Rejection(
        Reason.OUT_OF_RANGE,
        f"{rule.name} = {canonical!r} {rule.unit}{sent} is outside "
        f"[{rule.minimum:g}, {rule.maximum:g}] {rule.unit}",
    )


def _policy(name: str, spec: DeviceSpec) -> _DevicePolicy:
    key = None
    if spec.public_key is not None:
        try:
            key = VerifyKey(bytes.fromhex(spec.public_key))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"oracles.devices.{name}.public_key: {exc}") from exc
    if spec.require_signature and key is None:
        raise ConfigError(
            f"oracles.devices.{name}: require_signature needs a public_key to check against"
        )
    quantities = frozenset(spec.quantities) if spec.quantities else None
    return _DevicePolicy(quantities, key, spec.require_signature)
