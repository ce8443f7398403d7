"""Scan-to-twin registration: align a technician's point cloud (PLY, PCD, XYZ) to the substation's
model and say, per equipment, whether the scan finds it where the model has it.

Global alignment by FPFH features and RANSAC (no initial guess: the scan's pose is unknown), then
point-to-plane ICP, coarse to fine. Per equipment, after alignment, a local ICP of its model
points against the scan points around it gives its offset and tilt: moved (≥ `moved_m`),
leaning (≥ `lean_deg`), missing (the scanner saw the ground around it but almost nothing of it),
not seen (outside the scan), or ok."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open3d as o3d

from inspection.config import AssetConfig
from inspection.scansim import asset_mesh, ground_mesh

SCAN_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
reg = o3d.pipelines.registration
point_to_point = reg.TransformationEstimationPointToPoint()


class ScanError(Exception):
    """A scan that cannot be registered (unreadable, empty, or nothing to align it to)."""


@dataclass(frozen=True)
class EquipmentDeviation:
    asset: str
    status: str  # ok | moved | leaning | missing | not_seen
    points: int  # scan points near it
    offset_m: float | None = None
    offset: tuple[float, float, float] | None = None
    tilt_deg: float | None = None
    rmse_m: float | None = None


@dataclass
class Registration:
    transform: np.ndarray  # 4x4: scan frame → substation frame
    fitness: float
    inlier_rmse_m: float
    global_fitness: float
    seconds: float
    scan_points: int
    equipment: list[EquipmentDeviation] = field(default_factory=list)

    @property
    def flagged(self) -> list[EquipmentDeviation]:
        return [e for e in self.equipment if e.status in ("moved", "leaning", "missing")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "transform": np.round(self.transform, 6).tolist(),
            "fitness": round(self.fitness, 4),
            "inlier_rmse_m": round(self.inlier_rmse_m, 5),
            "global_fitness": round(self.global_fitness, 4),
            "seconds": round(self.seconds, 3),
            "scan_points": self.scan_points,
            "flagged": [e.asset for e in self.flagged],
            "equipment": [asdict(e) for e in self.equipment],
        }


def load_scan(path: Path) -> o3d.geometry.PointCloud:
    """Read a point cloud; an unreadable, unsupported or empty file is a ScanError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"scan file {path} does not exist: give the path of a .ply, .pcd or .xyz point cloud")
    if path.suffix.lower() not in SCAN_SUFFIXES:
        raise ScanError(
            f"scan file {path}: {path.suffix or 'no extension'} is not a point cloud format read here; "
            f"export it as {', '.join(SCAN_SUFFIXES)}"
        )
    try:
        cloud, said = _read_quietly(path)
    except Exception as exc:  # Open3D raises plain RuntimeErrors for a broken header
        raise ScanError(f"scan file {path} cannot be read ({exc}); re-export it from the scanner as PLY") from exc
    if "failed" in said.lower() or "error" in said.lower():  # Open3D returns what it read before the break
        detail = " ".join(said.split())[:200]
        raise ScanError(
            f"scan file {path} is broken ({detail}); re-export it from the scanner (binary or ASCII PLY with x, y, z)"
        )
    declared = _ply_vertices(path) if path.suffix.lower() == ".ply" else None
    if declared is not None and declared != len(cloud.points):  # Open3D returns what it read before the break
        raise ScanError(
            f"scan file {path} is broken: its header declares {declared} points, {len(cloud.points)} could be read; "
            "re-export it from the scanner (binary or ASCII PLY with x, y, z)"
        )
    if not cloud.has_points():
        raise ScanError(
            f"scan file {path} holds no points (broken or empty {path.suffix} file); "
            "re-export it from the scanner (binary or ASCII PLY with x, y, z)"
        )
    pts = np.asarray(cloud.points)
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        cloud = cloud.select_by_index(np.flatnonzero(finite).tolist())
    if len(cloud.points) < 100:
        raise ScanError(f"scan file {path} has only {len(cloud.points)} usable points; scan the equipment again")
    return cloud


def _read_quietly(path: Path) -> tuple[o3d.geometry.PointCloud, str]:
    """Read with Open3D and return what its reader printed: it reports a broken file only there."""
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            cloud = o3d.io.read_point_cloud(str(path), print_progress=False)  # type: ignore[arg-type]
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        return cloud, out.read().decode("utf-8", "replace")


def _ply_vertices(path: Path) -> int | None:
    """The vertex count a PLY header declares (None when there is no readable header)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    for line in head.split(b"end_header")[0].splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"element" and parts[1] == b"vertex" and parts[2].isdigit():
            return int(parts[2])
    return None


@dataclass
class ModelCloud:
    cloud: o3d.geometry.PointCloud  # equipment and ground, the target of the alignment
    equipment: o3d.geometry.PointCloud  # equipment only (global matching)
    assets: list[AssetConfig]
    asset_points: dict[str, np.ndarray]  # per equipment, points sampled on its surface
    _cache: dict = field(default_factory=dict)

    def features(self, voxel: float) -> tuple[o3d.geometry.PointCloud, Any]:
        """The equipment thinned to `voxel` and its FPFH features (computed once per scale)."""
        if ("f", voxel) not in self._cache:
            self._cache[("f", voxel)] = _features(self.equipment, voxel)
        return self._cache[("f", voxel)]

    def fine(self, voxel: float) -> o3d.geometry.PointCloud:
        """Equipment and ground thinned to `voxel`, with normals (the ICP target)."""
        if ("c", voxel) not in self._cache:
            down = self.cloud.voxel_down_sample(voxel)
            down.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * voxel, max_nn=30))
            self._cache[("c", voxel)] = down
        return self._cache[("c", voxel)]


def model_cloud(assets: Sequence[AssetConfig], spacing_m: float = 0.06, seed: int = 0) -> ModelCloud:
    """Points sampled on every equipment's surface (about one per `spacing_m`²) and on the ground."""
    if not assets:
        raise ScanError("the substation has no equipment in assets.yaml: nothing to register the scan to")
    np.random.seed(seed)  # Open3D's sampler uses its own seed: o3d.utility.random
    o3d.utility.random.seed(seed)
    clouds, per_asset = [], {}
    for asset in assets:
        mesh = asset_mesh(asset)
        n = max(200, int(mesh.get_surface_area() / spacing_m**2))
        pts = np.asarray(mesh.sample_points_uniformly(n).points)
        per_asset[asset.name] = pts
        clouds.append(pts)
    equipment = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.vstack(clouds)))
    ground = ground_mesh(assets)
    n = int(ground.get_surface_area() / 2 / (spacing_m * 2.5) ** 2)  # the top face, sparser
    gp = np.asarray(ground.sample_points_uniformly(n * 2).points)
    clouds.append(gp[gp[:, 2] > -0.01])
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.vstack(clouds)))
    return ModelCloud(cloud, equipment, list(assets), per_asset)


def _features(cloud: o3d.geometry.PointCloud, voxel: float) -> tuple[o3d.geometry.PointCloud, Any]:
    down = cloud.voxel_down_sample(voxel)
    down.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.5 * voxel, max_nn=30))
    fpfh = reg.compute_fpfh_feature(  # type: ignore[call-arg]
        down, o3d.geometry.KDTreeSearchParamHybrid(radius=6 * voxel, max_nn=100)
    )
    return down, fpfh


def _levelling(cloud: o3d.geometry.PointCloud) -> tuple[np.ndarray, np.ndarray]:
    """The 4x4 transform that puts the scan's ground plane at z = 0 with the equipment above it,
    and the indices of the ground points (the scan's largest plane)."""
    plane, on_plane = cloud.segment_plane(distance_threshold=0.08, ransac_n=3, num_iterations=300)
    a, b, c, d = plane
    n = np.array([a, b, c], dtype=float)
    norm = np.linalg.norm(n)
    n, d = n / norm, d / norm
    pts = np.asarray(cloud.points)
    if np.median(pts @ n + d) < 0:  # most points (the equipment) above the ground
        n, d = -n, -d
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(n, z)
    s, c_ = np.linalg.norm(axis), float(n @ z)
    rot = np.eye(3) if s < 1e-9 else o3d.geometry.get_rotation_matrix_from_axis_angle(axis / s * np.arctan2(s, c_))
    t = np.eye(4)
    t[:3, :3] = rot
    t[2, 3] = d  # a point on the plane (n·p = -d) lands at z = 0
    return t, np.asarray(on_plane)


def _yaw(deg: float) -> np.ndarray:
    t = np.eye(4)
    a = np.radians(deg)
    t[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return t


def _within(transform: np.ndarray, max_deg: float, max_m: float) -> bool:
    cos = np.clip((np.trace(transform[:3, :3]) - 1) / 2, -1.0, 1.0)
    return bool(np.degrees(np.arccos(cos)) <= max_deg + 5.0 and np.linalg.norm(transform[:3, 3]) <= max_m * 1.8 + 0.5)


def register_scan(
    scan: o3d.geometry.PointCloud,
    model: ModelCloud,
    *,
    voxel_m: float = 0.25,
    fine_voxel_m: float = 0.08,
    max_deg: float = 30.0,
    max_m: float = 2.0,
    moved_m: float = 0.05,
    lean_deg: float = 3.0,
    seed: int = 0,
) -> Registration:
    """Align `scan` to the model and assess each equipment's deviation.

    A substation repeats itself (identical bays side by side, a mirror-symmetric plan), so
    features alone match a bay to its neighbour as well as to itself. The scan's pose is known
    roughly (the device's anchor: within `max_deg` and `max_m` of the model frame), and only
    alignments within that bound are taken: the ground plane levels the scan, then FPFH + RANSAC
    and a sweep of headings each give candidates refined by ICP on the equipment; the best one
    within the bound is refined by point-to-plane ICP, coarse to fine."""
    t0 = time.perf_counter()
    o3d.utility.random.seed(seed)
    n_scan = len(scan.points)
    coarse = scan.voxel_down_sample(voxel_m / 2)
    if len(coarse.points) < 50:
        raise ScanError(f"the scan is too small to register ({n_scan} points, {len(coarse.points)} voxels)")
    level, ground = _levelling(coarse)
    body = coarse.select_by_index(ground.tolist(), invert=True).transform(level)
    src, src_f = _features(body, voxel_m)  # type: ignore[arg-type]
    dst, dst_f = model.features(voxel_m)
    candidates = []
    glob = reg.registration_ransac_based_on_feature_matching(
        src,
        dst,
        src_f,
        dst_f,
        True,
        1.5 * voxel_m,
        reg.TransformationEstimationPointToPoint(False),
        3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(1.5 * voxel_m)],
        reg.RANSACConvergenceCriteria(10_000, 0.999),
    )
    candidates.append(np.asarray(glob.transformation))
    candidates += [_yaw(a) for a in np.arange(-max_deg - 7.5, max_deg + 7.6, 7.5)]
    best, best_fit = None, -1.0
    sweep_src, sweep_dst = src.voxel_down_sample(2 * voxel_m), dst.voxel_down_sample(2 * voxel_m)
    for start in candidates:
        t = start
        for distance in (1.5, 0.6):  # each heading's ICP on a thinner cloud: 13 of them
            t = reg.registration_icp(
                sweep_src, sweep_dst, distance, t, point_to_point, reg.ICPConvergenceCriteria(max_iteration=15)
            ).transformation
        t = reg.registration_icp(
            src, dst, 0.3, t, point_to_point, reg.ICPConvergenceCriteria(max_iteration=10)
        ).transformation
        full = np.asarray(t) @ level
        if not _within(full, max_deg, max_m):
            continue
        fit = reg.evaluate_registration(src, dst, 0.3, t).fitness
        if fit > best_fit:
            best, best_fit = full, fit
    if best is None:
        raise ScanError(
            f"no alignment of the scan within {max_deg}° and {max_m} m of the substation's frame; "
            "check that the scan is of this substation, or widen --max-deg/--max-m"
        )
    transform = best
    fine_src = scan.voxel_down_sample(fine_voxel_m)
    fine_dst = model.fine(fine_voxel_m)
    result = None
    for distance in (0.3, 2.0 * fine_voxel_m):
        result = reg.registration_icp(
            fine_src,
            fine_dst,
            distance,
            transform,
            reg.TransformationEstimationPointToPlane(),
            reg.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=20),
        )
        transform = result.transformation
    assert result is not None
    aligned = np.asarray(fine_src.points) @ transform[:3, :3].T + transform[:3, 3]
    equipment = [_deviation(a, model.asset_points[a.name], aligned, moved_m, lean_deg) for a in model.assets]
    return Registration(
        transform=np.asarray(transform),
        fitness=float(result.fitness),
        inlier_rmse_m=float(result.inlier_rmse),
        global_fitness=float(best_fit),
        seconds=time.perf_counter() - t0,
        scan_points=n_scan,
        equipment=equipment,
    )


def _deviation(
    asset: AssetConfig, model_pts: np.ndarray, scan_pts: np.ndarray, moved_m: float, lean_deg: float
) -> EquipmentDeviation:
    """How far the scan puts this equipment from where the model has it."""
    margin = 0.3
    lo, hi = model_pts.min(axis=0), model_pts.max(axis=0)
    lo_g, hi_g = lo - [margin, margin, 0], hi + [margin, margin, 0]
    near = scan_pts[(scan_pts >= lo_g - [0, 0, 0.0]).all(axis=1) & (scan_pts <= hi_g + [0, 0, margin]).all(axis=1)]
    body = near[near[:, 2] > 0.06]  # above the ground
    ring_lo, ring_hi = lo - [1.5, 1.5, 0.5], hi + [1.5, 1.5, 0.5]
    around = scan_pts[(scan_pts >= ring_lo).all(axis=1) & (scan_pts <= ring_hi).all(axis=1)]
    if len(body) < 30:
        ground_seen = int(((around[:, 2] < 0.06) & (around[:, 2] > -0.06)).sum())
        status = "missing" if ground_seen >= 200 and len(body) < 5 else "not_seen"
        return EquipmentDeviation(asset.name, status, int(len(body)))
    if len(body) > 1500:  # enough for an offset; the local ICP stays cheap
        body = body[np.random.default_rng(0).choice(len(body), 1500, replace=False)]
    # the scan sees part of it: its points are matched onto the whole model surface (not the
    # other way round, which would pull the model towards the seen side)
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(body))
    dst = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(model_pts))
    local = reg.registration_icp(
        src, dst, 0.25, np.eye(4), point_to_point, reg.ICPConvergenceCriteria(max_iteration=60)
    )
    t = np.linalg.inv(np.asarray(local.transformation))  # model place → where the scan has it
    centre = model_pts.mean(axis=0)
    offset = t[:3, :3] @ centre + t[:3, 3] - centre  # how far its centre moved
    cos = np.clip((np.trace(t[:3, :3]) - 1) / 2, -1.0, 1.0)
    tilt = float(np.degrees(np.arccos(cos)))
    dist = float(np.linalg.norm(offset))
    leaning = tilt >= lean_deg and len(body) >= 300  # a tilt from a few points is noise
    status = "moved" if dist >= moved_m else "leaning" if leaning else "ok"
    return EquipmentDeviation(
        asset.name,
        status,
        int(len(body)),
        round(dist, 4),
        tuple(round(float(v), 4) for v in offset),  # type: ignore[arg-type]
        round(tilt, 3),
        round(float(local.inlier_rmse), 4),
    )


def register_file(path: Path, assets: Sequence[AssetConfig], **kwargs: Any) -> Registration:
    """Read a scan file and register it to the substation's equipment."""
    return register_scan(load_scan(path), model_cloud(assets), **kwargs)
