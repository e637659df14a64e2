"""The local consortium demo (``scripts/demo``, ``qnode demo``): a Hardhat chain, four member nodes
as separate processes (each ``qnode run`` and ``qnode serve`` with its own directory, SQLite
store, keys, oracle key and API port, on loopback), an MQTT broker, and the shop floors
(coating-line PLC over OPC UA, the plant's MQTT devices, the ERP, the refiner's crystallizer);
then the scenario of :mod:`node.demo_scenario`, and the dashboard's URL.

Every run starts fresh in its directory (``.qnode/demo`` by default); a demo still running there
is refused, and processes a killed demo left behind are stopped first. Ctrl-C (SIGINT) or
SIGTERM stops everything: the children are stopped in order and their PIDs checked.

The pieces (members and provisioning, processes, plant, records, scenario) are the
``node/demo_*.py`` modules; :class:`DemoConsortium` puts them together, and tests drive it
in-process with a short scenario.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from node.chain.connection import ChainConnection
from node.chain.localnode import LocalChain, free_port
from node.demo_members import (
    CATHODE,
    CELLS,
    DEMO_PASSWORD,
    LAB,
    MEMBERS,
    REFINER,
    DemoMember,
    Layout,
    Provisioned,
    member_dir,
    provision,
)
from node.demo_plant import CoatingLine, PlantFleet, start_erp
from node.demo_processes import (
    DemoError,
    ManagedProcess,
    Mosquitto,
    ProcessTable,
    broker_answers,
    prepare_mqtt_session,
    qnode_process,
    wait_http,
)
from node.demo_scenario import FULL, SHORT, Scenario, ScenarioSize, Step
from node.oracles.simulators.erp import ErpSimulator

__all__ = [
    "DEMO_PASSWORD",
    "MEMBERS",
    "DemoConsortium",
    "DemoError",
    "member_dir",
    "run_demo",
    "scenario_size",
]

MACHINE_BROKER = "mqtt://127.0.0.1:1883"
SESSION_EXPIRY_S = 3600
START_TIMEOUT_S = 120.0
SIZES = {"full": FULL, "short": SHORT}

Say = Callable[[str], None]


def scenario_size(name: str) -> ScenarioSize | None:
    """``full``, ``short`` or ``none`` (None: no scenario, just the running consortium)."""
    if name == "none":
        return None
    try:
        return SIZES[name]
    except KeyError:
        raise DemoError(f"unknown scenario {name!r}: full, short or none") from None


@dataclass(frozen=True)
class MemberProcesses:
    run: ManagedProcess
    serve: ManagedProcess


class DemoConsortium:
    """The running demo: ``start()``, then the scenario, then ``stop()`` (also a context manager).

    ``members`` holds one in-process node per member: the demo's operators (a quality engineer
    approving an 8D discipline, the lab verifying effectiveness) act through them, while each
    member's own node runs as its own processes."""

    def __init__(
        self,
        root: Path,
        say: Say = lambda _line: None,
        mqtt_url: str | None = None,
        chain_connection: ChainConnection | None = None,
    ) -> None:
        self.root = root.resolve()
        self.say = say
        self.requested_mqtt = mqtt_url
        self.chain_connection = chain_connection
        self.table = ProcessTable(self.root)
        self.chain: LocalChain | None = None
        self.mosquitto: Mosquitto | None = None
        self.line: CoatingLine | None = None
        self.erp: ErpSimulator | None = None
        self.fleet: PlantFleet | None = None
        self.layout: Layout | None = None
        self.members: Provisioned | None = None
        self.processes: dict[str, MemberProcesses] = {}
        self.started_at = time.monotonic()
        self.timings: dict[str, float] = {}

    def __enter__(self) -> DemoConsortium:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self._fresh_directory()
        self.chain = LocalChain(self.root / "chain")
        status = self.chain.start(port=0)
        assert status.url is not None
        self.say(f"Hardhat chain at {status.url} (chainId {status.chain_id}, pid {status.pid})")
        mqtt_url = self._broker()
        self.line = CoatingLine()
        self.say(f"coating-line PLC (OPC UA) at {self.line.endpoint}")
        ports = {m.key: free_port() for m in MEMBERS}
        erp_port = free_port()
        self.layout = Layout.new(
            self.root,
            status.url,
            mqtt_url,
            ports,
            self.line.endpoint,
            f"http://127.0.0.1:{erp_port}/purchase-orders",
        )
        self.erp = start_erp(self.layout.erp_secret, erp_port)
        self.say(f"ERP webhook receiver at {self.erp.url}")
        self.fleet = PlantFleet(
            mqtt_url,
            f"qnode-demo-{self.layout.run_id}-fleet",
            self.layout.topic_prefix(CELLS),
            self.layout.topic_prefix(REFINER),
        )
        self.members = provision(
            self.layout, self._oracle_sections(), self.chain_connection, self.say
        )
        self.timings["provisioned_s"] = time.monotonic() - started
        for member in (CELLS, REFINER):
            prepare_mqtt_session(
                mqtt_url,
                self.layout.mqtt_client_id(member),
                self.fleet.topic_filters()[member.key],
                SESSION_EXPIRY_S,
            )
        self.fleet.start()
        self.say(
            "plant devices publishing: 2 environment sensors, 2 incoming-inspection gauges "
            "(Aster Cells), crystallizer CR-2 (Andes Lithium Refining)"
        )
        for member in MEMBERS:
            self.processes[member.key] = self._member_processes(member)
        for member in MEMBERS:
            self.processes[member.key].run.start()
            self.processes[member.key].serve.start()
        self._record_processes()
        for member in MEMBERS:
            serve = self.processes[member.key].serve
            wait_http(f"{self.layout.api_url(member)}/api/v1/health", serve, START_TIMEOUT_S)
            run = self.processes[member.key].run
            if not run.running:
                raise DemoError(f"{run.name} exited at start:\n{run.log_tail()}")
            self.say(
                f"{member.name} ({member.title}): node pid {run.pid}, API pid {serve.pid} on "
                f"{self.layout.api_url(member)}"
            )
        self.timings["started_s"] = time.monotonic() - started
        self.say(f"consortium up in {self.timings['started_s']:.1f} s")

    def _fresh_directory(self) -> None:
        running = self.table.running_demo()
        if running is not None:
            raise DemoError(
                f"a demo is already running in {self.root} (pid {running}): stop it with Ctrl-C "
                f"in its terminal or `kill {running}`"
            )
        if self.root.exists():
            self.table.stop_leftovers(self.say)
            if LocalChain(self.root / "chain").stop():
                self.say("stopped the chain an earlier demo left running")
            shutil.rmtree(self.root)
            self.say(f"starting fresh: removed the previous demo in {self.root}")
        self.root.mkdir(parents=True)
        self.table.write([], {"state": "starting"})

    def _broker(self) -> str:
        if self.requested_mqtt is not None:
            if not broker_answers(self.requested_mqtt):
                raise DemoError(f"no MQTT broker answers at {self.requested_mqtt}")
            self.say(f"MQTT broker {self.requested_mqtt}")
            return self.requested_mqtt
        if broker_answers(MACHINE_BROKER):
            self.say(f"MQTT: the machine's broker at {MACHINE_BROKER}")
            return MACHINE_BROKER
        self.mosquitto = Mosquitto(self.root / "mosquitto")
        self.mosquitto.start()
        self.say(
            f"MQTT: Mosquitto started at {self.mosquitto.url} (pid {self.mosquitto.process.pid})"
        )
        return self.mosquitto.url

    def _oracle_sections(self) -> dict[str, dict[str, Any]]:
        assert self.line is not None and self.fleet is not None and self.layout is not None
        layout = self.layout
        cells = self.fleet.cells_oracle_settings()
        plc = self.line.oracle_settings()
        cells["quantities"] = {**cells["quantities"], **plc["quantities"]}
        cells["devices"] = {**cells["devices"], **plc["devices"]}
        cells["opcua"] = plc["opcua"]
        refiner = self.fleet.refiner_oracle_settings()
        for member, section in ((CELLS, cells), (REFINER, refiner)):
            section["mqtt"] |= {
                "url": layout.mqtt_url,
                "client_id": layout.mqtt_client_id(member),
                "session_expiry_s": SESSION_EXPIRY_S,
            }
        return {CELLS.key: cells, REFINER.key: refiner}

    def _member_processes(self, member: DemoMember) -> MemberProcesses:
        assert self.layout is not None
        config = str(self.layout.config_file(member))
        logs = member_dir(self.root, member) / "logs"
        return MemberProcesses(
            qnode_process(
                f"{member.key} node", ["run", "-c", config], logs / "run.log", DEMO_PASSWORD
            ),
            qnode_process(
                f"{member.key} API", ["serve", "-c", config], logs / "serve.log", DEMO_PASSWORD
            ),
        )

    def _record_processes(self) -> None:
        children = [p for pair in self.processes.values() for p in (pair.run, pair.serve)]
        if self.mosquitto is not None:
            children.append(self.mosquitto.process)
        self.table.write(children, {"state": "running"})

    # -- during the demo -----------------------------------------------------------------------

    def scenario(self, size: ScenarioSize, say: Say | None = None) -> Scenario:
        assert self.layout and self.members and self.line and self.fleet and self.erp
        return Scenario(
            self.layout, self.members, self.line, self.fleet, self.erp, size, say or self.say
        )

    def node_process(self, member: DemoMember) -> ManagedProcess:
        return self.processes[member.key].run

    def restart_node(self, member: DemoMember) -> ManagedProcess:
        """Start ``member``'s ``qnode run`` again (after it stopped or was killed)."""
        process = self.node_process(member)
        process.stop()
        process.start()
        self._record_processes()
        return process

    def dead_processes(self) -> list[ManagedProcess]:
        return [
            p for pair in self.processes.values() for p in (pair.run, pair.serve) if not p.running
        ]

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything this demo started, in order; what is still alive afterwards (PIDs
        checked) as lines (empty when every process is gone)."""
        if self.fleet is not None:
            with contextlib.suppress(Exception):
                self.fleet.close()
            self.fleet = None
        children = [p for pair in self.processes.values() for p in (pair.run, pair.serve)]
        threads = [threading.Thread(target=p.stop) for p in children if p.process is not None]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if self.members is not None:
            self.members.close()
        if self.line is not None:
            with contextlib.suppress(Exception):
                self.line.close()
            self.line = None
        if self.erp is not None:
            self.erp.stop()
            self.erp = None
        if self.mosquitto is not None:
            self.mosquitto.process.stop()
        chain_pid = None
        if self.chain is not None:
            chain_pid = self.chain.status().pid
            self.chain.stop()
        leftovers = [f"{p.name} (pid {p.pid})" for p in children if p.running]
        if self.mosquitto is not None and self.mosquitto.process.running:
            leftovers.append(f"mosquitto (pid {self.mosquitto.process.pid})")
        if chain_pid is not None and _pid_alive(chain_pid):
            leftovers.append(f"hardhat (pid {chain_pid})")
        if self.root.exists():
            self.table.write([], {"state": "stopped"})
        return leftovers

    # -- what to open ---------------------------------------------------------------------------

    def dashboard(self, facts: dict[str, Any]) -> list[str]:
        assert self.layout is not None
        layout = self.layout
        lines = [
            f"dashboard (auditor explorer): {layout.api_url(CELLS)}/explorer",
            f"  sign in with the demo authority token: {layout.authority_token}",
        ]
        for key, title in (("cell_a_url", "a battery cell"), ("cell_b_url", "a faded cell")):
            if key in facts:
                lines.append(f"consumer page of {title}: {facts[key]}")
        lines += [
            f"supplier portal of {CATHODE.name}: {layout.api_url(CATHODE)}/portal "
            f"(portal token {layout.portal_token})",
            f"{LAB.name}'s explorer: {layout.api_url(LAB)}/explorer",
            f"members' directories, stores, keys and logs: {self.root}/<member>/",
        ]
        return lines


def _pid_alive(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


@contextlib.contextmanager
def interruptible() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the yielded event (and interrupt a wait on it) instead of killing
    the demo half-way; the previous handlers come back afterwards."""
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Display:
    """Progress lines: a rich progress display on a terminal, plain timestamped lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self._task: TaskID | None = None
        self._step_started = 0.0
        if console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.progress.start()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(Text("  " + text))
        else:
            elapsed = time.monotonic() - self.started
            self.console.print(Text(f"[{elapsed:6.1f} s] {text}"))

    def phase(self, title: str) -> None:
        self._finish()
        self._step_started = time.monotonic()
        if self.progress is not None:
            self._task = self.progress.add_task(title, total=1)
        else:
            self.line(f"== {title}")

    def step(self, step: Step, state: str) -> None:
        if state == "running":
            self.phase(step.title)
        else:
            self._finish()

    def _finish(self) -> None:
        if self.progress is not None and self._task is not None:
            self.progress.update(self._task, completed=1)
            self.progress.stop_task(self._task)
            self._task = None

    def close(self) -> None:
        self._finish()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def run_demo(
    root: Path,
    scenario: str = "full",
    mqtt_url: str | None = None,
    exit_when_done: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """``qnode demo``: start the consortium, play the scenario, print the dashboard's URLs, and
    run until Ctrl-C (or at once, with ``exit_when_done``); everything stopped on the way out.
    Returns the scenario's facts."""
    size = scenario_size(scenario)
    console = console or Console(highlight=False)
    display = Display(console)
    facts: dict[str, Any] = {}
    demo = DemoConsortium(root, display.line, mqtt_url)
    timings: dict[str, float] = {}
    try:
        with interruptible() as stopped:
            try:
                display.phase("Starting the consortium: chain, broker, plant, four member nodes")
                demo.start()
                timings.update(demo.timings)
                if size is not None:
                    played = demo.scenario(size, display.line)
                    facts = played.facts
                    began = time.monotonic()
                    played.run(on_step=display.step)
                    timings["scenario_s"] = time.monotonic() - began
                    display.line(f"scenario played in {timings['scenario_s']:.1f} s")
                display.close()
                console.print()
                for line in demo.dashboard(facts):
                    console.print(Text(line))
                if not exit_when_done:
                    console.print(Text("\nthe consortium keeps running: Ctrl-C stops it"))
                    _watch(demo, stopped, console)
            except KeyboardInterrupt:
                display.close()
                console.print(Text("\ninterrupted: stopping the demo"))
    finally:
        display.close()
        ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            leftovers = demo.stop()
        finally:
            for sig, old in ignored.items():
                signal.signal(sig, old)
        if leftovers:
            console.print(Text(f"still running after the stop: {', '.join(leftovers)}"))
        else:
            console.print(Text("demo stopped: every process it started has exited"))
    facts["timings"] = timings
    return facts


def _watch(demo: DemoConsortium, stopped: threading.Event, console: Console) -> None:
    """Until stopped: say once when a member process exits on its own."""
    reported: set[str] = set()
    while not stopped.wait(2.0):
        for process in demo.dead_processes():
            if process.name not in reported:
                reported.add(process.name)
                console.print(Text(f"{process.name} exited:\n{process.log_tail(800)}"))
