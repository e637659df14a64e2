"""Shared fixtures: the same tests run on the in-process chain and on a real Hardhat node."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import create_engine

from node.chain.connection import ChainConnection, embedded_chain, rpc_chain
from node.chain.consortium import Consortium, Founder, Role
from node.chain.sender import SenderOptions, TransactionSender
from node.keys import hardhat_dev_key
from node.settings import LOCAL_CHAIN_ID
from tests.hardhat_node import HardhatChain

pytest_plugins = ["tests.hardhat_node", "tests.mqtt_broker"]

TEST_KDF_ITERATIONS = 2**4
PROPOSAL_TTL = 3600


@pytest.fixture(params=["embedded", "hardhat"])
def chain(request: pytest.FixtureRequest) -> ChainConnection:
    """A chain connection on each backend: a fresh in-process chain, or the session's Hardhat."""
    if request.param == "embedded":
        return embedded_chain(LOCAL_CHAIN_ID)
    hardhat: HardhatChain = request.getfixturevalue("hardhat_chain")
    return rpc_chain(hardhat.url)


@pytest.fixture
def dev_accounts() -> list[LocalAccount]:
    """Hardhat's prefunded demo accounts (also prefunded on the embedded chain)."""
    return [hardhat_dev_key(i) for i in range(8)]


@pytest.fixture
def make_sender(chain: ChainConnection) -> Callable[[LocalAccount], TransactionSender]:
    def make(account: LocalAccount) -> TransactionSender:
        return TransactionSender(chain, account, SenderOptions(receipt_timeout=30.0))

    return make


@pytest.fixture
def consortium_2_of_3(
    dev_accounts: list[LocalAccount],
    make_sender: Callable[[LocalAccount], TransactionSender],
) -> list[Consortium]:
    """A fresh Consortium with three founders (manufacturer, supplier, lab), threshold 2.

    Returns one binding per dev account 0..5, each sending as that account.
    """
    founders = [
        Founder(
            dev_accounts[0].address, Role.MANUFACTURER, "Aster Motors", "http://127.0.0.1:8601"
        ),
        Founder(dev_accounts[1].address, Role.SUPPLIER, "Borealis Cells", "http://127.0.0.1:8602"),
        Founder(dev_accounts[2].address, Role.LAB, "Cobalt Test Lab", "http://127.0.0.1:8603"),
    ]
    deployed, _ = Consortium.deploy(make_sender(dev_accounts[0]), founders, 2, PROPOSAL_TTL)
    return [deployed] + [
        Consortium.at(make_sender(account), deployed.address) for account in dev_accounts[1:6]
    ]


POSTGRES_URL_ENV = "QNODE_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite in tmp_path, or a new schema of the test PostgreSQL.

    PostgreSQL comes from QNODE_TEST_POSTGRES_URL (set by .ci/run); without it those cases skip.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    schema = f"qnode_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
