"""OAuth2 client credentials for the VTN: clients, /auth/token, bearer token checks.

Clients (BL or VEN) and their scopes live in the database with scrypt-hashed secrets; tokens
are JWTs signed with a key that is also kept in the database, so tokens outlive a restart and
every worker sharing the database accepts them. Optionally, tokens from an external issuer
are accepted too (issuer, audience and its JWKS from a file or URL).

Checking a token is on every request's path, so a verified token is remembered for up to a
minute (never past its expiry): a removed client stops working within that minute.

Time: the VTN's own tokens are minted and checked on the server's one clock (the lab clock
that ``PUT /api/clock`` moves), never on the wall clock: a token minted while the clock is
moved is valid on that clock at once, and stays valid until its ``exp`` on the server clock,
whatever the clock does meanwhile. So ``iat`` is not checked (after the clock is moved back, a
token minted while it was ahead has an ``iat`` "in the future": that is the lab's doing, not
a forgery, and the signature proves we minted it); ``exp`` (and ``nbf``, if present) are.
Moving the clock forward past a token's ``exp`` expires it: its client gets 401 "expired" and
fetches a new token, as OAuth2 clients do. Tokens of an external issuer were stamped by that
issuer's real clock, so they are checked against the wall clock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csip.config import Settings
from csip.domain.changes import VtnClientRemoved
from csip.domain.clock import Clock
from csip.errors import BadRequest, InvalidValues, NotFound, Unauthorized
from csip.openadr.rules import BL_ONLY_SCOPES, CSIP_CLIENT_ID, ROLE_SCOPES, SCOPES, Principal
from csip.services import changes as tag
from csip.services.bus import EVERYTHING
from csip.services.changes import Changes
from csip.store import Store
from csip.store import openadr as store_oadr
from csip.store.openadr import VtnClient

_KEY_SETTING = "vtn_token_key_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
#: How long a verified token is trusted without looking at the client list again.
_RECHECK = 60.0
VTN_CLIENT_TAG = tag.vtn_client("")
_CACHE_MAX = 200_000


def hash_secret(secret: str) -> str:
    """scrypt with a random salt, as ``scrypt$<salt>$<hash>`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def secret_matches(secret: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt_b64), **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


class TokenError(Unauthorized):
    """The token endpoint refused the credentials (RFC 6749 ``invalid_client``)."""

    oauth_error = "invalid_client"


class GrantError(BadRequest):
    """The token request is malformed (RFC 6749 error code in ``oauth_error``)."""

    def __init__(self, detail: str, oauth_error: str = "invalid_request") -> None:
        super().__init__(detail)
        self.oauth_error = oauth_error


@dataclass(frozen=True)
class NewClient:
    client: VtnClient
    secret: str


class VtnAuth:
    def __init__(self, store: Store, settings: Settings, clock: Clock, changes: Changes) -> None:
        """`changes`: a removed client is a unit of work whose change reaches every worker
        (each drops its cached token checks of that client)."""
        self.store = store
        self.changes = changes
        self.settings = settings
        self.clock = clock
        self.alg = settings.vtn_token_alg
        self._signing_key: Any = None
        self._verify_key: Any = None
        self._external: jwt.PyJWKClient | jwt.PyJWKSet | None = None
        #: token -> (principal, exp, exp is on the server clock, monotonic time to recheck)
        self._cache: dict[str, tuple[Principal, float, bool, float]] = {}
        self._secrets_ok: dict[str, str] = {}
        #: Every client, reloaded (one query) when older than _RECHECK / 2: re-checking a
        #: thousand tokens must not be a thousand queries in the middle of a poll burst.
        self._clients: dict[str, VtnClient] = {}
        self._clients_at = -1e9
        self._clients_lock = asyncio.Lock()
        changes.bus.subscribe(self._on_tags)

    def _on_tags(self, tags: list[str]) -> None:
        if EVERYTHING in tags or any(t.startswith(VTN_CLIENT_TAG) for t in tags):
            self._cache.clear()
            self._secrets_ok.clear()
            self._clients_at = -1e9

    async def start(self) -> None:
        await self._load_key()
        jwks = self.settings.vtn_oauth_jwks
        if self.settings.vtn_oauth_issuer and jwks:
            if jwks.startswith(("http://", "https://")):
                self._external = jwt.PyJWKClient(jwks, cache_keys=True, lifespan=3600)
            else:
                text = await asyncio.to_thread(Path(jwks).read_text, encoding="utf-8")
                self._external = jwt.PyJWKSet.from_json(text)

    async def _load_key(self) -> None:
        """The signing key, created on first start and kept in the settings table."""
        name = _KEY_SETTING + self.alg.lower()
        stored = await self.store.get_setting(name)
        if stored is None:
            if self.alg == "HS256":
                stored = secrets.token_urlsafe(48)
            else:
                key = ec.generate_private_key(ec.SECP256R1())
                stored = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            await self.store.set_settings({name: stored})
            stored = await self.store.get_setting(name)  # another worker may have won
        if self.alg == "HS256":
            self._signing_key = self._verify_key = str(stored).encode()
        else:
            private = serialization.load_pem_private_key(str(stored).encode(), password=None)
            self._signing_key = private
            self._verify_key = private.public_key()

    # ---- clients ----------------------------------------------------------------------
    async def create_client(
        self, name: str, role: str, scopes: list[str] | None = None
    ) -> NewClient:
        """Not a unit of work with a change: a new client has no token yet, so no worker has
        anything cached about it (a worker that does not know its id reloads the clients,
        see `_known_client`), and one insert is its own transaction."""
        if role not in ROLE_SCOPES:
            raise InvalidValues("role must be bl or ven")
        if not name or len(name) > 64:
            raise InvalidValues("name must be 1 to 64 characters")
        chosen = list(scopes) if scopes else list(ROLE_SCOPES[role])
        unknown = [s for s in chosen if s not in SCOPES]
        if unknown:
            raise InvalidValues(f"unknown scopes {unknown}; known: {' '.join(SCOPES)}")
        secret = secrets.token_urlsafe(32)
        hashed = await asyncio.to_thread(hash_secret, secret)
        client = VtnClient(
            name=name,
            client_id=f"{role}-{secrets.token_hex(8)}",
            secret_hash=hashed,
            role=role,
            scopes=tuple(chosen),
            created_at=self.clock.now(),
        )
        await store_oadr.create_client(self.store, client)
        return NewClient(client, secret)

    async def clients(self) -> list[VtnClient]:
        return await store_oadr.list_clients(self.store)

    async def remove_client(self, name: str) -> None:
        """One unit of work: every worker (and a server beside `csip clients remove`, on
        PostgreSQL) drops its cached token checks of the client when the change reaches it."""
        async with self.changes.unit_of_work() as tx:
            client_id = await store_oadr.delete_client(tx.session, name)
            if client_id is None:
                raise NotFound(f"no VTN client named {name!r}")
            tx.record(VtnClientRemoved(client_id))

    # ---- tokens -----------------------------------------------------------------------
    def mint(self, client: VtnClient, scopes: list[str] | None = None) -> tuple[str, int]:
        """A signed token for a client (also used by the benchmark to skip /auth/token)."""
        now = int(self.clock.now())
        ttl = self.settings.vtn_token_ttl
        claims = {
            "iss": self.settings.vtn_token_issuer,
            "sub": client.client_id,
            "client_id": client.client_id,
            "role": client.role,
            "scope": " ".join(scopes if scopes is not None else client.scopes),
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._signing_key, algorithm=self.alg), ttl

    async def issue_token(
        self,
        client_id: str | None,
        client_secret: str | None,
        grant_type: str | None,
        scope: str | None,
    ) -> dict[str, Any]:
        """RFC 6749 client credentials grant; a requested scope it lacks is not an error."""
        if grant_type != "client_credentials":
            if not grant_type:
                raise GrantError("grant_type is required")
            raise GrantError("only grant_type=client_credentials", "unsupported_grant_type")
        if not client_id or not client_secret:
            raise TokenError("client_id and client_secret are required (Basic or form)")
        client = await store_oadr.get_client(self.store, client_id)
        if client is None:
            raise TokenError("unknown client or wrong secret")
        fingerprint = hashlib.sha256(client_secret.encode()).hexdigest()
        if self._secrets_ok.get(client_id) != fingerprint:
            ok = await asyncio.to_thread(secret_matches, client_secret, client.secret_hash)
            if not ok:
                raise TokenError("unknown client or wrong secret")
            self._secrets_ok[client_id] = fingerprint
        requested = [s for s in (scope or "").split() if s]
        granted = [s for s in requested if s in client.scopes] or list(client.scopes)
        token, ttl = self.mint(client, granted)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(granted),
        }

    async def authenticate(self, header: str | None) -> Principal:
        """The Principal of an ``Authorization: Bearer`` header, or Unauthorized (401)."""
        if not header:
            raise Unauthorized("send Authorization: Bearer <token> (POST /auth/token)")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send Authorization: Bearer <token> (POST /auth/token)")
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires, on_server_clock, recheck_at = cached
            now = self.clock.now() if on_server_clock else time.time()
            if expires > now and recheck_at > time.monotonic():
                return principal
        principal, expires, on_server_clock = await self._verify(token)
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (principal, expires, on_server_clock, time.monotonic() + _RECHECK)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float, bool]:
        """(principal, exp, whether exp is on the server clock) of a valid token."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized("the bearer token is not a JWT") from exc
        issuer = unverified.get("iss")
        external = self.settings.vtn_oauth_issuer
        try:
            if external and issuer == external and self._external is not None:
                key = await asyncio.to_thread(self._external_key, token, header)
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256", "ES256", "PS256", "EdDSA"],
                    issuer=external,
                    audience=self.settings.vtn_oauth_audience or None,
                    options={
                        "require": ["exp"],
                        "verify_aud": bool(self.settings.vtn_oauth_audience),
                    },
                    leeway=30,
                )
                return self._external_principal(claims), float(claims["exp"]), False
            # our own token: signature and issuer here, its times on the server clock below
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.alg],
                issuer=self.settings.vtn_token_issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            expires = _numeric_date(claims["exp"])
            not_before = _numeric_date(claims.get("nbf", 0))
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the bearer token has expired") from exc
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise Unauthorized("the bearer token is not valid here") from exc
        now = self.clock.now()
        if expires <= now:
            raise Unauthorized("the bearer token has expired")
        if not_before > now:
            raise Unauthorized("the bearer token is not valid yet")
        client = await self._known_client(str(claims["sub"]))
        if client is None:
            raise Unauthorized("the client of this token was removed")
        scopes = frozenset(str(claims.get("scope", "")).split()) & frozenset(client.scopes)
        return Principal(client.client_id, client.role, scopes), expires, True

    async def _known_client(self, client_id: str) -> VtnClient | None:
        """The client from the in-memory list, reloaded when stale or when it is not there
        (a client just created by `csip clients add` in another process)."""

        def usable() -> bool:
            fresh = time.monotonic() - self._clients_at < _RECHECK / 2
            return fresh and client_id in self._clients

        if not usable():
            started = time.monotonic()
            async with self._clients_lock:
                if not usable() and self._clients_at < started:  # nobody reloaded meanwhile
                    clients = await store_oadr.list_clients(self.store)
                    self._clients = {c.client_id: c for c in clients}
                    self._clients_at = time.monotonic()
        return self._clients.get(client_id)

    def _external_key(self, token: str, header: dict[str, Any]) -> Any:
        if isinstance(self._external, jwt.PyJWKClient):
            return self._external.get_signing_key_from_jwt(token).key
        assert self._external is not None
        kid = header.get("kid")
        for key in self._external.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError(f"no key {kid!r} in the JWKS")

    @staticmethod
    def _external_principal(claims: dict[str, Any]) -> Principal:
        client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        if not client_id:
            raise jwt.InvalidTokenError("no client_id, azp or sub claim")
        if client_id == CSIP_CLIENT_ID:
            raise jwt.InvalidTokenError("the client id csip writes its own reports under")
        raw = claims.get("scope", claims.get("scp", ""))
        scopes = frozenset(raw.split() if isinstance(raw, str) else [str(s) for s in raw])
        role = claims.get("role")
        if role not in ROLE_SCOPES:
            role = "bl" if scopes & BL_ONLY_SCOPES else "ven"
        return Principal(str(client_id), str(role), scopes)


def _numeric_date(value: Any) -> float:
    """A JWT NumericDate claim (RFC 7519 section 2), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a NumericDate: {value!r}")
    return float(value)


def client_json(client: VtnClient) -> dict[str, Any]:
    return {
        "name": client.name,
        "client_id": client.client_id,
        "role": client.role,
        "scopes": list(client.scopes),
        "created_at": client.created_at,
    }


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
