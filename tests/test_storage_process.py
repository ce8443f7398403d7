"""Storage faults against a real gateway process and a real Mosquitto: the data directory (spool
and embedded historian) deleted while it runs, and files damaged while it is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt

from gridverse.historian.embedded import EmbeddedHistorian
from tests.helpers import config_dir
from tests.services import free_port, mosquitto, wait_for

POINTS = 10


def _gateway(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRIDVERSE_MQTT__HOST": "127.0.0.1", "GRIDVERSE_MQTT__PORT": str(port)}
    cmd = [sys.executable, "-m", "gridverse.cli", "--config", str(config), "gateway", "run", "--log-level", "INFO"]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _publish(port: int, ks: range, t0_ms: int) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{ks.start}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    for k in ks:
        points = {f"YPTR1.Tmp{i}": {"value": float(k * POINTS + i), "unit": "degC"} for i in range(POINTS)}
        body = json.dumps({"time": t0_ms + k, "points": points}).encode()
        infos.append(client.publish("gridverse/rural1/primary/T1-oil/telemetry", body, qos=1))
    for info in infos:
        info.wait_for_publish(30)  # the broker has it (queued for the gateway's session)
    client.disconnect()
    client.loop_stop()


def _values(store: Path) -> set[float]:
    if not store.exists():
        return set()
    h = EmbeddedHistorian(store)
    try:
        return {float(r.fields["value"]) for r in h.query("telemetry", tags={"source": "mqtt"}) if "value" in r.fields}
    finally:
        h.close()


def _health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _config(tmp: Path, metrics_port: int | None = None) -> Path:
    def mutate(doc: dict) -> None:
        doc["historian"]["path"] = str(tmp / "data" / "gridverse.db")
        doc["gateway"]["spool"] = {"path": str(tmp / "data" / "spool.db")}
        doc["gateway"]["metrics_port"] = metrics_port

    return config_dir(tmp, mutate)


def test_deleting_the_data_directory_acknowledges_nothing_that_was_not_durable(tmp_path: Path) -> None:
    """After `rm -rf data/` the gateway says so and acknowledges nothing more; killed then (kill -9)
    and started again, it gets every message published since the deletion from the broker."""
    metrics_port = free_port()
    config = _config(tmp_path, metrics_port)
    store, log = tmp_path / "data" / "gridverse.db", tmp_path / "gateway.log"
    t0_ms = int(time.time() * 1000) - 600_000
    with mosquitto(tmp_path) as port:
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            assert _health(metrics_port)[0] == 200
            _publish(port, range(0, 20), t0_ms)
            wait_for(lambda: len(_values(store)) == 20 * POINTS, "first messages stored", timeout=30)
            shutil.rmtree(tmp_path / "data")
            time.sleep(1.5)  # the committer looks at the file at most once a second
            _publish(port, range(20, 60), t0_ms)
            wait_for(lambda: "spool" in log.read_text() and "was deleted while open" in log.read_text(), "said")
            time.sleep(2.0)  # time enough to (wrongly) acknowledge them
            assert gateway.poll() is None, "the gateway keeps running"
            text = log.read_text()
            assert "LOST if the gateway stops" in text  # the deleted spool still held nothing, or says what
            status, body = _health(metrics_port)
            problems = " ".join(body["problems"])
            assert status == 503 and "spool.db was deleted" in problems and "gridverse.db was deleted" in problems
        finally:
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(10)
        assert not (tmp_path / "data").exists()  # the gateway did not write into a recreated directory
        gateway = _gateway(config, port, log)
        try:
            after = {float(k * POINTS + i) for k in range(20, 60) for i in range(POINTS)}
            wait_for(lambda: after <= _values(store), "every message since the deletion redelivered", timeout=60)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)


def test_a_truncated_historian_and_a_corrupt_spool_at_start_are_moved_aside(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store, spool, log = tmp_path / "data" / "gridverse.db", tmp_path / "data" / "spool.db", tmp_path / "gateway.log"
    t0_ms = int(time.time() * 1000) - 600_000
    with mosquitto(tmp_path) as port:
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            _publish(port, range(0, 30), t0_ms)
            wait_for(lambda: len(_values(store)) == 30 * POINTS, "first messages stored", timeout=30)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
        for path in (store, spool):  # whatever the stop left in the WAL goes into the file itself
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        assert not Path(f"{store}-wal").exists()
        store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])  # truncated to 50 %
        spool.write_bytes(b"\x00" * 100 + spool.read_bytes()[100:])  # a corrupt header
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: log.read_text().count("subscribed to") == 2, "restart", timeout=60)
            _publish(port, range(30, 40), t0_ms)
            wait_for(lambda: len(_values(store)) == 10 * POINTS, "new messages in the fresh store", timeout=30)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
    text = log.read_text()
    assert "Traceback" not in text
    for path in (store, spool):
        [aside] = path.parent.glob(f"{path.name}.corrupt-*")
        assert f"{path} is damaged" in text and str(aside) in text


def test_a_poisoned_batch_left_in_the_spool_is_set_aside_and_the_rest_drains_at_start(tmp_path: Path) -> None:
    """What a gateway that met `"time": 9999999999999` left behind: the oldest spooled batch holds
    a time beyond int64 ns. Started again, the gateway sets that row aside and stores the rest."""
    from gateway.spool import Spool
    from gridverse.points import Point, Source

    config = _config(tmp_path)
    store, log = tmp_path / "data" / "gridverse.db", tmp_path / "gateway.log"
    codec = EmbeddedHistorian(tmp_path / "codec.db")
    t0 = time.time_ns() - 60 * 10**9

    def batch(k: int) -> list:
        return [
            Point(
                "rural1", "primary", "Q01", "T1-oil", f"YPTR1.Tmp{i}", Source.MQTT, t0 + k * 10**6, float(k * 10 + i)
            ).to_record()
            for i in range(POINTS)
        ]

    poisoned = batch(0)
    poisoned[4] = poisoned[4]._replace(time_ns=9999999999999 * 10**6)
    spool = Spool(tmp_path / "data" / "spool.db", max_points=10_000)
    spool.append([(POINTS, "mqtt", codec.encode(poisoned))])
    spool.append([(POINTS, "mqtt", codec.encode(batch(k))) for k in range(1, 20)])
    spool.close()
    with mosquitto(tmp_path) as port:
        gateway = _gateway(config, port, log)
        try:
            wait_for(lambda: len(_values(store)) == 20 * POINTS - 1, "every good spooled row stored", timeout=60)
            # the spool can drain before the gateway's first subscription exists; a message published
            # then has no subscriber at the broker and is dropped by MQTT's rules, not the gateway
            wait_for(lambda: "subscribed to" in log.read_text(), "gateway subscription", timeout=60)
            _publish(port, range(100, 110), int(time.time() * 1000) - 60_000)  # and ingestion goes on
            wait_for(lambda: len(_values(store)) == 30 * POINTS - 1, "new messages stored", timeout=30)
        finally:
            gateway.send_signal(signal.SIGINT)
            gateway.wait(30)
    spool = Spool(tmp_path / "data" / "spool.db", max_points=10_000)
    [(reason, _body)] = spool.rejected()
    assert "beyond int64" in reason and spool.depth() == 0
    assert "kept aside in the spool's rejected table" in log.read_text()
