"""Pydantic models of what the API serves: they document the OpenAPI schema, and the tests hold
every served passport, linkset and verdict to them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["verified", "pending", "failed", "unavailable"]
TierName = Literal["public", "legitimate_interest", "authority"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnchorInfo(_Model):
    batchId: str
    root: str
    chainId: int | None
    contract: str | None
    txHash: str | None
    blockNumber: int | None = Field(description="Where the batch root is anchored on-chain.")
    member: str | None = Field(description="The member that anchored the batch.")
    proofValid: bool


class SignatureInfo(_Model):
    signer: str = Field(description="The EIP-712 signer (an oracle key).")
    member: str | None = Field(description="The member QualityLedger attributes it to.")
    memberName: str | None
    digest: str
    blockNumber: int | None
    valid: bool


class VerificationInfo(_Model):
    status: Status
    detail: str
    anchor: AnchorInfo | None
    signature: SignatureInfo | None


class RecordRef(_Model):
    id: str
    type: str


class SourceInfo(_Model):
    member: str
    name: str | None


class ValueLinks(_Model):
    proof: str = Field(description="The record's offline-checkable Merkle proof bundle.")
    attestation: str | None = Field(description="The EIP-712 bundle (critical records).")
    blobs: dict[str, str]


class PassportValueModel(_Model):
    label: str
    value: Any
    unit: str | None
    details: dict[str, Any]
    subject: str | None
    observedAt: str | None
    source: SourceInfo
    record: RecordRef
    verification: VerificationInfo
    links: ValueLinks


class Owner(_Model):
    member: str
    name: str | None
    role: str | None


class SupplyNodeModel(_Model):
    id: str | None = Field(description="Shown from the legitimate-interest tier up.")
    kind: str
    gtin: str | None
    owner: Owner | None
    status: str
    detail: str
    children: list[SupplyNodeModel]


class Issuer(_Model):
    member: str
    name: str
    role: str


class ProductInfo(_Model):
    name: str
    category: str
    model: str
    description: str
    attributes: dict[str, str | float | int]


class Summary(_Model):
    values: int
    verified: int
    pending: int
    failed: int
    unavailable: int


class Aspects(_Model):
    materials: list[PassportValueModel]
    process: list[PassportValueModel]
    inspections: list[PassportValueModel]
    carbonFootprint: list[PassportValueModel]
    dueDiligence: list[PassportValueModel]
    supplyChain: list[PassportValueModel]


class PassportLinks(_Model):
    self: str
    linkset: str
    verify: str


class PassportModel(_Model):
    """A product passport as one access tier sees it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "format": "qnode-passport/1",
                    "id": "https://id.qnode.example/01/09506000134352/10/L42/21/7Q2K9D4M8X1C5V3B",
                    "canonicalId": "https://id.gs1.org/01/09506000134352/10/L42/21/7Q2K9D4M8X1C5V3B",
                    "level": "item",
                    "gtin": "09506000134352",
                    "lot": "L42",
                    "serial": "7Q2K9D4M8X1C5V3B",
                    "tier": "public",
                    "issuer": {
                        "member": "0x" + "ab" * 20,
                        "name": "Aster Motors",
                        "role": "manufacturer",
                    },
                    "generatedAt": "2026-11-26T10:00:00.000Z",
                    "product": None,
                    "manufacturedAt": None,
                    "summary": {
                        "values": 0,
                        "verified": 0,
                        "pending": 0,
                        "failed": 0,
                        "unavailable": 0,
                    },
                    "aspects": {
                        "materials": [],
                        "process": [],
                        "inspections": [],
                        "carbonFootprint": [],
                        "dueDiligence": [],
                        "supplyChain": [],
                    },
                    "supplyChain": [],
                    "links": {
                        "self": "/01/09506000134352/10/L42/21/7Q2K9D4M8X1C5V3B",
                        "linkset": "/01/09506000134352/10/L42/21/7Q2K9D4M8X1C5V3B?linkType=all",
                        "verify": "/api/v1/verify",
                    },
                }
            ]
        },
    )

    format: Literal["qnode-passport/1"]
    id: str
    canonicalId: str
    level: Literal["item", "lot", "product"]
    gtin: str
    lot: str | None
    serial: str | None
    tier: TierName
    issuer: Issuer
    generatedAt: str | None
    product: ProductInfo | None
    manufacturedAt: str | None
    summary: Summary
    aspects: Aspects
    supplyChain: list[SupplyNodeModel]
    links: PassportLinks


class LinkTarget(BaseModel):
    model_config = ConfigDict(extra="allow")
    href: str
    type: str | None = None
    title: str | None = None
    hreflang: list[str] | None = None


class LinksetContext(BaseModel):
    """``anchor`` and link relation types (as keys) with their targets (RFC 9264)."""

    model_config = ConfigDict(extra="allow")
    anchor: str


class Linkset(_Model):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "linkset": [
                        {
                            "anchor": "https://id.qnode.example/01/09506000134352/10/L42",
                            "https://ref.gs1.org/voc/pip": [
                                {
                                    "href": "/01/09506000134352/10/L42",
                                    "type": "text/html",
                                    "title": "Product passport",
                                    "hreflang": ["en"],
                                }
                            ],
                        }
                    ]
                }
            ]
        },
    )
    linkset: list[LinksetContext]


class Verdict(_Model):
    """A bundle that verified: what it proves."""

    valid: Literal[True]
    kind: Literal["proof", "attestation"]
    recordId: str
    detail: str
    batchId: str | None = None
    root: str | None = None
    blockNumber: int | None = None
    member: str | None = None
    memberName: str | None = None
    signer: str | None = None
    onChain: bool


class Health(_Model):
    status: Literal["ok"]
    member: str


class ResolverDescription(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    resolverRoot: str
    supportedPrimaryKeys: list[str]
    supportedLinkType: list[dict[str, str]]
