"""The closed loop of one node: rules on the data, contract events, and the actions they cause.

Two paths lead from a reading to the line:
- **Contract-mediated.** A stored record reaches the rule engine (through the store's listener,
  or from an ingest worker). A firing commits its decision record and the actions it owes in one
  transaction; a compensation, for example, becomes a ``line_compensation`` request. The oracle
  sends it to LineControl.sol. The event consumer sees ``CompensationRequested`` (it is woken as
  soon as the transaction is mined) and enqueues the PLC write. The PLC's acknowledgement is then
  recorded on-chain.
- **Edge fast path, for red lines.** Each reading of a device that a red line watches is
  validated as it arrives, before any batching. A breach stops the line through the PLC at once.
  The decision, the on-chain record and the anchored evidence follow on the contract-mediated
  path, when the reading has been stored: the engine fires the same red line there, and its
  ``plc_stop`` (already done at the PLC) is followed by ``chain_line_stop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from node.chain.contract_events import EventDecoder
from node.control.actions.executors import ActionExecutors
from node.control.actions.plc import stop_line, stop_request_id
from node.control.chain_actions import KINDS as CHAIN_KINDS
from node.control.chain_actions import ChainActions
from node.control.events import EventConsumer
from node.control.handlers import CaseParties, member_handlers
from node.control.lines import Lines
from node.control.observations import Measurement, observations_from_records
from node.control.outbox import ActionOutbox, ActionRequest, ActionRunner, RetryPolicy
from node.control.redlines import RedLines
from node.control.rules import RuleBook, RuleEngine, RuleSet, commit_firings
from node.errors import ActionError, ConfigError, KeystoreError, QnodeError
from node.offchain.records import StoredRecord
from node.offchain.store import now_us
from node.oracles.source import Reading, Source
from node.oracles.validation import Accepted, Validator
from node.runtime import Node
from node.supervision import run_together

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
CONSUMER = "closed-loop"
RULE_RELOAD_S = 1.0
STATE_SAVE_S = 5.0
LOT_DECIMALS = 4
"""Fixed-point decimals of incoming lots recorded on SupplierQuality.sol."""


@dataclass(frozen=True)
class FastStop:
    """A line stopped on the edge fast path: which reading, and how long it took."""

    line: str
    device: str
    seq: int
    rule_id: str
    received_at_us: int
    stopped_at_us: int
    ack_ms: float

    @property
    def latency_ms(self) -> float:
        return (self.stopped_at_us - self.received_at_us) / 1e3


class ControlService:
    """Runs the rules, the event consumer and the action runner of ``node``; ``on_stored`` is
    the sink of stored records (the store's listener, the ingest pool's forwarding) and
    ``guarded`` wraps a source with the red-line fast path."""

    def __init__(self, node: Node, progress: Progress = lambda _line: None) -> None:
        self.node = node
        self.progress = progress
        settings = node.settings.control
        store = node.store()
        self.lines = Lines(settings.lines)
        self.outbox = ActionOutbox(store)
        self.actions = ActionExecutors(settings, store, base_dir=node.settings.base_dir)
        self.chain = ChainActions(
            self.lines,
            lambda: node.line_control(node.oracle_sender()),
            lambda: node.supplier_quality(node.oracle_sender()),
            on_mined=self.wake_consumer,
        )
        executors = dict(self.actions.executors)
        executors.update({kind: self.chain for kind in CHAIN_KINDS})
        self.runner = ActionRunner(
            self.outbox,
            executors,
            RetryPolicy(max_attempts=settings.action_max_attempts),
            poll_s=settings.action_poll_s,
        )
        self.book = RuleBook(settings.rules_file) if settings.rules_file is not None else None
        rules = self.book.current if self.book is not None else _no_rules()
        self.engine = RuleEngine(rules, signer=self._signer())
        self.fast_red_lines = RedLines(rules.red_lines, rules.digest)
        self._validator = Validator(node.settings.oracles)
        self.consumer = self._consumer()
        self.fast_stops: list[FastStop] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stored: asyncio.Queue[Sequence[StoredRecord]] | None = None
        self._state_dirty = False

    # -- wiring ----------------------------------------------------------------------------

    def _signer(self) -> str | None:
        try:
            return self.node.oracle_sender().address
        except (ConfigError, KeystoreError, QnodeError):
            return None

    def _consumer(self) -> EventConsumer | None:
        """The consumer of the contracts this node knows; None before they are deployed."""
        node = self.node
        decoders: list[EventDecoder[Any]] = []
        blocks: list[int] = []
        for name, open_binding in (
            ("LineControl", node.line_control),
            ("SupplierQuality", node.supplier_quality),
            ("CorrectiveAction", node.corrective_action),
        ):
            try:
                binding = open_binding()
            except ConfigError:
                continue
            decoders.append(binding.decoder)
            deployment = node.deployment(name)
            blocks.append(deployment.block if deployment is not None else 0)
        if not decoders:
            return None
        handlers = member_handlers(node.address, self.lines, self._case_parties, now_us)
        confirmations = node.settings.control.confirmations
        if confirmations is None:
            confirmations = node.settings.chain.confirmations
        return EventConsumer(
            CONSUMER,
            node.store(),
            node.connection,
            decoders,
            handlers,
            confirmations=confirmations,
            start_block=min(blocks),
        )

    def _case_parties(self, case_id: int) -> CaseParties:
        case = self.node.corrective_action().case(case_id)
        return CaseParties(case.customer, case.supplier)

    def watched_quantities(self) -> frozenset[str]:
        return self.engine.quantities()

    def wake_consumer(self) -> None:
        if self.consumer is not None:
            self.consumer.wake()

    # -- records in ------------------------------------------------------------------------

    def on_stored(self, records: Sequence[StoredRecord]) -> None:
        """Stored records for the rules (any thread); before ``run``, they are dropped."""
        loop, queue = self._loop, self._stored
        if loop is None or queue is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(queue.put_nowait, records)

    # -- the red-line fast path ------------------------------------------------------------

    async def guarded(self, source: Source) -> AsyncIterator[Reading]:
        """``source``'s readings, each looked at by the red lines before it goes on."""
        async for reading in source:
            if self.fast_red_lines.lines and self.actions.plc is not None:
                self._inspect(reading)
            yield reading

    def _inspect(self, reading: Reading) -> None:
        outcome = self._validator.validate(reading)
        if not isinstance(outcome, Accepted):
            return  # the ingest path quarantines it
        message = outcome.message
        measurement = Measurement(
            f"{message.device}#{message.seq}", "", message.device, message.ts_us, message.points
        )
        for firing in self.fast_red_lines.check(measurement):
            line = str(firing.decision.action.get("line", ""))
            task = asyncio.get_running_loop().create_task(
                self._stop(line, reading, message.device, message.seq, firing.rule_id)
            )
            task.add_done_callback(_log_failure)

    async def _stop(self, line: str, reading: Reading, device: str, seq: int, rule: str) -> None:
        plc = self.actions.plc
        assert plc is not None
        request_id = stop_request_id(f"fast:{line}:{device}:{seq}")
        result = await stop_line(plc, request_id, f"red line {rule}: {device} #{seq}")
        stop = FastStop(
            line, device, seq, rule, reading.received_at_us, result.stopped_at_us, result.ack_ms
        )
        self.fast_stops.append(stop)
        self.progress(
            f"line {line} stopped by red line {rule} ({device} #{seq}) in {stop.latency_ms:.1f} ms"
        )

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: rules, event consumer, action runner, rule-file reloads."""
        self._loop = asyncio.get_running_loop()
        self._stored = asyncio.Queue()
        await asyncio.to_thread(self._load_state)
        loops = [self.runner.run(), self._rules_loop(), self._housekeeping_loop()]
        if self.consumer is not None:
            poll = self.node.settings.control.event_poll_s
            loops.append(self.consumer.run(poll, self.runner.wake))
        try:
            await run_together(loops)
        finally:
            await asyncio.to_thread(self._save_state)
            await self.actions.aclose()

    def _load_state(self) -> None:
        with self.node.store().transaction() as connection:
            self.engine.load_state(connection)

    def _save_state(self) -> None:
        if not self._state_dirty:
            return
        with self.node.store().transaction() as connection:
            self.engine.save_state(connection)
        self._state_dirty = False

    async def _rules_loop(self) -> None:
        assert self._stored is not None
        while True:
            records = list(await self._stored.get())
            while not self._stored.empty():
                records.extend(self._stored.get_nowait())
            await asyncio.to_thread(self._evaluate, records)

    def _evaluate(self, records: Sequence[StoredRecord]) -> None:
        lots = [_lot_request(r) for r in records if r.record_type == "incoming_lot"]
        observations = observations_from_records(records)
        fired = self.engine.observe(observations) if observations else []
        self._state_dirty = self._state_dirty or bool(observations)
        if fired:
            commit_firings(self.node.store(), self.engine, fired)
            self._state_dirty = False
            for firing in fired:
                self.progress(f"rule {firing.rule_id} fired ({firing.scope})")
        requests = [request for request in lots if request is not None]
        if requests:
            self.outbox.add(requests)
        if fired or requests:
            self.runner.wake()

    async def _housekeeping_loop(self) -> None:
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(RULE_RELOAD_S)
            if self.book is not None and self.engine.follow(self.book):
                rules = self.engine.rules
                self.fast_red_lines = RedLines(rules.red_lines, rules.digest)
                self.progress(f"rules reloaded from {self.book.path} ({rules.digest[:18]}…)")
            elif self.book is not None and self.book.last_error is not None:
                log.debug("rule file refused, rules in force kept: %s", self.book.last_error)
            if time.monotonic() - last_save > STATE_SAVE_S:
                await asyncio.to_thread(self._save_state)
                last_save = time.monotonic()


def _no_rules() -> RuleSet:
    return RuleSet((), "0x" + "00" * 32)


def _lot_request(record: StoredRecord) -> ActionRequest | None:
    """An incoming lot of a supplier member (its address) is recorded on SupplierQuality.sol,
    where the consecutive out-of-spec count is kept by the chain itself."""
    fields = record.public
    supplier = str(fields.get("supplier", ""))
    if not (supplier.startswith("0x") and len(supplier) == 42):
        return None
    try:
        payload = {
            "supplier": supplier,
            "part": str(fields["part"]),
            "characteristic": str(fields["characteristic"]),
            "lot": str(fields["lot"]),
            "value": float(fields["value"]),
            "lsl": float(fields["lsl"]),
            "usl": float(fields["usl"]),
            "decimals": LOT_DECIMALS,
            "record_id": record.record_id,
        }
    except (KeyError, TypeError, ValueError):
        log.warning(
            "incoming lot %s lacks a value or a limit: not recorded on-chain", record.record_id
        )
        return None
    return ActionRequest("incoming_lot", f"incoming_lot:{record.record_id}", payload)


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if isinstance(error, ActionError):
        log.error("the fast path could not stop the line: %s", error)
    elif error is not None:
        log.error("the fast path failed", exc_info=error)
