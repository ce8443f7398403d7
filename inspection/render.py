"""Render substations offscreen with Open3D (GPU or CPU): one long-lived renderer whose scene is
built once per substation and only re-coloured afterwards.

On Mesa's CPU renderer (llvmpipe) a frame costs per geometry (a draw call and a material each), not
per triangle: the primary substation's 197 parts as 197 geometries gave no frame within 400 s,
merged into a few meshes (one per colour) 0.3-1.1 s at 320x200. So the scene holds ONE merged
mesh per (substation, colour), named `<substation>|colour<n>`, plus the ground; every part's mesh
and metadata stay here in Python. A state change re-computes each part's colour, and only the
colour groups whose member set changed are removed and added again (merged anew); the others are
untouched, so a render with no change adds no geometry. A step view moves the camera.

Rebuilding the whole scene each frame (`clear_geometry()` + `add_geometry()`) leaked in Open3D's
Filament backend and made each frame slower than the last (2.5 s, 10.9 s, 42 s here).
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
    """What the renderer did, so a caller (or a test) can see that a scene is reused.

    Geometries are what the Open3D scene holds: one merged mesh per (substation, colour) and a
    ground per substation. `materials_changed` counts re-colourings: a part (or a ground) whose
    colour changed."""

    builds: int = 0  # substations whose parts were built
    parts: int = 0  # parts kept (in Python) across the built substations
    geometries: int = 0  # geometries in the scene now
    geometries_added: int = 0  # colour groups and grounds added to the scene, ever
    geometries_removed: int = 0  # colour groups removed because their member set changed
    materials_changed: int = 0
    renders: int = 0


@dataclass
class _Part:
    name: str  # `<asset>/<part>`
    asset: str
    role: ColourRole
    structure: Rgb
    bounds: tuple[np.ndarray, np.ndarray]
    vertices: np.ndarray  # (n, 3) float, substation frame
    triangles: np.ndarray  # (m, 3) int, indices into `vertices`


@dataclass
class _Group:
    geometry: str  # the name in the Open3D scene
    members: tuple[int, ...]  # indices into `_Built.parts`


@dataclass
class _Built:
    parts: list[_Part] = field(default_factory=list)
    colours: list[Rgb] = field(default_factory=list)  # each part's colour now
    groups: dict[Rgb, _Group] = field(default_factory=dict)  # what the scene holds now, per colour
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


def framing(
    lo: Sequence[float] | np.ndarray, hi: Sequence[float] | np.ndarray, aspect: float, fov_deg: float = FOV_DEG
) -> Camera:
    """A 3/4 view of the box [lo, hi] at a distance where the whole box fits the field of view."""
    lo_, hi_ = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    center = (lo_ + hi_) / 2
    radius = max(float(np.linalg.norm(hi_ - lo_)) / 2, 0.5)
    half = math.radians(fov_deg) / 2
    half = min(half, math.atan(math.tan(half) * aspect))  # the narrower of the two fields of view
    distance = 1.1 * radius / math.sin(half)
    d = VIEW_DIRECTION / np.linalg.norm(VIEW_DIRECTION)
    eye = center + distance * d
    cx, cy, cz = (float(v) for v in center)
    ex, ey, ez = (float(v) for v in eye)
    return Camera(fov_deg, (cx, cy, cz), (ex, ey, ez))


def _merged(parts: Sequence[_Part]) -> o3d.geometry.TriangleMesh:
    """One mesh of all `parts` (vertices concatenated, triangle indices offset), with vertex normals."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    vertices = np.concatenate([p.vertices for p in parts])
    triangles = np.concatenate([p.triangles + off for p, off in zip(parts, offsets, strict=True)])
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    mesh.compute_vertex_normals()
    return mesh


class SceneRenderer:
    """One Open3D offscreen renderer for the life of the process, each substation's parts merged
    into one geometry per colour, re-grouped on a colour change and looked at from any camera."""

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
        self._ground: dict[str, Rgb] = {}  # substation → its ground's colour now
        self._group_names: dict[tuple[str, Rgb], str] = {}  # (substation, colour) → geometry name, kept
        self._shown: str | None = None
        self._camera: Camera | None = None

    # -- the scene -------------------------------------------------------------------------------
    def build(self, substation: str, assets: Sequence[AssetConfig]) -> None:
        """Build the substation's parts and add them to the scene, once (later calls are no-ops).

        Each part starts in its structure colour or, for a state-coloured part, unknown."""
        if substation in self._built:
            return
        if not assets:
            raise ValueError(f"assets.yaml has no equipment for substation {substation!r}")
        built = _Built()
        for asset in assets:
            kind = equipment_kind(asset.kind)
            x, y = asset.position
            for spec in kind.parts_for(asset):
                mesh = part_mesh(spec, x, y, asset.rotation_deg)
                vertices = np.asarray(mesh.vertices, dtype=float).copy()
                triangles = np.asarray(mesh.triangles, dtype=np.int32).copy()
                bounds = (vertices.min(axis=0), vertices.max(axis=0))
                name = f"{asset.name}/{spec.name}"
                built.parts.append(
                    _Part(name, asset.name, spec.colour, kind.structure_colour, bounds, vertices, triangles)
                )
                built.colours.append(
                    kind.structure_colour if spec.colour is ColourRole.STRUCTURE else COLOURS[AssetState.UNKNOWN]
                )
        if not built.parts:
            raise ValueError(f"the equipment of substation {substation!r} in assets.yaml has no parts to draw")
        built.lo = np.min([p.bounds[0] for p in built.parts], axis=0)
        built.hi = np.max([p.bounds[1] for p in built.parts], axis=0)
        self._built[substation] = built
        self.stats.builds += 1
        self.stats.parts += len(built.parts)

        floor = ground()
        floor.mesh.compute_vertex_normals()
        self.renderer.scene.add_geometry(f"{substation}|ground", floor.mesh, _material(floor.colour))
        self._ground[substation] = floor.colour
        self.stats.geometries_added += 1
        self.stats.geometries += 1
        self._regroup(substation, built.colours)
        self._show(substation, force=True)

    def _regroup(self, substation: str, colours: Sequence[Rgb]) -> None:
        """Give the parts these colours: each colour group whose member set changed is removed and
        added again as one merged mesh; unchanged groups stay as they are."""
        built = self._built[substation]
        if len(colours) != len(built.parts):
            raise ValueError(f"{len(colours)} colours for the {len(built.parts)} parts of {substation!r}")
        members: dict[Rgb, list[int]] = {}
        for i, colour in enumerate(colours):
            members.setdefault(tuple(colour), []).append(i)  # type: ignore[arg-type]
        wanted = {colour: tuple(idx) for colour, idx in members.items()}
        self.stats.materials_changed += sum(a != b for a, b in zip(built.colours, colours, strict=True))
        built.colours = [tuple(c) for c in colours]  # type: ignore[misc]
        scene = self.renderer.scene
        for colour, group in list(built.groups.items()):
            if wanted.get(colour) != group.members:
                scene.remove_geometry(group.geometry)
                del built.groups[colour]
                self.stats.geometries_removed += 1
                self.stats.geometries -= 1
        visible = self._shown == substation
        for colour, idx in wanted.items():
            if colour in built.groups:
                continue
            key = (substation, colour)
            if key not in self._group_names:
                self._group_names[key] = f"{substation}|colour{len(self._group_names)}"
            name = self._group_names[key]
            scene.add_geometry(name, _merged([built.parts[i] for i in idx]), _material(colour))
            if not visible:
                scene.show_geometry(name, False)
            built.groups[colour] = _Group(name, idx)
            self.stats.geometries_added += 1
            self.stats.geometries += 1

    def _show(self, substation: str, *, force: bool = False) -> None:
        """Only this substation's ground and colour groups visible."""
        if self._shown == substation and not force:
            return
        scene = self.renderer.scene
        for other, built in self._built.items():
            visible = other == substation
            scene.show_geometry(f"{other}|ground", visible)
            for group in built.groups.values():
                scene.show_geometry(group.geometry, visible)
        self._shown = substation

    def _paint_ground(self, substation: str, colour: Rgb) -> None:
        if self._ground.get(substation) == colour:
            return
        self.renderer.scene.modify_geometry_material(f"{substation}|ground", _material(colour))
        self._ground[substation] = colour
        self.stats.materials_changed += 1

    def colour(self, substation: str, assets: Sequence[AssetConfig], states: Mapping[str, AssetState | str]) -> None:
        """Each asset's state-coloured parts in its kind's colour for its state (unknown when absent)."""
        kinds = {a.name: equipment_kind(a.kind) for a in assets}
        colours: list[Rgb] = []
        for part in self._built[substation].parts:
            if part.role is ColourRole.STATE:
                state = AssetState(states.get(part.asset, AssetState.UNKNOWN))
                colours.append(kinds[part.asset].colour_of(state))
            else:
                colours.append(part.structure)
        self._regroup(substation, colours)
        self._paint_ground(substation, ground().colour)  # a step view before may have dimmed it

    def highlight(self, substation: str, assets: Sequence[AssetConfig], asset_name: str, state: AssetState) -> None:
        """The one asset in its state colour, everything else washed out towards grey."""
        kind = equipment_kind(next(a.kind for a in assets if a.name == asset_name))
        colours: list[Rgb] = []
        for part in self._built[substation].parts:
            if part.asset == asset_name:
                colours.append(kind.colour_of(state) if part.role is ColourRole.STATE else part.structure)
            else:
                colours.append(dimmed(part.structure))
        self._regroup(substation, colours)
        self._paint_ground(substation, dimmed(ground().colour))

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
