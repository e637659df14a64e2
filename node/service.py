"""The running node: its sources feed ingestion; batches are anchored; critical records attested.

Each configured source (OPC UA, MQTT) gets its own ingestion task; anchoring and attestation run
as periodic passes in worker threads, so the event loop keeps receiving while the chain is slow.
A chain that is down leaves batches and attestations queued; they go out when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any

from node.control.service import ControlService
from node.errors import ChainError, ConfigError, KeystoreError
from node.oracles.attestation import AttestationSigner
from node.oracles.attestor import Attestor
from node.oracles.ingest import Ingestor
from node.oracles.ingest_pool import IngestPool, WorkerSpec
from node.oracles.metrics import IngestMetrics
from node.oracles.mqtt_source import MqttSource
from node.oracles.opcua_source import OpcUaSource
from node.oracles.source import Reading, Source
from node.oracles.validation import Validator
from node.runtime import Node
from node.supervision import run_together

Progress = Callable[[str], None]
Ingest = Callable[[AsyncIterable[Reading]], Coroutine[Any, Any, None]]
"""Ingests one stream of readings until it ends."""


@dataclass(frozen=True)
class ServiceOptions:
    chain_interval_s: float = 2.0
    """How often batches are closed and anchored and critical records attested and relayed."""
    status_interval_s: float = 10.0


def configured_sources(node: Node) -> list[Source]:
    oracles = node.settings.oracles
    sources: list[Source] = []
    if oracles.opcua is not None:
        sources.append(OpcUaSource(oracles.opcua, base_dir=node.settings.base_dir))
    if oracles.mqtt is not None:
        sources.append(MqttSource(oracles.mqtt, base_dir=node.settings.base_dir))
    return sources


class NodeService:
    """Ingestion from ``sources`` plus the chain passes, until cancelled or a source fails."""

    def __init__(
        self,
        node: Node,
        sources: Sequence[Source],
        options: ServiceOptions = ServiceOptions(),
        progress: Progress = lambda _line: None,
        control: ControlService | None = None,
    ) -> None:
        """``control``: the closed loop (rules, contract events, actions), if the node runs it."""
        self.node = node
        self.sources = list(sources)
        self.control = control
        self.options = options
        self.progress = progress
        self.metrics = IngestMetrics()
        self._batcher = node.batcher()
        self._attestor: Attestor | None = None
        self._chain_pass_lock = threading.Lock()

    async def run(self) -> None:
        async with self._ingestion() as ingest:
            await self._run(ingest)

    @contextlib.asynccontextmanager
    async def _ingestion(
        self,
    ) -> AsyncIterator[Ingest]:
        """How a source is ingested: in this process, or by the configured worker processes."""
        settings = self.node.settings
        workers = settings.oracles.ingest_workers
        control = self.control
        if control is not None:
            self.node.store().add_listener(control.on_stored)
        linger_s = settings.oracles.ingest_linger_ms / 1000
        if workers == 1:
            validator = Validator(settings.oracles)
            yield Ingestor(self.node.store(), validator, self.metrics, max_delay_s=linger_s).run
            return
        spec = WorkerSpec.from_settings(settings)
        if control is not None:
            spec = replace(spec, forward_quantities=control.watched_quantities())
        on_stored = control.on_stored if control is not None else None
        async with IngestPool(
            spec, workers, self.metrics, max_delay_s=linger_s, on_stored=on_stored
        ) as pool:
            yield pool.run

    async def _run(self, ingest: Ingest) -> None:
        control = self.control
        streams: list[AsyncIterable[Reading]] = [
            source if control is None else control.guarded(source) for source in self.sources
        ]
        loops = [ingest(stream) for stream in streams]
        if control is not None:
            loops.append(control.run())
        try:
            await run_together([*loops, self._chain_loop(), self._status_loop()])
        finally:
            for source in self.sources:
                await source.close()

    def chain_pass(self, force: bool = False) -> str:
        """One anchoring and attestation pass; what it did, as a line for the operator.
        ``force`` closes a partial batch at once (e.g. before shutting down).

        Passes never overlap: a pass running in a worker thread when ``run`` is cancelled goes on
        to its end, and a pass called meanwhile waits for it."""
        with self._chain_pass_lock:
            return self._chain_pass(force)

    def _chain_pass(self, force: bool) -> str:
        closed = self._batcher.close_batches(force=force)
        try:
            registry = self.node.anchor_registry(self.node.oracle_sender())
            anchored = self._batcher.anchor_pending(registry)
            self._batcher.track_confirmations(
                self.node.connection.head_block(), self.node.settings.chain.confirmations
            )
            line = f"{len(closed)} batch(es) closed, {len(anchored)} anchored"
        except (ChainError, ConfigError, KeystoreError) as exc:
            line = f"{len(closed)} batch(es) closed, anchoring waits: {exc}"
        return f"{line}; {self._attest_pass()}"

    def _attest_pass(self) -> str:
        try:
            attestor = self._attestor or self._open_attestor()
            signed = attestor.attest_unattested()
            outcome = attestor.submit_pending()
        except (ChainError, ConfigError, KeystoreError) as exc:
            return f"attestation waits: {exc}"
        failed = f", {len(outcome.failed)} refused" if outcome.failed else ""
        return f"{len(signed)} attested, {len(outcome.confirmed)} recorded on-chain{failed}"

    def _open_attestor(self) -> Attestor:
        ledger = self.node.quality_ledger()
        oracle = self.node.oracle_sender().account
        self._attestor = Attestor(
            self.node.store(), AttestationSigner(oracle, ledger.domain()), ledger
        )
        return self._attestor

    async def _chain_loop(self) -> None:
        while True:
            line = await asyncio.to_thread(self.chain_pass)
            if not line.startswith("0 batch(es) closed, 0 anchored; 0 attested, 0 recorded"):
                self.progress(line)
            await asyncio.sleep(self.options.chain_interval_s)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval_s)
            snapshot = self.metrics.snapshot()
            self.progress(
                f"ingested {snapshot.messages_accepted} messages ({snapshot.points_accepted} "
                f"points), {snapshot.messages_rejected} quarantined, "
                f"{self._batcher.queued()} records waiting for a batch"
            )
