"""Every 2030.5 path csip serves that more than one module needs, spelled once.

Renderers, the notification mapping (services/changes.py) and subscription matching all
build hrefs here, so a subscribed resource and the change that notifies it cannot drift.
"""

from __future__ import annotations


def end_device_list() -> str:
    """Every client's EndDeviceList: the one subscribable list not under a device."""
    return "/edev"


def end_device(device_id: int) -> str:
    return f"/edev/{device_id}"


def fsa_list(device_id: int) -> str:
    """The FunctionSetAssignmentsList of an EndDevice (which groups it sees)."""
    return f"/edev/{device_id}/fsa"


def fsa(group_id: int) -> str:
    return f"/fsa/{group_id}"


def program_list(group_id: int) -> str:
    """The DERProgramList of a FunctionSetAssignments."""
    return f"/fsa/{group_id}/derp"


def program(program_id: int) -> str:
    return f"/derp/{program_id}"


def control_list(program_id: int) -> str:
    return f"/derp/{program_id}/derc"


def active_control_list(program_id: int) -> str:
    return f"/derp/{program_id}/actderc"


def default_control(program_id: int) -> str:
    return f"/derp/{program_id}/dderc"


def curve_list(program_id: int) -> str:
    return f"/derp/{program_id}/dc"


def messaging_program_list(group_id: int) -> str:
    """The MessagingProgramList of a FunctionSetAssignments."""
    return f"/fsa/{group_id}/msg"


def messaging_program(program_id: int) -> str:
    return f"/msg/{program_id}"


def text_message_list(program_id: int) -> str:
    return f"/msg/{program_id}/txt"


def active_text_message_list(program_id: int) -> str:
    return f"/msg/{program_id}/acttxt"


def text_message(program_id: int, message_id: int) -> str:
    return f"/msg/{program_id}/txt/{message_id}"


def response_list(program_id: int) -> str:
    return f"/rsps/{program_id}/rsp"


def usage_point_list() -> str:
    """The metering read side: one UsagePoint per MirrorUsagePoint (services/metering.py)."""
    return "/upt"


def usage_point(mup_id: int) -> str:
    return f"/upt/{mup_id}"
