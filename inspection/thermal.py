"""Transformer hot-spot temperature and insulation ageing after IEC 60076-7 (loading guide for
mineral-oil-immersed power transformers), from measured loading and, when there is one, the
measured top-oil temperature.

What is used, and where it is in the standard (clause numbers of the 2018 edition; the 2005
edition has the same equations and the same table of constants as its Table 5):

- steady state, clause 8.2.2 (exponential equations at constant load):
  θh = θa + Δθor·[(1 + K²R)/(1 + R)]^x + Hgr·K^y
- dynamic model, clause 8.2.3 and Annex C (the difference-equation solution, for a load
  and ambient that vary in time, step Dt ≤ τw/2):
  DΔθo  = Dt/(k11·τo)·([(1 + K²R)/(1 + R)]^x·Δθor − Δθo)
  DΔθh1 = Dt/(k22·τw)·(k21·Hgr·K^y − Δθh1)
  DΔθh2 = Dt/((1/k22)·τo)·((k21 − 1)·Hgr·K^y − Δθh2)
  Δθh = Δθh1 − Δθh2;  θh = θa + Δθo + Δθh   (or θo,measured + Δθh when the top oil is measured)
- the recommended thermal characteristics (Table 5 of the 2005 edition; the same values in the
  2018 edition's table of thermal characteristics for exponential equations): `ONAN_DISTRIBUTION`,
  `ONAN`, `ONAF` below;
- relative ageing rate for non-thermally upgraded paper, clause 6.3 equation (2):
  V = 2^((θh − 98)/6), 1.0 at a hot-spot of 98 °C;
- loss of life over a period, clause 6.4 equation (4): L = Σ Vn·tn (in hours of normal ageing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Hot-spot temperature at which non-thermally upgraded paper ages at the normal rate (V = 1).
REFERENCE_HOT_SPOT_C = 98.0
#: Limits for normal cyclic loading of medium power transformers (IEC 60076-7, the table of
#: current and temperature limits for loading beyond nameplate rating): hot spot and top oil.
HOT_SPOT_LIMIT_C = 120.0
TOP_OIL_LIMIT_C = 105.0


@dataclass(frozen=True)
class ThermalParams:
    """A transformer's thermal characteristics (IEC 60076-7 symbols, minutes and kelvin)."""

    name: str
    x: float  # oil exponent
    y: float  # winding exponent
    R: float  # ratio of load losses at rated current to no-load losses
    tau_o_min: float  # average oil time constant
    tau_w_min: float  # winding time constant
    delta_theta_or: float  # top-oil temperature rise at rated losses, K
    hgr: float  # hot-spot-to-top-oil gradient at rated current (H·gr), K
    k11: float
    k21: float
    k22: float


#: IEC 60076-7 recommended values (2005 edition Table 5), the columns used here.
ONAN_DISTRIBUTION = ThermalParams("ONAN distribution", 0.8, 1.6, 5.0, 180.0, 4.0, 55.0, 23.0, 1.0, 1.0, 2.0)
ONAN = ThermalParams("ONAN medium and large", 0.8, 1.3, 6.0, 210.0, 10.0, 52.0, 26.0, 0.5, 2.0, 2.0)
ONAF = ThermalParams("ONAF medium and large", 0.8, 1.3, 6.0, 150.0, 7.0, 52.0, 26.0, 0.5, 2.0, 2.0)
PARAMS = {"ONAN_DISTRIBUTION": ONAN_DISTRIBUTION, "ONAN": ONAN, "ONAF": ONAF}


def top_oil_rise(k: float, p: ThermalParams) -> float:
    """Steady-state top-oil rise over ambient at load factor K (K, clause 8.2.2)."""
    return p.delta_theta_or * ((1.0 + k * k * p.R) / (1.0 + p.R)) ** p.x


def hot_spot_gradient(k: float, p: ThermalParams) -> float:
    """Steady-state hot-spot-to-top-oil gradient at load factor K: Hgr·K^y (K)."""
    return p.hgr * abs(k) ** p.y


def steady_hot_spot(k: float, ambient_c: float, p: ThermalParams = ONAN) -> float:
    """Hot-spot temperature (°C) at a constant load factor K and ambient, after the transients."""
    return ambient_c + top_oil_rise(k, p) + hot_spot_gradient(k, p)


def hot_spot_from_top_oil(top_oil_c: float, k: float, p: ThermalParams = ONAN) -> float:
    """Hot-spot temperature (°C) from a measured top-oil temperature and the load factor K: the
    measured oil replaces the modelled one; the gradient is the steady-state Hgr·K^y."""
    return top_oil_c + hot_spot_gradient(k, p)


def ageing_rate(hot_spot_c: float) -> float:
    """Relative ageing rate V of non-thermally upgraded paper (1.0 at 98 °C, doubles every 6 K)."""
    return float(2.0 ** ((hot_spot_c - REFERENCE_HOT_SPOT_C) / 6.0))


def loss_of_life_h(hot_spots_c: Sequence[float], step_min: float) -> float:
    """Loss of life L = Σ V·t over a period sampled every `step_min`, in hours of normal ageing
    (24 h at 98 °C cost 24 h)."""
    return float(sum(ageing_rate(t) for t in hot_spots_c) * step_min / 60.0)


def load_factor(measured: float, rated: float) -> float:
    """K: the measured current (or apparent power) over its rated value; a rating that is not
    positive is an error naming what to fix."""
    if not rated > 0:
        raise ValueError(f"rated value {rated!r} is not positive: give the transformer's rated current or power")
    return abs(measured) / rated


@dataclass
class ThermalState:
    """The difference-equation model's state: top-oil rise and the two hot-spot terms (K)."""

    delta_theta_o: float
    delta_theta_h1: float
    delta_theta_h2: float


@dataclass(frozen=True)
class ThermalStep:
    """One step of the dynamic model: temperatures (°C) and the ageing rate over the step."""

    top_oil_c: float
    hot_spot_c: float
    ageing_rate: float


class DynamicThermalModel:
    """IEC 60076-7 difference equations (clause 8.2.3): feed it the load factor, the ambient and,
    when measured, the top-oil temperature each step; it returns the hot spot and ageing rate.

    Starts in the steady state of the first step's load (the standard's own assumption when the
    history is unknown). Each call may be split into sub-steps so that Dt stays ≤ τw/2, which the
    standard names as the condition for a stable solution."""

    def __init__(self, params: ThermalParams = ONAN) -> None:
        self.params = params
        self.state: ThermalState | None = None
        self.loss_of_life_h = 0.0

    def _initial(self, k: float) -> ThermalState:
        p = self.params
        g = hot_spot_gradient(k, p)
        return ThermalState(top_oil_rise(k, p), p.k21 * g, (p.k21 - 1.0) * g)

    def step(self, k: float, ambient_c: float, dt_min: float, *, top_oil_c: float | None = None) -> ThermalStep:
        """Advance by `dt_min` minutes at load factor `k`; a measured `top_oil_c` replaces the
        modelled top oil in the hot-spot sum (the model's own oil keeps running)."""
        if dt_min < 0:
            raise ValueError(f"time step {dt_min} min is negative")
        p = self.params
        if self.state is None:
            self.state = self._initial(k)
        s = self.state
        n = max(1, math.ceil(dt_min / (p.tau_w_min / 2.0)))
        dt = dt_min / n
        target_o = top_oil_rise(k, p)
        g = hot_spot_gradient(k, p)
        for _ in range(n if dt_min > 0 else 0):
            s.delta_theta_o += dt / (p.k11 * p.tau_o_min) * (target_o - s.delta_theta_o)
            s.delta_theta_h1 += dt / (p.k22 * p.tau_w_min) * (p.k21 * g - s.delta_theta_h1)
            s.delta_theta_h2 += dt / ((1.0 / p.k22) * p.tau_o_min) * ((p.k21 - 1.0) * g - s.delta_theta_h2)
        oil = top_oil_c if top_oil_c is not None else ambient_c + s.delta_theta_o
        hot = oil + s.delta_theta_h1 - s.delta_theta_h2
        v = ageing_rate(hot)
        self.loss_of_life_h += v * dt_min / 60.0
        return ThermalStep(oil, hot, v)


def hot_spot_series(
    loads: Sequence[float], ambients: Sequence[float], step_min: float, params: ThermalParams = ONAN
) -> list[ThermalStep]:
    """The dynamic model over a load and ambient profile sampled every `step_min`."""
    model = DynamicThermalModel(params)
    out = [model.step(loads[0], ambients[0], 0.0)]
    out += [model.step(k, a, step_min) for k, a in zip(loads[1:], ambients[1:], strict=True)]
    return out
