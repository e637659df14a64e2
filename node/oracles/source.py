"""The one seam between protocol I/O and domain code: ``async for reading in source``.

OPC UA and MQTT adapters implement :class:`Source`; everything downstream (validation, quarantine,
the store) sees only :class:`Reading` values and never imports asyncua or paho.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class SourceStatus(StrEnum):
    """The quality the protocol gave a value (OPC UA status code class; MQTT: always Good)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


def _no_ack() -> None:
    return None


@dataclass(frozen=True)
class Reading:
    """One message as it arrived, before validation.

    ``payload`` is the raw device message (JSON bytes, see docs/device-messages.md), exactly as
    received, so that a rejected one can be quarantined unchanged. ``ack`` tells the source the
    reading is durable (stored or quarantined): an MQTT source acknowledges the QoS 1 message only
    then, so a crash before it makes the broker redeliver rather than lose the message.
    """

    source: str
    """Where it came from: ``mqtt://host:port/<topic>`` or ``opc.tcp://host:port#<NodeId>``."""
    payload: bytes
    received_at_us: int
    device_id: str | None = None
    """The device the transport says this is (topic or NodeId mapping); ``None`` if unmapped."""
    status: SourceStatus = SourceStatus.GOOD
    status_detail: str = ""
    ack: Callable[[], None] = field(default=_no_ack, repr=False, compare=False)


class Source(Protocol):
    """A stream of readings. Iterating connects (and reconnects with backoff) until closed."""

    def __aiter__(self) -> AsyncIterator[Reading]: ...

    async def close(self) -> None: ...
