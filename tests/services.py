"""Start real servers on free loopback ports for the tests: Mosquitto, InfluxDB 1.x, VictoriaMetrics.

Outside CI a missing server binary skips the test that needs it; with CI=true it fails, so that a
CI run never passes by skipping.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Ports handed out by this process (never twice).
_GIVEN: set[int] = set()
_RANDOM = random.Random()


def free_port() -> int:
    """A loopback port free now, for a server a test starts later. Taken below the kernel's
    ephemeral range: a port the kernel picked (bind to 0) could be handed again to any outgoing
    connection before the server binds it, which once made the demo's RTU fail to listen."""
    low = _ephemeral_low()
    if low > 12000:
        for _ in range(200):
            port = _RANDOM.randrange(10000, low)
            if port in _GIVEN:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _GIVEN.add(port)
            return port
    with socket.socket() as s:  # an unusual range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if path is None:
        unavailable(f"{name} not installed: apt-get install {package}")
    return path


def unavailable(message: str) -> NoReturn:
    """A system service or tool the test needs is missing: a failure in CI, a skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def wait_for(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout} s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def mosquitto(tmp: Path, port: int | None = None, extra: str = "") -> Iterator[int]:
    """Mosquitto on loopback; `extra` adds configuration lines. Its persistent sessions queue
    QoS 1 messages without a limit, as a production broker for a gateway should."""
    binary = require_binary("mosquitto", "mosquitto")
    port = port or free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 0\nmax_inflight_messages 100\n{extra}"
    )
    with process([binary, "-c", str(conf)], tmp / "mosquitto.log"):
        wait_for(lambda: port_open(port), "mosquitto")
        yield port


@contextmanager
def influxdb1(tmp: Path, port: int | None = None, rpc: int | None = None) -> Iterator[str]:
    """InfluxDB 1.x with its data in `tmp`; pass the same tmp and ports again to restart it."""
    binary = require_binary("influxd", "influxdb")
    port, rpc = port or free_port(), rpc or free_port()
    conf = tmp / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{tmp}/meta"\n[data]\n  dir = "{tmp}/data"\n  wal-dir = "{tmp}/wal"\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
    )
    url = f"http://127.0.0.1:{port}"
    with process([binary, "-config", str(conf)], tmp / "influxd.log"):
        wait_for(lambda: urllib.request.urlopen(f"{url}/ping").status == 204, "influxd")
        yield url


@contextmanager
def victoria_metrics(tmp: Path) -> Iterator[str]:
    binary = require_binary("victoria-metrics", "victoria-metrics")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [binary, f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port}"]
    with process(cmd, tmp / "vm.log"):
        wait_for(lambda: urllib.request.urlopen(f"{url}/health").status == 200, "victoria-metrics")
        yield url
