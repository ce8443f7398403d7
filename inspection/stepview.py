"""Step views: per route step, the substation seen from a camera placed automatically to frame that
equipment (a 3/4 view from its parts' bounding box), the equipment in its state colour, the rest
washed out towards grey, and its live values on a label panel beside it.

`render_step` is what callers use (the technician page, the route pack): it asks this process's
render worker (`inspection/worker.py`, one long-lived Open3D renderer in its own process, since
Open3D's renderer is not thread-safe). `draw_step` is what runs inside that process."""

from __future__ import annotations

import concurrent.futures
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from inspection.config import AssetConfig, InspectionConfig
from inspection.state import COLOURS, AssetState

_worker_lock = threading.Lock()
_worker: Any = None  # this process's RenderWorker, started on first use
_worker_key: tuple | None = None


def step_path(cfg: InspectionConfig, substation: str, asset: str) -> Path:
    """Where a step's view is written: `<output_dir>/steps/<substation>/<asset path with _>.png`."""
    return Path(cfg.output_dir) / "steps" / substation / (re.sub(r"[^A-Za-z0-9_.-]+", "_", asset) + ".png")


def draw_step(
    cfg: InspectionConfig | None,
    assets: Sequence[AssetConfig],
    substation: str,
    asset: str,
    state: AssetState | str,
    values: Mapping[str, float],
    path: Path,
    data_ns: int | None = None,
) -> Path:
    """Render one step's view with this process's renderer (call it in the render process)."""
    from inspection.render import _lock, framing, scene_renderer

    if cfg is None:
        raise ValueError("the configuration has no `inspection` section: nothing to render")
    if not any(a.name == asset for a in assets):
        known = ", ".join(a.name for a in assets[:8]) or "none"
        raise ValueError(
            f"{asset!r} is not equipment of substation {substation!r} in assets.yaml (first of its equipment: {known})"
        )
    state = AssetState(state)
    with _lock:
        r = scene_renderer(cfg.width, cfg.height)
        r.build(substation, assets)
        r.highlight(substation, assets, asset, state)
        lo, hi = r.bounds(substation, asset)
        camera = framing(lo, hi, cfg.width / cfg.height)
        image = Image.fromarray(r.render(substation, camera, xray=asset))  # seen through what stands in front
        top = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[2])
        anchor = r.project(top)
    when = datetime.fromtimestamp((time.time_ns() if data_ns is None else data_ns) / 1e9, tz=UTC)
    _label(image, anchor, asset, state, values)
    _stamp(image, f"data {when:%Y-%m-%d %H:%M:%S} UTC" if data_ns is not None else f"rendered {when:%H:%M:%S} UTC")
    info = PngInfo()
    info.add_text("gridverse:substation", substation)
    info.add_text("gridverse:asset", asset)
    info.add_text("gridverse:state", state.value)
    info.add_text("gridverse:time", when.isoformat(timespec="seconds"))
    info.add_text("gridverse:time_is", "data" if data_ns is not None else "render")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.png")
    image.save(partial, pnginfo=info, compress_level=1)  # fast: most of a frame was zlib at level 6
    partial.replace(path)  # a reader never sees a half-written image
    return path


def _fmt(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _label(
    image: Image.Image,
    anchor: tuple[float, float] | None,
    asset: str,
    state: AssetState,
    values: Mapping[str, float],
) -> None:
    """A panel with the equipment's name, state and live values beside its projected position,
    with a leader line to it."""
    draw = ImageDraw.Draw(image)
    lines = [asset, f"state: {state.value}"] + [f"{k} = {_fmt(v)}" for k, v in sorted(values.items())][:12]
    width = 12 + 6 * max(len(line) for line in lines)
    height = 8 + 14 * len(lines)
    w, h = image.size
    ax, ay = anchor if anchor is not None else (w / 2, h / 2)
    if not (math.isfinite(ax) and math.isfinite(ay)):
        ax, ay = w / 2, h / 2
    x = ax + 60 if ax + 60 + width < w - 4 else ax - 60 - width
    x = min(max(4, x), max(4, w - width - 4))
    y = min(max(4, ay - height - 30), max(4, h - height - 30))
    draw.line((ax, ay, x if x > ax else x + width, y + height / 2), fill=(30, 30, 40), width=2)
    colour = tuple(int(c * 255) for c in COLOURS[state])
    draw.rectangle((x, y, x + width, y + height), fill=(255, 255, 255), outline=colour, width=3)
    for i, line in enumerate(lines):
        draw.text((x + 6, y + 4 + 14 * i), line, fill=(20, 20, 30))


def _stamp(image: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(image)
    draw.rectangle((6, image.height - 22, 16 + 6 * len(text), image.height - 4), fill=(255, 255, 255))
    draw.text((10, image.height - 20), text, fill=(20, 20, 30))


def _shared_worker(settings: Any) -> Any:
    """This process's render worker for these settings (started once; restarted when it died)."""
    global _worker, _worker_key
    from inspection.worker import RenderWorker

    key = (id(settings),)
    with _worker_lock:
        if _worker is not None and (_worker_key != key or not _worker.alive()):
            _worker.stop()
            _worker = None
        if _worker is None:
            worker = RenderWorker(settings.inspection, settings.assets)
            worker.start()
            _worker, _worker_key = worker, key
        return _worker


def render_step(
    substation: str,
    asset: Any,
    states: Mapping[str, AssetState | str] | AssetState | str | None = None,
    values: Mapping[str, float] | None = None,
    out: Path | None = None,
    *,
    settings: Any = None,
    data_ns: int | None = None,
    timeout: float = 120.0,
    wait_s: float = 15.0,
) -> Path:
    """Render the view of one route step in the render worker and return the image's path.

    A page must not hang on a slow CPU renderer: when the view is not ready within `wait_s`,
    StepViewPending is raised (the caller shows the latest substation render meanwhile) and the
    view keeps rendering; the next call for the same step returns it.

    `asset` is the equipment's name (then `states` gives its state, by name or directly, and
    `values` its live values) or a route step (`inspection.routes.RouteStep`: its asset, state
    and values). `settings` default: the configuration `load_settings()` reads (GRIDVERSE_CONFIG)."""
    if settings is None:
        settings = _default_settings()
    if hasattr(asset, "asset"):  # a RouteStep
        step = asset
        asset, state, values = step.asset, step.state, (step.values if values is None else values)
    elif isinstance(states, Mapping):
        state = states.get(asset, AssetState.UNKNOWN)
    else:
        state = states if states is not None else AssetState.UNKNOWN
    cfg = settings.inspection
    if cfg is None:
        raise ValueError("the configuration has no `inspection` section: step views need one")
    if substation not in settings.assets:
        raise ValueError(f"no equipment for substation {substation!r} in assets.yaml; add it there")
    path = Path(out if out is not None else step_path(cfg, substation, asset))
    values = dict(values or {})
    key = (id(settings), substation, asset, str(state), tuple(sorted(values.items())), str(path), data_ns)

    def job() -> Path:
        return _shared_worker(settings).render_step(substation, asset, state, values, path, data_ns, timeout)

    with _worker_lock:
        future = _pending.get(key)
        if future is None or (future.done() and future.exception() is not None):
            if len(_pending) > 256:
                _pending.clear()
            future = _pending[key] = _executor.submit(job)
    try:
        return future.result(timeout=wait_s)
    except concurrent.futures.TimeoutError:
        raise StepViewPending(
            f"the view of {asset} is still being rendered (over {wait_s:.0f} s on this machine's renderer); "
            "it is shown when you come back to this step"
        ) from None


class StepViewPending(Exception):
    """The step view is being rendered and was not ready in time; ask again later."""


_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepview")
_pending: dict[tuple, concurrent.futures.Future] = {}


_settings_cache: list[Any] = []


def _default_settings() -> Any:
    if not _settings_cache:
        from gridverse.settings import load_settings

        _settings_cache.append(load_settings())
    return _settings_cache[0]


def stop_worker() -> None:
    """Stop this process's render worker (tests, shutdown)."""
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.stop()
            _worker = None
