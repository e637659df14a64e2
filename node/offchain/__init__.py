"""The member's own store: records, private parts, the anchoring outbox and batches; blobs."""
