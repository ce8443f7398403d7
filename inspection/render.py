"""Render substations offscreen with Open3D on the CPU: one long-lived renderer per process whose
scene is built once per substation and only re-coloured afterwards.

The picture is ray-cast with Open3D's `RaycastingScene` (Embree): one ray per pixel finds the part
it hits and that triangle's normal, and the pixel is that part's colour, lit by a sun and a fill
light from the camera, with a dark outline where one part meets another. Every part is its own
geometry in the scene, added once; its colour is a row of a table kept here in Python, so a state
change, a step view's highlight or a camera move never adds or removes geometry: re-colouring is
assigning rows, a frame is one `cast_rays` call: about 0.08 s at 640x480 on this 2-core machine.

Open3D's Filament `OffscreenRenderer` was used before. On Mesa's software Vulkan (llvmpipe) it took
seconds to minutes a frame as soon as a scene held more than a few geometries (86 per-equipment
meshes: 113 s, 172 s, then 13-22 s a frame on this 2-core machine), stalled after colour groups
were removed and re-added, and leaked when rebuilt; the ray caster has none of that state. The
render process (`inspection/worker.py`) still keeps one renderer for the life of the process."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open3d as o3d
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
#: towards the sun (from above, behind the viewer's left shoulder), and how much each light gives
SUN = (np.array([0.4, -0.5, 0.8]) / np.linalg.norm([0.4, -0.5, 0.8])).astype(np.float32)
AMBIENT, SUNLIGHT, FILL = 0.32, 0.55, 0.25
OUTLINE = 0.55  # a pixel where one part meets another is this much of its colour
XRAY = 0.7  # where a part hides the step's equipment, the equipment shows through at this weight


@dataclass(frozen=True)
class Camera:
    fov_deg: float  # vertical
    center: tuple[float, float, float]
    eye: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass
class SceneStats:
    """What the renderer did, so a caller (or a test) can see that a scene is reused.

    Geometries are what the Open3D scenes hold: one per part and a ground per substation, added
    when the substation is built and never removed. `materials_changed` counts re-colourings: a
    part (or a ground) whose colour changed."""

    builds: int = 0  # substations whose parts were built
    parts: int = 0  # parts across the built substations
    geometries: int = 0  # geometries in the scenes now
    geometries_added: int = 0  # parts and grounds added to the scenes, ever
    geometries_removed: int = 0  # always 0: a scene is built once and only re-coloured
    materials_changed: int = 0
    renders: int = 0


@dataclass
class _Part:
    name: str  # `<asset>/<part>`
    asset: str
    role: ColourRole
    structure: Rgb
    bounds: tuple[np.ndarray, np.ndarray]


@dataclass
class _Built:
    scene: o3d.t.geometry.RaycastingScene
    parts: list[_Part] = field(default_factory=list)
    #: each geometry's colour now, by Open3D geometry id (parts, then the ground), and a last row
    #: for the background (a ray that hits nothing)
    table: np.ndarray = field(default_factory=lambda: np.zeros((1, 3), dtype=np.float32))
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # geometry id → table row
    ground_row: int = 0
    ground_colour: Rgb = (0.0, 0.0, 0.0)
    #: per asset, a scene of its parts alone and its geometry ids' table rows (x-ray of a step view)
    assets: dict[str, tuple[o3d.t.geometry.RaycastingScene, np.ndarray]] = field(default_factory=dict)
    lo: np.ndarray = field(default_factory=lambda: np.zeros(3))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(3))


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


def camera_matrices(camera: Camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The pinhole intrinsics (3x3) and the world-to-camera extrinsics (4x4, camera looking along
    +z with x right and y down, Open3D's convention) of `camera` for a `width` x `height` image."""
    eye, center, up = (np.asarray(v, dtype=float) for v in (camera.eye, camera.center, camera.up))
    forward = center - eye
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError(f"camera eye and centre coincide at {camera.eye}: nothing to look at")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"camera looks along its up vector {camera.up}: choose another up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    focal = (height / 2) / math.tan(math.radians(camera.fov_deg) / 2)
    intrinsic = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    rotation = np.stack([right, down, forward])
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rotation
    extrinsic[:3, 3] = -rotation @ eye
    return intrinsic, extrinsic


def _tensor_mesh(vertices: np.ndarray, triangles: np.ndarray) -> o3d.t.geometry.TriangleMesh:
    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor.from_numpy(np.ascontiguousarray(vertices, dtype=np.float32))
    mesh.triangle.indices = o3d.core.Tensor.from_numpy(np.ascontiguousarray(triangles, dtype=np.uint32))
    return mesh


def _cast(
    scene: o3d.t.geometry.RaycastingScene, row: np.ndarray, rays: np.ndarray, background: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast `rays` (..., 6): per ray the colour-table row of what it hits (`background` when
    nothing), that triangle's normal and the distance to it (inf when nothing)."""
    hit = scene.cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays, dtype=np.float32)))
    ids = hit["geometry_ids"].numpy().astype(np.int64)
    missed = ids >= len(row)  # Open3D's INVALID_ID
    rows = np.where(missed, background, row[np.minimum(ids, len(row) - 1)])
    return rows, hit["primitive_normals"].numpy(), hit["t_hit"].numpy()


def _shade(
    table: np.ndarray,
    rows: np.ndarray,
    normals: np.ndarray,
    directions: np.ndarray,
    ground_row: int,
    flat: bool = False,
) -> np.ndarray:
    """Colour per pixel (0..1 floats): the part's colour lit by the sun and a fill light from
    the eye, darker where one part meets another (an outline; not for `flat`, a list of pixels
    rather than an image); the background unlit."""
    background = len(table) - 1
    # a triangle seen from behind is lit as its front (the primitives' winding is not relied on)
    facing = -np.einsum("...k,...k->...", normals, directions)
    sun = np.einsum("...k,k->...", normals, SUN)
    sun *= np.sign(facing)
    light = np.clip(sun, 0.0, 1.0)
    light *= SUNLIGHT
    light += AMBIENT + FILL * np.abs(facing)
    np.minimum(light, 1.0, out=light)
    light[rows == background] = 1.0
    if not flat:
        edge = np.zeros(rows.shape, dtype=bool)  # where one part meets another (or the sky)
        edge[:, 1:] |= rows[:, 1:] != rows[:, :-1]
        edge[1:, :] |= rows[1:, :] != rows[:-1, :]
        edge &= rows != ground_row
        light[edge] *= OUTLINE
    image = table[rows]
    image *= light[..., None]
    return image


class SceneRenderer:
    """One renderer for the life of the process: each substation's parts added once to an Open3D
    ray-casting scene of its own, re-coloured on a state change and seen from any camera."""

    def __init__(self, width: int, height: int) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"inspection.width/height {width}x{height}: a render needs at least 16x16 pixels")
        self.width, self.height = width, height
        self.stats = SceneStats()
        self._built: dict[str, _Built] = {}
        self._camera: Camera | None = None
        self._local: tuple[float, np.ndarray] | None = None
        self._rays: np.ndarray | None = None  # (height, width, 6) float32: origin, unit direction
        self._matrices: tuple[np.ndarray, np.ndarray] | None = None
        self._directions: np.ndarray | None = None

    # -- the scene -------------------------------------------------------------------------------
    def build(self, substation: str, assets: Sequence[AssetConfig]) -> None:
        """Add the substation's parts to its scene, once (later calls are no-ops).

        Each part starts in its structure colour or, for a state-coloured part, unknown."""
        if substation in self._built:
            return
        if not assets:
            raise ValueError(f"assets.yaml has no equipment for substation {substation!r}")
        built = _Built(o3d.t.geometry.RaycastingScene())
        colours: list[Rgb] = []
        ids: list[int] = []
        for asset in assets:
            kind = equipment_kind(asset.kind)
            x, y = asset.position
            alone, own_ids, own_rows = o3d.t.geometry.RaycastingScene(), [], []
            for spec in kind.parts_for(asset):
                mesh = part_mesh(spec, x, y, asset.rotation_deg)
                vertices = np.asarray(mesh.vertices, dtype=float)
                tmesh = _tensor_mesh(vertices, np.asarray(mesh.triangles))
                own_rows.append(len(ids))
                ids.append(built.scene.add_triangles(tmesh))
                own_ids.append(alone.add_triangles(tmesh))
                built.parts.append(
                    _Part(
                        f"{asset.name}/{spec.name}",
                        asset.name,
                        spec.colour,
                        kind.structure_colour,
                        (vertices.min(axis=0), vertices.max(axis=0)),
                    )
                )
                colours.append(
                    kind.structure_colour if spec.colour is ColourRole.STRUCTURE else COLOURS[AssetState.UNKNOWN]
                )
            if own_ids:
                row_of = np.full(max(own_ids) + 1, -1, dtype=np.int64)
                row_of[np.asarray(own_ids)] = own_rows
                built.assets[asset.name] = (alone, row_of)
        if not built.parts:
            raise ValueError(f"the equipment of substation {substation!r} in assets.yaml has no parts to draw")
        floor = ground()
        ids.append(
            built.scene.add_triangles(
                _tensor_mesh(np.asarray(floor.mesh.vertices, dtype=float), np.asarray(floor.mesh.triangles))
            )
        )
        colours.append(floor.colour)
        built.ground_colour = floor.colour
        # table rows: parts in order, the ground, then the background; Open3D's geometry ids map onto them
        built.row = np.full(max(ids) + 1, len(colours), dtype=np.int64)
        built.row[np.asarray(ids)] = np.arange(len(ids))
        built.table = np.asarray([*colours, BACKGROUND], dtype=np.float32)
        built.ground_row = len(colours) - 1
        built.lo = np.min([p.bounds[0] for p in built.parts], axis=0)
        built.hi = np.max([p.bounds[1] for p in built.parts], axis=0)
        self._built[substation] = built
        self.stats.builds += 1
        self.stats.parts += len(built.parts)
        self.stats.geometries += len(ids)
        self.stats.geometries_added += len(ids)

    def _paint(self, substation: str, parts: Sequence[Rgb], floor: Rgb) -> None:
        """Give the parts (in build order) and the ground these colours."""
        built = self._built[substation]
        if len(parts) != len(built.parts):
            raise ValueError(f"{len(parts)} colours for the {len(built.parts)} parts of {substation!r}")
        new = np.asarray([*parts, floor], dtype=np.float32)
        old = built.table[: len(new)]
        self.stats.materials_changed += int(np.any(np.abs(new - old) > 1e-6, axis=1).sum())
        built.table[: len(new)] = new

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
        self._paint(substation, colours, self._built[substation].ground_colour)

    def highlight(self, substation: str, assets: Sequence[AssetConfig], asset_name: str, state: AssetState) -> None:
        """The one asset in its state colour, everything else washed out towards grey."""
        matches = [a.kind for a in assets if a.name == asset_name]
        if not matches:
            raise KeyError(f"{asset_name!r} is not equipment of substation {substation!r} in assets.yaml")
        kind = equipment_kind(matches[0])
        colours: list[Rgb] = []
        for part in self._built[substation].parts:
            if part.asset == asset_name:
                colours.append(kind.colour_of(state) if part.role is ColourRole.STATE else part.structure)
            else:
                colours.append(dimmed(part.structure))
        self._paint(substation, colours, dimmed(self._built[substation].ground_colour))

    def colour_of(self, substation: str, asset_name: str) -> list[Rgb]:
        """The colours the asset's parts are drawn in now (what a test or a caller can check)."""
        built = self._built[substation]
        rows = [i for i, p in enumerate(built.parts) if p.asset == asset_name]
        if not rows:
            raise KeyError(f"{asset_name!r} is not in the scene of {substation}")
        return [tuple(float(c) for c in built.table[i]) for i in rows]  # type: ignore[misc]

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
        """Place the camera: one ray per pixel centre from the eye, unit directions."""
        if camera == self._camera:
            return
        intrinsic, extrinsic = camera_matrices(camera, self.width, self.height)
        if self._local is None or self._local[0] != camera.fov_deg:  # the pixels' directions, camera frame
            xs = (np.arange(self.width, dtype=np.float32) + 0.5 - intrinsic[0, 2]) / intrinsic[0, 0]
            ys = (np.arange(self.height, dtype=np.float32) + 0.5 - intrinsic[1, 2]) / intrinsic[1, 1]
            local = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.float32(1.0)), axis=-1)
            local /= np.linalg.norm(local, axis=-1, keepdims=True)
            self._local = (camera.fov_deg, local.astype(np.float32))
        rays = np.empty((self.height, self.width, 6), dtype=np.float32)
        rays[..., :3] = np.asarray(camera.eye, dtype=np.float32)
        rays[..., 3:] = self._local[1] @ extrinsic[:3, :3].astype(np.float32)  # camera → world
        self._rays = rays
        self._directions = rays[..., 3:]
        self._matrices = intrinsic, extrinsic
        self._camera = camera

    def render(self, substation: str, camera: Camera, xray: str | None = None) -> np.ndarray:
        """The substation seen from `camera`: an (height, width, 3) uint8 image. With `xray` (an
        asset's name) that equipment shows through whatever stands in front of it (a step view
        must show the equipment it is about)."""
        if substation not in self._built:
            raise KeyError(f"substation {substation!r} was not built: call build() first")
        built = self._built[substation]
        self.look(camera)
        assert self._rays is not None and self._directions is not None
        rows, normals, depth = _cast(built.scene, built.row, self._rays, len(built.table) - 1)
        image = _shade(built.table, rows, normals, self._directions, built.ground_row)
        if xray is not None:
            self._xray(built, xray, rows, depth, image)
        self.stats.renders += 1
        image *= 255.0
        image += 0.5
        return np.clip(image, 0, 255, out=image).astype(np.uint8)

    def _xray(self, built: _Built, asset: str, rows: np.ndarray, depth: np.ndarray, image: np.ndarray) -> None:
        """Where a part in front hides `asset`, draw the asset with the hiding part as a ghost."""
        if asset not in built.assets:
            raise KeyError(f"{asset!r} is not in the scene of this substation")
        scene, row_of = built.assets[asset]
        assert self._rays is not None and self._directions is not None
        box = self._pixel_box(*self.bounds_of(built, asset))
        if box is None:
            return
        x0, y0, x1, y1 = box
        window = (slice(y0, y1), slice(x0, x1))
        # only a ray whose first hit is another part (not the sky, the ground or the asset) can be hidden
        front = rows[window]
        candidates = (front != built.ground_row) & (front != len(built.table) - 1) & ~np.isin(front, row_of)
        if not candidates.any():
            return
        rays = self._rays[window][candidates]
        own_rows, own_normals, own_depth = _cast(scene, row_of, rays, len(built.table) - 1)
        hidden = np.isfinite(own_depth) & (depth[window][candidates] < own_depth)
        if not hidden.any():
            return
        seen = _shade(built.table, own_rows[hidden], own_normals[hidden], rays[hidden, 3:], built.ground_row, flat=True)
        region = image[window]
        ys, xs = np.nonzero(candidates)
        ys, xs = ys[hidden], xs[hidden]
        region[ys, xs] = XRAY * seen + (1.0 - XRAY) * region[ys, xs]

    @staticmethod
    def bounds_of(built: _Built, asset: str) -> tuple[np.ndarray, np.ndarray]:
        boxes = [p.bounds for p in built.parts if p.asset == asset]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def _pixel_box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
        """The pixel rectangle (x0, y0, x1, y1) the box [lo, hi] covers; the whole image when a
        corner is behind the camera, None when it is off the image."""
        corners = [self.project((x, y, z)) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        if any(c is None for c in corners):
            return 0, 0, self.width, self.height
        xs = [c[0] for c in corners if c is not None]
        ys = [c[1] for c in corners if c is not None]
        x0, x1 = max(0, int(min(xs)) - 1), min(self.width, int(max(xs)) + 2)
        y0, y1 = max(0, int(min(ys)) - 1), min(self.height, int(max(ys)) + 2)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def project(self, point: Sequence[float]) -> tuple[float, float] | None:
        """Pixel (x right, y down) of a 3D point for the current camera; None when behind it."""
        if self._matrices is None:
            return None
        intrinsic, extrinsic = self._matrices
        p = extrinsic[:3, :3] @ np.asarray(point, dtype=float) + extrinsic[:3, 3]
        if p[2] <= 1e-6:
            return None
        u, v, w = intrinsic @ p
        return float(u / w), float(v / w)


_renderers: dict[tuple[int, int], SceneRenderer] = {}
_lock = threading.Lock()  # one render at a time: the renderer keeps the camera and colours between calls


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


__all__ = [
    "Camera",
    "SceneRenderer",
    "SceneStats",
    "camera_matrices",
    "framing",
    "render_substation",
    "scene_renderer",
    "is_blank",
    "o3d",
]
