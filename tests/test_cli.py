"""The qnode command end to end against a Hardhat node, and its one-line errors on bad input."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.chain.localnode import free_port
from node.keys import hardhat_dev_key
from tests.hardhat_node import HardhatChain

PASSWORD = "correct horse"
KDF = ["--kdf-iterations", "16"]


def qnode(
    *args: str, password: str = PASSWORD, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QNODE_KEYSTORE_PASSWORD": password, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, fragment: str
) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qnode: error: ")
    assert fragment in lines[0]


def init_member(directory: Path, url: str, account: int, role: str = "manufacturer") -> Path:
    result = qnode(
        "init",
        "--name",
        f"Member {account}",
        "--role",
        role,
        "--dir",
        str(directory),
        "--rpc-url",
        url,
        "--dev-account",
        str(account),
        *KDF,
    )
    assert result.returncode == 0, result.stderr
    return directory / "qnode.toml"


@pytest.fixture
def founder(tmp_path: Path, hardhat_chain: HardhatChain) -> Path:
    """A member with a freshly deployed 1-member consortium on the session's Hardhat node."""
    config = init_member(tmp_path / "aster", hardhat_chain.url, 0)
    deployed = qnode("consortium", "deploy", "-c", str(config), "--threshold", "1")
    assert deployed.returncode == 0, deployed.stderr
    return config


def test_governance_and_oracles_through_the_cli(
    tmp_path: Path, founder: Path, hardhat_chain: HardhatChain
) -> None:
    borealis = hardhat_dev_key(1).address
    proposed = qnode(
        "consortium",
        "propose",
        "admit",
        borealis,
        "-c",
        str(founder),
        "--role",
        "supplier",
        "--name",
        "Borealis Cells",
        "--endpoint",
        "http://127.0.0.1:8602",
    )
    assert proposed.returncode == 0, proposed.stderr
    assert "executed" in proposed.stdout
    members = qnode("consortium", "members", "-c", str(founder))
    assert "Borealis Cells" in members.stdout and "threshold 1 of 2" in members.stdout

    added = qnode("oracle", "add", "-c", str(founder), *KDF)
    assert added.returncode == 0, added.stderr
    oracle = added.stdout.split()[1]
    assert (tmp_path / "aster" / "keystore" / "oracles" / f"{oracle}.json").is_file()
    rotated = qnode("oracle", "rotate", oracle, "-c", str(founder), *KDF)
    assert rotated.returncode == 0, rotated.stderr
    replacement = rotated.stdout.split()[4]
    revoked = qnode("oracle", "revoke", replacement, "-c", str(founder))
    assert revoked.returncode == 0, revoked.stderr

    status = qnode("status", "-c", str(founder))
    assert status.returncode == 0, status.stderr
    assert "chainId 4717" in status.stdout
    assert "Member 0 (manufacturer), active" in status.stdout
    assert f"{oracle} inactive" in status.stdout and f"{replacement} inactive" in status.stdout
    listed = qnode("oracle", "list", "-c", str(founder))
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "0x" in line]
    assert len(rows) == 2 and all("inactive" in row and "yes" in row for row in rows)


def test_a_reverted_call_is_one_line(founder: Path) -> None:
    result = qnode("consortium", "approve", "999", "-c", str(founder))
    assert_one_line_error(result, 4, "Consortium.approve reverted: UnknownProposal(proposalId=999)")


def test_a_wrong_keystore_password_is_one_line(founder: Path) -> None:
    result = qnode("status", "-c", str(founder), password="not the password")
    assert_one_line_error(result, 3, "wrong password for keystore")


def test_an_rpc_on_another_chain_is_one_line(tmp_path: Path, hardhat_chain: HardhatChain) -> None:
    config = init_member(tmp_path / "m", hardhat_chain.url, 0)
    config.write_text(config.read_text().replace("chain_id = 4717", "chain_id = 1"))
    result = qnode("status", "-c", str(config))
    assert_one_line_error(result, 4, "has chainId 4717, but the configuration expects 1")


def test_an_unreachable_rpc_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = init_member(tmp_path / "m", url, 0)
    result = qnode("status", "-c", str(config))
    assert_one_line_error(result, 4, f"cannot reach the chain at {url}")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[member]\nname = "Aster"\n', "member.role: missing required field"),
        ('[member]\nname = "Aster"\nrole = "pirate"\n', "member.role: Input should be"),
        (
            '[member]\nname = "A"\nrole = "lab"\n[chain]\nchain_id = "x"\n',
            "chain.chain_id: Input should be a valid integer",
        ),
        (
            '[member]\nname = "A"\nrole = "lab"\n[chain]\nrpc_url = "ftp://x"\n',
            "chain.rpc_url: Value error",
        ),
        (
            '[member]\nname = "A"\nrole = "lab"\nsurprise = 1\n',
            "member.surprise: Extra inputs are not permitted",
        ),
        ('[member\nname = "Aster"\n', "malformed TOML"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    config = tmp_path / "qnode.toml"
    config.write_text(text)
    assert_one_line_error(qnode("status", "-c", str(config)), 2, fragment)


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        qnode("status", "-c", str(tmp_path / "nope.toml")), 2, "not found (run `qnode init`)"
    )


def test_init_refuses_to_overwrite_a_member(tmp_path: Path) -> None:
    init_member(tmp_path / "m", "embedded", 0)
    again = qnode("init", "--name", "X", "--role", "lab", "--dir", str(tmp_path / "m"), *KDF)
    assert_one_line_error(again, 2, "already holds a member")


def test_no_password_and_no_terminal_is_one_line(tmp_path: Path) -> None:
    config = init_member(tmp_path / "m", "embedded", 0)
    assert_one_line_error(
        qnode("status", "-c", str(config), password=""), 3, "no keystore password"
    )


def test_init_asks_for_the_password_at_a_terminal(tmp_path: Path) -> None:
    """Without QNODE_KEYSTORE_PASSWORD, init prompts twice on the terminal; status then unlocks."""
    directory = tmp_path / "m"
    args = ["init", "--name", "Aster", "--role", "lab", "--dir", str(directory)]
    args += ["--rpc-url", "embedded", *KDF]
    transcript = run_at_terminal(args, answers=["s3cret pass", "s3cret pass"])
    assert "Keystore password" in transcript and "member address 0x" in transcript
    unlocked = qnode("status", "-c", str(directory / "qnode.toml"), password="s3cret pass")
    assert unlocked.returncode == 0, unlocked.stderr
    assert "consortium not deployed" in unlocked.stdout
    wrong = qnode("status", "-c", str(directory / "qnode.toml"), password="other")
    assert_one_line_error(wrong, 3, "wrong password for keystore")


def run_at_terminal(args: list[str], answers: list[str], timeout: float = 60) -> str:
    """Run qnode with a pseudo-terminal as its controlling terminal, answering each prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose terminal is the pty
        env = {k: v for k, v in os.environ.items() if k != "QNODE_KEYSTORE_PASSWORD"}
        os.execve(sys.executable, [sys.executable, "-m", "node", *args], env)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            # click prints "Keystore password:" and getpass adds " " once echo is off: answer then
            if pending and output.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    return output.decode(errors="replace")


def test_records_are_ingested_anchored_proven_and_verified(
    tmp_path: Path, founder: Path, hardhat_chain: HardhatChain
) -> None:
    records = tmp_path / "records.jsonl"
    lines = [
        {
            "type": "coating_thickness",
            "observed_at_us": 1_795_000_000_000_000 + i,
            "fields": {"line": "C2", "station": "S1", "thickness_um": 98.5, "operator_id": "b-1"},
        }
        for i in range(30)
    ]
    records.write_text("\n".join(json.dumps(line) for line in lines))
    for command in (
        ["anchor", "deploy"],
        ["oracle", "add", "--fund", "1", *KDF],
        ["ingest", str(records)],
        ["anchor", "run", "--once", "--force"],
    ):
        result = qnode(*command, "-c", str(founder))
        assert result.returncode == 0, (command, result.stderr)
    assert "anchored 1" in result.stdout

    status = qnode("anchor", "status", "-c", str(founder))
    batch_id = next(w for w in status.stdout.split() if w.startswith("0x") and len(w) == 66)
    dump = qnode("anchor", "dump", batch_id, "-c", str(founder))
    assert json.loads(dump.stdout)["format"] == "standard-v1"

    record_id = json.loads(dump.stdout)["values"][0]["value"][0]
    bundle = tmp_path / "bundle.json"
    made = qnode("proof", record_id, "-o", str(bundle), "-c", str(founder))
    assert made.returncode == 0, made.stderr
    checked = qnode("verify-bundle", str(bundle), "-c", str(founder))
    assert checked.returncode == 0 and "valid and on-chain" in checked.stdout, checked.stderr
    assert "valid offline" in qnode("verify-bundle", str(bundle), "--offline").stdout

    edited = json.loads(bundle.read_text())
    edited["record"]["fields"]["thickness_um"] = 99.9
    bundle.write_text(json.dumps(edited))
    refused = qnode("verify-bundle", str(bundle), "--offline")
    assert_one_line_error(refused, 9, "the record does not hash to the bundle's leaf")
    bundle.write_text(json.dumps(edited)[:100])
    assert_one_line_error(qnode("verify-bundle", str(bundle), "--offline"), 9, "not JSON")

    verified = qnode("verify", "-c", str(founder))
    assert verified.returncode == 0 and "every anchored record matches" in verified.stdout


def test_an_unknown_record_type_in_a_file_is_one_line(tmp_path: Path, founder: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"type": "gossip", "fields": {}, "observed_at_us": 1}))
    assert_one_line_error(
        qnode("ingest", str(records), "-c", str(founder)), 7, "unknown record type"
    )


def test_help_texts_keep_their_square_brackets() -> None:
    """Rich reads ``[oracles]`` as markup and drops it unless escaped."""
    plc = qnode("simulate", "plc", "--help").stdout
    assert "Write an [oracles] config fragment" in plc
    assert "[default: a free one]" in plc
    assert "Write the [oracles] fragment" in qnode("simulate", "fleet", "--help").stdout
