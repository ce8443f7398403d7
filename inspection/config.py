"""Inspection's configuration: what to render, how often, and the substation assets.

The asset model follows the Substation section of IEC 61850-6 (SCL): Substation / VoltageLevel /
Bay / ConductingEquipment. An asset's `name` is its SCL path, `SUB/VL/BAY/EQ` (or the shorter
`SUB/BAY/EQ`); its voltage level and bay are taken from that path when not given."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gridverse.configbase import Port, Strict
from gridverse.elements import ElementKind, ElementRef


class InspectionConfig(Strict):
    substation: str
    output_dir: Path = Path("var/render")
    width: int = Field(default=800, ge=64)
    height: int = Field(default=500, ge=64)
    every_s: float = Field(default=10.0, gt=0)
    viewer_host: str = Field(default="127.0.0.1", description="the 3D viewer's address (loopback: this machine)")
    viewer_port: Port = Field(default=8765, description="the 3D viewer's port (`gridverse inspect serve`)")
    labels_path: Path = Field(
        default=Path("var/inspection/labels.csv"),
        description="failed inspection checks are appended here as labels (the anomaly lab's labels.csv format)",
    )


class AssetKind(StrEnum):
    """How an asset is drawn and inspected; one file per kind in `inspection/equipment/`."""

    TRANSFORMER = "transformer"
    BREAKER = "breaker"
    BUSBAR = "busbar"
    SENSOR = "sensor"
    DISCONNECTOR = "disconnector"
    CT = "ct"
    VT = "vt"
    CABLE_TERMINATION = "cable_termination"
    RMU = "rmu"
    PV_INVERTER = "pv_inverter"
    BATTERY = "battery"


#: IEC 61850-6 ConductingEquipment types (plus PTR, the PowerTransformer), with what each is.
SCL_TYPES: dict[str, str] = {
    "CBR": "circuit breaker",
    "DIS": "disconnector",
    "VTR": "voltage transformer",
    "CTR": "current transformer",
    "GEN": "generator",
    "CAP": "capacitor bank",
    "REA": "reactor",
    "CON": "converter",
    "MOT": "motor",
    "EFN": "earth fault neutralizer",
    "PSH": "power shunt",
    "BAT": "battery",
    "BSH": "bushing",
    "CAB": "power cable",
    "GIL": "gas-insulated line",
    "LIN": "power overhead line",
    "RES": "neutral resistor",
    "RRC": "rotating reactive component",
    "SAR": "surge arrester",
    "TCF": "thyristor controlled frequency converter",
    "TCR": "thyristor controlled reactive component",
    "IFL": "infeeding line",
    "FAN": "fan",
    "SCR": "semiconductor controlled rectifier",
    "SMC": "synchronous machine",
    "PMP": "pump",
    "PTR": "power transformer",
}

#: The SCL type an asset of each kind carries when none is given (private types start with E).
DEFAULT_SCL_TYPE: dict[AssetKind, str | None] = {
    AssetKind.TRANSFORMER: "PTR",
    AssetKind.BREAKER: "CBR",
    AssetKind.DISCONNECTOR: "DIS",
    AssetKind.CT: "CTR",
    AssetKind.VT: "VTR",
    AssetKind.CABLE_TERMINATION: "CAB",
    AssetKind.PV_INVERTER: "GEN",
    AssetKind.BATTERY: "BAT",
    AssetKind.RMU: "ERMU",  # a ring-main unit is a switchgear assembly: no standard type, a private one
    AssetKind.BUSBAR: None,  # SCL draws a busbar as a bay holding only a connectivity node
    AssetKind.SENSOR: None,  # a sensor is a logical node of an IED, not conducting equipment
}

_PRIVATE_TYPE = re.compile(r"^E[A-Z0-9]{2,}$")


class ElementTable(StrEnum):
    """The pandapower table a network element lives in."""

    BUS = "bus"
    LINE = "line"
    TRAFO = "trafo"
    TRAFO3W = "trafo3w"
    SWITCH = "switch"
    LOAD = "load"
    SGEN = "sgen"
    STORAGE = "storage"
    GEN = "gen"
    EXT_GRID = "ext_grid"
    SHUNT = "shunt"


class AssetElement(Strict):
    """The network element an asset is: a pandapower table and the row's index or its name."""

    kind: ElementTable
    index: int | None = Field(default=None, ge=0)
    name: str | None = None
    side: Literal["from", "to", "hv", "mv", "lv"] | None = None

    @model_validator(mode="after")
    def _index_or_name(self) -> AssetElement:
        if self.index is None and not self.name:
            raise ValueError(f"a {self.kind.value} element needs its `index` or its `name` in the network")
        return self

    def ref(self) -> ElementRef | None:
        """The twin's `ElementRef` for it, when the twin models that table and the index is known."""
        if self.index is None or self.kind.value not in {k.value for k in ElementKind}:
            return None
        side = self.side if self.side != "mv" else None
        return ElementRef(kind=ElementKind(self.kind.value), index=self.index, side=side)


class WindingConfig(Strict):
    """One winding of a power transformer (SCL TransformerWinding)."""

    name: str
    rated_kv: float | None = Field(default=None, gt=0)
    rated_mva: float | None = Field(default=None, gt=0)
    voltage_level: str | None = Field(default=None, description="the voltage level its terminal connects to")


def scl_path_parts(name: str) -> dict[str, str | None]:
    """Substation, voltage level, bay and equipment named by an SCL path.

    `SUB/VL/BAY/EQ` (longer paths: sub-equipment below EQ), `SUB/BAY/EQ` or `SUB/EQ`."""
    parts = [p for p in name.split("/") if p]
    out: dict[str, str | None] = {"substation": parts[0] if parts else None, "voltage_level": None, "bay": None}
    if len(parts) >= 4:
        out["voltage_level"], out["bay"] = parts[1], parts[2]
    elif len(parts) == 3:
        out["bay"] = parts[1]
    out["equipment"] = parts[-1] if len(parts) > 1 else None
    return out


class AssetConfig(Strict):
    """One piece of substation equipment, named by its IEC 61850 (SCL) path."""

    name: str = Field(description="IEC 61850 path, e.g. PRIM/T1/YPTR1 or S1/E1/Q01/QA1 (SUB/VL/BAY/EQ)")
    kind: AssetKind
    position: tuple[float, float] = Field(description="x, y in metres on the substation plot")
    device: str | None = Field(default=None, description="device whose points give its state")
    length: float = Field(default=6.0, gt=0, description="busbars only: length in metres")
    voltage_level: str | None = Field(default=None, description="SCL VoltageLevel; from the path when not given")
    voltage_kv: float | None = Field(default=None, gt=0, description="nominal voltage of its voltage level")
    bay: str | None = Field(default=None, description="SCL Bay; from the path when not given")
    scl_type: str | None = Field(default=None, description="SCL equipment type (CBR, DIS, PTR…); from its kind")
    windings: list[WindingConfig] = Field(default_factory=list, description="transformers: 2 or 3 windings")
    element: AssetElement | None = Field(default=None, description="the network element it is, when modelled")
    points: list[str] = Field(default_factory=list, description="telemetry points that describe it, e.g. YPTR1.TmpOil")
    rotation_deg: float = Field(default=0.0, description="rotation about the vertical axis, degrees anticlockwise")
    last_inspected: date | None = Field(default=None, description="date of its last inspection")
    asset_id: str | None = Field(default=None, description="the asset register's id; its SCL path when not given")

    @model_validator(mode="before")
    @classmethod
    def _derive_from_path(cls, data: Any) -> Any:
        """Voltage level, bay and SCL type come from the path and kind when not given."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        data = dict(data)
        derived = scl_path_parts(data["name"])
        if derived["voltage_level"] is None and derived["bay"] == data.get("voltage_level"):
            derived["bay"] = None  # SUB/VL/EQ: equipment of a voltage level outside any bay
        for key in ("voltage_level", "bay"):
            if data.get(key) is None and derived[key] is not None:
                data[key] = derived[key]
        kind = data.get("kind")
        if data.get("scl_type") is None and kind in set(AssetKind):  # an unknown kind reports itself
            data["scl_type"] = DEFAULT_SCL_TYPE[AssetKind(kind)]
        return data

    @field_validator("name")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or "//" in value or " " in value:
            raise ValueError(f"{value!r} is not an SCL path: write SUB/VL/BAY/EQ or SUB/BAY/EQ without spaces")
        return value

    @field_validator("scl_type")
    @classmethod
    def _scl_type(cls, value: str | None) -> str | None:
        if value is not None and value not in SCL_TYPES and not _PRIVATE_TYPE.match(value):
            raise ValueError(
                f"unknown SCL equipment type {value!r}: use one of {', '.join(sorted(SCL_TYPES))} "
                "or a private type starting with E (e.g. ERMU)"
            )
        return value

    @model_validator(mode="after")
    def _windings_fit(self) -> AssetConfig:
        if self.windings and self.kind is not AssetKind.TRANSFORMER:
            raise ValueError(f"{self.name}: only a transformer has windings (this is a {self.kind.value})")
        if self.windings and len(self.windings) not in (2, 3):
            raise ValueError(f"{self.name}: a power transformer has 2 or 3 windings, got {len(self.windings)}")
        return self

    @property
    def substation(self) -> str:
        """The SCL substation: the first segment of the path."""
        return self.name.split("/", 1)[0]

    @property
    def id(self) -> str:
        """The asset register id, or the SCL path when there is none."""
        return self.asset_id or self.name
