"""Campaign results: a matrix procedure x device, written as JSON (the record, re-readable),
JUnit XML (for CI) and one static HTML page a person reads (no external assets).

`write_all(campaign, directory)` writes results.json, junit.xml and report.html;
`load(path)` reads a results.json back, so `csip conformance report` re-renders it.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET

from csip.conformance.exchanges import Exchange

Outcome = Literal["pass", "fail", "not-applicable", "error"]
FORMAT = "csip-conformance-results/1"


@dataclass
class ExpectationResult:
    id: str
    description: str
    verdict: str
    detail: str
    window: tuple[float, float]
    evidence: list[int] = field(default_factory=list)  # indexes into the result's exchanges
    #: seconds outside the nominal window (within the tolerance when it passed); None = untimed
    timing_error: float | None = None


@dataclass
class ProcedureResult:
    procedure: str
    device: str
    outcome: Outcome
    title: str = ""
    clause: str = ""
    reason: str = ""
    started: float = 0.0
    duration: float = 0.0
    expectations: list[ExpectationResult] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["exchanges"] = [e.to_json() for e in self.exchanges]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcedureResult:
        data = dict(data)
        data["exchanges"] = [Exchange.from_json(e) for e in data.get("exchanges", [])]
        data["expectations"] = [
            ExpectationResult(**{**e, "window": tuple(e["window"])})
            for e in data.get("expectations", [])
        ]
        return cls(**data)


@dataclass
class Campaign:
    name: str
    mode: Literal["device", "server"]
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    results: list[ProcedureResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def matrix(self) -> dict[str, dict[str, str]]:
        """procedure -> device -> outcome."""
        table: dict[str, dict[str, str]] = {p: {} for p in self.procedures}
        for result in self.results:
            table.setdefault(result.procedure, {})[result.device] = result.outcome
        return table

    def largest_timing_error(self) -> tuple[float, str] | None:
        """The largest timing error of any judged expectation, and where ("PROC/device/id")."""
        timed = [
            (e.timing_error, f"{r.procedure} on {r.device}: {e.id}")
            for r in self.results
            for e in r.expectations
            if e.timing_error is not None
        ]
        return max(timed, default=None)

    def counts(self) -> dict[str, int]:
        counts = {"pass": 0, "fail": 0, "not-applicable": 0, "error": 0}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        counts = self.counts()
        return counts["fail"] == 0 and counts["error"] == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "mode": self.mode,
            "started": self.started,
            "finished": self.finished,
            "server": self.server,
            "devices": self.devices,
            "procedures": self.procedures,
            "matrix": self.matrix(),
            "counts": self.counts(),
            "largest_timing_error": self._largest_json(),
            "notes": self.notes,
            "results": [r.to_json() for r in self.results],
        }

    def _largest_json(self) -> dict[str, Any] | None:
        largest = self.largest_timing_error()
        return None if largest is None else {"seconds": largest[0], "where": largest[1]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Campaign:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a csip conformance results file (format {data.get('format')!r})")
        return cls(
            name=data["name"],
            mode=data["mode"],
            started=data["started"],
            finished=data["finished"],
            server=data.get("server", {}),
            devices=data.get("devices", []),
            procedures=data.get("procedures", []),
            results=[ProcedureResult.from_json(r) for r in data.get("results", [])],
            notes=data.get("notes", []),
        )


def load(path: Path) -> Campaign:
    if path.is_dir():
        path = path / "results.json"
    return Campaign.from_json(json.loads(path.read_text(encoding="utf-8")))


def write_all(campaign: Campaign, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "junit": directory / "junit.xml",
        "html": directory / "report.html",
    }
    paths["json"].write_text(json.dumps(campaign.to_json(), indent=1), encoding="utf-8")
    paths["junit"].write_bytes(junit(campaign))
    paths["html"].write_text(render_html(campaign), encoding="utf-8")
    return paths


# ---- JUnit XML ---------------------------------------------------------------------------
def _failure_text(result: ProcedureResult) -> str:
    lines = [f"{result.procedure} ({result.clause}) on {result.device}: {result.outcome}"]
    if result.reason:
        lines.append(result.reason)
    for expectation in result.expectations:
        if expectation.verdict != "pass":
            lines.append(f"- {expectation.id}: expected {expectation.description}")
            lines.append(f"  happened: {expectation.detail}")
            for index in expectation.evidence[:20]:
                lines.append("  " + result.exchanges[index].line(result.started))
    return "\n".join(lines)


def junit(campaign: Campaign) -> bytes:
    """One testsuite per device, one testcase per procedure (classname = device)."""
    suites = ET.Element("testsuites", name=campaign.name)
    by_device: dict[str, list[ProcedureResult]] = {}
    for result in campaign.results:
        by_device.setdefault(result.device, []).append(result)
    for device, results in by_device.items():
        counts = {o: sum(r.outcome == o for r in results) for o in ("fail", "error")}
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=device,
            tests=str(len(results)),
            failures=str(counts["fail"]),
            errors=str(counts["error"]),
            skipped=str(sum(r.outcome == "not-applicable" for r in results)),
            time=f"{sum(r.duration for r in results):.2f}",
        )
        for result in results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"{campaign.mode}.{device}",
                name=f"{result.procedure} {result.title}".strip(),
                time=f"{result.duration:.2f}",
            )
            if result.outcome == "fail":
                failed = [e.id for e in result.expectations if e.verdict != "pass"]
                element = ET.SubElement(
                    case,
                    "failure",
                    message=f"{result.clause}: {', '.join(failed) or result.reason}",
                )
                element.text = _failure_text(result)
            elif result.outcome == "error":
                element = ET.SubElement(case, "error", message=result.reason[:200])
                element.text = _failure_text(result)
            elif result.outcome == "not-applicable":
                ET.SubElement(case, "skipped", message=result.reason[:200])
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


# ---- HTML --------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3;text-align:left}td.pass{background:#d9f2d9}td.fail{background:#f7d0d0}
td.error{background:#f7e0b0}td.not-applicable{background:#eee;color:#777}
pre{background:#f8f8f8;border:1px solid #ddd;padding:6px;overflow:auto;max-height:30em;
font-size:12px}.failure{border-left:4px solid #c33;padding-left:1em;margin:1.5em 0}
.ok{color:#272}.bad{color:#b22}details{margin:.3em 0}summary{cursor:pointer}
"""
_MARK = {"pass": "pass", "fail": "FAIL", "not-applicable": "n/a", "error": "ERROR"}


def _e(text: Any) -> str:
    return html.escape(str(text))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def _exchange_html(exchange: Exchange, t0: float) -> str:
    parts = [f"<details><summary><code>{_e(exchange.line(t0))}</code></summary>"]
    if exchange.request_body:
        parts.append(f"<div>sent</div><pre>{_e(exchange.request_body)}</pre>")
    if exchange.response_body:
        parts.append(f"<div>answer</div><pre>{_e(exchange.response_body)}</pre>")
    parts.append("</details>")
    return "".join(parts)


def _anchor(result: ProcedureResult) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"r-{result.procedure}-{result.device}")


def render_html(campaign: Campaign) -> str:
    counts = campaign.counts()
    devices = [d["name"] for d in campaign.devices] or sorted({r.device for r in campaign.results})
    by_key = {(r.procedure, r.device): r for r in campaign.results}
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>csip conformance: {_e(campaign.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Conformance campaign: {_e(campaign.name)}</h1>",
        f"<p>Mode: {_e(campaign.mode)}. Started {_when(campaign.started)}, finished "
        f"{_when(campaign.finished)}. ",
        f"<span class='{'ok' if campaign.ok else 'bad'}'>{counts['pass']} passed, "
        f"{counts['fail']} failed, {counts['error']} errors</span>, "
        f"{counts['not-applicable']} not applicable.</p>",
    ]
    largest = campaign.largest_timing_error()
    if largest is not None:
        out.append(
            f"<p>Largest timing error: {largest[0]:.2f} s ({_e(largest[1])}): how far an "
            "observed event fell outside its nominal window, within the tolerance when it "
            "passed.</p>"
        )
    if campaign.server:
        out.append("<p>Server: " + _e(", ".join(f"{k} {v}" for k, v in campaign.server.items())))
        out.append("</p>")
    for note in campaign.notes:
        out.append(f"<p><em>{_e(note)}</em></p>")
    if campaign.devices:
        out.append("<h2>Devices</h2><table><tr><th>device</th><th>class</th><th>LFDI</th>")
        out.append("<th>function sets</th></tr>")
        for device in campaign.devices:
            out.append(
                f"<tr><td>{_e(device.get('name'))}</td><td>{_e(device.get('class', ''))}</td>"
                f"<td><code>{_e(device.get('lfdi', ''))}</code></td>"
                f"<td>{_e(', '.join(device.get('function_sets', [])))}</td></tr>"
            )
        out.append("</table>")
    out.append("<h2>Matrix</h2><table><tr><th>procedure</th>")
    out.extend(f"<th>{_e(d)}</th>" for d in devices)
    out.append("</tr>")
    for procedure in campaign.procedures:
        title = next((r.title for r in campaign.results if r.procedure == procedure), "")
        out.append(f"<tr><th title='{_e(title)}'>{_e(procedure)}</th>")
        for device in devices:
            result = by_key.get((procedure, device))
            if result is None:
                out.append("<td></td>")
                continue
            tip = result.reason or ", ".join(
                e.id for e in result.expectations if e.verdict != "pass"
            )
            out.append(
                f"<td class='{result.outcome}' title='{_e(tip)}'>"
                f"<a href='#{_anchor(result)}'>{_MARK[result.outcome]}</a></td>"
            )
        out.append("</tr>")
    out.append("</table>")
    failures = [r for r in campaign.results if r.outcome in ("fail", "error")]
    if failures:
        out.append("<h2>Failures</h2>")
    for result in failures:
        out.append(_result_html(result, failure=True))
    others = [r for r in campaign.results if r.outcome not in ("fail", "error")]
    if others:
        out.append("<h2>All results</h2>")
    for result in others:
        out.append(_result_html(result, failure=False))
    out.append("</body></html>")
    return "\n".join(out)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def _result_html(result: ProcedureResult, failure: bool) -> str:
    t0 = result.started
    out = [
        f"<div class='{'failure' if failure else 'result'}' id='{_anchor(result)}'>",
        f"<h3>{_e(result.procedure)} on {_e(result.device)}: {_MARK[result.outcome]}</h3>",
        f"<p><b>{_e(result.title)}</b>. Clause: {_e(result.clause)}. "
        f"Started {_when(t0)}, {result.duration:.1f}s.</p>",
    ]
    if result.reason:
        out.append(f"<p>{_e(result.reason)}</p>")
    for note in result.notes:
        out.append(f"<p><em>{_e(note)}</em></p>")
    if result.expectations:
        out.append("<table><tr><th>expectation</th><th>expected</th><th>window</th>")
        out.append("<th>verdict</th><th>timing error</th><th>what happened</th></tr>")
        for expectation in result.expectations:
            verdict = "pass" if expectation.verdict == "pass" else "fail"
            window = f"+{expectation.window[0]:.1f}s .. +{expectation.window[1]:.1f}s"
            out.append(
                f"<tr><td>{_e(expectation.id)}</td><td>{_e(expectation.description)}</td>"
                f"<td>{window}</td><td class='{verdict}'>{_e(expectation.verdict)}</td>"
                f"<td>{_seconds(expectation.timing_error)}</td>"
                f"<td>{_e(expectation.detail)}</td></tr>"
            )
        out.append("</table>")
    if failure:
        for expectation in result.expectations:
            if expectation.verdict != "pass" and expectation.evidence:
                out.append(f"<p>Messages for <b>{_e(expectation.id)}</b>:</p>")
                out.extend(
                    _exchange_html(result.exchanges[i], t0) for i in expectation.evidence[:30]
                )
    if result.exchanges:
        out.append(
            f"<details><summary>all {len(result.exchanges)} exchanges of the device</summary>"
        )
        out.extend(_exchange_html(e, t0) for e in result.exchanges[:2000])
        out.append("</details>")
    out.append("</div>")
    return "\n".join(out)
