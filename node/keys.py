"""Encrypted keystores (Web3 Secret Storage v3) and the rule against public development keys."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from node.errors import ForbiddenKeyError, KeystoreError

HARDHAT_DEV_MNEMONIC = "test test test test test test test test test test test junk"
HARDHAT_DEV_ACCOUNT_COUNT = 20
DEFAULT_KDF_ITERATIONS = 2**18
PASSWORD_ENV = "QNODE_KEYSTORE_PASSWORD"


def hardhat_dev_key(index: int) -> LocalAccount:
    """Hardhat's well-known account ``index`` (public knowledge: never for a real chain)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        HARDHAT_DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
    )
    return account


@cache
def well_known_dev_addresses() -> frozenset[str]:
    """Addresses whose private keys are published: Hardhat's mnemonic and eth-tester's keys."""
    hardhat = {hardhat_dev_key(i).address for i in range(HARDHAT_DEV_ACCOUNT_COUNT)}
    eth_tester = {Account.from_key(i.to_bytes(32, "big")).address for i in range(1, 11)}
    return frozenset(hardhat | eth_tester)


def refuse_dev_key_off_local_chain(address: str, chain_id: int, local_chain_id: int) -> None:
    """Raise ForbiddenKeyError when a published development key is used on a non-local chain."""
    if chain_id != local_chain_id and address in well_known_dev_addresses():
        raise ForbiddenKeyError(
            f"refusing the public development key {address} on chain {chain_id}: it is only "
            f"allowed on the local chain {local_chain_id}"
        )


def write_keystore(
    path: Path,
    account: LocalAccount,
    password: str,
    kdf_iterations: int = DEFAULT_KDF_ITERATIONS,
) -> None:
    """Encrypt ``account`` to ``path`` (mode 0600); refuses to overwrite an existing keystore."""
    if path.exists():
        raise KeystoreError(f"keystore {path} already exists; refusing to overwrite it")
    if not password:
        raise KeystoreError("an empty keystore password is not allowed")
    encrypted = Account.encrypt(account.key, password, iterations=kdf_iterations)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(encrypted, handle)


def read_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt the keystore at ``path``; KeystoreError names a missing file or a wrong password."""
    try:
        encrypted = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeystoreError(f"keystore {path} not found") from exc
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {path} is not a readable keystore file") from exc
    try:
        key = Account.decrypt(encrypted, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(f"wrong password for keystore {path}") from exc
        raise KeystoreError(f"keystore {path} cannot be decrypted: {exc}") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def keystore_address(path: Path) -> str:
    """The address a keystore holds, without decrypting it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["address"]
    except (OSError, ValueError, KeyError) as exc:
        raise KeystoreError(f"keystore {path} is not a readable keystore file") from exc
    return to_checksum_address("0x" + str(raw).removeprefix("0x"))
