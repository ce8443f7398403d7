"""Procedural 3D equipment: each asset becomes the primitives its kind's description lists
(`inspection/equipment/<kind>.py`), placed on the substation plot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from gridverse.config import AssetConfig
from inspection.equipment import ColourRole, PartSpec, Primitive, equipment_kind
from inspection.state import AssetState, Rgb


@dataclass
class Part:
    name: str
    mesh: o3d.geometry.TriangleMesh
    colour: Rgb


def _box(w: float, d: float, h: float, at: tuple[float, float, float]) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_box(w, d, h)
    mesh.translate((at[0] - w / 2, at[1] - d / 2, at[2]))
    return mesh


def _cylinder(r: float, h: float, at: tuple[float, float, float], axis: str = "z") -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=r, height=h, resolution=16)
    if axis == "x":
        mesh.rotate(mesh.get_rotation_matrix_from_xyz((0, np.pi / 2, 0)), center=(0, 0, 0))
    elif axis == "y":
        mesh.rotate(mesh.get_rotation_matrix_from_xyz((np.pi / 2, 0, 0)), center=(0, 0, 0))
    mesh.translate(at)
    return mesh


def _sphere(r: float, at: tuple[float, float, float]) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=r)
    mesh.translate(at)
    return mesh


def local_part_mesh(spec: PartSpec) -> o3d.geometry.TriangleMesh:
    """The mesh of one described part in the asset's own frame (origin at its foot, z up)."""
    at = spec.offset
    size = spec.size
    if spec.primitive is Primitive.BOX:
        return _box(size[0], size[1], size[2], at)
    if spec.primitive is Primitive.CYLINDER:
        return _cylinder(size[0], size[1], at, spec.axis)
    return _sphere(size[0], at)


def yaw_matrix(rotation_deg: float) -> np.ndarray:
    """The 3x3 rotation about the vertical (z) axis, anticlockwise seen from above."""
    a = np.radians(rotation_deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def part_mesh(spec: PartSpec, x: float, y: float, rotation_deg: float = 0.0) -> o3d.geometry.TriangleMesh:
    """The mesh of one described part for an asset standing at (x, y), turned by `rotation_deg`."""
    mesh = local_part_mesh(spec)
    if rotation_deg:
        mesh.rotate(yaw_matrix(rotation_deg), center=(0.0, 0.0, 0.0))
    mesh.translate((x, y, 0.0))
    return mesh


def asset_parts(asset: AssetConfig, colour: Rgb | AssetState) -> list[Part]:
    """The primitives for one asset; the state colour goes on the part a technician looks at.

    `colour` is the asset's state (coloured by its kind's mapping) or an explicit colour."""
    kind = equipment_kind(asset.kind)
    state_colour = kind.colour_of(colour) if isinstance(colour, AssetState) else colour
    x, y = asset.position
    return [
        Part(
            f"{asset.name}/{spec.name}",
            part_mesh(spec, x, y, asset.rotation_deg),
            state_colour if spec.colour is ColourRole.STATE else kind.structure_colour,
        )
        for spec in kind.parts_for(asset)
    ]


def ground(extent: float = 40.0) -> Part:
    return Part("ground", _box(extent, extent, 0.05, (0, -4, -0.05)), (0.80, 0.82, 0.78))
