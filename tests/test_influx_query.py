"""InfluxQL reads against a real InfluxDB 1.6 on loopback: a limit is applied by the server."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from gridverse.config import InfluxConfig
from gridverse.historian.influx import InfluxHistorian
from gridverse.points import Point, Source
from tests.services import influxdb1


def test_query_limit_is_sent_to_the_server_not_applied_after_fetching_everything(tmp_path: Path) -> None:
    """Replaying one moment asks for one row; the server must not send the whole measurement."""
    with influxdb1(tmp_path) as url:
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE gridverse", method="POST")
        )
        h = InfluxHistorian(InfluxConfig(url=url, api="v1", database="gridverse"))
        t0 = time.time_ns() - 3_600_000_000_000
        rows = [
            Point(
                "rural1", "primary", "Q01", dev, "MMXU1.TotW", Source.MODBUS, t0 + i * 1_000_000_000 + k, float(i)
            ).to_record()
            for i in range(400)
            for k, dev in enumerate(("F1", "F2", "F3"))
        ]
        h.write(rows)
        sent: list[int] = []
        select = h._select

        def counting_select(*args: object) -> list:  # counts what the server answered (a spy, not a fake)
            out = select(*args)  # type: ignore[arg-type]
            sent.append(len(out))
            return out

        h._select = counting_select  # type: ignore[method-assign]
        first = h.query("telemetry", limit=2)
        assert [(r.tags["device"], r.time_ns) for r in first] == [("F1", t0), ("F2", t0 + 1)]
        assert sent[-1] <= 2 * 3  # at most `limit` rows per series, not 1,200
        assert len(h.query("telemetry", tags={"device": "F3"})) == 400  # no limit: everything
        h.close()
