"""The local Hardhat chain: start/stop/status, PID-file safety, mining modes, CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from node.chain.localnode import (
    PID_FILE_NAME,
    LocalChain,
    default_hardhat_dir,
    free_port,
    main,
    rpc_call,
)
from node.errors import LocalChainError
from node.settings import LOCAL_CHAIN_ID

if TYPE_CHECKING:
    from tests.hardhat_node import HardhatChain

# Not imported at run time: the plugin must be imported by pytest (assertion rewriting).
# tests/conftest.py may load it too; pytest registers it once either way.
pytest_plugins = ["tests.hardhat_node"]

REPO_ROOT = Path(__file__).resolve().parents[2]
HARDHAT_DIR = default_hardhat_dir()
FIRST_ACCOUNT = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # of the default Hardhat mnemonic
TEN_THOUSAND_ETH = 10_000 * 10**18


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _write_pid_file(run_dir: Path, pid: int, port: int) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / PID_FILE_NAME
    url = f"http://127.0.0.1:{port}"
    record = {"pid": pid, "port": port, "host": "127.0.0.1", "url": url, "mining": "auto"}
    path.write_text(json.dumps(record))
    return path


def _send_value(url: str) -> str:
    accounts = rpc_call(url, "eth_accounts")
    tx = {"from": accounts[0], "to": accounts[1], "value": hex(1)}
    tx_hash: str = rpc_call(url, "eth_sendTransaction", [tx])
    return tx_hash


def _block_number(url: str) -> int:
    return int(rpc_call(url, "eth_blockNumber"), 16)


# --- the shared session node ----------------------------------------------------------------------


def test_session_chain_serves_the_consortium_config(hardhat_chain: HardhatChain) -> None:
    assert hardhat_chain.chain_id == LOCAL_CHAIN_ID
    assert int(hardhat_chain.rpc("eth_chainId"), 16) == LOCAL_CHAIN_ID
    assert hardhat_chain.url == f"http://127.0.0.1:{hardhat_chain.port}"
    accounts = hardhat_chain.rpc("eth_accounts")
    assert len(accounts) == 20
    assert accounts[0].lower() == FIRST_ACCOUNT
    balance = int(hardhat_chain.rpc("eth_getBalance", [accounts[19], "latest"]), 16)
    assert balance == TEN_THOUSAND_ETH
    status = hardhat_chain.local_chain.status()
    assert status.running and status.chain_id == LOCAL_CHAIN_ID
    assert status.head_block is not None and status.head_block >= 0


# --- lifecycle ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("hardhat_available")
def test_start_status_restart_stop_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    chain = LocalChain(run_dir)

    # a stale PID file (its process has exited) is reported, then cleared by start()
    stale_pid = _dead_pid()
    _write_pid_file(run_dir, stale_pid, free_port())
    stale = chain.status()
    assert not stale.running
    assert stale.pid == stale_pid
    assert "stale" in stale.message

    status = chain.start(port=0)  # a free port
    try:
        assert status.url is not None
        port = int(status.url.rsplit(":", 1)[1])
        assert status.running
        assert status.chain_id == LOCAL_CHAIN_ID
        assert status.head_block == 0
        assert status.url == f"http://127.0.0.1:{port}"
        assert status.pid is not None and status.pid != stale_pid

        record = json.loads(chain.pid_file.read_text())
        assert {"pid", "port", "host", "url", "mining", "log_file", "started_at"} <= set(record)
        assert record["pid"] == status.pid
        assert record["port"] == port
        assert record["host"] == "127.0.0.1"
        assert record["mining"] == "auto"
        assert status.log_file is not None
        assert Path(record["log_file"]) == status.log_file
        assert "Started HTTP and WebSocket JSON-RPC server" in status.log_file.read_text()

        again = chain.status()
        assert again.running and again.pid == status.pid and again.chain_id == LOCAL_CHAIN_ID

        # a second start, from this object or another one on the same run dir, is refused
        with pytest.raises(LocalChainError, match="already running"):
            chain.start(port=0)
        with pytest.raises(LocalChainError, match="already running"):
            LocalChain(run_dir).start(port=0)

        _send_value(status.url)
        assert _block_number(status.url) == 1  # automine

        restarted = chain.restart()
        assert restarted.running and restarted.url == status.url
        assert restarted.pid != status.pid
        assert not _alive(status.pid)
        assert restarted.head_block == 0  # a fresh in-memory chain
        assert json.loads(chain.pid_file.read_text())["pid"] == restarted.pid
    finally:
        stopped = chain.stop()

    assert stopped is True
    assert not chain.pid_file.exists()
    assert restarted.pid is not None and not _alive(restarted.pid)
    after = chain.status()
    assert not after.running and "no PID file" in after.message
    assert chain.stop() is False


def _hold_port(port: int) -> socket.socket:
    """A listener on ``port`` once the stopped node's own sockets have let go of it."""
    deadline = time.monotonic() + 30
    while True:
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", port))
        except OSError:
            holder.close()
            assert time.monotonic() < deadline, f"port {port} never came free"
            time.sleep(0.05)
            continue
        holder.listen()
        return holder


def test_restart_waits_while_its_port_is_briefly_held_elsewhere(tmp_path: Path) -> None:
    chain = LocalChain(tmp_path / "run")
    first = chain.start(port=0)
    try:
        assert first.url is not None
        port = int(first.url.rsplit(":", 1)[1])
        chain.stop()
        holder = _hold_port(port)  # e.g. another process's outgoing connection on that port
        releaser = threading.Timer(0.5, holder.close)
        releaser.start()
        again = chain.restart()
        releaser.join()
        assert again.running and again.url == first.url
    finally:
        chain.stop()


def test_stop_when_nothing_runs_returns_false(tmp_path: Path) -> None:
    chain = LocalChain(tmp_path / "never-started")
    assert chain.stop() is False
    status = chain.status()
    assert not status.running
    assert status.pid is None
    assert "no PID file" in status.message


def test_stale_pid_file_of_dead_process_is_removed_by_stop(tmp_path: Path) -> None:
    pid_file = _write_pid_file(tmp_path, _dead_pid(), free_port())
    assert LocalChain(tmp_path).stop() is False
    assert not pid_file.exists()


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    # the PID file names a live process that is not a Hardhat node (as after PID reuse)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = _write_pid_file(tmp_path, bystander.pid, free_port())
        chain = LocalChain(tmp_path)
        status = chain.status()
        assert not status.running
        assert "not a Hardhat node" in status.message
        assert chain.stop() is False
        assert not pid_file.exists()
        time.sleep(0.1)
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_refuses_a_non_loopback_host(tmp_path: Path, host: str) -> None:
    chain = LocalChain(tmp_path / "run")
    with pytest.raises(LocalChainError, match="loopback only"):
        chain.start(port=free_port(), host=host)
    assert not (tmp_path / "run").exists()


def test_missing_node_modules_says_run_npm_ci(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not on PATH")
    hardhat_dir = tmp_path / "hardhat-local"
    hardhat_dir.mkdir()
    (hardhat_dir / "hardhat.config.js").write_text("module.exports = {};\n")
    with pytest.raises(LocalChainError, match="run npm ci in hardhat-local"):
        LocalChain(tmp_path / "run", hardhat_dir=hardhat_dir).start(port=free_port())


@pytest.mark.usefixtures("hardhat_available")
def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        chain = LocalChain(tmp_path)
        with pytest.raises(LocalChainError, match=f"port {port} on 127.0.0.1 is already in use"):
            chain.start(port=port)
    assert not chain.pid_file.exists()


@pytest.mark.usefixtures("hardhat_available")
def test_early_exit_reports_the_last_log_line(tmp_path: Path) -> None:
    broken = tmp_path / "hardhat-broken"
    broken.mkdir()
    (broken / "node_modules").symlink_to(HARDHAT_DIR / "node_modules")
    (broken / "hardhat.config.js").write_text('throw new Error("qnode test: broken config");\n')
    chain = LocalChain(tmp_path / "run", hardhat_dir=broken)
    with pytest.raises(LocalChainError) as excinfo:
        chain.start(port=0, timeout=30)
    message = str(excinfo.value)
    assert "exited early" in message
    assert "qnode test: broken config" in message
    assert "\n" not in message
    assert not chain.pid_file.exists()


# --- mining modes ---------------------------------------------------------------------------------


def test_manual_mining_waits_for_evm_mine(hardhat_chain_manual: HardhatChain) -> None:
    url = hardhat_chain_manual.url
    head = _block_number(url)
    tx_hash = _send_value(url)
    time.sleep(0.3)
    assert _block_number(url) == head
    assert rpc_call(url, "eth_getTransactionReceipt", [tx_hash]) is None

    rpc_call(url, "evm_mine")
    assert _block_number(url) == head + 1
    receipt = rpc_call(url, "eth_getTransactionReceipt", [tx_hash])
    assert receipt is not None and receipt["status"] == "0x1"


@pytest.mark.usefixtures("hardhat_available")
def test_interval_mining_makes_blocks_without_transactions(tmp_path: Path) -> None:
    chain = LocalChain(tmp_path)
    status = chain.start(port=0, mining="interval", interval_ms=200)
    try:
        assert status.url is not None
        deadline = time.monotonic() + 5
        while _block_number(status.url) < 2:
            assert time.monotonic() < deadline, "no blocks mined on the interval"
            time.sleep(0.1)
        assert json.loads(chain.pid_file.read_text())["mining"] == "interval"
    finally:
        assert chain.stop() is True


@pytest.mark.usefixtures("hardhat_available")
def test_hardhat_config_mining_modes() -> None:
    # Load the real config once per mining environment, as `hardhat node` would (a HardhatContext
    # must exist for the config's subtask override).
    probe = """
const { HardhatContext } = require("hardhat/internal/context");
HardhatContext.createHardhatContext();
const cases = [[undefined, undefined], ["auto"], ["interval"], ["interval", "250"], ["manual"],
               ["bogus"], ["interval", "soon"]];
const out = [];
for (const [mode, ms] of cases) {
  delete require.cache[require.resolve("./hardhat.config.js")];
  if (mode === undefined) delete process.env.QNODE_MINING; else process.env.QNODE_MINING = mode;
  if (ms === undefined) delete process.env.QNODE_MINING_INTERVAL_MS;
  else process.env.QNODE_MINING_INTERVAL_MS = ms;
  try {
    const hardhat = require("./hardhat.config.js").networks.hardhat;
    out.push({
      ok: hardhat.mining,
      chainId: hardhat.chainId,
      hardfork: hardhat.hardfork,
      throwOnTransactionFailures: hardhat.throwOnTransactionFailures,
    });
  } catch (error) {
    out.push({ error: error.message });
  }
}
console.log(JSON.stringify(out));
"""
    result = subprocess.run(
        ["node", "-e", probe], cwd=HARDHAT_DIR, capture_output=True, text=True, check=True
    )
    auto, auto2, interval, interval250, manual, bogus, bad_ms = json.loads(result.stdout)
    assert auto == auto2
    assert auto["ok"] == {"auto": True, "interval": 0}
    assert auto["chainId"] == LOCAL_CHAIN_ID
    assert auto["hardfork"] == "cancun"
    assert auto["throwOnTransactionFailures"] is False  # reverts are mined, as on Besu
    assert interval["ok"] == {"auto": False, "interval": 1000}
    assert interval250["ok"] == {"auto": False, "interval": 250}
    assert manual["ok"] == {"auto": False, "interval": 0}
    assert "QNODE_MINING must be one of" in bogus["error"]
    assert "QNODE_MINING_INTERVAL_MS" in bad_ms["error"]


# --- command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["start", "--mining", "bogus"], "invalid choice"),
        (["start", "--port", "eighty"], "invalid int value"),
        (["start", "--host", "0.0.0.0"], "loopback only"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    run_dir = ["--run-dir", str(tmp_path)] if argv and argv[0] == "start" else []
    assert main([*argv, *run_dir]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("chain: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / PID_FILE_NAME).exists()


def test_cli_status_and_stop_when_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--run-dir", str(tmp_path)]) == 3
    assert capsys.readouterr().out.startswith("not running")
    assert main(["stop", "--run-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "not running"


@pytest.mark.usefixtures("hardhat_available")
def test_scripts_chain_starts_a_node_that_outlives_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = REPO_ROOT / "scripts" / "chain"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    started = subprocess.run(
        [str(script), "start", "--port", "0", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    pid_file = tmp_path / PID_FILE_NAME
    assert started.returncode == 0, started.stderr
    record = json.loads(pid_file.read_text())
    pid = record["pid"]
    try:
        assert f"http://127.0.0.1:{record['port']}" in started.stdout
        # the script has exited; the node runs on in its own session
        assert os.getsid(pid) == pid
        assert main(["status", "--run-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert f"chainId {LOCAL_CHAIN_ID}" in out and "head block 0" in out
    finally:
        if pid_file.exists():
            assert main(["stop", "--run-dir", str(tmp_path)]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not pid_file.exists()
    assert not _alive(pid)


def test_scripts_chain_reports_errors_on_one_line(tmp_path: Path) -> None:
    script = REPO_ROOT / "scripts" / "chain"
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [str(script), "start", "--host", "0.0.0.0", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert "loopback only" in result.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.chain.localnode", "status", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout.startswith("not running")
