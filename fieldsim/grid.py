"""A time-series power flow on a real network: the physical truth behind every simulated reading."""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import pandas as pd

from gridmodel.network import GridData, apply_profiles, profile_values
from gridverse.config import ElementKind, ElementRef, Measurand, SimulatorConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Truth:
    """The solved state of one simulation step (copies of pandapower's result tables)."""

    step: int
    sim_time: pd.Timestamp
    res_bus: pd.DataFrame
    res_line: pd.DataFrame
    res_trafo: pd.DataFrame
    line_in_service: pd.Series
    trafo_in_service: pd.Series
    bus_vn_kv: pd.Series
    end_bus: dict[tuple[str, int, str], int]
    trafo_tap: pd.Series


class GridSimulator:
    """Advances a simulated clock and solves the power flow at each step.

    Real loads deviate from their profiles by a slow random walk (`deviation`), so that a twin
    using the profiles as pseudo-measurements does not get the truth for free.
    """

    def __init__(self, grid: GridData, config: SimulatorConfig) -> None:
        self.net = grid.net
        self.profiles = grid.profiles
        self.config = config
        self.start = pd.Timestamp(config.start, tz="UTC")
        self._rng = np.random.default_rng(config.seed)
        self._load_factor = np.ones(len(self.net.load))
        self._lock = threading.Lock()
        self._truth: Truth | None = None
        self._outaged: set[int] = set()
        self.step_count = 0
        self._end_bus = {
            **{("line", int(i), "from"): int(b) for i, b in self.net.line.from_bus.items()},
            **{("line", int(i), "to"): int(b) for i, b in self.net.line.to_bus.items()},
            **{("trafo", int(i), "hv"): int(b) for i, b in self.net.trafo.hv_bus.items()},
            **{("trafo", int(i), "lv"): int(b) for i, b in self.net.trafo.lv_bus.items()},
        }

    def sim_time(self, elapsed_real_s: float) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=elapsed_real_s * self.config.speed)

    def set_line_outage(self, line: int, out: bool) -> None:
        """Open (or re-close) a line: its breakers read open and the power flow follows."""
        if line not in self.net.line.index:
            raise KeyError(f"line_outage: no line {line} in the network")
        with self._lock:
            (self._outaged.add if out else self._outaged.discard)(line)

    def step(self, elapsed_real_s: float) -> Truth:
        when = self.sim_time(elapsed_real_s)
        net = self.net
        if self.profiles:
            apply_profiles(net, profile_values(self.profiles, when))
        if self.config.deviation > 0 and len(net.load):
            shock = self._rng.normal(0.0, self.config.deviation * 0.3, len(net.load))
            self._load_factor = np.clip(
                0.9 * self._load_factor + 0.1 * (1 + shock * 3), 1 - 3 * self.config.deviation, 2
            )
            net.load["p_mw"] = net.load["p_mw"].to_numpy() * self._load_factor
            net.load["q_mvar"] = net.load["q_mvar"].to_numpy() * self._load_factor
        with self._lock:
            outaged = set(self._outaged)
        net.line["in_service"] = ~net.line.index.isin(list(outaged))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False, init="results" if self._truth else "auto")
        truth = Truth(
            step=self.step_count,
            sim_time=when,
            res_bus=net.res_bus.copy(),
            res_line=net.res_line.copy(),
            res_trafo=net.res_trafo.copy(),
            line_in_service=net.line["in_service"].copy(),
            trafo_in_service=net.trafo["in_service"].copy(),
            bus_vn_kv=net.bus["vn_kv"].copy(),
            end_bus=self._end_bus,
            trafo_tap=net.trafo["tap_pos"].copy(),
        )
        with self._lock:
            self._truth = truth
            self.step_count += 1
        return truth

    @property
    def truth(self) -> Truth:
        with self._lock:
            if self._truth is None:
                raise RuntimeError("the simulator has not solved a step yet; call step() first")
            return self._truth


def true_value(truth: Truth, element: ElementRef, measurand: Measurand) -> float:
    """The value a perfect instrument on `element` would read, in SI units.

    A de-energised element really reads zero volts and amperes, so pandapower's NaN for an
    isolated bus becomes 0.0 here: that zero is physics, not a stand-in for a missing value.
    """
    idx = element.index
    if element.kind == ElementKind.BUS:
        bus = idx
        row = truth.res_bus.loc[idx]
        values = {Measurand.P: row.p_mw * 1e6, Measurand.Q: row.q_mvar * 1e6}
    else:
        kind = element.kind.value
        end = element.side or ("from" if element.kind == ElementKind.LINE else "lv")
        bus = truth.end_bus[(kind, idx, end)]
        table = truth.res_line if element.kind == ElementKind.LINE else truth.res_trafo
        in_service = truth.line_in_service if element.kind == ElementKind.LINE else truth.trafo_in_service
        row = table.loc[idx]
        values = {
            Measurand.P: row[f"p_{end}_mw"] * 1e6,
            Measurand.Q: row[f"q_{end}_mvar"] * 1e6,
            Measurand.I: row[f"i_{end}_ka"] * 1e3,
            Measurand.CLOSED: float(bool(in_service.loc[idx])),
        }
        if element.kind == ElementKind.TRAFO:
            values[Measurand.TAP] = float(truth.trafo_tap.loc[idx])
    values[Measurand.V] = truth.res_bus.vm_pu.loc[bus] * truth.bus_vn_kv.loc[bus] * 1e3
    if measurand not in values:
        raise KeyError(f"{element.kind.value} {idx}: no {measurand.value} measurement")
    value = float(values[measurand])
    return 0.0 if np.isnan(value) else value
