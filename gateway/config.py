"""The gateway's configuration: device profiles (register maps), polling, the spool, metrics."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from gridverse.configbase import Strict
from gridverse.elements import Measurand
from gridverse.points import is_ln_do_name, ln_class

SubstationT = TypeVar("SubstationT", bound=Strict)  # gridverse.config.SubstationConfig


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


#: Units a profile may use, and the factor to the SI unit the gateway emits (every point it
#: stores or publishes is in SI units). Unknown units are refused at validation, not passed through.
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
    # spellings real register maps use (SunSpec writes VAr; meters kvarh, VAh)
    "VAr": ("var", 1.0),
    "kVAr": ("var", 1e3),
    "MVAr": ("var", 1e6),
    # reactive and apparent energy: no named SI unit, so var·s and VA·s in UCUM notation
    "varh": ("var.s", 3600.0),
    "kvarh": ("var.s", 3.6e6),
    "Mvarh": ("var.s", 3.6e9),
    "VArh": ("var.s", 3600.0),
    "kVArh": ("var.s", 3.6e6),
    "MVArh": ("var.s", 3.6e9),
    "VAh": ("VA.s", 3600.0),
    "kVAh": ("VA.s", 3.6e6),
    "MVAh": ("VA.s", 3.6e9),
    # phase angles: SI's radian
    "deg": ("rad", math.pi / 180.0),
    "rad": ("rad", 1.0),
    "%RH": ("%", 1.0),  # relative humidity
}

#: The last Modbus address of every table (addresses are 16-bit, 0 … 65535).
LAST_ADDRESS = 65535


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

    @model_validator(mode="after")
    def _within_address_space(self) -> ProfilePoint:
        last = self.address + self.width - 1
        if last > LAST_ADDRESS:
            raise ValueError(
                f"point {self.name}: a {self.type.value} at {self.table.value} register {self.address} would need "
                f"registers up to {last}, past the last Modbus address {LAST_ADDRESS}; "
                "move it or check the register map's offset"
            )
        return self

    @property
    def width(self) -> int:
        if self.type == DataType.STRING:
            return self.length or 0  # a string point always has one (validated above)
        return REGISTER_WIDTH[self.type]

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
    max_registers: int = Field(
        default=125, ge=1, le=125, description="registers per read (FC3/FC4); many meters refuse more than 16 or 32"
    )
    max_bits: int = Field(default=2000, ge=1, le=2000, description="coils/discrete inputs per read (FC1/FC2)")
    points: list[ProfilePoint]

    def period_of(self, group: str, default: float) -> float:
        return self.groups.get(group, default)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        """Every problem of the profile at once: references, groups, address range, overlaps."""
        problems: list[str] = []
        by_name = {p.name: p for p in self.points}
        for p in self.points:
            if p.scale_register is not None:
                sf = by_name.get(p.scale_register)
                if sf is None or sf.type != DataType.I16:
                    problems.append(
                        f"point {p.name}: scale_register {p.scale_register!r} must name an i16 point of this profile"
                    )
            if p.group != "default" and p.group not in self.groups:
                problems.append(f"point {p.name}: group {p.group!r} has no period in `groups`")
        for name, period in self.groups.items():
            if period <= 0:
                problems.append(f"group {name!r}: period {period} must be positive")
        problems += self._address_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _address_problems(self) -> list[str]:
        problems: list[str] = []
        seen_names: set[str] = set()
        used: dict[tuple[RegisterTable, int], str] = {}
        for p in self.points:
            if p.name in seen_names:
                problems.append(f"point {p.name} is defined twice")
            seen_names.add(p.name)
            last = p.address + p.width - 1
            if last > LAST_ADDRESS:
                continue  # refused by the point itself
            bit = p.table in (RegisterTable.COIL, RegisterTable.DISCRETE)
            limit = self.max_bits if bit else self.max_registers
            if p.width > limit:
                problems.append(
                    f"profile {self.name}, point {p.name}: {p.width} registers do not fit one read of at most "
                    f"{limit} (max_registers); shorten it or raise max_registers if the device allows"
                )
            for a in range(p.address, last + 1):
                if (p.table, a) in used:
                    problems.append(f"point {p.name} overlaps {used[(p.table, a)]} at {p.table.value} register {a}")
                    break
                used[(p.table, a)] = p.name
        return problems


class SpoolPolicy(StrEnum):
    """What a full spool does: refuse new points (MQTT messages stay unacknowledged at the broker,
    which redelivers them once there is room) or drop the oldest (counted)."""

    REJECT_NEW = "reject_new"
    DROP_OLDEST = "drop_oldest"


class SpoolConfig(Strict):
    """The gateway's durable store-and-forward spool (one SQLite file)."""

    path: Path = Path("var/spool.db")
    max_points: int = Field(default=5_000_000, gt=0, description="about 100 bytes a point on disk")
    policy: SpoolPolicy = SpoolPolicy.REJECT_NEW
    warn_fraction: float = Field(default=0.8, gt=0, le=1, description="alarm when the spool is this full")
    durability: Literal["power_cut", "process_crash"] = Field(
        default="power_cut",
        description=(
            "power_cut: a point is acknowledged only once it is on the disk itself (SQLite synchronous=FULL, an "
            "fsync per group commit); process_crash: once it is in the operating system's cache (synchronous=NORMAL), "
            "which survives the gateway being killed but not a power cut or a kernel crash"
        ),
    )
    batch_points: int = Field(default=20_000, gt=0, description="at most this many points per historian write")
    flush_points: int = Field(
        default=5_000, gt=0, description="write to the historian as soon as this many points are spooled"
    )

    @property
    def synchronous(self) -> Literal["normal", "full"]:
        """SQLite's `PRAGMA synchronous` for this durability."""
        return "full" if self.durability == "power_cut" else "normal"


class GatewayConfig(Strict):
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0)
    max_gap: int = Field(default=8, ge=0, description="registers bridged when merging block reads")
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="spooled points wait at most this long for their historian write"
    )
    commit_max_delay_s: float = Field(
        default=0.1,
        gt=0,
        le=5,
        description=(
            "a received point waits at most this long for its group commit to the spool (and so for its MQTT "
            "acknowledgement); a group is committed sooner when messages pause or it holds 5,000 points"
        ),
    )
    mqtt_batch_s: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description=(
            "at light load the MQTT network thread reads what arrived at most this often (several messages per "
            "wake-up instead of one each; acknowledgements still go out as soon as they are committed); 0: wake "
            "for every message"
        ),
    )
    report_every_s: float = Field(default=60.0, gt=0, description="heartbeat of points with a deadband")
    writes_enabled: bool = Field(default=False, description="allow writes to points a profile marks writable")
    northbound: bool = Field(
        default=False, description="republish durable points, normalised, on <prefix>/<site>/<sub>/<device>/normalised"
    )
    spool: SpoolConfig = SpoolConfig()
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve /metrics and /health here (Prometheus); off when null"
    )
    metrics_address: str = Field(
        default="127.0.0.1", min_length=1, description="address /metrics and /health bind (0.0.0.0: every network)"
    )
    rtu_host: str | None = Field(
        default=None, description="reach every RTU through this host (e.g. a simulator container)"
    )

    def reach(self, substation: SubstationT) -> SubstationT:
        """The substation as the gateway reaches it: through `rtu_host` when one is set."""
        return substation.model_copy(update={"host": self.rtu_host}) if self.rtu_host else substation

    max_future_s: float = Field(
        default=300.0, ge=0, description="a message time further ahead of the gateway clock is set aside"
    )
    max_past_s: float = Field(
        default=10 * 365.25 * 86400, ge=0, description="a message time further back (default 10 years) is set aside"
    )
