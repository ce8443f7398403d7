"""Failures the gateway logs once are still counted, every time, in /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest

from gateway.service import Gateway
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.settings import load_settings
from tests.helpers import config_dir


def _sample(text: str, name: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} with {label} not exported:\n{text}")


def test_writer_spool_historian_and_poller_failures_are_exported(tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path))
    historian = EmbeddedHistorian(tmp_path / "h.db")

    async def build() -> Gateway:  # pymodbus clients are made inside a running loop
        return Gateway(settings, historian)

    gateway = asyncio.run(build())
    try:
        text = generate_latest(gateway.metrics.registry).decode()
        assert _sample(text, "gridverse_gateway_writer_failures_total", 'kind="drain"') == 0
        gateway.writer.drain_failures = 3
        gateway.writer.commit_failures = 2
        gateway.spool.lost_files = 1
        poller = gateway.pollers[0]
        poller.status.reasons["exception 2 (illegal data address)"] = 4
        text = generate_latest(gateway.metrics.registry).decode()
        assert _sample(text, "gridverse_gateway_writer_failures_total", 'kind="drain"') == 3
        assert _sample(text, "gridverse_gateway_writer_failures_total", 'kind="commit"') == 2
        assert _sample(text, "gridverse_gateway_lost_files_total", 'file="spool"') == 1
        assert _sample(text, "gridverse_gateway_point_errors_total", f'device="{poller.device.name}"') == 4
    finally:
        gateway.spool.close()
        historian.close()
