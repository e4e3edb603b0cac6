"""conformance/coverage.md maps every procedure ID of the public catalogues (listed in
conformance/procedures.md) to the tests that check it, or says why it does not apply: every ID
must be there, every named test must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "conformance" / "procedures.md"
COVERAGE = ROOT / "conformance" / "coverage.md"
STATUSES = {"tested", "not applicable", "pending"}


def coverage_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in COVERAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in STATUSES:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def catalogue_ids() -> list[str]:
    ids = []
    for line in CATALOGUE.read_text().splitlines():
        match = re.match(r"\|\s*([A-Z][A-Z0-9-]*(?: / \d+)*)\s*(?:\(S\))?\s*\|", line)
        if match and match.group(1) != "ID":
            ids.append(match.group(1))
    return ids


def test_every_catalogue_id_has_a_row() -> None:
    ids = catalogue_ids()
    assert len(ids) > 150
    missing = [i for i in ids if i not in coverage_rows()]
    assert missing == []


def test_every_named_test_exists() -> None:
    rows = coverage_rows()
    assert rows
    for procedure, (status, where) in rows.items():
        if status != "tested":
            assert where, procedure
            continue
        for reference in (part.strip() for part in where.split(",")):
            path, _, name = reference.partition("::")
            file = ROOT / path
            assert file.exists(), (procedure, reference)
            if name:
                functions = {
                    node.name
                    for node in ast.walk(ast.parse(file.read_text()))
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                }
                assert name in functions, (procedure, reference)
