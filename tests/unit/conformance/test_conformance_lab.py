"""lab.toml loading and the progress display."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from csip.conformance.lab import load_lab
from csip.conformance.procedures import ProcedureError
from csip.conformance.results import ProcedureResult
from csip.conformance.runner import Progress

LAB = """\
[campaign]
name = "spring"
poll_rates = { DERProgramList = 10 }

[[device]]
name = "acme-1"
class = "storage"
lfdi = "0123456789ABCDEF0123456789ABCDEF01234567"
sfdi = 123
command = ["acme", "--server", "{url}"]

[[device]]
name = "fleet"
class = "aggregator"
certificate = "certs/fleet.pem"
managed = [{ lfdi = "1123456789ABCDEF0123456789ABCDEF01234567", sfdi = 7 }]
"""


def test_a_lab_loads_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(LAB)
    lab = load_lab(path)
    assert [d.name for d in lab.device] == ["acme-1", "fleet"]
    assert lab.device[1].certificate == tmp_path / "certs" / "fleet.pem"
    assert lab.campaign.poll_rates == {"DERProgramList": 10}


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (('class = "storage"', 'class = "toaster"'), 7, "toaster"),
        (("managed = [", "unmanaged = ["), 16, "unmanaged"),
        (("sfdi = 123\n", 'sfdi = 123\nrestart = "never"\n'), 10, "restart"),
    ],
)
def test_a_bad_lab_names_line_and_reason(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(LAB.replace(*change))
    with pytest.raises(ProcedureError) as caught:
        load_lab(path)
    assert reason in str(caught.value)
    assert caught.value.line == line, str(caught.value)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_on_a_terminal_and_is_quiet_otherwise() -> None:
    for stream, shown in ((Tty(), True), (io.StringIO(), False)):
        progress = Progress(2, stream)
        progress.started("acme-1", "CORE-012")
        progress.finished(ProcedureResult("CORE-012", "acme-1", "pass"))
        progress.close()
        text = stream.getvalue()
        assert ("1/2" in text and "pass 1" in text) is shown
        assert (text == "") is not shown


async def test_an_aggregators_in_band_devices_are_found_once_stable() -> None:
    from csip.conformance.runner import discover_members

    answers = [[], ["A"], ["B", "A"], ["A", "B"], ["A", "B", "C"]]

    class Admin:
        async def aggregator_devices(self, name: str) -> list[str]:
            assert name == "fleet"
            return answers.pop(0) if len(answers) > 1 else answers[0]

    found = await discover_members(Admin(), "fleet", within=5, interval=0.01)  # type: ignore[arg-type]
    assert found == ["A", "B"]
