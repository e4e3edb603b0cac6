"""Settings come from defaults < TOML file < CSIP_* environment < CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from csip.config import load_settings
from csip.errors import ConfigError


def test_defaults_are_an_embedded_sqlite_server_on_loopback() -> None:
    settings = load_settings(environ={})
    assert settings.host == "127.0.0.1" and settings.admin_host == "127.0.0.1"
    assert settings.db_url.startswith("sqlite+aiosqlite:///")
    assert settings.db_url.endswith("data/csip.db")
    assert settings.profile == "csip"


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "csip.toml"
    config.write_text('sep2_port = 9000\nadmin_port = 9001\nprofile = "csip-aus"\n')
    settings = load_settings(
        config, {"admin_port": 9100}, environ={"CSIP_SEP2_PORT": "9500", "CSIP_ADMIN_PORT": "9600"}
    )
    assert (settings.sep2_port, settings.admin_port, settings.profile) == (9500, 9100, "csip-aus")


def test_environment_types_are_coerced() -> None:
    settings = load_settings(
        environ={
            "CSIP_REGISTRATION_IN_BAND": "false",
            "CSIP_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
            "CSIP_DATA_DIR": "/var/lib/csip",
        }
    )
    assert settings.registration_in_band is False
    assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]
    assert settings.db_url == "sqlite+aiosqlite:////var/lib/csip/csip.db"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CSIP_SEP2_PORT": "many"}, "sep2_port must be a whole number"),
        ({"CSIP_SEP2_PORT": "70000"}, "sep2_port must be 0..65535"),
        ({"CSIP_PROFILE": "csip-eu"}, "profile must be one of"),
        ({"CSIP_TIMEZONE": "Mars/Olympus"}, "unknown timezone"),
        ({"CSIP_REGISTRATION_IN_BAND": "maybe"}, "must be true or false"),
        ({"CSIP_TRUSTED_PROXIES": "not-an-ip"}, "is not an address"),
    ],
)
def test_bad_values_name_the_problem(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("sep2_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sep2_prot = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'sep2_prot'"):
        load_settings(unknown, environ={})
