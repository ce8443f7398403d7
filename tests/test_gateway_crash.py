"""The gateway as its own process against a real Mosquitto: killed with SIGKILL in the middle of
heavy ingestion and started again, it has every point the broker delivered with QoS 1 in the
store, each once; the broker restarting does not stop it either."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gridverse.historian.embedded import EmbeddedHistorian
from tests.helpers import config_dir
from tests.services import mosquitto, wait_for

pytestmark = pytest.mark.e2e
POINTS_PER_MESSAGE = 10


def _gateway(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRIDVERSE_MQTT__HOST": "127.0.0.1", "GRIDVERSE_MQTT__PORT": str(port)}
    cmd = [sys.executable, "-m", "gridverse.cli", "--config", str(config), "gateway", "run", "--log-level", "INFO"]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _payload(k: int, t0_ms: int) -> bytes:
    points = {
        f"YPTR1.Tmp{i}": {"value": float(k * POINTS_PER_MESSAGE + i), "unit": "degC"} for i in range(POINTS_PER_MESSAGE)
    }
    return json.dumps({"time": t0_ms + k, "points": points}).encode()


def _stored(historian_path: Path) -> int:
    h = EmbeddedHistorian(historian_path)
    try:
        return h.count("telemetry", tags={"source": "mqtt"})
    finally:
        h.close()


def test_kill_9_mid_ingestion_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    config = config_dir(tmp_path)  # its RTUs are not running: their polls fail, counted apart
    store = tmp_path / "gridverse.db"
    log = tmp_path / "gateway.log"
    messages = 6000
    t0_ms = int(time.time() * 1000) - 3_600_000
    with mosquitto(tmp_path) as port:
        gateway = _gateway(config, port, log)
        wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
        publisher.max_inflight_messages_set(200)
        publisher.max_queued_messages_set(0)
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        infos = []
        killed_at = None
        for k in range(messages):
            sensor = "T1-oil" if k % 2 else "T2-oil"
            infos.append(publisher.publish(f"gridverse/rural1/primary/{sensor}/telemetry", _payload(k, t0_ms), qos=1))
            if k == messages // 3:
                # heavy ingestion under way: the first points are in the store (a fixed wait was too
                # short once under a loaded CI, and the kill then cut nothing short)
                wait_for(lambda: _stored(store) > 0, "the first points stored before the kill", timeout=60)
                gateway.send_signal(signal.SIGKILL)
                gateway.wait(10)
                killed_at = k
            if k % 500 == 0:
                time.sleep(0.05)
        for info in infos:
            info.wait_for_publish(30)  # the broker has every message (queued for the dead session)
        assert killed_at is not None
        before_restart = _stored(store)
        assert 0 < before_restart < messages * POINTS_PER_MESSAGE  # the kill really cut ingestion short
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: _stored(store) >= messages * POINTS_PER_MESSAGE, "every point stored", timeout=120)
            time.sleep(1.0)  # anything redelivered twice would land now
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
            publisher.loop_stop()
    h = EmbeddedHistorian(store)
    rows = h.query("telemetry", tags={"source": "mqtt"})
    assert len(rows) == messages * POINTS_PER_MESSAGE  # each point once (writes are idempotent by key)
    values = sorted(float(r.fields["value"]) for r in rows)
    assert values == [float(v) for v in range(messages * POINTS_PER_MESSAGE)]


def _publish(port: int, ks: range, t0_ms: int) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{ks.start}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish("gridverse/rural1/primary/T1-oil/telemetry", _payload(k, t0_ms), qos=1) for k in ks]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def test_broker_restart_is_survived_and_ingestion_resumes(tmp_path: Path) -> None:
    config = config_dir(tmp_path)
    store, log = tmp_path / "gridverse.db", tmp_path / "gateway.log"
    t0_ms = int(time.time() * 1000) - 3_600_000
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with mosquitto(broker_dir) as port:
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            _publish(port, range(0, 100), t0_ms)
            wait_for(lambda: _stored(store) == 100 * POINTS_PER_MESSAGE, "first 100 messages", timeout=30)
        except BaseException:
            gateway.kill()
            raise
    try:
        time.sleep(2.0)  # the broker is gone; the gateway keeps retrying
        assert gateway.poll() is None, "the gateway survives the broker's absence"
        with mosquitto(broker_dir, port) as same_port:
            time.sleep(3.0)  # reconnect back-off (1 s minimum) and re-subscription
            _publish(same_port, range(100, 200), t0_ms)
            wait_for(lambda: _stored(store) == 200 * POINTS_PER_MESSAGE, "messages after the restart", timeout=30)
            assert log.read_text().count("MQTT connection lost") == 1  # said once, not once per retry
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)


def test_metrics_health_and_no_secret_in_logs(tmp_path: Path) -> None:
    """A running gateway serves Prometheus counters that match what it stored, a health answer,
    and never writes its MQTT password or store token into its logs."""
    import urllib.request

    from tests.services import free_port

    metrics_port = free_port()
    config = config_dir(tmp_path, lambda d: d["gateway"].update(metrics_port=metrics_port))
    store, log = tmp_path / "gridverse.db", tmp_path / "gateway.log"
    secrets = {
        "GRIDVERSE_MQTT__USERNAME": "gateway",
        "GRIDVERSE_MQTT__PASSWORD": "pw-Zebra-7781",
        "GRIDVERSE_HISTORIAN__INFLUX__TOKEN": "tok-Quokka-5512",
    }
    t0_ms = int(time.time() * 1000) - 3_600_000
    with mosquitto(tmp_path) as port:  # anonymous broker: it ignores the credentials it is given
        os.environ.update(secrets)
        try:
            gateway = _gateway(config, port, log)
        finally:
            for key in secrets:
                os.environ.pop(key)
        try:
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            _publish(port, range(0, 50), t0_ms)
            wait_for(lambda: _stored(store) == 50 * POINTS_PER_MESSAGE, "50 messages", timeout=30)
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health").read())
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
    assert 'gridverse_gateway_points_in_total{source="mqtt"} 500.0' in text
    assert 'gridverse_gateway_points_out_total{source="mqtt"} 500.0' in text
    assert 'gridverse_gateway_device_up{device="F1"} 0.0' in text  # its RTU is not running
    assert "gridverse_gateway_spool_depth_points" in text and "gridverse_gateway_poll_latency_seconds" in text
    assert health["status"] == "ok" and health["store_up"] and "F1" in health["devices_down"]
    logged = log.read_text()
    assert "pw-Zebra-7781" not in logged and "tok-Quokka-5512" not in logged


def test_northbound_republishes_what_was_stored_normalised(tmp_path: Path) -> None:
    """With `gateway.northbound` on, every durable point comes out again on
    `.../<device>/normalised` exactly as it was stored (SI value and quality), and a device that
    does not answer is republished with its bad quality and no value, never a zero."""
    config = config_dir(tmp_path, lambda d: d["gateway"].update(northbound=True))
    store, log = tmp_path / "gridverse.db", tmp_path / "gateway.log"
    heard: list[tuple[str, dict]] = []
    t0_ms = int(time.time() * 1000) - 3_600_000
    with mosquitto(tmp_path) as port:
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-northbound")
        listener.on_message = lambda _c, _u, msg: heard.append((msg.topic, json.loads(msg.payload)))
        listener.connect("127.0.0.1", port)
        listener.subscribe("gridverse/rural1/+/+/normalised", qos=1)
        listener.loop_start()
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            _publish(port, range(0, 5), t0_ms)
            wait_for(lambda: _stored(store) == 5 * POINTS_PER_MESSAGE, "5 messages stored", timeout=30)
            oil = lambda: [p for t, m in heard if t.endswith("/T1-oil/normalised") for p in m["points"]]  # noqa: E731
            wait_for(lambda: len(oil()) == 5 * POINTS_PER_MESSAGE, "5 messages republished", timeout=30)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
            listener.loop_stop()
    h = EmbeddedHistorian(store)
    try:
        stored = {(r.tags["point"], r.time_ns): r.fields for r in h.query("telemetry", tags={"device": "T1-oil"})}
    finally:
        h.close()
    republished = {(p["point"], p["time_ns"]): {k: p[k] for k in ("quality", "value") if k in p} for p in oil()}
    assert republished == stored
    assert all(p["source"] == "mqtt" and p["bay"] == "T1" for p in oil())
    dead = [p for t, m in heard if t.endswith("/F1/normalised") for p in m["points"]]  # its RTU is not running
    assert dead and all(p["quality"] == "comm_fail" and "value" not in p and p["source"] == "modbus" for p in dead)
