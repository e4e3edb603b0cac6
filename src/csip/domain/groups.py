"""The group tree: which groups a set of direct memberships reaches (CSIP IG §6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from csip.domain.der import Group


def closure(groups: Mapping[int, Group], direct: Iterable[int]) -> set[int]:
    """The groups and all their ancestors (a device in a group sees every group above it)."""
    found: set[int] = set()
    for group_id in direct:
        current: int | None = group_id
        while current is not None and current not in found and current in groups:
            found.add(current)
            current = groups[current].parent_id
    return found


def descendants(groups: Mapping[int, Group], group_id: int) -> set[int]:
    """The group and every group below it: a device in any of them is in the group (the
    closure seen from above)."""
    children: dict[int, list[int]] = {}
    for group in groups.values():
        if group.parent_id is not None:
            children.setdefault(group.parent_id, []).append(group.id)
    found: set[int] = set()
    pending = [group_id] if group_id in groups else []
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(children.get(current, ()))
    return found
