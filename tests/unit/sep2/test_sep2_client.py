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
