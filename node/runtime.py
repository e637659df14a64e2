"""A running member node: settings, chain connection, member key, sender and contracts together."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from node.anchoring.batcher import Batcher, BatchPolicy
from node.chain.anchor_registry import AnchorRegistry
from node.chain.connection import ChainConnection, ChainStatus, connect, ensure_chain_id
from node.chain.consortium import Consortium, Member, OracleStatus
from node.chain.corrective_action import CorrectiveAction
from node.chain.line_control import LineControl
from node.chain.quality_ledger import QualityLedger
from node.chain.sender import Receipt, SenderOptions, TransactionSender
from node.chain.supplier_quality import SupplierQuality
from node.errors import ConfigError, KeystoreError
from node.keys import read_keystore, refuse_dev_key_off_local_chain, write_keystore
from node.offchain.blobs import BlobStore
from node.offchain.classification import Classification
from node.offchain.store import Store
from node.settings import Settings

DEPLOYMENTS_FILE = "deployments.json"


@dataclass(frozen=True)
class Deployment:
    address: str
    block: int
    tx_hash: str

    @classmethod
    def of(cls, address: str, receipt: Receipt) -> Deployment:
        return cls(address, receipt.block_number, receipt.tx_hash)


@dataclass(frozen=True)
class NodeStatus:
    chain: ChainStatus
    address: str
    balance_wei: int
    consortium: str | None
    member: Member | None
    threshold: int | None
    member_count: int | None
    oracles: tuple[OracleStatus, ...]


def open_store(settings: Settings) -> Store:
    """A member's store (migrated) without its keystore or the chain: EPCIS, quarantine reads."""
    classification = Classification.from_config(
        settings.record_types, settings.privacy.always_private
    )
    settings.data_path.mkdir(parents=True, exist_ok=True)
    blobs = BlobStore(settings.blob_path, settings.store.max_blob_bytes)
    return Store.open(settings.store_url, classification, blobs)


class Node:
    """One member's node. Build it with :meth:`open`; several can live in one process."""

    def __init__(
        self,
        settings: Settings,
        connection: ChainConnection,
        account: LocalAccount,
        password: str = "",
    ) -> None:
        ensure_chain_id(connection, settings.chain.chain_id)
        refuse_dev_key_off_local_chain(
            account.address, connection.chain_id, settings.chain.local_chain_id
        )
        self.settings = settings
        self.connection = connection
        self.account = account
        self._password = password
        self._store: Store | None = None
        self.sender = TransactionSender(
            connection,
            account,
            SenderOptions(
                receipt_timeout=settings.chain.receipt_timeout,
                confirmations=settings.chain.confirmations,
            ),
        )

    @classmethod
    def open(
        cls, settings: Settings, password: str, connection: ChainConnection | None = None
    ) -> Node:
        """Unlock the member key and connect (or reuse ``connection``, e.g. an embedded chain)."""
        account = read_keystore(settings.keystore_path, password)
        return cls(settings, connection or connect(settings.chain), account, password)

    @property
    def address(self) -> str:
        return self.account.address

    # -- deployments -------------------------------------------------------------------------

    @property
    def deployments_path(self) -> Path:
        return self.settings.data_path / DEPLOYMENTS_FILE

    def deployment(self, name: str) -> Deployment | None:
        """Where this node recorded ``name`` on the connected chain, if anywhere."""
        entry = self._deployments().get(str(self.connection.chain_id), {}).get(name)
        if not entry:
            return None
        return Deployment(str(entry["address"]), int(str(entry["block"])), str(entry["tx"]))

    def record_deployment(self, name: str, deployment: Deployment) -> None:
        deployments = self._deployments()
        deployments.setdefault(str(self.connection.chain_id), {})[name] = {
            "address": deployment.address,
            "block": deployment.block,
            "tx": deployment.tx_hash,
        }
        self.deployments_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.deployments_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(deployments, indent=2, sort_keys=True), encoding="utf-8")
        temporary.replace(self.deployments_path)

    def consortium_address(self) -> str | None:
        return self._contract_address("Consortium", "consortium")

    def consortium(self) -> Consortium:
        return Consortium.at(self.sender, self._required_address("Consortium", "consortium"))

    def anchor_registry_address(self) -> str | None:
        return self._contract_address("AnchorRegistry", "anchor_registry")

    def anchor_registry(self, sender: TransactionSender | None = None) -> AnchorRegistry:
        """The registry, read (and written, with an oracle's sender) through ``sender``."""
        address = self._required_address("AnchorRegistry", "anchor_registry")
        return AnchorRegistry.at(sender or self.sender, address)

    def quality_ledger_address(self) -> str | None:
        return self._contract_address("QualityLedger", "quality_ledger")

    def quality_ledger(self, sender: TransactionSender | None = None) -> QualityLedger:
        """The ledger, read and written (as a relaying member) through ``sender``."""
        address = self._required_address("QualityLedger", "quality_ledger")
        return QualityLedger.at(sender or self.sender, address)

    def line_control(self, sender: TransactionSender | None = None) -> LineControl:
        """Line control, through ``sender`` (an oracle's for requests, acks and stops)."""
        address = self._required_address("LineControl", "line_control")
        return LineControl.at(sender or self.sender, address)

    def supplier_quality(self, sender: TransactionSender | None = None) -> SupplierQuality:
        address = self._required_address("SupplierQuality", "supplier_quality")
        return SupplierQuality.at(sender or self.sender, address)

    def corrective_action(self, sender: TransactionSender | None = None) -> CorrectiveAction:
        address = self._required_address("CorrectiveAction", "corrective_action")
        return CorrectiveAction.at(sender or self.sender, address)

    def _contract_address(self, name: str, config_key: str) -> str | None:
        """``contracts.<config_key>`` from the config, else where this node recorded ``name``."""
        configured: str | None = getattr(self.settings.contracts, config_key)
        if configured:
            return configured
        recorded = self.deployment(name)
        return recorded.address if recorded else None

    def _required_address(self, name: str, config_key: str) -> str:
        address = self._contract_address(name, config_key)
        if address is None:
            raise ConfigError(
                f"no {name} address: set contracts.{config_key} in the config or deploy it first"
            )
        return address

    def _deployments(self) -> dict[str, dict[str, dict[str, object]]]:
        try:
            loaded = json.loads(self.deployments_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.deployments_path} is unreadable: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{self.deployments_path} is not a JSON object")
        return loaded

    # -- oracle keys -------------------------------------------------------------------------

    def create_oracle_key(self, password: str, kdf_iterations: int) -> LocalAccount:
        """A new oracle key, written encrypted to the oracle keystore directory."""
        oracle: LocalAccount = Account.create()
        write_keystore(self.oracle_keystore(oracle.address), oracle, password, kdf_iterations)
        return oracle

    def oracle_sender(self) -> TransactionSender:
        """A sender for this member's first locally held oracle key that is active on-chain."""
        consortium = self.consortium()
        for address in self.local_oracle_addresses():
            if consortium.oracle_of(address).active:
                oracle = read_keystore(self.oracle_keystore(address), self._password)
                return TransactionSender(self.connection, oracle, self.sender.options)
        raise KeystoreError(
            f"no active oracle key of {self.address} in {self.settings.oracle_dir} "
            "(run `qnode oracle add`)"
        )

    # -- off-chain store ---------------------------------------------------------------------

    def store(self) -> Store:
        """The member's store, opened (and migrated) on first use."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def batcher(self) -> Batcher:
        policy = BatchPolicy(self.settings.anchoring.max_leaves, self.settings.anchoring.max_age_s)
        return Batcher(self.store(), self.address, policy)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def oracle_keystore(self, address: str) -> Path:
        return self.settings.oracle_dir / f"{address}.json"

    def local_oracle_addresses(self) -> list[str]:
        directory = self.settings.oracle_dir
        return sorted(p.stem for p in directory.glob("0x*.json")) if directory.is_dir() else []

    # -- status ------------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        chain = self.connection.status()
        balance = int(self.connection.w3.eth.get_balance(self.account.address))
        address = self.consortium_address()
        if address is None or not self.connection.has_code(address):
            return NodeStatus(chain, self.address, balance, address, None, None, None, ())
        consortium = Consortium.at(self.sender, address)
        member = consortium.member(self.address)
        known = set(self.local_oracle_addresses()) | set(consortium.oracles_of(self.address))
        oracles = tuple(consortium.oracle_of(oracle) for oracle in sorted(known))
        return NodeStatus(
            chain,
            self.address,
            balance,
            address,
            member,
            consortium.threshold(),
            len(consortium.members()),
            oracles,
        )
