"""One MQTT connection for the closed loop's publications and the answers it waits for.

paho-mqtt's network loop runs in its own thread and connects, and reconnects, by itself with
backoff (``reconnect_min_s`` to ``reconnect_max_s``). :class:`MqttLink` bridges it to asyncio:
``publish`` returns once the broker has acknowledged the QoS 1 message (PUBACK), and messages on
the link's subscriptions are handed to their handlers in the event loop's thread. The session is
clean: a link that was away asks the sender again rather than reading stale answers.

Errors are :class:`ActionError` s: a broker not reachable (or not confirming the subscriptions)
within ``connect_timeout_s``, or no PUBACK within ``publish_timeout_s``, is retryable; a broker
refusing the credentials or the client is not.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from node.errors import ActionError
from node.settings import MqttBrokerSettings

log = logging.getLogger(__name__)

QOS = 1
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
FATAL_CONNACK_CODES = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
"""Unsupported protocol, client id rejected, bad user/password, not authorised, banned, bad auth
method: retrying cannot help."""

MessageHandler = Callable[[str, bytes], None]
"""Called in the event loop's thread with a received message's topic and payload."""


@dataclass(frozen=True)
class _Broker:
    host: str
    port: int
    tls: bool

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def _broker(url: str) -> _Broker:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ActionError(f"bad MQTT broker URL {url!r}", retryable=False)
    return _Broker(
        parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"
    )


class MqttLink:
    """``await link.publish(topic, payload)``; ``await link.ready()`` to know the subscriptions
    are in place; ``await link.aclose()`` when done. Serves the event loop it is first used in."""

    def __init__(
        self,
        settings: MqttBrokerSettings,
        *,
        subscriptions: Mapping[str, MessageHandler] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.broker = _broker(settings.url)
        self._subscriptions = dict(subscriptions or {})
        self._base_dir = base_dir
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._fatal: ActionError | None = None
        self._lock = threading.Lock()
        self._puback_waiters: dict[int, asyncio.Future[None]] = {}
        self._pubacked: set[int] = set()
        """mids acknowledged before their publisher started waiting (paho's race)."""
        self._abandoned: set[int] = set()
        """mids whose publisher stopped waiting: a late PUBACK must not be kept for a reuse."""
        self._pending_subacks: dict[int, list[str]] = {}
        self._closed = False
        self.connections = 0

    async def ready(self) -> None:
        """Connected with every subscription confirmed; ActionError when not in time."""
        if self._closed:
            raise ActionError(f"MQTT link to {self.broker.label} is closed", retryable=False)
        ready = self._start()
        try:
            await asyncio.wait_for(ready.wait(), self.settings.connect_timeout_s)
        except TimeoutError:
            raise ActionError(
                f"MQTT broker {self.broker.label} not reachable within "
                f"{self.settings.connect_timeout_s:g} s"
            ) from None
        if self._fatal is not None:
            raise self._fatal

    async def publish(self, topic: str, payload: bytes, *, expiry_s: int | None = None) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK. ``expiry_s``: MQTT 5 message
        expiry, so a message nobody took in time is dropped by the broker."""
        await self.ready()
        client, loop = self._client, self._loop
        assert client is not None and loop is not None
        properties = None
        if expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = max(1, expiry_s)
        info = client.publish(topic, payload, qos=QOS, properties=properties)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ActionError(
                f"MQTT broker {self.broker.label}: cannot publish to {topic}: "
                f"{paho.error_string(info.rc)}"
            )
        acknowledged: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if info.is_published() or info.mid in self._pubacked:
                self._pubacked.discard(info.mid)
                acknowledged.set_result(None)
            else:
                self._puback_waiters[info.mid] = acknowledged
        try:
            await asyncio.wait_for(acknowledged, self.settings.publish_timeout_s)
        except TimeoutError:
            raise ActionError(
                f"MQTT broker {self.broker.label} did not acknowledge the message to {topic} "
                f"within {self.settings.publish_timeout_s:g} s"
            ) from None
        finally:
            with self._lock:
                if self._puback_waiters.pop(info.mid, None) is not None:
                    self._abandoned.add(info.mid)

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(_stop, client)

    # -- start ----------------------------------------------------------------------------------

    def _start(self) -> asyncio.Event:
        if self._ready is not None:
            return self._ready
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        client = self._build_client()
        client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.settings.keepalive_s,
            clean_start=True,
        )
        client.loop_start()  # paho's thread connects, and retries with backoff
        self._client = client
        return self._ready

    def _build_client(self) -> paho.Client:
        settings = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if self.broker.tls:
            client.tls_set_context(self._tls_context())
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _tls_context(self) -> ssl.SSLContext:
        settings = self.settings
        try:
            context = ssl.create_default_context(cafile=self._path(settings.tls_ca))
            if settings.tls_cert is not None:
                context.load_cert_chain(
                    str(self._path(settings.tls_cert)), self._path(settings.tls_key)
                )
        except (OSError, ValueError) as exc:
            raise ActionError(
                f"MQTT TLS settings for {self.broker.label}: {exc}", retryable=False
            ) from exc
        return context

    def _path(self, value: Path | None) -> str | None:
        if value is None:
            return None
        if self._base_dir is not None and not value.is_absolute():
            value = self._base_dir / value
        return str(value)

    # -- paho's thread --------------------------------------------------------------------------

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            if reason.value in FATAL_CONNACK_CODES:
                self._fatal = ActionError(
                    f"MQTT broker {self.broker.label} refused the connection: "
                    f"{str(reason).lower()}",
                    retryable=False,
                )
                assert self._ready is not None
                self._call(self._ready.set)
            return
        self.connections += 1
        filters = list(self._subscriptions)
        if not filters:
            assert self._ready is not None
            self._call(self._ready.set)
            return
        _, mid = client.subscribe([(f, SubscribeOptions(qos=QOS)) for f in filters])
        if mid is not None:
            self._pending_subacks[mid] = filters

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        filters = self._pending_subacks.pop(mid, [])
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            self._fatal = ActionError(
                f"MQTT broker {self.broker.label} refused the subscription to {refused}",
                retryable=False,
            )
        assert self._ready is not None
        self._call(self._ready.set)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._ready is not None:
            self._call(self._ready.clear)
        if not self._closed:
            log.warning("lost MQTT broker %s (%s); reconnecting", self.broker.label, reason)

    def _on_publish(
        self,
        _client: paho.Client,
        _userdata: Any,
        mid: int,
        _reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # paho calls this before it marks the message published: whoever comes second (this
        # callback or the publisher registering its waiter) completes the wait.
        with self._lock:
            waiter = self._puback_waiters.pop(mid, None)
            if waiter is None:
                if mid in self._abandoned:
                    self._abandoned.discard(mid)
                else:
                    self._pubacked.add(mid)
                return
        self._call(_resolve, waiter)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        for topic_filter, handler in self._subscriptions.items():
            if paho.topic_matches_sub(topic_filter, message.topic):
                self._call(handler, message.topic, bytes(message.payload))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _stop(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()
