"""Throw-away TLS material for the protocol fakes.

A fake that speaks TLS needs a server certificate its client can verify *without* turning
verification off: Wavecast's providers must run with the same verifying TLS stack in tests as in
production. So we mint a private CA, sign a server certificate for the loopback names with it, and
hand the client the CA file to trust (``ssl.create_default_context(cafile=...)`` for aioapns,
``SSL_CERT_FILE`` for httpx inside firebase-admin).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wavecast_tools.fakes.filelock import exclusive

#: Names every fake certificate is valid for. The real provider host names are included so a
#: client that keeps the production host name for SNI/verification (and reaches the fake through
#: some other routing) still verifies.
DEFAULT_HOSTNAMES: tuple[str, ...] = (
    "localhost",
    "127.0.0.1",
    "::1",
    "api.push.apple.com",
    "api.sandbox.push.apple.com",
    "api.development.push.apple.com",
    "fcm.googleapis.com",
    "oauth2.googleapis.com",
)

_CA_FILE = "ca.pem"
_CERT_FILE = "server.pem"
_KEY_FILE = "server.key"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of a CA and of a server certificate chain signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        """A server-side context offering ``alpn`` (in preference order)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(list(alpn))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the fake CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def ensure_tls_files(directory: Path, hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES) -> TlsFiles:
    """Return the CA and server certificate in ``directory``, creating them if absent.

    Existing files are reused so that a client configured with the CA file keeps trusting a fake
    that was restarted (the CLI relies on this).
    """
    files = TlsFiles(directory / _CA_FILE, directory / _CERT_FILE, directory / _KEY_FILE)
    with exclusive(directory / ".lock"):
        if files.ca_file.exists() and files.cert_file.exists() and files.key_file.exists():
            return files
        ca_pem, cert_pem, key_pem = generate_tls_material(hostnames)
        files.key_file.write_bytes(key_pem)
        files.key_file.chmod(0o600)
        files.cert_file.write_bytes(cert_pem)
        files.ca_file.write_bytes(ca_pem)
    return files


def generate_tls_material(hostnames: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
    """Return ``(ca_pem, server_chain_pem, server_key_pem)`` for ``hostnames``.

    P-256 keys: cheapest handshake, and every client stack in the project accepts them.
    """
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(hours=1)  # tolerate small clock differences
    not_after = now + dt.timedelta(days=3650)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wavecast fake provider CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    chain_pem = cert.public_bytes(serialization.Encoding.PEM) + ca_pem
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_pem, chain_pem, key_pem
