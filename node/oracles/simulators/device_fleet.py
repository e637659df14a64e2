"""An MQTT device fleet: environment sensors and incoming-inspection gauges, with drift and faults.

Devices publish wire-format v1 messages (``node.oracles.messages``) with QoS 1 to
``<topic_prefix>/<device>/data``:

* ``env-NN``: environment sensors, ``temperature`` in CEL and ``humidity`` in P1 (%) (``points``
  > 2 makes them multi-channel loggers alternating the two);
* ``gauge-<supplier>-NN``: incoming-inspection gauges measuring a part ``dimension`` in MMT of the
  current ``lot`` (a point in C62, the lot number; the wire format has no other place for it).
  Each supplier has its own nominal offset and each lot its own mean shift.

Every device has its own ed25519 key (derived from the seed and its id, so ``--write-config`` and a
later run agree) and signs its messages unless ``sign`` is off; ``seq`` counts per device.
``drift_per_min`` moves the mean of each device's first quantity linearly with time.

Faults (``Fault``) replace a message with a bad one with probability ``fault_rate`` (seeded, so a
run is reproducible), cycling through the chosen classes; :class:`FleetMessage` says which, so
tests know what the node must quarantine (``EXPECTED_REASON``).
:meth:`DeviceFleet.oracle_settings` is the ``[oracles]`` fragment a node needs to accept the fleet.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion

from node.errors import SourceError
from node.oracles.messages import encode_message

QUANTITIES: dict[str, dict[str, Any]] = {
    "temperature": {"unit": "CEL", "min": -40.0, "max": 125.0},
    "humidity": {"unit": "P1", "min": 0.0, "max": 100.0},
    "dimension": {"unit": "MMT", "min": 0.0, "max": 1000.0},
    "lot": {"unit": "C62", "min": 0.0, "max": 1e12},
}
DEFAULT_SUPPLIERS = ("borealis", "cobalt", "delta")
NOMINAL_DIMENSION_MM = 12.0


class Fault(StrEnum):
    """A class of bad message the fleet can inject (the node must quarantine each)."""

    NAN = "nan"
    OUT_OF_RANGE = "out_of_range"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_DEVICE = "unknown_device"
    MALFORMED_JSON = "malformed_json"
    OVERSIZE = "oversize"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAY = "replay"
    WRONG_UNIT = "wrong_unit"

    @classmethod
    def parse_list(cls, text: str) -> tuple[Fault, ...]:
        """``"nan,replay"`` -> faults; ``"all"`` -> every class; ``""`` -> none."""
        names = [name.strip() for name in text.split(",") if name.strip()]
        if names == ["all"]:
            return tuple(cls)
        try:
            return tuple(cls(name) for name in names)
        except ValueError as exc:
            known = ", ".join(f.value for f in cls)
            raise ValueError(f"unknown fault in {text!r}; known: {known}, or all") from exc


EXPECTED_REASON: dict[Fault, str] = {
    Fault.NAN: "non_finite",
    Fault.OUT_OF_RANGE: "out_of_range",
    Fault.BAD_SIGNATURE: "bad_signature",
    Fault.UNKNOWN_DEVICE: "unknown_device",
    Fault.MALFORMED_JSON: "malformed",
    Fault.OVERSIZE: "oversize",
    Fault.FUTURE_TIMESTAMP: "future_timestamp",
    Fault.STALE_TIMESTAMP: "stale_timestamp",
    Fault.REPLAY: "duplicate",
    Fault.WRONG_UNIT: "unit_mismatch",
}
"""The quarantine reason (``node.oracles.validation.Reason``) each fault must produce."""


@dataclass(frozen=True)
class FleetSpec:
    devices: int = 4
    """How many devices: environment sensors first, then ``gauge_share`` of them gauges."""
    gauge_share: float = 0.5
    first_device: int = 1
    """Number of the first device of each kind (fleets in several processes must not overlap)."""
    suppliers: tuple[str, ...] = DEFAULT_SUPPLIERS
    points: int = 2
    """Points per environment-sensor message (>= 2)."""
    sign: bool = True
    seed: int = 0
    topic_prefix: str = "qnode/devices"
    drift_per_min: float = 0.0
    faults: tuple[Fault, ...] = ()
    fault_rate: float = 0.05
    replay_burst: int = 5
    """How many earlier messages a replay fault re-publishes, byte for byte."""
    oversize_bytes: int = 300 * 1024
    lot_size: int = 50
    """Gauge messages per lot."""
    utc_offset_min: int = 60
    """The devices' local UTC offset, written into each timestamp."""

    def __post_init__(self) -> None:
        if self.devices < 1 or self.points < 2 or not self.suppliers:
            raise ValueError("a fleet needs >= 1 device, >= 2 points and >= 1 supplier")
        if not 0 <= self.gauge_share <= 1:
            raise ValueError("gauge_share must be in [0, 1]")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError("fault_rate must be in [0, 1]")
        if Fault.BAD_SIGNATURE in self.faults and not self.sign:
            raise ValueError("bad_signature faults need a signing fleet (its keys registered)")


@dataclass(frozen=True)
class FleetMessage:
    """One publication: what was sent where, and what the node should make of it."""

    topic: str
    payload: bytes
    device: str
    seq: int | None
    fault: Fault | None
    """None: a valid message the node must store exactly once."""


@dataclass
class SimulatedDevice:
    device_id: str
    kind: str
    """``env`` or ``gauge``."""
    signing_key: SigningKey
    supplier: str | None = None
    offset: float = 0.0
    next_seq: int = 0
    messages: int = 0
    history: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def public_key(self) -> str:
        return bytes(self.signing_key.verify_key).hex()


def device_key(seed: int, device_id: str) -> SigningKey:
    """A device's ed25519 key, derived from the fleet seed: a demo key, public by construction."""
    return SigningKey(hashlib.sha256(f"qnode-fleet:{seed}:{device_id}".encode()).digest())


class DeviceFleet:
    """Generates the fleet's messages; :class:`FleetPublisher` sends them."""

    def __init__(self, spec: FleetSpec, start: datetime | None = None) -> None:
        self.spec = spec
        self.start = start or datetime.now(UTC)
        self._random = random.Random(spec.seed)
        self._zone = timezone(timedelta(minutes=spec.utc_offset_min))
        self.devices = self._make_devices()
        self._faults_sent = 0
        self._lot_shift: dict[tuple[str, int], float] = {}

    def _make_devices(self) -> list[SimulatedDevice]:
        spec = self.spec
        env_count = spec.devices - int(spec.devices * spec.gauge_share)
        devices = []
        for n in range(env_count):
            device_id = f"env-{spec.first_device + n:02d}"
            devices.append(SimulatedDevice(device_id, "env", device_key(spec.seed, device_id)))
        for n in range(spec.devices - env_count):
            supplier_index = n % len(spec.suppliers)
            supplier = spec.suppliers[supplier_index]
            device_id = f"gauge-{supplier}-{spec.first_device + n:02d}"
            devices.append(
                SimulatedDevice(
                    device_id,
                    "gauge",
                    device_key(spec.seed, device_id),
                    supplier,
                    offset=0.004 * supplier_index,
                )
            )
        return devices

    def topic(self, device_id: str) -> str:
        return f"{self.spec.topic_prefix}/{device_id}/data"

    # -- settings a node needs ------------------------------------------------------------------

    def oracle_settings(self) -> dict[str, Any]:
        """``[oracles]`` quantities and devices (public keys) that make a node accept the fleet.

        Signatures are checked when present but not required: NaN and malformed messages cannot
        carry a valid signature, and must be quarantined for what they are.
        """
        devices = {}
        for device in self.devices:
            quantities = (
                ["temperature", "humidity"] if device.kind == "env" else ["dimension", "lot"]
            )
            entry: dict[str, Any] = {"quantities": quantities}
            if self.spec.sign:
                entry["public_key"] = device.public_key
            devices[device.device_id] = entry
        return {"quantities": {k: dict(v) for k, v in QUANTITIES.items()}, "devices": devices}

    def topic_filter(self) -> str:
        return f"{self.spec.topic_prefix}/+/data"

    def mqtt_topics(self) -> dict[str, str]:
        """``MqttSettings.topics`` for this fleet: its filter and the level holding the device."""
        level = len(self.spec.topic_prefix.split("/"))
        return {self.topic_filter(): f"{{{level}}}"}

    # -- messages -------------------------------------------------------------------------------

    def round(self, now: datetime | None = None) -> list[FleetMessage]:
        """One message from every device (a fault in place of some, replays in addition)."""
        moment = now or datetime.now(UTC)
        out: list[FleetMessage] = []
        for device in self.devices:
            out.extend(self._next(device, moment))
        return out

    def _next(self, device: SimulatedDevice, now: datetime) -> list[FleetMessage]:
        fault = self._fault_due()
        if fault is None:
            return [self._valid(device, now)]
        return self._faulty(device, now, fault)

    def _fault_due(self) -> Fault | None:
        spec = self.spec
        if not spec.faults or spec.fault_rate <= 0:
            return None
        if self._random.random() >= spec.fault_rate:
            return None
        fault = spec.faults[self._faults_sent % len(spec.faults)]
        self._faults_sent += 1
        return fault

    def _valid(self, device: SimulatedDevice, now: datetime) -> FleetMessage:
        message = self._fields(device, now)
        payload = encode_message(message, device.signing_key if self.spec.sign else None)
        seq: int = message["seq"]
        device.history.append((seq, payload))
        return FleetMessage(self.topic(device.device_id), payload, device.device_id, seq, None)

    def _fields(self, device: SimulatedDevice, now: datetime) -> dict[str, Any]:
        seq = device.next_seq
        device.next_seq += 1
        device.messages += 1
        minutes = (now - self.start).total_seconds() / 60
        return {
            "v": 1,
            "device": device.device_id,
            "seq": seq,
            "ts": now.astimezone(self._zone).isoformat(timespec="microseconds"),
            "points": self._points(device, minutes),
        }

    def _points(self, device: SimulatedDevice, minutes: float) -> list[dict[str, Any]]:
        drift = self.spec.drift_per_min * minutes
        gauss = self._random.gauss
        if device.kind == "gauge":
            lot = device.messages // self.spec.lot_size
            shift = self._lot_shift.setdefault((device.device_id, lot), gauss(0, 0.003))
            value = NOMINAL_DIMENSION_MM + device.offset + shift + drift + gauss(0, 0.002)
            lot_number = 260000 + lot
            return [
                {"q": "dimension", "v": round(value, 4), "u": "MMT"},
                {"q": "lot", "v": lot_number, "u": "C62"},
            ]
        points = []
        for channel in range(self.spec.points):
            if channel % 2 == 0:
                value = 21.0 + drift + gauss(0, 0.2)
                points.append({"q": "temperature", "v": round(value, 3), "u": "CEL"})
            else:
                value = min(100.0, max(0.0, 45.0 + gauss(0, 1.0)))
                points.append({"q": "humidity", "v": round(value, 2), "u": "P1"})
        return points

    def _faulty(self, device: SimulatedDevice, now: datetime, fault: Fault) -> list[FleetMessage]:
        topic = self.topic(device.device_id)
        key = device.signing_key if self.spec.sign else None
        if fault is Fault.REPLAY:
            earlier = list(device.history)[-self.spec.replay_burst :]
            replays = [FleetMessage(topic, p, device.device_id, n, fault) for n, p in earlier]
            return [self._valid(device, now), *replays]
        if fault is Fault.UNKNOWN_DEVICE:
            ghost = f"ghost-{self._faults_sent:04d}"
            fields = self._fields(device, now) | {"device": ghost}
            device.next_seq -= 1  # the ghost's message takes none of this device's numbers
            device.messages -= 1
            return [FleetMessage(self.topic(ghost), encode_message(fields), ghost, None, fault)]
        fields = self._fields(device, now)
        seq = fields["seq"]
        payload = self._fault_payload(fault, fields, key, now)
        return [FleetMessage(topic, payload, device.device_id, seq, fault)]

    def _fault_payload(
        self, fault: Fault, fields: dict[str, Any], key: SigningKey | None, now: datetime
    ) -> bytes:
        points = fields["points"]
        if fault is Fault.NAN:
            # canonical JSON refuses NaN, as it should: write a sentinel, then swap it in.
            points[0]["v"] = 987654.321
            return encode_message(fields).replace(b"987654.321", b"NaN")
        if fault is Fault.OUT_OF_RANGE:
            first = QUANTITIES[points[0]["q"]]
            points[0]["v"] = first["max"] * 10 + 1000
        elif fault is Fault.WRONG_UNIT:
            points[0]["u"] = "KGM"
        elif fault is Fault.FUTURE_TIMESTAMP:
            fields["ts"] = (now + timedelta(hours=1)).astimezone(self._zone).isoformat()
        elif fault is Fault.STALE_TIMESTAMP:
            fields["ts"] = (now - timedelta(days=30)).astimezone(self._zone).isoformat()
        elif fault is Fault.BAD_SIGNATURE:
            forger = SigningKey(hashlib.sha256(b"not this device's key").digest())
            return encode_message(fields, forger)
        elif fault is Fault.MALFORMED_JSON:
            return encode_message(fields, key)[:-7]
        elif fault is Fault.OVERSIZE:
            filler = {"q": points[0]["q"], "v": points[0]["v"], "u": points[0]["u"]}
            per_point = len(encode_message({"p": filler})) - 6
            fields["points"] = [filler] * (self.spec.oversize_bytes // per_point + 1)
            return encode_message(fields)
        return encode_message(fields, key)

    def messages(
        self, rounds: int, interval: timedelta = timedelta(seconds=1)
    ) -> list[FleetMessage]:
        """``rounds`` rounds with timestamps ``interval`` apart, ending about now."""
        now = datetime.now(UTC)
        first = now - interval * (rounds - 1)
        out: list[FleetMessage] = []
        for n in range(rounds):
            out.extend(self.round(first + interval * n))
        return out


# -- publishing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishProgress:
    rounds: int
    published: int
    faults: int
    elapsed_s: float


class FleetPublisher:
    """Publishes a fleet's messages with QoS 1; paho queues them while the broker is away and
    sends them when it is back, so a broker restart loses nothing on this side."""

    def __init__(
        self,
        broker_url: str,
        client_id: str,
        max_inflight: int = 1000,
        username: str | None = None,
        password: str | None = None,
        tls_files: tuple[Path | None, Path | None, Path | None] | None = None,
    ) -> None:
        """``tls_files``: (CA, client certificate, client key) for an ``mqtts://`` broker."""
        parts = urlsplit(broker_url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SourceError(f"bad broker URL {broker_url!r}: expected mqtt[s]://host[:port]")
        self.host = parts.hostname
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if parts.scheme == "mqtts":
            ca, cert, key = (str(f) if f else None for f in tls_files or (None, None, None))
            self.client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 4)
        self._sent = 0
        self._acknowledged = 0
        self._connected = threading.Event()
        self._refusal: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason).lower()
            self.client.disconnect()
        self._connected.set()

    def __enter__(self) -> FleetPublisher:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self, timeout: float = 15.0) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise SourceError(f"cannot reach MQTT broker {self.host}:{self.port}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(timeout) or self._refusal is not None:
            self.close()
            why = self._refusal or f"no answer in {timeout:g} s"
            raise SourceError(f"MQTT broker {self.host}:{self.port} refused the fleet: {why}")

    def publish(self, messages: Iterable[FleetMessage]) -> int:
        count = 0
        for message in messages:
            self.send(message.topic, message.payload)
            count += 1
        return count

    def send(self, topic: str, payload: bytes) -> None:
        """Publish one payload with QoS 1 (queued by paho while the broker is away)."""
        self._sent += 1
        self.client.publish(topic, payload, qos=1)

    def _on_publish(self, *_args: Any) -> None:
        # paho calls this once per message, when the broker's PUBACK arrives
        self._acknowledged += 1

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until the broker acknowledged everything published so far."""
        deadline = time.monotonic() + timeout
        while self._acknowledged < self._sent:
            if time.monotonic() > deadline:
                missing = self._sent - self._acknowledged
                raise SourceError(f"{missing} message(s) not acknowledged by the broker")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def run(
        self,
        fleet: DeviceFleet,
        rate_hz: float,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[PublishProgress], None] | None = None,
        progress_every_s: float = 5.0,
    ) -> PublishProgress:
        """Publish a round every ``1 / rate_hz`` s until ``duration_s`` or ``stop`` is set."""
        stop = stop or threading.Event()
        started = time.monotonic()
        interval = 1.0 / rate_hz
        rounds = published = faults = 0
        next_report = started + progress_every_s
        while not stop.is_set():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            batch = fleet.round()
            published += self.publish(batch)
            faults += sum(1 for m in batch if m.fault is not None)
            rounds += 1
            if progress is not None and now >= next_report:
                progress(PublishProgress(rounds, published, faults, now - started))
                next_report = now + progress_every_s
            stop.wait(max(0.0, started + rounds * interval - time.monotonic()))
        return PublishProgress(rounds, published, faults, time.monotonic() - started)


def valid_keys(messages: Sequence[FleetMessage]) -> set[tuple[str, int]]:
    """(device, seq) of every valid message: what the node must store, each exactly once."""
    return {(m.device, m.seq) for m in messages if m.fault is None and m.seq is not None}


def expected_faults(messages: Sequence[FleetMessage]) -> list[Fault]:
    return [m.fault for m in messages if m.fault is not None]
