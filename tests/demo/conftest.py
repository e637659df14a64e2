"""A demo consortium for a test module: Hardhat, four members' ``qnode run`` and ``qnode serve``
processes, the plant simulators and the MQTT broker of the run (``mqtt_url``), started by
:class:`node.demo.DemoConsortium` in the test's process, stopped (every PID checked) afterwards."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from node.demo import DemoConsortium
from node.demo_members import CELLS, DemoMember, Layout, Provisioned
from node.runtime import Node
from tests.hardhat_node import require_hardhat


@dataclass
class RunningDemo:
    consortium: DemoConsortium
    lines: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def layout(self) -> Layout:
        assert self.consortium.layout is not None
        return self.consortium.layout

    @property
    def members(self) -> Provisioned:
        assert self.consortium.members is not None
        return self.consortium.members

    def node(self, member: DemoMember) -> Node:
        return self.members.node(member)

    @contextlib.contextmanager
    def explorer(self, member: DemoMember = CELLS) -> Iterator[httpx.Client]:
        """An auditor signed in to ``member``'s explorer with the demo's authority token."""
        base = self.layout.api_url(member)
        with httpx.Client(base_url=base, timeout=30.0, follow_redirects=False) as client:
            response = client.post(
                "/explorer/login",
                data={"token": self.layout.authority_token},
                headers={"Origin": base},
            )
            assert response.status_code == 303, response.text
            yield client


def start_demo(root: Path, mqtt_url: str) -> Iterator[RunningDemo]:
    require_hardhat()
    lines: list[str] = []
    started = time.monotonic()
    consortium = DemoConsortium(root, lines.append, mqtt_url)
    try:
        consortium.start()
        yield RunningDemo(consortium, lines, {"start_s": time.monotonic() - started})
    finally:
        leftovers = consortium.stop()
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, mqtt_url: str) -> Iterator[RunningDemo]:
    yield from start_demo(tmp_path_factory.mktemp("demo"), mqtt_url)
