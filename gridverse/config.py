"""Typed configuration models: what `configs/*.yaml` may say, validated before anything runs."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gridverse.points import is_ln_do_name, ln_class


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- device profiles (register maps)


class RegisterTable(StrEnum):
    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"


class DataType(StrEnum):
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    F32 = "f32"
    F64 = "f64"
    U64 = "u64"
    I64 = "i64"
    STRING = "string"  # `length` registers of ASCII, two characters each (names, serial numbers)
    BIT = "bit"


REGISTER_WIDTH = {
    DataType.U16: 1,
    DataType.I16: 1,
    DataType.U32: 2,
    DataType.I32: 2,
    DataType.F32: 2,
    DataType.F64: 4,
    DataType.U64: 4,
    DataType.I64: 4,
    DataType.BIT: 1,
}

#: Units a profile may use, and the factor to the SI unit the gateway emits (ARCHITECTURE.md:
#: points are in SI). Unknown units are refused at validation, not passed through.
SI_UNITS: dict[str, tuple[str, float]] = {
    "": ("", 1.0),
    "W": ("W", 1.0),
    "kW": ("W", 1e3),
    "MW": ("W", 1e6),
    "var": ("var", 1.0),
    "kvar": ("var", 1e3),
    "Mvar": ("var", 1e6),
    "VA": ("VA", 1.0),
    "kVA": ("VA", 1e3),
    "MVA": ("VA", 1e6),
    "V": ("V", 1.0),
    "kV": ("V", 1e3),
    "A": ("A", 1.0),
    "kA": ("A", 1e3),
    "mA": ("A", 1e-3),
    "Hz": ("Hz", 1.0),
    "Wh": ("J", 3600.0),
    "kWh": ("J", 3.6e6),
    "MWh": ("J", 3.6e9),
    "J": ("J", 1.0),
    "degC": ("degC", 1.0),
    "K": ("K", 1.0),
    "%": ("%", 1.0),
    "s": ("s", 1.0),
    "Pa": ("Pa", 1.0),
    "bar": ("Pa", 1e5),
    "ppm": ("ppm", 1.0),
}


class Measurand(StrEnum):
    """What physical quantity a point carries; the twin maps it to a network measurement."""

    P = "p"  # active power, W, load convention at the element end
    Q = "q"  # reactive power, var
    I = "i"  # noqa: E741  current magnitude, A
    V = "v"  # phase-to-phase voltage magnitude, V
    CLOSED = "closed"  # breaker/switch position, 1 = closed
    TAP = "tap"  # transformer tap position, steps from neutral
    TEMPERATURE = "temperature"  # degC
    OTHER = "other"


class ProfilePoint(Strict):
    name: str = Field(description="IEC 61850 logical node and data object, e.g. MMXU1.TotW")
    table: RegisterTable
    address: int = Field(ge=0, le=65535)
    type: DataType
    scale: float = 1.0
    offset: float = 0.0
    unit: str = Field(default="", description="as the device reports it; converted to SI (kW → W, kWh → J)")
    measurand: Measurand = Measurand.OTHER
    length: int | None = Field(default=None, ge=1, le=125, description="registers of a string point")
    scale_register: str | None = Field(
        default=None, description="SunSpec-style scale factor: another point (i16) whose value v multiplies by 10^v"
    )
    deadband: float | None = Field(default=None, gt=0, description="report only changes larger than this (SI)")
    group: str = Field(default="default", description="poll group; its period is in the profile's groups")
    writable: bool = False

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str) -> str:
        if v not in SI_UNITS:
            raise ValueError(f"unit {v!r} is not known; use one of {sorted(SI_UNITS)}")
        return v

    @property
    def si_unit(self) -> str:
        return SI_UNITS[self.unit][0]

    @property
    def si_factor(self) -> float:
        return SI_UNITS[self.unit][1]

    @field_validator("name")
    @classmethod
    def _ln_name(cls, v: str) -> str:
        if not is_ln_do_name(v) or not v[:4].isupper():
            raise ValueError(f"point name {v!r} is not an IEC 61850 'LNxx.DataObject' name (e.g. MMXU1.TotW)")
        return v

    @field_validator("scale")
    @classmethod
    def _scale_nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale 0 would turn every reading into a believable zero")
        return v

    @model_validator(mode="after")
    def _type_fits_table(self) -> ProfilePoint:
        is_bit_table = self.table in (RegisterTable.COIL, RegisterTable.DISCRETE)
        if is_bit_table != (self.type == DataType.BIT):
            raise ValueError(
                f"type {self.type.value} cannot live in {self.table.value} registers: "
                "use type bit for coils/discrete inputs and a numeric type for holding/input"
            )
        return self

    @model_validator(mode="after")
    def _string_has_length(self) -> ProfilePoint:
        if (self.type == DataType.STRING) != (self.length is not None):
            raise ValueError("a string point needs `length` (registers), and only a string point takes one")
        return self

    @property
    def width(self) -> int:
        return self.length if self.type == DataType.STRING else REGISTER_WIDTH[self.type]

    @property
    def ln_class(self) -> str:
        return ln_class(self.name)


class DeviceProfile(Strict):
    name: str
    description: str = ""
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    sunspec_sentinels: bool = Field(
        default=False, description="SunSpec 'not implemented' values (0xFFFF, 0x8000, ...) read as invalid"
    )
    groups: dict[str, float] = Field(default_factory=dict, description="poll period (s) per point group")
    points: list[ProfilePoint]

    @model_validator(mode="after")
    def _references_resolve(self) -> DeviceProfile:
        by_name = {p.name: p for p in self.points}
        for p in self.points:
            if p.scale_register is not None:
                sf = by_name.get(p.scale_register)
                if sf is None or sf.type != DataType.I16:
                    raise ValueError(
                        f"point {p.name}: scale_register {p.scale_register!r} must name an i16 point of this profile"
                    )
            if p.group != "default" and p.group not in self.groups:
                raise ValueError(f"point {p.name}: group {p.group!r} has no period in `groups`")
        for name, period in self.groups.items():
            if period <= 0:
                raise ValueError(f"group {name!r}: period {period} must be positive")
        return self

    def period_of(self, group: str, default: float) -> float:
        return self.groups.get(group, default)

    @model_validator(mode="after")
    def _no_overlap(self) -> DeviceProfile:
        seen_names: set[str] = set()
        used: dict[tuple[RegisterTable, int], str] = {}
        for p in self.points:
            if p.name in seen_names:
                raise ValueError(f"point {p.name} is defined twice")
            seen_names.add(p.name)
            for a in range(p.address, p.address + p.width):
                if (p.table, a) in used:
                    raise ValueError(f"point {p.name} overlaps {used[(p.table, a)]} at {p.table.value} register {a}")
                used[(p.table, a)] = p.name
        return self


# ---------------------------------------------------------------- site: substations and devices


class ElementKind(StrEnum):
    BUS = "bus"
    LINE = "line"
    TRAFO = "trafo"
    SWITCH = "switch"  # a switch of the network's switch table; its device reports a position


class ElementRef(Strict):
    """Which network element a device measures; `side` names the end of a branch."""

    kind: ElementKind
    index: int = Field(ge=0)
    side: Literal["from", "to", "hv", "lv"] | None = None

    @model_validator(mode="after")
    def _side_fits(self) -> ElementRef:
        allowed = {
            ElementKind.BUS: {None},
            ElementKind.LINE: {"from", "to", None},
            ElementKind.TRAFO: {"hv", "lv", None},
            ElementKind.SWITCH: {None},
        }[self.kind]
        if self.side not in allowed:
            raise ValueError(f"side {self.side!r} does not fit a {self.kind.value}; use {allowed}")
        return self


class DeviceConfig(Strict):
    name: str
    bay: str
    unit_id: int = Field(ge=1, le=247)
    profile: str
    element: ElementRef | None = None
    accuracy_class: float = Field(default=0.5, gt=0, description="percent of reading")


class SubstationConfig(Strict):
    name: str
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535, description="Modbus TCP port of the substation RTU")
    devices: list[DeviceConfig]


class SensorKind(StrEnum):
    TRANSFORMER_THERMAL = "transformer_thermal"


class SensorConfig(Strict):
    name: str
    substation: str
    bay: str = ""
    kind: SensorKind
    element: ElementRef


class NetworkConfig(Strict):
    simbench_code: str | None = "1-MV-rural--1-sw"
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NetworkConfig:
        if (self.simbench_code is None) == (self.file is None):
            raise ValueError("give exactly one of simbench_code or file")
        return self


class SiteConfig(Strict):
    name: str
    network: NetworkConfig = NetworkConfig()
    substations: list[SubstationConfig]
    sensors: list[SensorConfig] = []


# ---------------------------------------------------------------- services


class MqttTls(Strict):
    """TLS to the broker; client certificate optional (mutual TLS)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_hostname: bool = False


class MqttConfig(Strict):
    host: str | None = Field(default=None, description="none: start an embedded broker")
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "gridverse"
    qos: Literal[0, 1, 2] = 1
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    shared_group: str | None = Field(
        default=None, description="MQTT 5 shared subscription group: gateways in one group split the topic tree"
    )
    client_suffix: str = Field(default="", description="tells gateway processes of one site apart (client ids)")
    sparkplug_groups: list[str] = Field(default_factory=list, description="Sparkplug B groups to host (spBv1.0)")
    tls: MqttTls | None = None


class InfluxConfig(Strict):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v2", "v1"] = Field(
        default="v2", description="v2: influxdb-client writes (InfluxDB 2/3, 1.8+); v1: /write"
    )
    org: str = "gridverse"
    bucket: str = "gridverse"
    database: str = Field(default="gridverse", description="InfluxQL database (DBRP on 2.x)")
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = 10.0


class HistorianConfig(Strict):
    backend: Literal["embedded", "influxdb"] = "embedded"
    path: Path = Path("var/gridverse.db")
    influx: InfluxConfig = InfluxConfig()


class FaultKind(StrEnum):
    STUCK = "stuck"
    DRIFT = "drift"
    SPIKE = "spike"
    DROPOUT = "dropout"
    LINE_OUTAGE = "line_outage"


class FaultConfig(Strict):
    kind: FaultKind
    device: str | None = None
    point: str | None = None
    line: int | None = None
    start_s: float = Field(default=0.0, ge=0, description="real seconds after the simulator starts")
    duration_s: float | None = Field(default=None, gt=0, description="none: until the end")
    magnitude: float = Field(
        default=0.0, description="spike: offset in the point's unit; drift: that offset per minute"
    )

    def active(self, elapsed_s: float) -> bool:
        if elapsed_s < self.start_s:
            return False
        return self.duration_s is None or elapsed_s < self.start_s + self.duration_s

    @model_validator(mode="after")
    def _target(self) -> FaultConfig:
        if self.kind == FaultKind.LINE_OUTAGE:
            if self.line is None:
                raise ValueError("a line_outage fault needs `line` (the line index)")
        elif self.device is None or self.point is None:
            raise ValueError(f"a {self.kind.value} fault needs `device` and `point`")
        return self


class SimulatorConfig(Strict):
    start: str = "2016-06-15T11:00:00"
    speed: float = Field(default=60.0, gt=0, description="simulated seconds per real second")
    step_s: float = Field(default=1.0, gt=0, description="real seconds between power flows")
    deviation: float = Field(default=0.1, ge=0, description="random deviation of real loads from their profiles")
    noise: bool = True
    seed: int = 7
    ambient_c: float = 20.0
    bind_host: str | None = Field(
        default=None, description="where simulated RTUs listen (none: each substation's host)"
    )
    faults: list[FaultConfig] = []


class SpoolConfig(Strict):
    """The gateway's durable store-and-forward spool (one SQLite file)."""

    path: Path = Path("var/spool.db")
    max_points: int = Field(default=5_000_000, gt=0, description="about 100 bytes a point on disk")
    policy: Literal["reject_new", "drop_oldest"] = "reject_new"
    warn_fraction: float = Field(default=0.8, gt=0, le=1, description="alarm when the spool is this full")
    synchronous: Literal["normal", "full"] = Field(
        default="normal", description="normal survives kill -9; full also survives a power cut"
    )
    batch_points: int = Field(default=20_000, gt=0, description="points per historian write")


class GatewayConfig(Strict):
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0)
    max_gap: int = Field(default=8, ge=0, description="registers bridged when merging block reads")
    flush_interval_s: float = Field(default=0.2, gt=0)
    report_every_s: float = Field(default=60.0, gt=0, description="heartbeat of points with a deadband")
    writes_enabled: bool = Field(default=False, description="allow writes to points a profile marks writable")
    northbound: bool = Field(
        default=False, description="republish durable points, normalised, on <prefix>/<site>/<sub>/<device>/normalised"
    )
    spool: SpoolConfig = SpoolConfig()
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve /metrics and /health here (Prometheus); off when null"
    )
    rtu_host: str | None = Field(
        default=None, description="reach every RTU through this host (e.g. a simulator container)"
    )


class TwinConfig(Strict):
    interval_s: float = Field(default=2.0, gt=0)
    stale_after_s: float = Field(default=10.0, gt=0)
    voltage_sigma_pu: float = Field(default=0.004, gt=0)
    pseudo_sigma_frac: float = Field(default=0.3, gt=0)
    pseudo_sigma_floor_mw: float = Field(default=0.02, gt=0)
    zero_injection_sigma_mw: float = Field(default=1e-4, gt=0)
    skew_sigma_frac: float = Field(default=0.01, ge=0, description="flow uncertainty from polls not being simultaneous")
    flow_sigma_floor: float = Field(default=0.002, gt=0, description="MW, Mvar or kA")
    estimator: Literal["pandapower", "sparse"] = "sparse"
    bad_data_threshold: float = Field(default=3.0, gt=0, description="largest normalised residual")
    chi2_confidence: float = Field(default=0.99, gt=0, lt=1)
    max_bad_data_removals: int = Field(default=3, ge=0)


class LimitRule(Strict):
    point: str = Field(description="IEC 61850 point name, e.g. YPTR1.TmpOil")
    low: float | None = None
    high: float | None = None
    severity: Literal["info", "warning", "critical"] = "warning"


class AnomalyConfig(Strict):
    limits: list[LimitRule] = []
    voltage_band_pu: tuple[float, float] = (0.95, 1.05)
    loading_limit_percent: float = 100.0
    stuck_after_samples: int = Field(default=8, ge=3)
    clear_after: int = Field(default=3, ge=1, description="evaluations without the condition before an alarm clears")


class InspectionConfig(Strict):
    substation: str
    output_dir: Path = Path("var/render")
    width: int = Field(default=800, ge=64)
    height: int = Field(default=500, ge=64)
    every_s: float = Field(default=10.0, gt=0)


class AssetKind(StrEnum):
    TRANSFORMER = "transformer"
    BREAKER = "breaker"
    BUSBAR = "busbar"
    SENSOR = "sensor"


class AssetConfig(Strict):
    """One piece of substation equipment, named by its IEC 61850 logical node path."""

    name: str = Field(description="IEC 61850 path, e.g. PRIM/T1/YPTR1")
    kind: AssetKind
    position: tuple[float, float] = Field(description="x, y in metres on the substation plot")
    device: str | None = Field(default=None, description="device whose points give its state")
    length: float = Field(default=6.0, gt=0, description="busbars only: length in metres")


class UiConfig(Strict):
    port: int = 8501
    refresh_s: float = 3.0


class Settings(Strict):
    """The whole effective configuration."""

    site: SiteConfig
    profiles: dict[str, DeviceProfile]
    mqtt: MqttConfig = MqttConfig()
    historian: HistorianConfig = HistorianConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    gateway: GatewayConfig = GatewayConfig()
    twin: TwinConfig = TwinConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    inspection: InspectionConfig
    assets: dict[str, list[AssetConfig]] = Field(
        default_factory=dict, description="per substation name, from configs/assets.yaml"
    )
    ui: UiConfig = UiConfig()

    @model_validator(mode="after")
    def _references(self) -> Settings:
        names: set[str] = set()
        subs = {s.name for s in self.site.substations}
        for si, sub in enumerate(self.site.substations):
            units: set[int] = set()
            for di, dev in enumerate(sub.devices):
                where = f"site.substations[{si}].devices[{di}]"
                if dev.profile not in self.profiles:
                    raise ValueError(
                        f"{where}.profile: unknown profile {dev.profile!r}; "
                        f"known: {sorted(self.profiles)} (files in configs/profiles/)"
                    )
                if dev.name in names:
                    raise ValueError(f"{where}.name: device name {dev.name!r} is used twice")
                if dev.unit_id in units:
                    raise ValueError(f"{where}.unit_id: {dev.unit_id} is used twice on {sub.name}")
                names.add(dev.name)
                units.add(dev.unit_id)
                branch = dev.element is not None and dev.element.kind != ElementKind.BUS
                if branch and dev.element.side is None:  # type: ignore[union-attr]
                    raise ValueError(
                        f"{where}.element.side: a device on a {dev.element.kind.value} "  # type: ignore[union-attr]
                        "measures one end of it; say which (from/to or hv/lv)"
                    )
        for i, sensor in enumerate(self.site.sensors):
            if sensor.substation not in subs:
                raise ValueError(f"site.sensors[{i}].substation: unknown {sensor.substation!r}")
        for sub_name, assets in self.assets.items():
            if sub_name not in subs:
                raise ValueError(f"assets.{sub_name}: no substation of that name in the site")
            for ai, asset in enumerate(assets):
                if asset.device is not None and asset.device not in names | {s.name for s in self.site.sensors}:
                    raise ValueError(f"assets.{sub_name}[{ai}].device: unknown {asset.device!r}")
        if self.inspection.substation not in subs:
            raise ValueError(f"inspection.substation: unknown {self.inspection.substation!r}")
        for i, fault in enumerate(self.simulator.faults):
            if fault.device is not None and fault.device not in names | {s.name for s in self.site.sensors}:
                raise ValueError(f"simulator.faults[{i}].device: unknown {fault.device!r}")
        return self

    def device(self, name: str) -> tuple[SubstationConfig, DeviceConfig]:
        for sub in self.site.substations:
            for dev in sub.devices:
                if dev.name == name:
                    return sub, dev
        raise KeyError(f"no device named {name!r} in site {self.site.name!r}")


#: The parts `gridverse run` can start, one per docker-compose service (or several per process).
SERVICE_PARTS = ("simulator", "gateway", "twin", "detectors", "inspection")

#: Dotted key paths that hold secrets: accepted only from the environment, redacted in output.
SECRET_PATHS = ("mqtt.password", "historian.influx.token", "historian.influx.password")
