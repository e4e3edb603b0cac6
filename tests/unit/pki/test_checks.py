from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from csip.pki.checks import (
    OID_HARDWARE_MODULE_NAME,
    POLICY_DEVICE,
    POLICY_MOBILE,
    POLICY_POST_MANUFACTURE,
    check_leaf,
    decode_hardware_module_name,
    encode_hardware_module_name,
    hardware_module_name,
)
from csip.pki.testpki import SPECIAL_KINDS, PkiPaths, init_pki, issue_special


def leaf_of(pki: PkiPaths, kind: str, name: str) -> x509.Certificate:
    issued = issue_special(pki.directory, kind, name=name)
    return x509.load_pem_x509_certificates(issued.cert_path.read_bytes())[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    """One test PKI for this module; tests add certificates under their own names.

    Defined here rather than in a conftest.py: the suite imports ``conftest`` by name
    elsewhere, and a second conftest module would shadow it.
    """
    return init_pki(tmp_path_factory.mktemp("pki") / "certs")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("expired", []),  # dates are OpenSSL's job at the handshake
        ("self-signed", []),  # so is the chain
        ("foreign", []),
        ("rsa", ["ECDSA P-256"]),
        ("no-policy", ["certificatePolicies"]),
        ("no-hwname", ["HardwareModuleName"]),
        ("ca-as-leaf", ["certificatePolicies", "HardwareModuleName", "CA:TRUE"]),
        ("mica-bad-eku", []),  # the leaf is fine: OpenSSL refuses its MICA at the handshake
    ],
)
def test_each_special_kind_breaks_exactly_its_rules(
    pki: PkiPaths, kind: str, expected: list[str]
) -> None:
    check = check_leaf(leaf_of(pki, kind, "checks"), require_hardware_module_name=True)
    assert len(check.problems) == len(expected), check.problems
    for problem, word in zip(check.problems, expected, strict=True):
        assert word in problem
    assert check.ok is (not expected)


def test_special_kinds_are_all_covered() -> None:
    assert set(SPECIAL_KINDS) == {
        "expired",
        "ca-as-leaf",
        "self-signed",
        "foreign",
        "rsa",
        "no-policy",
        "no-hwname",
        "mica-bad-eku",
    }


def test_hardware_module_name_is_optional_for_aggregators(pki: PkiPaths) -> None:
    cert = leaf_of(pki, "no-hwname", "relaxed")
    relaxed = check_leaf(cert, require_hardware_module_name=False)
    assert relaxed.problems == ()
    assert relaxed.hw_serial is None


def _self_made(
    *,
    curve: ec.EllipticCurve | None = None,
    digest: hashes.SHA256 | hashes.SHA384 | None = None,
    policies: tuple[str, ...] = (POLICY_DEVICE,),
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csip TEST ONLY checks")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(p), None) for p in policies]
            ),
            critical=False,
        )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=True)
    return builder.sign(key, digest or hashes.SHA256())


def test_other_curves_and_digests_are_refused() -> None:
    p384 = check_leaf(_self_made(curve=ec.SECP384R1()), require_hardware_module_name=False)
    assert any("secp384r1" in p for p in p384.problems)
    sha384 = check_leaf(_self_made(digest=hashes.SHA384()), require_hardware_module_name=False)
    assert sha384.problems == (
        "certificate is signed with 1.2.840.10045.4.3.3; IEEE 2030.5 requires ecdsa-with-SHA256",
    )


@pytest.mark.parametrize("policy", [POLICY_DEVICE, POLICY_MOBILE, POLICY_POST_MANUFACTURE])
def test_any_2030_5_policy_is_enough(policy: str) -> None:
    check = check_leaf(_self_made(policies=(policy,)), require_hardware_module_name=False)
    assert check.problems == ()
    assert check.policies == frozenset({policy})


def test_malformed_hardware_module_name_is_a_problem_not_a_crash() -> None:
    # a SEQUENCE holding only hwType: valid DER, but no hwSerialNum
    broken = x509.OtherName(OID_HARDWARE_MODULE_NAME, bytes.fromhex("300506032a0304"))
    cert = _self_made(san=[broken])
    with pytest.raises(ValueError, match="truncated"):
        hardware_module_name(cert)
    check = check_leaf(cert, require_hardware_module_name=True)
    assert len(check.problems) == 1 and "malformed" in check.problems[0]


def test_other_other_names_are_ignored() -> None:
    unrelated = x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x04\x01x")
    assert hardware_module_name(_self_made(san=[unrelated])) is None


@pytest.mark.parametrize("serial", [b"", b"SN1", b"x" * 127, b"y" * 128, b"z" * 70000])
def test_hardware_module_name_round_trips(serial: bytes) -> None:
    hw_type = "1.3.6.1.4.1.32473.2030.5"
    assert decode_hardware_module_name(encode_hardware_module_name(hw_type, serial)) == (
        hw_type,
        serial,
    )


def test_hardware_module_name_der_is_exact() -> None:
    # SEQUENCE { OID 1.2.840.10045.3.1.7, OCTET STRING "AB" }
    expected = bytes.fromhex("300e06082a8648ce3d03010704024142")
    assert encode_hardware_module_name("1.2.840.10045.3.1.7", b"AB") == expected
    assert decode_hardware_module_name(expected) == ("1.2.840.10045.3.1.7", b"AB")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "300e06082a8648ce3d03010704024142" + "00",  # trailing bytes
        "310e06082a8648ce3d03010704024142",  # SET, not SEQUENCE
        "300e04082a8648ce3d03010704024142",  # hwType is not an OID
        "300e06082a8648ce3d03010702024142",  # hwSerialNum is not an OCTET STRING
        "300f06082a8648ce3d03010704034142",  # length past the end
        "30810e06082a8648ce3d03010704024142",  # non-minimal length
        "30050603808001",  # non-minimal OID arc
    ],
)
def test_malformed_der_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_hardware_module_name(bytes.fromhex(bad))
