"""Template filters of the console: times in the operator's time zone with relative times,
durations, rates.

    {% load console %}
    {{ vm.idle_received|when }}   -> <time datetime="..." title="(local time)">12 min ago</time>
    {{ vm.idle_for|duration }}    -> 3 h 20 min
    {{ vm.net_rx_bps|rate }}      -> 1.2 kB/s
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """A timestamp as "12 min ago" (or "in 3 min"), the full local time on hover."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    seconds = int((timezone.now() - value).total_seconds())
    text = f"{ago(abs(seconds))} ago" if seconds >= 0 else f"in {ago(-seconds)}"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        text,
    )


def ago(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as "3 h 20 min" ("—" for None)."""
    if seconds is None:
        return "—"
    return ago(int(seconds))


@register.filter
def rate(value: float | None) -> str:
    """Bytes per second, in B/s, kB/s, MB/s, GB/s (powers of 1000)."""
    if value is None:
        return "—"
    for unit in ("B/s", "kB/s", "MB/s"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B/s" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB/s"
