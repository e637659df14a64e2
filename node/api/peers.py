"""Upstream parts owned by other members: fetched from the owning member's node and verified here.

The seam is :class:`UpstreamSource` (one method). :class:`HttpUpstreamSource` asks the owner's
node (its endpoint as registered in the Consortium contract) for the part's passport, then fetches
every value's proof bundle and attestation and checks them itself against the chain: the Merkle
proof leads to a root the *owner* anchored, the signature recovers to an oracle the ledger
attributes to the owner. The values shown are taken from the verified bundles, never from the
owner's own claims. A node that does not answer, or data that does not verify, is reported on the
part or on each value; it never fails the passport that includes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from node.api.catalogue import key_of
from node.api.verification import (
    FAILED,
    UNAVAILABLE,
    VERIFIED,
    ChainView,
    Verification,
    check_anchor,
    check_signature,
    summarise,
)
from node.api.views import PassportValue, is_critical, value_from_fields
from node.errors import AttestationError, ChainError, ConfigError
from node.oracles.attestation import parse_bundle

_FAILURE_TTL_S = 5.0
_MAX_VALUES = 200


@dataclass(frozen=True)
class UpstreamPart:
    uri: str
    owner: str
    owner_name: str | None
    owner_role: str | None
    status: str
    """verified (every value checked), failed, unavailable."""
    detail: str
    values: tuple[PassportValue, ...] = ()


class UpstreamSource(Protocol):
    def part(self, owner: str, uri: str) -> UpstreamPart:
        """The part ``uri`` as its owner (a member address) serves it, verified."""
        ...


class HttpUpstreamSource:
    """Fetches parts over HTTP(S) from the owner's registered endpoint; results are cached
    (``ttl_s``; failures for a few seconds)."""

    def __init__(
        self,
        chain: ChainView,
        timeout_s: float = 3.0,
        ttl_s: float = 300.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.chain = chain
        self.ttl_s = ttl_s
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._cache: dict[tuple[str, str], tuple[float, UpstreamPart]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def part(self, owner: str, uri: str) -> UpstreamPart:
        cache_key = (owner.lower(), uri)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        part = self._fetch(owner, uri)
        ttl = self.ttl_s if part.status != UNAVAILABLE else _FAILURE_TTL_S
        with self._lock:
            self._cache[cache_key] = (now + ttl, part)
        return part

    def _fetch(self, owner: str, uri: str) -> UpstreamPart:
        try:
            member = self.chain.member(owner)
        except (ChainError, ConfigError) as exc:
            return UpstreamPart(uri, owner, None, None, UNAVAILABLE, f"the chain: {exc}")
        if member is None or not member.active:
            return UpstreamPart(
                uri, owner, None, None, FAILED, f"{owner} is not an active consortium member"
            )
        name, role = member.name, member.role.label
        key = key_of(uri)
        if key is None:
            return UpstreamPart(uri, owner, name, role, FAILED, f"{uri} is not a GS1 product URI")
        endpoint = member.endpoint.rstrip("/")
        path = key.link().uri("")
        try:
            response = self._client.get(endpoint + path, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return UpstreamPart(
                uri,
                owner,
                name,
                role,
                UNAVAILABLE,
                f"{name}'s node at {endpoint} did not answer: {type(exc).__name__}",
            )
        if response.status_code != 200:
            status = (
                UNAVAILABLE
                if response.status_code >= 500 or response.status_code == 429
                else FAILED
            )
            return UpstreamPart(
                uri,
                owner,
                name,
                role,
                status,
                f"{name}'s node answered {response.status_code} for {path}",
            )
        try:
            passport = response.json()
            claimed = [v for values in passport["aspects"].values() for v in values]
        except (ValueError, KeyError, TypeError, AttributeError):
            return UpstreamPart(
                uri, owner, name, role, FAILED, f"{name}'s node served no passport for {path}"
            )
        values = tuple(
            self._value(endpoint, owner, item)
            for item in claimed[:_MAX_VALUES]
            if isinstance(item, Mapping)
        )
        bad = [v for v in values if v.verification.status != VERIFIED]
        if bad:
            status = FAILED if any(v.verification.status == FAILED for v in bad) else UNAVAILABLE
            detail = f"{len(bad)} of {len(values)} values of {name} not verified"
        else:
            status, detail = VERIFIED, f"{len(values)} values of {name}, each verified here"
        return UpstreamPart(uri, owner, name, role, status, detail, values)

    def _value(self, endpoint: str, owner: str, claimed: Mapping[str, Any]) -> PassportValue:
        links = claimed.get("links") if isinstance(claimed.get("links"), Mapping) else {}
        record = claimed.get("record") if isinstance(claimed.get("record"), Mapping) else {}
        assert isinstance(links, Mapping) and isinstance(record, Mapping)
        proof_link = links.get("proof")
        bundle = self._json(endpoint, proof_link) if isinstance(proof_link, str) else None
        if not isinstance(bundle, Mapping) or not isinstance(bundle.get("record"), Mapping):
            return self._unverified(
                endpoint, owner, claimed, record, "its proof bundle could not be fetched"
            )
        try:
            anchor, problem = check_anchor(bundle, self.chain, owner)
        except (ChainError, ConfigError) as exc:
            return self._unverified(endpoint, owner, claimed, record, f"the chain: {exc}")
        problems = [problem] if problem else []
        signed = bundle["record"]
        record_type = str(signed.get("type"))
        signature = None
        if is_critical(record_type):
            attestation_link = links.get("attestation")
            raw = (
                self._json(endpoint, attestation_link)
                if isinstance(attestation_link, str)
                else None
            )
            if raw is None:
                problems.append("its attestation could not be fetched")
            else:
                try:
                    attestation = parse_bundle(raw)
                    signature, problem = check_signature(attestation, self.chain, owner)
                    if problem:
                        problems.append(problem)
                    leaf = bundle.get("leafValue") or [None, None]
                    if attestation.message["contentHash"].hex() != str(leaf[1])[2:].lower():
                        problems.append("the attestation signs another content than the proof")
                except AttestationError as exc:
                    problems.append(f"the attestation does not verify: {exc}")
                except (ChainError, ConfigError) as exc:
                    problems.append(f"the chain: {exc}")
        verification = summarise(anchor, signature, problems, [])
        fields = signed.get("fields") if isinstance(signed.get("fields"), Mapping) else {}
        assert isinstance(fields, Mapping)
        value = value_from_fields(
            record_type,
            str(signed.get("id")),
            int(signed.get("observed_at_us") or 0),
            fields,
            owner,
            verification,
            aspect="materials",
            link_base=endpoint,
        )
        if value is None:
            return self._unverified(
                endpoint, owner, claimed, record, f"record type {record_type!r}"
            )
        return value

    def _unverified(
        self,
        endpoint: str,
        owner: str,
        claimed: Mapping[str, Any],
        record: Mapping[str, Any],
        reason: str,
    ) -> PassportValue:
        status = UNAVAILABLE if "fetched" in reason or "chain" in reason else FAILED
        from node.api.access import Tier

        return PassportValue(
            aspect="materials",
            label=str(claimed.get("label", "value"))[:200],
            subject=None,
            value=claimed.get("value"),
            unit=claimed.get("unit") if isinstance(claimed.get("unit"), str) else None,
            details={},
            observed_at_us=0,
            record_id=str(record.get("id", "")),
            record_type=str(record.get("type", "")),
            source=owner,
            verification=Verification(status, f"claimed by the owner, not verified: {reason}"),
            tier=Tier.PUBLIC,
            critical=False,
            link_base=endpoint,
        )

    def _json(self, endpoint: str, link: str) -> Any:
        url = link if link.startswith(("http://", "https://")) else endpoint + link
        if not url.startswith(endpoint + "/"):
            return None  # a part's bundles come from its owner's node, nowhere else
        try:
            response = self._client.get(url, headers={"Accept": "application/json"})
            if response.status_code != 200:
                return None
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None
