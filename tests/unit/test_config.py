"""Settings come from defaults < TOML file < CSIP_* environment < CLI flags."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from csip.config import Settings, load_settings
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


# ---- every field arrives as its declared type, from the environment and from TOML -----------
def _sample(kind: Any, default: Any) -> Any:
    """A valid value of the field's type that differs from the default where it can."""
    if type(None) in get_args(kind):
        (kind,) = [a for a in get_args(kind) if a is not type(None)]
    if kind is bool:
        return not default
    if kind is int:
        return 1234
    if kind is float:
        return 2.5
    if kind is Path:
        return Path("/srv/csip/x")
    if kind == list[str]:
        return ["10.0.0.1", "192.168.0.0/16"]
    if kind == list[float]:
        return [0.5, 2.0, 30.0]
    assert kind is str, kind
    return default  # free text, often validated: the default is a valid one


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def _samples() -> dict[str, Any]:
    hints = get_type_hints(Settings)
    defaults = Settings()
    return {f.name: _sample(hints[f.name], getattr(defaults, f.name)) for f in fields(Settings)}


def _assert_typed(settings: Settings, expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        got = getattr(settings, name)
        assert got == value, name
        assert type(got) is type(value), (name, got)
        if isinstance(value, list):
            assert [type(v) for v in got] == [type(v) for v in value], (name, got)


def test_every_field_from_the_environment_has_its_declared_type() -> None:
    samples = _samples()
    environ = {"CSIP_" + name.upper(): _env_text(value) for name, value in samples.items()}
    _assert_typed(load_settings(environ=environ), samples)


def test_every_field_from_toml_has_its_declared_type(tmp_path: Path) -> None:
    samples = _samples()
    config = tmp_path / "csip.toml"
    config.write_text("".join(f"{name} = {_toml_text(v)}\n" for name, v in samples.items()))
    _assert_typed(load_settings(config, environ={}), samples)


def test_float_settings_are_floats(tmp_path: Path) -> None:
    settings = load_settings(environ={"CSIP_VTN_WEBHOOK_TIMEOUT": "5"})
    assert settings.vtn_webhook_timeout == 5.0 and isinstance(settings.vtn_webhook_timeout, float)
    config = tmp_path / "csip.toml"
    config.write_text("vtn_webhook_timeout = 5\noutbox_retry_delays = [1, 2.5]\n")
    settings = load_settings(config, environ={})
    assert settings.vtn_webhook_timeout == 5.0 and isinstance(settings.vtn_webhook_timeout, float)
    assert settings.outbox_retry_delays == [1.0, 2.5]
    assert all(isinstance(d, float) for d in settings.outbox_retry_delays)
    settings = load_settings(environ={"CSIP_OUTBOX_RETRY_DELAYS": "10, 60.5"})
    assert settings.outbox_retry_delays == [10.0, 60.5]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('vtn_webhook_timeout = "soon"', "vtn_webhook_timeout must be a number"),
        ('vtn_webhook_timeout = "nan"', "vtn_webhook_timeout must be a number"),
        ("vtn_webhook_timeout = true", "vtn_webhook_timeout must be a number"),
        ("sep2_port = true", "sep2_port must be a whole number"),
        ("sep2_port = 8443.5", "sep2_port must be a whole number"),
        ('outbox_retry_delays = "10, later"', "outbox_retry_delays must be a number"),
        ("outbox_retry_delays = [0]", "outbox_retry_delays must be positive"),
        ("trusted_proxies = 5", "trusted_proxies must be a list"),
        ("db = [1]", "db must be a string"),
        ("data_dir = 5", "data_dir must be a path"),
    ],
)
def test_toml_values_of_the_wrong_type_name_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "csip.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(config, environ={})
