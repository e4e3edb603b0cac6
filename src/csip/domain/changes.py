"""What a unit of work changed, said once, as facts.

A service records these inside its unit of work (store.uow); services/changes.py is the one
place that decides what each means for cached renderings, 2030.5 subscribers and other
workers. They name resources, never cache tags or hrefs, so a new reader or a new
subscribable resource changes one module, not every writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """Enough of an EndDevice to find every list it appears in (its own, its aggregator's)."""

    id: int
    lfdi: str
    aggregator_id: int | None = None


@dataclass(frozen=True, slots=True)
class EndDeviceChanged:
    """An EndDevice was registered, updated or deleted (with everything under it)."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class EndDeviceListed:
    """An EndDevice joined or left the EndDeviceLists that show it (registered, made for an
    aggregator's certificate, deleted): those lists' subscribers hear it."""

    device: DeviceRef


@dataclass(frozen=True, slots=True)
class DeviceDocumentChanged:
    """A document the device PUT under its EndDevice (DeviceInformation, DeviceStatus ...)."""

    device_id: int


@dataclass(frozen=True, slots=True)
class DerDocumentChanged:
    """A DER document (capability, settings, status, availability) or ConnectionPoint."""

    device_id: int


@dataclass(frozen=True, slots=True)
class DerFactsChanged:
    """A device's typed DER facts changed (a DER document, readings of W or state of
    charge, its requested postRate, the utility's reserve for the site): what the fleet's
    in-memory capacity inputs are read from (services/fleet.py)."""

    device_id: int


@dataclass(frozen=True, slots=True)
class LogEventAdded:
    device_id: int


@dataclass(frozen=True, slots=True)
class SubscriptionsChanged:
    """A 2030.5 subscription of this device was created or deleted."""

    device_id: int


@dataclass(frozen=True, slots=True)
class GroupCreated:
    group_id: int


@dataclass(frozen=True, slots=True)
class GroupDeleted:
    """A group was deleted (kept as history): it leaves the group tree; its members leaving
    are recorded as a MembershipChanged."""

    group_id: int


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """These devices joined or left this group."""

    group_id: int
    devices: tuple[DeviceRef, ...]


@dataclass(frozen=True, slots=True)
class ProgramChanged:
    """A DERProgram was created, or its description or primacy changed."""

    program_id: int
    group_id: int
    created: bool = False


@dataclass(frozen=True, slots=True)
class ProgramDeleted:
    """A DERProgram was deleted (kept as history): it leaves its group's DERProgramList and
    every list that counts programs; its cancelled controls are a ControlsPublished."""

    program_id: int
    group_id: int


@dataclass(frozen=True, slots=True)
class ControlsPublished:
    """DERControls of one program were published or cancelled."""

    program_id: int
    control_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MessagingProgramChanged:
    """A group's MessagingProgram was made (on its first message) or its locale or primacy
    changed: its group's MessagingProgramList and FunctionSetAssignments show it."""

    program_id: int
    group_id: int


@dataclass(frozen=True, slots=True)
class MessagesPublished:
    """TextMessages of one MessagingProgram were written or cancelled."""

    program_id: int
    group_id: int
    message_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ControlBoundaryPassed:
    """The clock passed a moment at which a program's controls start or end (domain.der
    notice_moments): no row changed, yet what its subscribers read did. `group_id` is None
    for a deleted program (it is in no DERProgramList any more)."""

    program_id: int
    group_id: int | None = None


@dataclass(frozen=True, slots=True)
class DefaultControlChanged:
    program_id: int


@dataclass(frozen=True, slots=True)
class CurveAdded:
    program_id: int


@dataclass(frozen=True, slots=True)
class ResponseAdded:
    program_id: int


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """Server-wide poll rates or the default postRate."""


@dataclass(frozen=True, slots=True)
class CertificateChanged:
    """A client certificate was attached, detached, deny-listed or restored."""

    lfdi: str


@dataclass(frozen=True, slots=True)
class AggregatorRemoved:
    aggregator_id: int


@dataclass(frozen=True, slots=True)
class MirrorUsagePointChanged:
    """A MirrorUsagePoint (or what its list shows of it) changed; `listed`: it joined, left or
    changed in the lists too (not only its own resource)."""

    mup_id: int
    device: DeviceRef
    listed: bool = True


#: OpenADR 3 operations (the notification's `operation`).
CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


@dataclass(frozen=True, slots=True)
class ReadingsAdded:
    """Readings arrived under a MirrorUsagePoint: only the metering read side (/upt) shows
    them; the mirror's own resources are unchanged."""

    mup_id: int


@dataclass(frozen=True, slots=True)
class NotificationHostsChanged:
    """An aggregator's notification host allow-list was set or removed (admin API)."""

    aggregator_id: int


@dataclass(frozen=True, slots=True)
class OadrObjectChanged:
    """An OpenADR 3 object was created, updated or deleted (`operation`). `view`: the stored
    object as its subscribers are told of it (as it was before a DELETE marked it deleted);
    an opaque store value here, compared by kind and id only."""

    kind: str
    id: str
    operation: str = UPDATE
    view: object = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class VtnClientRemoved:
    """An OpenADR client was removed: its tokens are refused from their next request."""

    client_id: str


@dataclass(frozen=True, slots=True)
class EverythingChanged:
    """A lab reset or a moved server clock: every rendering may be wrong now."""


Change = (
    EndDeviceChanged
    | EndDeviceListed
    | DeviceDocumentChanged
    | DerDocumentChanged
    | DerFactsChanged
    | LogEventAdded
    | SubscriptionsChanged
    | GroupCreated
    | GroupDeleted
    | MembershipChanged
    | ProgramChanged
    | ProgramDeleted
    | ControlsPublished
    | MessagingProgramChanged
    | MessagesPublished
    | ControlBoundaryPassed
    | DefaultControlChanged
    | CurveAdded
    | ResponseAdded
    | SettingsChanged
    | CertificateChanged
    | AggregatorRemoved
    | MirrorUsagePointChanged
    | ReadingsAdded
    | NotificationHostsChanged
    | OadrObjectChanged
    | VtnClientRemoved
    | EverythingChanged
)
