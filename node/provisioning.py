"""Setting up a member on disk: its config file and its encrypted keystore (``qnode init``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.chain.consortium import Role
from node.errors import ConfigError
from node.keys import DEFAULT_KDF_ITERATIONS, write_keystore
from node.settings import (
    LOCAL_CHAIN_ID,
    Settings,
    load_settings,
    settings_from_values,
    write_config,
)

CONFIG_FILE = "qnode.toml"


@dataclass(frozen=True)
class MemberSpec:
    name: str
    role: str
    endpoint: str = "http://127.0.0.1:8600"
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = LOCAL_CHAIN_ID


def init_member(
    directory: Path,
    spec: MemberSpec,
    password: str,
    account: LocalAccount | None = None,
    kdf_iterations: int = DEFAULT_KDF_ITERATIONS,
) -> Settings:
    """Write ``directory/qnode.toml`` and ``directory/keystore/member.json``; return the settings.

    The values are validated before anything is written, and nothing is overwritten.
    """
    Role.parse(spec.role)
    values = {
        "data_dir": "data",
        "member": {"name": spec.name, "role": spec.role, "endpoint": spec.endpoint},
        "chain": {"rpc_url": spec.rpc_url, "chain_id": spec.chain_id},
        "keys": {"keystore": "keystore/member.json", "oracle_dir": "keystore/oracles"},
    }
    settings_from_values({**values, "base_dir": str(directory)}, origin="init")
    config_file = directory / CONFIG_FILE
    keystore = directory / "keystore" / "member.json"
    if config_file.exists() or keystore.exists():
        raise ConfigError(f"{directory} already holds a member; refusing to overwrite it")
    write_keystore(keystore, account or Account.create(), password, kdf_iterations)
    write_config(config_file, values)
    return load_settings(config_file)
