"""Brokers admit only who they should: the embedded one listens on loopback and asks for the
configured user; the production Mosquitto (deploy/mosquitto.conf, started as docker-compose does)
refuses anonymous clients and admits the gateway with the password from the environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from gridverse.config import MqttConfig
from gridverse.mqtt import EmbeddedBroker
from gridverse.settings import REPO_ROOT
from tests.services import free_port, port_open, require_binary, wait_for


def _connect(port: int, username: str | None = None, password: str | None = None, host: str = "127.0.0.1") -> str:
    """The broker's answer to a CONNECT, as paho names it ('Success', 'Not authorized', …)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time_ns()}")
    if username is not None:
        client.username_pw_set(username, password)
    answer: dict[str, str] = {}
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.setdefault("rc", str(reason))
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while "rc" not in answer and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return answer.get("rc", "no answer")


def test_embedded_broker_defaults_to_loopback() -> None:
    broker = EmbeddedBroker.from_config(MqttConfig(port=free_port()))
    assert broker.host == "127.0.0.1" and broker.anonymous

    async def check() -> None:
        await broker.start()
        try:
            # bound to 127.0.0.1 only: another local address (all of 127/8 is this machine) is refused
            with pytest.raises(OSError), socket.create_connection(("127.0.0.2", broker.port), timeout=2):
                pass
            assert await asyncio.to_thread(_connect, broker.port) == "Success"
        finally:
            await broker.stop()

    asyncio.run(check())


def test_embedded_broker_with_a_user_refuses_anonymous_and_wrong_passwords() -> None:
    config = MqttConfig(port=free_port(), username="gw", password="correct-horse")
    broker = EmbeddedBroker.from_config(config)

    async def check() -> None:
        await broker.start()
        try:
            assert await asyncio.to_thread(_connect, broker.port) == "Not authorized"
            assert await asyncio.to_thread(_connect, broker.port, "gw", "wrong") == "Not authorized"
            assert await asyncio.to_thread(_connect, broker.port, "intruder", "correct-horse") == "Not authorized"
            assert await asyncio.to_thread(_connect, broker.port, "gw", "correct-horse") == "Success"
        finally:
            await broker.stop()

    asyncio.run(check())


def _compose_mosquitto_script() -> str:
    doc = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    entrypoint = doc["services"]["mosquitto"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    return entrypoint[2].replace("$$", "$")  # docker-compose's escape for a literal $


def test_production_mosquitto_requires_the_password_from_the_environment() -> None:
    """deploy/mosquitto.conf run the way the compose service runs it, paths moved into tmp."""
    binary = require_binary("mosquitto", "mosquitto")
    require_binary("mosquitto_passwd", "mosquitto")
    port = free_port()
    # Run as root (as in the container), mosquitto drops to its own user: like the image's
    # /mosquitto, the directories must be reachable by it, which pytest's private tmp is not.
    tmp_path = Path(tempfile.mkdtemp(prefix="gridverse-mosquitto-"))
    tmp_path.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "mosquitto", "mosquitto")
    conf = (REPO_ROOT / "deploy" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file" in conf
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1").replace("/mosquitto/data/", f"{data}/")
    conf = conf.replace("/mosquitto/data/passwd", f"{data}/passwd")
    (tmp_path / "mosquitto.conf").write_text(conf)
    script = (
        _compose_mosquitto_script()
        .replace("/mosquitto/config/mosquitto.conf", str(tmp_path / "mosquitto.conf"))
        .replace("/mosquitto/data/", f"{data}/")
        .replace("exec mosquitto ", f"exec {binary} ")
    )
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "MQTT_USERNAME": "gridverse", "MQTT_PASSWORD": "pw from env"}
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port), "mosquitto")
        assert "pw from env" not in (data / "passwd").read_text(), "the password file holds a hash"
        assert _connect(port) == "Not authorized"
        assert _connect(port, "gridverse", "wrong") == "Not authorized"
        assert _connect(port, "gridverse", "pw from env") == "Success"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_stack_embeds_a_broker_that_asks_for_the_configured_user(tmp_path: Path) -> None:
    from gridverse.settings import load_settings
    from gridverse.stack import Stack
    from tests.helpers import config_dir

    env = {"GRIDVERSE_MQTT__USERNAME": "gw", "GRIDVERSE_MQTT__PASSWORD": "stack-pw"}
    stack = Stack(load_settings(config_dir(tmp_path), environ=env), parts=("detectors",))
    try:
        assert stack.broker is not None and stack.broker.host == "127.0.0.1"
        assert stack.broker.username == "gw" and not stack.broker.anonymous
    finally:
        if stack.historian is not None:
            stack.historian.close()
