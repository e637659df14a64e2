"""Pytest plugin: real Hardhat nodes on free loopback ports.

Load it with ``pytest_plugins = ["tests.hardhat_node"]``. Fixtures:

* ``hardhat_chain`` (session): one automining node shared by the whole run;
* ``hardhat_chain_manual`` (function): a fresh node that mines only on ``evm_mine``;
* ``hardhat_available`` (function): for tests that start their own ``LocalChain``.

Without Node.js or ``hardhat-local/node_modules`` the tests that use them are skipped, except when
``CI=true``: then they fail, so CI never silently loses the Hardhat half of the suite.
Tests that use these fixtures get the ``hardhat`` marker (``-m "not hardhat"`` deselects them).

PYTEST_DONT_REWRITE: conftest files may import this module (e.g. ``HardhatChain``) before they
list it in ``pytest_plugins``; this marker keeps pytest from warning (an error here) about that.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from node.chain.localnode import (
    LocalChain,
    LocalChainStatus,
    default_hardhat_dir,
    rpc_call,
)

HARDHAT_FIXTURES = frozenset({"hardhat_chain", "hardhat_chain_manual", "hardhat_available"})
START_TIMEOUT = 60.0


class HardhatChain:
    """A running local chain as tests see it."""

    def __init__(self, local_chain: LocalChain, port: int, status: LocalChainStatus) -> None:
        self.local_chain = local_chain
        self.port = port
        self.status = status

    @property
    def url(self) -> str:
        if self.status.url is None:
            raise RuntimeError(f"the local chain has no URL: {self.status.message}")
        return self.status.url

    @property
    def chain_id(self) -> int:
        if self.status.chain_id is None:
            raise RuntimeError(f"the local chain has no chainId: {self.status.message}")
        return self.status.chain_id

    @property
    def pid(self) -> int:
        if self.status.pid is None:
            raise RuntimeError(f"the local chain has no PID: {self.status.message}")
        return self.status.pid

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc_call(self.url, method, params)

    def restart(self) -> LocalChainStatus:
        """A fresh, empty chain on the same port and mining mode (URL unchanged)."""
        self.status = self.local_chain.restart(timeout=START_TIMEOUT)
        return self.status

    def __repr__(self) -> str:
        return f"HardhatChain(url={self.status.url!r}, pid={self.status.pid})"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def hardhat_unavailable_reason(hardhat_dir: Path | None = None) -> str | None:
    """Why a Hardhat node cannot be started here, or None when it can."""
    directory = hardhat_dir or default_hardhat_dir()
    if shutil.which("node") is None:
        return "Node.js (`node`) is not on PATH"
    if not (directory / "node_modules" / "hardhat" / "package.json").is_file():
        return f"{directory / 'node_modules'} is missing: run npm ci in hardhat-local"
    return None


def require_hardhat() -> None:
    """Skip the calling test/fixture when Hardhat is unavailable; fail instead under CI=true."""
    reason = hardhat_unavailable_reason()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and Hardhat is unavailable: {reason}", pytrace=False)
    pytest.skip(f"Hardhat unavailable: {reason}")


def _start(run_dir: Path, mining: str) -> HardhatChain:
    require_hardhat()
    chain = LocalChain(run_dir)
    # port 0: LocalChain picks a free port, and picks again if another process takes it first
    status = chain.start(port=0, mining=mining, timeout=START_TIMEOUT)
    port = urlsplit(status.url or "").port
    if port is None:
        chain.stop()
        raise RuntimeError(f"the local chain started without a port: {status}")
    return HardhatChain(chain, port, status)


@pytest.fixture
def hardhat_available() -> None:
    """Skip (fail under CI=true) unless Node.js and hardhat-local/node_modules are present."""
    require_hardhat()


@pytest.fixture(scope="session")
def hardhat_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatChain]:
    """One automining Hardhat node (chainId 4717) for the whole session."""
    chain = _start(tmp_path_factory.mktemp("hardhat-chain"), "auto")
    try:
        yield chain
    finally:
        chain.local_chain.stop()


@pytest.fixture
def hardhat_chain_manual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardhatChain]:
    """A fresh Hardhat node per test with automine off: blocks only on ``evm_mine``."""
    chain = _start(tmp_path_factory.mktemp("hardhat-manual"), "manual")
    try:
        yield chain
    finally:
        chain.local_chain.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hardhat: needs a Hardhat node (started by a fixture on a free loopback port)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HARDHAT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.hardhat)
