"""gridverse's gateway against thingsboard-gateway, on the same MQTT load, side by side.

Both gateways run as they are deployed, each in its own process, measured one after the other
on the same load (JSON messages of 10 points, QoS 1, 20 sensors, publishers in other processes):

- gridverse: `gridverse --config <bench.yaml> gateway run`: MQTT → durable spool (SQLite) →
  VictoriaMetrics through influxdb-client; points counted from its own `/metrics`.
- thingsboard-gateway (the PyPI release, installed into its own venv on first run): its MQTT
  connector with a JSON converter mapping the same 10 points; its upstream is a second Mosquitto
  standing in for ThingsBoard, where a counter answers the session-limits RPC as ThingsBoard would
  (no rate limits, 64 KiB payloads) and counts the points that arrive on `v1/gateway/telemetry`.
  Its storage is `memory` (its default, and fastest), and, outside `--quick`, also `sqlite` (its
  durable buffer, the like-for-like of our spool).

Phases, for each gateway:
1. the same steady loads (1,000, 5,000 and 20,000 points/s, one after the other): CPU seconds
   per 100,000 points, from the first publish until the last point is delivered;
2. saturation: a backlog published as fast as the publishers can, taken from the broker by the
   gateway's persistent session; points per second from first publish to last delivered.

`points_per_cpu_s_ratio_<load>` is thingsboard-gateway's CPU seconds per point over gridverse's
at that load (thingsboard-gateway at its most frugal storage in the run), so 3 means gridverse
does three times the points per CPU second.

Durability differs, in thingsboard-gateway's favour: gridverse runs with its shipped settings, so
every point is fsynced to its spool (`gateway.spool.durability: power_cut`, SQLite
synchronous=FULL) before its MQTT message is acknowledged; thingsboard-gateway's `memory` storage
keeps nothing across a crash (it acknowledges on receipt), and its `sqlite` storage is written
after the acknowledgement too.

Points per second and CPU seconds per point count the points *published* to the gateway (all of
which it took from the broker), not the points it delivered: thingsboard-gateway stamps readings
with its own receive time in milliseconds, and merges the entries of one device with the same
timestamp when it packs them (`ConvertedData.extend`: same keys, so all but one reading of that
millisecond are overwritten). It therefore delivers fewer points than it was given, and "delivered"
shows how many. Dividing by what it was given is the measure kindest to it.

thingsboard-gateway's upstream is an MQTT publish, cheaper than our HTTP write to a time-series
store with a durable spool before it; the comparison favours it on that count too.

    .venv/bin/python bench/gateway_vs_thingsboard.py [--quick]

Progress on stderr; one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway_mqtt import PUBLISHER, binary, published, publishers  # noqa: E402

from tests.services import free_port, port_open, wait_for  # noqa: E402

TB_VERSION = "3.8.5"
TB_VENV = ROOT / "bench" / ".venv-thingsboard"
SENSORS = 20
#: the equal loads of the CPU comparison (points/s); thingsboard-gateway falls behind at 20,000
#: (its CPU per point is then counted until it has delivered everything)
LOADS = (1_000, 5_000, 20_000)
POINTS = [f"MMXU1.W{i}" for i in range(10)]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: VictoriaMetrics counts a row per field; gridverse writes each point with `value` and `quality`
FIELDS_PER_POINT = 2

#: ThingsBoard's answer to the gateway's `getSessionLimits` RPC: no rate limits, ThingsBoard's
#: default 64 KiB payload limit (its `transport.mqtt.max_payload_size`).
UPSTREAM = r"""
import json, sys, threading, time
import paho.mqtt.client as mqtt
port, out = int(sys.argv[1]), sys.argv[2]
count = [0]
LIMITS = json.dumps({"rateLimits": {}, "gatewayRateLimits": {}, "maxInflightMessages": 10000,
                     "maxPayloadSize": 65536})
def on_message(c, _u, msg):
    if msg.topic == "v1/gateway/telemetry":
        body = json.loads(msg.payload)
        count[0] += sum(len(e.get("values", {})) for entries in body.values() for e in entries)
    elif msg.topic.startswith("v1/devices/me/rpc/request/"):
        c.publish(msg.topic.replace("/request/", "/response/"), LIMITS, qos=1)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="thingsboard-stand-in")
c.on_message = on_message
c.on_connect = lambda c, *_a: c.subscribe([("v1/gateway/telemetry", 1), ("v1/devices/me/rpc/request/+", 1)])
subscribed = threading.Event()
c.on_subscribe = lambda *_a: subscribed.set()
c.connect("127.0.0.1", port)
c.loop_start()
subscribed.wait(30)  # the count file appears once the gateway's RPC cannot be missed
while True:
    time.sleep(0.1)
    with open(out + ".tmp", "w") as f:
        f.write(str(count[0]))
    __import__("os").replace(out + ".tmp", out)
"""


def say(msg: str) -> None:
    print(f"[gateway_vs_thingsboard] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def mosquitto(tmp: Path, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 1000\n"
    )
    proc = subprocess.Popen(
        [binary("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: port_open(port), f"mosquitto ({name})")
    return proc, port


def thingsboard_python() -> str:
    """thingsboard-gateway's own venv (its dependencies are not ours); made on first use."""
    python = TB_VENV / "bin" / "python"
    if not (TB_VENV / "bin" / "thingsboard-gateway").exists():
        say(f"installing thingsboard-gateway {TB_VERSION} from PyPI into {TB_VENV} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(TB_VENV)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"thingsboard-gateway=={TB_VERSION}"],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            sys.exit(f"installing thingsboard-gateway failed:\n{pip.stderr[-3000:]}")
    return str(python)


class GatewayProcess:
    """A gateway under test: its process, its MQTT client id, and how many points it delivered."""

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen,
        client_id: str,
        delivered: Callable[[], int],
        reported: Callable[[], int] | None = None,
    ) -> None:
        self.name, self.proc, self.client_id, self.delivered = name, proc, client_id, delivered
        self.reported = reported  # what the gateway itself says it delivered (checked at the end)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, mqtt_port: int) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        drop_session(mqtt_port, self.client_id)


def drop_session(port: int, client_id: str) -> None:
    """End a stopped gateway's persistent session, or the broker keeps queueing the next
    gateway's load for it."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port, clean_start=True)
    c.loop_start()
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def start_gridverse(tmp: Path, mqtt_port: int, store_url: str) -> GatewayProcess:
    work = tmp / "gridverse"
    work.mkdir()
    (work / "profiles").symlink_to(ROOT / "configs" / "profiles")
    metrics_port = free_port()
    config = yaml.safe_load((ROOT / "configs" / "gridverse.yaml").read_text())  # the shipped file, with:
    config |= {
        "site": {
            "name": "bench",
            "network": config["site"]["network"],  # no Modbus devices: the MQTT path alone
            "substations": [{"name": "ss", "host": "127.0.0.1", "port": 1, "devices": []}],
            "sensors": [
                {
                    "name": f"S{i}",
                    "substation": "ss",
                    "kind": "transformer_thermal",
                    "element": {"kind": "trafo", "index": 0},
                }
                for i in range(SENSORS)
            ],
        },
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "qos": 1},
        "inspection": {**config["inspection"], "substation": "ss"},
        "simulator": {**config["simulator"], "faults": []},
        "historian": {
            "backend": "influxdb",
            "influx": {"url": store_url, "api": "v2", "org": "bench", "bucket": "bench", "database": "bench"},
        },
        # the shipped gateway settings (group commit, power-cut durability, historian writes every
        # 1 s or 5,000 points)
        "gateway": {"metrics_port": metrics_port, "spool": {"path": str(work / "spool.db"), "max_points": 50_000_000}},
    }
    (work / "gridverse.yaml").write_text(yaml.safe_dump(config))
    log = open(work / "gateway.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gridverse"),
            "--config",
            str(work / "gridverse.yaml"),
            "gateway",
            "run",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_for(lambda: port_open(metrics_port), "gridverse gateway /metrics", timeout=60)
    wait_for(lambda: "gridverse_gateway_mqtt_connected 1.0" in _get(url), "gridverse gateway on the broker")

    def delivered() -> int:
        """Counted where the points arrive, as thingsboard-gateway's are (at its upstream): scraping
        the gateway's own /metrics ten times a second would charge the scrapes to its CPU."""
        found = re.findall(r'^vm_rows_inserted_total\{type="influx"\} (\S+)$', _get(f"{store_url}/metrics"), re.M)
        return int(float(found[0])) // FIELDS_PER_POINT if found else 0

    def reported() -> int:
        found = re.findall(r'^gridverse_gateway_points_out_total\{source="mqtt"\} (\S+)$', _get(url), re.M)
        return int(float(found[0])) if found else 0

    return GatewayProcess("gridverse", proc, "gridverse-gateway-bench", delivered, reported)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def start_thingsboard(
    tmp: Path, python: str, mqtt_port: int, storage: str
) -> tuple[GatewayProcess, subprocess.Popen, subprocess.Popen]:
    work = tmp / f"thingsboard-{storage}"
    (work / "config").mkdir(parents=True)
    up_proc, up_port = mosquitto(tmp, f"upstream-{storage}")
    count_file = work / "delivered"
    counter = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port), str(count_file)])
    wait_for(count_file.exists, "thingsboard stand-in")
    no_limit = "0:0"
    main = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": up_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 65536,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "rateLimits": no_limit,
            "dpRateLimits": no_limit,
            "messagesRateLimits": no_limit,
            "deviceMessagesRateLimits": no_limit,
            "deviceRateLimits": no_limit,
            "deviceDpRateLimits": no_limit,
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 10_000_000}
        if storage == "memory"
        else {
            "type": "sqlite",
            "data_file_path": str(work / "data" / "data.db"),
            "messages_ttl_check_in_hours": 1,
            "messages_ttl_in_days": 7,
            "max_read_records_count": 1000,
            "size_limit": 1024,
            "max_db_amount": 10,
        },
        "grpc": {"enabled": False},
        "connectors": [{"type": "mqtt", "name": "sensors", "configuration": "mqtt.json"}],
    }
    mapping = {
        "topicFilter": "gridverse/bench/ss/+/telemetry",
        "subscriptionQos": 1,
        "converter": {
            "type": "json",
            "deviceInfo": {
                "deviceNameExpressionSource": "topic",
                "deviceNameExpression": "(?<=gridverse/bench/ss/)(.*?)(?=/telemetry)",
                "deviceProfileExpressionSource": "constant",
                "deviceProfileExpression": "default",
            },
            "sendDataOnlyOnChange": False,
            "timeout": 60000,
            "attributes": [],
            "timeseries": [{"type": "double", "key": n, "value": '${points."' + n + '".value}'} for n in POINTS],
        },
    }
    connector = {
        "broker": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "clientId": f"tb-bench-{storage}",
            "version": 5,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 100,
            "cleanSession": False,
            "cleanStart": False,
            "sessionExpiryInterval": 3600,
            "security": {"type": "anonymous"},
        },
        "mapping": [mapping],
    }
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(work / "tb.log"),
                "level": os.environ.get("BENCH_TB_LOG", "WARNING"),
            }
        },
        "root": {"level": os.environ.get("BENCH_TB_LOG", "WARNING"), "handlers": ["file"]},
    }
    for name, body in (("tb_gateway.json", main), ("mqtt.json", connector), ("logs.json", logs)):
        (work / "config" / name).write_text(json.dumps(body, indent=1))
    proc = subprocess.Popen(
        [str(Path(python).parent / "thingsboard-gateway")],
        cwd=work,
        env={**os.environ, "TB_GW_CONFIG_DIR": str(work / "config")},
        stdout=subprocess.DEVNULL,
        stderr=open(work / "stderr.log", "w"),  # noqa: SIM115 - the child keeps it open
    )

    def delivered() -> int:
        try:
            return int(count_file.read_text() or 0)
        except (OSError, ValueError):
            return 0

    gw = GatewayProcess(f"thingsboard-gateway ({storage})", proc, f"tb-bench-{storage}", delivered)
    # ready once points come through; before its connector has subscribed, they are not its own
    wait_for(
        lambda: published([backlog_publisher(mqtt_port, 10, "probe")]) and (time.sleep(1) or delivered() > 0),
        "thingsboard-gateway's first points upstream",
        timeout=90,
    )
    time.sleep(3)  # the last probes through, before the measured phases take their base count
    return gw, up_proc, counter


def settle(gw: GatewayProcess, target: int, timeout: float, idle_s: float = 15.0) -> tuple[int, float, float]:
    """Wait until the gateway has delivered `target` points, or delivered nothing more for
    `idle_s` (thingsboard-gateway merges some points, so it never reaches the target); returns
    (delivered, monotonic time and the gateway's CPU seconds at the last delivery), so that the
    idle wait is not counted."""
    last, last_change, cpu_at_last = gw.delivered(), time.monotonic(), gw.cpu()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = gw.delivered()
        if now != last:
            last, last_change, cpu_at_last = now, time.monotonic(), gw.cpu()
        if now >= target or time.monotonic() - last_change > idle_s:
            break
    return last, last_change, cpu_at_last


def load_key(rate: int) -> str:
    return f"{rate // 1000}k"


def steady(gw: GatewayProcess, mqtt_port: int, rate: int, seconds: float, idle_s: float) -> dict:
    say(f"{gw.name}: steady {rate:,} points/s for {seconds:.0f} s")
    base, cpu0 = gw.delivered(), gw.cpu()
    sent = published(publishers(mqtt_port, rate / len(POINTS), seconds, 2)) * len(POINTS)
    got, _, cpu_end = settle(gw, base + sent, timeout=900, idle_s=idle_s)
    cpu = cpu_end - cpu0
    figures = {
        "published": sent,
        "delivered": got - base,
        "cpu_s": round(cpu, 2),
        "cpu_s_per_100k_points": round(cpu / sent * 1e5, 3),
    }
    say(f"{gw.name}: {rate:,}/s: {got - base:,} of {sent:,} delivered, {figures['cpu_s_per_100k_points']} CPU-s/100k")
    return figures


def measure(gw: GatewayProcess, mqtt_port: int, steady_s: float, backlog_points: int, idle_s: float) -> dict:
    out = {load_key(rate): steady(gw, mqtt_port, rate, steady_s, idle_s) for rate in LOADS}
    say(f"{gw.name}: saturation, a backlog of {backlog_points:,} points published as fast as possible")
    base, cpu0, t0 = gw.delivered(), gw.cpu(), time.monotonic()
    messages_each = backlog_points // len(POINTS) // 3
    sent = published([backlog_publisher(mqtt_port, messages_each, f"{i}") for i in range(3)]) * len(POINTS)
    got, last_change, cpu_end = settle(gw, base + sent, timeout=900, idle_s=idle_s)
    cpu = cpu_end - cpu0
    elapsed = last_change - t0
    out["saturation"] = {
        "published": sent,
        "delivered": got - base,
        "seconds": round(elapsed, 1),
        "points_per_s": round(sent / elapsed),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_100k_points": round(cpu / sent * 1e5, 3),
    }
    say(
        f"{gw.name}: saturation: {got - base:,} of {sent:,} delivered in {elapsed:.1f} s: "
        f"{out['saturation']['points_per_s']:,} points/s, {out['saturation']['cpu_s_per_100k_points']} CPU-s/100k"
    )
    if gw.reported is not None and gw.reported() != gw.delivered():
        sys.exit(f"{gw.name}: the store counted {gw.delivered():,} points, the gateway {gw.reported():,}: recount")
    return out


def backlog_publisher(port: int, messages: int, ident: str) -> subprocess.Popen:
    """Publishes `messages` messages as fast as the broker takes them (QoS 1), then prints the count."""
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(port), "0", "3600", f"backlog-{ident}", str(SENSORS), str(messages)],
        stdout=subprocess.PIPE,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases, thingsboard-gateway with memory only")
    args = parser.parse_args()
    # idle_s: how long a gateway delivering nothing more is given (thingsboard-gateway merges
    # some points, so it never reaches the count published)
    steady_s, backlog, idle_s = (6.0, 120_000, 4.0) if args.quick else (30.0, 600_000, 15.0)
    storages = ["memory"] if args.quick else ["memory", "sqlite"]
    tb_python = thingsboard_python()
    tmp = Path(tempfile.mkdtemp(prefix="gridverse-vs-tb-"))
    broker, port = mosquitto(tmp, "sensors")
    vm_port = free_port()
    vm = subprocess.Popen(
        [
            binary("victoria-metrics"),
            f"-storageDataPath={tmp}/vm",
            f"-httpListenAddr=127.0.0.1:{vm_port}",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store_url = f"http://127.0.0.1:{vm_port}"
    wait_for(lambda: "OK" in _get(f"{store_url}/health"), "victoria-metrics")
    results: dict[str, dict] = {}
    extra: list[subprocess.Popen] = [broker, vm]
    try:
        gw = start_gridverse(tmp, port, store_url)
        try:
            results["gridverse"] = measure(gw, port, steady_s, backlog, idle_s)
        finally:
            gw.stop(port)
        for storage in storages:
            tb, up, counter = start_thingsboard(tmp, tb_python, port, storage)
            extra += [up, counter]
            try:
                results[tb.name] = measure(tb, port, steady_s, backlog, idle_s)
            finally:
                tb.stop(port)
                counter.kill()
    finally:
        for p in extra:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    ours = results["gridverse"]
    theirs = [v for k, v in results.items() if k != "gridverse"]
    ratios: dict[str, float] = {}
    for phase in [load_key(rate) for rate in LOADS] + ["saturation"]:
        best = min(v[phase]["cpu_s_per_100k_points"] for v in theirs)  # thingsboard-gateway at its most frugal
        ratios[f"points_per_cpu_s_ratio_{phase}"] = round(best / ours[phase]["cpu_s_per_100k_points"], 2)
    speed = ours["saturation"]["points_per_s"] / max(max(v["saturation"]["points_per_s"] for v in theirs), 1)
    figures = {
        "bench": "gateway_vs_thingsboard",
        "thingsboard_gateway": TB_VERSION,
        "points_per_message": len(POINTS),
        "loads_points_per_s": list(LOADS),
        "gridverse_spool": "sqlite wal, synchronous=full (durability: power_cut), group commit",
        "load_average": round(os.getloadavg()[0], 2),
        **results,
        **ratios,
        "throughput_ratio_saturation": round(speed, 2),
        "saturation_points_per_s": ours["saturation"]["points_per_s"],
        "targets": {
            "3x_per_cpu_s_at_every_load": all(v >= 3.0 for v in ratios.values()),
            "100k_points_per_s_at_saturation": ours["saturation"]["points_per_s"] >= 100_000,
        },
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
