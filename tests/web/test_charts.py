"""The idle-history SVG: bounded whatever the number of samples, gaps shown as
missing data, time axis in the operator's time zone, every label escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo

from idlevm.web.charts import (
    BUCKETS,
    Frame,
    Sample,
    buckets,
    extremes,
    nice_ceiling,
    render_chart,
    ticks,
    verdicts,
)

UTC = ZoneInfo("UTC")
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
SVG = "{http://www.w3.org/2000/svg}"


def frame(span: float = DAY, zone: str = "UTC", gap: float = 900.0) -> Frame:
    return Frame(start=START, end=START + span, zone=ZoneInfo(zone), gap=gap)


def sample(t: float, idle: bool = True, cpu: float | None = 1.0) -> Sample:
    return (t, idle, cpu, 0.1, 1000.0, 200.0, 100.0)


def every(seconds: float, span: float = DAY, **kw: object) -> list[Sample]:
    count = int(span // seconds)
    return [sample(START + i * seconds, **kw) for i in range(count)]


def polylines(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}polyline"))


def test_50k_samples_make_a_bounded_svg():
    samples = [
        (START + i * DAY / 50_000, i % 7 != 0, float(i % 100), i % 5 / 10, i * 3.0, 1e6, None)
        for i in range(50_000)
    ]
    svg = render_chart(samples, frame(), "50k")
    points = sum(len(p.get("points", "").split()) for p in polylines(svg))
    # Four line series (tx is never reported): at most two points per bucket each.
    assert points <= 4 * 2 * BUCKETS
    assert len(svg) < 120_000, len(svg)


def test_the_same_drawing_size_for_2k_or_50k_samples_over_the_same_range():
    sparse = render_chart(every(DAY / 2_000), frame(), "t")
    dense = render_chart(every(DAY / 50_000), frame(), "t")
    assert len(dense) < 1.3 * len(sparse)


def test_no_samples_say_so():
    svg = render_chart([], frame(), "VM x")
    assert "no data in this range" in svg
    ET.fromstring(svg)  # well-formed


def test_a_gap_longer_than_the_stale_period_breaks_the_lines_and_the_band():
    first = every(60, span=DAY / 4)
    later = [sample(t + DAY / 2) for t, *_ in first]  # 6 h without data in between
    samples = first + later
    f = frame()
    ranges = buckets([s[0] for s in samples], f)
    assert len(extremes([s[0] for s in samples], [s[2] for s in samples], ranges, f.gap)) == 2
    stretches = verdicts([s[0] for s in samples], [s[1] for s in samples], ranges, f)
    assert len(stretches) == 2 and stretches[0][1] < stretches[1][0]


def test_samples_closer_than_the_stale_period_draw_one_line():
    samples = every(300)
    f = frame()
    times = [s[0] for s in samples]
    assert len(extremes(times, [s[2] for s in samples], buckets(times, f), f.gap)) == 1


def test_a_bucket_keeps_its_minimum_and_maximum():
    values = [5.0, 80.0, 1.0, 40.0]
    samples = [sample(START + i, cpu=v) for i, v in enumerate(values)]
    f = frame()
    times = [s[0] for s in samples]
    [line] = extremes(times, [s[2] for s in samples], buckets(times, f), f.gap)
    assert sorted(v for _, v in line) == [1.0, 80.0]
    assert [t for t, _ in line] == sorted(t for t, _ in line)  # in time order


def test_missing_values_are_skipped_and_a_never_reported_signal_says_so():
    samples = every(300, cpu=None)
    svg = render_chart(samples, frame(), "t")
    assert "not reported" in svg  # CPU panel
    assert len(polylines(svg)) == 4  # load, disk, rx, tx


def test_the_verdict_band_is_idle_only_where_every_sample_was_idle():
    samples = [sample(START + i * 60, idle=(i < 100)) for i in range(200)]
    f = frame(span=200 * 60)
    times = [s[0] for s in samples]
    stretches = verdicts(times, [s[1] for s in samples], buckets(times, f), f)
    assert [idle for *_, idle in stretches] == [True, False]
    assert stretches[0][1] == stretches[1][0]  # contiguous


def test_ticks_are_round_local_times():
    f = frame(zone="Asia/Kolkata")  # UTC+5:30: round local hours are not round UTC ones
    marks = ticks(f)
    for t, label in marks:
        local = datetime.fromtimestamp(t, ZoneInfo("Asia/Kolkata"))
        assert (local.minute, local.hour % 3) == (0, 0), label
    assert len(marks) == 8


def test_week_ticks_fall_on_local_midnights_across_a_dst_change():
    start = datetime(2026, 3, 25, 12, tzinfo=UTC).timestamp()  # Paris changes on the 29th
    f = Frame(start=start, end=start + 7 * DAY, zone=ZoneInfo("Europe/Paris"), gap=900.0)
    marks = ticks(f)
    assert len(marks) == 7
    for t, _ in marks:
        local = datetime.fromtimestamp(t, ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (0, 0)


def test_axis_maxima_are_round():
    assert [nice_ceiling(v) for v in (0, 0.07, 1, 3, 42, 99.5, 180)] == [
        1, 0.1, 1, 5, 50, 100, 200,
    ]  # fmt: skip


def test_the_title_is_escaped():
    svg = render_chart(every(300), frame(), '<script>alert("x")</script> & co')
    assert "<script>" not in svg
    root = ET.fromstring(svg)  # still well-formed XML
    assert root.find(f"{SVG}title").text == '<script>alert("x")</script> & co'
