"""2030.5 list query parameters s, a, l (IEEE 2030.5 §5.5, CORE-004)."""

from __future__ import annotations

import pytest

from csip.domain.paging import Page, parse_page
from csip.errors import BadRequest


def test_defaults_and_clamping() -> None:
    assert parse_page({}, 1, 255) == Page(0, None, 1)
    assert parse_page({"s": "5", "l": "10", "a": "1700000000"}, 1, 255) == Page(5, 1700000000, 10)
    assert parse_page({"l": "100000"}, 1, 255).limit == 255


@pytest.mark.parametrize(
    "query", [{"s": "-1"}, {"l": "x"}, {"a": "1e3"}, {"s": "4294967296"}, {"l": ""}]
)
def test_bad_values(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_page(query, 1, 255)
