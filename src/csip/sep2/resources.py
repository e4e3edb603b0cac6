"""Rendering the foundation's 2030.5 resources from domain objects, in sep.xsd element order.

These run once per change (render once, serve many), never per poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lxml import etree

from csip.domain.devices import EndDevice
from csip.domain.timeinfo import TimeInfo
from csip.sep2 import hrefs
from csip.sep2.xml import AUS, E, link, serialize


def device_capability(poll_rate: int, edev_all: int, mup_all: int | None = None) -> bytes:
    links = [link("ResponseSetListLink", "/rsps"), link("TimeLink", "/tm")]
    if mup_all is not None:  # metering read side: one UsagePoint per MirrorUsagePoint
        links.append(link("UsagePointListLink", hrefs.usage_point_list(), mup_all))
    links.append(link("EndDeviceListLink", hrefs.end_device_list(), edev_all))
    if mup_all is not None:  # telemetry (MirrorUsagePointList)
        links.append(link("MirrorUsagePointListLink", "/mup", mup_all))
    dcap = E.DeviceCapability(*links, href="/dcap", pollRate=str(poll_rate))
    return serialize(dcap)


def time_resource(info: TimeInfo, poll_rate: int) -> bytes:
    element = E.Time(
        E.currentTime(str(info.current_time)),
        E.dstEndTime(str(info.dst_end_time)),
        E.dstOffset(str(info.dst_offset)),
        E.dstStartTime(str(info.dst_start_time)),
        E.localTime(str(info.local_time)),
        E.quality(str(info.quality)),
        E.tzOffset(str(info.tz_offset)),
        href="/tm",
        pollRate=str(poll_rate),
    )
    return serialize(element)


def _end_device_element(device: EndDevice, profile: str = "csip") -> Any:
    base = device.href
    if device.aggregator_self:
        # an aggregator certificate's own EndDevice: it holds the aggregator's subscriptions
        # (for every device it manages) and speaks for no DER of its own
        return E.EndDevice(
            E.lFDI(device.lfdi),
            E.sFDI(str(device.sfdi)),
            E.changedTime(str(device.changed_time)),
            E.enabled("true" if device.enabled else "false"),
            link("SubscriptionListLink", f"{base}/sub"),
            href=base,
            subscribable="1",
        )
    children: list[etree._Element] = [link("DERListLink", f"{base}/der", 1)]
    if device.device_category is not None:
        children.append(E.deviceCategory(device.device_category))
    children.append(link("DeviceInformationLink", f"{base}/di"))
    children.append(link("DeviceStatusLink", f"{base}/dstat"))
    children.append(E.lFDI(device.lfdi))
    children.append(link("LogEventListLink", f"{base}/lel"))
    children.append(link("PowerStatusLink", f"{base}/ps"))
    children.append(E.sFDI(str(device.sfdi)))
    children.append(E.changedTime(str(device.changed_time)))
    children.append(E.enabled("true" if device.enabled else "false"))
    children.append(link("FunctionSetAssignmentsListLink", f"{base}/fsa"))
    if device.post_rate is not None:
        children.append(E.postRate(str(device.post_rate)))
    children.append(link("RegistrationLink", f"{base}/rg"))
    if not (profile == "csip-aus" and device.aggregator_id is not None):
        # CSIP-AUS: an aggregator's subscriptions live under its own EndDevice only
        children.append(link("SubscriptionListLink", f"{base}/sub"))
    if profile == "csip-aus":  # csipaus-core.xsd appends it to EndDevice
        children.append(AUS.ConnectionPointLink(href=f"{base}/cp"))
    return E.EndDevice(*children, href=base, subscribable="1")


def end_device(device: EndDevice, profile: str = "csip") -> bytes:
    return serialize(_end_device_element(device, profile))


def end_device_list(
    total: int, devices: Sequence[EndDevice], poll_rate: int, profile: str = "csip"
) -> bytes:
    element = E.EndDeviceList(
        *(_end_device_element(d, profile) for d in devices),
        href="/edev",
        all=str(total),
        results=str(len(devices)),
        subscribable="1",
        pollRate=str(poll_rate),
    )
    return serialize(element)


def registration(device: EndDevice, poll_rate: int) -> bytes:
    element = E.Registration(
        E.dateTimeRegistered(str(device.registered_at)),
        E.pIN(str(device.pin)),
        href=f"{device.href}/rg",
        pollRate=str(poll_rate),
    )
    return serialize(element)
