"""One error tree for the whole server.

Domain and service code raise these; each web face translates them into its own wire
form (a 2030.5 ``Error`` body, an OpenADR Problem, admin JSON) without leaking internals.
"""

from __future__ import annotations


class CsipError(Exception):
    """Base of every error csip raises on purpose."""

    status = 500
    #: 2030.5 Error.reasonCode: 0 invalid request format, 1 invalid request values,
    #: 2 resource limit reached, 3 conditional subscription unsupported, 4 rate exceeded.
    reason_code = 0

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.__class__.__name__)
        self.detail = detail or (self.__class__.__doc__ or "").strip()


class ConfigError(CsipError):
    """The configuration is unusable; the message names the fix."""


class SchemaMissingError(ConfigError):
    """The 2030.5 XSD files are missing or do not match the pinned copies."""


class BadRequest(CsipError):
    """The request is malformed."""

    status = 400
    reason_code = 0


class InvalidValues(BadRequest):
    """The request is well formed but carries values the server cannot accept."""

    reason_code = 1


class PayloadTooLarge(BadRequest):
    """The request body is larger than the configured cap."""

    status = 413


class Unauthorized(CsipError):
    """No usable credentials were presented."""

    status = 401


class Forbidden(CsipError):
    """The client may not do this."""

    status = 403


class NotFound(CsipError):
    """No such resource (or none this client may know of)."""

    status = 404


class Conflict(CsipError):
    """The request conflicts with the resource's current state."""

    status = 409

    def __init__(self, detail: str = "", location: str | None = None) -> None:
        super().__init__(detail)
        #: Where the existing resource is, when the client may know it.
        self.location = location


class UnsupportedMediaType(CsipError):
    """The body's content type is not one this resource accepts."""

    status = 415


class LimitReached(CsipError):
    """A resource limit was reached."""

    status = 400
    reason_code = 2


class RequestTimeout(BadRequest):
    """The request (its headers or its body) did not arrive in time."""

    status = 408
