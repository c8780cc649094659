"""A VM's idle history as one server-side SVG: the verdict band and each signal's panel.

No JavaScript and no library (the console runs on closed networks). Whatever the number of
samples, the drawing is bounded: the time range is cut into one bucket per two pixels and
each signal keeps only its minimum and maximum per bucket (peaks and dips stay visible,
unlike with averaging), so 50,000 samples draw about as many points as 2,000.

A line is broken, and the band left empty, where the data is missing: between two samples
further apart than IDLE_STALE_SECONDS (the service's own limit: older data counts as
missing, never as idle).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any, cast

from django.utils.html import escape

from idlevm.web.templatetags.console import rate

# (received epoch seconds, idle, cpu_pct, load, disk_bps, net_rx_bps, net_tx_bps)
Sample = tuple[float, bool, float | None, float | None, float | None, float | None, float | None]

WIDTH, LEFT, RIGHT = 900, 74, 16
PLOT = WIDTH - LEFT - RIGHT
BUCKETS = PLOT // 2
BAND_H, PANEL_H, GAP, TOP = 18, 70, 26, 30
COLORS = {"idle": "#6a4fb3", "busy": "#c9ced8", "line": "#1f5fbf", "line2": "#c0561b",
          "grid": "#e3e7ee", "text": "#1d2430", "muted": "#5c6675"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    column: int  # index in Sample
    color: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    series: tuple[Series, ...]
    fmt: Callable[[float], str]


def _number(value: float) -> str:
    return f"{value:g}"


PANELS = (
    Panel("CPU %", (Series("CPU %", 2, COLORS["line"]),), lambda v: f"{v:g} %"),
    Panel("load (1 min)", (Series("load", 3, COLORS["line"]),), _number),
    Panel("disk", (Series("disk", 4, COLORS["line"]),), rate),
    Panel("network", (Series("rx", 5, COLORS["line"]), Series("tx", 6, COLORS["line2"])), rate),
)
HEIGHT = TOP + BAND_H + GAP + len(PANELS) * (PANEL_H + GAP) + 10


@dataclass(frozen=True, slots=True)
class Frame:
    """The drawn time range, and how times map to x."""

    start: float
    end: float
    zone: tzinfo
    gap: float  # seconds between samples beyond which data is missing

    def x(self, t: float) -> float:
        return (
            LEFT + (min(max(t, self.start), self.end) - self.start) / (self.end - self.start) * PLOT
        )


def buckets(times: Sequence[float], frame: Frame) -> list[tuple[int, int]]:
    """Index ranges [lo, hi) of the (time-sorted) samples per bucket; empty ones dropped."""
    width = (frame.end - frame.start) / BUCKETS
    bounds = [bisect_left(times, frame.start + i * width) for i in range(BUCKETS)]
    bounds.append(len(times))
    return [(lo, hi) for lo, hi in pairwise(bounds) if hi > lo]


def extremes(
    times: Sequence[float],
    values: Sequence[float | None],
    ranges: list[tuple[int, int]],
    gap: float,
) -> list[list[tuple[float, float]]]:
    """Per bucket the minimum and maximum (in time order), as polylines split at gaps.

    `values` is one signal's column (None where not reported); min/max run in C on slices.
    """
    lines: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    last_t = -math.inf
    for lo, hi in ranges:
        indexes: Sequence[int] = range(lo, hi)
        present = values[lo:hi]
        if None in present:
            indexes = [i for i in indexes if values[i] is not None]
            present = [values[i] for i in indexes]
            if not indexes:
                continue
        floats = cast(Sequence[float], present)
        low = indexes[floats.index(min(floats))]
        high = indexes[floats.index(max(floats))]
        if times[indexes[0]] - last_t > gap and current:
            lines.append(current)
            current = []
        current += [(times[i], float(cast(float, values[i]))) for i in sorted({low, high})]
        last_t = times[indexes[-1]]
    if current:
        lines.append(current)
    return lines


def verdicts(
    times: Sequence[float], idle: Sequence[bool], ranges: list[tuple[int, int]], frame: Frame
) -> list[tuple[float, float, bool]]:
    """(from, to, idle) stretches: a bucket is idle when all its samples are; each holds
    until the next sample, or until its data would be stale."""
    out: list[tuple[float, float, bool]] = []
    for i, (lo, hi) in enumerate(ranges):
        all_idle = False not in idle[lo:hi]
        until = times[hi - 1] + frame.gap
        if i + 1 < len(ranges):
            until = min(until, times[ranges[i + 1][0]])
        begin = times[lo]
        if out and out[-1][2] == all_idle and out[-1][1] >= begin:
            out[-1] = (out[-1][0], until, all_idle)
        else:
            out.append((begin, until, all_idle))
    return out


def nice_ceiling(value: float) -> float:
    """The next of 1, 2, 2.5, 5 x 10^k at or above value (an axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def ticks(frame: Frame) -> list[tuple[float, str]]:
    """Time-axis ticks at round local times: every 3 h over a day, midnights over a week."""
    span = frame.end - frame.start
    local = datetime.fromtimestamp(frame.start, frame.zone)
    if span <= 2 * 86400:
        step, fmt = 3, "%H:%M"
        first = local.replace(minute=0, second=0, microsecond=0)
        first = first.replace(hour=first.hour - first.hour % step)
    else:
        step, fmt = 24, "%a %d"
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    mark = first
    while mark.timestamp() <= frame.end:
        if mark.timestamp() >= frame.start:
            label = mark.strftime("%a %d %H:%M" if fmt == "%H:%M" and mark.hour == 0 else fmt)
            out.append((mark.timestamp(), label))
        # Wall-clock arithmetic in the zone (a DST day has 23 or 25 hours), then re-resolved.
        mark = (mark.replace(tzinfo=None) + timedelta(hours=step)).replace(tzinfo=frame.zone)
        mark = datetime.fromtimestamp(mark.timestamp(), frame.zone)
    return out


def _points(line: list[tuple[float, float]], frame: Frame, top: float, vmax: float) -> str:
    return " ".join(
        f"{frame.x(t):.1f},{top + PANEL_H - min(v, vmax) / vmax * PANEL_H:.1f}" for t, v in line
    )


def _text(x: float, y: float, text: str, anchor: str = "start", color: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
        f'fill="{color or COLORS["text"]}">{escape(text)}</text>'
    )


def render_chart(samples: Sequence[Sample], frame: Frame, title: str) -> str:
    """The whole SVG (title and every label escaped: VM names come from VM owners)."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="system-ui, sans-serif" '
        f'font-size="11" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        _text(LEFT, 16, title),
    ]
    if not samples:
        out.append(_text(WIDTH / 2, HEIGHT / 2, "no data in this range", "middle",
                         COLORS["muted"]))  # fmt: skip
        out.append("</svg>")
        return "\n".join(out)
    columns: list[Sequence[Any]] = list(zip(*samples, strict=True))  # one tuple per column
    ranges = buckets(columns[0], frame)
    tick_marks = ticks(frame)
    bottom = HEIGHT - 10
    for t, _ in tick_marks:
        x = frame.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom - 12}" '
                   f'stroke="{COLORS["grid"]}"/>')  # fmt: skip
    out += _band(columns, ranges, frame)
    top = TOP + BAND_H + GAP
    for panel in PANELS:
        out += _panel(panel, columns, ranges, frame, top)
        top += PANEL_H + GAP
    out += [_text(frame.x(t), bottom, label, "middle", COLORS["muted"])
            for t, label in tick_marks]  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)


def _band(columns: list[Sequence[Any]], ranges: list[tuple[int, int]], frame: Frame) -> list[str]:
    out = [_text(LEFT - 6, TOP + 13, "verdict", "end"),
           f'<rect x="{LEFT}" y="{TOP}" width="{PLOT}" height="{BAND_H}" fill="#fff" '
           f'stroke="{COLORS["grid"]}"/>']  # fmt: skip
    for begin, until, idle in verdicts(columns[0], columns[1], ranges, frame):
        x0, x1 = frame.x(begin), frame.x(until)
        color = COLORS["idle" if idle else "busy"]
        out.append(f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 0.5):.1f}" '
                   f'height="{BAND_H}" fill="{color}"/>')  # fmt: skip
    legend_x = LEFT + PLOT
    for label, color in (("no data", "#fff"), ("busy", COLORS["busy"]), ("idle", COLORS["idle"])):
        legend_x -= 62
        out.append(f'<rect x="{legend_x}" y="{TOP - 11}" width="10" height="10" fill="{color}" '
                   f'stroke="{COLORS["muted"]}" stroke-width="0.5"/>')  # fmt: skip
        out.append(_text(legend_x + 14, TOP - 2, label, color=COLORS["muted"]))
    return out


def _panel(
    panel: Panel, columns: list[Sequence[Any]], ranges: list[tuple[int, int]], frame: Frame,
    top: float,
) -> list[str]:  # fmt: skip
    lines = [(s, extremes(columns[0], columns[s.column], ranges, frame.gap)) for s in panel.series]
    highest = max((v for _, ls in lines for line in ls for _, v in line), default=0.0)
    vmax = nice_ceiling(highest)
    out = [
        f'<rect x="{LEFT}" y="{top}" width="{PLOT}" height="{PANEL_H}" fill="none" '
        f'stroke="{COLORS["grid"]}"/>',
        _text(LEFT, top - 5, panel.title),
        _text(LEFT - 6, top + 9, panel.fmt(vmax), "end", COLORS["muted"]),
        _text(LEFT - 6, top + PANEL_H, panel.fmt(0), "end", COLORS["muted"]),
    ]
    if len(panel.series) > 1:
        legend_x = LEFT + PLOT
        for series in reversed(panel.series):
            legend_x -= 40
            out.append(f'<line x1="{legend_x}" y1="{top - 9}" x2="{legend_x + 12}" '
                       f'y2="{top - 9}" stroke="{series.color}" stroke-width="2"/>')  # fmt: skip
            out.append(_text(legend_x + 15, top - 5, series.label, color=COLORS["muted"]))
    if not any(ls for _, ls in lines):
        out.append(_text(LEFT + PLOT / 2, top + PANEL_H / 2 + 4, "not reported", "middle",
                         COLORS["muted"]))  # fmt: skip
    for series, polylines in lines:
        for line in polylines:
            if len(line) == 1:  # a lone sample: a dot
                t, v = line[0]
                y = top + PANEL_H - min(v, vmax) / vmax * PANEL_H
                out.append(f'<circle cx="{frame.x(t):.1f}" cy="{y:.1f}" r="1.5" '
                           f'fill="{series.color}"/>')  # fmt: skip
            else:
                out.append(f'<polyline fill="none" stroke="{series.color}" stroke-width="1.2" '
                           f'points="{_points(line, frame, top, vmax)}"/>')  # fmt: skip
    return out
