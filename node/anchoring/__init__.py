"""Merkle anchoring: OpenZeppelin-compatible trees, the batcher and its outbox, proofs."""
