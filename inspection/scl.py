"""Import the Substation section of an IEC 61850-6 SCL file (.ssd, .scd, .icd…) as assets.

SCL describes a substation as Substation / VoltageLevel / Bay / ConductingEquipment, power
transformers (2 or 3 TransformerWindings) at substation, voltage-level or bay level, and bays that
hold only a ConnectivityNode (a busbar). Each piece of equipment becomes an `AssetConfig` named by
its SCL path, of the kind its type maps to (`KIND_OF_TYPE`); what cannot be mapped is listed as
skipped with the file, line and reason, never a crash.

Parsed with the standard library's expat (no extra dependency): its `CurrentLineNumber` gives every
element's line, so each message names where to look; expat resolves no external entities (no
XXE) and, from expat 2.4, refuses entity-expansion bombs.

Positions: `sxy:x`/`sxy:y` (namespace SCLcoordinates) are read as diagram units relative to the
parent container (Substation → VoltageLevel → Bay → equipment, summed), times `scale` metres, with
the diagram's y axis (down) turned into the plot's (north, up). Equipment without coordinates is
laid out tidily: one column per bay, busbars across the top of their voltage level, voltage levels
one below the other, transformers standing in a row above them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from xml.parsers import expat

import yaml
from pydantic import ValidationError

from inspection.config import DEFAULT_SCL_TYPE, SCL_TYPES, AssetConfig, AssetKind, WindingConfig, scl_path_parts

SCL_NS = "http://www.iec.ch/61850/2003/SCL"
SXY_NS = "http://www.iec.ch/61850/2003/SCLcoordinates"

#: SCL equipment type → the asset kind drawn for it. Types not here are skipped with the reason.
KIND_OF_TYPE: dict[str, AssetKind] = {
    "CBR": AssetKind.BREAKER,
    "DIS": AssetKind.DISCONNECTOR,
    "CTR": AssetKind.CT,
    "VTR": AssetKind.VT,
    "CAB": AssetKind.CABLE_TERMINATION,
    "IFL": AssetKind.CABLE_TERMINATION,  # the infeeding line's end in the station: its sealing end
    "PTR": AssetKind.TRANSFORMER,
    "GEN": AssetKind.PV_INVERTER,  # distributed generation in distribution SCL: an inverter
    "BAT": AssetKind.BATTERY,
    "ERMU": AssetKind.RMU,  # private type: a ring-main unit as one assembly
}

BAY_PITCH_M = 6.0  # auto-layout: distance between bay columns
EQUIPMENT_PITCH_M = 3.0  # between equipment down a bay
TRANSFORMER_PITCH_M = 9.0  # between transformers in their row


class SclError(ValueError):
    """The file cannot be read as SCL at all (missing, malformed XML, no Substation section)."""


@dataclass(frozen=True)
class Skipped:
    """An element that could not be mapped to an asset, with where it is and why."""

    path: str
    scl_type: str
    line: int
    reason: str


@dataclass
class VoltageLevelInfo:
    name: str
    voltage_kv: float | None
    bays: list[str] = field(default_factory=list)


@dataclass
class SclSubstation:
    """What was read from one Substation element."""

    name: str
    desc: str
    line: int
    voltage_levels: list[VoltageLevelInfo] = field(default_factory=list)
    assets: list[AssetConfig] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # asset name → line in the file

    def equipment_by_type(self) -> Counter[str]:
        """How many assets of each SCL type (busbars counted as BUSBAR)."""
        return Counter(a.scl_type or a.kind.value.upper() for a in self.assets)


@dataclass
class SclImport:
    file: Path
    substations: list[SclSubstation]
    warnings: list[str] = field(default_factory=list)

    def assets(self, rename: Mapping[str, str] | None = None) -> dict[str, list[AssetConfig]]:
        """Assets per substation, keyed as in assets.yaml (`rename` maps an SCL name to a site's)."""
        rename = rename or {}
        return {rename.get(s.name, s.name): s.assets for s in self.substations}


# --- reading XML with line numbers ----------------------------------------------------------


def _clark(name: str) -> str:
    return "{" + name if "}" in name else name


def parse_xml(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """The element tree of `path` and each element's line; SclError naming line and column."""
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}
    parser = expat.ParserCreate(namespace_separator="}")

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = builder.start(_clark(tag), {_clark(k): v for k, v in attrs.items()})
        lines[element] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: builder.end(_clark(tag))
    parser.CharacterDataHandler = builder.data
    try:
        with path.open("rb") as f:
            parser.ParseFile(f)
        root = builder.close()
    except FileNotFoundError:
        raise SclError(f"{path}: file not found; give the path of an .ssd or .scd file") from None
    except expat.ExpatError as exc:
        raise SclError(
            f"{path}: line {exc.lineno}, column {exc.offset + 1}: not well-formed XML "
            f"({expat.errors.messages[exc.code]}); fix the file (an SCL tool or xmllint shows the spot)"
        ) from None
    return root, lines


# --- the Substation section -----------------------------------------------------------------


def _tag(local: str) -> str:
    return f"{{{SCL_NS}}}{local}"


def _children(element: ET.Element, *local: str) -> list[ET.Element]:
    wanted = {_tag(n) for n in local}
    return [c for c in element if c.tag in wanted]


def _voltage_kv(level: ET.Element) -> float | None:
    voltage = level.find(_tag("Voltage"))
    if voltage is None or not (voltage.text or "").strip():
        return None
    factor = {"": 1e-3, "k": 1.0, "M": 1e3, "m": 1e-6}.get(voltage.get("multiplier", ""))
    try:
        value = float((voltage.text or "").strip())
    except ValueError:
        return None
    if factor is None or voltage.get("unit", "V") != "V":
        return None
    return value * factor


class _Reader:
    def __init__(self, path: Path, lines: dict[ET.Element, int], scale: float, devices: Collection[str]) -> None:
        self.path, self.lines, self.scale, self.devices = path, lines, scale, devices
        self.warnings: list[str] = []

    def device(self, element: ET.Element, path: str) -> str | None:
        """The gateway device an equipment's LNode names (its iedName), when the site has it."""
        for lnode in _children(element, "LNode"):
            ied = lnode.get("iedName", "")
            if ied and ied != "None":
                if ied in self.devices:
                    return ied
                if self.devices:
                    self.warnings.append(
                        f"{self.where(lnode)}: {path}: LNode names IED {ied!r}, which is no device or sensor of "
                        "the site; set its `device` by hand"
                    )
        return None

    def line(self, element: ET.Element) -> int:
        return self.lines.get(element, 0)

    def where(self, element: ET.Element) -> str:
        return f"{self.path}:{self.line(element)}"

    def coords(self, element: ET.Element, path: str) -> tuple[float, float] | None:
        """The element's own sxy:x/sxy:y (diagram units), or None when it has none."""
        x, y = element.get(f"{{{SXY_NS}}}x"), element.get(f"{{{SXY_NS}}}y")
        if x is None and y is None:
            return None
        try:
            value = (float(x or 0.0), float(y or 0.0))
        except ValueError:
            self.warnings.append(
                f"{self.where(element)}: {path}: sxy coordinates {x!r}, {y!r} are not numbers; laid out automatically"
            )
            return None
        if not all(math.isfinite(v) for v in value):
            self.warnings.append(f"{self.where(element)}: {path}: sxy coordinates are not finite; laid out instead")
            return None
        return value

    def absolute(self, chain: Iterable[tuple[ET.Element, str]]) -> tuple[float, float] | None:
        """The position in metres of the last element of a container chain, from the sxy offsets
        along it; None when the last element carries no coordinates of its own."""
        total_x = total_y = 0.0
        own: tuple[float, float] | None = None
        for element, path in chain:
            own = self.coords(element, path)
            if own is not None:
                total_x += own[0]
                total_y += own[1]
        if own is None:
            return None
        return (round(total_x * self.scale, 3), round(-total_y * self.scale, 3))  # diagram y points down


def _windings(
    reader: _Reader, transformer: ET.Element, path: str, levels: Mapping[str, float | None]
) -> tuple[list[WindingConfig], str | None]:
    """The transformer's windings, each with the voltage level its terminal connects to; or the
    reason it cannot be drawn."""
    windings: list[WindingConfig] = []
    for winding in _children(transformer, "TransformerWinding"):
        level = None
        for terminal in _children(winding, "Terminal"):
            node = terminal.get("connectivityNode") or ""
            level = terminal.get("voltageLevelName") or (node.split("/")[1] if node.count("/") >= 2 else None)
            if level:
                break
        windings.append(
            WindingConfig(
                name=winding.get("name") or f"W{len(windings) + 1}",
                voltage_level=level,
                rated_kv=levels.get(level) if level else None,
            )
        )
    if len(windings) not in (2, 3):
        return windings, f"a power transformer has 2 or 3 TransformerWindings; this one has {len(windings)}"
    return windings, None


@dataclass(frozen=True)
class _Slot:
    """Where auto-layout puts an asset: the n-th equipment of bay column `bay` of voltage level
    `level`, the n-th busbar of `level`, or the n-th transformer of the row above."""

    kind: str  # "bay", "busbar" or "transformer"
    level: str = ""
    bay: int = 0
    n: int = 0


@dataclass
class _Pending:
    """An asset read but not yet placed."""

    raw: dict[str, Any]
    element: ET.Element
    position: tuple[float, float] | None
    slot: _Slot


def _read_substation(reader: _Reader, sub: ET.Element) -> SclSubstation:
    name = sub.get("name") or f"substation@{reader.line(sub)}"
    out = SclSubstation(name=name, desc=sub.get("desc", ""), line=reader.line(sub))
    pending: list[_Pending] = []
    seen: set[str] = set()
    level_kv = {vl.get("name", ""): _voltage_kv(vl) for vl in _children(sub, "VoltageLevel")}
    transformers_in_row = 0

    def skip(path: str, scl_type: str, element: ET.Element, reason: str) -> None:
        out.skipped.append(Skipped(path, scl_type, reader.line(element), reason))

    def add(raw: dict[str, Any], element: ET.Element, position: tuple[float, float] | None, slot: _Slot) -> None:
        if raw["name"] in seen:
            scl_type = element.get("type", "")
            skip(raw["name"], scl_type, element, "the same SCL path is used twice in this file; rename one")
            return
        seen.add(raw["name"])
        pending.append(_Pending(raw, element, position, slot))

    def transformer(element: ET.Element, parent_path: str, chain: list, slot: _Slot | None) -> None:
        nonlocal transformers_in_row
        path = f"{parent_path}/{element.get('name', '')}"
        if not element.get("name"):
            skip(path, "PTR", element, "PowerTransformer without a name; give it one")
            return
        windings, problem = _windings(reader, element, path, level_kv)
        if problem:
            skip(path, "PTR", element, problem)
            return
        if element.get("virtual", "false") == "true":
            skip(path, "PTR", element, "virtual equipment (no physical device to inspect)")
            return
        raw: dict[str, Any] = {"name": path, "kind": AssetKind.TRANSFORMER.value, "windings": windings}
        raw["device"] = reader.device(element, path)
        if slot is None:  # at substation or voltage-level level: it joins the transformer row
            slot = _Slot("transformer", n=transformers_in_row)
            transformers_in_row += 1
            raw["voltage_level"] = windings[0].voltage_level
        add(raw, element, reader.absolute([*chain, (element, path)]), slot)

    sub_chain = [(sub, name)]
    for element in _children(sub, "PowerTransformer"):
        transformer(element, name, sub_chain, None)
    for vl in _children(sub, "VoltageLevel"):
        vl_name = vl.get("name") or f"VL@{reader.line(vl)}"
        kv = level_kv.get(vl_name)
        info = VoltageLevelInfo(vl_name, kv)
        out.voltage_levels.append(info)
        vl_path = f"{name}/{vl_name}"
        vl_chain = [*sub_chain, (vl, vl_path)]
        for element in _children(vl, "PowerTransformer"):
            transformer(element, vl_path, vl_chain, None)
        busbars = 0
        bay_index = 0
        for bay in _children(vl, "Bay"):
            bay_name = bay.get("name") or f"Bay@{reader.line(bay)}"
            info.bays.append(bay_name)
            bay_path = f"{vl_path}/{bay_name}"
            bay_chain = [*vl_chain, (bay, bay_path)]
            equipment = _children(bay, "ConductingEquipment", "PowerTransformer")
            nodes = _children(bay, "ConnectivityNode")
            if not equipment and nodes:  # a bay holding only a connectivity node: a busbar
                node = nodes[0]
                path = f"{bay_path}/{node.get('name') or 'BUSBAR'}"
                raw = {"name": path, "kind": AssetKind.BUSBAR.value, "voltage_kv": kv}
                position = reader.absolute([*bay_chain, (node, path)]) or reader.absolute(bay_chain)
                add(raw, bay, position, _Slot("busbar", vl_name, n=busbars))
                busbars += 1
                continue
            slot_n = 0
            for element in equipment:
                if element.tag == _tag("PowerTransformer"):
                    transformer(element, bay_path, bay_chain, _Slot("bay", vl_name, bay_index, slot_n))
                    slot_n += 1
                    continue
                scl_type = element.get("type", "")
                path = f"{bay_path}/{element.get('name', '')}"
                if not element.get("name"):
                    skip(path, scl_type, element, "ConductingEquipment without a name; give it one")
                elif element.get("virtual", "false") == "true":
                    skip(path, scl_type, element, "virtual equipment (no physical device to inspect)")
                elif scl_type not in KIND_OF_TYPE:
                    what = SCL_TYPES.get(scl_type, "not an IEC 61850-6 type")
                    skip(
                        path,
                        scl_type,
                        element,
                        f"no equipment kind for SCL type {scl_type or '(none)'} ({what}); add one to "
                        "inspection/scl.py KIND_OF_TYPE and a file in inspection/equipment/ to draw it",
                    )
                else:
                    kind = KIND_OF_TYPE[scl_type]
                    raw = {"name": path, "kind": kind.value, "voltage_kv": kv, "device": reader.device(element, path)}
                    if DEFAULT_SCL_TYPE.get(kind) != scl_type:
                        raw["scl_type"] = scl_type
                    add(
                        raw,
                        element,
                        reader.absolute([*bay_chain, (element, path)]),
                        _Slot("bay", vl_name, bay_index, slot_n),
                    )
                    slot_n += 1
            bay_index += 1

    _place(out, pending, reader)
    return out


def _place(out: SclSubstation, pending: list[_Pending], reader: _Reader) -> None:
    """Positions for what has no coordinates, then the assets (a model error is a skip, not a crash)."""
    levels = [vl.name for vl in out.voltage_levels]
    in_bays = [p.slot for p in pending if p.slot.kind == "bay"]
    bays_per_level = {vl: 1 + max((q.bay for q in in_bays if q.level == vl), default=-1) for vl in levels}
    depth_per_level = {vl: 1 + max((q.n for q in in_bays if q.level == vl), default=0) for vl in levels}
    busbars_per_level = Counter(p.slot.level for p in pending if p.slot.kind == "busbar")
    top: dict[str, float] = {}
    y = 0.0
    for vl in levels:
        top[vl] = y
        y -= 2.0 * busbars_per_level[vl] + EQUIPMENT_PITCH_M * (depth_per_level[vl] + 1) + 4.0
    width = {vl: max(bays_per_level[vl], 1) * BAY_PITCH_M for vl in levels}
    n_transformers = sum(p.slot.kind == "transformer" for p in pending)

    for p in pending:
        slot = p.slot
        if slot.kind == "busbar":
            p.raw["length"] = width[slot.level]
        if p.position is not None:
            continue
        if slot.kind == "busbar":
            p.position = (0.0, top[slot.level] - 2.0 * slot.n)
        elif slot.kind == "bay":
            x = (slot.bay - (bays_per_level[slot.level] - 1) / 2) * BAY_PITCH_M
            below = 2.0 * busbars_per_level[slot.level] + EQUIPMENT_PITCH_M * (slot.n + 1)
            p.position = (x, top[slot.level] - below)
        else:
            p.position = ((slot.n - (n_transformers - 1) / 2) * TRANSFORMER_PITCH_M, 9.0)

    for p in pending:
        raw = {k: v for k, v in p.raw.items() if v is not None}
        try:
            asset = AssetConfig.model_validate({**raw, "position": p.position})
        except ValidationError as exc:
            reason = "; ".join(e["msg"] for e in exc.errors())
            out.skipped.append(Skipped(raw["name"], p.element.get("type", ""), reader.line(p.element), reason))
            continue
        out.assets.append(asset)
        out.lines[asset.name] = reader.line(p.element)


def import_scl(path: Path, *, scale: float = 1.0, devices: Collection[str] = ()) -> SclImport:
    """Read every Substation of an SCL file; SclError when the file is not SCL at all.

    `devices`: the site's device and sensor names; equipment whose LNode names one of them as its
    IED is linked to it (`device`), and an LNode naming another IED is a warning."""
    root, lines = parse_xml(path)
    if root.tag != _tag("SCL"):
        raise SclError(
            f"{path}: line {lines.get(root, 1)}: the root element is {root.tag!r}, not SCL in namespace {SCL_NS}; "
            "give an IEC 61850-6 .ssd or .scd file"
        )
    substations = _children(root, "Substation")
    if not substations:
        raise SclError(
            f"{path}: no Substation section (an .icd/.cid holds only IEDs); export the .ssd or .scd from the "
            "system configurator"
        )
    reader = _Reader(path, lines, scale, devices)
    result = SclImport(path, [_read_substation(reader, s) for s in substations])
    result.warnings = reader.warnings
    return result


# --- output ---------------------------------------------------------------------------------


def asset_yaml_entry(asset: AssetConfig) -> dict[str, Any]:
    """The asset as assets.yaml writes it: only what differs from its defaults and its path."""
    derived = scl_path_parts(asset.name)
    data = asset.model_dump(mode="json", exclude_defaults=True)
    for key in ("voltage_level", "bay"):
        if data.get(key) == derived[key]:
            data.pop(key, None)
    if data.get("scl_type") == DEFAULT_SCL_TYPE.get(asset.kind):
        data.pop("scl_type", None)
    if asset.kind is not AssetKind.BUSBAR:
        data.pop("length", None)
    for w in data.get("windings", []):
        for k in [k for k, v in w.items() if v is None]:
            w.pop(k)
    order = ["name", "kind", "position"]
    return {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}


def to_assets_yaml(result: SclImport, rename: Mapping[str, str] | None = None) -> str:
    """assets.yaml text for the import: one line per asset, a comment with what to link by hand."""
    lines = [
        f"# Imported from {result.file.name} by `gridverse inspect import-scl`.",
        "# Link each asset to its gateway device (device, points) and network element (element) by hand;",
        "# the keys below must name substations of site.substations (see --substation SCL=SITE).",
    ]
    for sub, assets in result.assets(rename).items():
        lines.append(f"{sub}:")
        for asset in assets:
            entry = yaml.safe_dump(asset_yaml_entry(asset), default_flow_style=True, width=10_000, sort_keys=False)
            lines.append(f"  - {entry.strip()}")
        if not assets:
            lines[-1] = f"{sub}: []"
    return "\n".join(lines) + "\n"


def summary(result: SclImport) -> str:
    """What was read, per substation: voltage levels, bays, equipment by type, what was skipped."""
    out = []
    for sub in result.substations:
        bays = sum(len(vl.bays) for vl in sub.voltage_levels)
        desc = f" ({sub.desc})" if sub.desc else ""
        out.append(
            f"substation {sub.name}{desc}: {len(sub.voltage_levels)} voltage level(s), {bays} bay(s), "
            f"{len(sub.assets)} equipment, {len(sub.skipped)} skipped"
        )
        for vl in sub.voltage_levels:
            kv = f"{vl.voltage_kv:g} kV" if vl.voltage_kv is not None else "voltage not given"
            out.append(f"  voltage level {vl.name} ({kv}): bays {', '.join(vl.bays) or 'none'}")
        by_type = sub.equipment_by_type()
        kinds = {a.scl_type or a.kind.value.upper(): a.kind.value for a in sub.assets}
        listing = ", ".join(f"{n} {t} ({kinds[t]})" for t, n in sorted(by_type.items()))
        out.append(f"  equipment by type: {listing or 'none'}")
        for s in sub.skipped:
            out.append(f"  skipped {result.file}:{s.line} {s.path} [{s.scl_type or '-'}]: {s.reason}")
    out.extend(f"warning: {w}" for w in result.warnings)
    return "\n".join(out)
