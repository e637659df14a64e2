"""MQTT source: QoS 1 subscriptions in a persistent session, acknowledged only once durable.

paho-mqtt's network loop runs in its own thread. Each message becomes a :class:`Reading` there and
is appended to a deque; one ``call_soon_threadsafe`` wakes the asyncio side per burst, not one per
message (the handoff has to keep up with >= 10,000 messages/s).

Delivery guarantee: the PUBACK for a message is sent only when the pipeline calls
``reading.ack()`` (after the reading is stored or quarantined). A crash before that leaves the
message unacknowledged in the broker's session, which redelivers it to the next connection with the
same client id; the validator turns the second copy into a ``duplicate``. An ack for a message that
arrived on an earlier connection is dropped: the broker resends that message on the new connection
anyway, and a packet id from the old connection may already name another message on the new one.

Errors: the first connection is retried with backoff for ``connect_timeout_s``, then iteration
raises :class:`SourceError` ("cannot reach MQTT broker ..."). A refusal that retrying cannot cure
(bad credentials, not authorised, client id rejected, banned, TLS certificate rejected, a refused
subscription) raises SourceError at once. Once connected, a lost connection is retried forever with
capped exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from node.errors import SourceError
from node.oracles.source import Reading
from node.settings import MqttSettings

log = logging.getLogger(__name__)

QOS = 1
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
FATAL_CONNACK_CODES = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
"""Unsupported protocol, client id rejected, bad user/password, not authorised, banned, bad auth
method: the broker will refuse every retry, so fail instead of looping."""
SHARED_PREFIX = re.compile(r"^\$share/[^/]+/")
LEVEL_REFERENCE = re.compile(r"\{(\d+)\}")
ROUTE_CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class BrokerAddress:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SourceError(f"bad MQTT broker URL {url!r}: {exc}") from exc
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise SourceError(f"bad MQTT broker URL {url!r}: expected mqtt[s]://host[:port]")
        return cls(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


@dataclass(frozen=True)
class TopicRoute:
    """Where a concrete topic's messages go: the reading's source label and device id."""

    source: str
    device_id: str | None


class TopicMap:
    """Topic filter -> device id template (``{n}`` = n-th level of the topic, or a fixed id)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self._rules = [(SHARED_PREFIX.sub("", f), template) for f, template in mapping.items()]

    def device_id(self, topic: str) -> str | None:
        for topic_filter, template in self._rules:
            if paho.topic_matches_sub(topic_filter, topic):
                return _fill(template, topic.split("/"))
        return None


def _fill(template: str, levels: list[str]) -> str | None:
    missing = False

    def level(match: re.Match[str]) -> str:
        nonlocal missing
        index = int(match.group(1))
        if index >= len(levels) or not levels[index]:
            missing = True
            return ""
        return levels[index]

    device_id = LEVEL_REFERENCE.sub(level, template)
    return None if missing or not device_id else device_id


class MqttSource:
    """``async for reading in MqttSource(settings)``; ``await source.close()`` to stop.

    ``base_dir`` resolves relative TLS file paths (the config file's directory).
    """

    def __init__(self, settings: MqttSettings, *, base_dir: Path | None = None) -> None:
        self.settings = settings
        self.address = BrokerAddress.parse(settings.url)
        self._base_dir = base_dir
        self._topics = TopicMap(settings.topics)
        self._routes: dict[str, TopicRoute] = {}
        self._pending: deque[Reading] = deque()
        self._wake_scheduled = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._generation = 0
        self._subscriptions: dict[int, list[str]] = {}
        self._fatal: SourceError | None = None
        self._started = False
        self._closed = False
        self._start_lock = asyncio.Lock()
        self._subscribed = threading.Event()
        self.connections = 0
        """Successful connections so far (1 + reconnects)."""

    # -- the Source seam ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Reading]:
        return self

    async def __anext__(self) -> Reading:
        if not self._started:
            await self._start()
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._fatal is not None:
                raise self._fatal
            if self._closed:
                raise StopAsyncIteration
            self._wake_scheduled = False
            self._wake.clear()
            if self._pending or self._fatal is not None or self._closed:
                continue
            await self._wake.wait()

    async def connect(self, timeout: float = 30.0) -> None:
        """Connect and wait until the broker confirmed the subscriptions (iterating does this
        implicitly; call it to know that messages published from now on will arrive)."""
        if not self._started:
            await self._start()
        deadline = time.monotonic() + timeout
        while not self._subscribed.is_set():
            if self._fatal is not None:
                raise self._fatal
            if time.monotonic() > deadline:
                raise SourceError(
                    f"MQTT broker {self.address.label} did not confirm the subscriptions "
                    f"within {timeout:g} s"
                )
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Disconnect, keeping the broker session: unacknowledged messages come back next time."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        client = self._client
        if client is not None:
            await asyncio.to_thread(_stop, client)

    # -- start and connection -------------------------------------------------------------------

    async def _start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise StopAsyncIteration
            self._loop = asyncio.get_running_loop()
            self._client = self._build_client()
            self._started = True
            await asyncio.to_thread(self._first_connect, self._client)

    def _build_client(self) -> paho.Client:
        settings = self.settings
        v5 = settings.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            manual_ack=True,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if self.address.tls:
            self._configure_tls(client)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _configure_tls(self, client: paho.Client) -> None:
        settings = self.settings
        try:
            context = ssl.create_default_context(cafile=self._path(settings.tls_ca))
            if settings.tls_cert is not None:
                context.load_cert_chain(
                    str(self._path(settings.tls_cert)), self._path(settings.tls_key)
                )
        except (OSError, ValueError) as exc:
            raise SourceError(f"MQTT TLS settings for {self.address.label}: {exc}") from exc
        context.sslsocket_class = _ClosingSSLSocket
        client.tls_set_context(context)

    def _path(self, value: Path | None) -> str | None:
        if value is None:
            return None
        if self._base_dir is not None and not value.is_absolute():
            value = self._base_dir / value
        return str(value)

    def _connect_properties(self) -> Properties | None:
        if self.settings.protocol != "5":
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        return properties

    def _first_connect(self, client: paho.Client) -> None:
        """Open the socket (retrying with backoff until connect_timeout_s), start paho's loop."""
        settings = self.settings
        deadline = time.monotonic() + settings.connect_timeout_s
        delay = float(settings.reconnect_min_s)
        while True:
            try:
                if settings.protocol == "5":
                    client.connect(
                        self.address.host,
                        self.address.port,
                        keepalive=settings.keepalive_s,
                        clean_start=False,
                        properties=self._connect_properties(),
                    )
                else:  # 3.1.1: clean_session=False, set on the client
                    client.connect(
                        self.address.host, self.address.port, keepalive=settings.keepalive_s
                    )
                break
            except ssl.SSLCertVerificationError as exc:
                raise SourceError(
                    f"MQTT broker {self.address.label}: TLS certificate rejected: "
                    f"{exc.verify_message}"
                ) from exc
            except OSError as exc:
                if self._closed or time.monotonic() + delay > deadline:
                    raise SourceError(
                        f"cannot reach MQTT broker {self.address.label}: "
                        f"{exc.strerror or exc} (tried for {settings.connect_timeout_s:g} s)"
                    ) from exc
                log.warning("MQTT broker %s unreachable (%s), retrying", self.address.label, exc)
                time.sleep(delay)
                delay = min(delay * 2, settings.reconnect_max_s)
        client.loop_start()

    # -- paho's thread --------------------------------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            if reason.value in FATAL_CONNACK_CODES:
                self._fail(
                    f"MQTT broker {self.address.label} refused the connection: "
                    f"{str(reason).lower()}",
                )
            else:
                log.warning("MQTT broker %s refused: %s; retrying", self.address.label, reason)
            return
        self._generation += 1
        self.connections += 1
        if self.connections > 1:
            log.info(
                "reconnected to MQTT broker %s (session present: %s)",
                self.address.label,
                flags.session_present,
            )
        filters = list(self.settings.topics)
        if self.settings.protocol == "5":
            _, mid = client.subscribe([(f, SubscribeOptions(qos=QOS)) for f in filters])
        else:
            _, mid = client.subscribe([(f, QOS) for f in filters])
        if mid is not None:
            self._subscriptions[mid] = filters

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        filters = self._subscriptions.pop(mid, [])
        for topic_filter, reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                self._fail(
                    f"MQTT broker {self.address.label} refused the subscription to "
                    f"{topic_filter!r}: {str(reason).lower()}"
                )
                return
            if reason.value < QOS:
                log.warning(
                    "MQTT broker %s granted only QoS 0 for %r: messages may be lost",
                    self.address.label,
                    topic_filter,
                )
        self._subscribed.set()

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if not self._closed and self._fatal is None:
            log.warning(
                "lost the MQTT broker %s (%s); reconnecting with backoff",
                self.address.label,
                reason,
            )

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        topic = message.topic
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        reading = Reading(
            route.source,
            bytes(message.payload),  # paho's payload is bytes already: no copy
            time.time_ns() // 1000,
            route.device_id,
            ack=partial(self._ack, self._generation, message.mid),
        )
        self._pending.append(reading)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self._notify()

    def _route(self, topic: str) -> TopicRoute:
        if len(self._routes) >= ROUTE_CACHE_LIMIT:
            self._routes.clear()
        route = TopicRoute(
            f"{self.address.scheme}://{self.address.label}/{topic}", self._topics.device_id(topic)
        )
        self._routes[topic] = route
        return route

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check
                loop.call_soon_threadsafe(self._wake.set)

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self._fatal = SourceError(message)
        client = self._client
        if client is not None:
            client.disconnect()
        self._notify()

    # -- acknowledgement (any thread) -----------------------------------------------------------

    def _ack(self, generation: int, mid: int) -> None:
        client = self._client
        if client is None or self._closed or generation != self._generation:
            return
        client.ack(mid, QOS)


def _stop(client: paho.Client, flush_timeout: float = 2.0) -> None:
    # Let the queued PUBACKs reach the socket before the DISCONNECT: Mosquitto was seen to
    # redeliver messages acknowledged just before a disconnect otherwise.
    deadline = time.monotonic() + flush_timeout
    while client.want_write() and time.monotonic() < deadline:
        time.sleep(0.005)
    client.disconnect()
    client.loop_stop()


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho leaves such a socket to the garbage
    collector (a ResourceWarning, an error in our tests, and a file descriptor held meanwhile)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise
