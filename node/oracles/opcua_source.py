"""OPC UA source: one subscription to the configured NodeIds; each data change one device message.

Every notification becomes a :class:`Reading` whose payload is a v1 device message
(docs/device-messages.md) with one point: the node's configured device, quantity and unit, the
value, ``seq`` = the value's SourceTimestamp in microseconds since the epoch (ServerTimestamp when
the server sent none) and ``ts`` = that timestamp in RFC 3339. A value the server sends again
after a re-subscription keeps its timestamp, hence its ``seq``, so the validator drops it as a
duplicate instead of storing it twice.

The status code's class becomes the reading's status (a Bad value still produces a reading, so it
is quarantined with its reason rather than silently lost). When the server goes away or the session
dies the source reconnects with capped exponential backoff, subscribes again and keeps yielding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from node.errors import RecordError, SourceError
from node.oracles.messages import encode_message
from node.oracles.opcua_security import configure_security, without_credentials
from node.oracles.source import Reading, SourceStatus
from node.settings import OpcUaNode, OpcUaSettings

_LOG = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MONITORED_QUEUE_SIZE = 100
"""Values the server keeps per node between two publishes, so fast sampling loses nothing."""

_CONFIGURATION_STATUSES = ("BadSecurity", "BadCertificate", "BadIdentityToken", "BadNodeId")
"""Status-name prefixes that retrying cannot fix: the configuration (or the server's) must."""
_CONFIGURATION_STATUS_NAMES = frozenset({"BadUserAccessDenied", "BadApplicationSignatureInvalid"})


@dataclass(frozen=True)
class _Monitored:
    """A configured node as the handler needs it."""

    config: OpcUaNode
    source: str


class OpcUaSource:
    """``async for reading in OpcUaSource(settings)``: iterating connects; ``close()`` ends it.

    A source is iterated once. Configuration problems (unknown NodeId, rejected certificate or
    credentials, missing key files) and a first connection failing for ``connect_timeout_s`` end
    the iteration with :class:`SourceError`; once connected, a lost connection is retried for
    ever, with backoff from ``reconnect_min_s`` doubling up to ``reconnect_max_s``.
    ``base_dir`` resolves relative certificate and key paths (the config file's directory).
    """

    def __init__(self, settings: OpcUaSettings, *, base_dir: Path | None = None) -> None:
        if not settings.nodes:
            raise SourceError("no OPC UA nodes configured (oracles.opcua.nodes is empty)")
        self._settings = settings
        self._base_dir = base_dir
        self._endpoint = without_credentials(settings.url)
        self._configured = {node.node_id: _parse_node_id(node.node_id) for node in settings.nodes}
        self._queue: asyncio.Queue[Reading | SourceError | None] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._connections = 0

    @property
    def endpoint(self) -> str:
        """The server's URL without credentials."""
        return self._endpoint

    @property
    def connections(self) -> int:
        """How many times a subscription was set up (1 + the number of reconnects)."""
        return self._connections

    def __aiter__(self) -> AsyncIterator[Reading]:
        if self._runner is not None or self._closed:
            raise SourceError(f"OPC UA source {self._endpoint} can be iterated only once")
        self._runner = asyncio.create_task(self._run(), name=f"opcua-source {self._endpoint}")
        self._runner.add_done_callback(self._runner_done)
        return self._readings()

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        if not runner.cancelled() and (exc := runner.exception()) is not None:
            error = SourceError(f"OPC UA source {self._endpoint} failed: {_describe(exc)}")
            error.__cause__ = exc
            self._queue.put_nowait(error)

    async def close(self) -> None:
        """Disconnect and end the iteration; idempotent."""
        self._closed = True
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
        self._queue.put_nowait(None)

    async def _readings(self) -> AsyncIterator[Reading]:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                if isinstance(item, SourceError):
                    raise item
                yield item
        finally:
            await self.close()

    async def _run(self) -> None:
        """Connect, subscribe, wait for the connection to die, back off, again; until closed."""
        settings = self._settings
        delay = settings.reconnect_min_s
        give_up_at = asyncio.get_running_loop().time() + settings.connect_timeout_s
        while True:
            client = self._new_client()
            lost = asyncio.Event()
            try:
                try:
                    await self._connect_and_subscribe(client, lost)
                except Exception as exc:
                    error = self._configuration_error(exc) or self._unreachable(exc, give_up_at)
                    if error is not None:
                        self._queue.put_nowait(error)
                        return
                    _LOG.warning(
                        "OPC UA %s: cannot connect (%s); retrying in %.1f s",
                        self._endpoint,
                        _describe(exc),
                        delay,
                    )
                else:
                    self._connections += 1
                    delay, give_up_at = settings.reconnect_min_s, math.inf
                    _LOG.info(
                        "OPC UA %s: subscribed to %d nodes", self._endpoint, len(self._configured)
                    )
                    await lost.wait()
                    _LOG.warning(
                        "OPC UA %s: connection lost; reconnecting in %.1f s", self._endpoint, delay
                    )
            finally:
                await self._disconnect(client)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.reconnect_max_s)

    def _unreachable(self, exc: Exception, give_up_at: float) -> SourceError | None:
        """Once the first connection has taken longer than ``connect_timeout_s``: the error."""
        if asyncio.get_running_loop().time() < give_up_at:
            return None
        return SourceError(
            f"OPC UA server {self._endpoint} not reachable within "
            f"{self._settings.connect_timeout_s:g} s: {_describe(exc)}"
        )

    def _new_client(self) -> Client:
        settings = self._settings
        client = Client(
            settings.url, timeout=settings.request_timeout_s, watchdog_intervall=settings.watchdog_s
        )
        if settings.username is not None:
            client.set_user(settings.username)
        if settings.password is not None:
            client.set_password(settings.password)
        return client

    async def _connect_and_subscribe(self, client: Client, lost: asyncio.Event) -> None:
        await self._configure_security(client)

        async def connection_lost(exc: Exception) -> None:
            _LOG.info("OPC UA %s: %s", self._endpoint, _describe(exc))
            lost.set()

        client.connection_lost_callback = connection_lost
        await client.connect()
        node_ids = await self._resolve_node_ids(client)
        monitored = {
            node_ids[node.node_id]: _Monitored(node, f"{self._endpoint}#{node.node_id}")
            for node in self._settings.nodes
        }
        handler = _NotificationHandler(monitored, self._queue, lost)
        subscription = await client.create_subscription(
            self._settings.publishing_interval_ms, handler
        )
        nodes = [client.get_node(node_id) for node_id in monitored]
        results = await subscription.subscribe_data_change(
            nodes, queuesize=_MONITORED_QUEUE_SIZE, sampling_interval=ua.Double(0.0)
        )
        refused = [
            f"{config.config.node_id} ({result.name})"
            for config, result in zip(monitored.values(), results, strict=True)
            if isinstance(result, ua.StatusCode)
        ]
        if refused:
            raise SourceError(
                f"OPC UA server {self._endpoint} cannot monitor configured node(s): "
                + ", ".join(refused)
            )

    async def _configure_security(self, client: Client) -> None:
        await configure_security(
            client, self._settings, "oracles.opcua", SourceError, self._base_dir
        )

    async def _resolve_node_ids(self, client: Client) -> dict[str, ua.NodeId]:
        """Configured strings -> NodeIds of this server (``nsu=`` namespace URIs looked up)."""
        resolved: dict[str, ua.NodeId] = {}
        for text, node_id in self._configured.items():
            if isinstance(node_id, ua.ExpandedNodeId) and node_id.NamespaceUri:
                try:
                    index = await client.get_namespace_index(node_id.NamespaceUri)
                except ValueError as exc:
                    raise SourceError(
                        f"OPC UA server {self._endpoint} has no namespace {node_id.NamespaceUri} "
                        f"(configured node {text})"
                    ) from exc
                resolved[text] = ua.NodeId(node_id.Identifier, ua.Int16(index), node_id.NodeIdType)
            else:
                resolved[text] = node_id
        return resolved

    def _configuration_error(self, exc: Exception) -> SourceError | None:
        """The SourceError ending the iteration, or None when a retry may succeed."""
        if isinstance(exc, SourceError):
            return exc
        if isinstance(exc, UaStatusCodeError):
            status = ua.StatusCode(ua.UInt32(exc.code))
            if status.name.startswith(_CONFIGURATION_STATUSES) or (
                status.name in _CONFIGURATION_STATUS_NAMES
            ):
                return SourceError(
                    f"OPC UA server {self._endpoint} refused the connection: {status.name} "
                    f"({status.doc})"
                )
        elif isinstance(exc, UaError) and str(exc).startswith("No matching endpoints"):
            # asyncua's endpoint lookup; retrying will not make such an endpoint appear.
            settings = self._settings
            return SourceError(
                f"OPC UA server {self._endpoint} offers no endpoint with security policy "
                f"{settings.security_policy} and mode {settings.security_mode}"
            )
        return None

    async def _disconnect(self, client: Client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), self._settings.request_timeout_s)
        except Exception as exc:
            # The server may be gone already; the session and socket are dropped either way.
            _LOG.debug("OPC UA %s: disconnect: %s", self._endpoint, _describe(exc))


class _NotificationHandler:
    """asyncua's subscription handler: every data change becomes a Reading in the queue.

    asyncua calls it from its own tasks; the queue hands readings to the iterator, which may
    fall behind for a while without blocking asyncua's publish loop.
    """

    def __init__(
        self,
        monitored: Mapping[ua.NodeId, _Monitored],
        queue: asyncio.Queue[Reading | SourceError | None],
        lost: asyncio.Event,
    ) -> None:
        self._monitored = monitored
        self._queue = queue
        self._lost = lost

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        monitored = self._monitored.get(node.nodeid)
        if monitored is None or data.monitored_item.Value is None:
            return
        self._queue.put_nowait(reading_from_data_value(monitored, data.monitored_item.Value))

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        # BadTimeout (subscription expired on the server), BadShutdown (server going down).
        if status.Status is not None and not status.Status.is_good():
            _LOG.info("OPC UA subscription status %s", status.Status.name)
            self._lost.set()


def reading_from_data_value(monitored: _Monitored, value: ua.DataValue) -> Reading:
    """One data change as a Reading carrying a v1 device message."""
    received_at_us = time.time_ns() // 1000
    timestamp = _timestamp(value) or datetime.fromtimestamp(received_at_us / 1e6, UTC)
    status = value.StatusCode or ua.StatusCode()
    config = monitored.config
    point = {"q": config.quantity, "v": _json_value(value.Value), "u": config.unit}
    message = {
        "v": 1,
        "device": config.device,
        "seq": (timestamp - _EPOCH) // _MICROSECOND,
        "ts": timestamp.isoformat(timespec="microseconds"),
        "points": [point],
    }
    return Reading(
        source=monitored.source,
        payload=_encode(message),
        received_at_us=received_at_us,
        device_id=config.device,
        status=_source_status(status),
        status_detail=status.name,
    )


def _timestamp(value: ua.DataValue) -> datetime | None:
    for stamp in (value.SourceTimestamp, value.ServerTimestamp):
        if stamp is None:
            continue
        aware = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
        if aware > _EPOCH:  # OPC UA's "no time" is 1601-01-01
            return aware.astimezone(UTC)
    return None


def _json_value(variant: ua.Variant | None) -> Any:
    """The Variant's value as JSON data: numbers as they are, nothing as null, else text."""
    value = None if variant is None else variant.Value
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, int | float):
        return value
    return str(value)


def _encode(message: dict[str, Any]) -> bytes:
    """The message's payload; a NaN or infinite value is kept as the token JSON lacks (``NaN``,
    ``Infinity``) so that the validator sees, and quarantines, exactly what the PLC sent."""
    try:
        return encode_message(message)
    except RecordError:
        value = message["points"][0]["v"]
        if not (isinstance(value, float) and not math.isfinite(value)):
            raise
        text = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def _source_status(status: ua.StatusCode) -> SourceStatus:
    if status.is_bad():
        return SourceStatus.BAD
    if status.is_uncertain():
        return SourceStatus.UNCERTAIN
    return SourceStatus.GOOD


def _parse_node_id(text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except (UaError, ValueError) as exc:
        raise SourceError(
            f"oracles.opcua.nodes: malformed NodeId {text!r} (use e.g. ns=2;s=Gauge1.Thickness)"
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(ua.UInt32(exc.code)).name
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
