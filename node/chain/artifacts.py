"""Compiled contract artifacts: load them, and check they are fresh against their Solidity sources.

Artifacts live in ``contracts/build/<Name>.json`` and are committed, so a node needs no compiler.
``scripts/compile_contracts.py`` writes them; it shares the hashing and path rules defined here.

Source unit names are the paths the compiler sees: ``contracts/...`` for our sources (found under
the contracts directory) and npm package paths such as ``@openzeppelin/contracts/...`` (found under
``hardhat-local/node_modules``).

An artifact's ``sourceHash`` is the SHA-256 over its source and all its transitive imports, computed
by :func:`source_hash` from the per-file SHA-256 digests recorded in its ``sources``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from node.errors import ArtifactError

__all__ = [
    "COMPILE_COMMAND",
    "CONTRACTS_PREFIX",
    "Artifact",
    "check_fresh",
    "content_hash",
    "default_build_dir",
    "default_contracts_dir",
    "default_node_modules",
    "load_artifact",
    "repo_root",
    "source_hash",
    "source_path",
]

COMPILE_COMMAND = "scripts/compile_contracts.py"
"""What to run to rebuild the artifacts (named in error messages)."""

CONTRACTS_PREFIX = "contracts/"
"""Source unit names under this prefix are our sources; any other name is an npm package path."""

_T = TypeVar("_T")

_NAME_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_HEX_RE = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Artifact:
    """One deployable contract as compiled: ABI, creation and runtime bytecode, provenance.

    ``sources`` maps every source unit the contract was compiled from (its own file and all its
    transitive imports) to the SHA-256 hex digest of that file's content.
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    evm_version: str
    source_hash: str
    sources: dict[str, str]
    source_name: str = ""


def repo_root() -> Path:
    """The repository holding this package (the parent of ``node/``)."""
    return Path(__file__).resolve().parents[2]


def default_build_dir() -> Path:
    """``contracts/build`` of this repository: where the committed artifacts are."""
    return repo_root() / "contracts" / "build"


def default_contracts_dir() -> Path:
    """``contracts/`` of this repository: where our Solidity sources are."""
    return repo_root() / "contracts"


def default_node_modules() -> Path:
    """``hardhat-local/node_modules`` of this repository: where npm Solidity packages are."""
    return repo_root() / "hardhat-local" / "node_modules"


def content_hash(content: str | bytes) -> str:
    """SHA-256 hex digest of a source file's content (text is hashed as UTF-8)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def source_hash(sources: Mapping[str, str]) -> str:
    """The hash over a set of source files.

    ``sources`` maps source unit names to the :func:`content_hash` of their content. The result is
    the SHA-256 over ``"<path>\\0<sha256>\\n"`` for every pair, sorted by path, so it changes when
    any file changes, is added, removed or renamed.
    """
    digest = hashlib.sha256()
    for path in sorted(sources):
        digest.update(f"{path}\0{sources[path]}\n".encode())
    return digest.hexdigest()


def source_path(unit: str, contracts_dir: Path, node_modules: Path) -> Path:
    """Where the source unit ``unit`` is on disk.

    ``contracts/...`` is looked up in ``contracts_dir``, anything else in ``node_modules``.
    Raises :class:`ArtifactError` for a name that is not a plain relative path.
    """
    pure = PurePosixPath(unit)
    if pure.is_absolute() or not unit or any(part in ("", ".", "..") for part in unit.split("/")):
        raise ArtifactError(
            f"invalid source unit name {unit!r}: expected a normalized relative path"
        )
    if unit.startswith(CONTRACTS_PREFIX):
        return contracts_dir.joinpath(*pure.parts[1:])
    return node_modules.joinpath(*pure.parts)


def load_artifact(name: str, build_dir: Path | None = None) -> Artifact:
    """Load ``<build_dir>/<name>.json`` (default: :func:`default_build_dir`).

    Raises :class:`ArtifactError` when the file is missing, unreadable or malformed.
    """
    if not _NAME_RE.match(name):
        raise ArtifactError(f"invalid contract name {name!r}")
    directory = default_build_dir() if build_dir is None else build_dir
    path = directory / f"{name}.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"no artifact for contract {name} at {path}: run {COMPILE_COMMAND}"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"malformed artifact {path}: not valid JSON ({exc})") from exc
    try:
        return _parse(name, data)
    except ValueError as exc:
        raise ArtifactError(f"malformed artifact {path}: {exc}") from exc


def check_fresh(
    artifact: Artifact,
    contracts_dir: Path | None = None,
    node_modules: Path | None = None,
) -> None:
    """Raise :class:`ArtifactError` unless ``artifact`` was compiled from the sources on disk.

    Recomputes the source hash from the files (no compiler needed). Our sources are read from
    ``contracts_dir`` (default: this repository's ``contracts/``), npm ones from ``node_modules``
    (default: ``hardhat-local/node_modules``).
    """
    contracts = default_contracts_dir() if contracts_dir is None else contracts_dir
    modules = default_node_modules() if node_modules is None else node_modules
    on_disk: dict[str, str] = {}
    for unit in sorted(artifact.sources):
        path = source_path(unit, contracts, modules)
        try:
            on_disk[unit] = content_hash(path.read_bytes())
        except FileNotFoundError:
            hint = "" if unit.startswith(CONTRACTS_PREFIX) else " (npm ci in hardhat-local?)"
            raise ArtifactError(
                f"{artifact.name} artifact is stale: its source {unit} is missing at {path}{hint}:"
                f" run {COMPILE_COMMAND}"
            ) from None
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if source_hash(on_disk) == artifact.source_hash:
        return
    changed = [unit for unit in sorted(on_disk) if on_disk[unit] != artifact.sources[unit]]
    if artifact.source_name in changed:
        changed.remove(artifact.source_name)
        changed.insert(0, artifact.source_name)
    culprit = changed[0] if changed else (artifact.source_name or "its sources")
    raise ArtifactError(
        f"{artifact.name} artifact is stale against {culprit}: run {COMPILE_COMMAND}"
    )


def _parse(name: str, data: object) -> Artifact:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    contract_name = _field(data, "contractName", str)
    if contract_name != name:
        raise ValueError(f"contractName is {contract_name!r}, expected {name!r}")
    abi = _field(data, "abi", list)
    if not all(isinstance(entry, dict) for entry in abi):
        raise ValueError("abi must be a list of objects")
    bytecode = _hex_field(data, "bytecode")
    deployed = _hex_field(data, "deployedBytecode")
    compiler = _field(data, "compiler", dict)
    version = _field(compiler, "version", str)
    evm_version = _field(compiler, "evmVersion", str)
    hash_ = _field(data, "sourceHash", str)
    sources = _field(data, "sources", dict)
    if not sources:
        raise ValueError("sources is empty")
    for unit, digest in sources.items():
        if not isinstance(digest, str) or not _SHA256_RE.match(digest):
            raise ValueError(f"sources[{unit!r}] is not a SHA-256 hex digest")
    if source_hash(sources) != hash_:
        raise ValueError("sourceHash does not match sources")
    source_name = data.get("sourceName", "")
    if not isinstance(source_name, str):
        raise ValueError("sourceName must be a string")
    return Artifact(
        name=name,
        abi=abi,
        bytecode=bytecode,
        deployed_bytecode=deployed,
        compiler_version=version,
        evm_version=evm_version,
        source_hash=hash_,
        sources=dict(sources),
        source_name=source_name,
    )


def _field(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    if not isinstance(value, kind):
        if key not in data:
            raise ValueError(f"missing field {key!r}")
        raise ValueError(f"field {key!r} must be a {kind.__name__}")
    return value


def _hex_field(data: dict[str, Any], key: str) -> str:
    value = _field(data, key, str)
    if not _HEX_RE.match(value) or value == "0x":
        raise ValueError(f"field {key!r} must be non-empty 0x-prefixed hex")
    return value
