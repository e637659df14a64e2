"""The ``qnode`` command. Every failure is one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import math
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from node.anchoring.proofs import build_bundle, load_bundle, verify_bundle, verify_store
from node.chain.anchor_registry import AnchorRegistry
from node.chain.consortium import Approval, Consortium, Founder, Role
from node.chain.corrective_action import Case
from node.chain.localnode import LocalChain, default_run_dir
from node.control import spc
from node.control.decisions import Decision, ReplayResult, leaf_paths, replay
from node.errors import (
    ChainUnavailableError,
    ConfigError,
    ControlError,
    KeystoreError,
    ProofError,
    QnodeError,
    RecordError,
    SpcError,
)
from node.keys import DEFAULT_KDF_ITERATIONS, PASSWORD_ENV, hardhat_dev_key, read_keystore
from node.offchain.records import RecordInput
from node.provisioning import CONFIG_FILE, MemberSpec, init_member
from node.runtime import Deployment, Node, NodeStatus, open_store
from node.settings import LOCAL_CHAIN_ID, load_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="qnode: a consortium member's quality-traceability node.",
)
consortium_app = typer.Typer(no_args_is_help=True, help="Members and M-of-N governance.")
oracle_app = typer.Typer(no_args_is_help=True, help="This member's oracle signing keys.")
chain_app = typer.Typer(no_args_is_help=True, help="The local Hardhat consortium chain.")
app.add_typer(consortium_app, name="consortium")
app.add_typer(oracle_app, name="oracle")
anchor_app = typer.Typer(no_args_is_help=True, help="Merkle batches anchored on-chain.")
app.add_typer(chain_app, name="chain")
app.add_typer(anchor_app, name="anchor")
simulate_app = typer.Typer(no_args_is_help=True, help="Shop-floor simulators for demos and tests.")
epcis_app = typer.Typer(no_args_is_help=True, help="EPCIS 2.0 documents out of and into the store.")
attest_app = typer.Typer(no_args_is_help=True, help="EIP-712 attestations of critical records.")
app.add_typer(simulate_app, name="simulate")
app.add_typer(epcis_app, name="epcis")
app.add_typer(attest_app, name="attest")

# Piped output keeps whole addresses on one line rather than folding them at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="QNODE_CONFIG", help="The member's config file."),
]
DEFAULT_CONFIG = Path(CONFIG_FILE)


def main() -> None:
    """Console-script entry point: errors become one line and an exit code."""
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its endpoint chatter is not for us
    try:
        app()
    except QnodeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    print(f"qnode: error: {message}", file=sys.stderr)
    sys.exit(code)


def _password(confirm: bool = False) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise KeystoreError(f"no keystore password: set {PASSWORD_ENV} or run in a terminal")
    return str(typer.prompt("Keystore password", hide_input=True, confirmation_prompt=confirm))


def _open(config: Path) -> Node:
    return Node.open(load_settings(config), _password())


def _duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match:
        raise ConfigError(f"bad duration {text!r}: use e.g. 3600, 90m, 12h or 7d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# -- init and status -----------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Option(help="The member's name.")],
    role: Annotated[str, typer.Option(help="manufacturer, supplier, lab or auditor.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the member.")] = Path(
        "."
    ),
    endpoint: Annotated[str, typer.Option(help="This node's API URL.")] = "http://127.0.0.1:8600",
    rpc_url: Annotated[str, typer.Option(help="JSON-RPC URL or 'embedded'.")] = (
        "http://127.0.0.1:8545"
    ),
    chain_id: Annotated[int, typer.Option(help="The consortium chainId.")] = LOCAL_CHAIN_ID,
    dev_account: Annotated[
        int | None, typer.Option(help="Use Hardhat's public demo account N (local chain only).")
    ] = None,
    import_keystore: Annotated[
        Path | None, typer.Option(help="Re-encrypt the key of this existing keystore.")
    ] = None,
    kdf_iterations: Annotated[int, typer.Option(hidden=True)] = DEFAULT_KDF_ITERATIONS,
) -> None:
    """Write a member's config and a new encrypted keystore."""
    password = _password(confirm=True)
    account = None
    if dev_account is not None:
        account = hardhat_dev_key(dev_account)
    elif import_keystore is not None:
        account = read_keystore(import_keystore, password)
    spec = MemberSpec(name, role, endpoint, rpc_url, chain_id)
    settings = init_member(directory, spec, password, account, kdf_iterations)
    address = read_keystore(settings.keystore_path, password).address
    out.print(f"wrote {directory / CONFIG_FILE} and {settings.keystore_path}")
    out.print(f"member address {address}")


@app.command()
def status(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Chain, head block, this member, its oracles and the contract addresses."""
    _print_status(_open(config).status())


def _print_status(status: NodeStatus) -> None:
    chain = status.chain
    out.print(f"[bold]chain[/]      {chain.url} chainId {chain.chain_id} ({chain.client})")
    out.print(f"[bold]head[/]       block {chain.head_block}" + ("  PoA" if chain.poa else ""))
    out.print(f"[bold]account[/]    {status.address} ({status.balance_wei / 10**18:.4f} ETH)")
    if status.consortium is None or status.member is None:
        out.print("[bold]consortium[/] not deployed (run `qnode consortium deploy`)")
        return
    out.print(
        f"[bold]consortium[/] {status.consortium} ({status.member_count} members, "
        f"threshold {status.threshold})"
    )
    member = status.member
    state = "active" if member.active else "NOT a member"
    out.print(f"[bold]member[/]     {member.name or '-'} ({member.role.label}), {state}")
    for oracle in status.oracles:
        out.print(
            f"[bold]oracle[/]     {oracle.oracle} {'active' if oracle.active else 'inactive'}"
        )


# -- consortium ----------------------------------------------------------------------------


@consortium_app.command("deploy")
def consortium_deploy(
    config: ConfigOption = DEFAULT_CONFIG,
    founder: Annotated[
        list[str] | None,
        typer.Option(help="ADDRESS,ROLE,NAME,ENDPOINT of another founder (repeatable)."),
    ] = None,
    threshold: Annotated[int, typer.Option(help="Approvals needed (M of N).")] = 1,
    proposal_ttl: Annotated[str, typer.Option(help="How long proposals stay open.")] = "7d",
) -> None:
    """Deploy Consortium.sol with this member (and any --founder) as founding members."""
    node = _open(config)
    me = node.settings.member
    founders = [Founder(node.address, Role.parse(me.role), me.name, me.endpoint)]
    founders += [_founder(text) for text in founder or []]
    consortium, receipt = Consortium.deploy(
        node.sender, founders, threshold, _duration(proposal_ttl)
    )
    node.record_deployment("Consortium", Deployment.of(consortium.address, receipt))
    out.print(
        f"Consortium deployed at {consortium.address} in block {receipt.block_number} "
        f"({receipt.gas_used} gas), {len(founders)} founders, threshold {threshold}"
    )


def _founder(text: str) -> Founder:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not re.fullmatch(r"0x[0-9a-fA-F]{40}", parts[0]):
        raise ConfigError(f"bad --founder {text!r}: expected ADDRESS,ROLE,NAME,ENDPOINT")
    return Founder(parts[0], Role.parse(parts[1]), parts[2], parts[3])


@consortium_app.command("members")
def consortium_members(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List the active members."""
    consortium = _open(config).consortium()
    members = consortium.members()
    table = Table("name", "role", "endpoint", "admitted (UTC)")
    table.add_column("address", min_width=42, no_wrap=True)
    for member in members:
        table.add_row(
            member.name,
            member.role.label,
            member.endpoint,
            _utc(member.admitted_at),
            member.address,
        )
    out.print(table)
    out.print(f"threshold {consortium.threshold()} of {len(members)}")


@consortium_app.command("proposals")
def consortium_proposals(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List governance proposals."""
    consortium = _open(config).consortium()
    table = Table("id", "kind", "approvals", "expires (UTC)", "state")
    table.add_column("subject", min_width=42, no_wrap=True)
    threshold = consortium.threshold()
    for p in consortium.proposals():
        state = "executed" if p.executed else "open"
        table.add_row(
            str(p.proposal_id),
            p.kind.name.lower(),
            f"{p.approvals}/{threshold}",
            _utc(p.expires_at),
            state,
            p.subject,
        )
    out.print(table)


def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


@consortium_app.command("propose")
def consortium_propose(
    kind: Annotated[str, typer.Argument(help="admit or remove")],
    subject: Annotated[str, typer.Argument(help="The member's address.")],
    config: ConfigOption = DEFAULT_CONFIG,
    role: Annotated[str, typer.Option(help="Role of a member to admit.")] = "",
    name: Annotated[str, typer.Option(help="Name of a member to admit.")] = "",
    endpoint: Annotated[str, typer.Option(help="API URL of a member to admit.")] = "",
) -> None:
    """Propose admitting or removing a member; your own approval counts at once."""
    consortium = _open(config).consortium()
    if kind == "admit":
        result = consortium.propose_admission(subject, Role.parse(role), name, endpoint)
    elif kind == "remove":
        result = consortium.propose_removal(subject)
    else:
        raise ConfigError(f"unknown proposal kind {kind!r}: use admit or remove")
    _print_approval(result)


@consortium_app.command("approve")
def consortium_approve(
    proposal_id: Annotated[int, typer.Argument(help="The proposal id.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Approve a proposal; it executes when the threshold is reached."""
    _print_approval(_open(config).consortium().approve(proposal_id))


def _print_approval(result: Approval) -> None:
    done = "executed" if result.executed else "waiting for approvals"
    out.print(f"proposal {result.proposal_id}: {result.approvals} approval(s), {done}")


# -- oracle keys ---------------------------------------------------------------------------


@oracle_app.command("add")
def oracle_add(
    config: ConfigOption = DEFAULT_CONFIG,
    address: Annotated[
        str | None, typer.Option(help="Register an externally held key instead of a new one.")
    ] = None,
    fund: Annotated[
        float, typer.Option(help="ETH to send the key for its gas (0 on free-gas chains).")
    ] = 0.0,
    kdf_iterations: Annotated[int, typer.Option(hidden=True)] = DEFAULT_KDF_ITERATIONS,
) -> None:
    """Create an oracle key (kept encrypted here) and register it for this member."""
    node = _open(config)
    oracle = address or node.create_oracle_key(_password(), kdf_iterations).address
    receipt = node.consortium().register_oracle(oracle)
    out.print(f"oracle {oracle} registered in block {receipt.block_number}")
    if fund > 0:
        wei = int(fund * 10**18)
        node.sender.transfer(oracle, wei, label="fund oracle")
        out.print(f"sent {fund} ETH to {oracle} for gas")


@oracle_app.command("rotate")
def oracle_rotate(
    old: Annotated[str, typer.Argument(help="The oracle key to retire.")],
    config: ConfigOption = DEFAULT_CONFIG,
    new: Annotated[str | None, typer.Option(help="An externally held replacement key.")] = None,
    kdf_iterations: Annotated[int, typer.Option(hidden=True)] = DEFAULT_KDF_ITERATIONS,
) -> None:
    """Replace an oracle key in one transaction."""
    node = _open(config)
    replacement = new or node.create_oracle_key(_password(), kdf_iterations).address
    receipt = node.consortium().rotate_oracle(old, replacement)
    out.print(f"oracle {old} rotated to {replacement} in block {receipt.block_number}")


@oracle_app.command("revoke")
def oracle_revoke(
    oracle: Annotated[str, typer.Argument(help="The oracle key to revoke.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Revoke an oracle key for good."""
    receipt = _open(config).consortium().revoke_oracle(oracle)
    out.print(f"oracle {oracle} revoked in block {receipt.block_number}")


@oracle_app.command("list")
def oracle_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """This member's oracle keys: registered on-chain, held in the local keystore, or both."""
    node = _open(config)
    held = set(node.local_oracle_addresses())
    table = Table("state", "key held here")
    table.add_column("oracle", min_width=42, no_wrap=True)
    for oracle in node.status().oracles:
        state = "active" if oracle.active else "inactive"
        table.add_row(state, "yes" if oracle.oracle in held else "no", oracle.oracle)
    out.print(table)


# -- records, anchoring, proofs ------------------------------------------------------------


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSON lines: {type, fields, observed_at_us[, id]}.")],
    config: ConfigOption = DEFAULT_CONFIG,
    batch_size: Annotated[int, typer.Option(help="Records per database transaction.")] = 5000,
) -> None:
    """Store records through the batch API (each batch all or nothing) and queue them."""
    store = _open(config).store()
    lines = _read_lines(file)
    stored = 0
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("storing", total=len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = [
                _record_input(file, start + i, line)
                for i, line in enumerate(lines[start : start + batch_size])
            ]
            stored += len(store.add_records(chunk))
            progress.update(task, advance=len(chunk))
    out.print(f"stored {stored} records from {file}")


def _read_lines(file: Path) -> list[str]:
    try:
        return [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from exc


def _record_input(file: Path, index: int, line: str) -> RecordInput:
    try:
        item = json.loads(line)
        return RecordInput(
            item["type"], item["fields"], int(item["observed_at_us"]), item.get("id")
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{file} line {index + 1}: not a record ({exc})") from exc


@anchor_app.command("deploy")
def anchor_deploy(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Deploy AnchorRegistry.sol for this consortium."""
    node = _open(config)
    consortium = node.consortium()
    registry, receipt = AnchorRegistry.deploy(node.sender, consortium.address)
    node.record_deployment("AnchorRegistry", Deployment.of(registry.address, receipt))
    out.print(f"AnchorRegistry deployed at {registry.address} in block {receipt.block_number}")


@anchor_app.command("run")
def anchor_run(
    config: ConfigOption = DEFAULT_CONFIG,
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    force: Annotated[bool, typer.Option(help="Close a partial batch at once.")] = False,
) -> None:
    """Close batches and anchor them with this member's oracle key, until interrupted."""
    node = _open(config)
    batcher = node.batcher()
    registry = node.anchor_registry(node.oracle_sender())
    while True:
        closed = batcher.close_batches(force=force)
        try:
            anchored = batcher.anchor_pending(registry)
            batcher.track_confirmations(
                node.connection.head_block(), node.settings.chain.confirmations
            )
            state = f"anchored {len(anchored)}"
        except ChainUnavailableError as exc:
            state = f"chain unavailable, batches stay queued ({exc})"
        out.print(f"closed {len(closed)} batch(es), {state}, {batcher.queued()} record(s) queued")
        if once:
            return
        time.sleep(min(node.settings.anchoring.max_age_s, 5.0))


@anchor_app.command("status")
def anchor_status(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Queued records and batches by state."""
    batcher = _open(config).batcher()
    table = Table("status", "leaves", "block", "root")
    table.add_column("batch", min_width=66, no_wrap=True)
    for batch in batcher.batches():
        table.add_row(
            batch.status,
            str(batch.leaf_count),
            str(batch.block_number or "-"),
            batch.root[:18] + "…",
            batch.batch_id,
        )
    out.print(table)
    out.print(f"{batcher.queued()} record(s) queued in the outbox")


@anchor_app.command("dump")
def anchor_dump(
    batch_id: Annotated[str, typer.Argument(help="The batch id.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Print a batch's tree in @openzeppelin/merkle-tree's standard-v1 dump format."""
    batcher = _open(config).batcher()
    print(json.dumps(batcher.manifest(batcher.batch(batch_id)).dump(), indent=2))


@app.command()
def proof(
    record_id: Annotated[str, typer.Argument(help="The record id.")],
    config: ConfigOption = DEFAULT_CONFIG,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """Write a self-contained proof bundle for an anchored record."""
    node = _open(config)
    bundle = json.dumps(build_bundle(node.store(), node.batcher(), record_id), indent=2)
    if output is None:
        print(bundle)
    else:
        output.write_text(bundle + "\n", encoding="utf-8")
        out.print(f"wrote {output}")


@app.command("verify-bundle")
def verify_bundle_command(
    file: Annotated[Path, typer.Argument(help="A proof bundle.")],
    config: ConfigOption = DEFAULT_CONFIG,
    offline: Annotated[bool, typer.Option(help="Check the hashes only, not the chain.")] = False,
) -> None:
    """Check a proof bundle offline, and against this node's chain unless --offline."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProofError(f"cannot read {file}: {exc.strerror}") from exc
    bundle = load_bundle(text)
    registry = None
    if not offline:
        node = _open(config)
        registry = AnchorRegistry.at(node.sender, str(bundle.get("anchor", {}).get("contract")))
    checked = verify_bundle(bundle, registry)
    where = "and on-chain" if checked.on_chain else "offline"
    out.print(f"valid {where}: record {checked.record_id} in batch {checked.batch_id}")


@app.command()
def verify(
    config: ConfigOption = DEFAULT_CONFIG,
    since: Annotated[str | None, typer.Option(help="ISO time: batches closed from then.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time: batches closed until then.")] = None,
) -> None:
    """Re-hash the store (or a time range) against the chain; list every record tampered with."""
    node = _open(config)
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("verifying batches", total=None)
        findings = verify_store(
            node.store(),
            node.batcher(),
            node.anchor_registry(),
            since_us=_iso_us(since),
            until_us=_iso_us(until),
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if not findings:
        out.print("every anchored record matches the chain")
        return
    table = Table("reason", "batch")
    table.add_column("record", min_width=66, no_wrap=True)
    for finding in findings:
        table.add_row(finding.reason, finding.batch_id or "-", finding.record_id)
    out.print(table)
    raise ProofError(f"{len(findings)} record(s) do not match what was anchored")


def _iso_us(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"bad time {text!r}: use ISO 8601, e.g. 2026-11-25T08:00:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


# -- local chain and demo ------------------------------------------------------------------

RunDirOption = Annotated[
    Path | None, typer.Option(help="Where the PID and log files live \\[default: .qnode/chain].")
]


@chain_app.command("start")
def chain_start(
    port: Annotated[int, typer.Option(help="Loopback port.")] = 8545,
    mining: Annotated[str, typer.Option(help="auto, interval or manual.")] = "auto",
    interval_ms: Annotated[int, typer.Option(help="Block interval for interval mining.")] = 1000,
    run_dir: RunDirOption = None,
) -> None:
    """Start the local Hardhat consortium chain on loopback."""
    started = LocalChain(run_dir or default_run_dir()).start(
        port=port, mining=mining, interval_ms=interval_ms
    )
    out.print(f"local chain running at {started.url} (pid {started.pid}, log {started.log_file})")


@chain_app.command("stop")
def chain_stop(run_dir: RunDirOption = None) -> None:
    """Stop the local chain by its PID."""
    stopped = LocalChain(run_dir or default_run_dir()).stop()
    out.print("local chain stopped" if stopped else "no local chain was running")


@chain_app.command("status")
def chain_status(run_dir: RunDirOption = None) -> None:
    """Whether the local chain runs, and its head block."""
    current = LocalChain(run_dir or default_run_dir()).status()
    out.print(current.message)


# -- ingestion: sources, validation, quarantine (issue 4) -------------------------------------

quarantine_app = typer.Typer(
    no_args_is_help=True, help="Rejected device readings, kept with their payload as received."
)
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    config: ConfigOption = DEFAULT_CONFIG,
    reason: Annotated[str | None, typer.Option(help="Only this reason, e.g. duplicate.")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """Quarantined readings, newest first, and the count of each reason."""
    from rich.text import Text

    from node.oracles.quarantine import Quarantine
    from node.oracles.validation import Reason

    if reason is not None and reason not in {r.value for r in Reason}:
        raise ConfigError(f"unknown reason {reason!r}; one of {', '.join(r.value for r in Reason)}")
    quarantine = Quarantine(_open(config).store())
    table = Table("id", "received (UTC)", "reason", "device", "bytes", "detail")
    for entry in quarantine.entries(reason, device, limit):
        table.add_row(
            str(entry.id),
            _utc_us(entry.received_at_us),
            entry.reason,
            Text(entry.device_id or "-"),
            str(len(entry.payload)),
            Text(entry.detail),
        )
    out.print(table)
    counts = quarantine.count_by_reason()
    summary = ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"
    out.print(f"{sum(counts.values())} reading(s) in quarantine: {summary}", markup=False)


@quarantine_app.command("show")
def quarantine_show(
    entry_id: Annotated[int, typer.Argument(help="The quarantine entry id.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """One quarantined reading, its payload printed byte for byte (non-printable bytes escaped)."""
    from node.oracles.quarantine import Quarantine

    entry = Quarantine(_open(config).store()).entry(entry_id)
    print(f"id:       {entry.id}")
    print(f"received: {_utc_us(entry.received_at_us)}")
    print(f"source:   {entry.source}")
    print(f"device:   {entry.device_id or '-'}")
    print(f"reason:   {entry.reason}")
    print(f"detail:   {entry.detail}")
    print(f"payload:  {len(entry.payload)} bytes")
    print(_escaped(entry.payload))


def _utc_us(timestamp_us: int) -> str:
    moment = datetime.fromtimestamp(timestamp_us / 1e6, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _escaped(payload: bytes) -> str:
    """Printable ASCII as is; backslash, newline and every other byte as an escape."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in payload)


# -- simulate: OPC UA coating-line PLC --------------------------------------------------------


@simulate_app.command("plc")
def simulate_plc(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 \\[default: a free one].")
    ] = None,
    drift: Annotated[
        list[str] | None,
        typer.Option(help="Thickness drift: mean=<µm/min> or cv=<%-points/min>; repeatable."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="bad|uncertain|nan|stuck[:Gauge<n>|BakeOven] (default Gauge1), or no-ack; "
            "repeatable."
        ),
    ] = None,
    ack_delay: Annotated[
        float, typer.Option(help="Seconds before a blade-pressure request is acknowledged.")
    ] = 0.2,
    duration: Annotated[
        str | None, typer.Option(help="Stop after e.g. 90s or 10m \\[default: at Ctrl-C].")
    ] = None,
    write_config: Annotated[
        Path | None,
        typer.Option(help="Write an \\[oracles] config fragment subscribing to the PLC."),
    ] = None,
) -> None:
    """Run the coating-line PLC simulator: an OPC UA server on 127.0.0.1."""
    import asyncio

    from node.oracles.simulators.coating_plc import CoatingLinePlc, Drift, FaultSpec, PlcConfig
    from node.settings import write_config as write_config_file

    config = PlcConfig(
        port=port,
        drift=Drift.parse(drift or []),
        faults=tuple(FaultSpec.parse(text) for text in fault or []),
        ack_delay_s=ack_delay,
    )
    seconds = _duration(duration) if duration else None

    async def run() -> None:
        async with CoatingLinePlc(config) as plc:
            out.print(f"coating-line PLC listening on {plc.endpoint}")
            for name in plc.sensor_names():
                node = plc.node_settings(name)
                out.print(f"  {node.node_id} -> {node.device} {node.quantity} [{node.unit}]")
            if write_config is not None:
                write_config_file(write_config, {"oracles": plc.oracle_settings_values()})
                out.print(f"wrote {write_config}")
            loop = asyncio.get_running_loop()
            deadline = None if seconds is None else loop.time() + seconds
            interval = 1.0 if sys.stdout.isatty() else 5.0
            while deadline is None or loop.time() < deadline:
                left = interval if deadline is None else deadline - loop.time()
                await asyncio.sleep(max(0.0, min(interval, left)))
                out.print(plc.snapshot().describe())

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        out.print("stopped")


# -- simulate: MQTT device fleet --------------------------------------------------------------


@simulate_app.command("fleet")
def simulate_fleet(
    broker: Annotated[str, typer.Option(help="The broker, mqtt://host:port.")] = (
        "mqtt://127.0.0.1:1883"
    ),
    devices: Annotated[int, typer.Option(help="Devices: half sensors, half gauges.")] = 4,
    rate: Annotated[float, typer.Option(help="Messages per second per device.")] = 1.0,
    faults: Annotated[
        str,
        typer.Option(
            help="Comma-separated fault classes, or 'all': nan, out_of_range, bad_signature, "
            "unknown_device, malformed_json, oversize, future_timestamp, stale_timestamp, replay, "
            "wrong_unit."
        ),
    ] = "",
    fault_rate: Annotated[float, typer.Option(help="Share of faulty messages.")] = 0.05,
    drift: Annotated[float, typer.Option(help="Mean drift per minute (CEL, MMT).")] = 0.0,
    points: Annotated[int, typer.Option(help="Points per environment-sensor message.")] = 2,
    sign: Annotated[bool, typer.Option(help="Sign with the devices' ed25519 keys.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the device keys and values.")] = 0,
    topic_prefix: Annotated[str, typer.Option(help="Topics are <prefix>/<device>/data.")] = (
        "qnode/devices"
    ),
    client_id: Annotated[str, typer.Option(help="The fleet's MQTT client id.")] = "qnode-fleet",
    duration: Annotated[
        str | None, typer.Option(help="Stop after e.g. 90s or 10m \\[default: at Ctrl-C].")
    ] = None,
    write_config: Annotated[
        Path | None,
        typer.Option(help="Write the \\[oracles] fragment (devices, keys, quantities, mqtt)."),
    ] = None,
) -> None:
    """Run an MQTT device fleet publishing signed messages with QoS 1, with drift and faults."""
    from node.oracles.simulators.device_fleet import (
        DeviceFleet,
        Fault,
        FleetPublisher,
        FleetSpec,
        PublishProgress,
    )
    from node.settings import write_config as write_config_file

    try:
        spec = FleetSpec(
            devices=devices,
            points=points,
            sign=sign,
            seed=seed,
            topic_prefix=topic_prefix,
            drift_per_min=drift,
            faults=Fault.parse_list(faults),
            fault_rate=fault_rate,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if rate <= 0:
        raise ConfigError("--rate must be above 0")
    fleet = DeviceFleet(spec)
    if write_config is not None:
        oracles = fleet.oracle_settings()
        oracles["mqtt"] = {"url": broker, "topics": fleet.mqtt_topics()}
        write_config_file(write_config, {"oracles": oracles})
        out.print(f"wrote {write_config}")
    seconds = _duration(duration) if duration else None

    def report(progress: PublishProgress) -> None:
        rate_now = progress.published / progress.elapsed_s if progress.elapsed_s else 0.0
        out.print(
            f"{progress.elapsed_s:7.1f} s  published {progress.published} messages "
            f"({progress.faults} faults), {rate_now:.0f} msg/s"
        )

    with FleetPublisher(broker, client_id) as publisher:
        out.print(
            f"fleet of {devices} devices publishing to {broker} {fleet.topic_filter()} "
            f"at {rate:g} Hz each"
        )
        try:
            report(publisher.run(fleet, rate, seconds, progress=report))
            publisher.flush(10.0)
        except KeyboardInterrupt:
            out.print("interrupted")
    out.print("stopped")


# -- attest: EIP-712 attestations and QualityLedger ---------------------------------------------


@attest_app.command("deploy")
def attest_deploy(
    config: ConfigOption = DEFAULT_CONFIG,
    lab_quorum: Annotated[
        int, typer.Option(help="Distinct lab members that must approve a lab result.")
    ] = 1,
) -> None:
    """Deploy QualityLedger.sol for this consortium."""
    from node.chain.quality_ledger import QualityLedger

    node = _open(config)
    ledger, receipt = QualityLedger.deploy(node.sender, node.consortium().address, lab_quorum)
    node.record_deployment("QualityLedger", Deployment.of(ledger.address, receipt))
    out.print(
        f"QualityLedger deployed at {ledger.address} in block {receipt.block_number}"
        f" (lab quorum {lab_quorum})"
    )


@attest_app.command("verify")
def attest_verify(
    file: Annotated[Path, typer.Argument(help="An attestation bundle (JSON).")],
) -> None:
    """Check an attestation bundle offline: recover its signer(s) and print the verdict."""
    from node.errors import AttestationError
    from node.oracles.attestation import from_fixed_point, parse_bundle

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise AttestationError(f"cannot read {file}: {exc.strerror}") from exc
    try:
        attestation = parse_bundle(text)
    except AttestationError as exc:
        raise AttestationError(f"invalid attestation bundle {file}: {exc}") from exc
    message = attestation.message
    value = from_fixed_point(int(message["value"]), int(message["decimals"]))
    domain = attestation.domain
    out.print(
        f"valid: {attestation.schema.primary_type} {attestation.record_id}"
        f" = {value} {message['unit']}"
    )
    out.print(f"signed by {attestation.signer} (nonce {attestation.nonce})")
    for co_signature in attestation.co_signatures:
        out.print(f"co-signed by {co_signature.signer}")
    out.print(
        f"domain {domain.name} v{domain.version}, chain {domain.chain_id},"
        f" contract {domain.verifying_contract}; deadline {attestation.deadline}"
    )


# -- label: QR codes and NFC tags of serialised items -----------------------------------------


@app.command()
def label(
    gtin: Annotated[str, typer.Option(help="The product's GTIN (8, 12, 13 or 14 digits).")],
    out_dir: Annotated[Path, typer.Option("--out", help="The directory to write labels to.")],
    config: ConfigOption = DEFAULT_CONFIG,
    lot: Annotated[str | None, typer.Option(help="The lot or batch (AI 10).")] = None,
    serial: Annotated[
        list[str] | None, typer.Option(help="A serial (AI 21); repeat for several.")
    ] = None,
    count: Annotated[
        int, typer.Option(min=0, help="Mint N new random serials (80 bits, not enumerable).")
    ] = 0,
    base_url: Annotated[
        str | None,
        typer.Option(help="The resolver's URL (default: api.resolver_domain of the config)."),
    ] = None,
) -> None:
    """Per serial: its GS1 Digital Link URI, a QR code (SVG, PNG) and an NFC NDEF URI record.

    Serials given with --serial must fit api.serial_pattern (the resolver serves no other)."""
    from node.labels import (
        MANIFEST_FILE,
        check_serials,
        make_labels,
        read_manifest,
        serials_in,
        write_labels,
    )
    from node.oracles.digital_link import normalise_gtin
    from node.settings import ApiSettings

    gtin14 = normalise_gtin(gtin)  # a bad check digit fails here, before anything is written
    settings = load_settings(config) if base_url is None or config.exists() else None
    api = settings.api if settings is not None else ApiSettings()
    base_url = base_url or api.resolver_domain
    check_serials(serial or [], api.serial_pattern)
    taken = serials_in(read_manifest(out_dir), gtin14)
    labels = make_labels(gtin14, lot, serial or [], count, base_url, taken)
    written = write_labels(labels, out_dir)
    for files in written:
        minted = " (minted)" if files.label.minted else ""
        out.print(f"{files.label.uri}{minted}")
    out.print(f"wrote {len(written)} label(s) to {out_dir} (index: {out_dir / MANIFEST_FILE})")


# -- epcis: export and import -----------------------------------------------------------------


@epcis_app.command("export")
def epcis_export(
    config: ConfigOption = DEFAULT_CONFIG,
    since: Annotated[str | None, typer.Option(help="ISO time: records observed from then.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time: observed before then.")] = None,
    record_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only this record type (repeatable).")
    ] = None,
    read_point: Annotated[str | None, typer.Option(help="GLN of the read point.")] = None,
    biz_location: Annotated[str | None, typer.Option(help="GLN of the business location.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """Write the store's records as an EPCIS 2.0 JSON-LD document (eventID: CBV 2.0 hash)."""
    from node.oracles.epcis import EpcisProfile, export

    store = open_store(load_settings(config))
    try:
        profile = EpcisProfile.of_glns(read_point, biz_location)
        document = export(store, _iso_us(since), _iso_us(until), record_type, profile)
    finally:
        store.close()
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        count = len(document["epcisBody"]["eventList"])
        out.print(f"wrote {count} event(s) to {output}")


@epcis_app.command("import")
def epcis_import(
    file: Annotated[Path, typer.Argument(help="An EPCIS 2.0 JSON-LD document.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Validate an EPCIS document (structure, every eventID) and store its events as records."""
    from node.errors import EpcisError
    from node.oracles.epcis import import_document

    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EpcisError(f"cannot read {file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise EpcisError(f"{file} is not JSON: {exc}") from exc
    store = open_store(load_settings(config))
    try:
        result = import_document(store, document)
    finally:
        store.close()
    stored = ", ".join(f"{n} {t}" for t, n in sorted(result.stored.items())) or "none"
    skipped = ", ".join(f"{n} {t}" for t, n in sorted(result.skipped.items())) or "none"
    out.print(
        f"stored {result.total} record(s) ({stored}); already present {result.already_present}; "
        f"skipped events without a record form: {skipped}"
    )


# -- run: the node's main job -------------------------------------------------------------------


# -- control: the closed loop's contracts, actions and 8D cases ----------------------------------

control_app = typer.Typer(no_args_is_help=True, help="The closed loop: contracts, lines, actions.")
eight_d_app = typer.Typer(no_args_is_help=True, help="8D corrective-action cases on-chain.")
app.add_typer(control_app, name="control")
app.add_typer(eight_d_app, name="8d")


@control_app.command("deploy")
def control_deploy(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Deploy LineControl and the wired CorrectiveAction/SupplierQuality pair."""
    from node.control.deploy import deploy_control_contracts

    node = _open(config)
    deployed = deploy_control_contracts(node)
    for name, deployment in (
        ("LineControl", deployed.line_control),
        ("CorrectiveAction", deployed.corrective_action),
        ("SupplierQuality", deployed.supplier_quality),
    ):
        out.print(f"{name} deployed at {deployment.address} (block {deployment.block})")


@control_app.command("lines")
def control_lines(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Register this member's [control.lines] and their parameters' bounds on-chain."""
    from node.control.deploy import register_lines

    node = _open(config)
    done = register_lines(node)
    for line in done or ["no lines in [control.lines]"]:
        out.print(line)


@control_app.command("actions")
def control_actions(
    status: Annotated[str | None, typer.Option(help="pending|running|done|failed")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """The action outbox: what the node owes (PLC writes, webhooks, chain records)."""
    from node.control.outbox import ActionOutbox, ActionStatus

    try:
        statuses = None if status is None else [ActionStatus(status)]
    except ValueError:
        _fail(f"unknown status {status!r} (pending, running, done, failed)", 2)
    actions = ActionOutbox(open_store(load_settings(config))).actions(statuses)
    table = Table("id", "kind", "key", "status", "attempts", "last error")
    for action in actions:
        table.add_row(
            str(action.id),
            action.kind,
            action.key,
            action.status.value,
            str(action.attempts),
            action.last_error or "",
        )
    out.print(table)
    out.print(f"{len(actions)} action(s)")


def _case_lines(case: Case) -> list[str]:
    state = (
        "closed"
        if case.closed
        else (
            f"at {case.discipline.name} ({case.discipline.title})"
            + (", awaiting review" if case.awaiting_review else ", awaiting submission")
        )
    )
    hold = f", hold {case.hold_id}" if case.hold_id is not None else ""
    verified = ", effectiveness verified" if case.effectiveness_verified else ""
    return [
        f"case {case.case_id}: {state}{hold}{verified}",
        f"  customer {case.customer}, supplier {case.supplier}",
    ]


@eight_d_app.command("cases")
def eight_d_cases(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """The 8D cases this member is the customer or the supplier of."""
    node = _open(config)
    corrective = node.corrective_action()
    mine = node.address.lower()
    shown = 0
    for case_id in range(1, corrective.case_count() + 1):
        case = corrective.case(case_id)
        if mine in (case.customer.lower(), case.supplier.lower()):
            for line in _case_lines(case):
                out.print(line)
            shown += 1
    out.print(f"{shown} case(s)")


def _report_hash(node: Node, report: Path) -> str:
    """Keep the report as a blob; its SHA-256 (the blob's name) goes on-chain."""
    try:
        data = report.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {report}: {exc.strerror}", 2)
    return "0x" + node.store().blobs.put(data)


@eight_d_app.command("submit")
def eight_d_submit(
    case_id: Annotated[int, typer.Argument(help="The case.")],
    discipline: Annotated[int, typer.Argument(help="0..8 (D0..D8).")],
    report: Annotated[Path, typer.Option(help="The discipline's report (kept as a blob).")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Submit a discipline's report (as the supplier); its SHA-256 is recorded on-chain."""
    node = _open(config)
    digest = _report_hash(node, report)
    node.corrective_action().submit(case_id, discipline, digest)
    out.print(f"case {case_id}: D{discipline} submitted, report {digest}")


@eight_d_app.command("approve")
def eight_d_approve(
    case_id: Annotated[int, typer.Argument()],
    discipline: Annotated[int, typer.Argument()],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Approve a submitted discipline (as the customer); D8's approval closes the case."""
    node = _open(config)
    corrective = node.corrective_action()
    corrective.approve(case_id, discipline)
    for line in _case_lines(corrective.case(case_id)):
        out.print(line)


@eight_d_app.command("reject")
def eight_d_reject(
    case_id: Annotated[int, typer.Argument()],
    discipline: Annotated[int, typer.Argument()],
    reason: Annotated[str, typer.Option(help="Why (kept off-chain; its hash goes on-chain).")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Reject a submitted discipline (as the customer): the supplier answers it again."""
    from node.control.chain_actions import text_hash

    node = _open(config)
    node.corrective_action().reject(case_id, discipline, text_hash(reason))
    out.print(f"case {case_id}: D{discipline} rejected")


@eight_d_app.command("verify")
def eight_d_verify(
    case_id: Annotated[int, typer.Argument()],
    evidence: Annotated[Path, typer.Option(help="The effectiveness evidence (kept as a blob).")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Verify the corrective actions' effectiveness (customer or lab), needed before D8."""
    node = _open(config)
    digest = _report_hash(node, evidence)
    node.corrective_action().verify_effectiveness(case_id, digest)
    out.print(f"case {case_id}: effectiveness verified, evidence {digest}")


@eight_d_app.command("override")
def eight_d_override(
    hold_id: Annotated[int, typer.Argument(help="The supplier hold.")],
    justification: Annotated[str, typer.Option(help="Why the hold is lifted without closure.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Release a supplier hold without its 8D's closure: the customer's signed override."""
    from node.control.chain_actions import text_hash

    node = _open(config)
    node.supplier_quality().override_release(hold_id, text_hash(justification))
    out.print(f"hold {hold_id} released by override")


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Ingest from the configured OPC UA and MQTT sources, anchor batches, attest critical
    records on-chain, run the closed loop (rules, contract events, actions); until Ctrl-C."""
    from node.control.service import ControlService
    from node.service import NodeService, configured_sources

    node = _open(config)
    sources = configured_sources(node)
    if not sources:
        out.print("no sources configured (oracles.opcua / oracles.mqtt): anchoring and attesting")
    control = ControlService(node, progress=out.print)
    if control.consumer is None:
        out.print("no closed-loop contracts yet (qnode control deploy): rules and actions only")
    service = NodeService(node, sources, progress=out.print, control=control)
    for source in sources:
        out.print(f"reading {type(source).__name__}")
    try:
        asyncio.run(service.run())
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        node.close()


@app.command()
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on \\[default: api.host, 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[default: api.port, 8600].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes \\[default: api.workers].")
    ] = None,
) -> None:
    """Serve the verifier API: the GS1 Digital Link resolver, passports and proof bundles."""
    import uvicorn

    from node.api import create_app
    from node.api.worker import CONFIG_ENV

    settings = load_settings(config)
    password = _password()
    read_keystore(settings.keystore_path, password)  # a wrong password fails here, not per worker
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    processes = workers or settings.api.workers
    out.print(
        f"serving {settings.member.name} on http://{bind_host}:{bind_port} ({processes} worker(s))"
    )
    if processes > 1:
        os.environ[CONFIG_ENV] = str(config.resolve())
        os.environ[PASSWORD_ENV] = password
        uvicorn.run(
            "node.api.worker:app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=processes,
            log_level="warning",
            access_log=False,
        )
        return
    application = create_app(settings, lambda: Node.open(settings, password))
    uvicorn.run(application, host=bind_host, port=bind_port, log_level="warning", access_log=False)


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the demo consortium lives \\[default: .qnode/demo]."),
    ] = None,
    scenario: Annotated[
        str, typer.Option(help="full, short (fewer cells, for a quick look) or none.")
    ] = "full",
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="MQTT broker \\[default: 127.0.0.1:1883 if it answers, else a Mosquitto of the "
            "demo's own]."
        ),
    ] = None,
    exit_when_done: Annotated[
        bool, typer.Option(help="Stop everything once the scenario has played.")
    ] = False,
) -> None:
    """Start a local consortium (chain, four member nodes, broker, PLC, devices, ERP), play the
    scenario, print the dashboard's URL; until Ctrl-C. Every run starts fresh."""
    from node.demo import run_demo

    run_demo(
        directory or default_run_dir().parent / "demo",
        scenario=scenario,
        mqtt_url=mqtt,
        exit_when_done=exit_when_done,
        console=out,
    )


# -- spc: control charts, capability and run rules of a CSV column ----------------------------

_SPC_CHARTS = ("xbar-r", "xbar-s", "imr", "p", "u")
_SPC_RULES = {"nelson": spc.NELSON_RULES, "western-electric": spc.WESTERN_ELECTRIC_RULES}
_PLOT_MAX_POINTS = 100


@app.command("spc")
def spc_command(
    file: Annotated[Path, typer.Argument(help="A CSV file with a header row.")],
    column: Annotated[str, typer.Option(help="The measured values (counts for p and u charts).")],
    subgroup_column: Annotated[
        str | None, typer.Option(help="Rows with the same value here form one subgroup.")
    ] = None,
    subgroup_size: Annotated[
        int | None, typer.Option(help="Consecutive rows form subgroups of this size.")
    ] = None,
    size_column: Annotated[
        str | None, typer.Option(help="Sample sizes (p chart) or inspected units (u chart).")
    ] = None,
    lsl: Annotated[float | None, typer.Option(help="Lower specification limit.")] = None,
    usl: Annotated[float | None, typer.Option(help="Upper specification limit.")] = None,
    chart: Annotated[
        str | None,
        typer.Option(help="xbar-r, xbar-s, imr, p or u (default: xbar-r if subgrouped, else imr)."),
    ] = None,
    rules: Annotated[str, typer.Option(help="Run rules: nelson or western-electric.")] = "nelson",
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
) -> None:
    """Control chart (as a text plot), capability and run-rule violations of a CSV column."""
    kind = chart or ("xbar-r" if subgroup_column or subgroup_size else "imr")
    if kind not in _SPC_CHARTS:
        raise SpcError(f"unknown chart {kind!r}: use {', '.join(_SPC_CHARTS)}")
    if rules not in _SPC_RULES:
        raise SpcError(f"unknown rules {rules!r}: use {' or '.join(_SPC_RULES)}")
    ruleset = _SPC_RULES[rules]
    spec = None if lsl is None and usl is None else spc.SpecLimits(lsl, usl)
    subgrouped = bool(subgroup_column or subgroup_size)
    if kind in ("p", "u"):
        if spec is not None:
            raise SpcError("capability needs measured values: use --chart xbar-r, xbar-s or imr")
        if size_column is None:
            raise SpcError(f"a {kind} chart needs --size-column (sample sizes or units)")
        if subgrouped:
            raise SpcError(f"a {kind} chart takes one count per row: drop the subgroup option")
        attribute = _spc_attribute_chart(file, kind, column, size_column)
        count = len(attribute.points)
        out.print(
            f"{kind} chart of {column} over {size_column} in {file}, {count} samples", markup=False
        )
        _print_spc_chart(attribute, "sample", height=15)
        _print_rule_violations(attribute, "sample", ruleset, rules)
        return
    if subgroup_column and subgroup_size:
        raise SpcError("give --subgroup-column or --subgroup-size, not both")
    if kind == "imr" and subgrouped:
        raise SpcError("--chart imr charts individual values: drop the subgroup option")
    if kind != "imr" and not subgrouped:
        raise SpcError(f"--chart {kind} needs --subgroup-column or --subgroup-size")
    subgroups = _spc_subgroups(file, column, subgroup_column, subgroup_size)
    if kind == "imr":
        values = [v for subgroup in subgroups for v in subgroup]
        variables, method = spc.imr_chart(values), spc.SigmaMethod.MOVING_RANGE
        unit, shape = "value", f"{len(values)} values"
    else:
        if kind == "xbar-r":
            variables, method = spc.xbar_r_chart(subgroups), spc.SigmaMethod.RANGE
        else:
            variables, method = spc.xbar_s_chart(subgroups), spc.SigmaMethod.STANDARD_DEVIATION
        unit, shape = "subgroup", f"{len(subgroups)} subgroups of {variables.subgroup_size}"
    out.print(f"{kind} chart of {column} in {file}, {shape}", markup=False)
    _print_spc_chart(variables.location, unit, height=15)
    _print_spc_chart(variables.spread, unit, height=8)
    out.print(f"sigma within {variables.sigma_within:.6g} ({method.value})")
    if spec is not None:
        _print_capability(spc.capability(subgroups, spec, method, confidence))
    _print_rule_violations(variables.location, unit, ruleset, rules)
    _print_beyond_limits(variables.spread, unit)


def _spc_attribute_chart(file: Path, kind: str, column: str, size_column: str) -> spc.ControlChart:
    table = _spc_table(file, [column, size_column])
    counts = _spc_numbers(file, column, table[column])
    sizes = _spc_numbers(file, size_column, table[size_column])
    return spc.p_chart(counts, sizes) if kind == "p" else spc.u_chart(counts, sizes)


def _spc_subgroups(
    file: Path, column: str, subgroup_column: str | None, subgroup_size: int | None
) -> list[list[float]]:
    """The column's values grouped by key or in consecutive runs; one-value groups if neither."""
    table = _spc_table(file, [column] + ([subgroup_column] if subgroup_column else []))
    values = _spc_numbers(file, column, table[column])
    if subgroup_column:
        return _spc_grouped(values, table[subgroup_column])
    if subgroup_size is not None:
        return _spc_chunked(values, subgroup_size, file)
    return [[v] for v in values]


def _spc_table(file: Path, names: list[str]) -> dict[str, list[str]]:
    """The named columns of a CSV file, as text; any problem is one SpcError."""
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            for name in names:
                if name not in header:
                    raise SpcError(f"{file} has no column {name!r} (columns: {', '.join(header)})")
            rows = list(reader)
    except OSError as exc:
        raise SpcError(f"cannot read {file}: {exc.strerror}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SpcError(f"{file} is not a readable CSV file: {exc}") from exc
    if not rows:
        raise SpcError(f"{file} has no data rows")
    return {name: [(row.get(name) or "").strip() for row in rows] for name in names}


def _spc_numbers(file: Path, name: str, texts: list[str]) -> list[float]:
    numbers = []
    for line, text in enumerate(texts, start=2):  # line 1 is the header
        try:
            value = float(text)
        except ValueError:
            raise SpcError(f"{file} line {line}: {name} is {text!r}, not a number") from None
        if not math.isfinite(value):
            raise SpcError(f"{file} line {line}: {name} is {text!r}, not a finite number")
        numbers.append(value)
    return numbers


def _spc_grouped(values: list[float], keys: list[str]) -> list[list[float]]:
    """Subgroups by key, in the order the keys first appear."""
    groups: dict[str, list[float]] = {}
    for key, value in zip(keys, values, strict=True):
        groups.setdefault(key, []).append(value)
    return list(groups.values())


def _spc_chunked(values: list[float], size: int, file: Path) -> list[list[float]]:
    if size < 1 or len(values) % size:
        raise SpcError(f"the {len(values)} values of {file} do not split into subgroups of {size}")
    return [values[i : i + size] for i in range(0, len(values), size)]


def _print_spc_chart(chart: spc.ControlChart, unit: str, height: int) -> None:
    out.print()
    out.print(f"[bold]{chart.statistic}[/]")
    for line in _text_plot(chart, unit, height):
        out.print(line, markup=False)
    limits = chart.constant_limits
    if limits is None:
        lows, highs = chart.lower_limits, chart.upper_limits
        text = f"LCL {min(lows):.7g}..{max(lows):.7g}  UCL {min(highs):.7g}..{max(highs):.7g}"
    else:
        text = f"LCL {limits[0]:.7g}  UCL {limits[1]:.7g}"
    out.print(f"CL {chart.center:.7g}  {text}", markup=False)


def _text_plot(chart: spc.ControlChart, unit: str, height: int) -> list[str]:
    """Points (o, X beyond limits), center line (-) and limits (=), newest points at most."""
    first = max(0, len(chart.points) - _PLOT_MAX_POINTS)
    points = chart.points[first:]
    lower, upper = chart.lower_limits[first:], chart.upper_limits[first:]
    bottom, top = min(*points, *lower, chart.center), max(*points, *upper, chart.center)
    span = (top - bottom) or 1.0

    def row(value: float) -> int:
        return round((top - value) / span * (height - 1))

    width = 2 if len(points) <= 50 else 1
    background = [[" "] * len(points) for _ in range(height)]
    for j in range(len(points)):
        background[row(chart.center)][j] = "-"
        background[row(lower[j])][j] = "="
        background[row(upper[j])][j] = "="
    marks: dict[tuple[int, int], str] = {}
    for j, value in enumerate(points):
        marks[(row(value), j)] = "X" if first + j in chart.beyond_limits else "o"
    labels = {row(lower[-1]): "LCL", row(upper[-1]): "UCL", row(chart.center): "CL"}
    lines = []
    for r in range(height):
        cells = "".join(
            marks.get((r, j), background[r][j]) + background[r][j] * (width - 1)
            for j in range(len(points))
        )
        level = top - r * span / (height - 1)
        lines.append(f"{labels.get(r, ''):>3} {level:>11.5g} |{cells}")
    lines.append(" " * 16 + "+" + "-" * (len(points) * width))
    lines.append(" " * 17 + f"{unit}s {first + 1}..{len(chart.points)}")
    return lines


def _print_capability(study: spc.Capability) -> None:
    tail = (1 - study.confidence) / 2 * 100
    table = Table("index", "value", f"{tail:g}%", f"{100 - tail:g}%", title="capability")
    indices = {"Cp": study.cp, "Cpl": study.cpl, "Cpu": study.cpu, "Cpk": study.cpk,
               "Pp": study.pp, "Ppl": study.ppl, "Ppu": study.ppu, "Ppk": study.ppk}  # fmt: skip
    for name, estimate in indices.items():
        if estimate is not None:
            table.add_row(
                name, f"{estimate.value:.4f}", f"{estimate.lower:.4f}", f"{estimate.upper:.4f}"
            )
    out.print()
    out.print(table)
    ppm = Table("PPM", "< LSL", "> USL", "total", title="parts per million out of spec")
    for label, counts in (
        ("observed", study.observed_ppm),
        ("expected (within)", study.expected_within_ppm),
        ("expected (overall)", study.expected_overall_ppm),
    ):
        cells = [counts.below, counts.above, counts.total]
        ppm.add_row(label, *("-" if v is None else f"{v:,.1f}" for v in cells))
    out.print(ppm)
    out.print(
        f"N {study.count}, mean {study.mean:.6g}, sigma within {study.sigma_within:.6g} "
        f"({study.sigma_method.value}), sigma overall {study.sigma_overall:.6g}"
    )


def _print_rule_violations(
    chart: spc.ControlChart, unit: str, rules: tuple[spc.RunRule, ...], name: str
) -> None:
    violations = spc.chart_rule_violations(chart, rules)
    out.print()
    if not violations:
        out.print(f"run rules ({name}) on the {chart.statistic}: no violations")
        return
    out.print(f"run rules ({name}) on the {chart.statistic}:")
    for violation in violations:
        numbers = ", ".join(str(i + 1) for i in violation.indices)
        out.print(f"  {violation.rule}: {violation.description}: {unit}s {numbers}", markup=False)


def _print_beyond_limits(chart: spc.ControlChart, unit: str) -> None:
    numbers = ", ".join(str(i + 1) for i in chart.beyond_limits) or "none"
    out.print(f"{chart.statistic} beyond its limits: {numbers}")


# -- rules: quality rules without code (issue 5) ------------------------------------------------

rules_app = typer.Typer(
    no_args_is_help=True, help="Quality rules (YAML): check a rule file, replay a decision."
)
app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def rules_check(file: Annotated[Path, typer.Argument(help="The YAML rule file.")]) -> None:
    """Read and check a rule file: its rules, or its first error with the file and line."""
    from rich.text import Text

    from node.control.rules import describe_action, describe_condition, load_rules

    rules = load_rules(file)
    table = Table("rule", "when", "then")
    for rule in rules.rules:
        name = f"{rule.id}\n(red line)" if rule.is_red_line else rule.id
        actions = "\n".join(describe_action(action) for action in rule.actions)
        table.add_row(Text(name), Text(describe_condition(rule.condition)), Text(actions))
    out.print(table)
    red = len(rules.red_lines)
    out.print(
        f"{len(rules.rules)} rules ({red} red lines) in {file}, sha256 {rules.digest}",
        markup=False,
    )


@rules_app.command("replay")
def rules_replay(
    decision_id: Annotated[str, typer.Argument(help="The decision record's id.")],
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option(min=1, help="Print at most this many inputs.")] = 20,
) -> None:
    """Replay a decision from this member's store: inputs re-hashed, values recomputed."""
    store = open_store(load_settings(config))
    try:
        decision = Decision.from_record(store.record(decision_id))
        found = store.records([record_id for record_id, _ in decision.inputs])
    finally:
        store.close()
    result = replay(decision, {record.record_id: record for record in found}, decision_id)
    _print_decision(decision)
    _print_replay_inputs(result, limit)
    _print_replay_conditions(decision, result)
    out.print(f"verdict: {result.verdict}", markup=False)
    if not result.confirmed:
        raise ControlError(f"decision {decision_id} is not reproduced: {result.verdict}")


def _print_decision(decision: Decision) -> None:
    out.print(f"decision {decision.decision_hash}", markup=False)
    out.print(f"rule     {decision.rule_id} (rule file sha256 {decision.rule_hash})", markup=False)
    out.print(f"fired    {_utc_us(decision.fired_at_us)}", markup=False)
    out.print(f"signer   {decision.signer or '-'}", markup=False)
    out.print(f"action   {json.dumps(decision.action, sort_keys=True)}", markup=False)


def _print_replay_inputs(result: ReplayResult, limit: int) -> None:
    table = Table("#", "input record", "content hash", "check", title="inputs")
    for index, check in enumerate(result.inputs[:limit]):
        table.add_row(str(index), check.record_id, check.expected_hash, check.status)
    out.print(table)
    hidden = result.inputs[limit:]
    if hidden:
        bad = sum(check.status != "ok" for check in hidden)
        out.print(f"... and {len(hidden)} more input(s), {bad} of them not ok (--limit)")


def _print_replay_conditions(decision: Decision, result: ReplayResult) -> None:
    """Per condition: its thresholds, then each computed value as recorded and recomputed."""
    condition = decision.thresholds.get("condition", {})
    recorded = decision.computed.get("conditions", {})
    recomputed = result.recomputed or {}
    thresholds = dict(_condition_leaves(condition))
    for path in leaf_paths(condition):
        table = Table("value", "recorded", "recomputed", title=f"{path}: {thresholds[path]}")
        before, after = recorded.get(path, {}), recomputed.get(path, {})
        for name in sorted(set(before) | set(after)):
            if name not in ("inputs", "scope"):
                table.add_row(name, _summary(before.get(name)), _summary(after.get(name, "-")))
        out.print(table)


def _condition_leaves(condition: dict[str, object], path: str = "when") -> list[tuple[str, str]]:
    for combinator in ("all", "any"):
        children = condition.get(combinator)
        if isinstance(children, list):
            return [
                leaf
                for index, child in enumerate(children)
                for leaf in _condition_leaves(child, f"{path}.{combinator}[{index}]")
            ]
    return [(path, json.dumps(condition, sort_keys=True))]


def _summary(value: object) -> str:
    """Numbers and text as they are; a list in full if short, else by its length."""
    if isinstance(value, list | dict):
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 60 else f"[{len(value)} items]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


# -- resilience: the dashboard's metrics ------------------------------------------------------


@app.command("resilience")
def resilience_command(
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[
        bool, typer.Option("--json", help="The report as JSON (as the API serves it).")
    ] = False,
    definitions: Annotated[
        bool, typer.Option("--definitions", help="Print each metric's definition above it.")
    ] = False,
) -> None:
    """The resilience metrics from this member's store and the chain: recovery cycles per line and
    supplier, high-risk suppliers, task handling time, contingency-plan freshness, the supplier
    capability radar and the PPM trend (thresholds: resilience.toml beside the config)."""
    from node.resilience import resilience_report
    from node.resilience.console import print_report

    node = _open(config)
    try:
        report = resilience_report(node)
    finally:
        node.close()
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
        return
    print_report(report, out, definitions)


# -- trace: a serial's upstream genealogy across members, its anomalies and root causes ------

TRACE_TOKENS_ENV = "QNODE_TRACE_TOKENS"


@app.command("trace")
def trace_command(
    serial_uri: Annotated[
        str, typer.Argument(help="The item's (or lot's) GS1 Digital Link URI, on any domain.")
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the trace as JSON (qnode-trace/1).")
    ] = False,
    tokens: Annotated[
        Path | None,
        typer.Option(
            envvar=TRACE_TOKENS_ENV,
            help="TOML or JSON file: member address = the bearer token it gave this node.",
        ),
    ] = None,
    lookback: Annotated[
        str, typer.Option(help="How far before an output its equipment's data is examined.")
    ] = "24h",
    supplier_lookback: Annotated[
        str, typer.Option(help="How far before a lot was used rules on its supplier count.")
    ] = "30d",
    svg: Annotated[Path | None, typer.Option(help="Also draw the trace as SVG here.")] = None,
    evidence: Annotated[
        bool, typer.Option(help="List every anomaly's evidence record ids.")
    ] = False,
) -> None:
    """Trace a serial upstream across members: genealogy, anomalies, root-cause candidates, each
    verified against the chain, and the time it took."""
    from node.explorer.graph import render_svg
    from node.trace import TraceOptions, open_tracer, trace_json
    from node.trace.render import trace_graph, trace_text

    options = TraceOptions(
        equipment_lookback_s=_duration(lookback), supplier_lookback_s=_duration(supplier_lookback)
    )
    held = _trace_tokens(tokens)
    node = _open(config)
    tracer = open_tracer(node, held, options)
    try:
        result = tracer.trace(serial_uri)
    finally:
        tracer.close()
        node.close()
    if svg is not None:
        svg.write_text(render_svg(trace_graph(result)), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(trace_json(result), indent=2, ensure_ascii=False) + "\n")
        return
    for line in trace_text(result, evidence):
        out.print(line, markup=False, highlight=False)


def _trace_tokens(file: Path | None) -> dict[str, str]:
    """Member address -> bearer token, from a TOML (``"0x…" = "token"``) or JSON object."""
    if file is None:
        return {}
    import tomllib

    try:
        text = file.read_text(encoding="utf-8")
        loaded = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the trace tokens file {file} is unreadable: {exc}") from exc
    found = loaded.get("tokens", loaded) if isinstance(loaded, dict) else None
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", k) and isinstance(v, str)
        for k, v in found.items()
    ):
        raise ConfigError(f"{file}: expected member address = token pairs")
    return {k: v for k, v in found.items()}
