"""A member's lines as LineControl.sol knows them: ids, parameters and fixed-point values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

from eth_utils.crypto import keccak

from node.errors import ControlError
from node.settings import LineParameterSettings, LineSettings


def line_id(uri: str) -> str:
    """The bytes32 id of a line on-chain: keccak256 of its GS1 Digital Link URI."""
    return "0x" + keccak(text=uri).hex()


def parameter_id(name: str) -> str:
    return "0x" + keccak(text=name).hex()


def to_fixed(value: float, decimals: int) -> int:
    """``value`` in on-chain fixed point, exactly as written (0.05 with 3 decimals is 50)."""
    scaled = Decimal(repr(value)).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ControlError(f"{value} has more than {decimals} decimals")
    return int(scaled)


def from_fixed(value: int, decimals: int) -> float:
    return float(Decimal(value).scaleb(-decimals))


@dataclass(frozen=True)
class Line:
    name: str
    settings: LineSettings

    @property
    def id(self) -> str:
        return line_id(self.settings.uri)

    def parameter(self, name: str) -> LineParameterSettings:
        try:
            return self.settings.parameters[name]
        except KeyError:
            raise ControlError(f"line {self.name!r} has no parameter {name!r}") from None

    def parameter_named_by(self, parameter_hash: str) -> tuple[str, LineParameterSettings]:
        for name, parameter in self.settings.parameters.items():
            if parameter_id(name) == parameter_hash:
                return name, parameter
        raise ControlError(f"line {self.name!r} has no parameter with id {parameter_hash}")


class Lines:
    """This member's configured lines, by name and by on-chain id."""

    def __init__(self, lines: Mapping[str, LineSettings]) -> None:
        self._by_name = {name: Line(name, settings) for name, settings in lines.items()}
        self._by_id = {line.id: line for line in self._by_name.values()}

    def __iter__(self) -> Iterator[Line]:
        return iter(self._by_name.values())

    def named(self, name: str) -> Line:
        try:
            return self._by_name[name]
        except KeyError:
            raise ControlError(f"no line {name!r} in [control.lines]") from None

    def by_id(self, identifier: str) -> Line | None:
        return self._by_id.get(identifier)
