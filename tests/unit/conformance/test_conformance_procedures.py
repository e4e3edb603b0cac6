"""Procedures as data: every catalogue ID of the client-side CORE, BASIC and AGG procedures
(and the server-side ones server mode runs) has a file that loads; malformed files are
refused with their name, line and reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from csip.conformance.procedures import (
    ProcedureError,
    default_directory,
    file_name,
    load_all,
    load_text,
    select,
)

ROOT = Path(__file__).resolve().parents[3]


def catalogue_ids() -> list[str]:
    """The IDs from the repository's own catalogue (conformance/procedures.md once it is in
    the repository, else the coverage table that lists every ID)."""
    source = ROOT / "conformance" / "procedures.md"
    if not source.exists():
        source = ROOT / "conformance" / "coverage.md"
    ids = []
    for line in source.read_text().splitlines():
        match = re.match(r"\|\s*([A-Z][A-Z0-9-]*(?: / \d+)*)\s*(?:\(S\))?\s*\|", line)
        if match and match.group(1) != "ID":
            ids.append(match.group(1))
    return ids


def test_every_core_basic_agg_id_has_a_procedure_file() -> None:
    wanted = [i for i in catalogue_ids() if i.startswith(("CORE-", "BASIC-", "AGG-"))]
    assert len(wanted) >= 55
    missing = [i for i in wanted if not (default_directory() / file_name(i)).exists()]
    assert missing == []


def test_every_file_loads_and_is_consistent() -> None:
    procedures = load_all()
    assert len(procedures) >= 60
    for procedure in procedures.values():
        if procedure.status == "not-applicable":
            assert procedure.reason
        elif procedure.side == "client":
            assert procedure.expect, procedure.id
        else:
            assert procedure.checks, procedure.id
    assert procedures["CORE-006"].exclusive  # moves the global clock
    assert not procedures["CORE-012"].exclusive


def test_select_by_globs_in_catalogue_order() -> None:
    procedures = load_all()
    chosen = [p.id for p in select(procedures, "CORE-01*,BASIC-00*")]
    assert chosen[:3] == ["BASIC-001", "BASIC-002", "BASIC-003"]
    assert "CORE-012" in chosen and "CORE-003" not in chosen
    assert [p.id for p in select(procedures, "AGG-01?")] == ["AGG-010", "AGG-011", "AGG-012"]


GOOD = """\
id = "TEST-001"
title = "t"
side = "client"
clause = "IEEE 2030.5 10.10"
summary = "a short procedure for tests"

[[preconditions.programs]]
name = "p1"
primacy = 10

[[steps]]
name = "go"
at = 1
action = "create-control"
control = { name = "c1", program = "p1", start = 5, duration = 5, base = {} }

[[expect]]
id = "received"
description = "answers Received"
kind = "response"
method = "POST"
control = "c1"
status = [1]
within = 10
"""


def test_a_good_file_loads() -> None:
    procedure = load_text(GOOD, Path("TEST-001.toml"))
    assert procedure.steps[0].control is not None
    assert procedure.expect[0].kind == "response"


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (("at = 1", "at = -1"), 13, "steps.0.at"),
        (('action = "create-control"', 'action = "explode"'), 14, "steps.0.action"),
        (('kind = "response"', 'kind = "response"\nsurprise = 1'), 21, "surprise"),
        (('control = "c1"', 'control = "c9"'), 1, "no control 'c9'"),
        (('title = "t"', 'title = "t'), 2, "line 2"),
        (("within = 10", "within = 0"), 17, "give the window"),
    ],
)
def test_a_malformed_file_is_refused_with_name_line_and_reason(
    change: tuple[str, str], line: int, reason: str
) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(ProcedureError) as caught:
        load_text(text, Path("TEST-001.toml"))
    error = caught.value
    assert error.path.name == "TEST-001.toml"
    assert reason in str(error)
    assert error.line == line, str(error)
    assert str(error).startswith(f"TEST-001.toml:{line}: ")


def test_the_file_name_must_match_the_id() -> None:
    with pytest.raises(ProcedureError, match=r"needs TEST-001\.toml"):
        load_text(GOOD, Path("CORE-012.toml"))


def test_global_actions_need_exclusive() -> None:
    text = GOOD.replace('action = "create-control"', 'action = "move-clock"\nseconds = 60')
    with pytest.raises(ProcedureError, match="exclusive"):
        load_text(text, Path("TEST-001.toml"))
    load_text(
        text.replace('side = "client"', 'side = "client"\nexclusive = true'), Path("TEST-001.toml")
    )


def test_coverage_links_every_procedure_file() -> None:
    coverage = (ROOT / "conformance" / "coverage.md").read_text()
    links = dict(
        re.findall(r"^\| (\S+(?: / \d+)*) \| \[[^]]+\]\((procedures/[^)]+)\) \|", coverage, re.M)
    )
    assert set(links) == set(load_all())
    for target in links.values():
        assert (ROOT / "conformance" / target).exists(), target
