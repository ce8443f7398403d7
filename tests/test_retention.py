"""Retention and downsampling in the embedded historian: raw points for `raw_days`, then 1-minute
and 15-minute min/mean/max/count aggregates, the way InfluxDB users know from retention policies
and downsampling tasks; queries over old ranges read the aggregates, the file stays bounded."""

from __future__ import annotations

import time
from pathlib import Path

from gridverse.config import RetentionConfig
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record

DAY = 86400 * 10**9
MIN = 60 * 10**9
STEP = 10 * 10**9  # a point every 10 s
TAGS = {"site": "rural1", "device": "F1", "point": "MMXU1.TotW"}
# midnight, so the 15-minute and 1-minute buckets line up with the hours written below
NOW = (time.time_ns() // DAY) * DAY


def _quality(i: int) -> str:
    return "suspect" if i % 6 == 5 else "good"


def _hour(start_ns: int, tags: dict[str, str] = TAGS) -> list[Record]:
    """An hour of points: value i at the i-th 10 s; the last point of each minute is suspect."""
    return [
        Record("telemetry", tags, {"value": float(i), "quality": _quality(i)}, start_ns + i * STEP) for i in range(360)
    ]


def test_old_raw_points_become_aggregates_and_recent_ones_stay(tmp_path: Path) -> None:
    h = EmbeddedHistorian(tmp_path / "h.db", retention=RetentionConfig(raw_days=2, minute_days=30, quarter_days=730))
    recent, week, month, ancient = NOW - 1 * DAY, NOW - 7 * DAY, NOW - 40 * DAY, NOW - 3 * 365 * DAY
    for start in (recent, week, month, ancient):
        h.write(_hour(start))
    h.write(_hour(week, {**TAGS, "device": "F2"}))
    assert h.count("telemetry") == 5 * 360
    assert h.run_retention(now_ns=NOW)

    assert h.count("telemetry") == 360  # raw rows older than two days are gone
    raw = h.query("telemetry", tags={"device": "F1"}, start_ns=recent, end_ns=recent + 3600 * 10**9)
    assert [r.fields["value"] for r in raw] == [float(i) for i in range(360)]  # recent raw rows untouched
    assert raw == _hour(recent)

    minutes = h.query("telemetry", tags={"device": "F1"}, start_ns=week, end_ns=week + 3600 * 10**9)
    assert [r.time_ns for r in minutes] == [week + m * MIN for m in range(60)]
    for m, r in enumerate(minutes):  # values 6m .. 6m+5 in minute m
        assert r.fields == {
            "value": 6 * m + 2.5,
            "value_min": 6 * m,
            "value_max": 6 * m + 5,
            "value_count": 6,
            "quality": "suspect",  # the last one in the minute
        }
        assert r.tags == TAGS
    assert len(h.query("telemetry", start_ns=week, end_ns=week + 3600 * 10**9)) == 120  # F1 and F2

    quarters = h.query("telemetry", tags={"device": "F1"}, start_ns=month, end_ns=month + 3600 * 10**9)
    assert [r.time_ns for r in quarters] == [month + q * 15 * MIN for q in range(4)]
    for q, r in enumerate(quarters):  # values 90q .. 90q+89
        assert r.fields["value"] == 90 * q + 44.5
        assert (r.fields["value_min"], r.fields["value_max"], r.fields["value_count"]) == (90 * q, 90 * q + 89, 90)
    assert h.query("telemetry", start_ns=ancient, end_ns=ancient + DAY) == []  # beyond two years: deleted

    # a replay of a moment a week ago (latest in a window) gets the minute's aggregate
    [at] = h.latest("telemetry", tags={"device": "F1"}, start_ns=week + 10 * MIN, end_ns=week + 10 * MIN + 30 * 10**9)
    assert at.time_ns == week + 10 * MIN and at.fields["value"] == 62.5
    [now] = h.latest("telemetry", tags={"device": "F1"})
    assert now.fields == {"value": 359.0, "quality": "suspect"}  # the newest raw row


def test_a_late_point_is_folded_into_its_bucket(tmp_path: Path) -> None:
    h = EmbeddedHistorian(tmp_path / "h.db", retention=RetentionConfig(raw_days=2))
    week = NOW - 7 * DAY
    h.write(_hour(week))
    h.run_retention(now_ns=NOW)
    h.write([Record("telemetry", TAGS, {"value": -100.0, "quality": "good"}, week + 3 * STEP)])  # e.g. a spool backlog
    h.run_retention(now_ns=NOW)
    [first] = h.query("telemetry", start_ns=week, end_ns=week)
    # the bucket had 0..5 (sum 15) and the late -100 written at second 30: its last text value
    assert first.fields["value_count"] == 7 and first.fields["value_min"] == -100.0
    assert first.fields["value"] == (15 - 100) / 7 and first.fields["quality"] == "suspect"
    assert h.count("telemetry") == 0


def test_the_file_stays_bounded_while_history_accumulates(tmp_path: Path) -> None:
    """Two simulated days with short windows (raw 6 h, 1-minute aggregates 12 h, 15-minute ones
    24 h), the job run every simulated hour: once every tier has filled, the file stops growing,
    and the pages retention frees are handed back (auto_vacuum=INCREMENTAL)."""
    retention = RetentionConfig(raw_days=0.25, minute_days=0.5, quarter_days=1.0)
    h = EmbeddedHistorian(tmp_path / "h.db", retention=retention)
    start = NOW - 2 * DAY
    pages: list[int] = []
    for hour in range(48):
        t = start + hour * 3600 * 10**9
        h.write([r for dev in range(4) for r in _hour(t, {**TAGS, "device": f"D{dev}"})])
        h.run_retention(now_ns=t + 3600 * 10**9)
        pages.append(h._conn.execute("PRAGMA page_count").fetchone()[0])
    assert h.count("telemetry") <= 4 * 360 * 7  # six hours raw (and the current quarter)
    assert pages[-1] > 1.5 * pages[3]  # it did fill up first
    assert max(pages[36:]) <= 1.05 * max(pages[24:36]), pages  # then it stays put: nothing grows without bound
    free = h._conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free <= 0.1 * pages[-1]
    assert h.query("telemetry", end_ns=start + 23 * 3600 * 10**9) == []  # older than every window: gone
