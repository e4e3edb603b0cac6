"""A TEST-ONLY public key infrastructure shaped like IEEE 2030.5's.

2030.5 trusts one root, the SERCA, whose certificate never expires (notAfter
99991231235959Z); manufacturers hold an MCA under it and issue device certificates from an
MICA under that. Labs, OEMs and our own tests need that exact shape on a laptop, with no
external tooling, so ``csip certs init`` builds it here: SERCA -> MCA -> MICA -> device, plus a
server certificate for ``localhost``. Every certificate says "csip TEST ONLY" and carries the
2030.5 test policy OID; keys are written unencrypted with mode 0600 and must never leave a lab.

All keys are ECDSA P-256 and all signatures ecdsa-with-SHA256, as 2030.5 requires. Existing
files are never overwritten: ``init_pki`` completes a partial directory and refuses one whose
files do not belong together.

The ``build_chain`` and ``issue_special`` builders at the bottom make deliberately odd chains
(other depths, expired, foreign, RSA, ...) for the TLS and certificate-check tests; nothing in
the server uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from csip.errors import ConfigError
from csip.pki.checks import (
    OID_HARDWARE_MODULE_NAME,
    POLICY_DEVICE,
    POLICY_TEST,
    encode_hardware_module_name,
)
from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi

__all__ = [
    "NEVER_EXPIRES",
    "SPECIAL_KINDS",
    "TEST_HW_TYPE",
    "IssuedCert",
    "PkiPaths",
    "build_chain",
    "init_pki",
    "issue_aggregator",
    "issue_device",
    "issue_special",
]

#: 2030.5 certificates do not expire: notAfter is GeneralizedTime 99991231235959Z (RFC 5280
#: §4.1.2.5's "no well-defined expiration date").
NEVER_EXPIRES = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
#: hwType of our test HardwareModuleNames, under IANA's documentation enterprise number
#: (RFC 5612), so that it can never collide with a real manufacturer's OID.
TEST_HW_TYPE = "1.3.6.1.4.1.32473.2030.5"
#: What ``issue_special`` can make; see its docstring.
SPECIAL_KINDS = (
    "expired",
    "ca-as-leaf",
    "self-signed",
    "foreign",
    "rsa",
    "no-policy",
    "no-hwname",
    "mica-bad-eku",
)

_ORG = "csip TEST ONLY"
_DEVICE_POLICIES = (POLICY_DEVICE, POLICY_TEST)
_BACKDATE = timedelta(hours=1)  # tolerate small clock differences between lab machines
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_MODE = 0o600
_CERT_MODE = 0o644

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class PkiPaths:
    """Where ``init_pki`` keeps each file; ``created`` lists those this call wrote."""

    directory: Path
    serca_cert: Path
    serca_key: Path
    mca_cert: Path
    mca_key: Path
    mica_cert: Path
    mica_key: Path
    server_cert: Path
    server_key: Path
    #: server + MICA + MCA: what the TLS server presents.
    server_chain: Path
    #: the SERCA certificate alone: what clients and the server trust.
    ca_cert: Path
    created: tuple[Path, ...] = ()

    @classmethod
    def under(cls, directory: Path) -> PkiPaths:
        """The layout of a PKI directory, whether or not the files exist yet."""
        d = Path(directory)
        return cls(
            directory=d,
            serca_cert=d / "serca.pem",
            serca_key=d / "serca.key",
            mca_cert=d / "mca.pem",
            mca_key=d / "mca.key",
            mica_cert=d / "mica.pem",
            mica_key=d / "mica.key",
            server_cert=d / "server.pem",
            server_key=d / "server.key",
            server_chain=d / "server-chain.pem",
            ca_cert=d / "ca.pem",
        )

    def files(self) -> tuple[Path, ...]:
        """Every file of the PKI, in creation order."""
        return (
            self.serca_key,
            self.serca_cert,
            self.mca_key,
            self.mca_cert,
            self.mica_key,
            self.mica_cert,
            self.server_key,
            self.server_cert,
            self.server_chain,
            self.ca_cert,
        )


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A client certificate written to disk, with the identity the server will see."""

    #: leaf followed by the intermediates it presents
    cert_path: Path
    key_path: Path
    #: chain + key in one file, for ``curl --cert`` and ``ab -E``
    combined_path: Path
    lfdi: str
    sfdi: int


@dataclass(frozen=True, slots=True)
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


# ---------------------------------------------------------------------------------------------
# The PKI proper


def init_pki(directory: Path) -> PkiPaths:
    """Create the test PKI in ``directory``; idempotent, never overwrites a file.

    A second run finds everything in place and writes nothing. A partial directory (say, the
    server files were deleted) is completed from the CAs already there. Files that do not
    belong together (a certificate not issued by its parent, a key not matching its
    certificate) raise ConfigError rather than being silently replaced.
    """
    paths = PkiPaths.under(directory)
    paths.directory.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    now = datetime.now(UTC)

    serca = _ensure(
        paths.serca_cert,
        paths.serca_key,
        None,
        lambda key: _self_signed_ca(key, "csip TEST ONLY SERCA", now),
        created,
    )
    mca = _ensure(
        paths.mca_cert,
        paths.mca_key,
        serca,
        lambda key: _sub_ca(key, "csip TEST ONLY MCA", serca, path_len=1, now=now),
        created,
    )
    mica = _ensure(
        paths.mica_cert,
        paths.mica_key,
        mca,
        lambda key: _sub_ca(key, "csip TEST ONLY MICA", mca, path_len=0, now=now),
        created,
    )
    server = _ensure(
        paths.server_cert,
        paths.server_key,
        mica,
        lambda key: _server_cert(key, mica, now),
        created,
    )
    if not paths.server_chain.exists():
        _write_new(paths.server_chain, _pem(server.cert, mica.cert, mca.cert), _CERT_MODE)
        created.append(paths.server_chain)
    if not paths.ca_cert.exists():
        _write_new(paths.ca_cert, _pem(serca.cert), _CERT_MODE)
        created.append(paths.ca_cert)
    return replace(paths, created=tuple(created))


def issue_device(directory: Path, oem: str, serial: str) -> IssuedCert:
    """Issue a 2030.5 device certificate from the MICA into ``devices/<oem>-<serial>``.

    The leaf has an empty subject and a critical subjectAltName holding the
    HardwareModuleName (hwSerialNum = ``serial``), as 2030.5 device certificates do.
    Raises ConfigError if the PKI is missing or the device was already issued.
    """
    oem = _safe("OEM name", oem)
    serial = _safe("serial number", serial)
    paths, mca, mica = _issuing_cas(directory)
    key = _new_key()
    cert = _device_cert(key.public_key(), mica, hw_serial=serial)
    return _write_issued(
        paths.directory / "devices", f"{oem}-{serial}", cert, key, (mica.cert, mca.cert)
    )


def issue_aggregator(directory: Path, name: str) -> IssuedCert:
    """Issue an aggregator (client system) certificate into ``aggregators/<name>``.

    Like a device certificate but with a named subject and no HardwareModuleName: an
    aggregator speaks for many devices and is not itself a piece of hardware.
    """
    name = _safe("aggregator name", name)
    paths, mca, mica = _issuing_cas(directory)
    key = _new_key()
    subject = _name(f"csip TEST ONLY aggregator {name}")
    cert = _leaf(
        key.public_key(), subject, mica.cert.subject, mica.key, san=None, policies=_DEVICE_POLICIES
    )
    return _write_issued(paths.directory / "aggregators", name, cert, key, (mica.cert, mca.cert))


# ---------------------------------------------------------------------------------------------
# Test-only builders: odd chains for the TLS and certificate-check tests


def build_chain(directory: Path, depth: int, *, serial: str) -> IssuedCert:
    """TEST ONLY: a device leaf chaining to the SERCA of ``init_pki`` at a chosen depth.

    ``depth`` counts certificates including the SERCA: 2 is SERCA -> device, 3 is
    SERCA -> MICA' -> device with a fresh MICA' issued directly by the SERCA, 4 is the normal
    SERCA -> MCA -> MICA -> device. 2030.5 allows all three, so the server must accept all.
    Files go to ``test-only/chain<depth>-<serial>``.
    """
    serial = _safe("serial number", serial)
    paths = init_pki(directory)
    serca = _load_authority(paths.serca_cert, paths.serca_key)
    issuer: _Authority
    presented: tuple[x509.Certificate, ...]
    if depth == 2:
        issuer, presented = serca, ()
    elif depth == 3:
        mica_key = _new_key()
        mica_cert = _sub_ca(
            mica_key, f"csip TEST ONLY MICA depth-3 {serial}", serca, path_len=0, now=_now()
        )
        issuer, presented = _Authority(mica_cert, mica_key), (mica_cert,)
    elif depth == 4:
        _, mca, mica = _issuing_cas(directory)
        issuer, presented = mica, (mica.cert, mca.cert)
    else:
        raise ConfigError(f"a 2030.5 chain has depth 2, 3 or 4, not {depth}")
    key = _new_key()
    cert = _device_cert(key.public_key(), issuer, hw_serial=serial)
    return _write_issued(
        paths.directory / "test-only", f"chain{depth}-{serial}", cert, key, presented
    )


def issue_special(directory: Path, kind: str, *, name: str) -> IssuedCert:
    """TEST ONLY: a client certificate that breaks one rule, in ``test-only/<kind>-<name>``.

    Kinds OpenSSL refuses at the handshake: ``expired`` (notAfter in the past),
    ``ca-as-leaf`` (a CA certificate with CA keyUsage issued by the MICA, presented as a
    client), ``self-signed`` (no chain at all), ``foreign`` (chains to another, fresh SERCA).
    ``mica-bad-eku`` (COMM-004D: the issuing MICA's critical extendedKeyUsage forbids
    client authentication). Kinds that pass the handshake and must be caught by
    ``csip.pki.checks``: ``rsa``
    (RSA-2048 key), ``no-policy`` (no 2030.5 policy OID), ``no-hwname`` (no
    HardwareModuleName). The cert file holds the chain exactly as the client presents it.
    """
    if kind not in SPECIAL_KINDS:
        raise ConfigError(f"unknown special certificate kind {kind!r}; use one of {SPECIAL_KINDS}")
    name = _safe("name", name)
    paths, mca, mica = _issuing_cas(directory)
    normal_chain = (mica.cert, mca.cert)
    now = _now()
    ec_key = _new_key()
    key: _PrivateKey = ec_key
    presented: tuple[x509.Certificate, ...] = normal_chain
    hw_san = _hw_san(name, critical=False)
    subject = _name(f"csip TEST ONLY {kind} {name}")
    if kind == "expired":
        cert = _leaf(
            ec_key.public_key(),
            subject,
            mica.cert.subject,
            mica.key,
            san=hw_san,
            policies=_DEVICE_POLICIES,
            not_before=now - timedelta(days=30),
            not_after=now - timedelta(days=1),
        )
    elif kind == "ca-as-leaf":
        cert = _sub_ca(ec_key, f"csip TEST ONLY {kind} {name}", mica, path_len=None, now=now)
    elif kind == "self-signed":
        cert = _leaf(
            ec_key.public_key(), subject, subject, ec_key, san=hw_san, policies=_DEVICE_POLICIES
        )
        presented = ()
    elif kind == "foreign":
        foreign_key = _new_key()
        foreign_root = _self_signed_ca(foreign_key, "csip TEST ONLY foreign SERCA", now)
        cert = _device_cert(
            ec_key.public_key(), _Authority(foreign_root, foreign_key), hw_serial=name
        )
        presented = (foreign_root,)
    elif kind == "rsa":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key = rsa_key
        cert = _leaf(
            rsa_key.public_key(),
            subject,
            mica.cert.subject,
            mica.key,
            san=hw_san,
            policies=_DEVICE_POLICIES,
            key_usage=_key_usage(digital_signature=True),
        )
    elif kind == "mica-bad-eku":
        mica_key = _new_key()
        bad_mica = _Authority(_mica_with_bad_eku(mica_key, mca, now), mica_key)
        cert = _device_cert(ec_key.public_key(), bad_mica, hw_serial=name)
        presented = (bad_mica.cert, mca.cert)
    else:  # no-policy, no-hwname
        cert = _leaf(
            ec_key.public_key(),
            subject,
            mica.cert.subject,
            mica.key,
            san=None if kind == "no-hwname" else hw_san,
            policies=() if kind == "no-policy" else _DEVICE_POLICIES,
        )
    return _write_issued(paths.directory / "test-only", f"{kind}-{name}", cert, key, presented)


# ---------------------------------------------------------------------------------------------
# Certificate builders


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *, digital_signature: bool = False, key_agreement: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    subject: x509.Name,
    issuer: x509.Name,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _self_signed_ca(
    key: ec.EllipticCurvePrivateKey, common_name: str, now: datetime
) -> x509.Certificate:
    name = _name(common_name)
    return (
        _builder(key.public_key(), name, name, now - _BACKDATE, NEVER_EXPIRES)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )


def _sub_ca(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    issuer: _Authority,
    *,
    path_len: int | None,
    now: datetime,
) -> x509.Certificate:
    return (
        _builder(
            key.public_key(),
            _name(common_name),
            issuer.cert.subject,
            now - _BACKDATE,
            NEVER_EXPIRES,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(_aki(issuer), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def _mica_with_bad_eku(
    key: ec.EllipticCurvePrivateKey, issuer: _Authority, now: datetime
) -> x509.Certificate:
    """TEST ONLY (COMM-004D): a MICA whose critical extendedKeyUsage forbids client auth."""
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
    return (
        _builder(
            key.public_key(),
            _name("csip TEST ONLY MICA with a bad EKU"),
            issuer.cert.subject,
            now - _BACKDATE,
            NEVER_EXPIRES,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(_aki(issuer), critical=False)
        .add_extension(eku, critical=True)
        .sign(issuer.key, hashes.SHA256())
    )


def _server_cert(
    key: ec.EllipticCurvePrivateKey, issuer: _Authority, now: datetime
) -> x509.Certificate:
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(IPv4Address("127.0.0.1")),
            x509.IPAddress(IPv6Address("::1")),
        ]
    )
    return (
        _builder(
            key.public_key(),
            _name("csip TEST ONLY server localhost"),
            issuer.cert.subject,
            now - _BACKDATE,
            NEVER_EXPIRES,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
        # clientAuth too: the server signs its outgoing 2030.5 notifications with it (mutual TLS)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(_aki(issuer), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def _hw_san(serial: str, *, critical: bool) -> tuple[x509.SubjectAlternativeName, bool]:
    other = x509.OtherName(
        OID_HARDWARE_MODULE_NAME,
        encode_hardware_module_name(TEST_HW_TYPE, serial.encode("utf-8")),
    )
    return x509.SubjectAlternativeName([other]), critical


def _device_cert(
    public_key: ec.EllipticCurvePublicKey, issuer: _Authority, *, hw_serial: str
) -> x509.Certificate:
    """A 2030.5 device leaf: empty subject, identity in a critical HardwareModuleName SAN."""
    return _leaf(
        public_key,
        x509.Name([]),
        issuer.cert.subject,
        issuer.key,
        san=_hw_san(hw_serial, critical=True),
        policies=_DEVICE_POLICIES,
    )


def _leaf(
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    subject: x509.Name,
    issuer_name: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    san: tuple[x509.SubjectAlternativeName, bool] | None,
    policies: Sequence[str],
    key_usage: x509.KeyUsage | None = None,
    not_before: datetime | None = None,
    not_after: datetime = NEVER_EXPIRES,
) -> x509.Certificate:
    builder = (
        _builder(
            public_key,
            subject,
            issuer_name,
            not_before if not_before is not None else _now() - _BACKDATE,
            not_after,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage or _key_usage(digital_signature=True, key_agreement=True), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san[0], critical=san[1])
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _aki(issuer: _Authority) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


# ---------------------------------------------------------------------------------------------
# Files


def _ensure(
    cert_path: Path,
    key_path: Path,
    parent: _Authority | None,
    make: Callable[[ec.EllipticCurvePrivateKey], x509.Certificate],
    created: list[Path],
) -> _Authority:
    """Load a certificate and key, or create both if neither exists."""
    if cert_path.exists() and key_path.exists():
        authority = _load_authority(cert_path, key_path)
        expected_issuer = parent.cert if parent is not None else authority.cert
        try:
            authority.cert.verify_directly_issued_by(expected_issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(
                f"{cert_path} was not issued by {expected_issuer.subject.rfc4514_string()}; "
                f"the files in {cert_path.parent} do not belong together: move the directory "
                "away and run `csip certs init` again"
            ) from None
        return authority
    if cert_path.exists() or key_path.exists():
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise ConfigError(
            f"{present} exists but {missing} is missing; restore it, or move "
            f"{cert_path.parent} away and run `csip certs init` again"
        )
    key = _new_key()
    cert = make(key)
    _write_new(key_path, _key_pem(key), _KEY_MODE)
    _write_new(cert_path, _pem(cert), _CERT_MODE)
    created.extend((key_path, cert_path))
    return _Authority(cert, key)


def _load_authority(cert_path: Path, key_path: Path) -> _Authority:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{exc.filename} is missing; run `csip certs init --dir {cert_path.parent}` first"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"cannot read {cert_path} / {key_path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(
        cert.public_key()
    ):
        raise ConfigError(f"{key_path} is not the key of {cert_path}")
    return _Authority(cert, key)


def _issuing_cas(directory: Path) -> tuple[PkiPaths, _Authority, _Authority]:
    paths = PkiPaths.under(directory)
    if not (paths.mica_cert.exists() and paths.mca_cert.exists()):
        raise ConfigError(
            f"no test PKI in {paths.directory}; run `csip certs init --dir {paths.directory}` first"
        )
    mca = _load_authority(paths.mca_cert, paths.mca_key)
    mica = _load_authority(paths.mica_cert, paths.mica_key)
    return paths, mca, mica


def _write_issued(
    folder: Path,
    stem: str,
    cert: x509.Certificate,
    key: _PrivateKey,
    presented: Sequence[x509.Certificate],
) -> IssuedCert:
    cert_path = folder / f"{stem}.pem"
    key_path = folder / f"{stem}.key"
    combined_path = folder / f"{stem}-combined.pem"
    for path in (cert_path, key_path, combined_path):
        if path.exists():
            raise ConfigError(
                f"{path} already exists; certificates are never overwritten: "
                "pick another name or serial, or delete the old files first"
            )
    folder.mkdir(parents=True, exist_ok=True)
    chain_pem = _pem(cert, *presented)
    _write_new(key_path, _key_pem(key), _KEY_MODE)
    _write_new(cert_path, chain_pem, _CERT_MODE)
    _write_new(combined_path, chain_pem + _key_pem(key), _KEY_MODE)
    lfdi = lfdi_from_cert_der(cert.public_bytes(serialization.Encoding.DER))
    return IssuedCert(
        cert_path=cert_path,
        key_path=key_path,
        combined_path=combined_path,
        lfdi=lfdi,
        sfdi=sfdi_from_lfdi(lfdi),
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet (O_EXCL: never overwrite, even in a race)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _safe(label: str, value: str) -> str:
    """Refuse names that could escape the output folder or confuse a shell."""
    if not _SAFE_NAME.fullmatch(value):
        raise ConfigError(
            f"{label} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (no path separators)"
        )
    return value
