"""OEM profiles from TOML: typed, and a bad file refused with its name and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from csip.conformance.sim.core import Faults
from csip.conformance.sim.profiles import KINDS, builtin_profiles, load_profiles
from csip.errors import ConfigError


def test_profiles_load_in_file_order_with_faults(tmp_path: Path) -> None:
    path = tmp_path / "oems.toml"
    path.write_text(
        "[profiles.acme]\nkind = 'battery'\nrated_w = 7000\ncapacity_wh = 13500\n"
        "poll_rate = 60\nsubscribe = true\n"
        "[profiles.sunny]\nkind = 'pv'\n[profiles.sunny.faults]\nignores_cancellation = true\n"
    )
    acme, sunny = load_profiles(path)
    assert (acme.name, acme.rated_w, acme.capacity_wh, acme.poll_rate, acme.subscribe) == (
        "acme", 7000.0, 13500.0, 60, True,
    )  # fmt: skip
    assert acme.faults == Faults()
    assert sunny.kind == "pv" and sunny.faults.ignores_cancellation


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[profiles.a]\nrated_watts = 5\n", "unknown key(s) rated_watts"),
        ("[profiles.a]\nsubscribe = 'yes'\n", "subscribe must be true or false"),
        ("[profiles.a]\nkind = 'wind'\n", "kind must be battery or pv"),
        ("[profiles.a.faults]\nexplodes = true\n", "unknown key(s) explodes"),
        ("nothing = 1\n", "no [profiles.<name>] tables"),
        ("[profiles.a\n", "oems.toml"),
    ],
)
def test_a_bad_file_is_refused_with_its_name(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "oems.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_profiles(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_kinds_and_builtin_profiles() -> None:
    assert {"battery", "subscribing-battery", "pv", "faulty-ignores-cancel"} <= set(KINDS)
    assert all(KINDS[k].faults.any for k in KINDS if k.startswith("faulty-"))
    oems = builtin_profiles()
    assert len({p.name for p in oems}) == 10 and {p.kind for p in oems} == {"battery", "pv"}
