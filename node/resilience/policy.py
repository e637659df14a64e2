"""The thresholds and scales of the resilience metrics: defaults, or a member's ``resilience.toml``.

The file sits beside the member's ``qnode.toml`` (``[resilience]`` is not a section of the node's
settings, whose sections are fixed): every key is optional and named as a field of
:class:`ResiliencePolicy`, e.g.::

    baseline_subgroups = 3       # in-control subgroups (or in-spec lots) that end a disturbance
    min_cpk = 1.0                # a supplier below it (latest window) is high-risk
    high_risk_ppm = 5000         # ... and above this PPM over the last window_days
    window_days = 90
    overdue_8d_days = 30         # an 8D case open longer than this is overdue
    plan_max_age_days = 365      # a contingency plan reviewed longer ago than this is stale
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from node.errors import ConfigError

__all__ = ["POLICY_FILE", "ResiliencePolicy", "load_policy"]

POLICY_FILE = "resilience.toml"


@dataclass(frozen=True)
class ResiliencePolicy:
    baseline_subgroups: int = 3
    """A compensated characteristic is back to baseline after this many consecutive in-control
    subgroups following the PLC's acknowledgement; a run of out-of-spec lots after this many
    consecutive in-spec lots."""
    min_cpk: float = 1.0
    """A supplier whose latest Cpk window (any characteristic) is below this is high-risk."""
    high_risk_ppm: float = 5_000.0
    """A supplier whose PPM over the last ``window_days`` is above this is high-risk."""
    window_days: float = 90.0
    """The window of the PPM that rates suppliers (risk and radar)."""
    overdue_8d_days: float = 30.0
    """An 8D case open longer than this is overdue (its supplier is high-risk)."""
    cpk_window_lots: int = 10
    """Consecutive lots of one characteristic per Cpk window (the latest window ends at the
    latest lot)."""
    cpk_variance_max: float = 0.25
    """Cpk variance at which the radar's stability axis reaches 0 (1 at no variance)."""
    ppm_max: float = 20_000.0
    """PPM at which the radar's PPM axis reaches 0 (1 at 0 PPM)."""
    closure_days_max: float = 60.0
    """Mean 8D closure time at which the radar's closure axis reaches 0 (1 at 0 days)."""
    plan_max_age_days: float = 365.0
    """Review age beyond which a contingency plan is stale, unless the plan states its own
    ``review_interval_days``."""
    trend_months: int = 12
    """Calendar months (UTC) of the PPM trend, the current one included."""
    measurement_scan_limit: int = 20_000
    """Measurement records read after each acknowledged compensation to find its baseline."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"resilience.{item.name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"resilience.{item.name} must be a finite number >= 0")
        for name in ("baseline_subgroups", "trend_months", "measurement_scan_limit"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"resilience.{name} must be a whole number >= 1")
        if not isinstance(self.cpk_window_lots, int) or self.cpk_window_lots < 3:
            raise ConfigError("resilience.cpk_window_lots must be a whole number >= 3")
        for name in ("cpk_variance_max", "ppm_max", "closure_days_max", "plan_max_age_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"resilience.{name} must be above 0")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> ResiliencePolicy:
        known = {item.name: item for item in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"resilience: unknown setting(s) {', '.join(unknown)}")
        checked: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls(), name)
            whole = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(default, float) and whole:
                value = float(value)
            checked[name] = value
        return cls(**checked)


def load_policy(path: Path) -> ResiliencePolicy:
    """The policy in ``path`` (a missing file: the defaults)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ResiliencePolicy()
    except OSError as exc:
        raise ConfigError(f"{path} is unreadable: {exc.strerror}") from exc
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    section = values.get("resilience", values)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [resilience] must be a table")
    try:
        return ResiliencePolicy.from_values(section)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
