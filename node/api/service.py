"""The API's state for one node: the opened node, the catalogue, the verifier, the passport cache,
the rate limiter and the tokens. One per app, nothing global: two apps in one process (two members
in a test) share nothing.

Passports are cached per product key, with their JSON and HTML per tier. An entry is dropped when
anything it was built from changes (a new record about one of its products or equipment, a new
anchor or attestation of one of its records: see ``Catalogue.refresh``), and after
``api.passport_ttl_s`` in any case (member names, oracle status).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from node.anchoring.batcher import Batcher
from node.anchoring.proofs import BUNDLE_FORMAT as PROOF_FORMAT
from node.anchoring.proofs import verify_bundle
from node.api.access import Tier, TokenTable
from node.api.catalogue import Catalogue, Changes, ProductKey
from node.api.passport import Passport, PassportBuilder, passport_json
from node.api.peers import HttpUpstreamSource, UpstreamSource
from node.api.ratelimit import RateLimiter
from node.api.verification import ChainView, Verifier, check_signature
from node.api.views import record_tier
from node.errors import AttestationError, NotFoundError, ProofError, RecordError, StoreError
from node.offchain.records import StoredRecord, check_record_id
from node.oracles.attestation import BUNDLE_FORMAT as ATTESTATION_FORMAT
from node.oracles.attestation import parse_bundle
from node.runtime import Node
from node.settings import Settings

NodeFactory = Callable[[], Node]
UpstreamFactory = Callable[[ChainView], UpstreamSource]


@dataclass
class _Entry:
    passport: Passport
    expires_at: float
    rendered: dict[tuple[str, Tier], bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookup:
    """A hit (``key``), a redirect to a less specific entry (``redirect``), or a miss."""

    key: ProductKey | None = None
    redirect: ProductKey | None = None


class _State:
    def __init__(self, service: ApiService, node: Node) -> None:
        settings = service.settings
        self.node = node
        self.store = node.store()
        self.address = node.address
        self.chain = ChainView(node.anchor_registry, node.quality_ledger, node.consortium)
        self.verifier = Verifier(
            self.store, Batcher(self.store, node.address), self.chain, node.address
        )
        self.catalogue = Catalogue(self.store)
        self.upstream = (
            service.upstream_factory(self.chain)
            if service.upstream_factory is not None
            else HttpUpstreamSource(
                self.chain, settings.api.peer_timeout_s, settings.api.passport_ttl_s
            )
        )
        self.builder = PassportBuilder(
            settings,
            self.store,
            self.catalogue,
            self.verifier,
            self.chain,
            self.upstream,
            node.address,
            service.data_lock,
        )


class ApiService:
    def __init__(
        self,
        settings: Settings,
        node_factory: NodeFactory,
        upstream_factory: UpstreamFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.node_factory = node_factory
        self.upstream_factory = upstream_factory
        self.clock = clock
        self.limiter = RateLimiter(settings.api.rate_limit, clock)
        self.tokens = TokenTable(settings.api.tokens)
        self.serials = re.compile(settings.api.serial_pattern)
        self.base = (settings.api.public_base_url or "").rstrip("/")
        self.data_lock = threading.RLock()
        self._open_lock = threading.Lock()
        self._state: _State | None = None
        self._entries: dict[ProductKey, _Entry] = {}
        self._by_record: dict[str, set[ProductKey]] = {}
        self._by_key: dict[ProductKey, set[ProductKey]] = {}
        self._by_equipment: dict[str, set[ProductKey]] = {}
        self._next_refresh = 0.0
        self.names: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._state is not None and self.clock() < self._next_refresh

    def state(self) -> _State:
        """The opened node (opened on first use, in a worker thread)."""
        if self._state is None:
            with self._open_lock:
                if self._state is None:
                    self._state = _State(self, self.node_factory())
        return self._state

    def close(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            if isinstance(state.upstream, HttpUpstreamSource):
                state.upstream.close()
            state.node.close()

    def refresh(self) -> None:
        """Bring the catalogue up to date and drop the passports that changed."""
        state = self.state()
        self._next_refresh = self.clock() + self.settings.api.refresh_interval_s
        with self.data_lock:
            changes = state.catalogue.refresh()
        if changes:
            self._invalidate(changes)

    def _invalidate(self, changes: Changes) -> None:
        with self.data_lock:
            stale: set[ProductKey] = set()
            for record_id in changes.records:
                stale |= self._by_record.get(record_id, set())
            for key in changes.keys:
                stale |= self._by_key.get(key, set())
            for equipment in changes.equipment:
                stale |= self._by_equipment.get(equipment, set())
            for key in stale:
                self._drop(key)

    def _drop(self, key: ProductKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        passport = entry.passport
        for record_id in passport.record_ids:
            self._by_record.get(record_id, set()).discard(key)
        for other in passport.keys:
            self._by_key.get(other, set()).discard(key)
        for equipment in passport.equipment:
            self._by_equipment.get(equipment, set()).discard(key)

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, key: ProductKey) -> Lookup:
        """The same work for every serial, known or not: the scheme check, the item lookup and
        the walk up to the first known, owned, less specific entry."""
        state = self.state()
        catalogue = state.catalogue
        own = state.builder.ownership.is_own(key.gtin)
        well_formed = key.serial is None or self.serials.fullmatch(key.serial) is not None
        hit = catalogue.knows(key) and own and well_formed
        redirect: ProductKey | None = None
        parent = key.parent()
        while parent is not None and redirect is None:
            if own and (
                catalogue.knows(parent)
                or (parent.level == "product" and parent.gtin in self.settings.api.products)
            ):
                redirect = parent
            parent = parent.parent()
        if hit:
            return Lookup(key=key)
        if key.level == "product" and own and key.gtin in self.settings.api.products:
            return Lookup(key=key)
        return Lookup(redirect=redirect)

    # -- passports ---------------------------------------------------------------------------

    def cached(self, key: ProductKey, kind: str, tier: Tier) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= self.clock():
            return None
        return entry.rendered.get((kind, tier))

    def passport(self, key: ProductKey) -> Passport:
        with self.data_lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > self.clock():
                return entry.passport
            self._drop(key)
            passport = self.state().builder.build(key)
            self._entries[key] = _Entry(passport, self.clock() + self.settings.api.passport_ttl_s)
            for record_id in passport.record_ids:
                self._by_record.setdefault(record_id, set()).add(key)
            for other in passport.keys:
                self._by_key.setdefault(other, set()).add(key)
            for equipment in passport.equipment:
                self._by_equipment.setdefault(equipment, set()).add(key)
            self._remember_names(passport)
            return passport

    def _remember_names(self, passport: Passport) -> None:
        self.names[passport.issuer.member.lower()] = passport.issuer.name
        stack = list(passport.supply_chain)
        while stack:
            node = stack.pop()
            if node.owner is not None and node.owner_name is not None:
                self.names[node.owner.lower()] = node.owner_name
            stack.extend(node.children)

    def passport_document(self, key: ProductKey, tier: Tier) -> dict[str, Any]:
        return passport_json(self.passport(key), tier, self.base, self.names)

    def passport_bytes(self, key: ProductKey, tier: Tier) -> bytes:
        cached = self.cached(key, "json", tier)
        if cached is not None:
            return cached
        body = orjson.dumps(self.passport_document(key, tier))
        self.store_rendered(key, "json", tier, body)
        return body

    def store_rendered(self, key: ProductKey, kind: str, tier: Tier, body: bytes) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.rendered[(kind, tier)] = body

    # -- records and bundles -----------------------------------------------------------------

    def served_record(self, record_id: str, tier: Tier) -> StoredRecord:
        """A record a passport of ``tier`` shows; NotFoundError otherwise (the same answer for a
        record that does not exist and one the tier may not see)."""
        checked = check_record_id(record_id)
        found = self.state().store.records([checked])
        if found:
            needed = record_tier(found[0].record_type)
            if needed is not None and needed <= tier:
                return found[0]
        raise NotFoundError(f"no record {checked} is served to the {tier.label} tier here")

    def proof_bundle(self, record: StoredRecord) -> dict[str, Any]:
        bundle = self.state().verifier.proof_bundle(record)
        if bundle is None:
            raise NotFoundError(f"record {record.record_id} has no proof yet: not anchored")
        return bundle

    def attestation_bundle(self, record: StoredRecord) -> dict[str, Any]:
        found = self.state().verifier.attestation(record.record_id)
        if found is None:
            raise NotFoundError(f"record {record.record_id} has no attestation")
        return found[1].to_bundle()

    def blob(self, record: StoredRecord, name: str) -> bytes:
        digest = record.public.get(name)
        if not name.endswith("_blob") or not isinstance(digest, str):
            raise NotFoundError(f"record {record.record_id} has no blob field {name!r}")
        try:
            return self.state().store.blobs.get(digest)
        except StoreError as exc:
            raise NotFoundError(f"the blob of {name} is not in this store") from exc

    def verify(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Check a submitted bundle offline and against the chain (the proof checker)."""
        state = self.state()
        form = bundle.get("format")
        if form == PROOF_FORMAT:
            with state.chain._lock:  # verify_bundle reads the registry
                checked = verify_bundle(bundle, state.chain.registry())
            on_chain = state.chain.batch(checked.batch_id)
            member = None if on_chain is None else state.chain.member(on_chain.member)
            return {
                "valid": True,
                "kind": "proof",
                "recordId": checked.record_id,
                "detail": "the record hashes to its leaf, the proof leads to the root, and the "
                "root is the one anchored on-chain under the batch id",
                "batchId": checked.batch_id,
                "root": checked.root,
                "blockNumber": None if on_chain is None else on_chain.block_number,
                "member": None if on_chain is None else on_chain.member,
                "memberName": None if member is None else member.name,
                "onChain": True,
            }
        if form == ATTESTATION_FORMAT or "primaryType" in bundle:
            attestation = parse_bundle(bundle)
            attribution = state.chain.attribution(attestation.record_id)
            if attribution is None:
                raise AttestationError(
                    f"the signature is valid (signer {attestation.signer}) but record "
                    f"{attestation.record_id} is not recorded on QualityLedger"
                )
            signature, problem = check_signature(attestation, state.chain, attribution.member)
            if problem:
                raise AttestationError(problem)
            return {
                "valid": True,
                "kind": "attestation",
                "recordId": attestation.record_id,
                "detail": "the EIP-712 signature recovers to the signer, and QualityLedger "
                "records this digest from that oracle",
                "blockNumber": signature.block_number,
                "member": signature.member,
                "memberName": signature.member_name,
                "signer": signature.signer,
                "onChain": True,
            }
        if form is None:
            raise RecordError("the body is not a bundle: it has no 'format'")
        raise ProofError(
            f"unknown bundle format {str(form)[:80]!r}: expected {PROOF_FORMAT!r} or "
            f"{ATTESTATION_FORMAT!r}"
        )
