"""Start the whole system on one machine: simulator, broker, gateway, twin, detectors, renders, UI."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anomaly.alarms import AlarmBook
from anomaly.service import Detectors
from fieldsim.runner import FieldSimulator
from gateway.service import Gateway
from gridmodel.twin import Twin
from gridverse.config import SERVICE_PARTS, Settings
from gridverse.historian import open_historian
from gridverse.mqtt import EmbeddedBroker, broker_host, make_client, port_is_open, stop_client
from inspection.state import asset_states
from inspection.worker import RenderWorker

log = logging.getLogger(__name__)


PARTS = SERVICE_PARTS


class Stack:
    """Parts of gridverse in one process (the UI in a child process); by default all of them."""

    def __init__(self, settings: Settings, *, with_ui: bool = False, parts: tuple[str, ...] = PARTS) -> None:
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
        self.parts = parts
        if settings.mqtt.host is None and port_is_open("127.0.0.1", settings.mqtt.port):
            log.warning("an MQTT broker already listens on 127.0.0.1:%s; using it", settings.mqtt.port)
            settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": "127.0.0.1"})})
        if settings.mqtt.host is None:
            settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": "127.0.0.1"})})
            self.broker: EmbeddedBroker | None = EmbeddedBroker("127.0.0.1", settings.mqtt.port)
        else:
            self.broker = None
        self.settings = settings
        self.with_ui = with_ui
        self.historian = open_historian(settings.historian)
        self.simulator = FieldSimulator(settings, truth_store=self.historian)
        self.gateway = Gateway(settings, self.historian)
        self.twin: Twin | None = None
        self.alarm_client = make_client(settings.mqtt, f"gridverse-alarms-{settings.site.name}")
        self.detectors: Detectors | None = None
        self.renderer = RenderWorker(settings)
        self.rendered: list[str] = []
        self.render_errors = 0
        self.voltage_errors: list[float] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ui: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        if self.broker is not None:
            await self.broker.start()
        if "inspection" in self.parts:
            await asyncio.to_thread(self.renderer.start)
            self._spawn(self._render_loop, "render")
        if "simulator" in self.parts:
            await self.simulator.start()
        if "gateway" in self.parts:
            await self.gateway.start()
        if "twin" in self.parts:
            self.twin = Twin(self.settings, self.historian)
            self._spawn(self._twin_loop, "twin")
        if "detectors" in self.parts:
            self.alarm_client.connect_async(broker_host(self.settings.mqtt), self.settings.mqtt.port)
            self.alarm_client.loop_start()
            self.detectors = Detectors(
                self.settings, self.historian, AlarmBook(self.settings, self.historian, self.alarm_client)
            )
            self.detectors.start()
        if self.with_ui:
            self._start_ui()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _twin_loop(self) -> None:
        """The twin's cycle, plus a check of each estimate against the simulator's truth."""
        assert self.twin is not None
        sim = self.simulator.sim if "simulator" in self.parts else None
        while not self._stop.wait(self.settings.twin.interval_s):
            try:
                truth = sim.truth.res_bus.vm_pu if sim is not None else None
                result = self.twin.cycle()
            except Exception:
                log.exception("twin cycle failed")
                continue
            if truth is not None and result.estimate is not None and self._telemetry_complete():
                est = result.estimate.res_bus.vm_pu.reindex(truth.index)
                diff = np.abs(est - truth).dropna()
                if len(diff):
                    self.voltage_errors.append(float(diff.max()))

    def _telemetry_complete(self) -> bool:
        return all(p.status.up for p in self.gateway.pollers)

    def _render_loop(self) -> None:
        cfg = self.settings.inspection
        while not self._stop.wait(cfg.every_s if self.rendered else 5.0):
            try:
                since = time.time_ns() - int(30e9)
                states = asset_states(self.settings, self.historian, cfg.substation, since)
                path = self.renderer.render(cfg.substation, states, cfg.output_dir / f"{cfg.substation}.png")
            except Exception:
                self.render_errors += 1
                log.exception("inspection render failed")
                continue
            if str(path) not in self.rendered:
                self.rendered.append(str(path))

    def _start_ui(self) -> None:
        app = Path(__file__).resolve().parents[1] / "ui" / "app.py"
        env = dict(os.environ, GRIDVERSE_HISTORIAN__PATH=str(self.settings.historian.path.resolve()))
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(app),
            "--server.headless=true",
            f"--server.port={self.settings.ui.port}",
            "--browser.gatherUsageStats=false",
        ]
        self._ui = subprocess.Popen(cmd, env=env)

    async def stop(self) -> None:
        self._stop.set()
        if self.detectors is not None:
            self.detectors.stop()
        for thread in self._threads:
            thread.join(30)
        if "inspection" in self.parts:
            self.renderer.stop()
        if "gateway" in self.parts:
            await self._bounded(self.gateway.stop(), "gateway")
        if "simulator" in self.parts:
            await self._bounded(self.simulator.stop(), "simulator")
        if "detectors" in self.parts:
            await asyncio.to_thread(stop_client, self.alarm_client)
        if self.broker is not None:
            await self._bounded(self.broker.stop(), "embedded MQTT broker")
        if self._ui is not None:
            self._ui.terminate()
            self._ui.wait(10)

    @staticmethod
    async def _bounded(stopping: Any, what: str, timeout: float = 15.0) -> None:
        """A part that does not stop in time is logged and left behind, never waited on forever."""
        try:
            await asyncio.wait_for(stopping, timeout)
        except TimeoutError:
            log.error("%s did not stop within %.0f s; continuing shutdown", what, timeout)

    def summary(self) -> dict[str, Any]:
        written = self.gateway.writer.written
        twin = self.twin
        errors = self.voltage_errors
        return {
            "points_stored": {"modbus": written.get("modbus", 0), "mqtt": written.get("mqtt", 0)},
            "points_pending": self.gateway.writer.pending(),
            "mqtt_rejected": self.gateway.mqtt.rejected,
            "devices": self.gateway.device_status(),
            "state_estimation": {
                "cycles": twin.cycles if twin else 0,
                "converged": twin.converged if twin else 0,
                "checked_against_truth": len(errors),
                "max_voltage_error_pu": max(errors) if errors else None,
                "median_cycle_max_error_pu": float(np.median(errors)) if errors else None,
            },
            "alarms_raised": self.detectors.alarms.raised if self.detectors else 0,
            "alarms_active": sorted(f"{a.rule}:{a.device}/{a.point}" for a in self.detectors.alarms.active_alarms())
            if self.detectors
            else [],
            "rendered": self.rendered,
            "historian": self.settings.historian.backend,
        }


async def run_stack(
    settings: Settings,
    *,
    seconds: float | None,
    with_ui: bool,
    progress: bool = True,
    parts: tuple[str, ...] = PARTS,
) -> dict[str, Any]:
    """Run until `seconds` pass (or forever, until cancelled); return the summary."""
    stack = Stack(settings, with_ui=with_ui, parts=parts)
    await stack.start()
    try:
        started = time.monotonic()
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            if progress:
                s = stack.summary()
                elapsed = time.monotonic() - started
                total = f"/{seconds:.0f}" if seconds else ""
                print(
                    f"\r[{elapsed:4.0f}{total} s] points modbus={s['points_stored']['modbus']} "
                    f"mqtt={s['points_stored']['mqtt']}  estimates="
                    f"{s['state_estimation']['converged']}/{s['state_estimation']['cycles']}  "
                    f"alarms={s['alarms_raised']}  renders={len(s['rendered'])}   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if progress:
            print(file=sys.stderr)
        await stack.stop()
    return stack.summary()
