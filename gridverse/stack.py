"""The composition root: start the parts of gridverse that were asked for, and only those, in one
process (the Streamlit UI in a child process); stop them all on SIGTERM/SIGINT within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from gridverse.config import SERVICE_PARTS, Settings
from gridverse.proc import spawn_child, stop_child
from gridverse.watchdog import HealthServer, Watchdog, Worker, in_daemon_thread

if TYPE_CHECKING:
    from anomaly.service import Detectors
    from fieldsim.runner import FieldSimulator
    from gateway.service import Gateway
    from gridmodel.twin import Twin
    from gridverse.historian import Historian
    from gridverse.mqtt import EmbeddedBroker
    from inspection.worker import RenderService

log = logging.getLogger(__name__)


PARTS = SERVICE_PARTS
#: Parts that talk MQTT (and so need a broker): the simulator publishes sensors, the gateway
#: subscribes to them, the detectors publish alarms.
MQTT_PARTS = frozenset({"simulator", "gateway", "detectors"})
#: How long a graceful stop may take in all (systemd and Docker wait 10 s before SIGKILL).
STOP_BUDGET_S = 4.0
#: How long a (re)started UI may take to answer on its port before /health calls it stuck.
UI_START_S = 180.0


class Stack:
    """Parts of gridverse in one process, built only when asked for (by default all of them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        with_ui: bool = False,
        parts: tuple[str, ...] = PARTS,
        config_path: Path | None = None,
    ) -> None:
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
        self.parts = parts
        self.with_ui = with_ui
        self.config_path = config_path
        self.broker: EmbeddedBroker | None = None
        if MQTT_PARTS & set(parts) and settings.mqtt.host is None:
            settings = self._local_broker(settings)
        self.settings = settings
        self.registry = CollectorRegistry()
        self.watchdogs: dict[str, Watchdog] = {}
        self.historian: Historian | None = None
        if parts:
            from gridverse.historian import open_historian

            self.historian = open_historian(settings.historian)
        self.simulator: FieldSimulator | None = None
        if "simulator" in parts:
            from fieldsim.runner import FieldSimulator

            self.simulator = FieldSimulator(settings, truth_store=self.historian)
        self.gateway: Gateway | None = None
        if "gateway" in parts:
            from gateway.service import Gateway

            assert self.historian is not None
            self.gateway = Gateway(settings, self.historian, registry=self.registry)
        self.renderer: RenderService | None = None
        if "inspection" in parts:
            from inspection.worker import RenderService

            assert self.historian is not None
            self.renderer = RenderService(settings, self.historian)
        self.twin: Twin | None = None  # built in start(): loading the network takes seconds
        self.detectors: Detectors | None = None
        self.server: HealthServer | None = None
        self._ui: subprocess.Popen[bytes] | None = None
        self._ui_worker: Worker | None = None
        self._stop_times: dict[str, float] = {}
        self._started = False  # every part asked for runs (until then /health says "starting")

    def _local_broker(self, settings: Settings) -> Settings:
        """No broker configured: use one already listening on the port, or embed one (on
        `mqtt.embedded_bind`, asking for `mqtt.username` when one is set)."""
        from gridverse.mqtt import EmbeddedBroker, port_is_open

        bind = settings.mqtt.embedded_bind
        reach = "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind
        if port_is_open(reach, settings.mqtt.port):
            log.warning("an MQTT broker already listens on %s:%s; using it", reach, settings.mqtt.port)
        else:
            self.broker = EmbeddedBroker.from_config(settings.mqtt)
        return settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"host": reach})})

    def _watchdog(self, part: str) -> Watchdog:
        if part not in self.watchdogs:
            self.watchdogs[part] = Watchdog(part, registry=self.registry)
        return self.watchdogs[part]

    @property
    def rendered(self) -> list[str]:
        return self.renderer.rendered if self.renderer else []

    async def start(self) -> None:
        if self.broker is not None:
            await self.broker.start()
        port = self.settings.gateway.metrics_port
        if port is not None:
            self.server = HealthServer(self.registry, self.health, self.settings.gateway.metrics_address, port)
            self.server.start()
            log.info("/metrics and /health on %s:%d", self.server.host, self.server.port)
        if self.renderer is not None:
            await self.renderer.start(self._watchdog("inspection"))
        if self.simulator is not None:
            await self.simulator.start(self._watchdog("simulator"))
        if self.gateway is not None:
            self.watchdogs["gateway"] = self.gateway.watchdog
            await self.gateway.start()
        if "twin" in self.parts:
            from gridmodel.twin import Twin

            assert self.historian is not None
            self.twin = await in_daemon_thread(Twin, self.settings, self.historian)
            self._before_twin_start(self.twin)
            self.twin.start(self._watchdog("twin"))
        if "detectors" in self.parts:
            from anomaly.alarms import AlarmBook
            from anomaly.service import Detectors
            from gridverse.mqtt import make_client

            assert self.historian is not None
            client = make_client(self.settings.mqtt, f"gridverse-alarms-{self.settings.site.name}")
            cfg = self.settings
            book = AlarmBook(cfg.site.name, cfg.anomaly, cfg.mqtt, self.historian, client)
            self.detectors = Detectors(self.settings, self.historian, book)
            self.detectors.start(self._watchdog("detectors"))
        for watchdog in self.watchdogs.values():
            watchdog.start()
        if self.with_ui:
            self._start_ui()
            ui_watch = self._watchdog("ui")
            self._ui_worker = ui_watch.add(
                "streamlit", alive=self._ui_alive, restart=self._start_ui, max_backoff_s=60.0, stuck_after_s=UI_START_S
            )
            ui_watch.start()  # a UI that exits (crash, OOM kill) is said on /health and started again
        self._started = True

    def _before_twin_start(self, twin: Twin) -> None:
        """Hook for what watches the twin's cycles (the demo's check against the simulator)."""

    def _start_ui(self) -> None:
        ui = self.settings.ui
        app = Path(__file__).resolve().parents[1] / "ui" / "app.py"
        env = dict(os.environ)
        if self.config_path is not None:
            env["GRIDVERSE_CONFIG"] = str(Path(self.config_path).resolve())  # ui/data.py loads this file
        env["GRIDVERSE_HISTORIAN__PATH"] = str(self.settings.historian.path.resolve())
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(app),
            "--server.headless=true",
            f"--server.address={ui.address}",
            f"--server.port={ui.port}",
            "--browser.gatherUsageStats=false",
            "--client.toolbarMode=minimal",  # no Deploy button, no developer menu
        ]
        if self.config_path is not None:
            cmd += ["--", "--config", env["GRIDVERSE_CONFIG"]]
        if self._ui is not None:
            stop_child(self._ui, 1.0)  # a restart: whatever the old one left in its group goes first
        self._ui = spawn_child(cmd, env=env)
        log.info("UI on http://%s:%d (pid %d)", ui.address, ui.port, self._ui.pid)

    def _ui_alive(self) -> bool:
        """The UI process runs; it counts as making progress while its port answers, so a restarted
        one is reported as recovering until it serves again."""
        if self._ui is None:
            return True
        worker = self._ui_worker
        if self._ui.poll() is not None:
            if worker is not None:  # /health says how it ended
                worker.last_error = f"Streamlit exited with code {self._ui.returncode}"
                worker.died(worker.last_error)
            return False
        if worker is not None:
            from gridverse.mqtt import port_is_open

            address = self.settings.ui.address
            if port_is_open("127.0.0.1" if address in ("0.0.0.0", "", "::") else address, self.settings.ui.port):
                worker.beat()
        return True

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while every supervised worker runs and makes progress, the spool is below its
        warning level and neither the spool, the writer nor the historian reports a problem."""
        problems: list[str] = []
        body: dict[str, Any] = {}
        if self.gateway is not None:
            from gateway.metrics import health as gateway_health

            _ok, body = gateway_health(self.gateway)  # its own workers, spool, writer, historian
            problems += body.pop("problems")
        elif self.historian is not None:
            problem = getattr(self.historian, "problem", None)
            found = problem() if callable(problem) else None
            if found:
                problems.append(f"historian: {found}")
        workers: dict[str, Any] = {}
        for part, watchdog in self.watchdogs.items():
            workers[part] = watchdog.status()
            if part != "gateway":
                problems += [f"{part} worker {name}: {what}" for name, what in watchdog.problems().items()]
        if not self._started:
            problems.append("starting: not every part runs yet")
        body["workers"] = workers
        if self.detectors is not None:  # live scoring with the lab model: loading, warming up, scoring …
            body["live_model"] = self.detectors.model.status.as_dict()
        body["problems"] = problems
        if not problems:
            body["status"] = "ok"
        elif len(problems) == 1 and not self._started:
            body["status"] = "starting"
        elif len(problems) > 1 or body.get("status") != "spool_filling":
            body["status"] = "failing"
        return not problems, body

    async def stop(self, budget_s: float = STOP_BUDGET_S) -> None:
        """Stop every part within `budget_s` in all: what can be flushed is flushed (the spool is
        durable, so whatever the store did not take yet waits there for the next start)."""
        started = time.monotonic()
        deadline = started + budget_s
        for watchdog in self.watchdogs.values():
            watchdog.stop()  # nothing is restarted while it is being stopped
        ui_stopping = asyncio.create_task(in_daemon_thread(stop_child, self._ui, 3.0)) if self._ui else None
        steps: list[tuple[str, Any]] = []
        if self.detectors is not None:
            steps.append(("detectors", in_daemon_thread(self.detectors.stop, 1.0)))
        if self.twin is not None:
            steps.append(("twin", in_daemon_thread(self.twin.stop, 1.0)))
        if self.renderer is not None:
            steps.append(("inspection renderer", self.renderer.stop()))
        # the parts above stop side by side; the gateway then flushes, the simulator and the broker go last
        await asyncio.gather(*(self._bounded(c, what, deadline) for what, c in steps))
        if self.gateway is not None:
            flush_s = max(0.5, deadline - time.monotonic() - 1.0)
            await self._bounded(self.gateway.stop(flush_s), "gateway", deadline)
        if self.simulator is not None:
            await self._bounded(self.simulator.stop(), "simulator", deadline)
        if self.broker is not None:
            await self._bounded(self.broker.stop(), "embedded MQTT broker", deadline)
        if ui_stopping is not None:
            await self._bounded(ui_stopping, "ui", deadline + 1.0)
        if self.server is not None:
            self.server.stop()
        log.info("stopped in %.1f s (%s)", time.monotonic() - started, self._stop_times)

    async def _bounded(self, stopping: Any, what: str, deadline: float) -> None:
        """A part that does not stop in time is logged and left behind, never waited on forever."""
        timeout = max(0.2, deadline - time.monotonic())
        started = time.monotonic()
        try:
            await asyncio.wait_for(stopping, timeout)
        except TimeoutError:
            log.error("%s did not stop within %.1f s; continuing shutdown", what, timeout)
        except Exception:  # one part failing to stop must not keep the others running
            log.exception("stopping %s failed; continuing shutdown", what)
        else:
            self._stop_times[what] = round(time.monotonic() - started, 2)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parts": list(self.parts), "historian": self.settings.historian.backend}
        if self.gateway is not None:
            gw = self.gateway
            written = gw.writer.written
            out.update(
                points_stored={"modbus": written.get("modbus", 0), "mqtt": written.get("mqtt", 0)},
                points_pending=gw.writer.pending(),
                mqtt_rejected=gw.mqtt.rejected,
                devices=gw.device_status(),
            )
        if "twin" in self.parts:
            twin = self.twin
            out["state_estimation"] = {
                "cycles": twin.cycles if twin else 0,
                "converged": twin.converged if twin else 0,
            }
        if "detectors" in self.parts:
            alarms = self.detectors.alarms if self.detectors else None
            out["alarms_raised"] = alarms.raised if alarms else 0
            out["alarms_active"] = (
                sorted(f"{a.rule}:{a.device}/{a.point}" for a in alarms.active_alarms()) if alarms else []
            )
        if self.renderer is not None:
            out["rendered"] = list(self.renderer.rendered)
            out["render_errors"] = self.renderer.errors
        out["workers"] = {part: _workers_summary(w) for part, w in self.watchdogs.items()}
        return out


async def run_stack(make: Callable[[], Stack], *, seconds: float | None, progress: bool = True) -> dict[str, Any]:
    """Build a stack with `make()` (on the running loop: Modbus clients need one), run it until
    `seconds` pass or until SIGTERM/SIGINT, stop every part, return the summary. A second signal
    while stopping ends the process at once (children included)."""
    stack = make()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stopping.is_set():
            log.error("%s again while stopping: exiting now", name)
            if stack._ui is not None:
                stop_child(stack._ui, 0.0)
            os._exit(128 + signum)
        log.warning("%s received: stopping", name)
        stopping.set()

    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        starting = asyncio.create_task(stack.start())
        waiting = asyncio.create_task(stopping.wait())
        await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # a signal during start-up
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        else:
            starting.result()  # start-up errors are raised (and the parts started are stopped)
            started = time.monotonic()
            while seconds is None or time.monotonic() - started < seconds:
                step = 1.0 if seconds is None else min(1.0, max(0.0, seconds - (time.monotonic() - started)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiting), step)
                if stopping.is_set():
                    break
                if progress:
                    _progress(stack, time.monotonic() - started, seconds)
        waiting.cancel()
    finally:
        if progress:
            print(file=sys.stderr)
        await stack.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
    summary = stack.summary()
    summary["stopped_by_signal"] = stopping.is_set()
    return summary


def _workers_summary(watchdog: Watchdog) -> dict[str, Any]:
    status = watchdog.status()
    return {
        "up": sum(1 for st in status.values() if st["up"]),
        "down": {name: st["problem"] for name, st in status.items() if not st["up"]},
        "restarts": {name: st["restarts"] for name, st in status.items() if st["restarts"]},
        "failures": {name: st["failures"] for name, st in status.items() if st["failures"]},
    }


def _progress(stack: Stack, elapsed: float, seconds: float | None) -> None:
    s = stack.summary()
    total = f"/{seconds:.0f}" if seconds else ""
    stored = s.get("points_stored", {})
    se = s.get("state_estimation", {})
    print(
        f"\r[{elapsed:4.0f}{total} s] points modbus={stored.get('modbus', 0)} mqtt={stored.get('mqtt', 0)}  "
        f"estimates={se.get('converged', 0)}/{se.get('cycles', 0)}  alarms={s.get('alarms_raised', 0)}  "
        f"renders={len(s.get('rendered', []))}   ",
        end="",
        file=sys.stderr,
        flush=True,
    )
