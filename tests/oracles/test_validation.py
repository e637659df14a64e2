"""Validation: every rejection reason, the order of the checks, unit conversion, signatures."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from nacl.signing import SigningKey

from node.errors import ConfigError
from node.oracles.messages import encode_message, signing_bytes
from node.oracles.source import Reading, SourceStatus
from node.oracles.validation import Accepted, Reason, Rejection, Validator
from node.settings import DeviceSpec, OracleSettings, QuantitySpec, ValidationSettings

NOW_US = 1_795_000_000_000_000
"""The validators' clock in these tests (2026-11-18T11:06:40Z)."""
DEVICE_KEY = SigningKey(bytes(range(32)))
OTHER_KEY = SigningKey(bytes(range(1, 33)))


def oracle_settings(**validation: Any) -> OracleSettings:
    """Four quantities, and devices of every kind: open, restricted, signed, keyed, unkeyed."""
    public = DEVICE_KEY.verify_key.encode().hex()
    return OracleSettings(
        quantities={
            "thickness": QuantitySpec(unit="MMT", min=0, max=10),
            "temperature": QuantitySpec(unit="CEL", min=-50, max=300),
            "humidity": QuantitySpec(unit="P1", min=0, max=100),
            "pressure": QuantitySpec(unit="BAR", min=0, max=20),
        },
        devices={
            "gauge-01": DeviceSpec(),
            "gauge-02": DeviceSpec(quantities=("thickness",)),
            "signed-01": DeviceSpec(public_key=public, require_signature=True),
            "keyed-01": DeviceSpec(public_key=public),
        },
        validation=ValidationSettings(**validation),
    )


def timestamp(us: int = NOW_US) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")


def message(
    seq: int = 1,
    device: str = "gauge-01",
    points: list[dict[str, Any]] | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    return {
        "v": 1,
        "device": device,
        "seq": seq,
        "ts": ts or timestamp(),
        "points": points or [{"q": "thickness", "v": 85.2, "u": "4H"}],
    }


def reading(
    payload: bytes | dict[str, Any],
    device_id: str | None = None,
    status: SourceStatus = SourceStatus.GOOD,
    key: SigningKey | None = None,
) -> Reading:
    data = payload if isinstance(payload, bytes) else encode_message(payload, key)
    return Reading("mqtt://127.0.0.1:1883/qnode/devices/x/data", data, NOW_US, device_id, status)


@pytest.fixture
def validator() -> Validator:
    return Validator(oracle_settings(max_payload_bytes=4096, max_points=50), clock=lambda: NOW_US)


def rejected(validator: Validator, item: Reading, marks: dict[str, int] | None = None) -> Rejection:
    outcome = validator.validate(item, marks)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def accepted(validator: Validator, item: Reading, marks: dict[str, int] | None = None) -> Accepted:
    outcome = validator.validate(item, marks)
    assert isinstance(outcome, Accepted), outcome
    return outcome


def test_a_valid_message_is_accepted_in_canonical_units(validator: Validator) -> None:
    points = [
        {"q": "thickness", "v": 85.2, "u": "4H"},
        {"q": "temperature", "v": 212, "u": "FAH"},
        {"q": "humidity", "v": 0.45, "u": "C62"},
        {"q": "pressure", "v": 150, "u": "KPA"},
        {"q": "thickness", "v": 2, "u": "MMT"},
    ]
    outcome = accepted(validator, reading(message(7, points=points), device_id="gauge-01"))
    assert outcome.quality == "good" and outcome.signed_message is None
    assert outcome.message.device == "gauge-01" and outcome.message.seq == 7
    assert outcome.message.ts_us == NOW_US
    assert [tuple(p) for p in outcome.message.points] == [
        ("thickness", 0.0852, "MMT"),
        ("temperature", 100.0, "CEL"),
        ("humidity", 45.0, "P1"),
        ("pressure", 1.5, "BAR"),
        ("thickness", 2.0, "MMT"),
    ]
    # the second time the same pairs take the fast path, with the same result
    again = accepted(validator, reading(message(8, points=points)))
    assert again.message.points == outcome.message.points


def test_uncertain_transport_status_is_kept_as_quality(validator: Validator) -> None:
    outcome = accepted(validator, reading(message(), status=SourceStatus.UNCERTAIN))
    assert outcome.quality == "uncertain"


def test_bad_transport_status(validator: Validator) -> None:
    item = Reading("opc.tcp://x#ns=2;s=T", encode_message(message()), NOW_US, "gauge-01")
    bad = Reading(
        item.source, item.payload, NOW_US, "gauge-01", SourceStatus.BAD, "BadSensorFailure"
    )
    rejection = rejected(validator, bad)
    assert rejection.reason is Reason.BAD_STATUS and "BadSensorFailure" in rejection.detail
    assert rejection.device_id == "gauge-01"


def test_oversize_is_refused_before_parsing(validator: Validator) -> None:
    rejection = rejected(validator, reading(b"{" * 5000))
    assert rejection.reason is Reason.OVERSIZE and "5000 bytes" in rejection.detail


MALFORMED = {
    "not UTF-8": (b'{"v":1,"device":"\xff"}', "not UTF-8"),
    "not JSON": (b'{"v":1,', "not valid JSON"),
    "an array": (b"[1, 2]", "JSON array, not an object"),
    "missing fields": (orjson.dumps({"v": 1, "device": "gauge-01"}), "missing field(s)"),
    "an extra field": (orjson.dumps({**message(), "extra": 1}), "unknown field(s) extra"),
    "version 2": (orjson.dumps({**message(), "v": 2}), "unsupported message version"),
    "version true": (orjson.dumps({**message(), "v": True}), "unsupported message version"),
    "a string seq": (orjson.dumps({**message(), "seq": "1"}), "seq must be an integer"),
    "a negative seq": (orjson.dumps({**message(), "seq": -1}), "seq must be an integer"),
    "a seq of 2**63": (orjson.dumps({**message(), "seq": 2**63}), "seq must be an integer"),
    "an empty device": (orjson.dumps({**message(), "device": ""}), "device must be a string"),
    "naive ts": (orjson.dumps(message(ts="2026-11-18T09:46:40")), "no UTC offset"),
    "a date-only ts": (orjson.dumps(message(ts="2026-11-18")), "not RFC 3339"),
    "ns in ts": (orjson.dumps(message(ts="2026-11-18T09:46:40.123456789Z")), "not RFC 3339"),
    "a 13th month": (orjson.dumps(message(ts="2026-13-18T09:46:40Z")), "not a valid time"),
    "no points": (orjson.dumps({**message(), "points": []}), "non-empty array"),
    "too many points": (
        orjson.dumps(message(points=[{"q": "thickness", "v": 1, "u": "MMT"}] * 51)),
        "51 points, more than the 50",
    ),
    "a point with 4 fields": (
        orjson.dumps(message(points=[{"q": "thickness", "v": 1, "u": "MMT", "x": 0}])),
        "point 0 has fields",
    ),
    "a string value": (
        orjson.dumps(message(points=[{"q": "thickness", "v": "1", "u": "MMT"}])),
        "wrongly typed",
    ),
    "a boolean value": (
        orjson.dumps(message(points=[{"q": "thickness", "v": True, "u": "MMT"}])),
        "wrongly typed",
    ),
    "a list unit": (
        orjson.dumps(message(points=[{"q": "thickness", "v": 1, "u": ["MMT"]}])),
        "wrongly typed",
    ),
    "a point that is a number": (orjson.dumps(message(points=[5])), "point 0 is a JSON number"),
    "a short sig": (orjson.dumps({**message(), "sig": "ab"}), "sig must be 128 hex digits"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_payloads_say_what_is_wrong(validator: Validator, case: str) -> None:
    payload, fragment = MALFORMED[case]
    rejection = rejected(validator, reading(payload))
    assert rejection.reason is Reason.MALFORMED
    assert fragment in rejection.detail


def test_unknown_device_and_transport_mismatch(validator: Validator) -> None:
    unknown = rejected(validator, reading(message(device="ghost-9")))
    assert unknown.reason is Reason.UNKNOWN_DEVICE and unknown.device_id == "ghost-9"
    mismatch = rejected(validator, reading(message(device="gauge-01"), device_id="gauge-02"))
    assert mismatch.reason is Reason.DEVICE_MISMATCH
    assert "'gauge-01'" in mismatch.detail and "'gauge-02'" in mismatch.detail


def test_signatures(validator: Validator) -> None:
    good = accepted(validator, reading(message(device="signed-01"), key=DEVICE_KEY))
    assert good.message.signature is not None
    assert good.signed_message is not None
    assert good.signed_message.encode() == signing_bytes(message(device="signed-01"))
    DEVICE_KEY.verify_key.verify(good.signed_message.encode(), good.message.signature)

    missing = rejected(validator, reading(message(device="signed-01")))
    assert missing.reason is Reason.MISSING_SIGNATURE
    forged = rejected(validator, reading(message(device="signed-01"), key=OTHER_KEY))
    assert forged.reason is Reason.BAD_SIGNATURE
    tampered = encode_message(message(device="signed-01"), DEVICE_KEY).replace(b"85.2", b"85.3")
    assert rejected(validator, reading(tampered)).reason is Reason.BAD_SIGNATURE
    unkeyed = rejected(validator, reading(message(device="gauge-01"), key=DEVICE_KEY))
    assert unkeyed.reason is Reason.BAD_SIGNATURE and "no registered public key" in unkeyed.detail
    # a key registered but not required: unsigned is fine, signed must verify
    assert accepted(validator, reading(message(device="keyed-01"))).signed_message is None
    assert accepted(validator, reading(message(2, "keyed-01"), key=DEVICE_KEY)).signed_message
    assert rejected(validator, reading(message(3, "keyed-01"), key=OTHER_KEY)).reason is (
        Reason.BAD_SIGNATURE
    )


def test_quantities_must_be_configured_and_allowed(validator: Validator) -> None:
    unknown = rejected(validator, reading(message(points=[{"q": "torque", "v": 1, "u": "NEW"}])))
    assert unknown.reason is Reason.UNKNOWN_QUANTITY and "configured" in unknown.detail
    restricted = message(device="gauge-02", points=[{"q": "temperature", "v": 20, "u": "CEL"}])
    not_allowed = rejected(validator, reading(restricted))
    assert not_allowed.reason is Reason.UNKNOWN_QUANTITY and "this device" in not_allowed.detail


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_non_finite_values_in_any_form(validator: Validator, token: bytes) -> None:
    payload = encode_message(message(points=[{"q": "thickness", "v": 987.25, "u": "4H"}]))
    rejection = rejected(validator, reading(payload.replace(b"987.25", token)))
    assert rejection.reason is Reason.NON_FINITE


def test_a_signed_message_with_nan_is_non_finite(validator: Validator) -> None:
    payload = encode_message(message(device="signed-01"), DEVICE_KEY).replace(b"85.2", b"NaN")
    assert rejected(validator, reading(payload)).reason is Reason.NON_FINITE


def test_units_unknown_or_of_another_dimension(validator: Validator) -> None:
    unknown = rejected(validator, reading(message(points=[{"q": "thickness", "v": 1, "u": "XYZ"}])))
    assert unknown.reason is Reason.UNKNOWN_UNIT and "'XYZ'" in unknown.detail
    wrong = rejected(validator, reading(message(points=[{"q": "thickness", "v": 1, "u": "CEL"}])))
    assert wrong.reason is Reason.UNIT_MISMATCH and "temperature" in wrong.detail


def test_out_of_range_names_quantity_value_unit_and_bounds(validator: Validator) -> None:
    accepted(validator, reading(message(1, points=[{"q": "thickness", "v": 9000, "u": "4H"}])))
    item = reading(message(2, points=[{"q": "thickness", "v": 12000, "u": "4H"}]))
    rejection = rejected(validator, item)
    assert rejection.reason is Reason.OUT_OF_RANGE
    assert rejection.detail == ("thickness = 12.0 MMT (sent as 12000 4H) is outside [0, 10] MMT")
    cold = reading(message(3, points=[{"q": "temperature", "v": -80, "u": "CEL"}]))
    assert "temperature = -80.0 CEL is outside [-50, 300] CEL" in rejected(validator, cold).detail


def test_timestamps_against_clock_skew_and_maximum_age() -> None:
    validator = Validator(oracle_settings(clock_skew_s=5, max_age_s=3600), clock=lambda: NOW_US)
    assert accepted(validator, reading(message(1, ts=timestamp(NOW_US + 5_000_000))))
    future = rejected(validator, reading(message(2, ts=timestamp(NOW_US + 5_000_001))))
    assert future.reason is Reason.FUTURE_TIMESTAMP and "5.000 s ahead" in future.detail
    assert accepted(validator, reading(message(3, ts=timestamp(NOW_US - 3_600_000_000))))
    stale = rejected(validator, reading(message(4, ts=timestamp(NOW_US - 3_600_000_001))))
    assert stale.reason is Reason.STALE_TIMESTAMP and "3600.000 s old" in stale.detail


def test_offsets_place_the_timestamp_on_the_utc_timeline(validator: Validator) -> None:
    local = "2026-11-18T12:06:40+01:00"  # the same instant as NOW_US
    assert accepted(validator, reading(message(ts=local))).message.ts_us == NOW_US


def test_duplicates_against_the_mark_and_within_a_batch(validator: Validator) -> None:
    replay = rejected(validator, reading(message(5)), {"gauge-01": 5})
    assert replay.reason is Reason.DUPLICATE and "not above 5" in replay.detail
    assert accepted(validator, reading(message(6)), {"gauge-01": 5})
    batch = [reading(message(s)) for s in (10, 11, 11, 9, 12)] + [reading(message(1, "gauge-02"))]
    outcomes, marks = validator.validate_batch(batch, {"gauge-01": 5})
    kinds = [o.reason if isinstance(o, Rejection) else "ok" for o in outcomes]
    assert kinds == ["ok", "ok", Reason.DUPLICATE, Reason.DUPLICATE, "ok", "ok"]
    assert marks == {"gauge-01": 12, "gauge-02": 1}


def test_a_rejected_message_does_not_move_the_mark(validator: Validator) -> None:
    bad = message(20, points=[{"q": "thickness", "v": -1, "u": "MMT"}])
    outcomes, marks = validator.validate_batch([reading(bad), reading(message(20))], {})
    assert isinstance(outcomes[0], Rejection) and isinstance(outcomes[1], Accepted)
    assert marks == {"gauge-01": 20}


def test_check_order(validator: Validator) -> None:
    # a misshapen point outranks an unknown device
    shape = {**message(device="ghost"), "points": [{"q": "thickness", "v": "x", "u": "MMT"}]}
    assert rejected(validator, reading(orjson.dumps(shape))).reason is Reason.MALFORMED
    # the signature is checked before the points
    out = message(device="signed-01", points=[{"q": "thickness", "v": 99, "u": "MMT"}])
    assert rejected(validator, reading(out, key=OTHER_KEY)).reason is Reason.BAD_SIGNATURE
    # the first failing point decides; in a point: quantity, finiteness, unit, range
    points = [{"q": "thickness", "v": 1e9, "u": "XYZ"}, {"q": "torque", "v": 1, "u": "NEW"}]
    assert rejected(validator, reading(message(points=points))).reason is Reason.UNKNOWN_UNIT
    # the points before the timestamp, the timestamp before the sequence number
    late = message(1, points=[{"q": "thickness", "v": 99, "u": "MMT"}], ts=timestamp(0))
    assert rejected(validator, reading(late), {"gauge-01": 5}).reason is Reason.OUT_OF_RANGE
    stale = message(1, ts=timestamp(0))
    assert rejected(validator, reading(stale), {"gauge-01": 5}).reason is Reason.STALE_TIMESTAMP


def test_configuration_errors_are_found_at_construction() -> None:
    settings = oracle_settings()
    with pytest.raises(ConfigError, match="torque not configured"):
        Validator(
            settings.model_copy(update={"devices": {"d": DeviceSpec(quantities=("torque",))}})
        )
    with pytest.raises(ConfigError, match="require_signature needs a public_key"):
        Validator(
            settings.model_copy(update={"devices": {"d": DeviceSpec(require_signature=True)}})
        )
    with pytest.raises(ConfigError, match="XYZ"):
        Validator(
            settings.model_copy(
                update={"quantities": {"q": QuantitySpec(unit="XYZ", min=0, max=1)}}
            )
        )


def test_integer_values_become_floats(validator: Validator) -> None:
    outcome = accepted(validator, reading(message(points=[{"q": "pressure", "v": 2, "u": "BAR"}])))
    value = outcome.message.points[0].value
    assert type(value) is float and value == 2.0 and math.isfinite(value)
