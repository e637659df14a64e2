"""Other members' parts of a trace, asked from their nodes.

The member's endpoint is the one registered in the Consortium contract (read through the same
:class:`~node.api.verification.ChainView` the passports use, see :mod:`node.api.peers`); the
request carries the bearer token this node holds for that member (its tier decides what is
served). Nothing here trusts the answer: :mod:`node.trace.tracer` checks every record in it
against the chain, with the member as the expected owner. A node that does not answer, answers
an error or answers something that is not a trace answer is reported with why, and the trace goes
on without that part.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from node.api.verification import FAILED, UNAVAILABLE, ChainView
from node.errors import ChainError, ConfigError
from node.trace.part import ANOMALIES_FORMAT, LINKS_FORMAT, AnomalyQuery

OK = "ok"
_MAX_ANSWER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PeerAnswer:
    member: str
    name: str | None
    role: str | None
    status: str
    """ok, unavailable (no answer, 5xx, 429, the chain) or failed (refused, not a trace answer)."""
    detail: str
    body: Mapping[str, Any] | None
    elapsed_s: float


class PartSource(Protocol):
    """Where a trace gets other members' parts (one method per trace route)."""

    def links(self, member: str, ids: list[str]) -> PeerAnswer: ...

    def anomalies(self, member: str, query: AnomalyQuery) -> PeerAnswer: ...


class HttpPartSource:
    """Asks the members' nodes over HTTP(S). ``tokens`` maps member addresses to the bearer token
    this node was given by each; ``endpoints`` overrides registered endpoints (tests, proxies)."""

    def __init__(
        self,
        chain: ChainView,
        tokens: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        endpoints: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.chain = chain
        self.tokens = {k.lower(): v for k, v in (tokens or {}).items()}
        self.endpoints = {k.lower(): v.rstrip("/") for k, v in (endpoints or {}).items()}
        self._client = client or httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=16),
        )

    def close(self) -> None:
        self._client.close()

    def links(self, member: str, ids: list[str]) -> PeerAnswer:
        return self._ask(member, "/api/v1/trace/links", {"ids": ids}, LINKS_FORMAT)

    def anomalies(self, member: str, query: AnomalyQuery) -> PeerAnswer:
        body = {
            "subjects": list(query.subjects),
            "equipment": [
                {"id": w.id, "since_us": w.since_us, "until_us": w.until_us}
                for w in query.equipment
            ],
            "suppliers": [
                {"id": w.id, "since_us": w.since_us, "until_us": w.until_us}
                for w in query.suppliers
            ],
        }
        return self._ask(member, "/api/v1/trace/anomalies", body, ANOMALIES_FORMAT)

    def _ask(self, member: str, path: str, body: dict[str, Any], form: str) -> PeerAnswer:
        started = time.perf_counter()

        def answer(
            status: str,
            detail: str,
            payload: Mapping[str, Any] | None = None,
            name: str | None = None,
            role: str | None = None,
        ) -> PeerAnswer:
            return PeerAnswer(
                member, name, role, status, detail, payload, time.perf_counter() - started
            )

        try:
            found = self.chain.member(member)
        except (ChainError, ConfigError) as exc:
            return answer(UNAVAILABLE, f"the chain could not be asked about {member}: {exc}")
        if found is None or not found.active:
            return answer(FAILED, f"{member} is not an active consortium member")
        name, role = found.name, found.role.label
        endpoint = self.endpoints.get(member.lower(), found.endpoint.rstrip("/"))
        headers = {"Accept": "application/json"}
        token = self.tokens.get(member.lower())
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self._client.post(endpoint + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return answer(
                UNAVAILABLE,
                f"{name}'s node at {endpoint} did not answer: {type(exc).__name__}",
                name=name,
                role=role,
            )
        if response.status_code != 200:
            unavailable = response.status_code >= 500 or response.status_code == 429
            why = ""
            if response.status_code in (401, 403):
                why = (
                    " (this node holds no token for it)"
                    if token is None
                    else " (the token this node holds is refused or of too low a tier)"
                )
            return answer(
                UNAVAILABLE if unavailable else FAILED,
                f"{name}'s node answered {response.status_code} to {path}{why}",
                name=name,
                role=role,
            )
        if len(response.content) > _MAX_ANSWER_BYTES:
            return answer(FAILED, f"{name}'s node answered too much", name=name, role=role)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("format") != form:
            return answer(
                FAILED, f"{name}'s node served no {form} answer to {path}", name=name, role=role
            )
        if str(payload.get("member", "")).lower() != member.lower():
            return answer(
                FAILED,
                f"{name}'s node answered as {payload.get('member')!r}, not as {member}",
                name=name,
                role=role,
            )
        return answer(OK, f"{name}'s node at {endpoint}", payload, name=name, role=role)
