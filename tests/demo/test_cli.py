"""``qnode demo`` as a user runs it (``scripts/demo`` execs it): it runs until Ctrl-C and then
leaves no process behind; a second demo on the same directory is refused while the first runs;
a demo killed outright takes its nodes with it, and the next run stops what is left and starts
fresh (and stops on SIGTERM as on Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.demo_processes import DemoError

pytestmark = pytest.mark.timeout(420)
READY = "the consortium keeps running: Ctrl-C stops it"


class DemoCommand:
    def __init__(self, root: Path, mqtt_url: str, log: Path) -> None:
        self.root = root
        self.args = [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--dir",
            str(root),
            "--scenario",
            "none",
            "--mqtt",
            mqtt_url,
        ]
        self.env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                self.args,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        return self.process

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.args, *extra],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.output():
            assert self.process is not None and self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        """What the demo started: its children (processes.json) and the chain (its PID file)."""
        table = json.loads((self.root / "processes.json").read_text(encoding="utf-8"))
        pids = {child["name"]: int(child["pid"]) for child in table["children"]}
        chain = json.loads((self.root / "chain" / "hardhat.pid.json").read_text(encoding="utf-8"))
        pids["hardhat"] = int(chain["pid"])
        return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_gone(pids: dict[str, int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids.values()):
        left = {name: pid for name, pid in pids.items() if alive(pid)}
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.1)


@pytest.fixture
def command(tmp_path: Path, mqtt_url: str, hardhat_available: None) -> Iterator[DemoCommand]:
    demo = DemoCommand(tmp_path / "demo", mqtt_url, tmp_path / "demo.log")
    yield demo
    if demo.process is not None and demo.process.poll() is None:
        demo.process.send_signal(signal.SIGINT)
        demo.process.wait(60)


def test_the_demo_runs_until_ctrl_c_and_then_leaves_no_process(command: DemoCommand) -> None:
    process = command.start()
    command.wait_ready()
    pids = command.pids()
    assert len(pids) == 9 and all(alive(pid) for pid in pids.values())  # 4 x 2 nodes, Hardhat
    output = command.output()
    for expected in ("Hardhat chain at http://127.0.0.1:", "consortium up in", "/explorer"):
        assert expected in output
    refused = command.run()
    assert refused.returncode == DemoError.exit_code
    assert "a demo is already running in" in refused.stderr

    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0, command.output()
    assert "demo stopped: every process it started has exited" in command.output()
    wait_gone(pids, timeout=1.0)


def test_a_demo_killed_outright_takes_its_nodes_along_and_the_next_run_starts_fresh(
    command: DemoCommand,
) -> None:
    process = command.start()
    command.wait_ready()
    pids = command.pids()
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    nodes = {name: pid for name, pid in pids.items() if name != "hardhat"}
    wait_gone(nodes)  # the kernel's parent-death signal
    assert alive(pids["hardhat"])  # the chain outlives its starter by design

    again = command.start()
    command.wait_ready()
    output = command.output()
    assert "stopped the chain an earlier demo left running" in output
    assert "starting fresh: removed the previous demo" in output
    assert not alive(pids["hardhat"])
    fresh = command.pids()
    again.send_signal(signal.SIGTERM)  # like Ctrl-C
    assert again.wait(60) == 0, command.output()
    assert "demo stopped: every process it started has exited" in command.output()
    wait_gone(fresh, timeout=1.0)
