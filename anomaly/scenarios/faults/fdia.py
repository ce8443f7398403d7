"""Stealthy false-data injection: an attacker who knows the operator's model adds a = H·c to the
telemetered measurements, so the estimator settles on a state shifted by c and every residual
stays as small as without the attack (Liu, Ning, Reiter 2009).

The generator builds H from the twin's own measurement model (`gridmodel.mfunc`) at the
operating point the estimator finds from the clean telemetry. c moves the voltage of one
metered bus by `delta_vm_pu`; it is chosen, by least squares, to change the measurements the
attacker cannot touch (pseudo-measurements from the operator's model and zero-injection buses)
as little as possible. Confined to a few buses such a c moves injections the pseudo-measurements
pin down, and the estimator follows only a fraction of it (about a fifth on SimBench LV rural 1),
so its support is the whole state: the stealthy attack shifts every voltage and flow a little,
and looks to a per-point temporal check like a step of `onset_jump_sigmas` σ at the onset.
The injected a is h(x + c) − h(x), which is H·c to first order and exact for
the AC model. Each step of the window is checked with the estimator's bad-data test (largest
normalised residual); the attack is halved until it passes, and what it reached is recorded in
the fault's parameters (`max_lnr_clean`, `max_lnr_attacked`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from anomaly.scenarios.faults.base import Fault, InjectionAttack, register
from gridmodel.baddata import DEFAULT_BAD_DATA_THRESHOLD, normalised_residuals
from gridmodel.config import TwinConfig
from gridmodel.estimator import Estimate, EstimationError, make_estimator
from gridmodel.measurements import Measurement, pseudo_measurements
from gridmodel.mfunc import compile_measurements, evaluate, evaluate_sparse, state_of, voltages

_TYPE = {"v_pu": "v", "p_mw": "p", "q_mvar": "q", "i_ka": "i"}


def telemetered(points: pd.DataFrame, row: np.ndarray) -> tuple[list[Measurement], list[int]]:
    """The estimator's measurements for one time step of the telemetry (bus voltages, line and
    transformer P/Q/I; generator and temperature points are not state-estimator inputs), and the
    point column of each."""
    out, cols = [], []
    for col, (name, p) in enumerate(points.iterrows()):
        if p.quantity not in _TYPE or p.element_type not in ("bus", "line", "trafo") or not np.isfinite(row[col]):
            continue
        side = p.side or None
        out.append(
            Measurement(
                _TYPE[p.quantity],
                p.element_type,
                int(p.element),
                side,
                float(row[col]),
                float(p.sigma),
                device=str(name),
                point=str(name),
            )
        )
        cols.append(col)
    return out, cols


def max_normalised_residual(est: Estimate, n_telemetered: int) -> float:
    """Largest |normalised residual| over the telemetered rows (the first `n_telemetered` of the
    caller's measurement list; pseudo and zero-injection rows come after them)."""
    rn = normalised_residuals(est, only_telemetered=True)
    source = est.compiled.source
    vals = np.abs(rn[(source >= 0) & (source < n_telemetered)])
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if len(vals) else 0.0


@register
class FalseDataInjection(InjectionAttack):
    name = "fdia"
    hours = (2.0, 12.0)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        net = ctx.net
        substation = (
            {int(b) for b in net.trafo.lv_bus} | {int(b) for b in net.trafo.hv_bus} | {int(b) for b in net.ext_grid.bus}
        )
        volts = ctx.points[(ctx.points.quantity == "v_pu") & ~ctx.points.element.isin(substation)]
        if not len(volts):
            return None
        bus = int(rng.choice(volts.element.to_numpy()))
        return Fault(
            self.name,
            start,
            end,
            "bus",
            bus,
            params={"delta_vm_pu": float(rng.choice([-1, 1]) * rng.uniform(0.015, 0.03))},
        )

    def inject(
        self, fault: Fault, ctx: Any, operator: Any, values: np.ndarray, sigma: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Add a = h(x + c) − h(x) to the telemetered points of each step in the window, x being the
        step's true state (`ctx.extra["voltages"]`, recorded by the power flow)."""
        pseudo = pseudo_measurements(operator, set(), TwinConfig())
        estimator = make_estimator("sparse")
        points, truth = ctx.points, ctx.extra["voltages"]
        meas0, _cols = telemetered(points, values[fault.start])
        try:
            first = estimator.estimate(operator, meas0 + pseudo)
        except EstimationError as exc:
            fault.params["skipped"] = f"the estimator failed on the clean data: {exc}"
            return
        model = first.model
        direction = self._direction(first, len(meas0), fault.element)
        if direction is None:
            fault.params["skipped"] = f"bus {fault.element} is not in the estimator's model"
            return
        bus_index = np.asarray(ctx.net.bus.index)

        def attack(step: int, delta: float) -> tuple[np.ndarray, list[int]]:
            meas, cols = telemetered(points, values[step])
            cm = compile_measurements(model, meas + pseudo)
            v = np.zeros(model.n_bus, dtype=complex)
            internal = model.bus_lookup[bus_index]
            ok = (internal >= 0) & (internal < model.n_bus)
            v[internal[ok]] = truth[step][ok]
            # de-energised buses (an outage in the window) have v = 0: the scipy formulation gives
            # them inf/nan under errstate, where the compiled kernel of `evaluate` raises
            with np.errstate(invalid="ignore", divide="ignore"):
                h0, _ = evaluate_sparse(model, cm, v, jacobian=False)
                shifted = voltages(model, state_of(model, v) + delta * direction)
                h1, _ = evaluate_sparse(model, cm, shifted, jacobian=False)
            a = np.zeros(len(meas))
            rows = (cm.source >= 0) & (cm.source < len(meas))
            a[cm.source[rows]] = ((h1 - h0) * cm.scale)[rows]
            return a, cols

        def max_lnr(step: int, a: np.ndarray | None) -> float:
            row = values[step].copy()
            if a is not None:
                row[attack(step, 0.0)[1]] += a
            meas, _c = telemetered(points, row)
            try:
                return max_normalised_residual(estimator.estimate(operator, meas + pseudo), len(meas))
            except EstimationError:
                return float("inf")

        threshold = DEFAULT_BAD_DATA_THRESHOLD
        checks = sorted({fault.start, fault.end})
        lnr_clean = max(max_lnr(s, None) for s in checks)
        delta = float(fault.params["delta_vm_pu"])
        for _attempt in range(6):
            worst = max(max_lnr(s, attack(s, delta)[0]) for s in checks)
            if worst <= max(threshold, lnr_clean + 0.5):
                break
            delta /= 2
        modified: set[str] = set()
        onset = 0.0
        for step in range(fault.start, fault.end + 1):
            a, cols = attack(step, delta)
            touched = np.abs(a) > 1e-3 * sigma[cols]
            where = np.asarray(cols)[touched]
            values[step, where] += a[touched]
            modified |= {str(points.index[c]) for c in where}
            if step == fault.start and len(a):
                # what a per-point temporal check sees: the jump at the onset, in σ
                onset = float(np.max(np.abs(a / sigma[cols])))
        # the label names the points the attack falsified (`;`-separated), so an evaluation needs
        # nothing beyond labels.csv to credit an alarm on any of them
        fault.point = ";".join(sorted(modified))
        fault.params.update(
            delta_vm_pu=round(delta, 6),
            onset_jump_sigmas=round(onset, 2),
            points=sorted(modified),
            max_lnr_clean=round(lnr_clean, 3),
            max_lnr_attacked=round(worst, 3),
            threshold=threshold,
        )

    @staticmethod
    def _direction(est: Estimate, n_telemetered: int, bus: int) -> np.ndarray | None:
        """State change c (per unit of |V| change at `bus`) that least disturbs the measurements the
        attacker cannot change (pseudo and zero-injection rows): min ‖W_u^½ H_u c‖ with c_bus = 1."""
        model, cm = est.model, est.compiled
        target = model.bus_index(bus)
        if target < 0:
            return None
        # Support: the whole state. With a pseudo-measurement on every unmetered load and exact zero
        # injections, a c confined to a few buses moves injections the attacker cannot hide, so the
        # estimator follows only a fraction of it; the least-disturbing c spreads over the grid.
        ns = len(model.non_slack)
        _h, jac = evaluate(model, cm, est.voltages)
        assert jac is not None
        fixed = (cm.source < 0) | (cm.source >= n_telemetered)
        h_u = sp.diags(1.0 / cm.sigma[fixed]) @ jac[fixed]
        gram = (h_u.T @ h_u + 1e-9 * sp.identity(model.n_state)).tocsc()
        e = np.zeros(model.n_state)
        e[ns + target] = 1.0
        solved = spsolve(gram, e)
        c = np.asarray(solved / solved[ns + target], dtype=float)
        return c
