"""What devices post (DER issue item 4): DERList / DER, DERCapability, DERSettings, DERStatus,
DERAvailability, AssociatedDERProgramList, LogEvents, the CSIP-AUS ConnectionPoint, and the
admin API reading them back. Real mutual TLS; every body the server emits is XSD-validated
by the test client with the server's profile (CORE-014, BASIC-027, BASIC-028)."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from sqlalchemy import event, text

import csip.services.der_device
from csip.pki.identity import sfdi_from_lfdi

from helpers import end_device_xml, make_aggregator, register
from support import BACKENDS, NS, Reply, Running, ServerFactory, settle_bus

SEP = 'xmlns="urn:ieee:std:2030.5:ns"'
AUS = 'xmlns:csipaus="https://csipaus.org/ns"'

DER_CAPABILITY = f"""<DERCapability {SEP}>
<modesSupported>00500040</modesSupported>
<rtgMaxVA><multiplier>0</multiplier><value>5000</value></rtgMaxVA>
<rtgMaxVar><multiplier>0</multiplier><value>3000</value></rtgMaxVar>
<rtgMaxW><multiplier>3</multiplier><value>5</value></rtgMaxW>
<type>83</type>
</DERCapability>"""
DER_CAPABILITY_AUS = f"""<DERCapability {SEP} {AUS}>
<modesSupported>00500040</modesSupported>
<rtgMaxW><multiplier>3</multiplier><value>5</value></rtgMaxW>
<type>83</type>
<csipaus:doeModesSupported>03</csipaus:doeModesSupported>
</DERCapability>"""
DER_SETTINGS = f"""<DERSettings {SEP}>
<modesEnabled>00500040</modesEnabled>
<setGradW>1000</setGradW>
<setMaxVA><multiplier>0</multiplier><value>4800</value></setMaxVA>
<setMaxW><multiplier>2</multiplier><value>48</value></setMaxW>
<updatedTime>1700000300</updatedTime>
</DERSettings>"""
DER_STATUS = f"""<DERStatus {SEP}>
<alarmStatus>00000004</alarmStatus>
<genConnectStatus><dateTime>1700000400</dateTime><value>07</value></genConnectStatus>
<inverterStatus><dateTime>1700000400</dateTime><value>4</value></inverterStatus>
<operationalModeStatus><dateTime>1700000400</dateTime><value>2</value></operationalModeStatus>
<readingTime>1700000400</readingTime>
<stateOfChargeStatus><dateTime>1700000400</dateTime><value>8250</value></stateOfChargeStatus>
<storageModeStatus><dateTime>1700000400</dateTime><value>1</value></storageModeStatus>
<storConnectStatus><dateTime>1700000400</dateTime><value>07</value></storConnectStatus>
</DERStatus>"""
DER_AVAILABILITY = f"""<DERAvailability {SEP}>
<availabilityDuration>7200</availabilityDuration>
<maxChargeDuration>3600</maxChargeDuration>
<readingTime>1700000500</readingTime>
<reserveChargePercent>1000</reserveChargePercent>
<reservePercent>2000</reservePercent>
<statVarAvail><multiplier>0</multiplier><value>1500</value></statVarAvail>
<statWAvail><multiplier>1</multiplier><value>420</value></statWAvail>
</DERAvailability>"""
DOCUMENTS = {
    "dercap": DER_CAPABILITY,
    "derg": DER_SETTINGS,
    "ders": DER_STATUS,
    "dera": DER_AVAILABILITY,
}


def log_event(created: int, event_id: int, code: int = 3, details: str = "over-voltage") -> str:
    return (
        f"<LogEvent {SEP}><createdDateTime>{created}</createdDateTime>"
        f"<details>{details}</details><extendedData>17</extendedData>"
        f"<functionSet>11</functionSet><logEventCode>{code}</logEventCode>"
        f"<logEventID>{event_id}</logEventID><logEventPEN>40732</logEventPEN>"
        "<profileID>2</profileID></LogEvent>"
    )


def connection_point(nmi: str) -> str:
    return (
        '<csipaus:ConnectionPoint xmlns:csipaus="https://csipaus.org/ns">'
        f"<csipaus:connectionPointId>{nmi}</csipaus:connectionPointId>"
        "</csipaus:ConnectionPoint>"
    )


def links(reply: Reply) -> dict[str, dict[str, str]]:
    return {child.tag.split("}")[1]: dict(child.attrib) for child in reply.xml() if child.attrib}


def children(reply: Reply) -> list[tuple[str, str]]:
    """Every leaf below the root as (path, text): what "exactly as stored" compares."""
    root = reply.xml()
    out = []
    for element in root.iter():
        if element is not root and len(element) == 0:
            path = "/".join(e.tag.split("}")[1] for e in reversed(list(element.iterancestors())))
            out.append((f"{path}/{element.tag.split('}')[1]}", (element.text or "").strip()))
    return out


def reason(reply: Reply) -> str | None:
    return reply.find("s:reasonCode")


@BACKENDS
async def test_end_device_links_der_list_and_log_events(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    edev = links(await client.get(href))
    assert edev["DERListLink"] == {"href": f"{href}/der", "all": "1"}
    assert edev["LogEventListLink"] == {"href": f"{href}/lel"}
    assert "ConnectionPointLink" not in edev  # CSIP-AUS only

    ders = await client.get(f"{href}/der?l=10")
    assert ders.status == 200
    root = ders.xml()
    assert (root.get("all"), root.get("results"), root.get("pollRate")) == ("1", "1", "300")
    der_href = root[0].get("href")
    assert der_href == f"{href}/der/1"
    assert (await client.get(f"{href}/der?s=1&l=10")).xml().get("results") == "0"

    der = await client.get(der_href)
    assert der.status == 200
    assert links(der) == {
        "AssociatedDERProgramListLink": {"href": f"{der_href}/derp"},
        "DERAvailabilityLink": {"href": f"{der_href}/dera"},
        "DERCapabilityLink": {"href": f"{der_href}/dercap"},
        "DERSettingsLink": {"href": f"{der_href}/derg"},
        "DERStatusLink": {"href": f"{der_href}/ders"},
    }
    assert "CurrentDERProgramLink" not in links(der)  # no program is current yet
    programs = await client.get(f"{der_href}/derp")
    assert programs.status == 200
    assert (programs.xml().get("all"), programs.xml().get("results")) == ("0", "0")
    for part in DOCUMENTS:  # the links exist before the device has PUT anything
        missing = await client.get(f"{der_href}/{part}")
        assert missing.status == 404, part
    assert (await client.get(f"{href}/der/2")).status == 404
    assert (await client.get(f"{href}/der/2/ders")).status == 404
    assert (await client.get(f"{href}/cp")).status == 404
    assert (await client.request("POST", f"{href}/der", DER_STATUS)).status == 405


@BACKENDS
async def test_der_documents_round_trip_exactly(srv: Running) -> None:
    """CORE-014 (DERSettings) and BASIC-028 (DERStatus), with DERCapability/DERAvailability."""
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    der = f"{href}/der/1"
    sent: dict[str, Reply] = {}
    for part, body in DOCUMENTS.items():
        reply = await client.put(f"{der}/{part}", body)
        assert reply.status == 201, (part, reply.body)  # the PUT created it
        assert reply.headers["Location"] == f"{der}/{part}"
        sent[part] = Reply(200, {}, body.encode())
    for part in DOCUMENTS:
        got = await client.get(f"{der}/{part}")
        assert got.status == 200
        assert got.xml().get("href") == f"{der}/{part}"
        assert children(got) == children(sent[part]), part
    status = await client.get(f"{der}/ders")
    assert status.find("s:genConnectStatus/s:value") == "07"
    assert status.find("s:alarmStatus") == "00000004"
    assert status.find("s:stateOfChargeStatus/s:value") == "8250"

    # a newer status replaces the old one, visible on the next poll
    newer = DER_STATUS.replace("<value>4</value>", "<value>1</value>")
    assert (await client.put(f"{der}/ders", newer)).status in (201, 204)
    assert (await client.get(f"{der}/ders")).find("s:inverterStatus/s:value") == "1"


@BACKENDS
async def test_incomplete_der_settings_are_rejected_and_nothing_is_stored(srv: Running) -> None:
    """CORE-014: DERSettings without setMaxW, setGradW or updatedTime is refused (400,
    reasonCode 1); so are settings above the device's own ratings."""
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    der = f"{href}/der/1"
    for element in ("setMaxW", "setGradW", "updatedTime"):
        start = DER_SETTINGS.index(f"<{element}>")
        end = DER_SETTINGS.index(f"</{element}>") + len(element) + 3
        incomplete = DER_SETTINGS[:start] + DER_SETTINGS[end:]
        reply = await client.put(f"{der}/derg", incomplete)
        assert reply.status == 400, element
        assert reason(reply) == "1"
        assert (await client.get(f"{der}/derg")).status == 404
    assert (await client.put(f"{der}/dercap", DER_CAPABILITY)).status in (201, 204)
    too_much = DER_SETTINGS.replace("<value>48</value>", "<value>51</value>")  # 5100 W > 5 kW
    reply = await client.put(f"{der}/derg", too_much)
    assert reply.status == 400 and reason(reply) == "1"
    assert (await client.get(f"{der}/derg")).status == 404
    negative = DER_SETTINGS.replace("<value>4800</value>", "<value>-1</value>")
    assert (await client.put(f"{der}/derg", negative)).status == 400
    assert (await client.put(f"{der}/derg", DER_SETTINGS)).status in (201, 204)  # 4800 W fits
    # a rejected update leaves the stored settings as they were
    assert (await client.put(f"{der}/derg", too_much)).status == 400
    assert (await client.get(f"{der}/derg")).find("s:setMaxW/s:value") == "48"
    # schema-invalid documents are refused with reasonCode 0
    bad = DER_STATUS.replace("<readingTime>1700000400</readingTime>", "")
    reply = await client.put(f"{der}/ders", bad)
    assert reply.status == 400 and reason(reply) == "0"
    assert (await client.put(f"{der}/ders", DER_AVAILABILITY)).status == 400  # wrong root


@BACKENDS
async def test_csip_profile_rejects_csip_aus_elements(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    reply = await client.put(f"{href}/der/1/dercap", DER_CAPABILITY_AUS)
    assert reply.status == 400
    assert (await client.get(f"{href}/der/1/dercap")).status == 404
    assert (await client.put(f"{href}/cp", connection_point("2001985732"))).status == 404
    assert (await client.get(f"{href}/cp")).status == 404


@BACKENDS
async def test_only_the_device_or_its_aggregator_reaches_its_der(srv: Running) -> None:
    a, b, agg = srv.pki.device_a, srv.pki.device_b, srv.pki.aggregator
    href_a = await register(srv, a)
    href_b = await register(srv, b)
    client_a, client_b = srv.client(a), srv.client(b)
    assert (await client_a.put(f"{href_a}/der/1/ders", DER_STATUS)).status in (201, 204)
    assert (await client_a.post(f"{href_a}/lel", log_event(1700000000, 1))).status == 201
    for path in ("/der", "/der/1", "/der/1/derp", "/der/1/ders", "/lel", "/lel/1"):
        reply = await client_b.get(href_a + path)
        assert reply.status == 404, path
    assert (await client_b.put(f"{href_a}/der/1/ders", DER_STATUS)).status == 404
    assert (await client_b.post(f"{href_a}/lel", log_event(1700000000, 2))).status == 404
    assert (await client_b.get(f"{href_b}/der/1/ders")).status == 404  # B's own: nothing yet

    await make_aggregator(srv, "agg-one", agg.lfdi)
    client_agg = srv.client(agg)
    lfdi = secrets.token_hex(20).upper()
    created = await client_agg.post("/edev", end_device_xml(lfdi, sfdi_from_lfdi(lfdi)))
    managed = created.headers["Location"]
    assert (await client_agg.put(f"{managed}/der/1/dercap", DER_CAPABILITY)).status in (201, 204)
    assert (await client_agg.put(f"{managed}/der/1/derg", DER_SETTINGS)).status in (201, 204)
    located = await client_agg.post(f"{managed}/lel", log_event(1700000000, 9))
    assert located.status == 201
    assert (await client_agg.get(located.headers["Location"])).status == 200
    assert (await client_agg.get(f"{managed}/der/1/derg")).status == 200
    assert (await client_agg.get(f"{href_a}/der/1/ders")).status == 404  # not its device
    assert (await client_a.get(f"{managed}/der/1/derg")).status == 404
    assert (await client_a.get(located.headers["Location"])).status == 404


@BACKENDS
async def test_log_events_post_list_newest_first_and_read_back(srv: Running) -> None:
    """BASIC-027: a device posts alarms; the server keeps them in 2030.5 list order."""
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    empty = await client.get(f"{href}/lel")
    assert (empty.xml().get("all"), empty.xml().get("results")) == ("0", "0")
    locations = []
    for created, event_id in ((1700000100, 1), (1700000300, 2), (1700000200, 3), (1700000300, 4)):
        reply = await client.post(f"{href}/lel", log_event(created, event_id))
        assert reply.status == 201, reply.body
        assert reply.headers["Location"].startswith(f"{href}/lel/")
        locations.append(reply.headers["Location"])
    listing = await client.get(f"{href}/lel?l=10")
    root = listing.xml()
    assert (root.get("all"), root.get("results")) == ("4", "4")
    order = [e.findtext("s:logEventID", namespaces=NS) for e in root]
    assert order == ["4", "2", "3", "1"]  # createdDateTime, then logEventID, descending
    assert [e.get("href") for e in root] == [locations[i] for i in (3, 1, 2, 0)]
    page = (await client.get(f"{href}/lel?s=1&l=2")).xml()
    assert (page.get("all"), page.get("results")) == ("4", "2")
    assert [e.findtext("s:logEventID", namespaces=NS) for e in page] == ["2", "3"]
    default = (await client.get(f"{href}/lel")).xml()
    assert default.get("results") == "1"
    after = (await client.get(f"{href}/lel?a=1700000200&l=10")).xml()
    assert after.get("all") == "3"

    one = await client.get(locations[0])
    assert one.status == 200
    assert one.xml().get("href") == locations[0]
    assert one.find("s:details") == "over-voltage"
    assert one.find("s:logEventPEN") == "40732"
    assert (await client.get(f"{href}/lel/999999")).status == 404

    invalid = log_event(1700000000, 5).replace("<functionSet>11</functionSet>", "")
    reply = await client.post(f"{href}/lel", invalid)
    assert reply.status == 400
    assert (await client.get(f"{href}/lel")).xml().get("all") == "4"


@BACKENDS
async def test_a_device_keeps_only_its_newest_log_events(
    srv: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csip.services.der_device, "LOG_EVENTS_KEPT", 3)
    a, b = srv.pki.device_a, srv.pki.device_b
    href_a, href_b = await register(srv, a), await register(srv, b)
    client_a, client_b = srv.client(a), srv.client(b)
    assert (await client_b.post(f"{href_b}/lel", log_event(1600000000, 1))).status == 201
    for event_id in range(1, 6):
        reply = await client_a.post(f"{href_a}/lel", log_event(1700000000 + event_id, event_id))
        assert reply.status == 201
    listing = (await client_a.get(f"{href_a}/lel?l=10")).xml()
    assert listing.get("all") == "3"
    assert [e.findtext("s:logEventID", namespaces=NS) for e in listing] == ["5", "4", "3"]
    # a late event older than all the others is still kept: it is the one just posted
    late = await client_a.post(f"{href_a}/lel", log_event(1500000000, 9))
    assert (await client_a.get(late.headers["Location"])).status == 200
    assert (await client_b.get(f"{href_b}/lel")).xml().get("all") == "1"  # others untouched


@BACKENDS
async def test_admin_reads_der_documents_and_log_events(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    status, body = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert status == 200
    assert body["href"] == f"{href}/der/1"
    assert body["capability"] is body["settings"] is body["status"] is None
    assert "connection_point" not in body
    for part, document in DOCUMENTS.items():
        assert (await client.put(f"{href}/der/1/{part}", document)).status in (201, 204)
    status, body = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert status == 200
    fields = body["status"]["fields"]
    assert body["status"]["href"] == f"{href}/der/1/ders"
    assert isinstance(body["status"]["updated_at"], int)
    assert fields["alarmStatus"] == "00000004"
    assert fields["genConnectStatus"] == {"dateTime": "1700000400", "value": "07"}
    assert fields["inverterStatus"]["value"] == "4"
    assert fields["operationalModeStatus"]["value"] == "2"
    assert fields["stateOfChargeStatus"]["value"] == "8250"
    assert fields["storageModeStatus"]["value"] == "1"
    assert body["capability"]["fields"]["rtgMaxW"] == {"multiplier": "3", "value": "5"}
    assert body["settings"]["fields"]["setGradW"] == "1000"
    assert body["settings"]["fields"]["setMaxW"] == {"multiplier": "2", "value": "48"}
    availability = body["availability"]["fields"]
    assert availability["statWAvail"] == {"multiplier": "1", "value": "420"}
    assert availability["reservePercent"] == "2000"
    assert availability["availabilityDuration"] == "7200"

    for created, event_id in ((1700000100, 1), (1700000200, 2)):
        assert (await client.post(f"{href}/lel", log_event(created, event_id, 7))).status == 201
    status, events = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/log-events")
    assert status == 200 and events["total"] == 2
    newest = events["items"][0]
    assert newest["fields"]["logEventID"] == "2"
    assert newest["fields"]["logEventCode"] == "7"
    assert newest["fields"]["createdDateTime"] == "1700000200"
    assert newest["href"].startswith(f"{href}/lel/")
    status, page = await srv.admin(
        "GET", f"/api/end-devices/{device.lfdi}/log-events?offset=1&limit=1"
    )
    assert [i["fields"]["logEventID"] for i in page["items"]] == ["1"]
    unknown = "0" * 40
    assert (await srv.admin("GET", f"/api/end-devices/{unknown}/der"))[0] == 404
    assert (await srv.admin("GET", f"/api/end-devices/{unknown}/log-events"))[0] == 404
    status, spec = await srv.admin("GET", "/openapi.json")
    assert "/api/end-devices/{lfdi}/der" in spec["paths"]
    assert "/api/end-devices/{lfdi}/log-events" in spec["paths"]


@BACKENDS
async def test_deleting_an_end_device_deletes_its_der_data(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    for part, document in DOCUMENTS.items():
        assert (await client.put(f"{href}/der/1/{part}", document)).status in (201, 204)
    assert (await client.post(f"{href}/lel", log_event(1700000000, 1))).status == 201
    assert (await srv.admin("DELETE", f"/api/end-devices/{device.lfdi}"))[0] == 204
    assert (await client.get(f"{href}/der/1/ders")).status == 404
    again = await register(srv, device)
    assert (await client.get(f"{again}/der/1/ders")).status == 404
    assert (await client.get(f"{again}/lel")).xml().get("all") == "0"
    status, body = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert status == 200 and body["status"] is None
    status, events = await srv.admin("GET", f"/api/end-devices/{device.lfdi}/log-events")
    assert events["total"] == 0
    assert srv.server.store is not None
    async with srv.server.store.transaction() as session:
        left = (await session.execute(text("SELECT count(*) FROM log_event"))).scalar_one()
    assert left == 0


class _NoValidator:
    def validate(self, _document: object) -> bool:
        raise AssertionError("schema validation on the read path")


@BACKENDS
async def test_unchanged_der_polls_render_once(srv: Running) -> None:
    device = srv.pki.device_a
    href = await register(srv, device)
    client = srv.client(device)
    assert (await client.put(f"{href}/der/1/ders", DER_STATUS)).status in (201, 204)
    assert (await client.post(f"{href}/lel", log_event(1700000000, 1))).status == 201
    paths = [f"{href}/der", f"{href}/der/1", f"{href}/der/1/derp", f"{href}/der/1/ders"]
    paths.append(f"{href}/lel")
    await settle_bus(srv)
    first = {path: (await client.get(path)).body for path in paths}
    assert srv.server.sep2 is not None
    sep2 = srv.server.sep2
    renders = sep2.cache.stats.renders
    schemas = sep2.schemas
    sep2.schemas = dataclasses.replace(schemas, validator=_NoValidator())  # type: ignore[arg-type]
    assert srv.server.store is not None
    engine = srv.server.store.engine.sync_engine
    queries: list[object] = []

    def count(*_args: object) -> None:
        queries.append(_args)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            for path in paths:
                assert (await client.get(path)).body == first[path]
    finally:
        sep2.schemas = schemas
        event.remove(engine, "before_cursor_execute", count)
    assert sep2.cache.stats.renders == renders
    assert queries == []
    # an alarm re-renders the log, not the EndDevice; a status PUT shows on the next poll
    edev_key = ("edev", int(href.rsplit("/", 1)[1]), "")
    assert (await client.get(href)).status == 200
    assert edev_key in sep2.cache.entries
    assert (await client.post(f"{href}/lel", log_event(1700000001, 2))).status == 201
    assert edev_key in sep2.cache.entries
    assert (await client.get(f"{href}/lel")).xml().get("all") == "2"
    newer = DER_STATUS.replace("<value>8250</value>", "<value>5000</value>")
    assert (await client.put(f"{href}/der/1/ders", newer)).status in (201, 204)
    assert edev_key in sep2.cache.entries
    reply = await client.get(f"{href}/der/1/ders")
    assert reply.find("s:stateOfChargeStatus/s:value") == "5000"


# ---- CSIP-AUS profile ------------------------------------------------------------------
async def test_aus_capability_needs_doe_modes_and_status_reads_back(
    make_server: ServerFactory,
) -> None:
    """CSIP-AUS ALL-07/08/09 (server side): capabilities with doeModesSupported, settings,
    connection and operational mode status, readable by the utility."""
    aus = await make_server(profile="csip-aus")
    device = aus.pki.device_a
    href = await register(aus, device)
    client = aus.client(device)
    plain = await client.put(f"{href}/der/1/dercap", DER_CAPABILITY)
    assert plain.status == 400
    assert (await client.get(f"{href}/der/1/dercap")).status == 404
    assert (await client.put(f"{href}/der/1/dercap", DER_CAPABILITY_AUS)).status in (201, 204)
    got = await client.get(f"{href}/der/1/dercap")
    assert got.find("s:type") == "83"
    assert got.xml()[-1].tag == "{https://csipaus.org/ns}doeModesSupported"
    assert got.xml()[-1].text == "03"
    settings = DER_SETTINGS.replace(
        "</DERSettings>", "<csipaus:doeModesEnabled>01</csipaus:doeModesEnabled></DERSettings>"
    ).replace(f"<DERSettings {SEP}>", f"<DERSettings {SEP} {AUS}>")
    assert (await client.put(f"{href}/der/1/derg", settings)).status in (201, 204)
    status, body = await aus.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert status == 200
    assert body["capability"]["fields"]["csipaus:doeModesSupported"] == "03"
    assert body["settings"]["fields"]["csipaus:doeModesEnabled"] == "01"
    assert (await client.put(f"{href}/der/1/ders", DER_STATUS)).status in (201, 204)
    assert (await client.get(f"{href}/der/1/ders")).find("s:genConnectStatus/s:value") == "07"
    status, body = await aus.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert body["status"]["fields"]["genConnectStatus"]["value"] == "07"
    assert body["status"]["fields"]["operationalModeStatus"]["value"] == "2"
    assert body["connection_point"] is None


async def test_aus_connection_point_nmi_is_validated(make_server: ServerFactory) -> None:
    """CSIP-AUS ALL-03 (server side): the ConnectionPoint carries a valid NMI or nothing."""
    aus = await make_server(profile="csip-aus")
    device = aus.pki.device_a
    href = await register(aus, device)
    client = aus.client(device)
    edev = await client.get(href)
    link = edev.xml()[-1]
    assert link.tag == "{https://csipaus.org/ns}ConnectionPointLink"
    assert link.get("href") == f"{href}/cp"
    assert (await client.get(f"{href}/cp")).status == 404
    for bad in (
        "200198573",  # 9 characters
        "20019857321",  # 11 with a wrong checksum digit (it is 8)
        "2001985732X",
        "nccc000000",  # lower case
        "QAAAOZZZZZ",  # the letter O is not an NMI character
        "2001-85732",
        "200198573288",  # 12 characters
    ):
        reply = await client.put(f"{href}/cp", connection_point(bad))
        assert reply.status == 400, bad
        assert reason(reply) == "1", bad
        assert (await client.get(f"{href}/cp")).status == 404, bad
    for good in ("2001985732", "20019857328", "QAAAVZZZZZ3", "NCCCC00000"):
        assert (await client.put(f"{href}/cp", connection_point(good))).status in (201, 204), good
        got = await client.get(f"{href}/cp")
        assert got.status == 200
        assert got.xml().get("href") == f"{href}/cp"
        assert got.xml()[0].text == good
    assert (await client.put(f"{href}/cp", connection_point("NCCCC000009"))).status == 400
    assert (await client.get(f"{href}/cp")).xml()[0].text == "NCCCC00000"
    wrong_root = connection_point("2001985732").replace("csipaus:ConnectionPoint", "csipaus:X")
    assert (await client.put(f"{href}/cp", wrong_root)).status == 400
    status, body = await aus.admin("GET", f"/api/end-devices/{device.lfdi}/der")
    assert status == 200
    assert body["connection_point"]["fields"] == {"csipaus:connectionPointId": "NCCCC00000"}
    other = aus.client(aus.pki.device_b)
    assert (await other.get(f"{href}/cp")).status == 404
    assert (await other.put(f"{href}/cp", connection_point("2001985732"))).status == 404
