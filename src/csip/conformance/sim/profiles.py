"""OEM profiles: what each manufacturer's firmware does (device class, ratings, timing habits,
faults), from a small TOML file or the built-in set of ten.

    [profiles.acme-battery]
    kind = "battery"          # battery | pv
    rated_w = 5000
    capacity_wh = 13500
    reserve_pct = 20
    poll_rate = 300           # omit: follow the server's pollRate
    subscribe = true
    [profiles.acme-battery.faults]
    ignores_cancellation = true

Every key is a field of ``OemProfile`` (or ``Faults``); an unknown key or a wrong type is
refused with the file and profile named.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from csip.conformance.sim.core import FAULTS, Faults, OemProfile
from csip.errors import ConfigError

#: `csip sim --kind`: the device kinds, each a built-in profile.
KINDS: dict[str, OemProfile] = {
    "battery": OemProfile(name="battery"),
    "subscribing-battery": OemProfile(name="subscribing-battery", subscribe=True),
    "pv": OemProfile(name="pv", kind="pv", capacity_wh=0.0, reserve_pct=0.0),
    **{
        f"faulty-{name}": OemProfile(name=f"faulty-{name}", faults=faults)
        for name, faults in FAULTS.items()
    },
}


def builtin_profiles() -> list[OemProfile]:
    """Ten OEMs that differ the way real fleets do: sizes, poll habits, subscribing or not."""
    out: list[OemProfile] = []
    for i in range(10):
        pv = i % 3 == 2
        out.append(
            OemProfile(
                name=f"oem-{i:02d}",
                kind="pv" if pv else "battery",
                rated_w=3000.0 + 1000.0 * (i % 5),
                rated_var=2000.0 + 500.0 * (i % 3),
                capacity_wh=0.0 if pv else 5000.0 + 2500.0 * (i % 4),
                reserve_pct=0.0 if pv else 10.0 + 5.0 * (i % 3),
                initial_soc_pct=30.0 + 7.0 * i,
                subscribe=False,
                poll_rate=None,
            )
        )
    return out


def _build(cls: type[Any], values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for name, value in values.items():
        default = getattr(cls(), name)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false")
        if isinstance(default, float) and not isinstance(value, int | float):
            raise ConfigError(f"{where}: {name} must be a number")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string")
    converted = {
        k: float(v) if isinstance(getattr(cls(), k), float) else v for k, v in values.items()
    }
    return cls(**converted)


def load_profiles(path: Path) -> list[OemProfile]:
    """The profiles of a TOML file, in file order."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    tables = raw.get("profiles")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: no [profiles.<name>] tables")
    out: list[OemProfile] = []
    for name, table in tables.items():
        where = f"{path} [profiles.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        values = dict(table)
        faults = values.pop("faults", {})
        if not isinstance(faults, dict):
            raise ConfigError(f"{where}: faults must be a table")
        if values.get("kind", "battery") not in ("battery", "pv"):
            raise ConfigError(f"{where}: kind must be battery or pv")
        profile: OemProfile = _build(OemProfile, {"name": name, **values}, where)
        out.append(dataclasses.replace(profile, faults=_build(Faults, faults, f"{where} faults")))
    return out
