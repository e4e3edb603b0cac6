"""The README's walk runs as written: every shell variable it uses is set by an earlier command
of the walk (no `$LFDI` or `$VEN` left for the reader to guess). The walk itself was run by
hand against `make run`; this keeps the property as the README changes."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def walk_blocks() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks and "make run" in blocks[0]
    return blocks[1:]  # the first only names the make targets


def test_every_variable_of_the_walk_is_set_before_it_is_used() -> None:
    assigned: set[str] = set()
    unset: list[str] = []
    for block in walk_blocks():
        for line in block.splitlines():
            code = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
            unset += [n for n in re.findall(r"\$\{?(" + NAME + ")", code) if n not in assigned]
            assigned.update(re.findall(r"(?:^|[\s;(])(" + NAME + ")=", code))
            assigned.update(re.findall(r"/(" + NAME + ")=/p", code))  # eval "$(... | sed ...)"
    assert unset == []
    assert {"LFDI", "AGG_LFDI", "BL_ID", "BL_SECRET", "VEN", "PROGRAM", "VENID"} <= assigned


def test_the_walk_shows_how_to_move_the_clock_back() -> None:
    text = "".join(walk_blocks())
    assert '/clock -d \'{"advance"' in text and "/clock -d '{\"reset\": true}'" in text
