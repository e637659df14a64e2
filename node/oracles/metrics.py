"""Ingestion counters: accepted messages and points, rejections by reason, batches, latency.

Updated once a batch (not once a message), under a lock, so that a reader in another thread (an
API handler) sees a consistent :class:`MetricsSnapshot`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class MetricsSnapshot:
    messages_accepted: int = 0
    points_accepted: int = 0
    rejected: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Rejected messages by reason (``duplicate``, ``out_of_range``, ...)."""
    batches: int = 0
    last_batch_latency_s: float | None = None
    """From the batch's arrival at the ingestor to its commit, acks included."""

    @property
    def messages_rejected(self) -> int:
        return sum(self.rejected.values())


class IngestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages = 0
        self._points = 0
        self._rejected: Counter[str] = Counter()
        self._batches = 0
        self._latency: float | None = None

    def record_batch(
        self, messages: int, points: int, rejected: Mapping[str, int], latency_s: float
    ) -> None:
        with self._lock:
            self._messages += messages
            self._points += points
            self._rejected.update(rejected)
            self._batches += 1
            self._latency = latency_s

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                self._messages,
                self._points,
                MappingProxyType(dict(self._rejected)),
                self._batches,
                self._latency,
            )
