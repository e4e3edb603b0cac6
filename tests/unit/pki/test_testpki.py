from __future__ import annotations

import argparse
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from csip.errors import ConfigError
from csip.pki.checks import POLICY_DEVICE, POLICY_TEST, check_leaf, hardware_module_name
from csip.pki.cli import add_certs_parser
from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi
from csip.pki.testpki import (
    TEST_HW_TYPE,
    PkiPaths,
    build_chain,
    init_pki,
    issue_aggregator,
    issue_device,
)

NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    """One test PKI for this module; tests add certificates under their own names.

    Defined here rather than in a conftest.py: the suite imports ``conftest`` by name
    elsewhere, and a second conftest module would shadow it.
    """
    return init_pki(tmp_path_factory.mktemp("pki") / "certs")


def load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def snapshot(directory: Path) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()}


# --- init -------------------------------------------------------------------------------------


def test_init_creates_every_file_with_private_keys_0600(tmp_path: Path) -> None:
    paths = init_pki(tmp_path / "certs")
    assert set(paths.created) == set(paths.files())
    for path in paths.files():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.suffix == ".key":
            assert mode == 0o600, path
        else:
            assert mode & 0o022 == 0, path  # certificates are public, never writable by others


def test_init_is_idempotent_and_never_rewrites(tmp_path: Path) -> None:
    init_pki(tmp_path)
    before = snapshot(tmp_path)
    again = init_pki(tmp_path)
    assert again.created == ()
    assert snapshot(tmp_path) == before


def test_init_completes_a_partial_directory_from_the_existing_cas(tmp_path: Path) -> None:
    paths = init_pki(tmp_path)
    kept = {p: p.read_bytes() for p in (paths.serca_cert, paths.mca_cert, paths.mica_cert)}
    for path in (paths.server_cert, paths.server_key, paths.server_chain):
        path.unlink()
    again = init_pki(tmp_path)
    assert set(again.created) == {paths.server_cert, paths.server_key, paths.server_chain}
    assert {p: p.read_bytes() for p in kept} == kept
    server, mica, _ = load(paths.server_chain)
    server.verify_directly_issued_by(mica)


def test_init_refuses_files_that_do_not_belong_together(tmp_path: Path) -> None:
    a = init_pki(tmp_path / "a")
    b = init_pki(tmp_path / "b")
    a.mica_cert.write_bytes(b.mica_cert.read_bytes())
    a.mica_key.write_bytes(b.mica_key.read_bytes())
    with pytest.raises(ConfigError, match="do not belong together"):
        init_pki(a.directory)


def test_init_refuses_a_key_without_its_certificate(tmp_path: Path) -> None:
    paths = init_pki(tmp_path)
    paths.mca_cert.unlink()
    with pytest.raises(ConfigError, match=r"mca\.pem is missing"):
        init_pki(tmp_path)


# --- chain structure --------------------------------------------------------------------------


def test_chain_links_serca_mca_mica_server(pki: PkiPaths) -> None:
    (serca,) = load(pki.serca_cert)
    (mca,) = load(pki.mca_cert)
    (mica,) = load(pki.mica_cert)
    server, chain_mica, chain_mca = load(pki.server_chain)
    assert load(pki.ca_cert) == [serca]
    assert load(pki.server_cert) == [server]
    assert (chain_mica, chain_mca) == (mica, mca)
    serca.verify_directly_issued_by(serca)
    mca.verify_directly_issued_by(serca)
    mica.verify_directly_issued_by(mca)
    server.verify_directly_issued_by(mica)
    for cert in (serca, mca, mica, server):
        assert "csip TEST ONLY" in cert.subject.rfc4514_string()


def test_cas_never_expire_and_are_constrained(pki: PkiPaths) -> None:
    (serca,) = load(pki.serca_cert)
    assert serca.not_valid_after_utc == NEVER
    # RFC 5280: dates from 2050 on are GeneralizedTime; 2030.5 names this exact value.
    assert b"\x18\x0f99991231235959Z" in der(serca)
    for path, path_len in ((pki.serca_cert, None), (pki.mca_cert, 1), (pki.mica_cert, 0)):
        (cert,) = load(path)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == path_len
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert isinstance(key.curve, ec.SECP256R1)


def test_server_certificate_names_localhost(pki: PkiPaths) -> None:
    (server,) = load(pki.server_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pki.server_chain, pki.server_key)


# --- devices and aggregators ------------------------------------------------------------------


def test_device_certificate_is_2030_5_shaped(pki: PkiPaths) -> None:
    issued = issue_device(pki.directory, "acme", "SN-0001")
    assert issued.cert_path == pki.directory / "devices" / "acme-SN-0001.pem"
    leaf, mica, mca = load(issued.cert_path)
    assert [mica, mca] == load(pki.mica_cert) + load(pki.mca_cert)
    leaf.verify_directly_issued_by(mica)
    assert leaf.subject == x509.Name([])  # 2030.5: identity lives in the SAN, not the subject
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert hardware_module_name(leaf) == (TEST_HW_TYPE, b"SN-0001")
    assert leaf.not_valid_after_utc == NEVER
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and not ku.key_cert_sign
    check = check_leaf(leaf, require_hardware_module_name=True)
    assert check.problems == ()
    assert check.hw_serial == "SN-0001"
    assert {POLICY_DEVICE, POLICY_TEST} <= check.policies
    assert issued.lfdi == lfdi_from_cert_der(der(leaf))
    assert issued.sfdi == sfdi_from_lfdi(issued.lfdi)
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.combined_path.stat().st_mode) == 0o600
    combined = issued.combined_path.read_bytes()
    assert combined.startswith(issued.cert_path.read_bytes())
    assert combined.endswith(issued.key_path.read_bytes())
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(issued.combined_path)


def test_device_is_never_overwritten(pki: PkiPaths) -> None:
    first = issue_device(pki.directory, "acme", "dup")
    before = first.cert_path.read_bytes()
    with pytest.raises(ConfigError, match=r"acme-dup\.pem already exists"):
        issue_device(pki.directory, "acme", "dup")
    assert first.cert_path.read_bytes() == before


@pytest.mark.parametrize(
    ("oem", "serial"), [("../x", "1"), ("a/b", "1"), ("acme", ""), ("acme", ".hidden")]
)
def test_unsafe_names_are_refused(pki: PkiPaths, oem: str, serial: str) -> None:
    with pytest.raises(ConfigError, match="path separators"):
        issue_device(pki.directory, oem, serial)


def test_issuing_without_a_pki_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="csip certs init"):
        issue_device(tmp_path, "acme", "1")


def test_aggregator_has_policies_but_no_hardware_module_name(pki: PkiPaths) -> None:
    issued = issue_aggregator(pki.directory, "agg-1")
    assert issued.cert_path == pki.directory / "aggregators" / "agg-1.pem"
    leaf, mica, _ = load(issued.cert_path)
    leaf.verify_directly_issued_by(mica)
    assert hardware_module_name(leaf) is None
    assert check_leaf(leaf, require_hardware_module_name=False).problems == ()


@pytest.mark.parametrize(("depth", "presented"), [(2, 0), (3, 1), (4, 2)])
def test_build_chain_depths_reach_the_same_serca(pki: PkiPaths, depth: int, presented: int) -> None:
    issued = build_chain(pki.directory, depth, serial=f"d{depth}")
    certs = load(issued.cert_path)
    assert len(certs) == 1 + presented
    (serca,) = load(pki.serca_cert)
    for child, parent in zip(certs, [*certs[1:], serca], strict=True):
        child.verify_directly_issued_by(parent)
    assert check_leaf(certs[0], require_hardware_module_name=True).problems == ()


def test_build_chain_refuses_other_depths(pki: PkiPaths) -> None:
    with pytest.raises(ConfigError, match="depth"):
        build_chain(pki.directory, 5, serial="d5")


# --- CLI --------------------------------------------------------------------------------------


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="csip")
    add_certs_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_cli_init_device_aggregator_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(tmp_path / "certs")
    assert run(["certs", "init", "--dir", d]) == 0
    out = capsys.readouterr().out
    assert out.count("created") == 10 and "TEST ONLY" in out

    assert run(["certs", "init", "--dir", d]) == 0
    assert "already exists" in capsys.readouterr().out

    assert run(["certs", "device", "--oem", "acme", "--serial", "42", "--dir", d]) == 0
    out = capsys.readouterr().out
    combined = tmp_path / "certs" / "devices" / "acme-42-combined.pem"
    assert f"--cert {combined} https://localhost:8443/dcap" in out
    assert f"curl --cacert {tmp_path / 'certs' / 'ca.pem'}" in out
    lfdi = next(line.split()[1] for line in out.splitlines() if line.startswith("lfdi:"))

    assert run(["certs", "show", str(combined)]) == 0
    out = capsys.readouterr().out
    assert f"lfdi: {lfdi}\n" in out
    assert f"sfdi: {sfdi_from_lfdi(lfdi)}\n" in out
    assert f"hardware-module-name: {TEST_HW_TYPE} 42\n" in out

    assert run(["certs", "aggregator", "agg", "--dir", d]) == 0
    out = capsys.readouterr().out
    assert "aggregators/agg-combined.pem" in out
    assert run(["certs", "show", str(tmp_path / "certs" / "aggregators" / "agg.pem")]) == 0
    assert "hardware-module-name" not in capsys.readouterr().out


def test_cli_errors_say_how_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = str(tmp_path / "none")
    assert run(["certs", "device", "--oem", "a", "--serial", "1", "--dir", empty]) == 1
    assert "run `csip certs init" in capsys.readouterr().err
    assert run(["certs", "aggregator", "x/y", "--dir", empty]) == 1
    assert "path separators" in capsys.readouterr().err
    assert run(["certs", "show", str(tmp_path / "missing.pem")]) == 1
    assert "check the path" in capsys.readouterr().err
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    assert run(["certs", "show", str(junk)]) == 1
    assert "no PEM or DER certificate" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["init", "device", "aggregator", "show"])
def test_cli_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["certs", command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: csip certs" in capsys.readouterr().out
