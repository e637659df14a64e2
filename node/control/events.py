"""Contract events in, actions out: each event acted on once, across crashes and reorgs.

An :class:`EventConsumer` follows the logs of the node's contracts from a checkpoint (block number
and hash). One pass asks for the logs from the block after the checkpoint up to the head, less
``confirmations``. It then hands each decoded event to the handler of its class. Every handler
returns the event's *key* (a name that stays the same if the event is mined again in another
block, e.g. ``compensation:7``) and the actions it causes. The pass then commits one database
transaction holding:
- the handled keys;
- the actions, in the outbox (node/control/outbox.py);
- the new checkpoint, with the block hashes seen.

A crash before the commit leaves nothing behind, and the next pass reads the same logs again. A
crash after it leaves everything behind, and the next pass starts after the checkpoint. Either
way, no event is missed or acted on twice.

Before each pass, the checkpoint's hash is compared with the chain's block at that height. After
a reorganisation they differ. The consumer then walks back through the hashes it kept to the last
block both agree on, and reads forward from there. Events mined again on the new branch are not
acted on a second time, since their keys were kept. An event that vanished with the old branch
cannot be undone (a PLC write has happened); it is logged as such. On BFT chains (QBFT, IBFT)
with ``confirmations = 0`` this never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select
from web3 import Web3
from web3.types import FilterParams, LogReceipt

from node.chain.abi_values import bytes32_out
from node.chain.connection import ChainConnection, translate_chain_errors
from node.chain.contract_events import EventDecoder, LoggedEvent
from node.control.outbox import ActionOutbox, ActionRequest
from node.errors import ChainError, ControlError
from node.offchain.models import (
    Base,
    EventBlockRow,
    EventCheckpointRow,
    HandledEventRow,
)
from node.offchain.store import Store, now_us

log = logging.getLogger(__name__)

CHECKPOINTS = Base.metadata.tables[EventCheckpointRow.__tablename__]
BLOCKS = Base.metadata.tables[EventBlockRow.__tablename__]
HANDLED = Base.metadata.tables[HandledEventRow.__tablename__]


@dataclass(frozen=True)
class Handled:
    """What a handler made of an event: its reorg-proof key and the actions it causes."""

    key: str
    actions: Sequence[ActionRequest] = ()


Handler = Callable[[Any], Handled | None]
"""Gets an event of its class; returns None for an event this node has nothing to do with."""


@dataclass(frozen=True)
class Checkpoint:
    block_number: int
    block_hash: str


@dataclass(frozen=True)
class PassResult:
    """One pass: the blocks read, the events handled, the actions enqueued, a reorg's depth."""

    from_block: int
    to_block: int
    events: int = 0
    handled: tuple[str, ...] = ()
    actions: int = 0
    rewound_to: int | None = None
    skipped: tuple[str, ...] = field(default=())
    """Keys already handled before (an event mined again after a reorg)."""


@dataclass(frozen=True)
class _Log:
    event: LoggedEvent
    block_hash: str


class EventConsumer:
    """Follows ``decoders``' contracts and acts on the events ``handlers`` know.

    ``name`` keys the checkpoint (several consumers may share a store). ``start_block`` is where a
    consumer without a checkpoint begins (e.g. the contracts' deployment block).
    """

    def __init__(
        self,
        name: str,
        store: Store,
        connection: ChainConnection,
        decoders: Sequence[EventDecoder[Any]],
        handlers: Mapping[type, Handler],
        *,
        confirmations: int = 0,
        start_block: int = 0,
        max_range: int = 2_000,
        keep_blocks: int = 256,
    ) -> None:
        if confirmations < 0 or max_range < 1 or keep_blocks < 2:
            raise ControlError("an event consumer needs confirmations >= 0, a positive range")
        self.name = name
        self.store = store
        self.connection = connection
        self.decoders = list(decoders)
        self.handlers = dict(handlers)
        self.confirmations = confirmations
        self.start_block = start_block
        self.max_range = max_range
        self.keep_blocks = keep_blocks
        self.outbox = ActionOutbox(store)
        self._addresses = [Web3.to_checksum_address(d.binding.address) for d in self.decoders]
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- one pass --------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        with self.store.transaction() as connection:
            row = connection.execute(
                select(CHECKPOINTS).where(CHECKPOINTS.c.consumer == self.name)
            ).first()
        return None if row is None else Checkpoint(int(row.block_number), row.block_hash)

    def poll(self) -> PassResult:
        """Read and handle what is new, up to ``max_range`` blocks; raise ChainError when the
        chain cannot be read (nothing is recorded then)."""
        checkpoint = self.checkpoint()
        rewound_to: int | None = None
        if checkpoint is not None and not self._on_chain(checkpoint):
            checkpoint = self._rewind()
            rewound_to = checkpoint.block_number if checkpoint is not None else -1
        first = checkpoint.block_number + 1 if checkpoint is not None else self.start_block
        last = min(self.connection.head_block() - self.confirmations, first + self.max_range - 1)
        if last < first:
            return PassResult(first, first - 1, rewound_to=rewound_to)
        logs = self._logs(first, last)
        last_hash = self._block_hash(last)
        return self._commit(first, last, last_hash, logs, rewound_to)

    def _commit(
        self,
        first: int,
        last: int,
        last_hash: str,
        logs: Sequence[_Log],
        rewound_to: int | None,
    ) -> PassResult:
        outcomes = [(entry, self._handle(entry.event)) for entry in logs]
        ours = [(entry, outcome) for entry, outcome in outcomes if outcome is not None]
        handled: list[str] = []
        skipped: list[str] = []
        actions = 0
        with self.store.transaction() as connection:
            done = self._handled_keys(connection, [outcome.key for _, outcome in ours])
            for entry, outcome in ours:
                if outcome.key in done:
                    skipped.append(outcome.key)
                    continue
                done.add(outcome.key)
                self._mark_handled(connection, outcome.key, entry)
                actions += self.outbox.enqueue(connection, outcome.actions)
                handled.append(outcome.key)
            self._move_checkpoint(connection, Checkpoint(last, last_hash), logs)
        for key in skipped:
            log.info(
                "%s: event %s was already acted on (mined again after a reorg)", self.name, key
            )
        return PassResult(
            first, last, len(logs), tuple(handled), actions, rewound_to, tuple(skipped)
        )

    def _handle(self, event: LoggedEvent) -> Handled | None:
        handler = self.handlers.get(type(event))
        return None if handler is None else handler(event)

    # -- chain reads -----------------------------------------------------------------------

    def _logs(self, first: int, last: int) -> list[_Log]:
        params: FilterParams = {"address": self._addresses, "fromBlock": first, "toBlock": last}
        with translate_chain_errors(self.connection.url):
            raw = self.connection.w3.eth.get_logs(params)
        decoded = []
        for entry in sorted(raw, key=_chain_order):
            event = self._decode(entry)
            if event is not None:
                decoded.append(_Log(event, bytes32_out(entry["blockHash"])))
        return decoded

    def _decode(self, entry: LogReceipt) -> LoggedEvent | None:
        for decoder in self.decoders:
            event: LoggedEvent | None = decoder.decode(entry)
            if event is not None:
                return event
        return None

    def _block_hash(self, number: int) -> str:
        with translate_chain_errors(self.connection.url):
            block = self.connection.w3.eth.get_block(number)
        block_hash = block.get("hash")
        if block_hash is None:
            raise ChainError(f"block {number} has no hash yet")
        return bytes32_out(block_hash)

    def _on_chain(self, checkpoint: Checkpoint) -> bool:
        try:
            return self._block_hash(checkpoint.block_number) == checkpoint.block_hash
        except ChainError:
            if self.connection.head_block() < checkpoint.block_number:
                return False  # the chain is shorter than our checkpoint: a reorg (or a reset)
            raise

    def _rewind(self) -> Checkpoint | None:
        """The newest kept block that is still on the chain; None if none is (read from the
        start again: the handled keys keep actions from repeating)."""
        with self.store.transaction() as connection:
            kept = connection.execute(
                select(BLOCKS.c.block_number, BLOCKS.c.block_hash)
                .where(BLOCKS.c.consumer == self.name)
                .order_by(BLOCKS.c.block_number.desc())
            ).all()
        head = self.connection.head_block()
        for number, block_hash in kept:
            if number <= head and self._block_hash(int(number)) == block_hash:
                log.warning(
                    "%s: the chain was reorganised after block %d; reading again from there",
                    self.name,
                    number,
                )
                self._orphaned_after(int(number))
                return Checkpoint(int(number), block_hash)
        log.warning("%s: no kept block is on the chain any more; reading from the start", self.name)
        self._orphaned_after(self.start_block - 1)
        return None

    def _orphaned_after(self, number: int) -> None:
        with self.store.transaction() as connection:
            keys = connection.execute(
                select(HANDLED.c.event_key).where(
                    HANDLED.c.consumer == self.name, HANDLED.c.block_number > number
                )
            ).scalars()
            for key in keys:
                log.warning(
                    "%s: event %s was acted on in a block the reorg removed; if it is not mined "
                    "again, its action stands without it",
                    self.name,
                    key,
                )

    # -- the store -------------------------------------------------------------------------

    def _handled_keys(self, connection: Connection, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` were handled before."""
        if not keys:
            return set()
        rows = connection.execute(
            select(HANDLED.c.event_key).where(
                HANDLED.c.consumer == self.name, HANDLED.c.event_key.in_(list(keys))
            )
        ).scalars()
        return set(rows)

    def _mark_handled(self, connection: Connection, key: str, entry: _Log) -> None:
        connection.execute(
            HANDLED.insert().values(
                consumer=self.name,
                event_key=key,
                block_number=entry.event.block_number,
                block_hash=entry.block_hash,
                tx_hash=entry.event.tx_hash,
                log_index=entry.event.log_index,
                handled_at_us=now_us(),
            )
        )

    def _move_checkpoint(
        self, connection: Connection, checkpoint: Checkpoint, logs: Sequence[_Log]
    ) -> None:
        connection.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.consumer == self.name))
        connection.execute(
            CHECKPOINTS.insert().values(
                consumer=self.name,
                block_number=checkpoint.block_number,
                block_hash=checkpoint.block_hash,
                updated_at_us=now_us(),
            )
        )
        blocks = {entry.event.block_number: entry.block_hash for entry in logs}
        blocks[checkpoint.block_number] = checkpoint.block_hash
        connection.execute(
            delete(BLOCKS).where(
                BLOCKS.c.consumer == self.name,
                BLOCKS.c.block_number.in_(list(blocks))
                | (BLOCKS.c.block_number > checkpoint.block_number)
                | (BLOCKS.c.block_number <= checkpoint.block_number - self.keep_blocks),
            )
        )
        connection.execute(
            BLOCKS.insert(),
            [
                {"consumer": self.name, "block_number": number, "block_hash": block_hash}
                for number, block_hash in blocks.items()
                if number > checkpoint.block_number - self.keep_blocks
            ],
        )

    # -- running ---------------------------------------------------------------------------

    async def run(self, poll_s: float, on_actions: Callable[[], None] = lambda: None) -> None:
        """Poll until cancelled; ``on_actions`` is called after a pass that enqueued actions
        (to wake the action runner). A chain that is down is retried, not raised."""
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        while True:
            try:
                result = await asyncio.to_thread(self.poll)
            except ChainError as exc:
                log.warning("%s: cannot read the chain (%s); retrying", self.name, exc)
                await asyncio.sleep(max(poll_s, 1.0))
                continue
            if result.actions:
                on_actions()
            if result.to_block - result.from_block + 1 >= self.max_range:
                continue  # catching up: no pause
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)

    def wake(self) -> None:
        """Poll now, e.g. right after this node's own transaction was mined (thread-safe)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


def _chain_order(entry: LogReceipt) -> tuple[int, int]:
    return int(entry["blockNumber"]), int(entry["logIndex"])
