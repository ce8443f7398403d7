"""Open3D renders in a process of its own: its renderer must run on a main thread (it hangs when
driven from a worker thread), and a renderer crash must not take the rest of the system down."""

from __future__ import annotations

import multiprocessing as mp
import queue
from pathlib import Path

from gridverse.config import Settings
from inspection.state import AssetState


def _serve(settings: Settings, jobs: mp.Queue, results: mp.Queue) -> None:
    try:
        from inspection.render import _renderer, render_substation

        _renderer(settings.inspection.width, settings.inspection.height)  # warm up before jobs
    except Exception as exc:
        results.put(("error", f"renderer cannot start: {type(exc).__name__}: {exc}"))
        return
    results.put(("ready", ""))

    while (job := jobs.get()) is not None:
        substation, states, path = job
        try:
            results.put(("ok", str(render_substation(settings, substation, states, Path(path)))))
        except Exception as exc:  # reported to the caller, which logs it
            results.put(("error", f"{type(exc).__name__}: {exc}"))


class RenderError(Exception):
    """The render process failed or did not answer in time."""


class RenderWorker:
    def __init__(self, settings: Settings) -> None:
        ctx = mp.get_context("spawn")
        self._jobs: mp.Queue = ctx.Queue()
        self._results: mp.Queue = ctx.Queue()
        self._process = ctx.Process(
            target=_serve, args=(settings, self._jobs, self._results), name="gridverse-render", daemon=True
        )

    def start(self, timeout: float = 180.0) -> None:
        """Start the process and wait until its renderer is up (imports take a while when cold)."""
        self._process.start()
        try:
            status, detail = self._results.get(timeout=timeout)
        except queue.Empty:
            raise RenderError(f"render process not ready within {timeout:.0f} s") from None
        if status != "ready":
            raise RenderError(detail)

    def render(self, substation: str, states: dict[str, AssetState], path: Path, timeout: float = 120.0) -> Path:
        if not self._process.is_alive():
            raise RenderError(f"render process exited with code {self._process.exitcode}")
        self._jobs.put((substation, dict(states), str(path)))
        try:
            status, detail = self._results.get(timeout=timeout)
        except queue.Empty:
            raise RenderError(f"no render of {substation} within {timeout:.0f} s") from None
        if status != "ok":
            raise RenderError(f"render of {substation} failed: {detail}")
        return Path(detail)

    def stop(self) -> None:
        if self._process.is_alive():
            self._jobs.put(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
