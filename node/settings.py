"""Node settings: a TOML file plus ``QNODE_*`` environment variables, validated once, passed in.

Environment variables override the file; nested fields use ``__`` (``QNODE_CHAIN__RPC_URL``).
Relative paths in the file are taken relative to the file's directory.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from node.errors import ConfigError
from node.offchain.classification import DEFAULT_RECORD_TYPES

LOCAL_CHAIN_ID = 4717
"""The chainId of the local consortium chain (hardhat-local and the embedded chain)."""

EMBEDDED_RPC = "embedded"
"""``chain.rpc_url`` value that selects the in-process py-evm chain."""

RoleName = Literal["manufacturer", "supplier", "lab", "auditor"]
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberSettings(_Section):
    name: str = Field(min_length=1, max_length=100)
    role: RoleName
    endpoint: str = Field(default="http://127.0.0.1:8600", pattern=r"^https?://\S+$")


class ChainSettings(_Section):
    rpc_url: str = EMBEDDED_RPC
    chain_id: int = Field(default=LOCAL_CHAIN_ID, gt=0)
    local_chain_id: int = Field(default=LOCAL_CHAIN_ID, gt=0)
    poa: Literal["auto", "on", "off"] = "auto"
    confirmations: int = Field(default=0, ge=0, le=1000)
    request_timeout: float = Field(default=10.0, gt=0)
    receipt_timeout: float = Field(default=120.0, gt=0)

    @field_validator("rpc_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value != EMBEDDED_RPC and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be {EMBEDDED_RPC!r} or an http(s) URL, got {value!r}")
        return value

    @property
    def embedded(self) -> bool:
        return self.rpc_url == EMBEDDED_RPC


class KeySettings(_Section):
    keystore: Path = Path("keystore/member.json")
    oracle_dir: Path = Path("keystore/oracles")


class ContractSettings(_Section):
    consortium: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    anchor_registry: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    quality_ledger: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    line_control: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    supplier_quality: str | None = Field(default=None, pattern=ADDRESS_PATTERN)
    corrective_action: str | None = Field(default=None, pattern=ADDRESS_PATTERN)


class StoreSettings(_Section):
    url: str | None = None
    """SQLAlchemy URL; default: SQLite (WAL) at ``<data_dir>/store.db``."""
    blob_dir: Path = Path("blobs")
    max_blob_bytes: int = Field(default=64 * 1024 * 1024, gt=0)


class PrivacySettings(_Section):
    always_private: tuple[str, ...] = ()
    """Field names, besides the built-in PERSONAL_FIELDS, that must be private in every type."""


class AnchoringSettings(_Section):
    max_leaves: int = Field(default=4096, ge=1, le=2**20)
    max_age_s: float = Field(default=5.0, gt=0)


class QuantitySpec(_Section):
    """A measured quantity: its canonical UN/ECE Rec 20 unit and its physically possible range."""

    unit: str = Field(min_length=1, max_length=3)
    min: float
    max: float


class DeviceSpec(_Section):
    """A registered device. ``public_key`` (ed25519, 64 hex digits) makes signatures checkable;
    with ``require_signature`` an unsigned message is refused."""

    public_key: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    require_signature: bool = False
    quantities: tuple[str, ...] = ()
    """Quantities this device may report; empty: any configured quantity."""


class ValidationSettings(_Section):
    max_payload_bytes: int = Field(default=256 * 1024, gt=0)
    max_points: int = Field(default=10_000, gt=0)
    clock_skew_s: float = Field(default=5.0, ge=0)
    """How far in the future a device timestamp may be."""
    max_age_s: float = Field(default=7 * 86400, gt=0)
    """How far in the past a device timestamp may be."""


class MqttSettings(_Section):
    """An MQTT broker to subscribe to (QoS 1, persistent session, manual acknowledgement)."""

    url: str = Field(default="mqtt://127.0.0.1:1883", pattern=r"^mqtts?://\S+$")
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (TLS)."""
    client_id: str = Field(default="qnode-ingest", min_length=1, max_length=100)
    """Names the persistent session: a restarted node with the same id gets what it missed."""
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_s: int = Field(default=30, ge=5)
    topics: dict[str, str] = Field(default_factory=lambda: {"qnode/devices/+/data": "{2}"})
    """Topic filter -> device id: a fixed id, or ``{n}`` for the n-th topic level (0-based).
    A ``$share/<group>/`` prefix (MQTT 5 shared subscription) is not counted as levels."""
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry_s: int = Field(default=7 * 86400, ge=1, le=2**32 - 1)
    """MQTT 5: how long the broker keeps the session (and queues QoS 1 messages) while away."""
    receive_maximum: int = Field(default=20_000, ge=1, le=65_535)
    """MQTT 5: unacknowledged messages the broker may have in flight to us (3.1.1: broker's
    ``max_inflight_messages``). Acks wait for the store, so this bounds the ingest pipeline."""
    connect_timeout_s: float = Field(default=30.0, gt=0)
    """How long the first connection may take (retried with backoff) before SourceError."""
    reconnect_min_s: int = Field(default=1, ge=1)
    reconnect_max_s: int = Field(default=30, ge=1)


class OpcUaNode(_Section):
    """One subscribed OPC UA variable and the device/quantity/unit its values are."""

    node_id: str = Field(min_length=1)
    device: str = Field(min_length=1)
    quantity: str = Field(min_length=1)
    unit: str = Field(min_length=1, max_length=3)


class OpcUaSettings(_Section):
    """An OPC UA server to subscribe to."""

    url: str = Field(default="opc.tcp://127.0.0.1:4840", pattern=r"^opc\.tcp://\S+$")
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"
    ] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    """This client's application certificate (PEM or DER); its URI SAN is the client's URI."""
    private_key: Path | None = None
    server_certificate: Path | None = None
    """The server's certificate; without it, the one the server's endpoint offers is used."""
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    publishing_interval_ms: int = Field(default=100, ge=0)
    request_timeout_s: float = Field(default=4.0, gt=0)
    watchdog_s: float = Field(default=1.0, gt=0)
    """How often a quiet connection is probed (a dead server is noticed within about this)."""
    connect_timeout_s: float = Field(default=30.0, gt=0)
    """How long the first connection may take (retried with backoff) before SourceError."""
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Reconnect backoff: doubles from ``reconnect_min_s`` up to this cap."""
    nodes: tuple[OpcUaNode, ...] = ()
    """``ns=<index>;s=...`` or ``nsu=<namespace URI>;s=...`` (resolved after connecting)."""


class OracleSettings(_Section):
    quantities: dict[str, QuantitySpec] = Field(default_factory=dict)
    devices: dict[str, DeviceSpec] = Field(default_factory=dict)
    validation: ValidationSettings = ValidationSettings()
    mqtt: MqttSettings | None = None
    opcua: OpcUaSettings | None = None
    ingest_linger_ms: float = Field(default=5.0, ge=0, le=1000)
    """How long a batch waits for more readings after its first (0: it takes what has queued
    up and goes). Under load batches fill up while the previous one is stored; this only bounds
    the wait of a reading that arrives alone, which every rule firing downstream waits too."""
    ingest_workers: int = Field(default=1, ge=1, le=64)
    """Processes that validate and store readings: 1 stores in the node's own process; more
    spread the devices over that many worker processes (one per core beyond the first)."""


_PLC_NODE = "nsu=urn:qnode:coating-line;s="
"""The coating-line PLC simulator's namespace: its string NodeIds stay valid across restarts."""


class PlcSettings(_Section):
    """The line PLC the closed loop writes to over OPC UA: blade-pressure compensations with the
    RequestId/AckId handshake, and line stops with the StopRequestId/StopAckId handshake."""

    url: str = Field(default="opc.tcp://127.0.0.1:4840", pattern=r"^opc\.tcp://\S+$")
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"
    ] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    """This client's application certificate (PEM or DER); its URI SAN is the client's URI."""
    private_key: Path | None = None
    server_certificate: Path | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    request_timeout_s: float = Field(default=4.0, gt=0)
    watchdog_s: float = Field(default=1.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """How long an action waits for a (re)connection before it fails (retryably)."""
    reconnect_min_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    lines: tuple[str, ...] = ()
    """Lines this PLC drives; an action for another line is refused. Empty: any line."""
    parameters: tuple[str, ...] = ()
    """Parameters its setpoint node compensates; another is refused. Empty: any parameter."""
    setpoint_node: str = _PLC_NODE + "BladePressure.Setpoint"
    request_id_node: str = _PLC_NODE + "BladePressure.RequestId"
    ack_id_node: str = _PLC_NODE + "BladePressure.AckId"
    actual_node: str = _PLC_NODE + "BladePressure.Actual"
    stop_node: str = _PLC_NODE + "Line.Stop"
    stop_request_id_node: str = _PLC_NODE + "Line.StopRequestId"
    stop_ack_id_node: str = _PLC_NODE + "Line.StopAckId"
    running_node: str = _PLC_NODE + "Line.Running"
    ack_timeout_s: float = Field(default=5.0, gt=0)
    """How long a compensation waits for AckId to echo its request id."""
    stop_ack_timeout_s: float = Field(default=1.0, gt=0)
    ack_poll_s: float = Field(default=0.001, gt=0)
    """First pause between two reads of the acknowledgement; it doubles up to
    ``ack_poll_max_s`` (a quick PLC is seen at once, a slow one is not flooded)."""
    ack_poll_max_s: float = Field(default=0.05, gt=0)
    read_back_tolerance: float = Field(default=0.001, ge=0)
    """Largest |Actual - setpoint| (mm) accepted as applied."""


class MqttBrokerSettings(_Section):
    """A broker the closed loop publishes to (commands, notifications); a clean session."""

    url: str = Field(default="mqtt://127.0.0.1:1883", pattern=r"^mqtts?://\S+$")
    client_id: str = Field(default="qnode-notifications", min_length=1, max_length=100)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_s: int = Field(default=30, ge=5)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """How long an action waits for the broker before it fails (retryably)."""
    publish_timeout_s: float = Field(default=5.0, gt=0)
    """How long a QoS 1 publication may wait for the broker's PUBACK."""
    reconnect_min_s: int = Field(default=1, ge=1)
    reconnect_max_s: int = Field(default=30, ge=1)


class MqttCommandSettings(MqttBrokerSettings):
    """Line commands over MQTT (the alternative to OPC UA): a JSON command, a JSON ack."""

    client_id: str = Field(default="qnode-commands", min_length=1, max_length=100)
    command_topic: str = "qnode/lines/{line}/commands"
    ack_topic: str = "qnode/lines/{line}/acks"
    """``{line}`` is the command's line; subscribed to with ``+`` in its place."""
    ack_timeout_s: float = Field(default=5.0, gt=0)


class WebhookSettings(_Section):
    """An HTTP receiver of signed JSON POSTs (an ERP, a supplier's system)."""

    url: str = Field(pattern=r"^https?://\S+$")
    secret: str = Field(min_length=16, repr=False)
    """Shared HMAC-SHA256 key: the receiver checks ``signature_header`` over the raw body."""
    signature_header: str = Field(default="X-Qnode-Signature", min_length=1)
    timeout_s: float = Field(default=10.0, gt=0)
    ca_file: Path | None = None
    """CA bundle for an https receiver with a private CA; none: the system's."""


class TaskNotificationSettings(_Section):
    """How suppliers and task assignees hear of new tasks (the portal lists them either way)."""

    supplier_channel: Literal["webhook", "mqtt", "none"] = "none"
    improvement_channel: Literal["webhook", "mqtt", "none"] = "none"
    webhook: WebhookSettings | None = None
    """The default receiver (and the shared secret) for webhook notifications."""
    supplier_webhooks: dict[str, str] = Field(default_factory=dict)
    """Supplier (address) -> its own receiver URL, overriding ``webhook.url``."""
    mqtt: MqttBrokerSettings | None = None
    supplier_topic: str = "qnode/suppliers/{supplier}/tasks"
    assignee_topic: str = "qnode/tasks/{assignee}"

    @model_validator(mode="after")
    def _channels_configured(self) -> TaskNotificationSettings:
        for name, channel in (
            ("supplier_channel", self.supplier_channel),
            ("improvement_channel", self.improvement_channel),
        ):
            if channel == "webhook" and self.webhook is None:
                raise ValueError(f"{name} = 'webhook' needs a [control.tasks.webhook] section")
            if channel == "mqtt" and self.mqtt is None:
                raise ValueError(f"{name} = 'mqtt' needs a [control.tasks.mqtt] section")
        return self


class LineParameterSettings(_Section):
    """A line parameter the loop may compensate, as LineControl.sol knows it."""

    unit: str = Field(default="MMT", min_length=1, max_length=3)
    """UN/ECE Rec 20 code of the values (deltas, baseline)."""
    decimals: int = Field(default=3, ge=0, le=18)
    """On-chain fixed point: a delta of 0.05 mm with 3 decimals is 50."""
    baseline: float = 0.0
    min_delta: float
    max_delta: float
    max_abs_offset: float
    """The bounds enforced on-chain: per request, and in all from the baseline."""


class LineSettings(_Section):
    """One of this member's lines: its identity on-chain and how its PLC is reached."""

    uri: str = Field(min_length=1)
    """The line's GS1 Digital Link (GIAI) URI; its keccak256 is the line id on-chain."""
    actuator: Literal["opcua", "mqtt"] = "opcua"
    """Compensations go to the PLC over OPC UA (control.plc) or as MQTT commands."""
    parameters: dict[str, LineParameterSettings] = Field(default_factory=dict)


class ControlSettings(_Section):
    """The closed loop: rules, contract events, actions (PLC, ERP, supplier notifications)."""

    rules_file: Path | None = None
    """The YAML rule file (reloaded while the node runs); none: no rules fire."""
    event_poll_s: float = Field(default=0.05, gt=0)
    """How often the chain is asked for new contract events."""
    action_poll_s: float = Field(default=0.5, gt=0)
    """How often the action outbox is looked at when nothing woke it."""
    action_max_attempts: int = Field(default=5, ge=1)
    """Attempts of a failing action before it is recorded as failed."""
    plc: PlcSettings | None = None
    """The line PLC (OPC UA) for compensations and stops; none: those actions cannot run."""
    mqtt_command: MqttCommandSettings | None = None
    erp: WebhookSettings | None = None
    """The ERP's purchase-order webhook (pause/release on supplier holds)."""
    tasks: TaskNotificationSettings = TaskNotificationSettings()
    lines: dict[str, LineSettings] = Field(default_factory=dict)
    """This member's lines by name (the name rules use), e.g. ``[control.lines.coater]``."""
    confirmations: int | None = Field(default=None, ge=0)
    """Blocks an event must be buried under before it is acted on; default chain.confirmations."""


ApiTier = Literal["legitimate_interest", "authority"]


class ApiTokenSettings(_Section):
    """One bearer token of the passport API: only its SHA-256 is configured, never the token."""

    name: str = Field(min_length=1, max_length=100)
    """Who holds it (a repairer, a recycler, a market-surveillance authority), for the logs."""
    tier: ApiTier
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """``sha256(token)`` in lower-case hex (``qnode serve`` never sees the token itself)."""


class ApiRateLimitSettings(_Section):
    """Per-client token buckets (a client is its IP address)."""

    requests_per_s: float = Field(default=20.0, gt=0)
    burst: int = Field(default=60, ge=1)
    misses_per_min: float = Field(default=10.0, gt=0)
    """Lookups that found nothing (an unknown serial, lot, GTIN or record), per minute."""
    miss_burst: int = Field(default=20, ge=1)
    max_clients: int = Field(default=100_000, ge=100)
    """Buckets kept at most; the least recently seen are dropped first."""


class ApiProductSettings(_Section):
    """General product information of one GTIN (what the passport says about the product class)."""

    name: str = Field(min_length=1, max_length=200)
    category: str = ""
    model: str = ""
    description: str = ""
    attributes: dict[str, str | float | int] = Field(default_factory=dict)
    """Further public facts: chemistry, nominal capacity, mass, warranty, ..."""


class ApiSettings(_Section):
    """``qnode serve``: the verifier API (GS1 Digital Link resolver, passports, proof bundles)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    resolver_domain: str = Field(default="https://id.qnode.example", pattern=r"^https?://\S+$")
    """The domain this member's Digital Link URIs are written on (labels point at it)."""
    public_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """Where this API is reached from outside; none: links are relative to the request."""
    tokens: tuple[ApiTokenSettings, ...] = ()
    rate_limit: ApiRateLimitSettings = ApiRateLimitSettings()
    trust_forwarded_for: bool = False
    """Take the client's address from X-Forwarded-For (only behind a trusted reverse proxy)."""
    serial_pattern: str = r"[0-9A-HJKMNP-TV-Z]{16,20}"
    """Serials the resolver serves: by default 16-20 Crockford base-32 characters, i.e. at least
    80 random bits (see node/api/serials.py). Items with other serials are never served."""
    company_prefixes: tuple[str, ...] = ()
    """This member's GS1 company prefixes; empty: every GTIN not claimed in ``partners``."""
    partners: dict[str, str] = Field(default_factory=dict)
    """GS1 company prefix -> the consortium member (address) that owns those GTINs; their
    upstream parts are fetched from that member's node and verified against the chain."""
    peer_timeout_s: float = Field(default=3.0, gt=0)
    passport_ttl_s: float = Field(default=300.0, gt=0)
    """A built passport (with its chain checks) is reused this long unless its data changed."""
    refresh_interval_s: float = Field(default=0.5, ge=0)
    """How often the store is asked for new records, anchors and attestations."""
    products: dict[str, ApiProductSettings] = Field(default_factory=dict)
    """GTIN (14 digits) -> general product information."""
    portal_token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The supplier portal's credential (``/portal``), as ``sha256(token)`` in lower-case hex
    (like ``[[api.tokens]]``); none: this node serves no portal."""
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0, le=7 * 86400.0)
    """How long an explorer or portal login (its cookie) lasts."""
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """The largest form the pages accept: a bundle pasted or uploaded into the proof checker,
    a discipline's report in the portal."""

    @field_validator("partners")
    @classmethod
    def _partner_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, address in value.items():
            if not prefix.isdigit() or not 4 <= len(prefix) <= 12:
                raise ValueError(f"company prefix {prefix!r} must be 4 to 12 digits")
            if not re.fullmatch(ADDRESS_PATTERN, address):
                raise ValueError(f"partner {prefix}: {address!r} is not an address")
        return value

    @field_validator("serial_pattern")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class Settings(BaseSettings):
    """Everything a node needs to know, resolved against ``base_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="QNODE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    base_dir: Path = Path(".")
    data_dir: Path = Path("data")
    member: MemberSettings
    chain: ChainSettings = ChainSettings()
    keys: KeySettings = KeySettings()
    contracts: ContractSettings = ContractSettings()
    store: StoreSettings = StoreSettings()
    anchoring: AnchoringSettings = AnchoringSettings()
    privacy: PrivacySettings = PrivacySettings()
    oracles: OracleSettings = OracleSettings()
    control: ControlSettings = ControlSettings()
    api: ApiSettings = ApiSettings()
    record_types: dict[str, dict[str, str]] = Field(
        default_factory=lambda: dict(DEFAULT_RECORD_TYPES)
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init values; the environment must win over it.
        return (env_settings, init_settings)

    def path(self, value: Path) -> Path:
        """``value`` made absolute against the config file's directory."""
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    @property
    def keystore_path(self) -> Path:
        return self.path(self.keys.keystore)

    @property
    def oracle_dir(self) -> Path:
        return self.path(self.keys.oracle_dir)

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_path / 'store.db'}"

    @property
    def blob_path(self) -> Path:
        return (
            self.store.blob_dir
            if self.store.blob_dir.is_absolute()
            else (self.data_path / self.store.blob_dir)
        )


def load_settings(config_file: Path) -> Settings:
    """Read ``config_file`` and the environment; raise ConfigError naming the first bad field."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {config_file} not found (run `qnode init`)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file}: malformed TOML: {exc}") from exc
    values.setdefault("base_dir", str(config_file.resolve().parent))
    return settings_from_values(values, origin=str(config_file))


def settings_from_values(values: dict[str, Any], origin: str = "settings") -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'section.field: message'; the rest counted."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = "missing required field" if first["type"] == "missing" else first["msg"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {message}{more}"


def write_config(config_file: Path, values: dict[str, Any]) -> None:
    """Write a config file (used by ``qnode init``); refuses to overwrite."""
    if config_file.exists():
        raise ConfigError(f"{config_file} already exists; refusing to overwrite it")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(tomli_w.dumps(values), encoding="utf-8")
