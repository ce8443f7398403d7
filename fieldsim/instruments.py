"""What the field instruments read: the truth plus instrument noise, thermal models and faults."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fieldsim.grid import Truth, true_value
from gridverse.config import (
    DeviceConfig,
    FaultConfig,
    FaultKind,
    Measurand,
    ProfilePoint,
    SensorConfig,
    SimulatorConfig,
)


@dataclass
class TopOilModel:
    """Transformer top-oil temperature, IEC 60076-7 exponential model (ONAN typical values).

    Steady-state rise = rated_rise * ((1 + R K^2) / (1 + R)) ** x, reached with time constant tau.
    Typical ONAN parameters from IEC 60076-7 Table 5: rated rise 52 K, R = 5, x = 0.8, 180 min.
    """

    rated_rise_k: float = 52.0
    loss_ratio: float = 5.0
    oil_exponent: float = 0.8
    tau_min: float = 180.0
    temperature_c: float | None = None

    def step(self, loading_pu: float, ambient_c: float, dt_min: float) -> float:
        k = max(loading_pu, 0.0)
        rise = self.rated_rise_k * ((1 + self.loss_ratio * k * k) / (1 + self.loss_ratio)) ** self.oil_exponent
        target = ambient_c + rise
        if self.temperature_c is None:
            self.temperature_c = target
        else:
            self.temperature_c = target + (self.temperature_c - target) * math.exp(-dt_min / self.tau_min)
        return self.temperature_c


def ambient_temperature(base_c: float, hour_of_day: float) -> float:
    """A daily swing of ±5 K around the configured ambient, warmest at 15:00."""
    return base_c + 5.0 * math.cos((hour_of_day - 15.0) / 24.0 * 2 * math.pi)


@dataclass
class FaultState:
    config: FaultConfig
    stuck_value: float | None = None


@dataclass
class Instruments:
    """Turns each simulation step into readings for every device point and sensor."""

    simulator: SimulatorConfig
    sensors: Sequence[SensorConfig]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(11))
    oil: dict[str, TopOilModel] = field(default_factory=dict)
    faults: list[FaultState] = field(default_factory=list)
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.simulator.seed + 1)
        self.faults = [FaultState(f) for f in self.simulator.faults]
        self.oil = {s.name: TopOilModel() for s in self.sensors}

    def _active_faults(self, device: str, point: str | None = None) -> list[FaultState]:
        return [
            f
            for f in self.faults
            if f.config.device == device
            and (point is None or f.config.point == point)
            and f.config.active(self.elapsed_s)
        ]

    def device_silent(self, device: str) -> bool:
        """A dropout fault: the device stops answering altogether."""
        return any(f.config.kind == FaultKind.DROPOUT for f in self._active_faults(device))

    def _apply_faults(self, device: str, point: str, value: float) -> float:
        for f in self._active_faults(device, point):
            kind = f.config.kind
            if kind == FaultKind.STUCK:
                if f.stuck_value is None:
                    f.stuck_value = value
                value = f.stuck_value
            elif kind == FaultKind.SPIKE:
                value += f.config.magnitude
            elif kind == FaultKind.DRIFT:
                value += f.config.magnitude * (self.elapsed_s - f.config.start_s) / 60.0
        return value

    def _noise(self, value: float, accuracy_class: float) -> float:
        if not self.simulator.noise:
            return value
        sigma = accuracy_class / 100.0 * max(abs(value), 1.0) / 3.0
        return value + float(self.rng.normal(0.0, sigma))

    def read_point(self, truth: Truth, device: DeviceConfig, point: ProfilePoint) -> float:
        """The value the device reports for `point` now, in the point's unit."""
        if device.element is None:
            raise KeyError(f"device {device.name}: no element, so nothing to simulate")
        value = true_value(truth, device.element, point.measurand)
        if point.measurand not in (Measurand.CLOSED, Measurand.TAP):
            value = self._noise(value, device.accuracy_class)
        return self._apply_faults(device.name, point.name, value)

    def read_sensor(self, truth: Truth, sensor: SensorConfig, dt_sim_min: float) -> dict[str, tuple[float, str]]:
        """An IoT sensor's points: name → (value, unit)."""
        hour = truth.sim_time.hour + truth.sim_time.minute / 60.0
        ambient = ambient_temperature(self.simulator.ambient_c, hour)
        loading = float(truth.res_trafo.loading_percent.loc[sensor.element.index]) / 100.0
        oil = self.oil[sensor.name].step(loading, ambient, dt_sim_min)
        readings = {
            "YPTR1.TmpOil": (self._noise(oil, 0.5), "degC"),
            "MMET1.EnvTmp": (self._noise(ambient, 0.5), "degC"),
        }
        return {name: (self._apply_faults(sensor.name, name, v), unit) for name, (v, unit) in readings.items()}
