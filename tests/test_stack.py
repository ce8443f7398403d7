"""The composition root builds only the parts asked for: `gridverse run twin` starts no broker,
spool, gateway or simulator; `/metrics` and `/health` bind loopback unless told otherwise."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import psutil

from gridverse.settings import load_settings
from gridverse.stack import Stack
from tests.helpers import config_dir
from tests.services import free_port, port_open


def test_a_twin_only_stack_builds_no_gateway_spool_broker_or_simulator(tmp_path: Path) -> None:
    metrics_port = free_port()
    main = config_dir(tmp_path, lambda d: d["gateway"].update(metrics_port=metrics_port))
    settings = load_settings(main, environ={})
    assert settings.mqtt.host is None  # the demo's configuration: "start an embedded broker"
    spool = settings.gateway.spool.path

    async def run() -> dict:
        stack = Stack(settings, parts=("twin",))
        assert stack.gateway is None and stack.simulator is None and stack.broker is None
        assert stack.renderer is None and stack.detectors is None
        await stack.start()
        try:
            assert stack.twin is not None
            assert not port_open(settings.mqtt.port), "no MQTT broker for the twin"
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health") as answer:
                health = json.loads(answer.read())
            listening = {
                c.laddr.ip for c in psutil.Process().net_connections(kind="tcp") if c.laddr.port == metrics_port
            }
        finally:
            await stack.stop()
        assert listening == {"127.0.0.1"}  # gateway.metrics_address defaults to loopback
        return health

    health = asyncio.run(run())
    assert not spool.exists(), "no spool file for the twin"
    assert health["status"] == "ok" and set(health["workers"]) == {"twin"}


def test_metrics_bind_the_configured_address(tmp_path: Path) -> None:
    metrics_port = free_port()
    main = config_dir(tmp_path, lambda d: d["gateway"].update(metrics_port=metrics_port, metrics_address="0.0.0.0"))
    settings = load_settings(main, environ={})

    async def run() -> set[str]:
        stack = Stack(settings, parts=())  # nothing but /metrics and /health
        assert stack.historian is None
        await stack.start()
        try:
            return {c.laddr.ip for c in psutil.Process().net_connections(kind="tcp") if c.laddr.port == metrics_port}
        finally:
            await stack.stop()

    assert asyncio.run(run()) == {"0.0.0.0"}


def test_unknown_parts_are_refused_with_the_known_ones() -> None:
    settings = load_settings(environ={})
    try:
        Stack(settings, parts=("twin", "gatway"))
    except ValueError as exc:
        assert "gatway" in str(exc) and "gateway" in str(exc)
    else:
        raise AssertionError("an unknown part was accepted")
