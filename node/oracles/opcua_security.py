"""OPC UA client security, shared by the source (reading) and the PLC client (writing):
security policy and mode, the client certificate and key, the server's certificate.

Errors are built by the caller's ``fail`` (a SourceError for the source, a permanent
ActionError for the PLC client), so each names its own settings section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from cryptography import x509

POLICIES: Mapping[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}

Fail = Callable[[str], Exception]


class SecuritySettings(Protocol):
    @property
    def security_policy(self) -> str: ...

    @property
    def security_mode(self) -> str: ...

    @property
    def certificate(self) -> Path | None: ...

    @property
    def private_key(self) -> Path | None: ...

    @property
    def server_certificate(self) -> Path | None: ...


async def configure_security(
    client: Client,
    settings: SecuritySettings,
    section: str,
    fail: Fail,
    base_dir: Path | None = None,
) -> None:
    """Set ``client``'s security from ``settings`` (relative paths against ``base_dir``); no
    security when both policy and mode are None."""
    if settings.security_policy == "None" and settings.security_mode == "None":
        return
    if settings.security_policy == "None" or settings.security_mode == "None":
        raise fail(
            f"{section}: security_policy and security_mode must both be None or both set "
            f"(got {settings.security_policy} / {settings.security_mode})"
        )
    if settings.certificate is None or settings.private_key is None:
        raise fail(
            f"{section}: security policy {settings.security_policy} needs `certificate` "
            "and `private_key`"
        )

    def resolved(value: Path) -> Path:
        return base_dir / value if base_dir is not None and not value.is_absolute() else value

    certificate, private_key = resolved(settings.certificate), resolved(settings.private_key)
    server = None if settings.server_certificate is None else resolved(settings.server_certificate)
    for path in (certificate, private_key, server):
        if path is not None and not path.is_file():
            raise fail(f"{section}: {path} not found")
    client.application_uri = application_uri(certificate, section, fail)
    try:
        await client.set_security(
            POLICIES[settings.security_policy],
            str(certificate),
            str(private_key),
            server_certificate=None if server is None else str(server),
            mode=getattr(ua.MessageSecurityMode, settings.security_mode),
        )
    except ValueError as exc:
        raise fail(f"{section}: cannot load certificate or key: {exc}") from exc


def application_uri(certificate: Path, section: str, fail: Fail) -> str:
    """The URI in the certificate's subjectAltName: the client must present itself as it."""
    content = certificate.read_bytes()
    try:
        cert = (
            x509.load_pem_x509_certificate(content)
            if content.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_certificate(content)
        )
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise fail(f"{section}: {certificate} is not a usable certificate") from exc
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise fail(f"{section}: {certificate} has no URI in its subjectAltName")
    return str(uris[0])


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, for logs and messages."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
