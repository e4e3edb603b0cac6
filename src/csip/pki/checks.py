"""The IEEE 2030.5 rules on a client's leaf certificate that OpenSSL does not check.

On Python before 3.13 the ``ssl`` module offers no verify callback, so the TLS handshake only
proves what OpenSSL itself checks (chain to the SERCA, dates, CA constraints). The 2030.5
profile of the leaf (IEEE 2030.5-2018 §6.11: ECDSA P-256 key, ecdsa-with-SHA256 signature, a
2030.5 certificate policy, a HardwareModuleName for device certificates, not a CA) is checked
here, once per connection, from the peer certificate. The server refuses (403 and close) a
connection whose leaf has any problem.

The HardwareModuleName (RFC 4108) is tiny DER; it is encoded and parsed by hand here so that
the encoder used by the test PKI and the parser used by the server are checked against each
other in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier

__all__ = [
    "DEVICE_POLICIES",
    "OID_HARDWARE_MODULE_NAME",
    "POLICY_DEVICE",
    "POLICY_MOBILE",
    "POLICY_POST_MANUFACTURE",
    "POLICY_TEST",
    "LeafCheck",
    "check_leaf",
    "decode_hardware_module_name",
    "encode_hardware_module_name",
    "hardware_module_name",
]

#: id-on-hardwareModuleName (RFC 4108): the otherName form 2030.5 device certificates carry.
OID_HARDWARE_MODULE_NAME = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
#: IEEE 2030.5 certificate policies (§6.11.8.3): a device certificate carries one of these.
POLICY_DEVICE = "1.3.6.1.4.1.40732.1.1"
POLICY_MOBILE = "1.3.6.1.4.1.40732.1.2"
POLICY_POST_MANUFACTURE = "1.3.6.1.4.1.40732.1.3"
#: The 2030.5 test-certificate policy: marks certificates that must never reach production.
POLICY_TEST = "1.3.6.1.4.1.40732.2.1"
DEVICE_POLICIES = frozenset({POLICY_DEVICE, POLICY_MOBILE, POLICY_POST_MANUFACTURE})

_TAG_SEQUENCE = 0x30
_TAG_OID = 0x06
_TAG_OCTET_STRING = 0x04


@dataclass(frozen=True, slots=True)
class LeafCheck:
    """What the 2030.5 leaf rules found; ``problems`` is empty when the leaf is acceptable."""

    problems: tuple[str, ...]
    hw_serial: str | None
    policies: frozenset[str]

    @property
    def ok(self) -> bool:
        """True when no rule failed."""
        return not self.problems


def check_leaf(cert: x509.Certificate, *, require_hardware_module_name: bool) -> LeafCheck:
    """Check a client leaf against the 2030.5 certificate profile.

    ``require_hardware_module_name`` is True for device certificates and False for aggregator
    (client system) certificates, which identify a system rather than a piece of hardware.
    Every failing rule is reported, not just the first, so an OEM sees all fixes at once.
    """
    problems: list[str] = []

    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        problems.append(
            f"public key is {type(key).__name__.removeprefix('_')}; "
            "IEEE 2030.5 requires an ECDSA P-256 (secp256r1) key"
        )
    elif not isinstance(key.curve, ec.SECP256R1):
        problems.append(
            f"public key is on curve {key.curve.name}; IEEE 2030.5 requires P-256 (secp256r1)"
        )

    sig_hash = cert.signature_hash_algorithm
    if cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256 or not (
        isinstance(sig_hash, hashes.SHA256)
    ):
        problems.append(
            f"certificate is signed with {cert.signature_algorithm_oid.dotted_string}; "
            "IEEE 2030.5 requires ecdsa-with-SHA256"
        )

    policies = _policies(cert)
    if not policies & DEVICE_POLICIES:
        problems.append(
            "certificatePolicies lacks an IEEE 2030.5 policy "
            f"({POLICY_DEVICE}, {POLICY_MOBILE} or {POLICY_POST_MANUFACTURE})"
        )

    hw_serial: str | None = None
    try:
        hw = hardware_module_name(cert)
    except ValueError as exc:
        problems.append(f"HardwareModuleName is malformed: {exc}")
    else:
        if hw is not None:
            hw_serial = hw[1].decode("utf-8", errors="replace")
        elif require_hardware_module_name:
            problems.append(
                "subjectAltName lacks the HardwareModuleName a device certificate needs"
            )

    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if bc.ca:
            problems.append("certificate is a CA (basicConstraints CA:TRUE), not a client leaf")

    return LeafCheck(problems=tuple(problems), hw_serial=hw_serial, policies=policies)


def _policies(cert: x509.Certificate) -> frozenset[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(p.policy_identifier.dotted_string for p in ext)


def hardware_module_name(cert: x509.Certificate) -> tuple[str, bytes] | None:
    """Return ``(hwType dotted OID, hwSerialNum bytes)`` from the cert's subjectAltName.

    Returns None when there is no HardwareModuleName; raises ValueError when one is present but
    is not well-formed DER, so a broken certificate is never mistaken for a missing field.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_HARDWARE_MODULE_NAME:
            return decode_hardware_module_name(other.value)
    return None


def encode_hardware_module_name(hw_type: str, serial: bytes) -> bytes:
    """DER of ``HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }``."""
    body = _tlv(_TAG_OID, _encode_oid(hw_type)) + _tlv(_TAG_OCTET_STRING, serial)
    return _tlv(_TAG_SEQUENCE, body)


def decode_hardware_module_name(der: bytes) -> tuple[str, bytes]:
    """Parse the DER of a HardwareModuleName; raise ValueError on anything but exact DER."""
    tag, body, rest = _read_tlv(der)
    if tag != _TAG_SEQUENCE or rest:
        raise ValueError("expected a single SEQUENCE")
    tag, oid_bytes, body = _read_tlv(body)
    if tag != _TAG_OID:
        raise ValueError("hwType is not an OBJECT IDENTIFIER")
    tag, serial, body = _read_tlv(body)
    if tag != _TAG_OCTET_STRING:
        raise ValueError("hwSerialNum is not an OCTET STRING")
    if body:
        raise ValueError("trailing data after hwSerialNum")
    return _decode_oid(oid_bytes), serial


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + value


def _read_tlv(data: bytes) -> tuple[int, bytes, bytes]:
    """Split one tag-length-value off ``data``; return (tag, value, remainder)."""
    if len(data) < 2:
        raise ValueError("truncated DER")
    tag, first = data[0], data[1]
    pos = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length form")
        if len(data) < pos + count:
            raise ValueError("truncated DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    end = pos + length
    if len(data) < end:
        raise ValueError("truncated DER value")
    return tag, data[pos:end], data[end:]


def _encode_oid(dotted: str) -> bytes:
    try:
        arcs = [int(a) for a in dotted.split(".")]
    except ValueError:
        raise ValueError(f"not a dotted OID: {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39) or min(arcs) < 0:
        raise ValueError(f"not a valid OID: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def _decode_oid(data: bytes) -> str:
    if not data or data[-1] & 0x80:
        raise ValueError("truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    start = True
    for byte in data:
        if start and byte == 0x80:
            raise ValueError("non-minimal OBJECT IDENTIFIER arc")
        value = (value << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in [*head, *arcs[1:]])
