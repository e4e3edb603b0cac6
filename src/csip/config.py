"""One Settings object, filled from defaults < config file < CSIP_* environment < CLI flags.

Every command that touches state (serve, admin token, clients ...) resolves its settings the
same way, so `csip admin token` and `csip serve` always agree on the database.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from csip.errors import ConfigError

Profile = Literal["csip", "csip-aus"]
PROFILES: tuple[str, ...] = ("csip", "csip-aus")

#: The 2030.5 resources whose pollRate the utility sets, and their defaults in seconds.
DEFAULT_POLL_RATES: dict[str, int] = {
    "DeviceCapability": 900,
    "EndDeviceList": 300,
    "FunctionSetAssignmentsList": 300,
    "DERProgramList": 300,
    "DERList": 300,
    "MirrorUsagePointList": 300,
    "Time": 900,
}


@dataclass
class Settings:
    """Everything csip needs to run; see README "Configuration" for each key."""

    data_dir: Path = Path("data")
    db: str = ""
    host: str = "127.0.0.1"
    sep2_port: int = 8443
    admin_host: str = "127.0.0.1"
    admin_port: int = 8444
    #: Optional plain-HTTP listener that only redirects to https (CORE-002); 0 = off.
    http_redirect_port: int = 0
    certs_dir: Path = Path("certs")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_strict_ccm8: bool = False
    tls_allow_tls13: bool = False
    #: Peers allowed to forward a client certificate (CIDR or address); empty = none.
    trusted_proxies: list[str] = field(default_factory=list)
    forwarded_cert_header: str = "X-SSL-Client-Cert"
    profile: str = "csip"
    schema_dir: Path | None = None
    timezone: str = "America/Los_Angeles"
    registration_in_band: bool = True
    registration_out_of_band: bool = True
    default_pin: int = 111115
    #: IANA private enterprise number placed in the low 32 bits of mRIDs csip mints.
    pen: int = 0
    max_body_bytes: int = 65536
    #: Upper bound of the `l` (limit) query parameter on 2030.5 lists.
    max_list_limit: int = 255
    #: Rendered resources kept in memory per worker (oldest tenth dropped past it).
    cache_max_entries: int = 1_000_000
    log_level: str = "INFO"
    #: Worker processes sharing each listener's port (SO_REUSEPORT); more than 1 needs
    #: PostgreSQL (caches invalidate across workers through it).
    workers: int = 1
    #: Labs and benchmarks: every answer names the worker process (X-Csip-Worker: pid).
    lab_worker_header: bool = False
    # ---- OpenADR 3 VTN (issue 4) ------------------------------------------
    #: HTTPS port of the OpenADR 3.1.0 VTN (server certificate of the PKI, no client cert).
    vtn_port: int = 8445
    #: Serve the VTN over plain HTTP (local labs only).
    vtn_plain_http: bool = False
    vtn_base_path: str = "/openadr3/3.1.0"
    #: Public URL prefix clients use (tokenURL in /auth/server); empty = from the request.
    vtn_public_url: str = ""
    vtn_max_body_bytes: int = 1_048_576
    #: Lifetime of the bearer tokens /auth/token issues.
    vtn_token_ttl: int = 3600
    #: HS256 (shared key) or ES256 (P-256 key); either key is kept in the database.
    vtn_token_alg: str = "HS256"  # noqa: S105 - an algorithm name
    vtn_token_issuer: str = "csip"  # noqa: S105 - the iss claim
    #: Accept tokens of an external OAuth2 issuer too (issuer, audience, JWKS file or URL).
    vtn_oauth_issuer: str = ""
    vtn_oauth_audience: str = ""
    vtn_oauth_jwks: str = ""
    #: Labs: accept http:// webhook callbacks on loopback (otherwise https and public only).
    vtn_webhook_allow_loopback: bool = False
    vtn_webhook_timeout: float = 10.0
    #: MQTT broker for notifications, e.g. mqtt://127.0.0.1:1883; empty = MQTT off.
    vtn_mqtt_url: str = ""
    vtn_mqtt_topic_prefix: str = "openadr3"
    # ---- outbox (notifications of every protocol) ------------------------
    #: Seconds between delivery attempts; the last repeats until outbox_max_attempts.
    outbox_retry_delays: list[str] = field(default_factory=lambda: ["10", "100", "300", "1800"])
    outbox_max_attempts: int = 8
    # ---- 2030.5 notifications (issue 3) ------------------------------------
    #: Subscribers' notificationURIs must be https to public addresses unless these allow it.
    notification_allow_http: bool = False
    notification_allow_private: bool = False
    #: Absolute base of subscriptionURIs, e.g. https://csip.example.com:8443; empty = derived.
    sep2_public_url: str = ""

    # ---- derived values -------------------------------------------------
    @property
    def db_url(self) -> str:
        """The SQLAlchemy async URL; defaults to a SQLite file in the data dir."""
        if self.db:
            return self.db
        return f"sqlite+aiosqlite:///{(self.data_dir / 'csip.db').resolve()}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def tls_files(self) -> tuple[Path, Path, Path]:
        """(ca, server chain, server key), defaulting to the local test PKI in certs_dir."""
        ca = self.ca_file or self.certs_dir / "ca.pem"
        cert = self.cert_file or self.certs_dir / "server-chain.pem"
        key = self.key_file or self.certs_dir / "server.key"
        return ca, cert, key

    def validate(self) -> Settings:
        """Raise ConfigError naming the fix for any unusable value."""
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown timezone {self.timezone!r}: use an IANA name") from exc
        for port_name in ("sep2_port", "admin_port", "http_redirect_port"):
            port = getattr(self, port_name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{port_name} must be 0..65535, not {port}")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ConfigError(f"trusted_proxies entry {proxy!r} is not an address") from exc
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"workers must be 1..256, not {self.workers}")
        if not 0 <= self.default_pin <= 999999:
            raise ConfigError("default_pin must be a 6-digit number")
        if not 0 <= self.pen <= 0xFFFFFFFF:
            raise ConfigError("pen must fit in 32 bits")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if not 0 <= self.vtn_port <= 65535:
            raise ConfigError(f"vtn_port must be 0..65535, not {self.vtn_port}")
        if self.vtn_token_alg not in ("HS256", "ES256"):
            raise ConfigError("vtn_token_alg must be HS256 or ES256")
        if not self.vtn_base_path.startswith("/") or self.vtn_base_path.endswith("/"):
            raise ConfigError("vtn_base_path must start with / and not end with /")
        if self.vtn_oauth_issuer and not self.vtn_oauth_jwks:
            raise ConfigError("vtn_oauth_issuer needs vtn_oauth_jwks (a JWKS file or URL)")
        try:
            delays = [float(d) for d in self.outbox_retry_delays]
        except ValueError as exc:
            raise ConfigError("outbox_retry_delays must be numbers of seconds") from exc
        if not delays or min(delays) <= 0:
            raise ConfigError("outbox_retry_delays must be positive numbers of seconds")
        return self


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a config-file or environment value into the field's type."""
    origin = get_origin(kind)
    args = [a for a in get_args(kind) if a is not type(None)]
    if origin is not None and type(None) in get_args(kind):  # Optional[X]
        if value in (None, ""):
            return None
        return _coerce(name, args[0], value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be a whole number, not {value!r}") from exc
    if kind is Path:
        return Path(str(value))
    if origin is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]
    return str(value)


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from a TOML file, CSIP_* variables and explicit overrides (CLI flags)."""
    env = os.environ if environ is None else environ
    hints = get_type_hints(Settings)
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or (Path(env["CSIP_CONFIG"]) if env.get("CSIP_CONFIG") else None)
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        for key, value in raw.items():
            if key not in names:
                raise ConfigError(f"unknown key {key!r} in {path}")
            values[key] = _coerce(key, hints[key], value)
    for name in names:
        env_value = env.get("CSIP_" + name.upper())
        if env_value is not None:
            values[name] = _coerce(name, hints[name], env_value)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, hints[key], value)
    return dataclasses.replace(Settings(), **values).validate()
