"""Self-signed TLS identities and fingerprint pinning.

A validator serves HTTPS with a self-signed certificate and publishes the sha256 of
its DER bytes on chain. Clients do not verify a CA chain; instead every connection
checks that the peer certificate's sha256 equals the pinned fingerprint.

Example:
    >>> ident = ensure_identity(Path("/tmp/state/tls"))      # makes or loads cert + key
    >>> ctx = server_context(ident)                           # for aiohttp's web.TCPSite
    >>> pin = pinned(ident.fingerprint)                       # ssl= argument of aiohttp requests
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocol.files import atomic_write

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CERT_DAYS = 3650


class TlsError(RuntimeError):
    """A certificate or pinning problem (bad file, bad fingerprint)."""


@dataclass(frozen=True)
class TlsIdentity:
    """A certificate + private key on disk and the certificate's sha256 fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: str  # sha256 hex of the certificate's DER bytes


def cert_fingerprint(der: bytes) -> str:
    """sha256 hex of a DER-encoded certificate, the value published on chain."""
    return hashlib.sha256(der).hexdigest()


def make_self_signed(common_name: str = "swarmtrain-validator") -> tuple[bytes, bytes]:
    """A fresh P-256 key and a self-signed certificate; returns (cert_pem, key_pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def fingerprint_of_pem(cert_pem: bytes) -> str:
    """Fingerprint of a PEM certificate (parsed, re-encoded as DER)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TlsError(f"not a PEM certificate: {exc}") from exc
    return cert_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def ensure_identity(directory: Path, common_name: str = "swarmtrain-validator") -> TlsIdentity:
    """Load the identity under ``directory`` or create it once (key file mode 0600).

    Keeping the same certificate across restarts keeps the fingerprint on chain valid.
    """
    directory = Path(directory)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not (cert_path.exists() and key_path.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = make_self_signed(common_name)
        atomic_write(key_path, key_pem, mode=0o600)
        atomic_write(cert_path, cert_pem, mode=0o600)
    return TlsIdentity(cert_path, key_path, fingerprint_of_pem(cert_path.read_bytes()))


def server_context(identity: TlsIdentity) -> ssl.SSLContext:
    """Server-side TLS context (TLS 1.2+) for the identity."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    return ctx


def pinned(fingerprint_hex: str) -> aiohttp.Fingerprint:
    """aiohttp ``ssl=`` value that accepts only a peer certificate with this sha256.

    aiohttp checks it on every new connection and raises ``ServerFingerprintMismatch``
    otherwise; CA-chain verification is off (the certificate is self-signed).
    """
    try:
        digest = bytes.fromhex(fingerprint_hex)
    except ValueError as exc:
        raise TlsError(f"fingerprint is not hex: {fingerprint_hex!r}") from exc
    if len(digest) != 32:
        raise TlsError(f"fingerprint must be a sha256 (64 hex chars), got {len(fingerprint_hex)} chars")
    return aiohttp.Fingerprint(digest)
