"""The demo's processes: each member's ``qnode run`` and ``qnode serve``, and Mosquitto when the
machine has no broker; how they are started, watched and stopped, and how a run's processes are
found again (``processes.json``) when an earlier demo was killed before it could stop them.

Every child runs in its own session (a Ctrl-C in the terminal reaches the demo alone, which then
stops the children in order) and, on Linux, is asked by the kernel to terminate when the demo
process dies (``PR_SET_PDEATHSIG``), so a demo killed outright leaves nothing behind either.
A child is stopped with SIGINT (``qnode run`` and uvicorn finish cleanly), then SIGTERM, then
SIGKILL; a PID is only ever signalled while its command line is still the one the demo started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from node.chain.localnode import free_port
from node.errors import QnodeError
from node.keys import PASSWORD_ENV

__all__ = [
    "DemoError",
    "ManagedProcess",
    "Mosquitto",
    "ProcessTable",
    "broker_answers",
    "prepare_mqtt_session",
    "wait_http",
]

PROCESSES_FILE = "processes.json"
STOP_GRACE_S = 8.0
_PR_SET_PDEATHSIG = 1


class DemoError(QnodeError):
    """The demo could not start, or a step of its scenario did not happen in time. (Kept beside
    the demo rather than in node/errors.py: nothing but the demo raises it.)"""

    exit_code = 20


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")] or None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


@dataclass
class ManagedProcess:
    """One child process: its command, environment and log file."""

    name: str
    argv: Sequence[str]
    log_file: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it (again). Call this from a thread that lives as long as the child should:
        the kernel's parent-death signal follows the thread that started it."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def kill(self) -> None:
        """SIGKILL at once (the fault the demo's tests inject)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL; the exit code (None if it never ran)."""
        process = self.process
        if process is None:
            return None
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait_s)
        return process.wait(10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def record(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "argv": list(self.argv)}


def qnode_process(name: str, args: Sequence[str], log_file: Path, password: str) -> ManagedProcess:
    """``python -m node ARGS`` with the keystore password in its environment."""
    env = {
        **os.environ,
        PASSWORD_ENV: password,
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    env.pop("FORCE_COLOR", None)
    return ManagedProcess(name, [sys.executable, "-m", "node", *args], log_file, env)


class ProcessTable:
    """``processes.json`` in the demo's directory: the demo's PID and its children's, so that a
    new run can tell whether an earlier one is still running, and stop what a killed one left."""

    def __init__(self, root: Path) -> None:
        self.path = root / PROCESSES_FILE

    def write(self, processes: Sequence[ManagedProcess], extra: Mapping[str, object]) -> None:
        data = {
            "demo_pid": os.getpid(),
            "demo_argv": _cmdline(os.getpid()),
            "children": [p.record() for p in processes if p.pid is not None],
            **extra,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
        temporary.replace(self.path)

    def read(self) -> dict[str, object] | None:
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    def running_demo(self) -> int | None:
        """The PID of an earlier demo on this directory that still runs."""
        data = self.read()
        if data is None:
            return None
        pid = data.get("demo_pid")
        if not isinstance(pid, int) or pid == os.getpid() or not _alive(pid):
            return None
        return pid if _cmdline(pid) == data.get("demo_argv") else None

    def stop_leftovers(self, log: Callable[[str], None]) -> int:
        """Stop the children an earlier demo left running (only those whose command line is
        still the one recorded); returns how many."""
        data = self.read()
        stopped = 0
        children = data.get("children") if data else None
        for child in children if isinstance(children, list) else []:
            pid, argv = child.get("pid"), child.get("argv")
            if not isinstance(pid, int) or not _alive(pid) or _cmdline(pid) != argv:
                continue
            log(f"stopping {child.get('name')} (pid {pid}) left by an earlier demo")
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + 5
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(pid):
                    break
            stopped += 1
        return stopped


# -- MQTT ------------------------------------------------------------------------------------


def broker_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an MQTT broker accepts a connection at ``url`` (CONNACK success)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError:
        return False
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    try:
        client.connect(host, port, keepalive=5)
        client.loop_start()
        deadline = time.monotonic() + timeout * 3
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        return client.is_connected()
    except OSError:
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def prepare_mqtt_session(
    url: str, client_id: str, topic_filter: str, session_expiry_s: int, timeout: float = 10.0
) -> None:
    """Open the persistent session a node will resume (its client id, QoS 1 subscription),
    then leave: the broker keeps every message published from now on until the node connects."""
    parts = urlsplit(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry_s
    subscribed: list[bool] = []
    client.on_subscribe = lambda *_args: subscribed.append(True)
    client.connect(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        keepalive=10,
        clean_start=False,
        properties=properties,
    )
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise DemoError(f"the MQTT broker {url} did not accept {client_id}")
            time.sleep(0.02)
        client.subscribe([(topic_filter, SubscribeOptions(qos=1))])
        while not subscribed:
            if time.monotonic() > deadline:
                raise DemoError(f"the MQTT broker {url} did not confirm {topic_filter}")
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()


class Mosquitto:
    """A Mosquitto of the demo's own on a free loopback port (when the machine has no broker)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        binary = shutil.which("mosquitto")
        if binary is None:
            raise DemoError(
                "no MQTT broker answers on 127.0.0.1:1883 and mosquitto is not installed "
                "(apt-get install mosquitto, or pass --mqtt mqtt://HOST:PORT)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 100000",
            "persistence false",
            "log_type error",
            "log_type warning",
        ]
        if os.getuid() == 0:  # started as root, Mosquitto would drop to a user of its own
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.process = ManagedProcess(
            "mosquitto", [binary, "-c", str(config)], directory / "mosquitto.log", dict(os.environ)
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.running:
                raise DemoError(f"mosquitto exited at start: {self.process.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.05)


# -- HTTP ------------------------------------------------------------------------------------


def wait_http(
    url: str,
    process: ManagedProcess,
    timeout: float,
    ready: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
) -> None:
    """Wait until ``url`` answers as ``ready`` wants (while ``process`` runs)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not process.running:
                raise DemoError(f"{process.name} exited at start:\n{process.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if ready(client.get(url)):
                    return
            if time.monotonic() > deadline:
                raise DemoError(f"{process.name} did not answer {url} in {timeout:g} s")
            time.sleep(0.1)
