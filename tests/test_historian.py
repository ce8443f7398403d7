"""Historian backends: the embedded store, and InfluxDB/VictoriaMetrics servers on loopback."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gridverse.config import InfluxConfig
from gridverse.historian import HistorianError
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.historian.influx import InfluxHistorian
from gridverse.points import Point, Quality, Record, Source
from tests.services import free_port, influxdb1, victoria_metrics


def _points(t0: int, n: int = 3) -> list[Record]:
    out = []
    for i in range(n):
        for dev in ("F1", "F2"):
            out.append(
                Point(
                    "rural1",
                    "primary",
                    "Q01",
                    dev,
                    "MMXU1.TotW",
                    Source.MODBUS,
                    t0 + i * 1_000_000_000,
                    1000.0 * i + (dev == "F2"),
                ).to_record()
            )
    out.append(
        Point("rural1", "primary", "Q03", "F3", "MMXU1.TotW", Source.MODBUS, t0, None, Quality.COMM_FAIL).to_record()
    )
    return out


def test_embedded_is_idempotent_and_answers_latest(tmp_path: Path) -> None:
    h = EmbeddedHistorian(tmp_path / "h.db")
    t0 = time.time_ns()
    h.write(_points(t0))
    h.write(_points(t0))  # the same rows again: still one each
    assert h.count("telemetry") == 7
    latest = {r.tags["device"]: r for r in h.latest("telemetry")}
    assert latest["F1"].fields["value"] == 2000.0 and latest["F2"].fields["value"] == 2001.0
    assert latest["F3"].fields == {"quality": "comm_fail"}  # no believable zero
    assert [r.fields["value"] for r in h.query("telemetry", tags={"device": "F1"})] == [0, 1000, 2000]


def test_embedded_reader_sees_writer(tmp_path: Path) -> None:
    writer, reader = EmbeddedHistorian(tmp_path / "h.db"), EmbeddedHistorian(tmp_path / "h.db")
    writer.write(_points(time.time_ns()))
    assert len(reader.latest("telemetry")) == 3


def test_influxdb_v1_write_and_read_back(tmp_path: Path) -> None:
    with influxdb1(tmp_path) as url:
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE gridverse", method="POST")
        )
        h = InfluxHistorian(InfluxConfig(url=url, api="v1", database="gridverse"))
        t0 = time.time_ns() - 10_000_000_000
        h.write(_points(t0))
        h.write(_points(t0))
        rows = h.query("telemetry", tags={"device": "F1"})
        assert [r.fields["value"] for r in rows] == [0.0, 1000.0, 2000.0]
        assert rows[0].tags["ln_class"] == "MMXU" and rows[0].time_ns == t0
        latest = {r.tags["device"]: r for r in h.latest("telemetry")}
        assert latest["F2"].fields["value"] == 2001.0
        assert latest["F3"].fields["quality"] == "comm_fail" and "value" not in latest["F3"].fields
        assert Point.from_record(latest["F1"]).value == 2000.0
        h.close()


def test_influxdb_down_is_a_clear_error() -> None:
    h = InfluxHistorian(InfluxConfig(url=f"http://127.0.0.1:{free_port()}", api="v1", timeout_s=2))
    with pytest.raises(HistorianError, match="unreachable.*is the server up"):
        h.write(_points(time.time_ns()))


def test_influxdb_client_v2_write_reaches_victoria_metrics(tmp_path: Path) -> None:
    """The v2 path (influxdb-client, gzip) against a real server accepting /api/v2/write."""
    with victoria_metrics(tmp_path) as url:
        h = InfluxHistorian(InfluxConfig(url=url, api="v2", org="o", bucket="b"))
        t0 = (time.time_ns() // 1_000_000_000 - 30) * 1_000_000_000
        h.write(_points(t0))
        urllib.request.urlopen(f"{url}/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": 'telemetry_value{device="F1"}'})
        deadline = time.monotonic() + 15
        series: list[dict] = []
        while time.monotonic() < deadline and not series:
            with urllib.request.urlopen(f"{url}/api/v1/export?{query}") as resp:
                series = [json.loads(line) for line in resp.read().splitlines() if line]
            time.sleep(0.3)
        assert len(series) == 1
        assert series[0]["metric"]["ln_class"] == "MMXU"
        assert series[0]["values"] == [0.0, 1000.0, 2000.0]
        assert series[0]["timestamps"][0] == t0 // 1_000_000
        h.close()


def test_embedded_reads_a_file_written_in_the_first_layout(tmp_path: Path) -> None:
    """A store written before retention (one `records` table repeating the tags on every row)
    is moved to the compact layout at open, every row kept."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE records (measurement TEXT NOT NULL, series TEXT NOT NULL, time_ns INTEGER NOT NULL,
        tags TEXT NOT NULL, fields TEXT NOT NULL, PRIMARY KEY (measurement, series, time_ns)) WITHOUT ROWID;
        CREATE INDEX records_by_time ON records (measurement, time_ns);"""
    )
    t0 = time.time_ns()
    conn.executemany(
        "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
        [
            (r.measurement, r.series_key(), r.time_ns, json.dumps(r.tags, sort_keys=True), json.dumps(r.fields))
            for r in _points(t0)
        ],
    )
    conn.commit()
    conn.close()
    h = EmbeddedHistorian(path)
    assert h.count("telemetry") == 7
    assert [r.fields["value"] for r in h.query("telemetry", tags={"device": "F1"})] == [0, 1000, 2000]
    assert {r.tags["device"] for r in h.latest("telemetry")} == {"F1", "F2", "F3"}


def test_embedded_refuses_a_row_it_can_never_hold_with_a_clear_error(tmp_path: Path) -> None:
    from gridverse.historian.base import HistorianRejected

    h = EmbeddedHistorian(tmp_path / "h.db")
    good = _points(time.time_ns())
    poisoned = good[0]._replace(time_ns=9999999999999 * 1_000_000)  # ms read as ms, then to ns: > int64
    with pytest.raises(HistorianRejected, match="beyond int64"):
        h.write([*good, poisoned])
    with pytest.raises(HistorianRejected, match="type list"):
        h.write([good[0]._replace(fields={"value": [1, 2]})])
    h.write(good)  # the store is fine: only those rows are refused
    assert h.count("telemetry") == 7 and h.problem() is None


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (Record("m", {"site": "s"}, {"v": 1.5, "q": "good", "ok": True, "n": 3}, 10), None),
        (Record("m", {"site": 1}, {"v": 1.5}, 10), "tags"),  # type: ignore[dict-item]
        (Record("m", {1: "s"}, {"v": 1.5}, 10), "tags"),  # type: ignore[dict-item]
        (Record("m", {"site": "s"}, {1: 1.5}, 10), "field name"),  # type: ignore[dict-item]
        (Record("m", {"site": "s"}, {"v": [1.5]}, 10), "type list"),  # type: ignore[dict-item]
        (Record("m", {"site": "s"}, {"v": 2**70}, 10), "beyond int64"),
        (Record("m", {"site": "s"}, {}, 10), "non-empty"),
        (Record("m", {"site": "s"}, {"v": 1.5}, 10.0), "not an integer"),  # type: ignore[arg-type]
        (Record("m", {"site": "s"}, {"v": 1.5}, 2**64), "beyond int64"),
        (Record("", {"site": "s"}, {"v": 1.5}, 10), "not a name"),
        (("m", {"site": "s"}, {"v": 1.5}, 10), None),  # a plain tuple of the four is a record too
        ("m", "not a record"),
    ],
)
def test_every_kind_of_unstorable_record_is_named_and_a_good_one_passes(record, why) -> None:
    """The embedded store checks every row before it writes (a poisoned batch must be refused
    by name, never half-written); the fast path for good rows must refuse what the full check does."""
    from gridverse.historian.base import record_problem

    found = record_problem(record)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found
