"""2030.5 documents -> the simulator core's typed documents (pure: lxml elements in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from csip.conformance.sim.core import ControlDoc, CurveDoc, DefaultDoc
from csip.sep2.schema import SEP_NS

_NS = f"{{{SEP_NS}}}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _text(element: etree._Element, path: str) -> str | None:
    found = element.find(path.replace("s:", _NS))
    return None if found is None or found.text is None else found.text.strip()


def _int(element: etree._Element, path: str, default: int = 0) -> int:
    value = _text(element, path)
    return default if value is None else int(value)


def _scalar(text: str) -> int | bool:
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def base_of(holder: etree._Element) -> dict[str, Any]:
    """DERControlBase as {mode: value}: ints and booleans, {field: value} for structured
    modes, the curve href for curve modes."""
    base = holder.find(f"{_NS}DERControlBase")
    out: dict[str, Any] = {}
    if base is None:
        return out
    for child in base:
        name = _local(child)
        if child.get("href"):
            out[name] = str(child.get("href"))
        elif len(child):
            out[name] = {_local(c): _scalar((c.text or "0").strip()) for c in child}
        elif child.text is not None:
            out[name] = _scalar(child.text.strip())
    return out


def control_doc(element: etree._Element, program: str, primacy: int) -> ControlDoc:
    return ControlDoc(
        mrid=_text(element, "s:mRID") or "",
        program=program,
        primacy=primacy,
        creation_time=_int(element, "s:creationTime"),
        start=_int(element, "s:interval/s:start"),
        duration=_int(element, "s:interval/s:duration"),
        status=_int(element, "s:EventStatus/s:currentStatus"),
        base=base_of(element),
        randomize_start=_int(element, "s:randomizeStart"),
        response_required=int(element.get("responseRequired", "00"), 16),
        reply_to=element.get("replyTo"),
        href=element.get("href", ""),
    )


def default_doc(element: etree._Element, program: str, primacy: int) -> DefaultDoc:
    return DefaultDoc(program, primacy, _text(element, "s:mRID") or "", base_of(element))


def curve_doc(element: etree._Element, href: str) -> CurveDoc:
    x_scale = 10.0 ** _int(element, "s:xMultiplier")
    y_scale = 10.0 ** _int(element, "s:yMultiplier")
    points = tuple(
        (_int(point, "s:xvalue") * x_scale, _int(point, "s:yvalue") * y_scale)
        for point in element.findall(f"{_NS}CurveData")
    )
    return CurveDoc(href, _int(element, "s:curveType"), points)


def curves_of(elements: Mapping[str, etree._Element]) -> dict[str, CurveDoc]:
    return {href: curve_doc(element, href) for href, element in elements.items()}


def controls_of(list_root: etree._Element, program: str, primacy: int) -> list[ControlDoc]:
    """Every DERControl of a DERControlList (a polled page or a notification's Resource)."""
    return [control_doc(c, program, primacy) for c in list_root.findall(f"{_NS}DERControl")]
