"""Run the field simulator: step the grid on an accelerated clock, serve RTUs, publish sensors."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fieldsim.grid import GridSimulator, Truth
from fieldsim.instruments import Instruments
from fieldsim.modbus_rtu import DeviceImage, RtuServer
from gridmodel.network import load_grid
from gridverse.config import FaultKind, Settings
from gridverse.historian import Historian
from gridverse.mqtt import broker_host, make_client, stop_client, topic
from gridverse.points import Record
from gridverse.schema import SIM_CLOCK, SIM_TRUTH
from gridverse.watchdog import DEFAULT_MISSES, Watchdog, Worker, in_daemon_thread

log = logging.getLogger(__name__)


class FieldSimulator:
    """The stand-in for the physical grid. Writes its ground truth to `sim_truth` for evaluation."""

    def __init__(self, settings: Settings, truth_store: Historian | None = None) -> None:
        self.settings = settings
        self.truth_store = truth_store
        self.instruments = Instruments(settings.simulator, settings.site.sensors)
        self.images: dict[str, DeviceImage] = {}
        self.servers: list[RtuServer] = []
        self.sim: GridSimulator | None = None
        self._mqtt = make_client(settings.mqtt, f"gridverse-fieldsim-{settings.site.name}")
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self.worker = Worker("simulation step (previous readings kept)", logger=log)  # the watchdog's once started
        self._last_sim_time = None
        self.published = 0

    async def start(self, watchdog: Watchdog | None = None) -> None:
        """Load the grid, serve the RTUs, connect the sensors' publisher and step the grid every
        `simulator.step_s`; `watchdog` (when given) restarts the step loop or the publisher's
        network thread when they end, and reports a loop that stopped stepping."""
        grid = await in_daemon_thread(load_grid, self.settings.site.network)
        self.sim = GridSimulator(grid, self.settings.simulator)
        for sub in self.settings.site.substations:
            for dev in sub.devices:
                self.images[dev.name] = DeviceImage(dev, self.settings.profiles[dev.profile])
        self._t0 = time.monotonic()
        await asyncio.to_thread(self._step)
        for sub in self.settings.site.substations:
            bind = self.settings.simulator.bind_host
            listen = sub.model_copy(update={"host": bind}) if bind else sub
            server = RtuServer(listen, {d.name: self.images[d.name] for d in sub.devices})
            await server.start()
            self.servers.append(server)
        cfg = self.settings.mqtt
        self._mqtt.connect_async(broker_host(cfg), cfg.port)
        self._mqtt.loop_start()
        loop = asyncio.get_running_loop()
        if watchdog is not None:
            step_s = self.settings.simulator.step_s
            self.worker = watchdog.add(
                "step-loop",
                alive=lambda: self._task is not None and not self._task.done(),
                restart=lambda: loop.call_soon_threadsafe(self._start_loop),
                stuck_after_s=max(DEFAULT_MISSES * step_s, 30.0),
                logger=log,
            )
            mqtt = self._mqtt
            watchdog.add("mqtt-loop", alive=lambda: getattr(mqtt, "_thread", None) is not None, restart=mqtt.loop_start)
        self._start_loop()
        log.info("field simulator running: %d RTUs, %d sensors", len(self.servers), len(self.settings.site.sensors))

    def _start_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="simulator")

    async def _loop(self) -> None:
        step_s = self.settings.simulator.step_s
        delay = step_s
        while True:
            await asyncio.sleep(delay)
            try:
                await in_daemon_thread(self._step)  # a stop does not wait for a step under way
            except Exception as exc:  # a failed power flow must not end the simulation: logged once
                delay = self.worker.failed(exc, step_s)
                continue
            delay = step_s
            self.worker.ok()

    def _step(self) -> Truth:
        assert self.sim is not None
        elapsed = time.monotonic() - self._t0
        self.instruments.elapsed_s = elapsed
        for fault in self.settings.simulator.faults:
            if fault.kind == FaultKind.LINE_OUTAGE and fault.line is not None:
                self.sim.set_line_outage(fault.line, fault.active(elapsed))
        truth = self.sim.step(elapsed)
        for sub in self.settings.site.substations:
            for dev in sub.devices:
                image = self.images[dev.name]
                values = {p.name: self.instruments.read_point(truth, dev, p) for p in image.profile.points}
                image.update(values, silent=self.instruments.device_silent(dev.name))
        dt_min = 0.0
        if self._last_sim_time is not None:
            dt_min = (truth.sim_time - self._last_sim_time).total_seconds() / 60.0
        self._last_sim_time = truth.sim_time
        self._publish_sensors(truth, dt_min)
        self._store_truth(truth)
        return truth

    def _publish_sensors(self, truth: Truth, dt_min: float) -> None:
        cfg = self.settings.mqtt
        for sensor in self.settings.site.sensors:
            readings = self.instruments.read_sensor(truth, sensor, dt_min)
            if self.instruments.device_silent(sensor.name):
                continue
            payload = {
                "time": time.time_ns() // 1_000_000,
                "points": {n: {"value": round(v, 3), "unit": u} for n, (v, u) in readings.items()},
            }
            t = topic(cfg, self.settings.site.name, sensor.substation, sensor.name, "telemetry")
            self._mqtt.publish(t, json.dumps(payload), qos=cfg.qos)
            self.published += 1

    def _store_truth(self, truth: Truth) -> None:
        if self.truth_store is None:
            return
        now = time.time_ns()
        site = self.settings.site.name
        records = [
            Record(SIM_TRUTH, {"site": site, "bus": str(bus)}, {"vm_pu": float(vm)}, now)
            for bus, vm in truth.res_bus.vm_pu.items()
            if vm == vm  # skip de-energised (NaN) buses
        ]
        records.append(Record(SIM_CLOCK, {"site": site}, {"sim_time_ns": truth.sim_time.value}, now))
        self.truth_store.write(records)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for server in self.servers:
            await server.stop()
        # Off the event loop: an embedded broker may be serving this client from the same loop,
        # and a blocking loop_stop() here would wait on it forever.
        await in_daemon_thread(stop_client, self._mqtt)
