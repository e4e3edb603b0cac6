"""lab.toml: the devices under test of a campaign, and how csip runs as their test server.

    [campaign]
    name = "spring certification"
    poll_rates = { DERProgramList = 10, DeviceCapability = 10 }   # set once, for every device
    concurrency = 50

    [server]                  # all optional: csip runs in-process on loopback
    certs_dir = "certs"       # the lab's PKI (ca.pem, server cert); default: this checkout's
    sep2_port = 0             # 0 = any free port
    profile = "csip"

    [[device]]
    name = "acme-battery-1"
    class = "storage"                          # storage, pv, inverter, load, ev, aggregator
    function_sets = ["DER", "Subscription", "Response", "MirrorMetering", "Time"]
    certificate = "certs/devices/acme-0001-cert.pem"   # or lfdi = "..." (and sfdi)
    pin = 111115                               # registration PIN (optional)
    command = ["acme-agent", "--server", "{url}", "--cert", "{cert}", "--ca", "{ca}"]
    restart = "per-procedure"                  # or "once"; no command = an external device
    managed = [{ lfdi = "...", sfdi = 1 }]     # an aggregator's EndDevices, pre-registered;
                                               # without it the harness starts the aggregator
                                               # and takes the EndDevices it registers in band

Placeholders in `command`: {url} (https://host:port), {dcap}, {ca}, {cert}, {key}, {lfdi},
{name}, {out} (the device's own directory under the results).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from csip.conformance.procedures import DEVICE_CLASSES, FUNCTION_SETS, ProcedureError, _line_of


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Managed(_Model):
    lfdi: str = Field(pattern=r"^[0-9A-Fa-f]{40}$")
    sfdi: int = Field(ge=0)


class DeviceUnderTest(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,48}$")
    device_class: str = Field(alias="class")
    function_sets: list[str] = Field(default_factory=lambda: ["DER"])
    certificate: Path | None = None
    key: Path | None = None
    lfdi: str | None = Field(None, pattern=r"^[0-9A-Fa-f]{40}$")
    sfdi: int | None = None
    pin: int | None = None
    command: list[str] = Field(default_factory=list)
    restart: Literal["per-procedure", "once"] = "per-procedure"
    managed: list[Managed] = Field(default_factory=list)

    @field_validator("device_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        if value not in DEVICE_CLASSES:
            raise ValueError(f"class {value!r}: use one of {sorted(DEVICE_CLASSES)}")
        return value

    @field_validator("function_sets")
    @classmethod
    def _known_sets(cls, value: list[str]) -> list[str]:
        unknown = set(value) - FUNCTION_SETS
        if unknown:
            raise ValueError(f"unknown function sets {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DeviceUnderTest:
        if self.certificate is None and self.lfdi is None:
            raise ValueError("give the device's certificate or its lfdi")
        return self


class Campaign(_Model):
    name: str = "campaign"
    poll_rates: dict[str, int] = Field(default_factory=dict)
    concurrency: int = Field(50, ge=1, le=10_000)


class ServerOptions(_Model):
    certs_dir: Path | None = None
    host: str = "127.0.0.1"
    sep2_port: int = Field(0, ge=0, le=65535)
    profile: Literal["csip", "csip-aus"] = "csip"
    schema_dir: Path | None = None


class Lab(_Model):
    campaign: Campaign = Field(default_factory=lambda: Campaign.model_validate({}))
    server: ServerOptions = Field(default_factory=lambda: ServerOptions.model_validate({}))
    device: list[DeviceUnderTest] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Lab:
        names = [d.name for d in self.device]
        if len(set(names)) != len(names):
            raise ValueError("two devices have the same name")
        return self


def load_lab(path: Path) -> Lab:
    """Parse lab.toml; relative paths are taken from the file's directory."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
        lab = Lab.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise ProcedureError(path, 1, str(exc)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        where = ".".join(str(p) for p in loc)
        raise ProcedureError(path, _line_of(text, loc), f"{where}: {error['msg']}") from None
    base = path.parent
    for device in lab.device:
        for name in ("certificate", "key"):
            value = getattr(device, name)
            if value is not None and not value.is_absolute():
                setattr(device, name, base / value)
    if lab.server.certs_dir is not None and not lab.server.certs_dir.is_absolute():
        lab.server.certs_dir = base / lab.server.certs_dir
    return lab
