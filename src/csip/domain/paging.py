"""2030.5 list paging: s (start index), a (after time), l (limit)."""

from __future__ import annotations

from dataclasses import dataclass, field

from csip.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Page:
    start: int = 0
    after: int | None = None
    limit: int = 1
    #: The cache key of this page of a list, computed once.
    cache_key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        key = f"s={self.start}&a={self.after}&l={self.limit}"
        object.__setattr__(self, "cache_key", key)

    def key(self) -> str:
        return self.cache_key


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
    return Page(values.get("s", 0), values.get("a"), limit)
