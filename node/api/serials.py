"""The serial-number scheme that keeps labels from being enumerated.

A serial (GS1 AI 21) printed on a label is a random value of at least 80 bits: 16 characters of
Crockford's base 32 (``0-9A-Z`` without ``I L O U``; 5 bits each), optionally up to 20 (100 bits).
With a billion serials issued under one GTIN and lot, a guess hits one with a probability of
about 2**-50; the per-client miss limit (``api.rate_limit``) then bounds how many guesses a client
can make at all. The resolver serves only items whose serial matches ``api.serial_pattern`` (this
scheme by default): an item recorded with a sequential serial is never served, and a request for a
serial outside the scheme is answered exactly like any other unknown serial.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DEFAULT_LENGTH = 16
BITS_PER_CHARACTER = 5


def new_serial(length: int = DEFAULT_LENGTH) -> str:
    """A random serial of ``length`` (16..20) Crockford base-32 characters."""
    if not 16 <= length <= 20:
        raise ValueError("a serial is 16 to 20 characters (80 to 100 random bits)")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def serial_matcher(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
