"""State estimation on the network model: pandapower's WLS, with residuals per measurement."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import pandapower as pp
import pandas as pd
from pandapower.estimation import estimate

from gridmodel.measurements import Measurement


class EstimationError(Exception):
    """The estimate did not converge; the message says what was tried and what was present."""


@dataclass(frozen=True)
class Estimate:
    res_bus: pd.DataFrame  # vm_pu, va_degree, p_mw, q_mvar
    res_line: pd.DataFrame
    res_trafo: pd.DataFrame
    residuals: list[tuple[Measurement, float, float]]  # (measurement, estimated, residual/σ)
    iterations: int
    duration_s: float


_END_BUS_COLUMN = {"from": "from_bus", "to": "to_bus", "hv": "hv_bus", "lv": "lv_bus"}


def _estimated_value(net: pp.pandapowerNet, m: Measurement) -> float:
    if m.element_type == "bus":
        col = {"v": "vm_pu", "p": "p_mw", "q": "q_mvar"}[m.meas_type]
        return float(net.res_bus_est.at[m.element, col])
    table = net.res_line_est if m.element_type == "line" else net.res_trafo_est
    unit = "mw" if m.meas_type == "p" else "mvar"
    return float(table.at[m.element, f"{m.meas_type}_{m.side}_{unit}"])


def run_estimate(
    net: pp.pandapowerNet, measurements: list[Measurement], *, init: str = "flat"
) -> Estimate:
    """Replace the network's measurements with `measurements` and solve the WLS estimate."""
    net.measurement.drop(net.measurement.index, inplace=True)
    for m in measurements:
        # pandapower's estimator matches branch measurements by the bus index of their end;
        # the names "lv"/"from" are accepted by create_measurement but mis-read by estimate.
        side = None if m.side is None else _END_BUS_COLUMN[m.side]
        side_bus = None if side is None else int(getattr(net, m.element_type).at[m.element, side])
        pp.create_measurement(net, m.meas_type, m.element_type, m.value, m.std_dev, m.element,
                              side=side_bus)  # fmt: skip
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate(net, algorithm="wls", init=init, zero_injection=None)
    duration = time.perf_counter() - t0
    success = result.get("success") if isinstance(result, dict) else bool(result)
    if not success:
        n_v = sum(m.meas_type == "v" for m in measurements)
        n_real = sum(not m.pseudo for m in measurements)
        raise EstimationError(
            f"WLS state estimation did not converge (init={init}) with {len(measurements)} "
            f"measurements ({n_real} telemetered, {n_v} voltages); check that a voltage "
            "measurement and the feeder-head flows are present"
        )
    residuals = []
    for m in measurements:
        est = _estimated_value(net, m)
        residuals.append((m, est, (m.value - est) / m.std_dev))
    iterations = int(result.get("num_iterations", 0)) if isinstance(result, dict) else 0
    return Estimate(
        res_bus=net.res_bus_est.copy(),
        res_line=net.res_line_est.copy(),
        res_trafo=net.res_trafo_est.copy(),
        residuals=residuals,
        iterations=iterations,
        duration_s=duration,
    )
