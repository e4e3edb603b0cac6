"""The Makefile's interpreter check: a missing interpreter and a too-old one say different things
(run on a copy of the Makefile in an empty folder, so nothing is installed)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _make(tmp_path: Path, py: str) -> subprocess.CompletedProcess[str]:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(
        ["make", "-s", "test", f"PY={py}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_interpreter_is_named_as_not_found(tmp_path: Path) -> None:
    result = _make(tmp_path, "python3.99-not-installed")
    assert result.returncode != 0
    assert "Python interpreter 'python3.99-not-installed' was not found" in result.stdout
    assert "needs Python 3.11+" not in result.stdout
    assert not (tmp_path / ".venv").exists()


def test_an_interpreter_that_does_not_run_is_named_as_not_found(tmp_path: Path) -> None:
    # what a pyenv shim does for a version that is installed but not selected: exit 127
    shim = tmp_path / "python3.13"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    result = _make(tmp_path, str(shim))
    assert result.returncode != 0
    assert f"Python interpreter '{shim}' was not found" in result.stdout


def test_a_too_old_interpreter_gets_the_version_message(tmp_path: Path) -> None:
    old = tmp_path / "python3.8"
    old.write_text('#!/bin/sh\ncase "$2" in *print*) echo 3.8 ;; *) exit 1 ;; esac\n')
    old.chmod(old.stat().st_mode | stat.S_IXUSR)
    result = _make(tmp_path, str(old))
    assert result.returncode != 0
    assert f"csip needs Python 3.11+, {old} is Python 3.8" in result.stdout
    assert not (tmp_path / ".venv").exists()
