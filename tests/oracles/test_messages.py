"""The device message wire format: parsing, timestamps, canonical signing bytes, encoding."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from node.errors import RecordError
from node.oracles.messages import (
    DeviceMessage,
    MessageError,
    Point,
    encode_message,
    parse_message,
    parse_timestamp,
    signing_bytes,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "device-messages.md"

# The worked example of docs/device-messages.md.
EXAMPLE_SEED = bytes(range(32))
EXAMPLE_PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
EXAMPLE = {
    "v": 1,
    "device": "gauge-07",
    "seq": 42,
    "ts": "2026-11-25T10:15:30.123456+01:00",
    "points": [
        {"q": "thickness", "v": 85.2, "u": "4H"},
        {"q": "temperature", "v": 21.5, "u": "CEL"},
    ],
}
EXAMPLE_SIGNING_BYTES = (
    b'{"device":"gauge-07","points":[{"q":"thickness","u":"4H","v":85.2},'
    b'{"q":"temperature","u":"CEL","v":21.5}],"seq":42,'
    b'"ts":"2026-11-25T10:15:30.123456+01:00","v":1}'
)
EXAMPLE_SIGNATURE = (
    "009001d1f8c6a022edba10ff29e0ad8f91669fffe83dd0fc05eebea856905784"
    "a6576fbd3ff0b9f0c9e4c7af5996829304286e7758df6be4da05c69bad11c80c"
)


def parse(payload: bytes) -> DeviceMessage:
    return parse_message(payload, 256 * 1024, 10_000)


def test_the_documented_example_signs_and_parses_as_documented() -> None:
    key = SigningKey(EXAMPLE_SEED)
    assert key.verify_key.encode().hex() == EXAMPLE_PUBLIC_KEY
    assert signing_bytes(EXAMPLE) == EXAMPLE_SIGNING_BYTES
    payload = encode_message(EXAMPLE, key)
    parsed = parse(payload)
    assert parsed.signature is not None and parsed.signature.hex() == EXAMPLE_SIGNATURE
    assert signing_bytes(parsed) == EXAMPLE_SIGNING_BYTES
    key.verify_key.verify(EXAMPLE_SIGNING_BYTES, parsed.signature)
    text = DOCS.read_text(encoding="utf-8")
    for fact in (EXAMPLE_PUBLIC_KEY, EXAMPLE_SIGNING_BYTES.decode(), EXAMPLE_SEED.hex()):
        assert fact in text
    assert EXAMPLE_SIGNATURE[:64] in text and EXAMPLE_SIGNATURE[64:] in text


def test_parse_gives_every_field() -> None:
    parsed = parse(encode_message(EXAMPLE))
    assert parsed == DeviceMessage(
        device="gauge-07",
        seq=42,
        ts="2026-11-25T10:15:30.123456+01:00",
        ts_us=1_795_598_130_123_456,
        points=(Point("thickness", 85.2, "4H"), Point("temperature", 21.5, "CEL")),
        signature=None,
    )
    # key order and whitespace do not matter on the wire
    spaced = b'{ "points": [ {"u": "CEL", "v": 21, "q": "t"} ], "ts": "2026-01-01T00:00:00Z",'
    spaced += b' "seq": 0, "device": "d", "v": 1 }'
    assert parse(spaced).points == (Point("t", 21, "CEL"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000001Z", 1),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:00:00.5-01:00", 500_000),
        ("2026-11-25T09:15:30.123456Z", 1_795_598_130_123_456),
    ],
)
def test_timestamps(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-11-25T09:15:30", "2026-11-25 09:15:30Z", "20261125T091530Z", "2026-11-25T09:15Z", 5],
)
def test_timestamps_refused(text: object) -> None:
    with pytest.raises(MessageError) as error:
        parse_timestamp(text)
    assert error.value.reason == "malformed"


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(MessageError) as error:
        parse_message(b"x" * 101, 100, 10)
    assert error.value.reason == "oversize"
    with pytest.raises(MessageError) as error:
        parse_message(b"x" * 100, 100, 10)
    assert error.value.reason == "malformed"


def test_non_finite_numbers_parse_for_the_validator_to_refuse() -> None:
    payload = encode_message(EXAMPLE).replace(b"85.2", b"NaN").replace(b"21.5", b"-1e400")
    values = [p.value for p in parse(payload).points]
    assert math.isnan(values[0]) and values[1] == -math.inf
    # broken JSON beside a NaN is still malformed
    with pytest.raises(MessageError, match="not valid JSON"):
        parse(payload[:-1])


def test_signing_bytes_leave_out_the_signature_and_refuse_nan() -> None:
    signed = {**EXAMPLE, "sig": "00" * 64}
    assert signing_bytes(signed) == EXAMPLE_SIGNING_BYTES
    with pytest.raises(RecordError):
        signing_bytes({**EXAMPLE, "points": [{"q": "t", "v": math.nan, "u": "CEL"}]})


def test_encode_without_a_key_is_unsigned_canonical_json() -> None:
    assert encode_message(EXAMPLE) == EXAMPLE_SIGNING_BYTES
    assert encode_message({**EXAMPLE, "sig": "stale"}) == EXAMPLE_SIGNING_BYTES
