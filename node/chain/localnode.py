"""The local consortium chain: a Hardhat (EDR) node started from ``hardhat-local/``, its PID kept.

The node runs in its own session (process group) so it outlives the command that started it; a JSON
PID file in the run directory records how to reach and stop it. Only loopback addresses are ever
bound. Standard library only: JSON-RPC goes through :mod:`urllib`.

Command line (also ``scripts/chain``)::

    python -m node.chain.localnode start [--port N] [--mining auto|interval|manual]
                                         [--interval-ms N] [--run-dir DIR]
    python -m node.chain.localnode stop
    python -m node.chain.localnode status
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from node.errors import LocalChainError

__all__ = [
    "DEFAULT_PORT",
    "MINING_MODES",
    "LocalChain",
    "LocalChainStatus",
    "default_hardhat_dir",
    "default_run_dir",
    "free_port",
    "main",
    "rpc_call",
]

DEFAULT_PORT = 8545
PORT_RELEASE_S = 10.0  # how long restart() waits for its port to be free again
MINING_MODES = ("auto", "interval", "manual")
PID_FILE_NAME = "hardhat.pid.json"
LOG_FILE_NAME = "hardhat.log"

_BOOTSTRAP = Path("node_modules", "hardhat", "internal", "cli", "bootstrap.js")
_POLL_SECONDS = 0.05
_PORT_ATTEMPTS = 5
_READY_MARK = b"Started HTTP and WebSocket JSON-RPC server at"
_SH = "/bin/sh"
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _repo_root() -> Path:
    # node/chain/localnode.py -> parents[0] = node/chain, [1] = node, [2] = the repository
    return Path(__file__).resolve().parents[2]


def default_hardhat_dir() -> Path:
    """The repository's ``hardhat-local`` directory."""
    return _repo_root() / "hardhat-local"


def default_run_dir() -> Path:
    """Where the PID and log files live by default: ``<repo>/.qnode/chain`` (gitignored)."""
    return _repo_root() / ".qnode" / "chain"


@dataclass(frozen=True)
class LocalChainStatus:
    """What is known about the local chain: from its PID file, its process and its RPC endpoint."""

    running: bool
    pid: int | None
    url: str | None
    chain_id: int | None
    head_block: int | None
    log_file: Path | None
    message: str


# --------------------------------------------------------------------------------------------------
# Helpers


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """Send one JSON-RPC request directly (never through a proxy) and return its ``result``.

    Raises :class:`LocalChainError` when the endpoint cannot be reached, answers garbage or answers
    with a JSON-RPC error.
    """
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params or [])}
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise LocalChainError(f"{url} answered {method} with HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise LocalChainError(f"{url} did not answer {method}: {exc.reason}") from exc
    except OSError as exc:  # timeouts, resets
        raise LocalChainError(f"{url} did not answer {method}: {exc}") from exc
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise LocalChainError(f"{url} answered {method} with invalid JSON") from exc
    if not isinstance(reply, dict):
        raise LocalChainError(f"{url} answered {method} with a non-object JSON-RPC reply")
    error = reply.get("error")
    if error is not None:
        detail = error.get("message", error) if isinstance(error, dict) else error
        raise LocalChainError(f"{method} failed: {detail}")
    if "result" not in reply:
        raise LocalChainError(f"{url} answered {method} without a result")
    return reply["result"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR, as Node.js sets it: TIME_WAIT leftovers do not count, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _spawn(args: list[str], cwd: Path, env: dict[str, str], log_file: Path) -> int:
    """Start ``args`` in ``cwd`` as the leader of a new session, output to ``log_file``; its PID.

    ``os.posix_spawn`` rather than :class:`subprocess.Popen`: the node is meant to outlive this
    object and this process, and a dropped ``Popen`` of a live child warns (ResourceWarning).
    ``sh`` changes directory and then ``exec``s, so the PID is the node's own.
    """
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return os.posix_spawn(
            _SH,
            [_SH, "-c", 'cd -- "$1" && shift && exec "$@"', "qnode-chain", str(cwd), *args],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
        )
    except OSError as exc:
        raise LocalChainError(f"cannot start Hardhat: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _exit_code(pid: int) -> int | None:
    """The exit code of our child ``pid`` (reaping it) or None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: all we can tell is whether it is gone
        return None if _pid_alive(pid) else -1
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is a dead child of this process, so it does not linger as a zombie.

    Nodes are spawned without a ``Popen`` (see :func:`_spawn`): nothing else waits for them.
    """
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _has_started(log_file: Path) -> bool:
    try:
        return _READY_MARK in log_file.read_bytes()
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    # the state follows the parenthesised command name, which may itself contain ") "
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        raw = b""
    if raw:
        return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]
    if Path("/proc").is_dir():
        return None  # gone, a zombie or a kernel thread
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split() if out else None


def _is_hardhat_node(pid: int, port: int | None) -> bool:
    """True when ``pid`` runs ``hardhat node`` (on ``port`` when given): never kill a reused PID."""
    args = _cmdline(pid)
    if not args:
        return False
    for index, arg in enumerate(args):
        normalized = arg.replace("\\", "/")
        if "hardhat" in normalized and (
            normalized.endswith("/internal/cli/bootstrap.js") or normalized.endswith("/hardhat")
        ):
            rest = args[index + 1 :]
            break
    else:
        return False
    if "node" not in rest:
        return False
    if port is None:
        return True
    return any(a == "--port" and b == str(port) for a, b in itertools.pairwise(rest))


def _last_log_line(log_file: Path) -> str:
    """The most telling line at the end of the log: the last error line, else the last line."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [_ANSI.sub("", line).strip() for line in tail.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "(empty log)"
    for line in reversed(lines):
        if re.match(r"^\w*Error\b", line):
            return line
    return lines[-1]


def _hex_to_int(value: Any, what: str) -> int:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value, 16)
    raise LocalChainError(f"unexpected {what} from the local chain: {value!r}")


# --------------------------------------------------------------------------------------------------
# The local chain


@dataclass(frozen=True)
class _PidRecord:
    pid: int
    port: int
    host: str
    url: str
    mining: str
    interval_ms: int
    log_file: Path


class _PortTakenError(LocalChainError):
    """Hardhat could not bind its port."""


class LocalChain:
    """Start, stop and inspect one Hardhat node whose PID and log files live in ``run_dir``."""

    def __init__(self, run_dir: Path, hardhat_dir: Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.hardhat_dir = Path(hardhat_dir) if hardhat_dir is not None else default_hardhat_dir()
        self._last_start: tuple[int, str, str, int] | None = None

    @property
    def pid_file(self) -> Path:
        return self.run_dir / PID_FILE_NAME

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE_NAME

    # -- PID file ----------------------------------------------------------------------------------

    def _read_pid_file(self) -> _PidRecord | None:
        """The PID file's record; None when there is none. Raises on an unreadable file."""
        try:
            text = self.pid_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LocalChainError(f"cannot read {self.pid_file}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            return _PidRecord(
                pid=int(data["pid"]),
                port=int(data["port"]),
                host=str(data["host"]),
                url=str(data["url"]),
                mining=str(data.get("mining", "auto")),
                interval_ms=int(data.get("interval_ms", 1000)),
                log_file=Path(data.get("log_file") or self.log_file),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalChainError(f"malformed PID file {self.pid_file}") from exc

    def _write_pid_file(self, record: _PidRecord) -> None:
        data = {
            "pid": record.pid,
            "port": record.port,
            "host": record.host,
            "url": record.url,
            "mining": record.mining,
            "interval_ms": record.interval_ms,
            "log_file": str(record.log_file),
            "hardhat_dir": str(self.hardhat_dir),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.pid_file)

    def _remove_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    # -- start -------------------------------------------------------------------------------------

    def start(
        self,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        mining: str = "auto",
        interval_ms: int = 1000,
        timeout: float = 60.0,
    ) -> LocalChainStatus:
        """Start the Hardhat node and wait until it answers ``eth_chainId``.

        ``port=0`` picks a free port (and picks again if it is taken before Hardhat binds it).
        Raises :class:`LocalChainError` with a one-line cause.
        """
        if not _is_loopback(host):
            raise LocalChainError(
                f"refusing to bind {host}: the local chain listens on loopback only "
                "(127.0.0.1, ::1 or localhost)"
            )
        if mining not in MINING_MODES:
            raise LocalChainError(
                f"unknown mining mode {mining!r}: choose one of {', '.join(MINING_MODES)}"
            )
        if mining == "interval" and interval_ms <= 0:
            raise LocalChainError(f"the mining interval must be positive, got {interval_ms} ms")
        if not 0 <= port <= 65535:
            raise LocalChainError(f"invalid port {port}")

        node = shutil.which("node")
        if node is None:
            raise LocalChainError("Node.js (`node`) is not on PATH: install Node.js 18+")
        bootstrap = self.hardhat_dir / _BOOTSTRAP
        if not (self.hardhat_dir / "hardhat.config.js").is_file():
            raise LocalChainError(f"no hardhat.config.js in {self.hardhat_dir}")
        if not bootstrap.is_file():
            raise LocalChainError(
                f"{self.hardhat_dir / 'node_modules'} has no Hardhat: run npm ci in hardhat-local"
            )

        try:
            existing = self._read_pid_file()
        except LocalChainError:
            existing = None
            self._remove_pid_file()  # unreadable: treat as stale
        if existing is not None:
            if _pid_alive(existing.pid) and _is_hardhat_node(existing.pid, existing.port):
                raise LocalChainError(
                    f"a local chain is already running (pid {existing.pid}, {existing.url}); "
                    "stop it first"
                )
            self._remove_pid_file()  # stale

        if port != 0 and _port_in_use(host, port):
            raise LocalChainError(f"port {port} on {host} is already in use")

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalChainError(f"cannot create {self.run_dir}: {exc.strerror}") from exc

        env = dict(os.environ)
        env.pop("FORCE_COLOR", None)
        env.update(
            {
                "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
                "NO_COLOR": "1",
                "QNODE_MINING": mining,
                "QNODE_MINING_INTERVAL_MS": str(interval_ms),
            }
        )
        # A free port can be taken between choosing it and Hardhat binding it (other test
        # sessions, outgoing connections): when the caller let us choose, choose again.
        attempts = _PORT_ATTEMPTS if port == 0 else 1
        for attempt in range(1, attempts + 1):
            chosen = free_port(host) if port == 0 else port
            try:
                return self._launch(
                    [node, str(bootstrap), "node", "--hostname", host, "--port", str(chosen)],
                    env,
                    _PidRecord(
                        pid=0,
                        port=chosen,
                        host=host,
                        url=_url(host, chosen),
                        mining=mining,
                        interval_ms=interval_ms,
                        log_file=self.log_file,
                    ),
                    timeout,
                )
            except _PortTakenError:
                if attempt >= attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(
        self, args: list[str], env: dict[str, str], planned: _PidRecord, timeout: float
    ) -> LocalChainStatus:
        pid = _spawn(args, self.hardhat_dir, env, self.log_file)
        record = replace(planned, pid=pid)
        self._last_start = (record.port, record.host, record.mining, record.interval_ms)
        self._write_pid_file(record)

        deadline = time.monotonic() + timeout
        while True:
            code = _exit_code(pid)
            if code is not None:
                self._remove_pid_file()
                line = _last_log_line(self.log_file)
                if "EADDRINUSE" in line:
                    raise _PortTakenError(
                        f"port {record.port} on {record.host} is already in use ({line})"
                    )
                raise LocalChainError(f"Hardhat exited early with code {code}: {line}")
            # Ready once *our* node has logged that it listens (not someone else's on the port)
            # and the endpoint answers.
            if _has_started(self.log_file):
                try:
                    chain_id = _hex_to_int(
                        rpc_call(record.url, "eth_chainId", timeout=1.0), "chainId"
                    )
                    head = _hex_to_int(
                        rpc_call(record.url, "eth_blockNumber", timeout=1.0), "block number"
                    )
                except LocalChainError:
                    pass
                else:
                    return LocalChainStatus(
                        running=True,
                        pid=pid,
                        url=record.url,
                        chain_id=chain_id,
                        head_block=head,
                        log_file=self.log_file,
                        message=f"started (pid {pid}, {record.url}, mining {record.mining})",
                    )
            if time.monotonic() >= deadline:
                self._kill(pid, record.port, timeout=5.0)
                self._remove_pid_file()
                raise LocalChainError(
                    f"Hardhat did not answer on {record.url} within {timeout:g} s "
                    f"(last log line: {_last_log_line(self.log_file)})"
                )
            time.sleep(_POLL_SECONDS)

    # -- stop --------------------------------------------------------------------------------------

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            try:
                own_group = os.getpgid(pid) == pid
            except ProcessLookupError:
                return
            if own_group:
                os.killpg(pid, sig)  # the node was started as a session leader: take its children
            else:
                os.kill(pid, sig)

    def _kill(self, pid: int, port: int | None, timeout: float) -> None:
        if not _pid_alive(pid) or not _is_hardhat_node(pid, port):
            return
        self._signal(pid, signal.SIGTERM)
        if self._wait_gone(pid, timeout):
            return
        if _pid_alive(pid) and _is_hardhat_node(pid, port):
            self._signal(pid, signal.SIGKILL)
        if not self._wait_gone(pid, 5.0):
            raise LocalChainError(f"Hardhat (pid {pid}) did not exit after SIGKILL")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the node named by the PID file (SIGTERM, then SIGKILL after ``timeout``).

        Returns False when nothing was running (a stale PID file is removed). A PID that now belongs
        to another program is never signalled.
        """
        try:
            record = self._read_pid_file()
        except LocalChainError:
            self._remove_pid_file()
            return False
        if record is None:
            return False
        if not (_pid_alive(record.pid) and _is_hardhat_node(record.pid, record.port)):
            self._remove_pid_file()
            return False
        self._kill(record.pid, record.port, timeout)
        self._remove_pid_file()
        return True

    # -- status / restart --------------------------------------------------------------------------

    def status(self) -> LocalChainStatus:
        """Whether the node runs, and its chainId and head block when it answers."""
        try:
            record = self._read_pid_file()
        except LocalChainError as exc:
            return LocalChainStatus(False, None, None, None, None, None, str(exc))
        if record is None:
            return LocalChainStatus(
                False, None, None, None, None, None, f"not running (no PID file in {self.run_dir})"
            )
        stale = None
        if not _pid_alive(record.pid):
            stale = "has exited"
        elif not _is_hardhat_node(record.pid, record.port):
            stale = "is not a Hardhat node"
        if stale is not None:
            message = f"not running: stale PID file (process {record.pid} {stale})"
            return LocalChainStatus(
                False, record.pid, record.url, None, None, record.log_file, message
            )
        try:
            chain_id = _hex_to_int(rpc_call(record.url, "eth_chainId"), "chainId")
            head = _hex_to_int(rpc_call(record.url, "eth_blockNumber"), "block number")
        except LocalChainError as exc:
            return LocalChainStatus(
                True,
                record.pid,
                record.url,
                None,
                None,
                record.log_file,
                f"process {record.pid} runs but does not answer: {exc}",
            )
        return LocalChainStatus(
            True,
            record.pid,
            record.url,
            chain_id,
            head,
            record.log_file,
            f"running (pid {record.pid}, {record.url}, mining {record.mining})",
        )

    def restart(self, timeout: float = 60.0) -> LocalChainStatus:
        """Stop the node if it runs, then start a fresh (empty) chain on the same port/mining."""
        try:
            record = self._read_pid_file()
        except LocalChainError:
            record = None
        if record is not None:
            port, host, mining, interval_ms = (
                record.port,
                record.host,
                record.mining,
                record.interval_ms,
            )
        elif self._last_start is not None:
            port, host, mining, interval_ms = self._last_start
        else:
            port, host, mining, interval_ms = DEFAULT_PORT, "127.0.0.1", "auto", 1000
        self.stop()
        _wait_port_free(host, port, PORT_RELEASE_S)
        return self.start(
            port=port, host=host, mining=mining, interval_ms=interval_ms, timeout=timeout
        )


def _wait_port_free(host: str, port: int, timeout: float) -> None:
    """Wait while ``port`` is taken: the stopped node's sockets may linger a moment, and on a busy
    machine an outgoing connection can hold it as its ephemeral port; start() then says so."""
    deadline = time.monotonic() + timeout
    while _port_in_use(host, port) and time.monotonic() < deadline:
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------
# Command line


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where the PID and log files live (default: <repo>/.qnode/chain)",
    )
    common.add_argument(
        "--hardhat-dir", type=Path, default=None, help="the hardhat-local directory"
    )
    parser = _Parser(prog="scripts/chain", description="The local Hardhat consortium chain.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="start|stop|status")
    start = commands.add_parser("start", parents=[common], help="start the local chain")
    start.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    start.add_argument("--host", default="127.0.0.1", help="a loopback address")
    start.add_argument("--mining", choices=MINING_MODES, default="auto")
    start.add_argument("--interval-ms", type=int, default=1000)
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for RPC")
    stop = commands.add_parser("stop", parents=[common], help="stop the local chain")
    stop.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    commands.add_parser("status", parents=[common], help="show the local chain's state")
    return parser


def _describe(status: LocalChainStatus) -> str:
    if not status.running:
        return status.message
    parts = [status.message]
    if status.chain_id is not None:
        parts.append(f"chainId {status.chain_id}")
    if status.head_block is not None:
        parts.append(f"head block {status.head_block}")
    if status.log_file is not None:
        parts.append(f"log {status.log_file}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``start``, ``stop``, ``status``: exit 0 (``status``: 3 when not running), 1 on error."""
    try:
        args = _build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"chain: error: {exc}", file=sys.stderr)
        return 1
    chain = LocalChain(args.run_dir or default_run_dir(), args.hardhat_dir)
    try:
        if args.command == "start":
            status = chain.start(
                port=args.port,
                host=args.host,
                mining=args.mining,
                interval_ms=args.interval_ms,
                timeout=args.timeout,
            )
            print(_describe(status))
            return 0
        if args.command == "stop":
            stopped = chain.stop(timeout=args.timeout)
            print("stopped" if stopped else "not running")
            return 0
        status = chain.status()
        print(_describe(status))
        return 0 if status.running else 3
    except LocalChainError as exc:
        print(f"chain: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chain: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
