"""Simulated scans of a substation, the test data for scan-to-twin registration: a partial view
ray-cast from a technician's standpoint (what the scanner cannot see is missing: occlusion), 5 mm
noise, an unknown pose (within ±30° and ±2 m), and optionally one equipment displaced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from inspection.config import AssetConfig
from inspection.equipment import equipment_kind
from inspection.scene import part_mesh


@dataclass(frozen=True)
class SimulatedScan:
    points: np.ndarray  # (n, 3) in the scanner's own frame
    true_pose: np.ndarray  # 4x4: maps scan points into the substation (model) frame
    displaced: str | None = None  # the equipment moved before scanning
    displacement: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def cloud(self) -> o3d.geometry.PointCloud:
        return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(self.points))


def asset_mesh(asset: AssetConfig) -> o3d.geometry.TriangleMesh:
    """All parts of one asset as one mesh, in the substation frame."""
    mesh = o3d.geometry.TriangleMesh()
    x, y = asset.position
    for spec in equipment_kind(asset.kind).parts_for(asset):
        mesh += part_mesh(spec, x, y, asset.rotation_deg)
    return mesh


def ground_mesh(assets: Sequence[AssetConfig], margin: float = 4.0) -> o3d.geometry.TriangleMesh:
    """The ground around the equipment (a thin slab whose top is z = 0)."""
    xy = np.array([a.position for a in assets], dtype=float)
    lo, hi = xy.min(axis=0) - margin, xy.max(axis=0) + margin
    slab = o3d.geometry.TriangleMesh.create_box(hi[0] - lo[0], hi[1] - lo[1], 0.05)
    slab.translate((lo[0], lo[1], -0.05))
    return slab


def random_pose(rng: np.random.Generator, max_deg: float = 30.0, max_m: float = 2.0) -> np.ndarray:
    """A rigid transform: rotation by up to `max_deg` about a random axis, translation up to
    `max_m` along each axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_deg, max_deg))
    pose = np.eye(4)
    pose[:3, :3] = o3d.geometry.get_rotation_matrix_from_axis_angle(axis * angle)
    pose[:3, 3] = rng.uniform(-max_m, max_m, size=3)
    return pose


def simulate_scan(
    assets: Sequence[AssetConfig],
    *,
    n_points: int = 200_000,
    noise_m: float = 0.005,
    viewpoint: Sequence[float] | None = None,
    displace: str | None = None,
    displacement_m: float = 0.10,
    remove: str | None = None,
    max_deg: float = 30.0,
    max_m: float = 2.0,
    seed: int = 0,
) -> SimulatedScan:
    """Ray-cast a partial view of the substation from `viewpoint` (default: a random standpoint
    in front of the plot at eye height), add Gaussian noise of `noise_m` per axis, move it by an
    unknown pose; with `displace`, that equipment is moved horizontally by `displacement_m` first;
    with `remove`, that equipment is not there at all."""
    rng = np.random.default_rng(seed)
    if not assets:
        raise ValueError("no equipment to scan")
    scene = o3d.t.geometry.RaycastingScene()
    shift = np.zeros(3)
    if remove is not None and not any(a.name == remove for a in assets):
        raise ValueError(f"cannot remove {remove!r}: not equipment of this substation")
    for asset in assets:
        if asset.name == remove:
            continue
        mesh = asset_mesh(asset)
        if asset.name == displace:
            direction = rng.uniform(0, 2 * np.pi)
            shift = np.array([np.cos(direction), np.sin(direction), 0.0]) * displacement_m
            mesh.translate(shift)
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    if displace is not None and not any(a.name == displace for a in assets):
        raise ValueError(f"cannot displace {displace!r}: not equipment of this substation")
    ground = ground_mesh(assets)
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(ground))
    box = ground.get_axis_aligned_bounding_box()
    centre = box.get_center()
    extent = box.get_extent()
    if viewpoint is None:
        angle = rng.uniform(-0.6, 0.6) - np.pi / 2  # from the front (−y), give or take 35°
        reach = 0.5 * float(np.hypot(extent[0], extent[1])) + rng.uniform(2.0, 6.0)
        viewpoint = (centre[0] + reach * np.cos(angle), centre[1] + reach * np.sin(angle), 1.7 + rng.uniform(0, 2.0))
    eye = np.asarray(viewpoint, dtype=float)
    target = np.array([centre[0], centre[1], 1.0])
    # rays over the view, 3x more than needed (many miss or hit far ground), then subsampled
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=100.0,
        center=o3d.core.Tensor(target.tolist()),  # type: ignore[call-overload]
        eye=o3d.core.Tensor(eye.tolist()),  # type: ignore[call-overload]
        up=o3d.core.Tensor([0.0, 0.0, 1.0]),  # type: ignore[call-overload]
        width_px=int(np.sqrt(n_points * 4 * 4 / 3)) + 1,
        height_px=int(np.sqrt(n_points * 4 * 3 / 4)) + 1,
    )
    hits = scene.cast_rays(rays)
    t = hits["t_hit"].numpy()
    r = rays.numpy()
    ok = np.isfinite(t)
    pts = r[ok][:, :3] + r[ok][:, 3:] * t[ok][:, None]
    if len(pts) == 0:
        raise ValueError("the simulated scanner saw nothing: choose a viewpoint facing the equipment")
    if len(pts) > n_points:
        pts = pts[rng.choice(len(pts), n_points, replace=False)]
    pts = pts + rng.normal(scale=noise_m, size=pts.shape)
    to_model = random_pose(rng, max_deg, max_m)  # scan frame → model frame
    to_scan = np.linalg.inv(to_model)
    scan = pts @ to_scan[:3, :3].T + to_scan[:3, 3]
    return SimulatedScan(scan, to_model, displace, tuple(float(v) for v in shift))  # type: ignore[arg-type]


def pose_error(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation (degrees) between two 4x4 poses."""
    delta = np.linalg.inv(truth) @ estimate
    cos = np.clip((np.trace(delta[:3, :3]) - 1) / 2, -1.0, 1.0)
    return float(np.linalg.norm(delta[:3, 3])), float(np.degrees(np.arccos(cos)))
