"""The whole configuration: the shared sections (site, MQTT, historian) and each part's own
section from its `<part>/config.py`, composed into `Settings`, which cross-checks references."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from anomaly.config import AnomalyConfig, LimitRule, Severity
from fieldsim.config import FaultConfig, FaultKind, SimulatorConfig
from gateway.config import (
    REGISTER_WIDTH,
    SI_UNITS,
    DataType,
    DeviceProfile,
    GatewayConfig,
    ProfilePoint,
    RegisterTable,
    SpoolConfig,
)
from gridmodel.config import EstimatorKind, NetworkConfig, TwinConfig
from gridverse.configbase import Strict
from gridverse.elements import ElementKind, ElementRef, Measurand
from inspection.config import AssetConfig, AssetKind, InspectionConfig
from ui.config import UiConfig

__all__ = [
    "REGISTER_WIDTH",
    "SECRET_PATHS",
    "SERVICE_PARTS",
    "SI_UNITS",
    "AnomalyConfig",
    "AssetConfig",
    "AssetKind",
    "DataType",
    "DeviceConfig",
    "DeviceProfile",
    "ElementKind",
    "ElementRef",
    "EstimatorKind",
    "FaultConfig",
    "FaultKind",
    "GatewayConfig",
    "HistorianConfig",
    "InfluxConfig",
    "InspectionConfig",
    "LimitRule",
    "Measurand",
    "MqttConfig",
    "MqttTls",
    "NetworkConfig",
    "ProfilePoint",
    "RegisterTable",
    "SensorConfig",
    "SensorKind",
    "Settings",
    "Severity",
    "SimulatorConfig",
    "SiteConfig",
    "SpoolConfig",
    "Strict",
    "SubstationConfig",
    "TwinConfig",
    "UiConfig",
]


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


class SiteConfig(Strict):
    name: str
    network: NetworkConfig = NetworkConfig()
    substations: list[SubstationConfig]
    sensors: list[SensorConfig] = []


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
