"""Access tiers of the passport and the bearer tokens that grant them.

Three tiers, in the spirit of the EU battery passport: ``public`` (anyone who scans the label),
``legitimate_interest`` (repairers, recyclers, second-life operators) and ``authority``
(market-surveillance and other regulators). A token grants its own tier and the tiers below it.

Tokens are configured only as SHA-256 hashes (``[[api.tokens]]``). A presented token is hashed
and compared with *every* configured hash with :func:`hmac.compare_digest`, so neither the match
nor its position shows in the timing. A request may name the tier it wants (``?tier=``); a token
that does not grant it is a :class:`~node.errors.TierError` (403), a token that matches nothing a
:class:`~node.errors.CredentialsError` (401).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from node.errors import CredentialsError, TierError
from node.settings import ApiTokenSettings


class Tier(IntEnum):
    PUBLIC = 0
    LEGITIMATE_INTEREST = 1
    AUTHORITY = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Tier:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(t.label for t in cls)
            raise TierError(f"unknown tier {text!r}; the tiers are {choices}") from None


@dataclass(frozen=True)
class Grant:
    tier: Tier
    holder: str | None  # the token's configured name; None for the public


PUBLIC_GRANT = Grant(Tier.PUBLIC, None)
_MAX_TOKEN_CHARS = 512


class TokenTable:
    """The configured token hashes, checked in constant time."""

    def __init__(self, tokens: Sequence[ApiTokenSettings]) -> None:
        self._entries = tuple(
            (bytes.fromhex(t.sha256), Grant(Tier.parse(t.tier), t.name)) for t in tokens
        )

    def grant(self, authorization: str | None) -> Grant:
        """The grant of an ``Authorization`` header value (none: the public tier)."""
        if authorization is None:
            return PUBLIC_GRANT
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CredentialsError("use 'Authorization: Bearer <token>'")
        if len(token) > _MAX_TOKEN_CHARS:
            raise CredentialsError("the bearer token is not recognised")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Grant | None = None
        for expected, grant in self._entries:  # no early exit: every hash is compared
            if hmac.compare_digest(digest, expected) and found is None:
                found = grant
        if found is None:
            raise CredentialsError("the bearer token is not recognised")
        return found

    def tier_for(self, authorization: str | None, requested: str | None) -> Tier:
        """The tier a request is served at: the one it asks for (``?tier=``), if its token
        grants it, else the highest its token grants."""
        grant = self.grant(authorization)
        if requested is None:
            return grant.tier
        wanted = Tier.parse(requested)
        if wanted > grant.tier:
            held = "no token" if grant.holder is None else f"a {grant.tier.label} token"
            raise TierError(
                f"the {wanted.label} tier needs a {wanted.label} token; this request has {held}"
            )
        return wanted


def token_hash(token: str) -> str:
    """What to put in ``[[api.tokens]] sha256`` for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()
