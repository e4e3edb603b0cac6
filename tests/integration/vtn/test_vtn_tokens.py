"""Token variants: ES256 tokens signed with a P-256 key kept in the database, and tokens of
an external OAuth2 issuer checked against its JWKS (issuer, audience, expiry, scopes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import VtnFactory


async def test_es256_tokens(make_vtn: VtnFactory) -> None:
    vtn = await make_vtn(vtn_token_alg="ES256")
    ven = await vtn.client("ven", "ven")
    assert jwt.get_unverified_header(ven.token)["alg"] == "ES256"
    assert (await ven.get("/programs")).status == 200
    forged = jwt.encode(
        jwt.decode(ven.token, options={"verify_signature": False}),
        ec.generate_private_key(ec.SECP256R1()),
        "ES256",
    )
    assert (await ven.call("GET", "/programs", token=forged)).status == 401


async def test_external_issuer_with_a_jwks_file(make_vtn: VtnFactory, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}))
    issuer = "https://idp.example.test/"
    vtn = await make_vtn(
        vtn_oauth_issuer=issuer, vtn_oauth_audience="csip-vtn", vtn_oauth_jwks=str(jwks)
    )

    def token(**claims: object) -> str:
        now = int(time.time())
        base = {
            "iss": issuer,
            "aud": "csip-vtn",
            "sub": "external-ven-7",
            "scope": "read_targets read_ven_objects write_vens",
            "iat": now,
            "exp": now + 300,
        }
        return jwt.encode({**base, **claims}, key, "ES256", headers={"kid": "k1"})

    client = vtn.anonymous()
    assert (await client.call("GET", "/programs", token=token())).status == 200
    mine = await client.call(
        "POST",
        "/vens",
        {"objectType": "VEN_VEN_REQUEST", "venName": "ext"},
        token=token(),
    )
    assert mine.status == 201 and mine.body["clientID"] == "external-ven-7"
    assert (
        await client.call("POST", "/programs", {"programName": "x"}, token=token())
    ).status == 403
    assert (await client.call("GET", "/programs", token=token(aud="other"))).status == 401
    assert (
        await client.call("GET", "/programs", token=token(exp=int(time.time()) - 60))
    ).status == 401
    bl = token(sub="external-bl", scope="read_all write_programs")
    assert (await client.call("POST", "/programs", {"programName": "x"}, token=bl)).status == 201
    # the VTN's own tokens still work next to the external ones
    own = await vtn.client("local-bl", "bl")
    assert len((await own.get("/programs")).body) == 1


async def test_tokens_live_on_the_server_clock(make_vtn: VtnFactory) -> None:
    """Tokens are minted and checked on the server's one clock (the lab clock): moving it
    never makes the VTN refuse a token it just minted, a token minted while the clock was
    ahead stays usable after a reset until its exp on that clock, and moving the clock past
    a token's exp expires it (a new token then works)."""
    vtn = await make_vtn(vtn_token_ttl=600)

    async def clock(body: dict[str, object]) -> None:
        status, _ = await vtn.running.admin("PUT", "/api/clock", body)
        assert status == 200

    await clock({"advance": 3600})
    minted_ahead = await vtn.client("ven-ahead", "ven")
    assert (await minted_ahead.get("/programs")).status == 200  # 401 "not valid here" before
    await clock({"reset": True})
    # minted an hour "in the future", the clock is back: still good until its exp (on the
    # server clock, an hour and ten minutes from now)
    assert (await minted_ahead.get("/programs")).status == 200
    minted_now = await vtn.client("ven-now", "ven")
    await clock({"advance": 601})  # past minted_now's exp on the server clock
    refused = await minted_now.get("/programs")
    assert refused.status == 401 and "expired" in refused.body["detail"]
    assert (await minted_ahead.get("/programs")).status == 200
    await clock({"advance": 3600 - 601 + 590})  # 10 s before minted_ahead's exp
    assert (await minted_ahead.get("/programs")).status == 200
    await clock({"advance": 20})  # 10 s after it
    refused = await minted_ahead.get("/programs")
    assert refused.status == 401 and "expired" in refused.body["detail"]
    fresh = await vtn.client("ven-fresh", "ven")  # minted on the moved clock: accepted
    assert (await fresh.get("/programs")).status == 200
    await clock({"reset": True})
    assert (await fresh.get("/programs")).status == 200
