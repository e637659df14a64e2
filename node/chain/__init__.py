"""Talking to the consortium chain.

Compiled contract artifacts (``artifacts``), revert decoding (``revert``, ``contract_errors``),
the web3 connection (embedded py-evm or JSON-RPC), the signer and nonce manager, contract bindings
and the event stream.
"""
