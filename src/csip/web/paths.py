"""Integer ids in paths, parsed in one place.

Every id csip hands out fits a PostgreSQL INTEGER (2^31-1; SQLite's bound is 2^63-1), so a
larger one names nothing: 404, before it can reach the database (where it would overflow
the driver: 500). Only ASCII digits count (the routes' `\\d` also matches other scripts).
"""

from __future__ import annotations

from aiohttp import web

from csip.errors import NotFound

#: The largest id any table can hold on every supported database.
MAX_ID = 2**31 - 1


def parse_id(raw: str, what: str = "id") -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_ID:
        raise NotFound(f"no such {what}")
    return int(raw)


def path_id(request: web.Request, name: str) -> int:
    """The integer path parameter `name`, or NotFound."""
    return parse_id(request.match_info[name], name)
