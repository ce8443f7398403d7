"""`reject_new` recovers by itself (issue 9): with a tiny spool and the store (a real InfluxDB)
down, MQTT messages the full spool refused stay unacknowledged at a real Mosquitto; when the store
comes back and the spool has room, the writer's `on_room` asks the MQTT side to reconnect its
persistent session, the broker redelivers them, and every valid point ends up stored, without
restarting the gateway (before: 557 of 590 were missing)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.service import Gateway
from gridverse.config import InfluxConfig
from gridverse.historian import open_historian
from gridverse.historian.influx import InfluxHistorian
from gridverse.settings import load_settings
from tests.helpers import config_dir
from tests.services import free_port, influxdb1, mosquitto, wait_for

TOPIC = "gridverse/rural1/primary/T1-oil/telemetry"
MESSAGES = 400


def _stored(url: str) -> set[float]:
    store = InfluxHistorian(InfluxConfig(url=url, api="v1", database="gridverse", timeout_s=2))
    try:
        return {float(r.fields["value"]) for r in store.query("telemetry", tags={"source": "mqtt"})}
    finally:
        store.close()


def test_messages_refused_by_a_full_spool_are_all_stored_once_the_store_is_back(tmp_path: Path) -> None:
    influx_dir = tmp_path / "influx"
    influx_dir.mkdir()
    http, rpc = free_port(), free_port()
    t0_ms = int(time.time() * 1000) - 600_000
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    runner.start()
    with mosquitto(tmp_path) as port:
        with influxdb1(influx_dir, http, rpc) as url:
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE gridverse", method="POST")
            )

            def mutate(doc: dict[str, Any]) -> None:
                doc["mqtt"].update({"host": "127.0.0.1", "port": port})
                doc["historian"].update(
                    {"backend": "influxdb", "influx": {"url": url, "api": "v1", "database": "gridverse"}}
                )
                doc["gateway"]["poll_interval_s"] = 600.0  # its RTUs are not running: one poll, at start
                doc["gateway"]["spool"].update({"max_points": 100, "policy": "reject_new"})

            settings = load_settings(config_dir(tmp_path, mutate))
            historian = open_historian(settings.historian)

            async def start() -> Gateway:
                gateway = Gateway(settings, historian)
                await gateway.start()
                return gateway

            gw = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
            gw.supervise()  # with its watchdog, as the stack runs it (it also watches paho's thread)
            assert gw.mqtt.connected.wait(15)
            assert gw.writer.on_room == gw.mqtt.request_redelivery, "gateway/service.py wires the two"
            wait_for(lambda: gw.writer.pending() == 0, "the first poll's points drained", timeout=30)
        # the store is down: the spool takes 100 points, then refuses; the broker keeps the rest
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor")
        pub.max_inflight_messages_set(50)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        for k in range(MESSAGES):
            body = json.dumps({"time": t0_ms + k, "points": {"YPTR1.TmpOil": {"value": float(k)}}}).encode()
            pub.publish(TOPIC, body, qos=1).wait_for_publish(10)
        wait_for(lambda: gw.writer.refused > 0, "the full spool refusing", timeout=20)
        time.sleep(1.0)
        assert gw.spool.depth() <= 100
        with influxdb1(influx_dir, http, rpc) as url:  # the store comes back, the gateway keeps running
            wait_for(lambda: len(_stored(url)) == MESSAGES, "every valid point stored", timeout=60)
            assert _stored(url) == {float(k) for k in range(MESSAGES)}
            assert gw.mqtt.redeliveries >= 1
            assert gw.watchdog.workers["mqtt-loop"].restarts == 0  # the reconnect is not a dead thread
            assert gw.mqtt.connected.is_set()
            asyncio.run_coroutine_threadsafe(gw.stop(), loop).result(60)
        pub.loop_stop()
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    historian.close()
