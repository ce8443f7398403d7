"""Open3D renders in a process of its own: one long-lived renderer (`inspection.render`, scenes
built once and re-coloured) serves every request in order, its CPU time does not compete with the
stack's event loop for the GIL, and a renderer crash must not take the rest of the system down.
`RenderService` renders the configured substation every `inspection.every_s`, supervised."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from pathlib import Path

from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.watchdog import DEFAULT_MISSES, Watchdog, Worker, in_daemon_thread
from inspection.config import AssetConfig, InspectionConfig
from inspection.state import AssetState, asset_states, stamp_render

log = logging.getLogger(__name__)

_STOPPING = ("stopping", "")


def _exit_with_parent(parent: int) -> None:
    """The render process ends when the stack's process does, even when that one was killed."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(
    cfg: InspectionConfig | None, assets: dict[str, list[AssetConfig]], jobs: mp.Queue, results: mp.Queue, parent: int
) -> None:
    # A terminal's Ctrl-C reaches the whole process group; the stack stops this process in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    try:
        from inspection.render import _renderer, render_substation

        if cfg is None:
            raise ValueError("the configuration has no `inspection` section: nothing to render")
        _renderer(cfg.width, cfg.height)  # warm up before jobs
    except Exception as exc:
        results.put(("error", f"renderer cannot start: {type(exc).__name__}: {exc}"))
        return
    results.put(("ready", ""))

    while (job := jobs.get()) is not None:
        try:
            if job[0] == "stats":  # what the renderer has done: scene built once, re-coloured since
                from dataclasses import asdict

                from inspection.render import scene_renderer

                results.put(("ok", json.dumps(asdict(scene_renderer(cfg.width, cfg.height).stats))))
                continue
            if job[0] == "step":  # ("step", substation, asset, state, values, path, data_ns)
                from inspection.stepview import draw_step

                _, substation, asset, state, values, path, data_ns = job
                here = assets.get(substation, [])
                image = draw_step(cfg, here, substation, asset, state, values, Path(path), data_ns)
            else:  # ("substation", substation, states, path)
                _, substation, states, path = job
                image = render_substation(cfg, assets.get(substation, []), substation, states, Path(path))
            results.put(("ok", str(image)))
        except Exception as exc:  # reported to the caller, which logs it
            results.put(("error", f"{type(exc).__name__}: {exc}"))


class RenderError(Exception):
    """The render process failed or did not answer in time."""


class RenderWorker:
    """The long-lived render process: one Open3D renderer for the life of the process."""

    def __init__(self, cfg: InspectionConfig | None, assets: dict[str, list[AssetConfig]]) -> None:
        self.cfg = cfg
        self.assets = assets
        self._ctx = mp.get_context("spawn")
        self._process: mp.process.BaseProcess | None = None
        self._stopping = False
        self._request_lock = threading.Lock()

    def start(self, timeout: float = 180.0) -> None:
        """Start the process and wait until its renderer is up (imports take a while when cold)."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start a fresh render process (also after the previous one died)."""
        self._jobs: mp.Queue = self._ctx.Queue()
        self._results: mp.Queue = self._ctx.Queue()
        self._process = self._ctx.Process(
            target=_serve,
            args=(self.cfg, self.assets, self._jobs, self._results, os.getpid()),
            name="gridverse-render",
            daemon=True,
        )
        self._process.start()

    def wait_ready(self, timeout: float = 180.0) -> None:
        status, detail = self._answer(timeout, "render process not ready")
        if status != "ready":
            raise RenderError(detail)

    def _answer(self, timeout: float, what: str) -> tuple[str, str]:
        """The process's next answer; a process that dies meanwhile is noticed within a second."""
        deadline = time.monotonic() + timeout
        process, results = self._process, self._results
        while True:
            try:
                status, detail = results.get(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
                break
            except queue.Empty:
                if process is not None and not process.is_alive():
                    raise RenderError(f"render process exited with code {process.exitcode}") from None
                if time.monotonic() >= deadline:
                    raise RenderError(f"{what} within {timeout:.0f} s") from None
        if (status, detail) == _STOPPING:
            raise RenderError("render worker stopping")
        return status, detail

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def render(self, substation: str, states: dict[str, AssetState], path: Path, timeout: float = 120.0) -> Path:
        return self._request(("substation", substation, dict(states), str(path)), f"render of {substation}", timeout)

    def render_step(
        self,
        substation: str,
        asset: str,
        state: AssetState | str,
        values: dict[str, float],
        path: Path,
        data_ns: int | None = None,
        timeout: float = 120.0,
    ) -> Path:
        """One route step's view: `asset` framed, in its state colour, labelled; the rest dimmed."""
        job = ("step", substation, asset, str(state), dict(values), str(path), data_ns)
        return self._request(job, f"step view of {asset}", timeout)

    def stats(self, timeout: float = 30.0) -> dict[str, int]:
        """The render process's counters (`inspection.render.SceneStats`): builds, geometries
        added, materials changed, renders."""
        return json.loads(str(self._request(("stats",), "renderer statistics", timeout)))

    def _request(self, job: tuple, what: str, timeout: float) -> Path:
        if self._process is None or not self._process.is_alive():
            code = self._process.exitcode if self._process is not None else None
            raise RenderError(f"render process exited with code {code}")
        with self._request_lock:  # one request at a time: answers come back in order
            self._jobs.put(job)
            deadline = time.monotonic() + timeout
            status = "ready"
            while status == "ready":  # a restarted process says so first
                status, detail = self._answer(max(0.1, deadline - time.monotonic()), f"no {what}")
        if status != "ok":
            raise RenderError(f"{what} failed: {detail}")
        return Path(detail)

    def stop(self, timeout: float = 0.5) -> None:
        """Wake whoever waits for an answer, ask the process to finish, kill it when it does not
        within `timeout` (it holds nothing to save; Open3D's own teardown takes over a second)."""
        self._stopping = True
        if self._process is None:
            return
        self._results.put(_STOPPING)
        if self._process.is_alive():
            self._jobs.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(1.0)


class RenderService:
    """Renders the configured substation every `inspection.every_s` (the first after 5 s), in the
    render process; a failed render is logged once until one works again."""

    def __init__(self, settings: Settings, historian: Historian) -> None:
        self.settings = settings
        self.historian = historian
        self.renderer = RenderWorker(settings.inspection, settings.assets)  # spawned only with a section
        self.rendered: list[str] = []
        self.worker = Worker("inspection render", logger=log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def errors(self) -> int:
        return self.worker.failures

    async def start(self, watchdog: Watchdog | None = None) -> None:
        cfg = self.settings.inspection
        if cfg is None:
            log.warning("inspection: no `inspection` section in the configuration; nothing to render")
            return
        self.renderer.spawn()  # from the caller's (main) thread: the child outlives no thread of ours
        await in_daemon_thread(self.renderer.wait_ready)
        if watchdog is not None:
            self.worker = watchdog.add(
                "render-loop",
                alive=lambda: self._thread is not None and self._thread.is_alive(),
                restart=self._spawn,
                stuck_after_s=DEFAULT_MISSES * cfg.every_s + 120.0,  # one render may take up to 120 s
                logger=log,
            )
            watchdog.add("render-process", alive=self.renderer.alive, restart=self._restart_process)
        self._spawn()

    def _restart_process(self) -> None:
        if not self._stop.is_set():
            self.renderer.spawn()  # the loop's next render waits for it to be ready

    def _spawn(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._loop, name="render", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        cfg = self.settings.inspection
        assert cfg is not None
        delay = 5.0
        while not self._stop.wait(delay):
            try:
                since = time.time_ns() - int(30e9)
                states = asset_states(
                    self.settings.site,
                    self.settings.assets.get(cfg.substation, []),
                    self.historian,
                    cfg.substation,
                    since,
                )
                path = self.renderer.render(cfg.substation, states, cfg.output_dir / f"{cfg.substation}.png")
                stamp_render(path, states)  # the time it shows, on the image and beside it: never a stale "now"
            except Exception as exc:  # logged once, counted, backed off; logged again on recovery
                if self._stop.is_set():
                    return
                delay = self.worker.failed(exc, cfg.every_s)
                continue
            delay = cfg.every_s
            self.worker.ok()
            if str(path) not in self.rendered:
                self.rendered.append(str(path))

    async def stop(self) -> None:
        self._stop.set()
        await in_daemon_thread(self.renderer.stop)
        if self._thread is not None:
            await in_daemon_thread(self._thread.join, 2.0)
