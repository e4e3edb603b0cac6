"""2030.5 list paging: s (start index), a (after time), l (limit)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from csip.errors import BadRequest


class _Uncached:
    """The cache key of a page that is rendered per request and never stored."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCACHED"


#: A cache key ending in this is never stored (see RenderCache.put).
UNCACHED: Hashable = _Uncached()
#: Pages of one list that are cached by default (Settings.cache_pages_per_list).
CACHED_PAGES = 64


@dataclass(frozen=True, slots=True)
class Page:
    start: int = 0
    after: int | None = None
    limit: int = 1
    #: Whether this page's rendering is kept: only pages a walker or a poll asks for (no `a`,
    #: `s` a multiple of `l`, among the first pages), so that a client asking for ever new
    #: pages cannot grow the server's memory.
    cached: bool = field(default=True, compare=False)
    #: The cache key of this page of a list, computed once (UNCACHED when not cached).
    cache_key: Hashable = field(default="", compare=False)

    def __post_init__(self) -> None:
        key: Hashable = f"s={self.start}&a={self.after}&l={self.limit}" if self.cached else UNCACHED
        object.__setattr__(self, "cache_key", key)

    def key(self) -> Hashable:
        return self.cache_key


def parse_page(
    query: dict[str, str], default_limit: int, max_limit: int, cached_pages: int = CACHED_PAGES
) -> Page:
    """Read s/a/l; absent `l` means the server's default (2030.5 §5.5: 1 when unstated).

    Values outside the UInt32 range or not numeric are a 400; `l` above the server maximum
    is clamped, since the standard lets a server return fewer results than asked.
    """
    values: dict[str, int] = {}
    for name in ("s", "a", "l"):
        raw = query.get(name)
        if raw is None:
            continue
        if not raw.isdigit() or len(raw) > 10 or int(raw) > 0xFFFFFFFF:
            raise BadRequest(f"query parameter {name} must be an unsigned 32-bit integer")
        values[name] = int(raw)
    limit = min(values.get("l", default_limit), max_limit)
    start, after = values.get("s", 0), values.get("a")
    cached = after is None and limit > 0 and start % limit == 0 and start // limit < cached_pages
    return Page(start, after, limit, cached)
