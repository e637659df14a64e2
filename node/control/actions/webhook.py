"""Signed JSON webhooks: the node's POSTs to an ERP or a supplier's system.

Each POST carries:
- the JSON body, compact with sorted keys (the same action always sends the same bytes);
- ``Idempotency-Key``: the action key, so a receiver can drop the copy a retry sends;
- the signature header (``X-Qnode-Signature`` by default): ``sha256=`` + the hex HMAC-SHA256 of
  the raw body under the shared secret.

Answers: 2xx is done; 408, 425, 429, 5xx and transport failures (refused, reset, timed out) are
retryable :class:`ActionError` s; any other answer is permanent (the receiver refused the request
itself, and sending it again would not change that).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from node.errors import ActionError
from node.settings import WebhookSettings

IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_PREFIX = "sha256="
RETRYABLE_STATUSES = frozenset({408, 425, 429})
_SNIPPET = 200


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(body: Mapping[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class WebhookReply:
    status: int
    body: Any
    """The answer's JSON, or its text when it is not JSON."""


class SignedWebhook:
    """POSTs signed JSON to ``settings.url`` (or another URL given per call) with one pooled
    HTTP client; ``name`` (e.g. "ERP") labels errors. ``aclose()`` when done."""

    def __init__(
        self, settings: WebhookSettings, *, name: str = "webhook", base_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.name = name
        self._base_dir = base_dir
        self._client: httpx.AsyncClient | None = None

    async def post(
        self, body: Mapping[str, Any], *, key: str, url: str | None = None
    ) -> WebhookReply:
        target = url or self.settings.url
        content = encode_body(body)
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: key,
            self.settings.signature_header: sign(self.settings.secret, content),
        }
        try:
            response = await self._http().post(target, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise ActionError(
                f"{self.name} {target} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        reply = WebhookReply(response.status_code, _body(response))
        if response.is_success:
            return reply
        status = response.status_code
        raise ActionError(
            f"{self.name} {target} answered {status} {response.reason_phrase}: "
            f"{str(reply.body)[:_SNIPPET]}",
            retryable=status in RETRYABLE_STATUSES or status >= 500,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout_s, verify=self._verify(), follow_redirects=False
            )
        return self._client

    def _verify(self) -> ssl.SSLContext | bool:
        ca_file = self.settings.ca_file
        if ca_file is None:
            return True
        if self._base_dir is not None and not ca_file.is_absolute():
            ca_file = self._base_dir / ca_file
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ActionError(f"{self.name}: CA file {ca_file}: {exc}", retryable=False) from exc


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:_SNIPPET]
