"""Plots as inline SVG, drawn on the server: no JavaScript, no library, nothing fetched, and
a page that prints and screenshots exactly as it renders. Presentation attributes only (no
style attributes), so the console's Content-Security-Policy can forbid inline styles.

Every text that reaches the SVG is escaped here; the callers pass numbers and labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

#: Colours of the series, in order (colour-blind-safe Okabe-Ito).
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
#: Timeline colours per event status.
STATUS_COLOURS = {
    "scheduled": "#56B4E9",
    "active": "#009E73",
    "done": "#999999",
    "cancelled": "#D55E00",
    "superseded": "#E69F00",
}
Series = tuple[str, Sequence[tuple[float, float]]]


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


def _label(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _time_label(epoch: float, span: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%H:%M" if span <= 2 * 86400 else "%m-%d")


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str,
    width: int = 640,
    height: int = 220,
    marker: float | None = None,
    ordered: bool = False,
) -> Markup:
    """Lines over time (x: epoch seconds, UTC axis); `marker` draws a vertical "now";
    `ordered`: the points are drawn in the order given (steps repeat an x), not sorted."""
    left, right, top, bottom = 56, 12, 28, 28
    points = [p for _, data in series for p in data if math.isfinite(p[1])]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
            "no data yet</text></svg>"
        )
        return Markup("".join(parts))  # noqa: S704 - every text above is escaped
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    if marker is not None:
        x0, x1 = min(x0, marker), max(x1, marker)
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = min(0.0, min(ys)), max(ys)
    if y1 == y0:
        y1 = y0 + 1
    step = _nice_step(y1 - y0)
    y0 = math.floor(y0 / step) * step
    y1 = math.ceil(y1 / step) * step
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    tick = y0
    while tick <= y1 + step / 2:
        y = sy(tick)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(_label(tick))}</text>"
        )
        tick += step
    span = x1 - x0
    for i in range(6):
        x = x0 + span * i / 5
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - 8}" font-size="11" text-anchor="middle">'
            f"{escape(_time_label(x, span))}</text>"
        )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" text-anchor="middle">'
        f"{escape(unit)}</text>"
    )
    if marker is not None:
        mx = sx(marker)
        parts.append(
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="#333" stroke-dasharray="4 3"/>'
            f'<text x="{mx + 3:.1f}" y="{top + 10}" font-size="10">now</text>'
        )
    legend_x = width - right
    for index, (name, data) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        finite = [(x, y) for x, y in data if math.isfinite(y)]
        if not ordered:
            finite.sort()
        if finite:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
            parts.append(
                f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{path}"/>'
            )
            if len(finite) == 1:
                x, y = finite[0]
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        parts.append(
            f'<text x="{legend_x}" y="{16 + 13 * index}" font-size="11" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped


def timeline(
    rows: Sequence[tuple[str, float | None, float | None, str, str]],
    *,
    now: float,
    width: int = 900,
) -> Markup:
    """One bar per event: (label, start, end, status, link). Colour says the status."""
    left, right, top, row_h = 180, 16, 24, 22
    height = top + row_h * max(1, len(rows)) + 24
    timed = [(s, e) for _, s, e, _, _ in rows if s is not None and e is not None]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'aria-label="event timeline"><title>event timeline</title>'
    ]
    if not timed:
        parts.append(f'<text x="{left}" y="{top + 14}" fill="#666">no events yet</text></svg>')
        return Markup("".join(parts))  # noqa: S704 - no request text
    x0 = min(min(s for s, _ in timed), now)
    x1 = max(max(e for _, e in timed), now)
    pad = (x1 - x0) * 0.03 or 3600
    x0, x1 = x0 - pad, x1 + pad
    plot_w = width - left - right

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - 6}" font-size="11" text-anchor="middle">'
            f"{escape(datetime.fromtimestamp(x, UTC).strftime('%m-%d %H:%M'))}</text>"
        )
    for index, (label, start, end, status, link) in enumerate(rows):
        y = top + index * row_h
        parts.append(
            f'<a href="{escape(link)}"><text x="{left - 8}" y="{y + 14}" font-size="12" '
            f'text-anchor="end">{escape(label[:28])}</text></a>'
        )
        if start is None or end is None:
            continue
        colour = STATUS_COLOURS.get(status, "#777")
        bar_w = max(3.0, sx(end) - sx(start))
        parts.append(
            f'<a href="{escape(link)}"><rect class="event {escape(status)}" x="{sx(start):.1f}" '
            f'y="{y + 3}" width="{bar_w:.1f}" height="{row_h - 6}" rx="3" fill="{colour}">'
            f"<title>{escape(label)}: {escape(status)}</title></rect></a>"
        )
    nx = sx(now)
    parts.append(
        f'<line x1="{nx:.1f}" x2="{nx:.1f}" y1="{top - 6}" y2="{height - 20}" stroke="#333" '
        f'stroke-dasharray="4 3"/><text x="{nx + 3:.1f}" y="{top - 8}" font-size="10">now</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above is escaped
