"""Render substations offscreen with Open3D (GPU or CPU): one long-lived renderer whose scene is
built once per substation and only re-coloured afterwards.

Rebuilding the scene each frame (`clear_geometry()` + `add_geometry()`) leaks in Open3D's
Filament backend and made each frame slower than the last (2.5 s, 10.9 s, 42 s here). Here each
part is added once, named `<substation>|<asset>/<part>`; a state change is a
`modify_geometry_material` of the parts whose colour changed, and a step view moves the camera.
Must be driven from one thread (the render process's main thread: `inspection/worker.py`)."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open3d as o3d
from open3d.visualization import rendering
from PIL import Image, ImageDraw

from inspection.config import AssetConfig, InspectionConfig
from inspection.equipment import ColourRole, equipment_kind
from inspection.scene import ground, part_mesh
from inspection.state import COLOURS, AssetState, Rgb

BACKGROUND = (0.93, 0.95, 0.98)
FOV_DEG = 50.0  # vertical field of view
#: the 3/4 view: from the front left, above (x right, y into the plot, z up)
VIEW_DIRECTION = np.array([-0.55, -1.0, 0.75])
DIM_GREY = np.array([0.80, 0.81, 0.83])
DIM_MIX = 0.75  # a dimmed part is 75 % light grey: the highlighted equipment stands out


@dataclass(frozen=True)
class Camera:
    fov_deg: float
    center: tuple[float, float, float]
    eye: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass
class SceneStats:
    """What the renderer did, so a caller (or a test) can see that a scene is reused."""

    builds: int = 0  # substations whose geometry was added
    geometries_added: int = 0
    materials_changed: int = 0
    renders: int = 0


@dataclass
class _Part:
    geometry: str  # the name in the Open3D scene
    asset: str
    role: ColourRole
    structure: Rgb
    bounds: tuple[np.ndarray, np.ndarray]


@dataclass
class _Built:
    parts: list[_Part] = field(default_factory=list)
    lo: np.ndarray = field(default_factory=lambda: np.zeros(3))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(3))


def _material(rgb: Sequence[float]) -> rendering.MaterialRecord:
    m = rendering.MaterialRecord()
    m.shader = "defaultLit"
    m.base_color = [float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0]
    return m


def dimmed(rgb: Sequence[float]) -> Rgb:
    """A colour washed out towards light grey (the parts around a highlighted equipment)."""
    out = DIM_MIX * DIM_GREY + (1.0 - DIM_MIX) * np.asarray(rgb, dtype=float)
    return (float(out[0]), float(out[1]), float(out[2]))


def framing(lo: Sequence[float], hi: Sequence[float], aspect: float, fov_deg: float = FOV_DEG) -> Camera:
    """A 3/4 view of the box [lo, hi] at a distance where the whole box fits the field of view."""
    lo_, hi_ = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    center = (lo_ + hi_) / 2
    radius = max(float(np.linalg.norm(hi_ - lo_)) / 2, 0.5)
    half = math.radians(fov_deg) / 2
    half = min(half, math.atan(math.tan(half) * aspect))  # the narrower of the two fields of view
    distance = 1.1 * radius / math.sin(half)
    d = VIEW_DIRECTION / np.linalg.norm(VIEW_DIRECTION)
    eye = center + distance * d
    return Camera(fov_deg, tuple(center.tolist()), tuple(eye.tolist()))  # type: ignore[arg-type]


class SceneRenderer:
    """One Open3D offscreen renderer for the life of the process, each substation's geometry added
    once, re-coloured by material and looked at from any camera."""

    def __init__(self, width: int, height: int, *, shadows: bool = False, post_processing: bool = False) -> None:
        self.width, self.height = width, height
        self.renderer = rendering.OffscreenRenderer(width, height)
        scene = self.renderer.scene
        # shadow maps are most of a frame on a CPU (Mesa llvmpipe): 14 s against 3 s at 320x200 here
        scene.view.set_shadowing(shadows)
        # tone mapping, bloom, FXAA and the colour grading pass cost a full-screen pass each on a CPU
        scene.view.set_post_processing(post_processing)
        # FXAA/MSAA: with it on, a frame took 10 s to minutes on llvmpipe here; off, 0.05-0.3 s
        scene.view.set_antialiasing(False)
        scene.set_background([*BACKGROUND, 1.0])
        scene.scene.set_sun_light([-0.4, 0.5, -0.8], [1.0, 1.0, 1.0], 90000)
        scene.scene.enable_sun_light(True)
        self.stats = SceneStats()
        self._built: dict[str, _Built] = {}
        self._colour: dict[str, Rgb] = {}  # geometry → the colour it has now
        self._shown: str | None = None
        self._camera: Camera | None = None

    # -- the scene -------------------------------------------------------------------------------
    def build(self, substation: str, assets: Sequence[AssetConfig]) -> None:
        """Add the substation's parts to the scene, once (later calls are no-ops)."""
        if substation in self._built:
            return
        if not assets:
            raise ValueError(f"assets.yaml has no equipment for substation {substation!r}")
        built = _Built()
        scene = self.renderer.scene
        floor = ground()
        floor.mesh.compute_vertex_normals()
        name = f"{substation}|ground"
        scene.add_geometry(name, floor.mesh, _material(floor.colour))
        self._colour[name] = floor.colour
        lows, highs = [], []
        for asset in assets:
            kind = equipment_kind(asset.kind)
            x, y = asset.position
            for spec in kind.parts_for(asset):
                mesh = part_mesh(spec, x, y, asset.rotation_deg)
                mesh.compute_vertex_normals()
                geometry = f"{substation}|{asset.name}/{spec.name}"
                box = mesh.get_axis_aligned_bounding_box()
                lo, hi = np.asarray(box.min_bound), np.asarray(box.max_bound)
                lows.append(lo)
                highs.append(hi)
                colour = kind.structure_colour if spec.colour is ColourRole.STRUCTURE else COLOURS[AssetState.UNKNOWN]
                scene.add_geometry(geometry, mesh, _material(colour))
                self._colour[geometry] = colour
                built.parts.append(_Part(geometry, asset.name, spec.colour, kind.structure_colour, (lo, hi)))
                self.stats.geometries_added += 1
        built.lo, built.hi = np.min(lows, axis=0), np.max(highs, axis=0)
        self._built[substation] = built
        self.stats.builds += 1
        self._show(substation)

    def _show(self, substation: str) -> None:
        if self._shown == substation:
            return
        scene = self.renderer.scene
        for other, built in self._built.items():
            visible = other == substation
            scene.show_geometry(f"{other}|ground", visible)
            for part in built.parts:
                scene.show_geometry(part.geometry, visible)
        self._shown = substation

    def _paint(self, geometry: str, colour: Rgb) -> None:
        if self._colour.get(geometry) == colour:
            return
        self.renderer.scene.modify_geometry_material(geometry, _material(colour))
        self._colour[geometry] = colour
        self.stats.materials_changed += 1

    def colour(self, substation: str, assets: Sequence[AssetConfig], states: Mapping[str, AssetState | str]) -> None:
        """Each asset's state-coloured parts in its kind's colour for its state (unknown when absent)."""
        kinds = {a.name: equipment_kind(a.kind) for a in assets}
        for part in self._built[substation].parts:
            if part.role is ColourRole.STATE:
                state = AssetState(states.get(part.asset, AssetState.UNKNOWN))
                self._paint(part.geometry, kinds[part.asset].colour_of(state))
            else:
                self._paint(part.geometry, part.structure)

    def highlight(self, substation: str, assets: Sequence[AssetConfig], asset_name: str, state: AssetState) -> None:
        """The one asset in its state colour, everything else washed out towards grey."""
        kind = equipment_kind(next(a.kind for a in assets if a.name == asset_name))
        for part in self._built[substation].parts:
            if part.asset == asset_name:
                own = kind.colour_of(state) if part.role is ColourRole.STATE else part.structure
                self._paint(part.geometry, own)
            else:
                self._paint(part.geometry, dimmed(part.structure))
        self._paint(f"{substation}|ground", dimmed(ground().colour))

    def bounds(self, substation: str, asset_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The box around the substation's equipment, or around one asset's parts."""
        built = self._built[substation]
        if asset_name is None:
            return built.lo, built.hi
        boxes = [p.bounds for p in built.parts if p.asset == asset_name]
        if not boxes:
            raise KeyError(f"{asset_name!r} is not in the scene of {substation}")
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    # -- the camera and the image ----------------------------------------------------------------
    def look(self, camera: Camera) -> None:
        if camera != self._camera:
            self.renderer.setup_camera(camera.fov_deg, list(camera.center), list(camera.eye), list(camera.up))
            self._camera = camera

    def render(self, substation: str, camera: Camera) -> np.ndarray:
        self._show(substation)
        self.look(camera)
        self.stats.renders += 1
        return np.asarray(self.renderer.render_to_image())

    def project(self, point: Sequence[float]) -> tuple[float, float] | None:
        """Pixel (x right, y down) of a 3D point for the current camera; None when behind it."""
        cam = self.renderer.scene.camera
        p = np.array([*point, 1.0])
        clip = np.asarray(cam.get_projection_matrix()) @ np.asarray(cam.get_view_matrix()) @ p
        if clip[3] <= 0:
            return None
        ndc = clip[:3] / clip[3]
        return (ndc[0] + 1) / 2 * self.width, (1 - ndc[1]) / 2 * self.height


_renderers: dict[tuple[int, int], SceneRenderer] = {}
_lock = threading.Lock()  # Open3D's renderer is not thread-safe: one render at a time


def scene_renderer(width: int, height: int) -> SceneRenderer:
    """The process's renderer for this frame size (created on first use, then kept)."""
    key = (width, height)
    if key not in _renderers:
        _renderers[key] = SceneRenderer(width, height)
    return _renderers[key]


def _renderer(width: int, height: int) -> SceneRenderer:  # the worker warms up with this
    return scene_renderer(width, height)


def render_substation(
    cfg: InspectionConfig | None,
    assets: Sequence[AssetConfig],
    substation: str,
    states: Mapping[str, AssetState],
    path: Path,
) -> Path:
    """Draw every asset of `substation` in its state colour and write the image to `path`."""
    if cfg is None:
        raise ValueError("the configuration has no `inspection` section: nothing to render")
    if not assets:
        raise ValueError(f"assets.yaml has no equipment for substation {substation!r}")
    with _lock:
        r = scene_renderer(cfg.width, cfg.height)
        r.build(substation, assets)
        r.colour(substation, assets, states)
        lo, hi = r.bounds(substation)
        image = r.render(substation, framing(lo, hi, cfg.width / cfg.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    _legend(Image.fromarray(image), substation, states).save(path)
    return path


def _legend(image: Image.Image, substation: str, states: Mapping[str, AssetState]) -> Image.Image:
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), f"substation {substation}", fill=(20, 20, 30))
    counts = {s: sum(v is s for v in states.values()) for s in AssetState}
    y = 26
    for state, n in counts.items():
        colour = tuple(int(c * 255) for c in COLOURS[state])
        draw.rectangle((10, y, 22, y + 12), fill=colour)
        draw.text((28, y), f"{state.value} ({n})", fill=(20, 20, 30))
        y += 16
    return image


def is_blank(path: Path) -> bool:
    """True when the image is a single flat colour (a failed render)."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    return bool(pixels.std() < 1.0)


__all__ = ["Camera", "SceneRenderer", "SceneStats", "framing", "render_substation", "scene_renderer", "is_blank", "o3d"]
