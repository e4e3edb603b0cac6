"""The DERControlBase table in csip.domain.der matches the schemas themselves: element order,
namespaces and value shapes, for sep.xsd and for csipaus-core.xsd."""

from __future__ import annotations

import xmlschema

from csip.domain.der import CSIPAUS, FIELDS, MODES, ModeKind
from csip.sep2.schema import default_schema_dir

SHAPES = {
    "boolean": ModeKind.BOOLEAN,
    "PowerFactorWithExcitation": ModeKind.POWER_FACTOR,
    "FixedVar": ModeKind.FIXED_VAR,
    "FreqDroopType": ModeKind.FREQ_DROOP,
    "DERCurveLink": ModeKind.CURVE,
    "ActivePower": ModeKind.POWER,
    "ReactivePower": ModeKind.POWER,
}


def test_modes_follow_the_csip_aus_schema_order_and_types() -> None:
    schema = xmlschema.XMLSchema(str(default_schema_dir() / "csipaus-core.xsd"))
    elements = list(schema.types["DERControlBase"].content.iter_elements())
    found = [(e.local_name, e.type.local_name) for e in elements]
    assert [name for name, _ in found] == [name for name, _, _ in MODES]
    for (name, type_name), (_, kind, namespace) in zip(found, MODES, strict=True):
        expected = SHAPES.get(type_name or "", ModeKind.INTEGER)
        assert kind is expected, name
        assert (namespace == CSIPAUS) == name.startswith(
            ("opModImp", "opModExp", "opModGen", "opModLoad")
        )
    for kind, fields in FIELDS.items():
        type_name = next(t for t, k in SHAPES.items() if k is kind)
        children = [e.local_name for e in schema.types[type_name].content.iter_elements()]
        assert tuple(children) == fields, type_name
