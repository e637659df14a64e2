"""SQLAlchemy models of the off-chain store. The schema itself is owned by Alembic migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SequenceKey = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    """An accepted record: its public (non-private) fields and the hash that goes in its leaf."""

    __tablename__ = "records"

    record_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    record_type: Mapped[str] = mapped_column(String(100))
    observed_at_us: Mapped[int] = mapped_column(BigInteger)
    stored_at_us: Mapped[int] = mapped_column(BigInteger)
    public_json: Mapped[str] = mapped_column(Text)
    private_commitment: Mapped[str | None] = mapped_column(String(66))
    content_hash: Mapped[str] = mapped_column(String(66))

    __table_args__ = ({"sqlite_with_rowid": False},)


class PrivateFieldsRow(Base):
    """Private fields of a record: never leave the store; only their salted commitment does."""

    __tablename__ = "private_fields"

    record_id: Mapped[str] = mapped_column(
        String(66), ForeignKey("records.record_id", ondelete="CASCADE"), primary_key=True
    )
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    values_json: Mapped[str] = mapped_column(Text)

    __table_args__ = ({"sqlite_with_rowid": False},)


class OutboxRow(Base):
    """A record's place in the anchoring queue, written with it; ``batch_id`` set once batched."""

    __tablename__ = "anchor_outbox"

    seq: Mapped[int] = mapped_column(SequenceKey, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(66), unique=True)
    batch_id: Mapped[str | None] = mapped_column(String(66))
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class BatchRow(Base):
    """A closed batch: the outbox rows carrying its id; its tree dump (manifest) is a blob."""

    __tablename__ = "anchor_batches"

    batch_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    seq_from: Mapped[int] = mapped_column(BigInteger)
    seq_to: Mapped[int] = mapped_column(BigInteger)
    leaf_count: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(String(66))
    manifest_hash: Mapped[str] = mapped_column(String(66))
    manifest_blob: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    closed_at_us: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    contract: Mapped[str | None] = mapped_column(String(42))
    oracle: Mapped[str | None] = mapped_column(String(42))
    anchored_at_us: Mapped[int | None] = mapped_column(BigInteger)


class QuarantineRow(Base):
    """A rejected reading: the raw payload as received and why it was refused. Never deleted."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(SequenceKey, primary_key=True, autoincrement=True)
    received_at_us: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(500))
    device_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class DeviceSequenceRow(Base):
    """The highest sequence number accepted from a device, written with the records it carried."""

    __tablename__ = "device_sequences"

    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"sqlite_with_rowid": False},)


class GenealogyLinkRow(Base):
    """An edge of the genealogy graph: ``output_id`` was made from ``input_id`` (GS1 DL URIs)."""

    __tablename__ = "genealogy_links"

    id: Mapped[int] = mapped_column(SequenceKey, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(66))
    output_id: Mapped[str] = mapped_column(String(500), index=True)
    input_id: Mapped[str] = mapped_column(String(500), index=True)
    input_kind: Mapped[str] = mapped_column(String(40))
    observed_at_us: Mapped[int] = mapped_column(BigInteger)


class AttestationRow(Base):
    """A critical record's EIP-712 attestation (bundle JSON) and its way onto the chain:
    signed -> submitted -> confirmed | failed. A record may be signed again after a failure (a new
    digest), so ``record_id`` is not unique; the chain records an id once."""

    __tablename__ = "attestations"
    __table_args__ = (Index("ix_attestations_signer_nonce", "signer", "nonce"),)

    digest: Mapped[str] = mapped_column(String(66), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(66), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    signer: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    bundle_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


class EventCheckpointRow(Base):
    """How far a contract-event consumer got: the last block it handled, by number and hash.
    Written in the same transaction as the actions that block's events caused."""

    __tablename__ = "event_checkpoints"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    updated_at_us: Mapped[int] = mapped_column(BigInteger)


class EventBlockRow(Base):
    """Recent blocks a consumer handled (number, hash): where to rewind to after a reorg."""

    __tablename__ = "event_blocks"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(66))

    __table_args__ = ({"sqlite_with_rowid": False},)


class HandledEventRow(Base):
    """A contract event a consumer acted on, by a key that survives a reorg (e.g. the request
    id), so that an event mined again in another block is not acted on twice."""

    __tablename__ = "handled_events"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    handled_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"sqlite_with_rowid": False},)


class ControlActionRow(Base):
    """An action the node owes (PLC write, webhook, notification, chain record), by a unique
    idempotency key: pending -> running -> done | failed, retried with backoff meanwhile."""

    __tablename__ = "control_actions"
    __table_args__ = (Index("ix_control_actions_due", "status", "next_attempt_at_us"),)

    id: Mapped[int] = mapped_column(SequenceKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    payload_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at_us: Mapped[int] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    result_json: Mapped[str | None] = mapped_column(Text)


class TaskRow(Base):
    """A task for a person or a supplier: an improvement task, an 8D discipline to answer."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_assignee_status", "assignee", "status"),)

    id: Mapped[int] = mapped_column(SequenceKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    assignee: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(500))
    detail_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    due_at_us: Mapped[int | None] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    closed_at_us: Mapped[int | None] = mapped_column(BigInteger)


class RuleStateRow(Base):
    """A rule's running state for one scope (e.g. consecutive counts per supplier), so that a
    restarted node goes on counting where it stopped."""

    __tablename__ = "rule_state"

    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    state_json: Mapped[str] = mapped_column(Text)
    updated_at_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = ({"sqlite_with_rowid": False},)
