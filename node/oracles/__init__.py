"""Oracles: shop-floor sources, validation with quarantine, signed attestations, EPCIS mapping."""
