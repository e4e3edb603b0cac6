"""The shared 2030.5 client's pure parts: the hardened read of replies and minted mRIDs (its
network side runs in every integration test, through tests/support.py)."""

from __future__ import annotations

import pytest

from csip.sep2.client import MAX_REPLY_BYTES, Reply, Sep2Error, curve_links, mrid_for

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'


def reply(body: bytes, content_type: str = "application/sep+xml") -> Reply:
    return Reply("GET", "/x", 200, {"Content-Type": content_type}, body)


def test_replies_are_read_with_the_hardened_parser() -> None:
    ok = reply(f"<Time {SEP}><currentTime>5</currentTime></Time>".encode())
    assert ok.is_xml and ok.xml().findtext("{urn:ieee:std:2030.5:ns}currentTime") == "5"
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(Sep2Error, match="DTD"):
        reply(bomb).xml()
    with pytest.raises(Sep2Error, match="malformed"):
        reply(b"<Time").xml()
    with pytest.raises(Sep2Error, match="limit"):
        reply(b" " * (MAX_REPLY_BYTES + 1)).xml()
    assert not reply(b"{}", "application/json").is_xml


def test_minted_mrids_carry_the_pen_and_are_stable() -> None:
    first = mrid_for("lfdi", "mup", pen=40732)
    assert first == mrid_for("lfdi", "mup", pen=40732) != mrid_for("lfdi", "mup2", pen=40732)
    assert len(first) == 32 and int(first, 16) & 0xFFFFFFFF == 40732


def test_curve_links_of_a_control() -> None:
    control = reply(
        f"<DERControl {SEP}><DERControlBase><opModMaxLimW>50</opModMaxLimW>"
        '<opModVoltVar href="/derp/1/dc/2"/></DERControlBase></DERControl>'.encode()
    ).xml()
    assert curve_links(control) == ["/derp/1/dc/2"]


async def test_a_long_mirror_usage_point_description_is_cut_to_string32() -> None:
    from lxml import etree

    from csip.sep2 import schema
    from csip.sep2.client import MirrorReading, Sep2Client

    sent: list[etree._Element] = []

    async def post(path: str, body: etree._Element) -> Reply:
        sent.append(body)
        return Reply("POST", path, 201, {"Location": "/mup/1"}, b"")

    client = object.__new__(Sep2Client)
    client.post = post  # type: ignore[method-assign]
    href = await client.create_mirror_usage_point(
        lfdi="AB" * 20,
        mrid=mrid_for("lfdi", "mup"),
        description="faulty-ignores-randomize 97258DEE",  # 33 characters: refused with 400
        readings=[MirrorReading("W", uom=38, value=5)],
    )
    assert href == "/mup/1"
    description = sent[0].findtext(f"{{{schema.SEP_NS}}}description")
    assert description == "faulty-ignores-randomize 97258DE"
