"""Putting the closed loop's contracts on the chain and this member's lines into them."""

from __future__ import annotations

from dataclasses import dataclass

from node.chain.contract_errors import UnknownLine
from node.chain.line_control import LineControl
from node.chain.supplier_quality import deploy_supplier_quality
from node.control.lines import Lines, parameter_id, to_fixed
from node.errors import ContractRevertError
from node.runtime import Deployment, Node


@dataclass(frozen=True)
class ControlDeployments:
    line_control: Deployment
    corrective_action: Deployment
    supplier_quality: Deployment


def deploy_control_contracts(node: Node) -> ControlDeployments:
    """Deploy LineControl and the wired CorrectiveAction/SupplierQuality pair for the node's
    consortium, and record where (other members set ``[contracts]`` or record them too)."""
    consortium = node.consortium().address
    line_control, line_receipt = LineControl.deploy(node.sender, consortium)
    pair = deploy_supplier_quality(node.sender, consortium)
    deployments = ControlDeployments(
        line_control=Deployment.of(line_control.address, line_receipt),
        corrective_action=Deployment.of(
            pair.corrective_action.address, pair.corrective_action_receipt
        ),
        supplier_quality=Deployment.of(
            pair.supplier_quality.address, pair.supplier_quality_receipt
        ),
    )
    record_control_deployments(node, deployments)
    return deployments


def record_control_deployments(node: Node, deployments: ControlDeployments) -> None:
    node.record_deployment("LineControl", deployments.line_control)
    node.record_deployment("CorrectiveAction", deployments.corrective_action)
    node.record_deployment("SupplierQuality", deployments.supplier_quality)


def register_lines(node: Node) -> list[str]:
    """Register each configured line (once) and (re)configure its parameters' on-chain bounds;
    returns what was done, a line each. Needs the member's own account (not an oracle key)."""
    control = node.line_control()
    done = []
    for line in Lines(node.settings.control.lines):
        if not _registered(control, line.id):
            control.register_line(line.id)
            done.append(f"line {line.name} registered ({line.settings.uri})")
        for name, parameter in line.settings.parameters.items():
            decimals = parameter.decimals
            try:
                control.configure_parameter(
                    line.id,
                    parameter_id(name),
                    baseline=to_fixed(parameter.baseline, decimals),
                    min_delta=to_fixed(parameter.min_delta, decimals),
                    max_delta=to_fixed(parameter.max_delta, decimals),
                    max_abs_offset=to_fixed(parameter.max_abs_offset, decimals),
                    decimals=decimals,
                )
            except ContractRevertError as exc:
                done.append(f"line {line.name} parameter {name} not configured: {exc}")
                continue
            done.append(
                f"line {line.name} parameter {name}: delta {parameter.min_delta}.."
                f"{parameter.max_delta} {parameter.unit}, at most {parameter.max_abs_offset} "
                f"from {parameter.baseline}"
            )
    return done


def _registered(control: LineControl, identifier: str) -> bool:
    try:
        control.line(identifier)
    except UnknownLine:
        return False
    return True
