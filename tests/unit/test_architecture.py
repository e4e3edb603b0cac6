"""The import rules of DESIGN.md, enforced: domain is pure, store never imports web or wire
packages, only web imports aiohttp.web, only store imports sqlmodel/sqlalchemy."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "csip"


def imports(package: str) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in (SRC / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[path] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(SRC)} imports {name}"
        for path, names in imports(package).items()
        for name in names
        if name.startswith(forbidden)
    ]


def test_domain_imports_only_the_standard_library_and_errors() -> None:
    allowed_ours = ("csip.domain", "csip.errors")
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path, names in imports("domain").items()
        for name in names
        if (name.startswith("csip") and not name.startswith(allowed_ours))
        or name.split(".")[0]
        in {"aiohttp", "lxml", "sqlmodel", "sqlalchemy", "cryptography", "pydantic"}
    ]
    assert bad == []


def test_store_never_imports_web_or_wire_packages() -> None:
    assert offenders("store", ("csip.web", "csip.sep2", "csip.openadr", "aiohttp")) == []


def test_only_web_imports_aiohttp_web_and_only_store_imports_the_orm() -> None:
    for package in ("domain", "sep2", "store", "services", "pki"):
        assert offenders(package, ("aiohttp.web",)) == [], package
    for package in ("domain", "sep2", "services", "web", "pki"):
        assert offenders(package, ("sqlmodel", "sqlalchemy")) == [], package


def test_test_modules_have_unique_names() -> None:
    """Test folders have no __init__.py, so pytest imports modules by basename: two files
    of one name stop the whole run at collection."""
    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
