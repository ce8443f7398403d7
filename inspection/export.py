"""A substation as one binary glTF (GLB) for headsets and browsers.

Built with pygltflib, a thin typed mirror of the glTF 2.0 schema: we write exactly the nodes,
accessors and materials the Khronos validator checks, with no hidden mesh processing (trimesh
would also do, but it reorganises scenes and drops per-node `extras`, which carry our metadata).
Open3D's own GLB writer fails the validator (index accessor max, Open3D issue 4777) and has no
per-node metadata, so Open3D is used only to build the primitives' geometry.

Layout: a root node for the substation; an `anchor` node at the marker origin (the plot's 0, 0);
one node per equipment, translated and turned to its place, with one child node per named part;
`extras` on each equipment node hold its SCL path, asset id, state and live values. Units are
metres, +Y up (glTF's convention): the plot's (x, y, z-up) becomes (x, z, -y)."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib as gl

from gridverse.config import Settings
from gridverse.historian import Historian
from inspection.config import AssetConfig
from inspection.equipment import ColourRole, PartSpec, Primitive, equipment_kind
from inspection.scene import local_part_mesh
from inspection.state import AssetState, Rgb

STRUCTURE_MATERIAL = "structure"
#: Z-up (the plot and Open3D) to glTF's Y-up: (x, y, z) → (x, z, -y), a proper rotation.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class ExportError(ValueError):
    """Nothing to export (no such substation, no assets); the message names the remedy."""


@dataclass(frozen=True)
class Live:
    """An equipment's state and live values as exported (`unknown` and none without a historian)."""

    state: AssetState = AssetState.UNKNOWN
    values: Mapping[str, float] | None = None
    reasons: Sequence[str] = ()


def _json_number(value: float) -> float | None:
    """glTF extras are JSON: NaN and infinities have no spelling there (None instead)."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class _Builder:
    """Accumulates buffer views, accessors, meshes and materials into one GLB."""

    def __init__(self) -> None:
        self.gltf = gl.GLTF2(
            asset=gl.Asset(version="2.0", generator="gridverse inspection.export (pygltflib)"),
            scene=0,
        )
        self.blob = bytearray()
        self.meshes: dict[tuple[Any, ...], int] = {}
        self.materials: dict[tuple[str, Rgb], int] = {}

    def _view(self, data: bytes, target: int) -> int:
        while len(self.blob) % 4:  # every view starts on a 4-byte boundary
            self.blob.append(0)
        self.gltf.bufferViews.append(
            gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target)
        )
        self.blob.extend(data)
        return len(self.gltf.bufferViews) - 1

    def _accessor(self, array: np.ndarray, target: int, kind: str, minmax: bool = False) -> int:
        view = self._view(array.tobytes(), target)
        component = gl.UNSIGNED_INT if array.dtype == np.uint32 else gl.FLOAT
        accessor = gl.Accessor(bufferView=view, componentType=component, count=len(array), type=kind)
        if minmax:
            cast = int if component == gl.UNSIGNED_INT else float
            columns = array.reshape(len(array), -1)
            accessor.min = [cast(v) for v in columns.min(axis=0)]
            accessor.max = [cast(v) for v in columns.max(axis=0)]
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    def material(self, name: str, colour: Rgb, extras: dict[str, Any]) -> int:
        key = (name, colour)
        if key not in self.materials:
            self.gltf.materials.append(
                gl.Material(
                    name=name,
                    pbrMetallicRoughness=gl.PbrMetallicRoughness(
                        baseColorFactor=[*map(float, colour), 1.0], metallicFactor=0.1, roughnessFactor=0.7
                    ),
                    doubleSided=False,
                    extras=extras,
                )
            )
            self.materials[key] = len(self.gltf.materials) - 1
        return self.materials[key]

    def mesh(self, spec: PartSpec, material: int) -> int:
        """The glTF mesh of one part in its equipment's frame (shared by equal parts)."""
        key = (spec, material)
        if key in self.meshes:
            return self.meshes[key]
        positions, normals, indices = _geometry(spec)
        primitive = gl.Primitive(
            attributes=gl.Attributes(
                POSITION=self._accessor(positions, gl.ARRAY_BUFFER, gl.VEC3, minmax=True),
                NORMAL=self._accessor(normals, gl.ARRAY_BUFFER, gl.VEC3),
            ),
            indices=self._accessor(indices, gl.ELEMENT_ARRAY_BUFFER, gl.SCALAR, minmax=True),
            material=material,
            mode=gl.TRIANGLES,
        )
        self.gltf.meshes.append(gl.Mesh(name=spec.name, primitives=[primitive]))
        self.meshes[key] = len(self.gltf.meshes) - 1
        return self.meshes[key]

    def node(self, node: gl.Node) -> int:
        self.gltf.nodes.append(node)
        return len(self.gltf.nodes) - 1

    def finish(self, path: Path) -> Path:
        self.gltf.buffers.append(gl.Buffer(byteLength=len(self.blob)))
        self.gltf.set_binary_blob(bytes(self.blob))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.gltf.save_binary(str(path))
        return path


def _geometry(spec: PartSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, unit normals (float32, Y-up) and triangle indices (uint32) of one part.

    Boxes are flat-shaded (each face its own vertices); cylinders and spheres smooth."""
    mesh = local_part_mesh(spec)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int64)
    if spec.primitive is Primitive.BOX:
        corners = vertices[triangles]  # (n, 3, 3)
        face = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        face /= np.linalg.norm(face, axis=1, keepdims=True)
        vertices = corners.reshape(-1, 3)
        normals = np.repeat(face, 3, axis=0)
        triangles = np.arange(len(vertices)).reshape(-1, 3)
    else:
        mesh.compute_vertex_normals()
        normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    positions = (vertices @ Z_UP_TO_Y_UP.T).astype(np.float32)
    normals = normals @ Z_UP_TO_Y_UP.T
    normals = (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32)
    return positions, normals, triangles.astype(np.uint32).reshape(-1)


def _yaw_quaternion(rotation_deg: float) -> list[float]:
    """glTF rotation (x, y, z, w) for a turn about the vertical: the plot's +z is glTF's +Y."""
    half = math.radians(rotation_deg) / 2
    return [0.0, math.sin(half), 0.0, math.cos(half)]


def asset_extras(asset: AssetConfig, substation: str, live: Live) -> dict[str, Any]:
    """What a headset app reads from an equipment node: who it is, where, its state and values.

    pygltflib leaves out keys whose value is None or empty (no bay, no values): read with defaults."""
    values = {k: _json_number(v) for k, v in (live.values or {}).items()}
    missing = sorted(k for k, v in values.items() if v is None)
    extras: dict[str, Any] = {
        "scl_path": asset.name,
        "asset_id": asset.id,
        "kind": asset.kind.value,
        "scl_type": asset.scl_type,
        "substation": substation,
        "voltage_level": asset.voltage_level,
        "bay": asset.bay,
        "device": asset.device,
        "state": live.state.value,
        "values": {k: v for k, v in values.items() if v is not None},
    }
    if missing:  # NaN or infinite: named, not dropped silently (JSON has no spelling for them)
        extras["values_missing"] = missing
    if live.reasons:
        extras["reasons"] = list(live.reasons)
    if asset.element is not None:
        extras["element"] = asset.element.model_dump(mode="json", exclude_none=True)
    if asset.last_inspected is not None:
        extras["last_inspected"] = asset.last_inspected.isoformat()
    return extras


def export_glb(
    assets: Sequence[AssetConfig],
    substation: str,
    path: Path,
    live: Mapping[str, Live] | None = None,
    *,
    note: str = "",
) -> Path:
    """Write `substation`'s equipment to `path` as a GLB; `live` per asset name (unknown without)."""
    if not assets:
        raise ExportError(
            f"no equipment for substation {substation!r} in assets.yaml; add it there or import it with "
            "`gridverse inspect import-scl`"
        )
    live = live or {}
    b = _Builder()
    structure: dict[Any, int] = {}
    children = [
        b.node(
            gl.Node(
                name="anchor",
                translation=[0.0, 0.0, 0.0],
                extras={"role": "anchor", "description": "marker origin: the substation plot's (0, 0) at ground level"},
            )
        )
    ]
    for asset in assets:
        kind = equipment_kind(asset.kind)
        state = live.get(asset.name, Live())
        if asset.kind not in structure:
            structure[asset.kind] = b.material(STRUCTURE_MATERIAL, kind.structure_colour, {"role": "structure"})
        state_material = b.material(
            state.state.value, kind.colour_of(state.state), {"role": "state", "state": state.state.value}
        )
        parts = [
            b.node(
                gl.Node(
                    name=f"{asset.name}/{spec.name}",
                    mesh=b.mesh(spec, state_material if spec.colour is ColourRole.STATE else structure[asset.kind]),
                    extras={"part": spec.name, "state_coloured": spec.colour is ColourRole.STATE},
                )
            )
            for spec in kind.parts_for(asset)
        ]
        x, y = asset.position
        node = gl.Node(
            name=asset.name,
            translation=[float(x), 0.0, float(-y)],
            children=parts,
            extras=asset_extras(asset, substation, state),
        )
        if asset.rotation_deg:
            node.rotation = _yaw_quaternion(asset.rotation_deg)
        children.append(b.node(node))
    root = b.node(
        gl.Node(
            name=substation,
            children=children,
            extras={
                "substation": substation,
                "units": "m",
                "up": "+Y",
                "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "equipment": len(assets),
                **({"note": note} if note else {}),
            },
        )
    )
    b.gltf.scenes.append(gl.Scene(name=substation, nodes=[root]))
    return b.finish(path)


def gather_live(
    settings: Settings,
    assets: Sequence[AssetConfig],
    substation: str,
    historian: Historian | None,
    window_s: float = 60.0,
) -> tuple[dict[str, Live], str]:
    """Each asset's state and live values from the historian (the last `window_s`), and a note
    when there is none to ask: then every state is `unknown`, never a believable `normal`."""
    if historian is None:
        return {}, "no historian: states unknown"
    from inspection import state as state_module

    since = time.time_ns() - int(window_s * 1e9)
    try:
        live_states = getattr(state_module, "live_states", None)
        if live_states is not None:
            found = live_states(settings.site, assets, historian, substation, since)
            return {
                name: Live(e.state, dict(e.values), tuple(getattr(e, "reasons", ()))) for name, e in found.items()
            }, ""
        states = state_module.asset_states(settings.site, assets, historian, substation, since)
        return {name: Live(s) for name, s in states.items()}, ""
    except Exception as exc:  # the export still works; the note and the unknown states say why
        return {}, f"historian read failed ({type(exc).__name__}: {exc}); states unknown"


def read_nodes(path: Path) -> list[dict[str, Any]]:
    """Each equipment node of a GLB: its extras, glTF position (x, y up, z) and top height."""
    gltf = gl.GLTF2.load_binary(str(path))
    out = []
    for node in gltf.nodes:
        if not (isinstance(node.extras, dict) and "scl_path" in node.extras):
            continue
        top = 0.0
        for child in node.children or []:
            mesh = gltf.nodes[child].mesh
            if mesh is not None:
                accessor = gltf.accessors[gltf.meshes[mesh].primitives[0].attributes.POSITION]
                top = max(top, float(accessor.max[1]))
        out.append({**node.extras, "position": list(node.translation or [0.0, 0.0, 0.0]), "height": top})
    return out


def read_extras(path: Path) -> dict[str, dict[str, Any]]:
    """Each equipment node's extras in a GLB, by SCL path (for tests and headset-side checks)."""
    gltf = gl.GLTF2.load_binary(str(path))
    return {n.name: n.extras for n in gltf.nodes if isinstance(n.extras, dict) and "scl_path" in n.extras and n.name}
