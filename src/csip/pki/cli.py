"""``csip certs``: make and inspect the TEST-ONLY 2030.5 PKI from the command line.

Kept apart from ``csip.cli`` so the top-level CLI only has to call ``add_certs_parser``; each
subcommand's ``func`` returns an exit code and prints errors with the fix, never a traceback,
because the audience is an OEM engineer setting up a lab, not a Python developer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from csip.errors import ConfigError
from csip.pki.checks import check_leaf, hardware_module_name
from csip.pki.identity import lfdi_from_cert_der, sfdi_from_lfdi
from csip.pki.testpki import IssuedCert, init_pki, issue_aggregator, issue_device

__all__ = ["add_certs_parser"]

_DEFAULT_DIR = Path("certs")
_DEFAULT_URL = "https://localhost:8443/dcap"


def add_certs_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``certs init|device|aggregator|show`` to a top-level parser's subcommands."""
    certs = subparsers.add_parser(
        "certs",
        help="make and inspect the TEST-ONLY IEEE 2030.5 PKI",
        description="Make and inspect a TEST-ONLY IEEE 2030.5 PKI "
        "(SERCA -> MCA -> MICA -> device). Never use these certificates in production.",
    )
    sub = certs.add_subparsers(dest="certs_command", metavar="COMMAND", required=True)

    init = sub.add_parser(
        "init",
        help="create the test PKI (idempotent)",
        description="Create serca/mca/mica/server certificates and keys, server-chain.pem "
        "and ca.pem. Existing files are kept, never overwritten.",
    )
    _add_dir(init)
    init.set_defaults(func=_cmd_init)

    device = sub.add_parser(
        "device",
        help="issue a device certificate",
        description="Issue a 2030.5 device certificate (HardwareModuleName = serial) into "
        "DIR/devices/OEM-SERIAL.pem, .key and -combined.pem.",
    )
    device.add_argument("--oem", required=True, metavar="NAME", help="manufacturer name")
    device.add_argument("--serial", required=True, metavar="S", help="device serial number")
    _add_dir(device)
    device.set_defaults(func=_cmd_device)

    aggregator = sub.add_parser(
        "aggregator",
        help="issue an aggregator certificate",
        description="Issue an aggregator (client system) certificate into "
        "DIR/aggregators/NAME.pem, .key and -combined.pem.",
    )
    aggregator.add_argument("name", metavar="NAME", help="aggregator name")
    _add_dir(aggregator)
    aggregator.set_defaults(func=_cmd_aggregator)

    show = sub.add_parser(
        "show",
        help="print a certificate's LFDI, SFDI and HardwareModuleName",
        description="Print the 2030.5 identity of a certificate (PEM or DER). For a PEM "
        "holding a chain, the first certificate is shown.",
    )
    show.add_argument("file", metavar="FILE", type=Path, help="certificate file")
    show.set_defaults(func=_cmd_show)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=_DEFAULT_DIR,
        metavar="DIR",
        help=f"PKI directory (default: {_DEFAULT_DIR})",
    )


def _cmd_init(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    try:
        paths = init_pki(directory)
    except (ConfigError, OSError) as exc:
        return _fail(exc)
    created = set(paths.created)
    for path in paths.files():
        print(f"{'created' if path in created else 'exists '}  {path}")
    if not created:
        print(f"the test PKI in {directory} already exists; nothing was changed")
    print("TEST ONLY: never use these certificates or keys in production")
    return 0


def _cmd_device(args: argparse.Namespace) -> int:
    try:
        issued = issue_device(args.dir, args.oem, args.serial)
    except (ConfigError, OSError) as exc:
        return _fail(exc)
    _print_issued(args.dir, issued)
    return 0


def _cmd_aggregator(args: argparse.Namespace) -> int:
    try:
        issued = issue_aggregator(args.dir, args.name)
    except (ConfigError, OSError) as exc:
        return _fail(exc)
    _print_issued(args.dir, issued)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror}; check the path")
    try:
        cert = (
            x509.load_pem_x509_certificates(data)[0]
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        return _fail(f"{path} holds no PEM or DER certificate; pass a .pem or .der certificate")
    lfdi = lfdi_from_cert_der(cert.public_bytes(serialization.Encoding.DER))
    print(f"lfdi: {lfdi}")
    print(f"sfdi: {sfdi_from_lfdi(lfdi)}")
    try:
        hw = hardware_module_name(cert)
    except ValueError as exc:
        print(f"hardware-module-name: malformed ({exc})")
    else:
        if hw is not None:
            hw_type, serial = hw
            print(f"hardware-module-name: {hw_type} {serial.decode('utf-8', errors='replace')}")
    print(f"subject: {cert.subject.rfc4514_string() or '(empty)'}")
    print(f"issuer: {cert.issuer.rfc4514_string()}")
    print(f"not-after: {cert.not_valid_after_utc.isoformat()}")
    check = check_leaf(cert, require_hardware_module_name=False)
    print(f"leaf-check: {'; '.join(check.problems) if check.problems else 'ok'}")
    return 0


def _print_issued(directory: Path, issued: IssuedCert) -> None:
    print(f"certificate: {issued.cert_path}")
    print(f"key: {issued.key_path}")
    print(f"combined: {issued.combined_path}")
    print(f"lfdi: {issued.lfdi}")
    print(f"sfdi: {issued.sfdi}")
    print(f"try: curl --cacert {directory / 'ca.pem'} --cert {issued.combined_path} {_DEFAULT_URL}")


def _fail(error: Exception | str) -> int:
    if isinstance(error, ConfigError):
        message = error.detail
    elif isinstance(error, OSError):
        message = (
            f"{error.filename or 'file system'}: {error.strerror or error}; "
            "check that the directory exists and is writable, or pass another --dir"
        )
    else:
        message = str(error)
    print(f"csip certs: error: {message}", file=sys.stderr)
    return 1
