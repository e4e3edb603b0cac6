"""Hardened XML in, namespaced XML out.

Every body we accept is size-capped, refused if it carries a DTD (no entity can expand:
billion-laughs and XXE both need one), parsed with entities and network off, and validated
against the profile's schema before anything reads it.
"""

from __future__ import annotations

from lxml import etree
from lxml.builder import ElementMaker

from csip.errors import BadRequest, PayloadTooLarge
from csip.sep2.schema import CSIPAUS_NS, SEP_NS

CONTENT_TYPE = "application/sep+xml"
NSMAP = {None: SEP_NS}
E = ElementMaker(namespace=SEP_NS, nsmap=NSMAP)
AUS = ElementMaker(namespace=CSIPAUS_NS, nsmap={"csipaus": CSIPAUS_NS})

#: The hardened parser: no entity resolution, no network, no DTD.
PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)


def tag(name: str) -> str:
    return f"{{{SEP_NS}}}{name}"


def parse(body: bytes, validator: etree.XMLSchema, expected: str, max_bytes: int) -> etree._Element:
    """Parse and validate one 2030.5 document whose root must be `expected`."""
    return parse_document(body, validator, (expected,), max_bytes)


def parse_document(
    body: bytes, validator: etree.XMLSchema, accepted: tuple[str, ...], max_bytes: int
) -> etree._Element:
    """Parse and validate one 2030.5 document whose root is one of `accepted`."""
    root = read_document(body, accepted, max_bytes)
    fill_list_counts(root)
    error = schema_error(validator, root)
    if error is not None:
        raise BadRequest(f"{accepted[0]} is not valid against the schema: {error}")
    return root


def fill_list_counts(root: etree._Element) -> None:
    """A posted list may leave out `all` and `results`: sep.xsd marks them required, yet its
    own annotation of List says "Required on a response to a GET, ignored otherwise", so a
    client posting a MirrorMeterReadingList need not count. Filled in (the number of entries
    sent) before the schema check, on input only; everything csip emits carries its own."""
    if not etree.QName(root).localname.endswith("List"):
        return
    count = str(sum(1 for child in root if isinstance(child.tag, str)))
    for name in ("all", "results"):
        if root.get(name) is None:
            root.set(name, count)


def schema_error(validator: etree.XMLSchema, root: etree._Element) -> str | None:
    """Why `root` is not valid against `validator`, or None when it is."""
    if validator.validate(root):
        return None
    error = getattr(validator.error_log, "last_error", None)
    return str(error.message) if error is not None else "invalid"


def read_document(
    body: bytes, accepted: tuple[str, ...], max_bytes: int, namespace: str = SEP_NS
) -> etree._Element:
    """The hardened parse, before any schema work: size cap, no DTD, entities and network
    off, root one of `accepted` in `namespace`."""
    expected = accepted[0]
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {max_bytes}")
    if not body.strip():
        raise BadRequest(f"an empty body is not a {expected}")
    if b"<!DOCTYPE" in body.upper():
        raise BadRequest("documents with a DTD are not accepted")
    try:
        root: etree._Element = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"malformed XML: {exc.msg}") from exc
    if etree.QName(root).namespace != namespace:
        raise BadRequest(f"root element must be in namespace {namespace}")
    if etree.QName(root).localname not in accepted:
        raise BadRequest(f"expected a {expected}, got {etree.QName(root).localname}")
    return root


def text(root: etree._Element, name: str) -> str | None:
    """The text of a direct child in the 2030.5 namespace, or None."""
    child = root.find(tag(name))
    return None if child is None or child.text is None else child.text.strip()


def serialize(element: etree._Element) -> bytes:
    """UTF-8 without an XML declaration: UTF-8 is 2030.5's default, and a widely used test
    client decodes bodies to text before parsing, which a declaration makes it refuse."""
    return etree.tostring(element, xml_declaration=False, encoding="UTF-8")


def link(name: str, href: str, all_: int | None = None) -> etree._Element:
    element: etree._Element = E(name, href=href)
    if all_ is not None:
        element.set("all", str(all_))
    return element


def error_body(reason_code: int) -> bytes:
    """The 2030.5 Error resource (reasonCode per sep.xsd)."""
    return serialize(E.Error(E.reasonCode(str(reason_code))))
