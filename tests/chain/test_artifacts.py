"""Committed contract artifacts: loading, freshness against the sources, reproducible builds."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from eth_utils.crypto import keccak

from node.chain import contract_errors
from node.chain.artifacts import (
    Artifact,
    check_fresh,
    content_hash,
    default_build_dir,
    default_contracts_dir,
    default_node_modules,
    load_artifact,
    source_hash,
)
from node.errors import ArtifactError, ContractRevertError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "compile_contracts.py"
NODE_MODULES = default_node_modules()
STALE = "run scripts/compile_contracts.py"

needs_node_modules = pytest.mark.skipif(
    not (NODE_MODULES / "@openzeppelin" / "contracts").is_dir(),
    reason="hardhat-local/node_modules/@openzeppelin/contracts is absent (npm ci in hardhat-local)",
)


def _load_script() -> ModuleType:
    name = "compile_contracts_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def consortium() -> Artifact:
    return load_artifact("Consortium")


# --------------------------------------------------------------------------------------------------
# Loading


def test_default_build_dir_is_the_repos() -> None:
    assert default_build_dir() == REPO / "contracts" / "build"
    assert default_contracts_dir() == REPO / "contracts"


def test_consortium_artifact_loads(consortium: Artifact) -> None:
    assert consortium.name == "Consortium"
    assert consortium.source_name == "contracts/Consortium.sol"
    assert consortium.compiler_version.startswith("0.8.30+commit.")
    assert consortium.evm_version == "cancun"
    assert consortium.bytecode.startswith("0x") and len(consortium.bytecode) > 1000
    assert consortium.deployed_bytecode.startswith("0x")
    assert source_hash(consortium.sources) == consortium.source_hash
    assert {
        "contracts/Consortium.sol",
        "contracts/interfaces/IConsortium.sol",
        "@openzeppelin/contracts/utils/structs/EnumerableSet.sol",
    } <= set(consortium.sources)
    functions = {entry["name"] for entry in consortium.abi if entry["type"] == "function"}
    assert {"propose", "approve", "oracleOf", "oraclesOf", "rotateOracle", "members"} <= functions


def test_only_deployable_contracts_have_artifacts() -> None:
    names = sorted(path.stem for path in default_build_dir().glob("*.json"))
    assert "Consortium" in names
    assert "IConsortium" not in names


def test_missing_artifact_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no artifact for contract Nope at .*: run scripts/"):
        load_artifact("Nope", tmp_path)


def test_invalid_name_is_rejected() -> None:
    with pytest.raises(ArtifactError, match="invalid contract name"):
        load_artifact("../Consortium")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: [], "expected a JSON object"),
        (lambda d: {k: v for k, v in d.items() if k != "abi"}, "missing field 'abi'"),
        (lambda d: {**d, "bytecode": "0xzz"}, "'bytecode' must be non-empty 0x-prefixed hex"),
        (lambda d: {**d, "contractName": "Other"}, "contractName is 'Other'"),
        (lambda d: {**d, "sourceHash": "0" * 64}, "sourceHash does not match sources"),
        (lambda d: {**d, "sources": {"contracts/X.sol": "nope"}}, "not a SHA-256 hex digest"),
    ],
)
def test_malformed_artifact_is_reported(tmp_path: Path, mutate: Any, message: str) -> None:
    data = json.loads((default_build_dir() / "Consortium.json").read_text())
    mutated = mutate(data)
    text = mutated if isinstance(mutated, str) else json.dumps(mutated)
    (tmp_path / "Consortium.json").write_text(text)
    with pytest.raises(ArtifactError, match="malformed artifact") as excinfo:
        load_artifact("Consortium", tmp_path)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_source_hash_depends_on_paths_and_contents() -> None:
    base = {"contracts/A.sol": content_hash("a"), "contracts/B.sol": content_hash("b")}
    assert source_hash(base) == source_hash(dict(reversed(list(base.items()))))
    assert source_hash(base) != source_hash({**base, "contracts/B.sol": content_hash("b ")})
    assert source_hash(base) != source_hash({"contracts/A.sol": base["contracts/A.sol"]})
    renamed = {
        "contracts/A.sol": base["contracts/A.sol"],
        "contracts/C.sol": base["contracts/B.sol"],
    }
    assert source_hash(base) != source_hash(renamed)


# --------------------------------------------------------------------------------------------------
# Freshness


@needs_node_modules
def test_committed_artifact_is_fresh(consortium: Artifact) -> None:
    check_fresh(consortium)


@pytest.fixture
def contracts_copy(tmp_path: Path) -> Path:
    target = tmp_path / "contracts"
    shutil.copytree(default_contracts_dir(), target, ignore=shutil.ignore_patterns("build"))
    return target


def _flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


@needs_node_modules
def test_unchanged_copy_is_fresh(consortium: Artifact, contracts_copy: Path) -> None:
    check_fresh(consortium, contracts_dir=contracts_copy)


@needs_node_modules
def test_changed_source_is_stale(consortium: Artifact, contracts_copy: Path) -> None:
    _flip_first_byte(contracts_copy / "Consortium.sol")
    with pytest.raises(ArtifactError) as excinfo:
        check_fresh(consortium, contracts_dir=contracts_copy)
    assert str(excinfo.value) == (
        "Consortium artifact is stale against contracts/Consortium.sol: "
        "run scripts/compile_contracts.py"
    )


@needs_node_modules
def test_changed_import_is_stale(consortium: Artifact, contracts_copy: Path) -> None:
    interface = contracts_copy / "interfaces" / "IConsortium.sol"
    interface.write_bytes(interface.read_bytes() + b"\n")
    with pytest.raises(ArtifactError, match=r"stale against contracts/interfaces/IConsortium\.sol"):
        check_fresh(consortium, contracts_dir=contracts_copy)


@needs_node_modules
def test_missing_source_is_stale(consortium: Artifact, contracts_copy: Path) -> None:
    (contracts_copy / "interfaces" / "IConsortium.sol").unlink()
    with pytest.raises(ArtifactError, match=r"its source contracts/interfaces/IConsortium\.sol is"):
        check_fresh(consortium, contracts_dir=contracts_copy)


@needs_node_modules
def test_changed_library_is_stale(consortium: Artifact, tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    for unit in consortium.sources:
        if not unit.startswith("contracts/"):
            (modules / unit).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NODE_MODULES / unit, modules / unit)
    check_fresh(consortium, node_modules=modules)
    _flip_first_byte(modules / "@openzeppelin/contracts/utils/structs/EnumerableSet.sol")
    with pytest.raises(ArtifactError, match="stale against @openzeppelin/contracts/utils/struct"):
        check_fresh(consortium, node_modules=modules)


# --------------------------------------------------------------------------------------------------
# Generated errors module


def test_contract_errors_module_is_up_to_date(script: ModuleType) -> None:
    expected = script.render_contract_errors(script.load_artifact_files(default_build_dir()))
    actual = (REPO / "node" / "chain" / "contract_errors.py").read_text(encoding="utf-8")
    assert actual == expected, "node/chain/contract_errors.py is stale: run compile_contracts.py"


def test_every_abi_error_has_a_class(consortium: Artifact) -> None:
    errors = [entry for entry in consortium.abi if entry["type"] == "error"]
    assert len(errors) >= 17
    for entry in errors:
        signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
        selector = "0x" + keccak(text=signature)[:4].hex()
        cls = contract_errors.ERRORS_BY_SELECTOR[selector]
        assert issubclass(cls, ContractRevertError)
        assert issubclass(cls, contract_errors.CustomContractError)
        assert cls.__name__ == entry["name"]
        assert cls.signature == signature
        assert cls.selector == selector
        assert cls.arg_names == tuple(i["name"] for i in entry["inputs"])
        assert cls.arg_types == tuple(i["type"] for i in entry["inputs"])
        assert cls.__doc__ and not cls.__doc__.startswith("Custom error")  # NatSpec carried over


def test_generated_class_names_and_docs(script: ModuleType) -> None:
    artifact: dict[str, Any] = {
        "contractName": "T",
        "abi": [
            {"type": "error", "name": "E", "inputs": [{"name": "a", "type": "uint256"}]},
            {"type": "error", "name": "E", "inputs": []},
            {
                "type": "error",
                "name": "S",
                "inputs": [
                    {
                        "name": "",
                        "type": "tuple[]",
                        "components": [{"name": "x", "type": "address"}, {"type": "bytes32"}],
                    }
                ],
            },
        ],
        "userdoc": {"errors": {"S((address,bytes32)[])": [{"notice": 'Has """quotes""".'}]}},
    }
    source = script.render_contract_errors([artifact])
    namespace: dict[str, Any] = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    by_signature = {cls.signature: cls for cls in namespace["ERRORS_BY_SELECTOR"].values()}
    assert set(by_signature) == {"E(uint256)", "E()", "S((address,bytes32)[])"}
    assert by_signature["S((address,bytes32)[])"].arg_names == ("arg0",)
    assert by_signature["S((address,bytes32)[])"].__doc__ == 'Has """quotes""".'
    assert by_signature["E()"].__name__.startswith("E_")


# --------------------------------------------------------------------------------------------------
# Reproducible compilation


def _toolchain_missing() -> str | None:
    if shutil.which("node") is None:
        return "node (Node.js) is not on PATH"
    if not (NODE_MODULES / "solc" / "package.json").is_file():
        return "hardhat-local/node_modules/solc is absent (npm ci in hardhat-local)"
    return None


@pytest.mark.skipif(_toolchain_missing() is not None, reason=str(_toolchain_missing()))
def test_recompiling_gives_byte_identical_artifacts(script: ModuleType) -> None:
    result = script.compile_all()
    committed = sorted(path.stem for path in default_build_dir().glob("*.json"))
    assert sorted(result.artifacts) == committed
    for name, artifact in result.artifacts.items():
        on_disk = (default_build_dir() / f"{name}.json").read_text(encoding="utf-8")
        assert script.render_artifact(artifact) == on_disk, f"{name}.json differs: recompile"
    module = script.render_contract_errors(result.artifacts[n] for n in sorted(result.artifacts))
    assert module == (REPO / "node" / "chain" / "contract_errors.py").read_text(encoding="utf-8")
    assert result.warnings == []


def test_imports_are_resolved_like_solc(script: ModuleType) -> None:
    text = """
        // import "./commented.sol";
        /* import "./block.sol"; */
        import "./A.sol";
        import {B, C as D} from "../lib/B.sol";
        import * as E from '@openzeppelin/contracts/utils/E.sol';
        import "./F.sol" as F;
        string constant S = "import './not.sol';";
    """
    specs = script.parse_imports(text)
    assert specs == ["./A.sol", "../lib/B.sol", "@openzeppelin/contracts/utils/E.sol", "./F.sol"]
    importer = "contracts/sub/X.sol"
    assert [script.resolve_import(importer, spec) for spec in specs] == [
        "contracts/sub/A.sol",
        "contracts/lib/B.sol",
        "@openzeppelin/contracts/utils/E.sol",
        "contracts/sub/F.sol",
    ]
    with pytest.raises(script.CompileError, match="escapes the source tree"):
        script.resolve_import("contracts/X.sol", "../../up.sol")


def test_missing_solc_version_is_a_one_line_error(script: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "solc").mkdir()
    (tmp_path / "solc" / "package.json").write_text('{"version": "0.8.29"}')
    if shutil.which("node") is None:
        pytest.skip("node (Node.js) is not on PATH")
    with pytest.raises(script.CompileError) as excinfo:
        script.find_toolchain(node_modules=tmp_path)
    assert "solc 0.8.29" in str(excinfo.value) and "pinned to solc 0.8.30" in str(excinfo.value)
    with pytest.raises(script.CompileError, match="solc-js is not installed"):
        script.find_toolchain(node_modules=tmp_path / "nowhere")
