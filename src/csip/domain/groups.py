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
