"""Modbus polling at scale: N simulated devices of 100 holding registers each, polled every
second by the gateway's pollers (one schedule per device, one TCP connection per RTU, block
reads), with the points going through the spool to VictoriaMetrics (line protocol).

The devices are pymodbus' own simulator (SimData/SimDevice), 50 unit ids per RTU port, served
by a separate process so that the gateway's CPU is measured on its own.

    .venv/bin/python bench/gateway_modbus.py [--quick] [--devices 500] [--deadband]

Progress on stderr; one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.spool import Spool
from gateway.writer import HistorianWriter
from gridverse.config import (
    DeviceConfig,
    DeviceProfile,
    GatewayConfig,
    InfluxConfig,
    SubstationConfig,
)
from gridverse.historian.influx import InfluxHistorian
from tests.services import free_port, port_open, wait_for

REGISTERS = 100
UNITS_PER_RTU = 50


def say(msg: str) -> None:
    print(f"[gateway_modbus] {msg}", file=sys.stderr, flush=True)


def serve(ports: list[int], units: int) -> None:
    """Child process: one pymodbus TCP server per port, `units` devices each, values drifting."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    async def main() -> None:
        servers = []
        for port in ports:
            devices = []
            for unit in range(1, units + 1):
                bits = [SimData(0, values=[False] * 16, datatype=SimType.BITS)]
                regs = [
                    SimData(0, values=[(unit * 7 + k) % 65536 for k in range(REGISTERS)], datatype=SimType.REGISTERS)
                ]
                invalid = [SimData(0, count=1, datatype=SimType.INVALID)]
                devices.append(SimDevice(id=unit, simdata=(bits, bits, regs, invalid)))
            server = ModbusTcpServer(devices, address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            servers.append(server)
        await asyncio.Event().wait()

    asyncio.run(main())


class _Store:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url


def store_process(tmp: Path) -> _Store:
    """VictoriaMetrics (Debian's), the same store as the MQTT bench."""
    port = free_port()
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    proc = subprocess.Popen(
        [binary, f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: urllib.request.urlopen(f"{url}/health").status == 200, "victoria-metrics")
    return _Store(proc, url)


def profile(deadband: bool) -> DeviceProfile:
    points = [
        {
            "name": f"GGIO1.AnIn{k}",
            "table": "holding",
            "address": k,
            "type": "u16",
            "unit": "V",
            **({"deadband": 5.0} if deadband else {}),
        }
        for k in range(REGISTERS)
    ]
    return DeviceProfile(name="bench100", points=points)


async def run(devices: int, seconds: float, deadband: bool, tmp: Path) -> dict:
    rtus = -(-devices // UNITS_PER_RTU)
    ports = [free_port() for _ in range(rtus)]
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(ports, UNITS_PER_RTU), daemon=True)
    server.start()
    for port in ports:
        wait_for(lambda p=port: port_open(p), f"simulated RTU on {port}", timeout=60)
    cfg = GatewayConfig(poll_interval_s=1.0, timeout_s=2.0, retries=0, max_gap=8)
    prof = profile(deadband)
    vm = store_process(tmp)
    spool = Spool(tmp / "spool.db", max_points=50_000_000)
    store = InfluxHistorian(InfluxConfig(url=vm.url, api="v2", org="bench", bucket="bench", timeout_s=10))
    writer = HistorianWriter(store, spool, flush_interval_s=0.2, batch_points=50_000)
    writer.start()
    pollers = []
    for r, port in enumerate(ports):
        units = range(1, min(UNITS_PER_RTU, devices - r * UNITS_PER_RTU) + 1)
        sub = SubstationConfig(
            name=f"rtu{r}",
            host="127.0.0.1",
            port=port,
            devices=[DeviceConfig(name=f"d{r}-{u}", bay="b", unit_id=u, profile="bench100") for u in units],
        )
        conn = RtuConnection(sub, cfg)
        pollers += [DevicePoller("bench", sub, d, prof, conn, cfg, writer.submit_records) for d in sub.devices]
    say(f"{len(pollers)} devices on {len(ports)} RTU ports; warming up")
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(3.0)
    for p in pollers:
        p.status.on_time = p.status.late = 0
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    stored0 = sum(writer.written.values())
    say(f"measuring for {seconds:.0f} s")
    await asyncio.sleep(seconds)
    usage1, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
    stored = sum(writer.written.values()) - stored0
    on_time = sum(p.status.on_time for p in pollers)
    late = sum(p.status.late for p in pollers)
    failures = sum(p.status.failures for p in pollers)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=10)
    server.terminate()
    await asyncio.to_thread(writer.stop, 5.0)  # bounded: what is not drained stays spooled
    vm.proc.terminate()
    return {
        "bench": "gateway_modbus",
        "devices": len(pollers),
        "registers_per_device": REGISTERS,
        "rtu_ports": len(ports),
        "poll_period_s": 1.0,
        "seconds": round(elapsed, 1),
        "deadband": deadband,
        "polls": on_time + late,
        "on_time_share": round(on_time / max(on_time + late, 1), 4),
        "poll_failures": failures,
        "points_stored": stored,
        "points_per_s": round(stored / elapsed),
        "gateway_cores": round(cpu / elapsed, 3),
        "targets": {"on_time>=99%": on_time / max(on_time + late, 1) >= 0.99, "under_one_core": cpu / elapsed < 1.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s of measurement instead of 60")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--deadband", action="store_true", help="report by exception (5 V deadband on every point)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gridverse-modbus-"))
    figures = asyncio.run(run(args.devices, 20.0 if args.quick else 60.0, args.deadband, tmp))
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"{figures['on_time_share']:.2%} of {figures['polls']} polls on time, {figures['gateway_cores']} cores")
    print(json.dumps(figures), flush=True)
    os._exit(0)  # pymodbus clients may still hold reconnect timers; the figures are out


if __name__ == "__main__":
    main()
