"""A coating-line PLC simulated as an asyncua OPC UA server on loopback, for demos and tests.

Address space (namespace ``urn:qnode:coating-line``, string NodeIds stable across restarts)::

    ThicknessGauges/Gauge<n>.Thickness   Double, µm (4H), every gauge_interval_s
    BakeOven.Temperature                 Double, °C (CEL), every oven_interval_s (0.5 s), bake curve
    BladePressure.Setpoint               Double, mm, written by a client
    BladePressure.RequestId              UInt32, written by a client after the setpoint
    BladePressure.AckId                  UInt32, the PLC echoes RequestId here once applied
    BladePressure.Actual                 Double, mm, the applied setpoint
    Line.Stop                            Boolean, written by a client: True stops the line
    Line.StopRequestId                   UInt32, written by a client after Stop
    Line.StopAckId                       UInt32, the PLC echoes StopRequestId here once handled
    Line.Running                         Boolean, False once stopped (until ``restart()``)

The acknowledge handshake: a client writes Setpoint, then a new RequestId; after ``ack_delay_s``
the PLC copies Setpoint, clamped to [``blade_min_mm``, ``blade_max_mm``], into Actual and then
RequestId into AckId (never, with ``ack_delay_s=None`` or the ``no-ack`` fault). Actual moves the
coating: thickness falls by ``thickness_per_mm`` µm per mm of blade pressure above nominal.

The stop handshake is the same with Stop/StopRequestId/StopAckId: after ``stop_ack_delay_s``
(default 0: at once) a Stop of True makes Running False, and then StopAckId echoes the request
(never, with ``stop_ack_delay_s=None`` or the ``no-stop-ack`` fault). A stopped line produces no
thickness readings; ``restart()`` (the operator's key switch) clears Stop and runs it again. Both
handshakes wake on every client write (a server write callback), so an acknowledgement costs no
polling delay.

Drift moves the thickness mean or its coefficient of variation linearly with time; faults make a
sensor Bad (BadSensorFailure), Uncertain, NaN or stuck. Sensor values carry a SourceTimestamp;
the last value of every variable is kept across ``stop()``/``start()``, like a PLC's retained
memory, so a restarted server sends a subscriber the same values with the same timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from asyncua import ua
from asyncua.common.callback import CallbackType
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from node.chain.localnode import free_port
from node.errors import ConfigError
from node.settings import OpcUaNode, OpcUaSettings, PlcSettings

NAMESPACE = "urn:qnode:coating-line"
APPLICATION_URI = "urn:qnode:coating-line:plc"
GAUGE_THICKNESS = "Gauge{n}.Thickness"
OVEN_TEMPERATURE = "BakeOven.Temperature"
BLADE_SETPOINT = "BladePressure.Setpoint"
BLADE_REQUEST_ID = "BladePressure.RequestId"
BLADE_ACK_ID = "BladePressure.AckId"
BLADE_ACTUAL = "BladePressure.Actual"
LINE_STOP = "Line.Stop"
LINE_STOP_REQUEST_ID = "Line.StopRequestId"
LINE_STOP_ACK_ID = "Line.StopAckId"
LINE_RUNNING = "Line.Running"

SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
_POLICY_TYPES: Mapping[str, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
_HANDSHAKE_POLL_S = 0.05
"""Fallback poll of the request ids; client writes wake the handshakes at once."""


class Fault(StrEnum):
    BAD = "bad"
    """The sensor reports BadSensorFailure (and no value)."""
    UNCERTAIN = "uncertain"
    """Values keep coming, flagged UncertainSensorNotAccurate."""
    NAN = "nan"
    """Good status, value NaN."""
    STUCK = "stuck"
    """The value freezes at its last reading; timestamps keep advancing."""
    NO_ACK = "no-ack"
    """Blade-pressure requests are never applied nor acknowledged."""
    NO_STOP_ACK = "no-stop-ack"
    """Stop requests are never handled nor acknowledged."""


@dataclass(frozen=True)
class FaultSpec:
    kind: Fault
    target: str = "Gauge1"
    """``Gauge<n>`` or ``BakeOven``; ignored for ``no-ack`` and ``no-stop-ack``."""

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``bad``, ``nan:Gauge2``, ``stuck:BakeOven``, ``no-ack``."""
        kind, _, target = text.partition(":")
        try:
            fault = Fault(kind.strip().lower())
        except ValueError as exc:
            choices = ", ".join(f.value for f in Fault)
            raise ConfigError(f"unknown fault {kind!r}: use one of {choices}") from exc
        return cls(fault, target.strip() or "Gauge1")


@dataclass(frozen=True)
class Drift:
    """Linear drift per minute of the thickness mean (µm) and of its CV (percentage points)."""

    mean_um_per_min: float = 0.0
    cv_pct_per_min: float = 0.0

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Drift:
        """``mean=0.5`` (µm/min) and/or ``cv=0.1`` (% points/min)."""
        values = {"mean": 0.0, "cv": 0.0}
        for text in texts:
            name, _, number = text.partition("=")
            if name.strip() not in values:
                raise ConfigError(f"bad drift {text!r}: use mean=<µm/min> or cv=<%/min>")
            try:
                values[name.strip()] = float(number)
            except ValueError as exc:
                raise ConfigError(f"bad drift {text!r}: {number!r} is not a number") from exc
        return cls(values["mean"], values["cv"])


@dataclass(frozen=True)
class BakeProfile:
    """One oven pass: heat up towards the soak temperature, hold (with PID ripple), cool down."""

    ambient_c: float = 25.0
    soak_c: float = 130.0
    exit_c: float = 40.0
    heat_s: float = 15.0
    soak_s: float = 30.0
    cool_s: float = 15.0
    tau_s: float = 4.0
    ripple_c: float = 0.6
    noise_c: float = 0.15

    def temperature(self, elapsed_s: float, rng: random.Random) -> float:
        t = elapsed_s % (self.heat_s + self.soak_s + self.cool_s)
        if t < self.heat_s:
            base = self.ambient_c + (self.soak_c - self.ambient_c) * (1 - math.exp(-t / self.tau_s))
        elif t < self.heat_s + self.soak_s:
            base = self.soak_c + self.ripple_c * math.sin(2 * math.pi * (t - self.heat_s) / 7.0)
        else:
            cooled = 1 - math.exp(-(t - self.heat_s - self.soak_s) / self.tau_s)
            base = self.soak_c - (self.soak_c - self.exit_c) * cooled
        return base + rng.gauss(0.0, self.noise_c)


@dataclass(frozen=True)
class CertificateFiles:
    certificate: Path
    """DER."""
    private_key: Path
    """PEM, unencrypted."""
    application_uri: str


def generate_certificate(
    directory: Path, name: str, application_uri: str, *, server: bool
) -> CertificateFiles:
    """A self-signed OPC UA application certificate (RSA 2048) and its key, written to
    ``directory/<name>.der`` and ``directory/<name>.key.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = cert_gen.generate_self_signed_app_certificate(key, name, {}, names, extended=[use])
    files = CertificateFiles(
        directory / f"{name}.der", directory / f"{name}.key.pem", application_uri
    )
    files.certificate.write_bytes(cert.public_bytes(Encoding.DER))
    files.private_key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return files


@dataclass(frozen=True)
class PlcConfig:
    port: int | None = None
    """Loopback port; ``None``: a free one."""
    gauges: int = 3
    gauge_interval_s: float = 0.25
    oven_interval_s: float = 0.5
    thickness_mean_um: float = 85.0
    thickness_cv_pct: float = 0.5
    thickness_per_mm: float = 20.0
    """µm the coating thins per mm of blade pressure above nominal."""
    nominal_blade_mm: float = 1.0
    bake: BakeProfile = BakeProfile()
    drift: Drift = Drift()
    faults: tuple[FaultSpec, ...] = ()
    ack_delay_s: float | None = 0.2
    """Delay between a request and its acknowledgement; ``None``: never acknowledged."""
    blade_min_mm: float = 0.0
    blade_max_mm: float = 5.0
    """The PLC's own limits: a setpoint beyond them is applied clamped (and acknowledged)."""
    stop_ack_delay_s: float | None = 0.0
    """Delay between a stop request and the stop; ``None``: never handled."""
    security_modes: tuple[SecurityMode, ...] = ("None",)
    """Endpoints offered (Basic256Sha256 for Sign and SignAndEncrypt)."""
    certificate_dir: Path | None = None
    """Where the server's generated certificate goes (needed for Sign/SignAndEncrypt)."""
    trusted_clients: tuple[Path, ...] | None = None
    """Client certificates accepted on secure endpoints; ``None``: any."""
    users: Mapping[str, str] | None = None
    """Username -> password; when given, anonymous sessions are refused."""
    seed: int | None = None


@dataclass(frozen=True)
class PlcSnapshot:
    """The latest values, for a progress line."""

    uptime_s: float
    samples: int
    thickness_um: tuple[float | None, ...]
    oven_c: float | None
    blade_actual_mm: float
    acks: int
    running: bool = True
    stop_acks: int = 0

    def describe(self) -> str:
        gauges = " ".join(_format(value, ".2f") for value in self.thickness_um)
        return (
            f"t={self.uptime_s:.0f}s samples={self.samples} thickness[µm]={gauges} "
            f"oven={_format(self.oven_c, '.1f')}°C blade={self.blade_actual_mm:.3f}mm "
            f"acks={self.acks}{'' if self.running else ' STOPPED'}"
        )


class _UserManager(UserManager):
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class _State:
    """What survives a restart (the PLC's retained memory) and the running counters."""

    retained: dict[str, ua.DataValue] = field(default_factory=dict)
    stuck: dict[str, float] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    never_ack: bool = False
    never_stop_ack: bool = False
    last_request: int = 0
    last_stop_request: int = 0
    running: bool = True
    samples: int = 0
    acks: int = 0
    stop_acks: int = 0


class CoatingLinePlc:
    """``async with CoatingLinePlc(PlcConfig(...)) as plc:`` serves ``plc.endpoint``."""

    def __init__(self, config: PlcConfig = PlcConfig()) -> None:
        if config.gauges < 1:
            raise ConfigError("a coating line needs at least one thickness gauge")
        if set(config.security_modes) - set(_POLICY_TYPES) or not config.security_modes:
            raise ConfigError(f"security modes must be among {sorted(_POLICY_TYPES)}")
        self.config = config
        self.port = config.port or free_port()
        self._rng = random.Random(config.seed)
        self._state = _State(
            never_ack=config.ack_delay_s is None, never_stop_ack=config.stop_ack_delay_s is None
        )
        for fault in config.faults:
            self._set_fault(fault)
        self._server: Server | None = None
        self._namespace = 2
        self._tasks: list[asyncio.Task[None]] = []
        self._blade_written = asyncio.Event()
        self._stop_written = asyncio.Event()
        self._paused = False
        self._started_at: float | None = None
        self.server_certificate: CertificateFiles | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    @property
    def gauge_names(self) -> tuple[str, ...]:
        return tuple(GAUGE_THICKNESS.format(n=n) for n in range(1, self.config.gauges + 1))

    def node_id(self, name: str) -> str:
        """``ns=<index>;s=<name>``, e.g. ``node_id(BLADE_SETPOINT)``."""
        return f"ns={self._namespace};s={name}"

    async def __aenter__(self) -> CoatingLinePlc:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space (with retained values), listen, start sampling."""
        if self._server is not None:
            return
        server = await self._new_server()
        await server.start()
        self._server = server
        if self._started_at is None:
            self._started_at = asyncio.get_running_loop().time()
        self._tasks = [
            asyncio.create_task(self._sample_gauge(name), name=f"plc {name}")
            for name in self.gauge_names
        ]
        self._tasks.append(asyncio.create_task(self._sample_oven(), name="plc oven"))
        self._tasks.append(asyncio.create_task(self._handshake(), name="plc handshake"))
        self._tasks.append(asyncio.create_task(self._stop_handshake(), name="plc stop"))

    async def stop(self) -> None:
        """Stop serving; the last values stay for the next ``start()``."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    def pause(self) -> None:
        """Stop producing samples (values and timestamps stay as they are)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    async def restart(self) -> None:
        """The operator's restart after a stop: Stop cleared, Running again, gauges sampling."""
        self._state.running = True
        now = ua.DateTime.now(UTC)
        for name, value in ((LINE_STOP, False), (LINE_RUNNING, True)):
            if self._server is None:
                self._state.retained[name] = _boolean(value, now)
            else:
                await self._write(name, _boolean(value, now))

    def inject_fault(self, kind: Fault, target: str = "Gauge1") -> None:
        self._set_fault(FaultSpec(kind, target))

    def clear_faults(self) -> None:
        self._state.faults.clear()
        self._state.stuck.clear()
        self._state.never_ack = self.config.ack_delay_s is None
        self._state.never_stop_ack = self.config.stop_ack_delay_s is None

    def snapshot(self) -> PlcSnapshot:
        retained = self._state.retained
        return PlcSnapshot(
            uptime_s=self._uptime_s(),
            samples=self._state.samples,
            thickness_um=tuple(_number(retained.get(name)) for name in self.gauge_names),
            oven_c=_number(retained.get(OVEN_TEMPERATURE)),
            blade_actual_mm=self._blade_actual_mm(),
            acks=self._state.acks,
            running=self._state.running,
            stop_acks=self._state.stop_acks,
        )

    def opcua_settings(self, names: Iterable[str] | None = None, **overrides: Any) -> OpcUaSettings:
        """Settings for an OpcUaSource subscribed to ``names`` (default: every gauge, the oven
        and the applied blade pressure); ``overrides`` set other OpcUaSettings fields."""
        values: dict[str, Any] = {
            "url": self.endpoint,
            "publishing_interval_ms": 50,
            "nodes": [self.node_settings(name) for name in names or self.sensor_names()],
        }
        values.update(overrides)
        return OpcUaSettings(**values)

    def plc_settings(self, **overrides: Any) -> PlcSettings:
        """``[control.plc]`` settings that drive this PLC (the default NodeIds name its
        namespace by URI); ``overrides`` set other PlcSettings fields."""
        return PlcSettings(**{"url": self.endpoint, **overrides})

    def sensor_names(self) -> tuple[str, ...]:
        return (*self.gauge_names, OVEN_TEMPERATURE, BLADE_ACTUAL)

    def node_settings(self, name: str) -> OpcUaNode:
        """The device/quantity/unit a subscriber should map ``name`` to."""
        if name == OVEN_TEMPERATURE:
            return OpcUaNode(
                node_id=self.node_id(name), device="bake-oven-1", quantity="temperature", unit="CEL"
            )
        if name in (BLADE_ACTUAL, BLADE_SETPOINT):
            return OpcUaNode(
                node_id=self.node_id(name),
                device="coater-blade-1",
                quantity="blade_pressure",
                unit="MMT",
            )
        if name in self.gauge_names:
            number = _object_of(name).removeprefix("Gauge")
            return OpcUaNode(
                node_id=self.node_id(name),
                device=f"coater-gauge-{number}",
                quantity="thickness",
                unit="4H",
            )
        raise ConfigError(f"the coating-line PLC has no sensor {name!r}")

    def oracle_settings_values(self) -> dict[str, Any]:
        """An ``[oracles]`` config fragment: the OPC UA source plus the quantities and devices
        its messages need to pass validation (``qnode simulate plc --write-config``)."""
        opcua = self.opcua_settings(publishing_interval_ms=100)
        return {
            "opcua": opcua.model_dump(mode="json", exclude_defaults=True) | {"url": self.endpoint},
            "quantities": {
                "thickness": {"unit": "4H", "min": 0.0, "max": 1000.0},
                "temperature": {"unit": "CEL", "min": -50.0, "max": 400.0},
                "blade_pressure": {"unit": "MMT", "min": 0.0, "max": 10.0},
            },
            "devices": {node.device: {} for node in opcua.nodes},
        }

    # -- the server -------------------------------------------------------------------------

    async def _new_server(self) -> Server:
        config = self.config
        server = Server(user_manager=_UserManager(config.users) if config.users else None)
        await server.init()
        server.set_endpoint(f"{self.endpoint}/")
        server.set_server_name("qnode coating-line PLC simulator")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([_POLICY_TYPES[mode] for mode in config.security_modes])
        if config.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if set(config.security_modes) != {"None"}:
            await self._load_server_certificate(server)
        self._namespace = await server.register_namespace(NAMESPACE)
        await self._build_address_space(server)
        server.subscribe_server_callback(CallbackType.PostWrite, self._client_wrote)
        return server

    def _client_wrote(self, _event: object, _dispatcher: object) -> None:
        self._blade_written.set()
        self._stop_written.set()

    async def _load_server_certificate(self, server: Server) -> None:
        if self.config.certificate_dir is None:
            raise ConfigError("a secure PLC endpoint needs PlcConfig.certificate_dir")
        if self.server_certificate is None:
            self.server_certificate = generate_certificate(
                self.config.certificate_dir, "coating-plc", APPLICATION_URI, server=True
            )
        await server.load_certificate(str(self.server_certificate.certificate))
        await server.load_private_key(str(self.server_certificate.private_key))
        if self.config.trusted_clients is not None:
            trusted = {path.read_bytes() for path in self.config.trusted_clients}

            async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
                if cert.public_bytes(Encoding.DER) not in trusted:
                    raise ServiceError(StatusCodes.BadCertificateUntrusted)

            server.set_certificate_validator(validate)

    async def _build_address_space(self, server: Server) -> None:
        objects = server.nodes.objects
        double, uint32 = ua.VariantType.Double, ua.VariantType.UInt32
        gauges = await objects.add_object(self._ua_node_id("ThicknessGauges"), "ThicknessGauges")
        for name in self.gauge_names:
            gauge = await gauges.add_object(self._ua_node_id(_object_of(name)), _object_of(name))
            await self._add_variable(gauge, name, double, self.config.thickness_mean_um)
        oven = await objects.add_object(self._ua_node_id("BakeOven"), "BakeOven")
        await self._add_variable(oven, OVEN_TEMPERATURE, double, self.config.bake.ambient_c)
        blade = await objects.add_object(self._ua_node_id("BladePressure"), "BladePressure")
        nominal = self.config.nominal_blade_mm
        setpoint = await self._add_variable(blade, BLADE_SETPOINT, double, nominal)
        request = await self._add_variable(blade, BLADE_REQUEST_ID, uint32, 0)
        await self._add_variable(blade, BLADE_ACK_ID, uint32, 0)
        await self._add_variable(blade, BLADE_ACTUAL, double, nominal)
        await setpoint.set_writable()
        await request.set_writable()
        line = await objects.add_object(self._ua_node_id("Line"), "Line")
        boolean = ua.VariantType.Boolean
        stop = await self._add_variable(line, LINE_STOP, boolean, False)
        stop_request = await self._add_variable(line, LINE_STOP_REQUEST_ID, uint32, 0)
        await self._add_variable(line, LINE_STOP_ACK_ID, uint32, 0)
        await self._add_variable(line, LINE_RUNNING, boolean, self._state.running)
        await stop.set_writable()
        await stop_request.set_writable()

    async def _add_variable(
        self, parent: Node, name: str, variant_type: ua.VariantType, initial: float | bool
    ) -> Node:
        node = await parent.add_variable(
            self._ua_node_id(name), name.split(".")[-1], ua.Variant(initial, variant_type)
        )
        retained = self._state.retained.get(name)
        if retained is None:
            self._state.retained[name] = await node.read_data_value()
        else:
            await node.write_value(retained)
        return node

    async def _write(self, name: str, value: ua.DataValue) -> None:
        assert self._server is not None
        self._state.retained[name] = value
        await self._server.write_attribute_value(self._ua_node_id(name), value)

    def _ua_node_id(self, name: str) -> ua.NodeId:
        return ua.NodeId(ua.String(name), ua.Int16(self._namespace))

    def _read_data_value(self, name: str) -> ua.DataValue:
        assert self._server is not None
        return self._server.read_attribute_value(self._ua_node_id(name))

    def _read(self, name: str) -> Any:
        value = self._read_data_value(name)
        return None if value.Value is None else value.Value.Value

    # -- the process --------------------------------------------------------------------------

    async def _sample_gauge(self, name: str) -> None:
        while True:
            await asyncio.sleep(self.config.gauge_interval_s)
            if not self._paused and self._state.running:
                await self._write(name, self._sensor_value(name, self._thickness()))

    async def _sample_oven(self) -> None:
        while True:
            await asyncio.sleep(self.config.oven_interval_s)
            if not self._paused:
                temperature = self.config.bake.temperature(self._uptime_s(), self._rng)
                await self._write(
                    OVEN_TEMPERATURE, self._sensor_value(OVEN_TEMPERATURE, temperature)
                )

    def _uptime_s(self) -> float:
        if self._started_at is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._started_at

    def _blade_actual_mm(self) -> float:
        actual = _number(self._state.retained.get(BLADE_ACTUAL))
        return self.config.nominal_blade_mm if actual is None else actual

    def _thickness(self) -> float:
        config = self.config
        minutes = self._uptime_s() / 60.0
        actual = self._blade_actual_mm()
        mean = (
            config.thickness_mean_um
            + config.drift.mean_um_per_min * minutes
            - config.thickness_per_mm * (actual - config.nominal_blade_mm)
        )
        cv_pct = max(0.0, config.thickness_cv_pct + config.drift.cv_pct_per_min * minutes)
        return self._rng.gauss(mean, mean * cv_pct / 100.0)

    def _sensor_value(self, name: str, value: float) -> ua.DataValue:
        """A sample as the sensor reports it, its fault applied."""
        self._state.samples += 1
        now = ua.DateTime.now(UTC)
        fault = self._state.faults.get(_object_of(name))
        if fault is Fault.BAD:
            status = _status(StatusCodes.BadSensorFailure)
            return ua.DataValue(StatusCode=status, SourceTimestamp=now, ServerTimestamp=now)
        status = _status(StatusCodes.Good)
        if fault is Fault.UNCERTAIN:
            status = _status(StatusCodes.UncertainSensorNotAccurate)
        elif fault is Fault.NAN:
            value = math.nan
        elif fault is Fault.STUCK:
            last = _number(self._state.retained.get(name))
            value = self._state.stuck.setdefault(name, value if last is None else last)
        variant = ua.Variant(value, ua.VariantType.Double)
        return ua.DataValue(variant, StatusCode=status, SourceTimestamp=now, ServerTimestamp=now)

    async def _handshake(self) -> None:
        """Watch RequestId; apply and acknowledge each new request after the configured delay."""
        while True:
            await _written_or_timeout(self._blade_written)
            request = self._read(BLADE_REQUEST_ID)
            if not isinstance(request, int) or request == self._state.last_request:
                continue
            for name in (BLADE_SETPOINT, BLADE_REQUEST_ID):  # retained, like the PLC's own
                self._state.retained[name] = self._read_data_value(name)
            if self._state.never_ack or self.config.ack_delay_s is None:
                self._state.last_request = request  # ignored for good
                continue
            await asyncio.sleep(self.config.ack_delay_s)
            setpoint = self._read(BLADE_SETPOINT)
            applied = min(max(float(setpoint), self.config.blade_min_mm), self.config.blade_max_mm)
            now = ua.DateTime.now(UTC)
            actual = ua.Variant(applied, ua.VariantType.Double)
            await self._write(
                BLADE_ACTUAL, ua.DataValue(actual, SourceTimestamp=now, ServerTimestamp=now)
            )
            ack = ua.Variant(request, ua.VariantType.UInt32)
            await self._write(
                BLADE_ACK_ID, ua.DataValue(ack, SourceTimestamp=now, ServerTimestamp=now)
            )
            # Only now: a request interrupted by stop() is handled after the next start().
            self._state.last_request = request
            self._state.acks += 1

    async def _stop_handshake(self) -> None:
        """Watch StopRequestId; on a new request with Stop set, stop the line, then acknowledge."""
        while True:
            await _written_or_timeout(self._stop_written)
            request = self._read(LINE_STOP_REQUEST_ID)
            if not isinstance(request, int) or request == self._state.last_stop_request:
                continue
            for name in (LINE_STOP, LINE_STOP_REQUEST_ID):
                self._state.retained[name] = self._read_data_value(name)
            delay = self.config.stop_ack_delay_s
            if self._state.never_stop_ack or delay is None:
                self._state.last_stop_request = request
                continue
            if delay > 0:
                await asyncio.sleep(delay)
            now = ua.DateTime.now(UTC)
            if self._read(LINE_STOP) is True:
                self._state.running = False
                await self._write(LINE_RUNNING, _boolean(False, now))
            ack = ua.Variant(request, ua.VariantType.UInt32)
            await self._write(
                LINE_STOP_ACK_ID, ua.DataValue(ack, SourceTimestamp=now, ServerTimestamp=now)
            )
            self._state.last_stop_request = request
            self._state.stop_acks += 1

    def _set_fault(self, fault: FaultSpec) -> None:
        if fault.kind is Fault.NO_ACK:
            self._state.never_ack = True
            return
        if fault.kind is Fault.NO_STOP_ACK:
            self._state.never_stop_ack = True
            return
        targets = {_object_of(name) for name in self.sensor_names()} - {"BladePressure"}
        if fault.target not in targets:
            raise ConfigError(f"no sensor {fault.target!r} to fault: use one of {sorted(targets)}")
        self._state.faults[fault.target] = fault.kind
        for name in [name for name in self._state.stuck if name.startswith(f"{fault.target}.")]:
            del self._state.stuck[name]


async def _written_or_timeout(written: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(written.wait(), _HANDSHAKE_POLL_S)
    written.clear()


def _boolean(value: bool, now: Any) -> ua.DataValue:
    variant = ua.Variant(value, ua.VariantType.Boolean)
    return ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)


def _object_of(name: str) -> str:
    """``Gauge1.Thickness`` -> ``Gauge1``: the object a variable belongs to (and faults target)."""
    return name.split(".")[0]


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _number(value: ua.DataValue | None) -> float | None:
    if value is None or value.Value is None or not isinstance(value.Value.Value, float):
        return None
    return value.Value.Value


def _format(value: float | None, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)
