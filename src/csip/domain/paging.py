"""2030.5 list paging: s (start index), a (after time), l (limit).

Which pages are kept in the render cache: every page a walker or a poll asks for that lies
within its list, whatever its index. The page's shape is known here (no `a`, `s` a multiple
of `l`: `Page.cached`); whether it lies within the list is known only to the service that
renders it, which knows the list's size (`all`): it asks `Page.kept(all)`. A page past the
end of its list, or of another shape, is rendered per request and never stored, so a client
asking for ever new pages (s = k*l for huge k, odd s, any `a`) cannot grow the server's
memory, while the pages that exist are bounded by the list itself (and the cache's own
max_entries / max_bytes).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from csip.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Uncached:
    """The cache key of a page that is rendered per request and never stored: the query it
    stands for, so that concurrent requests for different such pages never share a fill."""

    query: str


@dataclass(frozen=True, slots=True)
class Page:
    start: int = 0
    after: int | None = None
    limit: int = 1
    #: Whether this page has the shape of one a walker or a poll asks for (no `a`, `s` a
    #: multiple of `l`, `l` > 0): only those may be kept, and only while they lie within
    #: their list (`kept`).
    cached: bool = field(default=True, compare=False)
    #: The cache key of this page of a list, computed once (an `Uncached` when not cached).
    cache_key: Hashable = field(default="", compare=False)

    def __post_init__(self) -> None:
        query = f"s={self.start}&a={self.after}&l={self.limit}"
        object.__setattr__(self, "cache_key", query if self.cached else Uncached(query))

    def key(self) -> Hashable:
        return self.cache_key

    def kept(self, total: int) -> bool:
        """Whether this page's rendering may be stored, for a list of `total` items (its
        `all`): a cacheable shape, and the first page or one that starts within the list.
        Pages past the end are all alike (no items) and unbounded in number: never stored."""
        return self.cached and (self.start == 0 or self.start < total)


def parse_page(query: dict[str, str], default_limit: int, max_limit: int) -> Page:
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
    cached = after is None and limit > 0 and start % limit == 0
    return Page(start, after, limit, cached)
