"""docker-compose.yml describes the production topology, and every service runs a real command."""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml

from gridverse.cli import build_parser
from gridverse.settings import REPO_ROOT
from tests.services import unavailable

COMPOSE = REPO_ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates_with_docker_compose() -> None:
    cmd = _compose_command()
    if cmd is None:
        unavailable("no docker compose client: apt-get install docker-compose")
    env = dict(os.environ, INFLUX_TOKEN="t", INFLUX_PASSWORD="p", MQTT_PASSWORD="mq-pw", GRAFANA_ADMIN_PASSWORD="g")
    result = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert {"influxdb", "mosquitto", "simulator", "gateway", "twin", "ui"} <= set(config["services"])
    assert config["services"]["influxdb"]["image"].startswith("influxdb:2")
    # the broker's password and the gateway's come from the same environment variable
    assert config["services"]["mosquitto"]["environment"]["MQTT_PASSWORD"] == "mq-pw"
    gateway_env = config["services"]["gateway"]["environment"]
    assert gateway_env["GRIDVERSE_MQTT__PASSWORD"] == "mq-pw" and gateway_env["GRIDVERSE_MQTT__USERNAME"] == "gridverse"


def test_compose_refuses_to_start_without_an_mqtt_password() -> None:
    cmd = _compose_command()
    if cmd is None:
        unavailable("no docker compose client: apt-get install docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "MQTT_PASSWORD"}
    env.update(INFLUX_TOKEN="t", INFLUX_PASSWORD="p", GRAFANA_ADMIN_PASSWORD="g")
    result = subprocess.run(
        [*cmd, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode != 0 and "MQTT_PASSWORD" in result.stderr


def test_every_service_command_is_a_gridverse_command() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    parser = build_parser()
    for name, service in doc["services"].items():
        if "command" in service:
            args = parser.parse_args(service["command"])  # exits (fails) on an unknown command
            assert args.command == "run", name
