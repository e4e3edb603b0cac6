"""OpenADR 3.1.0 request bodies as pydantic models: fields named as the OpenAPI YAML, classes
as its schemas (capitalised).

Only requests are modelled: the server builds responses from what it stored. Validation is
strict (a string where a number belongs is 400, not coerced), unknown properties are dropped,
and an explicit ``null`` counts as absent (clients in the field send it for optional fields).
The metadata a client may send (id, createdDateTime, modificationDateTime) is ignored;
``objectType`` only matters where it tells request kinds apart (ven and resource requests).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from csip.errors import BadRequest
from csip.openadr import rules

_INT32 = {"ge": -(2**31), "le": 2**31 - 1}


def _datetime(value: str) -> str:
    if not rules.is_datetime(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z")
    return value


def _duration(value: str) -> str:
    if not rules.is_duration(value):
        raise ValueError("must be an ISO 8601 duration, e.g. PT1H")
    return value


def _uri(value: str) -> str:
    if any(c.isspace() for c in value) or ":" not in value:
        raise ValueError("must be an absolute URI")
    return value


DateTime = Annotated[StrictStr, AfterValidator(_datetime)]
Duration = Annotated[StrictStr, AfterValidator(_duration)]
ObjectID = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]*$")]
Name = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Target = Name
Uri = Annotated[StrictStr, Field(min_length=2, max_length=8000), AfterValidator(_uri)]
ObjectType = Literal["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"]
Int32 = Annotated[StrictInt, Field(**_INT32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    def wire(self) -> dict[str, Any]:
        """The body as the spec names it, absent (and null) optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Point(_Model):
    x: StrictFloat | StrictInt
    y: StrictFloat | StrictInt


class ValuesMap(_Model):
    type: Name
    values: list[StrictBool | StrictInt | StrictFloat | StrictStr | Point]


class IntervalPeriod(_Model):
    start: DateTime | None = None
    duration: Duration | None = None
    randomizeStart: Duration | None = None


class Interval(_Model):
    id: Int32
    intervalPeriod: IntervalPeriod | None = None
    payloads: list[ValuesMap]


class EventPayloadDescriptor(_Model):
    objectType: Literal["EVENT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    units: Name | None = None
    currency: StrictStr | None = None


class ReportPayloadDescriptor(_Model):
    objectType: Literal["REPORT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    accuracy: StrictFloat | StrictInt | None = None
    confidence: Annotated[StrictInt, Field(ge=0, le=100)] | None = None


class ReportDescriptor(_Model):
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    targets: list[Target] | None = None
    aggregate: StrictBool | None = None
    startInterval: Int32 | None = None
    numIntervals: Int32 | None = None
    historical: StrictBool | None = None
    frequency: Int32 | None = None
    repeat: Int32 | None = None
    reportIntervals: Literal["INTERVALS", "SUB_INTERVALS", "OPEN_INTERVALS"] | None = None


class ProgramDescription(_Model):
    URL: Uri


PayloadDescriptor = Annotated[
    EventPayloadDescriptor | ReportPayloadDescriptor, Field(discriminator="objectType")
]


class ProgramRequest(_Model):
    programName: Name
    intervalPeriod: IntervalPeriod | None = None
    programDescriptions: list[ProgramDescription] | None = None
    payloadDescriptors: list[PayloadDescriptor] | None = None
    attributes: list[ValuesMap] | None = None
    targets: list[Target] | None = None


class EventRequest(_Model):
    programID: ObjectID
    eventName: StrictStr | None = None
    duration: Duration | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    targets: list[Target] | None = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor] | None = None
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval] | None = None


class ReportResource(_Model):
    resourceName: Name
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval]


class ReportRequest(_Model):
    eventID: ObjectID
    clientName: Name
    reportName: StrictStr | None = None
    payloadDescriptors: list[ReportPayloadDescriptor] | None = None
    resources: list[ReportResource]


class ObjectOperation(_Model):
    objects: list[ObjectType]
    operations: list[Literal["READ", "CREATE", "UPDATE", "DELETE"]]
    callbackUrl: Uri
    bearerToken: StrictStr | None = None


class SubscriptionRequest(_Model):
    clientName: Name
    programID: ObjectID | None = None
    objectOperations: list[ObjectOperation]
    targets: list[Target] | None = None


class BlVenRequest(_Model):
    objectType: Literal["BL_VEN_REQUEST"]
    clientID: Name
    targets: list[Target] | None = None
    venName: Name
    attributes: list[ValuesMap] | None = None


class VenVenRequest(_Model):
    objectType: Literal["VEN_VEN_REQUEST"]
    venName: Name
    attributes: list[ValuesMap] | None = None


class BlResourceRequest(_Model):
    objectType: Literal["BL_RESOURCE_REQUEST"]
    clientID: Name
    targets: list[Target] | None = None
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


class VenResourceRequest(_Model):
    objectType: Literal["VEN_RESOURCE_REQUEST"]
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


VenRequest = Annotated[BlVenRequest | VenVenRequest, Field(discriminator="objectType")]
ResourceRequest = Annotated[
    BlResourceRequest | VenResourceRequest, Field(discriminator="objectType")
]

REQUESTS: dict[str, Any] = {
    rules.PROGRAM: TypeAdapter(ProgramRequest),
    rules.EVENT: TypeAdapter(EventRequest),
    rules.REPORT: TypeAdapter(ReportRequest),
    rules.SUBSCRIPTION: TypeAdapter(SubscriptionRequest),
    rules.VEN: TypeAdapter(VenRequest),
    rules.RESOURCE: TypeAdapter(ResourceRequest),
}

_M = TypeVar("_M")


def _drop_nulls(value: Any) -> Any:
    """An explicit null is an absent field (lists keep their items as sent)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
        parts.append(f"{where or 'body'}: {error['msg']}")
    return "; ".join(parts)


#: The ven / resource request kind a caller of each role sends: the only one it may send, so
#: a body without ``objectType`` (field clients leave it out, or send null) means that one.
REQUEST_KIND_OF_ROLE: dict[str, dict[str, str]] = {
    rules.VEN: {"bl": "BL_VEN_REQUEST", "ven": "VEN_VEN_REQUEST"},
    rules.RESOURCE: {"bl": "BL_RESOURCE_REQUEST", "ven": "VEN_RESOURCE_REQUEST"},
}


def parse(kind: str, raw: bytes, role: str | None = None) -> Any:
    """Validate a request body of one kind; BadRequest (400) names what is wrong.

    ``role`` (bl or ven) is the caller's: a ven or resource request without ``objectType``
    is taken as the kind that role sends. A VEN's body is then read as a VEN request (a
    clientID or targets in it are ignored, as every property the request kind lacks is);
    one that says BL_..._REQUEST itself is still refused by the service (403).
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    data = _drop_nulls(data)
    for ignored in ("id", "createdDateTime", "modificationDateTime"):
        data.pop(ignored, None)
    if kind not in (rules.VEN, rules.RESOURCE):
        data.pop("objectType", None)
    elif "objectType" not in data and role in REQUEST_KIND_OF_ROLE[kind]:
        data["objectType"] = REQUEST_KIND_OF_ROLE[kind][role]
    try:
        return REQUESTS[kind].validate_python(data)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from exc
