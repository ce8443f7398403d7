"""Procedural 3D equipment: each asset kind becomes a few primitives, placed on the substation plot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from gridverse.config import AssetConfig, AssetKind

Rgb = tuple[float, float, float]


@dataclass
class Part:
    name: str
    mesh: o3d.geometry.TriangleMesh
    colour: Rgb


def _box(w: float, d: float, h: float, at: tuple[float, float, float]) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(w, d, h)
    mesh.translate((at[0] - w / 2, at[1] - d / 2, at[2]))
    return mesh


def _cylinder(r: float, h: float, at: tuple[float, float, float], axis: str = "z"):
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=r, height=h, resolution=16)
    if axis == "x":
        mesh.rotate(mesh.get_rotation_matrix_from_xyz((0, np.pi / 2, 0)), center=(0, 0, 0))
    mesh.translate(at)
    return mesh


def asset_parts(asset: AssetConfig, colour: Rgb) -> list[Part]:
    """The primitives for one asset; the state colour goes on the part a technician looks at."""
    x, y = asset.position
    grey: Rgb = (0.55, 0.57, 0.6)
    if asset.kind == AssetKind.TRANSFORMER:
        parts = [Part(f"{asset.name}/tank", _box(4.0, 2.6, 3.0, (x, y, 0)), colour)]
        parts += [
            Part(f"{asset.name}/radiator{i}", _box(0.15, 2.2, 2.4, (x + s, y, 0.3)), grey)
            for i, s in enumerate((-2.3, -2.6, 2.3, 2.6))
        ]
        parts += [
            Part(f"{asset.name}/bushing{i}", _cylinder(0.18, 1.6, (x + dx, y, 3.8)), grey)
            for i, dx in enumerate((-1.2, 0.0, 1.2))
        ]
        return parts
    if asset.kind == AssetKind.BREAKER:
        return [
            Part(f"{asset.name}/frame", _box(0.6, 0.6, 2.0, (x, y, 0)), grey),
            Part(f"{asset.name}/pole", _box(1.4, 0.9, 1.4, (x, y, 2.0)), colour),
        ]
    if asset.kind == AssetKind.BUSBAR:
        return [
            Part(f"{asset.name}/conductor", _cylinder(0.12, asset.length, (x, y, 5.0), "x"), colour),
            *[
                Part(f"{asset.name}/post{i}", _cylinder(0.15, 5.0, (x + dx, y, 2.5)), grey)
                for i, dx in enumerate(np.linspace(-asset.length / 2, asset.length / 2, 4))
            ],
        ]
    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=0.45)
    sphere.translate((x, y, 3.4))
    return [Part(f"{asset.name}/sensor", sphere, colour)]


def ground(extent: float = 40.0) -> Part:
    return Part("ground", _box(extent, extent, 0.05, (0, -4, -0.05)), (0.80, 0.82, 0.78))
