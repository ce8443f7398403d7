"""MQTT → spool → store throughput, latency and drain, with real servers on loopback.

Mosquitto (Debian's) as the broker, VictoriaMetrics (Debian's) as the store (InfluxDB line
protocol through influxdb-client, gzip level 1), the gateway's own MQTT ingest, durable spool and
writer in this process, and publishers in separate processes sending JSON messages of 10 points
with QoS 1:

1. saturation: publishers as fast as they can; points per second stored, and gateway CPU; once
   with the spool at SQLite synchronous=NORMAL (survives the process being killed) and once at
   FULL (an fsync per group commit: survives a power cut; the gateway's shipped default);
2. latency: 20,000 points/s; delay from publish (the payload's time) to stored (write done), p50/p99;
3. outage: the store is killed while 20,000 points/s keep coming, then restarted; drain rate.

    .venv/bin/python bench/gateway_mqtt.py [--quick]        (BENCH_INFLUX_API=v1: the /write path)

Progress on stderr; one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.mqtt_ingest import MqttIngest
from gateway.spool import Spool
from gateway.writer import HistorianWriter
from gridverse.config import InfluxConfig, MqttConfig, SensorConfig
from gridverse.historian.influx import InfluxHistorian
from gridverse.settings import load_settings
from tests.services import free_port, port_open, wait_for

POINTS = 10
SENSORS = 20
STORE_LABEL = {
    "v2": "victoria-metrics via influxdb-client (/api/v2/write, gzip level 1)",
    "v1": "victoria-metrics via /write (gzip level 1)",
}

PUBLISHER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
ident, sensors = sys.argv[4], int(sys.argv[5])
limit = int(sys.argv[6]) if len(sys.argv) > 6 else 0  # messages; 0: as many as `seconds` allow
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{ident}")
c.max_inflight_messages_set(1000); c.max_queued_messages_set(100000)
c.connect("127.0.0.1", port); c.loop_start()
names = [f"MMXU1.W{i}" for i in range(10)]
start = time.time(); k = 0; last = None
while True:
    now = time.time()
    if now - start >= seconds or (limit and k >= limit):
        break
    if rate > 0 and k >= rate * (now - start):
        time.sleep(0.001); continue
    body = json.dumps({"time": now * 1000.0, "points": {n: {"value": k + i * 0.1} for i, n in enumerate(names)}})
    info = c.publish(f"gridverse/bench/ss/S{k % sensors}/telemetry", body, qos=1)
    if info.rc != 0:  # the client's queue is full: let it drain, then send this one again
        time.sleep(0.005); continue
    last = info
    k += 1
if last is not None:
    last.wait_for_publish(60)
c.disconnect(); c.loop_stop()
print(k)
"""


def say(msg: str) -> None:
    print(f"[gateway_mqtt] {msg}", file=sys.stderr, flush=True)


def binary(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.path.exists(path):
        sys.exit(f"{name} not installed: apt-get install {name if name != 'mosquitto' else 'mosquitto'}")
    return path


class Servers:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.mqtt_port, self.vm_port = free_port(), free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 1000\n"
        )
        self.mosquitto = subprocess.Popen(
            [binary("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: port_open(self.mqtt_port), "mosquitto")
        self.vm: subprocess.Popen | None = None
        self.start_store()

    @property
    def store_url(self) -> str:
        return f"http://127.0.0.1:{self.vm_port}"

    def start_store(self) -> None:
        self.vm = subprocess.Popen(
            [
                binary("victoria-metrics"),
                f"-storageDataPath={self.tmp}/vm",
                f"-httpListenAddr=127.0.0.1:{self.vm_port}",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: urllib.request.urlopen(f"{self.store_url}/health").status == 200, "victoria-metrics")

    def kill_store(self) -> None:
        assert self.vm is not None
        self.vm.kill()
        self.vm.wait()

    def close(self) -> None:
        for p in (self.vm, self.mosquitto):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)


def publishers(port: int, total_rate: float, seconds: float, n: int, messages: int = 0) -> list[subprocess.Popen]:
    """`n` publisher processes sharing `total_rate` messages/s (0: as fast as they can) for
    `seconds`, or until they sent `messages` in all (0: no limit)."""
    rate = total_rate / n if total_rate > 0 else 0.0
    each = [str(messages // n)] if messages else []
    return [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(port), str(rate), str(seconds), f"{i}", str(SENSORS), *each],
            stdout=subprocess.PIPE,
        )
        for i in range(n)
    ]


def published(procs: list[subprocess.Popen]) -> int:
    return sum(int(p.communicate(timeout=300)[0].strip() or 0) for p in procs)


class Gateway:
    """The gateway's MQTT path as `gridverse gateway run` builds it, with counters for the bench."""

    def __init__(
        self, tmp: Path, mqtt_port: int, store_url: str, instance: str = "", synchronous: str = "normal"
    ) -> None:
        sensors = [
            SensorConfig(
                name=f"S{i}", substation="ss", kind="transformer_thermal", element={"kind": "trafo", "index": 0}
            )
            for i in range(SENSORS)
        ]
        base = load_settings()  # the shipped configuration, with 20 bench sensors on site "bench"
        shared = {"protocol": "5", "shared_group": "bench", "client_suffix": f"-{instance}"} if instance else {}
        self.settings = base.model_copy(
            update={
                "site": base.site.model_copy(update={"name": "bench", "sensors": sensors}),
                "mqtt": MqttConfig(host="127.0.0.1", port=mqtt_port, qos=1, **shared),
            }
        )
        self.spool = Spool(
            tmp / f"spool{instance}-{synchronous}.db",
            max_points=50_000_000,
            synchronous="full" if synchronous == "full" else "normal",
        )
        api = os.environ.get("BENCH_INFLUX_API", "v2")  # v2: influxdb-client; v1: /write (both gzip level 1)
        store = InfluxHistorian(
            InfluxConfig(url=store_url, api=api, org="bench", bucket="bench", database="bench", timeout_s=5)
        )
        self.writer = HistorianWriter(store, self.spool, flush_interval_s=0.05, batch_points=50_000, max_backoff_s=1.0)
        self.delays: list[np.ndarray] = []
        self.stored = 0
        self.writes: list[tuple[int, int, int]] = []
        self.measure_latency = False
        self.writer.on_written = self._written
        self.ingest = MqttIngest.of(self.settings, self.writer.submit_records, self.writer.submit_records)

    def _written(self, batches, started_ns: int, finished_ns: int) -> None:
        points = sum(b.points for b in batches)
        self.stored += points
        self.writes.append((points, started_ns, finished_ns))
        if self.measure_latency:
            # each batch is one message; its line protocol ends with the publish time in ns
            sent = np.fromiter((int(b.body.rsplit(b" ", 1)[1]) for b in batches), dtype=np.int64, count=len(batches))
            self.delays.append(np.repeat((finished_ns - sent) / 1e9, [b.points for b in batches]))

    def start(self) -> None:
        self.writer.start()
        self.ingest.start()
        if not self.ingest.connected.wait(10):
            raise RuntimeError("the gateway could not connect to mosquitto")

    def stop(self, *, unsubscribe: bool = False) -> None:
        if unsubscribe:  # leave no persistent session behind to queue the next phase's messages
            self.ingest.client.unsubscribe(self.ingest.subscriptions)
            time.sleep(0.3)
        self.ingest.stop()
        self.writer.stop()


def worker(tmp: Path, port: int, store_url: str, instance: str, idle_s: float) -> None:
    """One gateway process on the shared subscription: runs until `idle_s` without new points,
    then prints what it stored, when, and its CPU seconds."""
    gw = Gateway(tmp, port, store_url, instance)
    gw.start()
    print("ready", flush=True)
    cpu0 = time.process_time()
    last_change, last_stored = time.monotonic(), 0
    while True:
        time.sleep(0.2)
        if gw.stored != last_stored:
            last_stored, last_change = gw.stored, time.monotonic()
        elif gw.stored and time.monotonic() - last_change > idle_s and not gw.writer.pending():
            break
    cpu = time.process_time() - cpu0
    gw.stop(unsubscribe=True)
    writes = gw.writes
    print(json.dumps({"stored": gw.stored, "first_ns": writes[0][1], "last_ns": writes[-1][2], "cpu_s": cpu}))


def shared_saturation(tmp: Path, servers: Servers, gateways: int, seconds: float, messages: int = 0) -> dict:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(servers.mqtt_port), servers.store_url, f"w{k}", str(tmp)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(gateways)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    sent = published(publishers(servers.mqtt_port, 0, seconds, 3, messages))
    results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    stored = sum(r["stored"] for r in results)
    span = (max(r["last_ns"] for r in results) - min(r["first_ns"] for r in results)) / 1e9
    return {
        "gateways": gateways,
        "published": sent * POINTS,
        "stored": stored,
        "points_per_s": round(stored / span),
        "cpu_s_per_100k_points": round(sum(r["cpu_s"] for r in results) / max(stored, 1) * 1e5, 3),
        "split": [r["stored"] for r in results],
    }


def wait_drained(gw: Gateway, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
        gw.writer.pending() or gw.ingest.received * POINTS > gw.stored + gw.ingest.rejected * POINTS
    ):
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases (about 1.5 minutes in all)")
    parser.add_argument("--gateways", type=int, default=2, help="gateway processes on one shared subscription")
    parser.add_argument("--worker", nargs=4, metavar=("PORT", "STORE", "NAME", "TMP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        port, store_url, name, tmp_dir = args.worker
        worker(Path(tmp_dir), int(port), store_url, name, idle_s=3.0)
        return
    sat_s, lat_s, outage_s = (12.0, 10.0, 15.0) if args.quick else (30.0, 30.0, 120.0)
    # publishers outrun one gateway: in --quick a saturation phase stops at 30,000 messages
    # (300,000 points), or it would spend minutes draining the backlog
    sat_messages = 30_000 if args.quick else 0
    tmp = Path(tempfile.mkdtemp(prefix="gridverse-bench-"))
    servers = Servers(tmp)
    gw = Gateway(tmp, servers.mqtt_port, servers.store_url)
    try:
        sat: dict[str, dict[str, float]] = {}
        for sync in ("normal", "full"):
            if sync == "full":  # a fresh gateway, its spool fsynced at every group commit
                gw.stop(unsubscribe=True)
                gw = Gateway(tmp, servers.mqtt_port, servers.store_url, synchronous="full")
            gw.start()
            say(f"saturation, spool synchronous={sync}: 3 publishers as fast as they can for {sat_s:.0f} s")
            cpu0, stored0, t0 = time.process_time(), gw.stored, time.monotonic()
            commits0 = gw.writer.commits
            sent = published(publishers(servers.mqtt_port, 0, sat_s, 3, sat_messages))
            wait_drained(gw, 120)
            elapsed = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            sat_points = gw.stored - stored0
            sat[sync] = {
                "points_per_s": round(sat_points / elapsed),
                "published": sent * POINTS,
                "cpu_s": round(cpu, 2),
                "cpu_s_per_100k_points": round(cpu / max(sat_points, 1) * 1e5, 3),
                "commits_per_s": round((gw.writer.commits - commits0) / elapsed, 1),
            }
            say(
                f"saturation ({sync}): {sent * POINTS} points published, {sat_points} stored in {elapsed:.1f} s "
                f"({sat_points / elapsed:,.0f} points/s), gateway CPU {cpu:.1f} s, "
                f"{sat[sync]['commits_per_s']} commits/s"
            )
        sent, cpu = sat["normal"]["published"] // POINTS, sat["normal"]["cpu_s"]
        sat_rate = sat["normal"]["points_per_s"]

        gw.stop(unsubscribe=True)
        say(f"saturation, {args.gateways} gateway processes on an MQTT 5 shared subscription")
        shared = shared_saturation(tmp, servers, args.gateways, sat_s, sat_messages)
        say(
            f"shared: {shared['published']} published, {shared['stored']} stored, {shared['points_per_s']:,} "
            f"points/s, split {shared['split']}"
        )
        gw = Gateway(tmp, servers.mqtt_port, servers.store_url)
        gw.start()

        say(f"latency: 20,000 points/s for {lat_s:.0f} s")
        gw.measure_latency = True
        stored0 = gw.stored
        procs = publishers(servers.mqtt_port, 2000, lat_s, 2)
        lat_sent = published(procs)
        wait_drained(gw, 60)
        gw.measure_latency = False
        delays = np.concatenate(gw.delays) if gw.delays else np.array([np.nan])
        say(f"latency: p50 {np.median(delays) * 1000:.0f} ms, p99 {np.quantile(delays, 0.99) * 1000:.0f} ms")

        say(f"outage: store killed for {outage_s:.0f} s while 20,000 points/s keep coming")
        stored0 = gw.stored
        procs = publishers(servers.mqtt_port, 2000, outage_s, 2)
        time.sleep(0.5)
        servers.kill_store()
        time.sleep(outage_s - 0.5)
        outage_sent = published(procs)
        spooled = gw.spool.depth()
        say(f"outage: {spooled} points spooled; store restarting")
        gw.writes.clear()
        servers.start_store()
        wait_drained(gw, 300)
        drained = sum(n for n, _, _ in gw.writes)
        drain_s = (gw.writes[-1][2] - gw.writes[0][1]) / 1e9 if gw.writes else float("nan")
        drain_rate = drained / drain_s
        say(f"outage: drained {drained} points in {drain_s:.2f} s ({drain_rate:,.0f} points/s)")
        lost = (outage_sent * POINTS) - (gw.stored - stored0)
        figures = {
            "bench": "gateway_mqtt",
            "broker": "mosquitto",
            "store": STORE_LABEL[os.environ.get("BENCH_INFLUX_API", "v2")],
            "points_per_message": POINTS,
            "spool": "sqlite wal, synchronous=normal (saturation_full: synchronous=full), group commit",
            "saturation_points_per_s": sat_rate,
            "saturation_published": sent * POINTS,
            "saturation_gateway_cpu_s": cpu,
            "gateway_cpu_s_per_100k_points": sat["normal"]["cpu_s_per_100k_points"],
            "saturation_full_points_per_s": sat["full"]["points_per_s"],
            "saturation_full_gateway_cpu_s_per_100k_points": sat["full"]["cpu_s_per_100k_points"],
            "saturation_full_commits_per_s": sat["full"]["commits_per_s"],
            "full_over_normal_throughput": round(sat["full"]["points_per_s"] / max(sat_rate, 1), 2),
            "load_average": round(os.getloadavg()[0], 2),
            "shared_subscription": shared,
            "latency_rate_points_per_s": round(lat_sent * POINTS / lat_s),
            "latency_p50_s": round(float(np.median(delays)), 4),
            "latency_p99_s": round(float(np.quantile(delays, 0.99)), 4),
            "outage_s": outage_s,
            "outage_ingest_points_per_s": round(outage_sent * POINTS / outage_s),
            "outage_spooled_points": spooled,
            "drain_points_per_s": round(drain_rate),
            "drain_over_ingest": round(drain_rate / (outage_sent * POINTS / outage_s), 1),
            "points_lost_in_outage": int(lost),
            "targets": {
                "saturation>=50k/s": max(sat_rate, shared["points_per_s"]) >= 50_000,
                "drain>=10x": drain_rate >= 10 * outage_sent * POINTS / outage_s,
                "no_loss": lost == 0,
            },
        }
    finally:
        gw.stop()
        servers.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
