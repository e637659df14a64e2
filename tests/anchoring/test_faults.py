"""Faults: kill -9 of the node at any moment, the chain going away and coming back, and a lost
database connection. Afterwards every accepted record is anchored exactly once and provable."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import Engine, create_engine, select

from node.anchoring.batcher import ANCHORED, Batcher, BatchPolicy
from node.anchoring.proofs import build_bundle, verify_bundle, verify_store
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import SenderOptions, TransactionSender
from node.errors import ChainUnavailableError, StoreError
from node.keys import hardhat_dev_key
from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.records import RecordInput
from node.offchain.store import OUTBOX, Store
from tests.hardhat_node import HardhatChain

REPO = Path(__file__).resolve().parents[2]


def deploy_registry(url: str) -> tuple[AnchorRegistry, LocalAccount, str]:
    """A fresh one-member consortium and registry; returns (registry as oracle, oracle, member)."""
    chain = rpc_chain(url)
    member = TransactionSender(chain, hardhat_dev_key(7))
    founder = Founder(member.address, Role.LAB, "Cobalt Test Lab", "http://c.test")
    consortium, _ = Consortium.deploy(member, [founder], 1, 3600)
    oracle: LocalAccount = Account.create()
    member.transfer(oracle.address, 10**19)
    consortium.register_oracle(oracle.address)
    registry, _ = AnchorRegistry.deploy(member, consortium.address)
    return (
        AnchorRegistry.at(TransactionSender(chain, oracle), registry.address),
        oracle,
        member.address,
    )


def open_store(url: str, blobs: Path) -> Store:
    return Store.open(url, Classification.from_config(DEFAULT_RECORD_TYPES), BlobStore(blobs))


def assert_anchored_exactly_once(store: Store, registry: AnchorRegistry, member: str) -> None:
    batcher = Batcher(store, member)
    batches = batcher.batches()
    assert batches and all(b.status == ANCHORED for b in batches)
    assert registry.batch_count() == len(batches)
    assert batcher.queued() == 0
    with store.transaction() as connection:
        assigned = connection.execute(select(OUTBOX.c.record_id, OUTBOX.c.batch_id)).all()
    assert len(assigned) == store.count_records()
    assert sum(b.leaf_count for b in batches) == len(assigned)
    assert verify_store(store, batcher, registry) == []
    sample = random.Random(7).sample([r.record_id for r in assigned], 5)
    for record_id in sample:
        verify_bundle(build_bundle(store, batcher, record_id), registry)


def test_kill_9_at_any_moment_loses_nothing_and_anchors_nothing_twice(
    tmp_path: Path, hardhat_chain: HardhatChain
) -> None:
    registry, oracle, member = deploy_registry(hardhat_chain.url)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    target = 600
    args = [
        sys.executable,
        "-m",
        "tests.anchoring.crash_worker",
        store_url,
        str(tmp_path / "blobs"),
        hardhat_chain.url,
        registry.address,
        "0x" + oracle.key.hex(),
        member,
        str(target),
    ]
    rng = random.Random(20261125)
    kills = 0
    for _attempt in range(6):
        worker = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, 2.5))  # start-up is ≈ 1 s; then it writes and anchors
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.communicate(timeout=30)
    final = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0 and "drained" in final.stdout, final.stderr
    assert kills >= 3
    store = open_store(store_url, tmp_path / "blobs")
    try:
        assert store.count_records() == target
        assert_anchored_exactly_once(store, registry, member)
    finally:
        store.close()


class TcpRelay:
    """A loopback TCP relay in front of the chain: stopping it is the chain going away."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones (keep-alive included)."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            self._server.close()
            self._server = None
        for connection in self._open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(hardhat_chain: HardhatChain) -> Iterator[TcpRelay]:
    relay = TcpRelay(hardhat_chain.port)
    relay.start()
    yield relay
    relay.stop()


def test_batches_queue_while_the_chain_is_down_and_anchor_when_it_is_back(
    tmp_path: Path, hardhat_chain: HardhatChain, relay: TcpRelay
) -> None:
    direct, oracle, member = deploy_registry(hardhat_chain.url)
    url = f"http://127.0.0.1:{relay.port}"
    sender = TransactionSender(rpc_chain(url), oracle, SenderOptions(receipt_timeout=20))
    registry = AnchorRegistry.at(sender, direct.address)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "blobs")
    batcher = Batcher(store, member, BatchPolicy(10, 0.0))
    try:
        relay.stop()  # the chain goes away
        store.add_records(
            [
                RecordInput("environment", {"area": "A", "temperature_c": 20 + i}, i)
                for i in range(35)
            ]
        )
        assert len(batcher.close_batches(force=True)) == 4  # batching goes on without the chain
        with pytest.raises(ChainUnavailableError, match="cannot reach the chain"):
            batcher.anchor_pending(registry)
        assert {b.status for b in batcher.batches()} == {"closed"}
        store.add_records([RecordInput("environment", {"area": "B"}, 99)])  # accepted meanwhile
        relay.start()  # back, same port
        batcher.close_batches(force=True)
        assert len(batcher.anchor_pending(registry)) == 5
        assert_anchored_exactly_once(store, direct, member)
    finally:
        store.close()


def terminate(admin: Engine, application: str) -> int:
    """Kill every server process serving ``application``: a lost database connection."""
    with admin.begin() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE application_name = '{application}'"
            ).scalar_one()
        )


def test_a_lost_postgresql_connection_is_reported_then_recovered(
    tmp_path: Path, store_url: str
) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL fault")
    application = f"qnode-fault-{os.getpid()}"
    url = f"{store_url}&application_name={application}"
    store = open_store(url, tmp_path / "blobs")
    admin = create_engine(store_url.split("?")[0])
    try:
        store.add_records([RecordInput("environment", {"area": "A"}, 1)])
        assert terminate(admin, application) >= 1
        # The pool notices the dead connection and reconnects: nothing lost, nothing doubled.
        store.add_records([RecordInput("environment", {"area": "B"}, 2)])
        assert store.count_records() == 2
        # The connection dies inside a transaction: the write fails whole, with a clear error.
        with pytest.raises(StoreError, match="the database is unavailable"):  # noqa: SIM117
            with store.transaction() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO anchor_outbox (record_id, created_at_us) VALUES ('0x01', 1)"
                )
                terminate(admin, application)
                connection.exec_driver_sql("SELECT 1")
        store.add_records([RecordInput("environment", {"area": "C"}, 3)])
        assert store.count_records() == 3
        with store.transaction() as connection:
            assert len(connection.execute(select(OUTBOX.c.seq)).all()) == 3
    finally:
        store.close()
        admin.dispose()
