"""Contract bindings built from the committed artifacts: encode calls, send them, decode events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import EventData

from node.chain.artifacts import Artifact, load_artifact
from node.chain.sender import Receipt, SentTx, TransactionSender, TxRequest
from node.errors import ArtifactError, ChainError


class ContractBinding:
    """One deployed contract, talked to through the node's own sender."""

    def __init__(self, sender: TransactionSender, artifact: Artifact, address: str) -> None:
        self.sender = sender
        self.artifact = artifact
        self.address: str = Web3.to_checksum_address(address)
        self._contract: Contract = sender.connection.w3.eth.contract(
            address=self.address, abi=artifact.abi
        )

    @classmethod
    def at(cls, sender: TransactionSender, artifact: Artifact, address: str) -> ContractBinding:
        """Bind to ``address``, checking that code is deployed there."""
        if not sender.connection.has_code(address):
            raise ChainError(
                f"no {artifact.name} contract at {address} on chain {sender.connection.chain_id} "
                "(was the local chain restarted? deploy again)"
            )
        return cls(sender, artifact, address)

    @classmethod
    def deploy(
        cls, sender: TransactionSender, artifact: Artifact, *args: Any, gas: int | None = None
    ) -> tuple[ContractBinding, Receipt]:
        if not artifact.bytecode or artifact.bytecode == "0x":
            raise ArtifactError(f"{artifact.name} has no bytecode: it cannot be deployed")
        factory = sender.connection.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(*args).data_in_transaction
        request = TxRequest(
            to=None,
            data=bytes.fromhex(data.removeprefix("0x")),
            gas=gas,
            label=f"{artifact.name}.constructor",
        )
        receipt = sender.transact(request)
        if receipt.contract_address is None:
            raise ChainError(f"{artifact.name} deployment {receipt.tx_hash} created no contract")
        return cls(sender, artifact, receipt.contract_address), receipt

    @property
    def name(self) -> str:
        return self.artifact.name

    def read(self, function: str, *args: Any) -> Any:
        """Call a view; a revert is raised as its decoded contract error."""
        with self.sender.reverts_decoded(f"{self.name}.{function}"):
            return self._contract.functions[function](*args).call({"from": self.sender.address})

    def request(self, function: str, *args: Any, gas: int | None = None) -> TxRequest:
        data = self._contract.encode_abi(function, args=list(args))
        return TxRequest(
            to=self.address,
            data=bytes.fromhex(data.removeprefix("0x")),
            gas=gas,
            label=f"{self.name}.{function}",
        )

    def send(self, function: str, *args: Any, gas: int | None = None) -> SentTx:
        """Broadcast without waiting (pipelining); collect with ``sender.wait``."""
        return self.sender.send(self.request(function, *args, gas=gas))

    def transact(self, function: str, *args: Any, gas: int | None = None) -> Receipt:
        return self.sender.transact(self.request(function, *args, gas=gas))

    def events(self, receipt: Receipt, event: str) -> Sequence[EventData]:
        """The ``event`` logs this contract emitted in ``receipt``."""
        logs = self._contract.events[event]().process_receipt(receipt.receipt, errors=DISCARD)
        return [log for log in logs if log["address"] == self.address]


def bind(sender: TransactionSender, name: str, address: str) -> ContractBinding:
    return ContractBinding.at(sender, load_artifact(name), address)
