"""The durable spool and the writer that drains it, against real stores: points are on disk
before they are acknowledged, survive a store outage, drain oldest first, and a store that
refuses a point (HTTP 400) has it set aside, not retried forever."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolFull
from gateway.writer import HistorianWriter
from gridverse.config import InfluxConfig
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.historian.influx import InfluxHistorian
from gridverse.points import Point, Record, Source
from tests.services import free_port, influxdb1, wait_for


def _batch(t0: int, k: int, n: int = 10) -> list[Record]:
    return [
        Point(
            "rural1", "primary", "Q01", f"dev{k % 7}", f"MMXU1.W{i}", Source.MQTT, t0 + k * 1000, float(k * n + i)
        ).to_record()
        for i in range(n)
    ]


def test_points_are_on_disk_before_they_are_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_points=10_000)
    store = EmbeddedHistorian(tmp_path / "h.db")
    writer = HistorianWriter(store, spool, flush_interval_s=60)  # the drainer stays idle
    acked: list[int] = []
    on_disk_at_ack: list[int] = []

    def ack(k: int) -> None:
        # another connection to the file sees the points at the moment of the acknowledgement
        on_disk_at_ack.append(Spool(tmp_path / "s.db", max_points=10_000).depth())
        acked.append(k)

    writer.submit_records(_batch(0, 1), lambda: ack(1))
    assert acked == []  # nothing is acknowledged before the commit
    writer.commit()
    assert acked == [1] and on_disk_at_ack == [10]


def _encoded(store: EmbeddedHistorian, records: list[Record]) -> tuple[int, str, bytes]:
    return len(records), "mqtt", store.encode(records)


def test_full_spool_refuses_or_drops_as_configured(tmp_path: Path) -> None:
    codec = EmbeddedHistorian(tmp_path / "h.db")  # the embedded store's spool format
    refuse = Spool(tmp_path / "r.db", max_points=25, policy="reject_new")
    refuse.append([_encoded(codec, _batch(0, 1)), _encoded(codec, _batch(0, 2))])
    with pytest.raises(SpoolFull, match="raise gateway.spool.max_points"):
        refuse.append([_encoded(codec, _batch(0, 3))])
    assert refuse.depth() == 20 and refuse.refused == 10 and refuse.filling()
    drop = Spool(tmp_path / "d.db", max_points=25, policy="drop_oldest")
    for k in range(1, 5):
        drop.append([_encoded(codec, _batch(0, k))])
    kept = [r.fields["value"] for b in drop.oldest(100) for r in codec.decode(b.body)]
    assert drop.dropped == 20 and kept == [float(v) for v in range(30, 50)]  # the newest two batches


def test_writer_keeps_refused_messages_unacknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_points=15)
    writer = HistorianWriter(EmbeddedHistorian(tmp_path / "h.db"), spool, flush_interval_s=60)
    acked: list[int] = []
    writer.submit_records(_batch(0, 1), lambda: acked.append(1))
    writer.commit()
    writer.submit_records(_batch(0, 2), lambda: acked.append(2))
    writer.commit()
    assert acked == [1] and writer.refused == 10  # message 2 stays with the broker for redelivery


def _count(url: str, db: str = "gridverse") -> int:
    q = urllib.parse.urlencode({"db": db, "q": "SELECT COUNT(value) FROM telemetry"})
    body = urllib.request.urlopen(f"{url}/query?{q}").read()
    import json

    series = json.loads(body)["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_store_down_then_back_loses_nothing_and_drains_fast(tmp_path: Path) -> None:
    import urllib.parse

    port, rpc = free_port(), free_port()
    data = tmp_path / "influx"
    data.mkdir()
    spool = Spool(tmp_path / "s.db", max_points=1_000_000)
    t0 = time.time_ns() - 3600 * 10**9
    produced = 0
    with influxdb1(data, port, rpc) as url:
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE gridverse", method="POST")
        )
        store = InfluxHistorian(InfluxConfig(url=url, api="v1", database="gridverse", timeout_s=2))
        writer = HistorianWriter(store, spool, flush_interval_s=0.05)
        writer.start()
        for k in range(200):
            writer.submit_records(_batch(t0, k))
            produced += 10
        wait_for(lambda: writer.pending() == 0, "first drain")
    # the store is down; ingestion goes on for a while (20 s here; the bench runs minutes)
    outage_started = time.monotonic()
    k = 200
    while time.monotonic() - outage_started < 20:
        writer.submit_records(_batch(t0, k))
        produced += 10
        k += 1
        time.sleep(0.01)
    wait_for(lambda: writer.pending() == spool.depth() and spool.depth() > 5000, "spooling", timeout=10)
    assert not writer.store_up
    spooled = spool.depth()
    writes: list[tuple[int, int, int]] = []  # (points, started, finished) of each write after the outage
    writer.on_written = lambda batches, start, end: writes.append((sum(b.points for b in batches), start, end))
    with influxdb1(data, port, rpc) as url:
        wait_for(lambda: writer.pending() == 0, "drain after the outage", timeout=60)
        writer.stop()
        assert _count(url) == produced  # every point, each once
    # drain rate: from the start of the first write that got through to the end of the last
    # (the reconnect back-off before it is not drain time), against the rate points came in
    drained = sum(n for n, _, _ in writes)
    drain_s = (writes[-1][2] - writes[0][1]) / 1e9
    outage_rate = spooled / 20.0
    assert drained / drain_s > 10 * outage_rate, f"drained {drained} in {drain_s:.2f} s"


def test_a_point_the_store_refuses_is_set_aside_and_the_rest_written(tmp_path: Path) -> None:
    import urllib.parse

    with influxdb1(tmp_path) as url:
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE gridverse", method="POST")
        )
        store = InfluxHistorian(InfluxConfig(url=url, api="v1", database="gridverse"))
        t0 = time.time_ns() - 10**9
        good = _batch(t0, 1)
        # the same series with `value` as a string: InfluxDB answers 400 "field type conflict"
        bad = Record("telemetry", dict(good[0].tags), {"value": "not a number", "quality": "good"}, t0 + 5)
        spool = Spool(tmp_path / "s.db", max_points=1000)
        writer = HistorianWriter(store, spool)
        writer.submit_records(good[:5])
        writer.commit()
        writer.flush()
        writer.submit_records([*good[5:], bad])
        writer.commit()
        writer.flush()
        assert spool.depth() == 0 and writer.set_aside == 1
        [(reason, kept)] = spool.rejected()
        assert "400" in reason and b'value="not a number"' in kept  # the refused line, as sent
        assert _count(url) == 10
        threading.Event().wait(0)  # nothing left running
