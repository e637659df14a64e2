"""A persistent OPC UA session to a line PLC, for the closed loop's writes and read-backs.

Only this module imports asyncua on the control side. :class:`PlcClient` names the PLC's variables
by role (:class:`PlcPoint`) and reads or writes them in one request each. The connection is
opened on first use and kept: a keeper task reconnects with capped exponential backoff when the
session is lost (the asyncua watchdog noticing a dead server, or a request failing on the
transport), and ``nsu=`` NodeIds are resolved again on every new session.

Failures are :class:`ActionError` s: not reachable within ``connect_timeout_s`` or a transport
failure are retryable; a configuration the PLC refuses (security, credentials, unknown namespace or
node, a wrong type, a read-only node) is not, since retrying cannot cure it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from node.errors import ActionError
from node.oracles.opcua_security import configure_security, without_credentials
from node.settings import PlcSettings

log = logging.getLogger(__name__)


class PlcPoint(StrEnum):
    """A PLC variable by its role in the handshakes."""

    SETPOINT = "setpoint"
    REQUEST_ID = "request_id"
    ACK_ID = "ack_id"
    ACTUAL = "actual"
    STOP = "stop"
    STOP_REQUEST_ID = "stop_request_id"
    STOP_ACK_ID = "stop_ack_id"
    RUNNING = "running"


VARIANT_TYPES: Mapping[PlcPoint, ua.VariantType] = {
    PlcPoint.SETPOINT: ua.VariantType.Double,
    PlcPoint.REQUEST_ID: ua.VariantType.UInt32,
    PlcPoint.ACK_ID: ua.VariantType.UInt32,
    PlcPoint.ACTUAL: ua.VariantType.Double,
    PlcPoint.STOP: ua.VariantType.Boolean,
    PlcPoint.STOP_REQUEST_ID: ua.VariantType.UInt32,
    PlcPoint.STOP_ACK_ID: ua.VariantType.UInt32,
    PlcPoint.RUNNING: ua.VariantType.Boolean,
}
UINT32_MAX = 2**32 - 1

_CONFIGURATION_STATUSES = (
    "BadSecurity",
    "BadCertificate",
    "BadIdentityToken",
    "BadNodeId",
    "BadUserAccessDenied",
    "BadApplicationSignatureInvalid",
    "BadTypeMismatch",
    "BadNotWritable",
    "BadNotReadable",
    "BadWriteNotSupported",
    "BadOutOfRange",
    "BadAttributeIdInvalid",
)
"""Status-name prefixes that retrying cannot fix: the configuration (or the PLC's) must."""


def _settings_point(settings: PlcSettings, point: PlcPoint) -> str:
    node_id: str = getattr(settings, f"{point.value}_node")
    return node_id


@dataclass(frozen=True)
class _Session:
    client: Client
    nodes: Mapping[PlcPoint, Node]
    lost: asyncio.Event


class PlcClient:
    """``async with PlcClient(settings) as plc:`` (or ``close()``); ``await plc.read(...)``.

    ``base_dir`` resolves relative certificate and key paths (the config file's directory).
    One client serves the event loop it is first used in.
    """

    def __init__(self, settings: PlcSettings, *, base_dir: Path | None = None) -> None:
        self.settings = settings
        self.endpoint = without_credentials(settings.url)
        self._base_dir = base_dir
        self._node_ids = {point: _parse_node_id(settings, point) for point in PlcPoint}
        self._session: _Session | None = None
        self._settled: asyncio.Event | None = None
        self._wanted: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._fatal: ActionError | None = None
        self._last_error = "not connected yet"
        self._closed = False
        self.connections = 0
        """Sessions opened so far (1 + the number of reconnects)."""
        self.compensation_lock = asyncio.Lock()
        self.stop_lock = asyncio.Lock()
        """One handshake of each kind at a time: two would overwrite each other's request id
        (the kinds use different variables, so a stop never waits for a compensation)."""

    async def __aenter__(self) -> PlcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Wait for a session (opening one if needed); ActionError if none within the timeout."""
        await self._current()

    async def close(self) -> None:
        """Disconnect and stop reconnecting; idempotent."""
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None and not keeper.done():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def read(self, *points: PlcPoint) -> tuple[Any, ...]:
        """The current values of ``points``, read in one request; each must be Good."""
        session = await self._current()
        nodes = [session.nodes[point] for point in points]
        try:
            values = await session.client.read_attributes(nodes)
        except Exception as exc:
            raise self._failed(session, exc, f"read {', '.join(points)}") from exc
        out = []
        for point, value in zip(points, values, strict=True):
            self._check_status(value.StatusCode, f"read {point}")
            out.append(None if value.Value is None else value.Value.Value)
        return tuple(out)

    async def write(self, point: PlcPoint, value: float | int | bool) -> None:
        """Write ``value`` as the point's type, with no timestamps (PLCs may refuse client
        timestamps); the PLC stamps it."""
        session = await self._current()
        data = ua.DataValue(ua.Variant(value, VARIANT_TYPES[point]))
        try:
            (status,) = await session.client.write_values(
                [session.nodes[point]], [data], raise_on_partial_error=False
            )
        except Exception as exc:
            raise self._failed(session, exc, f"write {point}") from exc
        self._check_status(status, f"write {point} = {value!r}")

    # -- failures -------------------------------------------------------------------------------

    def _failed(self, session: _Session, exc: Exception, what: str) -> ActionError:
        if isinstance(exc, UaStatusCodeError):
            status = ua.StatusCode(ua.UInt32(exc.code))
            if status.name.startswith(_CONFIGURATION_STATUSES):
                return ActionError(
                    f"PLC {self.endpoint} refused to {what}: {status.name}", retryable=False
                )
        self._lose(session)  # the keeper reconnects; the runner retries the (idempotent) action
        return ActionError(f"PLC {self.endpoint}: {what} failed: {_describe(exc)}")

    def _check_status(self, status: ua.StatusCode | None, what: str) -> None:
        if status is None or status.is_good():
            return
        retryable = not status.name.startswith(_CONFIGURATION_STATUSES)
        raise ActionError(f"PLC {self.endpoint}: {what}: {status.name}", retryable=retryable)

    # -- the session and its keeper -------------------------------------------------------------

    def _lose(self, session: _Session) -> None:
        """Forget ``session`` at once (callers wait for the next one) and wake its keeper."""
        session.lost.set()
        if self._session is session:
            self._session = None
            if self._settled is not None:
                self._settled.clear()

    async def _current(self) -> _Session:
        if self._closed:
            raise ActionError(f"PLC client for {self.endpoint} is closed", retryable=False)
        if self._fatal is not None:
            raise self._fatal
        if self._settled is None or self._wanted is None:
            self._settled, self._wanted = asyncio.Event(), asyncio.Event()
        if self._session is None:
            self._wanted.set()
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name=f"plc {self.endpoint}")
        try:
            await asyncio.wait_for(self._settled.wait(), self.settings.connect_timeout_s)
        except TimeoutError:
            raise ActionError(
                f"PLC {self.endpoint} not reachable within {self.settings.connect_timeout_s:g} s: "
                f"{self._last_error}"
            ) from None
        if self._fatal is not None:
            raise self._fatal
        session = self._session
        if session is None:  # lost between the keeper's signal and now
            raise ActionError(f"PLC {self.endpoint}: connection lost: {self._last_error}")
        return session

    async def _keep(self) -> None:
        """Open a session, wait until it is lost, back off, again; until closed or refused.

        The backoff doubles up to ``reconnect_max_s`` while nobody needs the PLC; an action
        waiting for it cuts the wait to ``reconnect_min_s`` (the runner bounds how often).
        """
        settings = self.settings
        assert self._settled is not None and self._wanted is not None
        delay = settings.reconnect_min_s
        while True:
            self._wanted.clear()
            client = self._new_client()
            lost = asyncio.Event()
            try:
                try:
                    session = await self._open(client, lost)
                except Exception as exc:
                    fatal = self._configuration_error(exc)
                    if fatal is not None:
                        self._fatal = fatal
                        self._settled.set()
                        return
                    self._last_error = _describe(exc)
                    log.warning(
                        "PLC %s: cannot connect (%s); retrying in %.1f s",
                        self.endpoint,
                        self._last_error,
                        delay,
                    )
                else:
                    self._session = session
                    self.connections += 1
                    delay = settings.reconnect_min_s
                    self._settled.set()
                    log.info("PLC %s: session open", self.endpoint)
                    await lost.wait()
                    self._last_error = "connection lost"
                    log.warning("PLC %s: connection lost; reconnecting", self.endpoint)
            finally:
                self._session = None
                self._settled.clear()
                await self._disconnect(client)
            await asyncio.sleep(settings.reconnect_min_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), delay - settings.reconnect_min_s)
            delay = min(delay * 2, settings.reconnect_max_s)

    def _new_client(self) -> Client:
        settings = self.settings
        client = Client(
            settings.url, timeout=settings.request_timeout_s, watchdog_intervall=settings.watchdog_s
        )
        if settings.username is not None:
            client.set_user(settings.username)
        if settings.password is not None:
            client.set_password(settings.password)
        return client

    async def _open(self, client: Client, lost: asyncio.Event) -> _Session:
        await self._configure_security(client)

        nodes: dict[PlcPoint, Node] = {}  # filled once connected
        session = _Session(client, nodes, lost)

        async def connection_lost(exc: Exception) -> None:
            log.info("PLC %s: %s", self.endpoint, _describe(exc))
            self._lose(session)

        client.connection_lost_callback = connection_lost
        await client.connect()
        namespaces: list[str] = await client.nodes.namespace_array.read_value()
        for point, node_id in self._node_ids.items():
            nodes[point] = client.get_node(self._resolve(namespaces, point, node_id))
        return session

    def _resolve(self, namespaces: list[str], point: PlcPoint, node_id: ua.NodeId) -> ua.NodeId:
        """``nsu=`` NodeIds get this server's index of their namespace URI."""
        if not (isinstance(node_id, ua.ExpandedNodeId) and node_id.NamespaceUri):
            return node_id
        if node_id.NamespaceUri not in namespaces:
            raise ActionError(
                f"PLC {self.endpoint} has no namespace {node_id.NamespaceUri} "
                f"(control.plc.{point.value}_node)",
                retryable=False,
            )
        index = namespaces.index(node_id.NamespaceUri)
        return ua.NodeId(node_id.Identifier, ua.Int16(index), node_id.NodeIdType)

    async def _configure_security(self, client: Client) -> None:
        def permanent(message: str) -> ActionError:
            return ActionError(message, retryable=False)

        await configure_security(client, self.settings, "control.plc", permanent, self._base_dir)

    def _configuration_error(self, exc: Exception) -> ActionError | None:
        """The permanent error a connection attempt ended with, or None when a retry may do."""
        if isinstance(exc, ActionError) and not exc.retryable:
            return exc
        if isinstance(exc, UaStatusCodeError):
            status = ua.StatusCode(ua.UInt32(exc.code))
            if status.name.startswith(_CONFIGURATION_STATUSES):
                return ActionError(
                    f"PLC {self.endpoint} refused the connection: {status.name} ({status.doc})",
                    retryable=False,
                )
        elif isinstance(exc, UaError) and str(exc).startswith("No matching endpoints"):
            settings = self.settings
            return ActionError(
                f"PLC {self.endpoint} offers no endpoint with security policy "
                f"{settings.security_policy} and mode {settings.security_mode}",
                retryable=False,
            )
        return None

    async def _disconnect(self, client: Client) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), self.settings.request_timeout_s)
        except Exception as exc:
            # The PLC may be gone already; the session and socket are dropped either way.
            log.debug("PLC %s: disconnect: %s", self.endpoint, _describe(exc))


def _parse_node_id(settings: PlcSettings, point: PlcPoint) -> ua.NodeId:
    text = _settings_point(settings, point)
    try:
        return ua.NodeId.from_string(text)
    except (UaError, ValueError) as exc:
        raise ActionError(
            f"control.plc.{point.value}_node: malformed NodeId {text!r} "
            "(use e.g. nsu=urn:qnode:coating-line;s=BladePressure.Setpoint)",
            retryable=False,
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(ua.UInt32(exc.code)).name
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
