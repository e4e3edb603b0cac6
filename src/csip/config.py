"""One Settings object, filled from defaults < config file < CSIP_* environment < CLI flags.

Every command that touches state (serve, admin token, clients ...) resolves its settings the
same way, so `csip admin token` and `csip serve` always agree on the database.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
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
LOG_FORMATS: tuple[str, ...] = ("text", "json")

#: The 2030.5 resources whose pollRate the utility sets, and their defaults in seconds.
DEFAULT_POLL_RATES: dict[str, int] = {
    "DeviceCapability": 900,
    "EndDeviceList": 300,
    "FunctionSetAssignmentsList": 300,
    "DERProgramList": 300,
    "MessagingProgramList": 900,
    "DERList": 300,
    "MirrorUsagePointList": 300,
    "UsagePointList": 900,
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
    #: Where `csip conformance run` writes campaigns; the console lists them.
    conformance_results_dir: Path = Path("conformance/results")
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
    #: Bytes of rendered resources kept per worker (oldest dropped past it). An aggregator
    #: walking its fleet (its /edev pages, each EndDevice and FSA list) needs about 2.4 KB
    #: per device, so 1 GiB holds the walk of some 400,000 (README "Memory").
    cache_max_bytes: int = 1024 * 1024 * 1024
    #: Deprecated and ignored (0 = not set): every page that lies within its list is cached
    #: now, whatever its index, and pages past the end never are (domain/paging.py); the
    #: cache stays bounded by cache_max_bytes and cache_max_entries. Still accepted so old
    #: config files load; a non-zero value logs a warning at start.
    cache_pages_per_list: int = 0
    #: Answer unchanged polls from ready bytes in front of the HTTP framework (README
    #: "Performance": the two lanes); off sends every request through aiohttp.
    fast_lane: bool = True
    # ---- listener limits (every listener; README "Security") --------------------
    #: Seconds from a request's first byte to the end of its headers (408, then closed).
    header_timeout: float = 10.0
    #: Seconds to receive a whole request body once its headers are in (408, then closed).
    body_timeout: float = 30.0
    #: Seconds an idle keep-alive connection (or one that never sends) stays open.
    keepalive_timeout: float = 75.0
    #: Seconds a TLS handshake may take.
    tls_handshake_timeout: float = 10.0
    #: Open connections per listener; past it a new connection gets 503 and is closed.
    max_connections: int = 10_000
    #: Open connections per client address on one listener (trusted proxies exempt); 0 = no cap.
    max_connections_per_client: int = 256
    log_level: str = "INFO"
    #: Log lines as plain text or as one JSON object per line (README "Metrics and logs").
    log_format: str = "text"
    #: One access line per request that reaches the HTTP framework (logger csip.access).
    access_log: bool = False
    #: A 2030.5 client counts in csip_sep2_clients_seen this long after its last request.
    metrics_seen_window: float = 300.0
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
    outbox_retry_delays: list[float] = field(default_factory=lambda: [10.0, 100.0, 300.0, 1800.0])
    outbox_max_attempts: int = 8
    # ---- per-device dispatch (issue 12) ------------------------------------
    #: Re-plan per-device events as devices fall short, opt out or go stale (off: only the
    #: admin API's POST /api/engine/events/{id}/dispatch re-plans).
    dispatch_watch: bool = True
    #: Seconds after devices post readings or Responses before their events are checked.
    dispatch_debounce: float = 5.0
    #: Seconds between checks with no post (a device that stops posting goes stale).
    dispatch_tick: float = 60.0
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
        for timeout in ("header_timeout", "body_timeout", "keepalive_timeout"):
            if getattr(self, timeout) <= 0:
                raise ConfigError(f"{timeout} must be a positive number of seconds")
        if self.tls_handshake_timeout <= 0:
            raise ConfigError("tls_handshake_timeout must be a positive number of seconds")
        if self.max_connections < 1 or self.max_connections_per_client < 0:
            raise ConfigError("max_connections must be >= 1, max_connections_per_client >= 0")
        if self.cache_max_bytes < 1 or self.cache_pages_per_list < 0:
            raise ConfigError("cache_max_bytes must be >= 1, cache_pages_per_list >= 0")
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
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be text or json, not {self.log_format!r}")
        if self.metrics_seen_window <= 0:
            raise ConfigError("metrics_seen_window must be a positive number of seconds")
        delays = self.outbox_retry_delays
        if not delays or min(delays) <= 0:
            raise ConfigError("outbox_retry_delays must be positive numbers of seconds")
        return self


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Turn a config-file, environment or flag value into the field's declared type.

    Environment values are always strings and TOML has its own types, so every field is
    converted by its annotation (bool, int, float, str, Path, Literal, ``X | None``, ``list[X]``;
    a list from the environment is comma-separated) and a value that does not fit is a
    ConfigError naming the key. A new field of another type fails here until it is taught.
    """
    origin = get_origin(kind)
    args = get_args(kind)
    if type(None) in args:  # X | None: empty means None
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, inner, value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if origin is list:
        (item,) = args
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list (or comma-separated), not {value!r}")
        return [_coerce(name, item, v) for v in value]
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
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if kind is float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        return number
    if kind is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{name} must be a string, not {value!r}")
        return str(value)
    if kind is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a path, not {value!r}")
        return Path(value)
    raise TypeError(f"Settings.{name}: no conversion for {kind!r}")  # a programming error


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
