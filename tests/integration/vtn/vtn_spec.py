"""The official OpenADR 3.1.0 OpenAPI document, patched in memory, in ONE place.

The YAML in tests/data/openadr3/3.1.0/ (see its README) is never edited. Before validating
against it, tests apply:

1. ``BlVenRequest.targets.default`` reads ``"null          -"`` (a stray dash): set to null.
2. ``ven`` / ``resource`` responses are allOf(objectMetadata, Bl*Request); the request schema's
   objectType enum (BL_VEN_REQUEST ...) contradicts objectMetadata's (VEN ...): responses are
   validated against the request schemas without their objectType rule.
3. The discriminators of program ``payloadDescriptors`` and of ``notification.object`` have no
   mapping and their values are not schema names: mappings added.

and adds the statuses the issue asks for that the YAML omits: 409 on ``POST /vens``, 413
wherever a body is accepted, 401 on ``PUT /programs/{programID}``, 401/403 on ``/notifiers``
and every ``/notifiers/mqtt/topics/...`` operation. The undeclared scope ``read_bl`` needs no
patch (validation does not check scopes).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).resolve().parents[2] / "data/openadr3/3.1.0/openadr3.yaml"
BASE_PATH = "/openadr3/3.1.0"
SPEC_HOST = "http://vtn.test"

_PROBLEM = {"application/json": {"schema": {"$ref": "#/components/schemas/problem"}}}


def _response(description: str) -> dict[str, Any]:
    return {"description": description, "content": copy.deepcopy(_PROBLEM)}


class _TextTimestamps(yaml.SafeLoader):
    """Keeps date-times as the strings they are in JSON (examples must stay sendable)."""


_TextTimestamps.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@functools.cache
def raw_spec() -> dict[str, Any]:
    text = SPEC_FILE.read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.load(text, Loader=_TextTimestamps)  # noqa: S506 - SafeLoader
    return loaded


def patched_spec(server_url: str = SPEC_HOST + BASE_PATH) -> dict[str, Any]:
    spec = copy.deepcopy(raw_spec())
    schemas = spec["components"]["schemas"]
    # 1. the stray dash
    schemas["BlVenRequest"]["properties"]["targets"]["default"] = None
    # 2. responses: request schemas without their objectType rule
    for request_name, response_name in (
        ("BlVenRequest", "ven"),
        ("BlResourceRequest", "resource"),
    ):
        body = copy.deepcopy(schemas[request_name])
        body["properties"].pop("objectType")
        body["required"] = [r for r in body["required"] if r != "objectType"]
        schemas[request_name + "AsResponse"] = body
        schemas[response_name]["allOf"] = [
            {"$ref": "#/components/schemas/objectMetadata"},
            {"$ref": f"#/components/schemas/{request_name}AsResponse"},
        ]
    # 3. discriminator mappings
    items = schemas["programRequest"]["properties"]["payloadDescriptors"]["items"]
    items["discriminator"]["mapping"] = {
        "EVENT_PAYLOAD_DESCRIPTOR": "#/components/schemas/eventPayloadDescriptor",
        "REPORT_PAYLOAD_DESCRIPTOR": "#/components/schemas/reportPayloadDescriptor",
    }
    schemas["notification"]["properties"]["object"]["discriminator"]["mapping"] = {
        kind: f"#/components/schemas/{kind.lower()}"
        for kind in ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")
    }
    # statuses the issue asks for that the YAML omits
    paths = spec["paths"]
    paths["/vens"]["post"]["responses"].setdefault("409", _response("Conflict"))
    paths["/programs/{programID}"]["put"]["responses"].setdefault("401", _response("Unauthorized"))
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if "requestBody" in operation:
                operation["responses"].setdefault("413", _response("Payload Too Large"))
            if path.startswith("/notifiers"):
                operation["responses"].setdefault("401", _response("Unauthorized"))
                operation["responses"].setdefault("403", _response("Forbidden"))
    spec["servers"] = [{"url": server_url}]
    return spec


@functools.cache
def openapi() -> Any:
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(patched_spec())


def response_errors(
    method: str, path: str, status: int, body: bytes, content_type: str, query: dict[str, Any]
) -> list[str]:
    """Why a response does not match the spec (empty when it does)."""
    from openapi_core.testing import MockRequest, MockResponse

    request = MockRequest(SPEC_HOST, method.lower(), path, args=query)
    response = MockResponse(body, status_code=status, content_type=content_type)
    try:
        openapi().validate_response(request, response)
    except Exception as exc:
        details = [str(exc)]
        for cause in getattr(exc, "schema_errors", None) or []:
            details.append(str(getattr(cause, "message", cause))[:500])
        if exc.__cause__ is not None:
            details.append(str(exc.__cause__)[:1500])
        return details
    return []
