"""The whole configuration: the shared sections (site, MQTT, historian) and each part's own
section from its `<part>/config.py`, composed into `Settings`, which cross-checks references."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

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
from gridverse.audit.config import AuditConfig
from gridverse.auth.config import AuthConfig
from gridverse.configbase import Port, ReadableFile, Strict
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
    "Port",
    "ProfilePoint",
    "ReadableFile",
    "RegisterTable",
    "RetentionConfig",
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
    "reference_problems",
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
    port: Port = Field(description="Modbus TCP port of the substation RTU")
    devices: list[DeviceConfig] = Field(default_factory=list, description="none: a substation with sensors only")


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
    substations: list[SubstationConfig] = Field(default_factory=list, description="none: a site without Modbus RTUs")
    sensors: list[SensorConfig] = []


class MqttTls(Strict):
    """TLS to the broker; client certificate optional (mutual TLS)."""

    ca_file: ReadableFile
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    insecure_skip_hostname: bool = False


class MqttConfig(Strict):
    host: str | None = Field(default=None, description="none: start an embedded broker")
    port: Port = 1883
    embedded_bind: str = Field(
        default="127.0.0.1",
        description="address the embedded broker listens on; loopback keeps it to this machine. It lets "
        "anonymous clients in only when no mqtt.username is set",
    )
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
    sparkplug_host_id: str | None = Field(
        default=None,
        pattern=r"^[^/+#]+$",
        description="Sparkplug host application id, published on spBv1.0/STATE/<id>; default "
        "gridverse-<site><client_suffix>",
    )
    tls: MqttTls | None = None

    @model_validator(mode="after")
    def _embedded_auth(self) -> MqttConfig:
        if self.host is None and self.username and self.password is None:
            raise ValueError(
                "mqtt.username is set, so the embedded broker admits only that user: set its password in "
                "GRIDVERSE_MQTT__PASSWORD (or remove mqtt.username for an anonymous loopback-only broker)"
            )
        return self


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

    @field_validator("url")
    @classmethod
    def _plain_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give an http:// or https:// URL with a host, e.g. http://127.0.0.1:8086")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials in the URL are not accepted (they would show in logs and output): remove the "
                "user:password@ part, set historian.influx.username and GRIDVERSE_HISTORIAN__INFLUX__PASSWORD "
                "(or GRIDVERSE_HISTORIAN__INFLUX__TOKEN)"
            )
        try:
            parts.port  # noqa: B018 - urlsplit checks the range only when asked
        except ValueError:
            raise ValueError("the port in the URL must be 1-65535") from None
        if parts.port == 0:
            raise ValueError("the port in the URL must be 1-65535")
        return v


class RetentionConfig(Strict):
    """How long the embedded historian keeps raw points and their 1-minute and 15-minute
    aggregates (min/mean/max/count per series and field), like InfluxDB retention policies."""

    raw_days: float = Field(default=2.0, gt=0, description="raw points older than this become 1-minute aggregates")
    minute_days: float = Field(default=30.0, gt=0, description="1-minute aggregates older than this become 15-minute")
    quarter_days: float = Field(default=730.0, gt=0, description="15-minute aggregates older than this are deleted")
    every_s: float = Field(default=60.0, gt=0, description="how often the writer runs the retention job")


class HistorianConfig(Strict):
    backend: Literal["embedded", "influxdb"] = "embedded"
    path: Path = Path("var/gridverse.db")
    influx: InfluxConfig = InfluxConfig()
    retention: RetentionConfig = RetentionConfig()


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
    inspection: InspectionConfig | None = Field(default=None, description="none: nothing to render")
    assets: dict[str, list[AssetConfig]] = Field(
        default_factory=dict, description="per substation name, from configs/assets.yaml"
    )
    ui: UiConfig = UiConfig()
    auth: AuthConfig = AuthConfig()
    audit: AuditConfig = AuditConfig()

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Settings:
        """Cross-checks between sections; every problem at once. `load_settings` runs them itself
        (context `defer_references`) so that each problem names the file that holds its key."""
        if info.context and info.context.get("defer_references"):
            return self
        problems = reference_problems(
            site=self.site,
            profile_names=self.profiles,
            assets=self.assets,
            inspection=self.inspection,
            simulator=self.simulator,
        )
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        return self

    def device(self, name: str) -> tuple[SubstationConfig, DeviceConfig]:
        """A Modbus device of the site and its substation; KeyError naming the site when unknown."""
        for sub in self.site.substations:
            for dev in sub.devices:
                if dev.name == name:
                    return sub, dev
        raise KeyError(f"no device {name!r} in site {self.site.name!r} (site.substations[].devices)")


#: The parts `gridverse run` can start, one per docker-compose service (or several per process).
SERVICE_PARTS = ("simulator", "gateway", "twin", "detectors", "inspection")


#: Dotted key paths that hold secrets: accepted only from the environment, redacted in output.
SECRET_PATHS = ("mqtt.password", "historian.influx.token", "historian.influx.password")


Loc = tuple[str | int, ...]


def reference_problems(
    *,
    site: SiteConfig,
    profile_names: Collection[str],
    assets: Mapping[str, list[AssetConfig]] | None,
    inspection: InspectionConfig | None,
    simulator: SimulatorConfig | None,
) -> list[tuple[Loc, str]]:
    """Every broken reference between sections (device → profile, sensor → substation, asset →
    device, …) as (key path, message), like power-grid-model's `validate_input_data`. A section
    given as None failed its own validation and is not cross-checked."""
    problems: list[tuple[Loc, str]] = []
    sub_names = [s.name for s in site.substations]
    known_subs = ", ".join(sub_names) or "none"
    seen_subs: set[str] = set()
    for si, sub in enumerate(site.substations):
        if sub.name in seen_subs:
            problems.append((("site", "substations", si, "name"), f"substation name {sub.name!r} is used twice"))
        seen_subs.add(sub.name)
    devices: set[str] = set()
    for si, sub in enumerate(site.substations):
        units: set[int] = set()
        for di, dev in enumerate(sub.devices):
            loc: Loc = ("site", "substations", si, "devices", di)
            if dev.profile not in profile_names:
                problems.append(
                    (
                        (*loc, "profile"),
                        f"unknown profile {dev.profile!r}; known: {sorted(profile_names)} (files in profiles/ "
                        "beside the main file)",
                    )
                )
            if dev.name in devices:
                problems.append(((*loc, "name"), f"device name {dev.name!r} is used twice; names must be unique"))
            if dev.unit_id in units:
                problems.append(((*loc, "unit_id"), f"unit id {dev.unit_id} is used twice on substation {sub.name}"))
            devices.add(dev.name)
            units.add(dev.unit_id)
            if dev.element is not None and dev.element.kind != ElementKind.BUS and dev.element.side is None:
                problems.append(
                    (
                        (*loc, "element", "side"),
                        f"a device on a {dev.element.kind.value} measures one end of it; say which (from/to or hv/lv)",
                    )
                )
    sensors: set[str] = set()
    for i, sensor in enumerate(site.sensors):
        if sensor.substation not in seen_subs:
            problems.append(
                (("site", "sensors", i, "substation"), f"unknown substation {sensor.substation!r}; known: {known_subs}")
            )
        if sensor.name in devices or sensor.name in sensors:
            problems.append((("site", "sensors", i, "name"), f"name {sensor.name!r} is already used by another"))
        sensors.add(sensor.name)
    sources = devices | sensors
    for sub_name, entries in (assets or {}).items():
        if sub_name not in seen_subs:
            problems.append(
                (
                    ("assets", sub_name),
                    f"no substation {sub_name!r} in site.substations (known: {known_subs}); rename or remove it",
                )
            )
            continue  # its devices belong to some other site: one problem, not one per asset
        for ai, asset in enumerate(entries):
            if asset.device is not None and asset.device not in sources:
                problems.append(
                    (("assets", sub_name, ai, "device"), f"unknown device or sensor {asset.device!r} (see site)")
                )
    if inspection is not None and inspection.substation not in seen_subs:
        problems.append(
            (
                ("inspection", "substation"),
                f"unknown substation {inspection.substation!r} (known: {known_subs}); name one, or remove the "
                "inspection section to render nothing",
            )
        )
    for i, fault in enumerate(simulator.faults if simulator is not None else []):
        if fault.device is not None and fault.device not in sources:
            problems.append(
                (("simulator", "faults", i, "device"), f"unknown device or sensor {fault.device!r} (see site)")
            )
    return problems
