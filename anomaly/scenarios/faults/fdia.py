"""Stealthy false-data injection: an attacker who knows the operator's model adds a = H·c to the
telemetered measurements, so the estimator settles on a state shifted by c and every residual
stays as small as without the attack (Liu, Ning, Reiter 2009).

The generator builds H from the twin's own measurement model (`gridmodel.mfunc`) at the
operating point the estimator finds from the clean telemetry. c moves the voltage of one
metered bus (by `delta_vm_pu`) and of its neighbours; it is chosen, by least squares, to change
the measurements the attacker cannot touch (pseudo-measurements from the operator's model and
zero-injection buses) as little as possible. The injected a is h(x + c) − h(x), which is H·c to
first order and exact for the AC model. Each step of the window is checked with the estimator's
bad-data test (largest normalised residual); the attack is halved until it passes, and what it
reached is recorded in the fault's parameters (`max_lnr_clean`, `max_lnr_attacked`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from anomaly.scenarios.faults.base import Fault, InjectionAttack, register
from gridmodel.baddata import DEFAULT_BAD_DATA_THRESHOLD, normalised_residuals
from gridmodel.config import TwinConfig
from gridmodel.estimator import Estimate, EstimationError, make_estimator
from gridmodel.measurements import Measurement, pseudo_measurements
from gridmodel.mfunc import evaluate, state_of, voltages

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
        """Add a = h(x + c) − h(x) to the telemetered points of each step in the window."""
        cfg = TwinConfig()
        pseudo = pseudo_measurements(operator, set(), cfg)
        estimator = make_estimator("sparse")
        points = ctx.points
        window = range(fault.start, fault.end + 1)
        clean: dict[int, tuple[Estimate, list[int]]] = {}
        n_tel: dict[int, int] = {}
        for step in window:
            meas, cols = telemetered(points, values[step])
            try:
                clean[step] = (estimator.estimate(operator, meas + pseudo), cols)
                n_tel[step] = len(meas)
            except EstimationError as exc:
                fault.params["skipped"] = f"estimator failed on the clean data: {exc}"
                return
        first = clean[fault.start][0]
        delta = float(fault.params["delta_vm_pu"])
        direction = self._direction(first, n_tel[fault.start], ctx, fault.element)
        if direction is None:
            fault.params["skipped"] = "the target bus is not in the estimator's model"
            return
        threshold = DEFAULT_BAD_DATA_THRESHOLD
        checks = sorted({fault.start, (fault.start + fault.end) // 2, fault.end})
        lnr_clean = max(max_normalised_residual(clean[s][0], n_tel[s]) for s in checks)
        for _attempt in range(6):
            attacks = {step: self._attack(est, n_tel[step], direction * delta) for step, (est, _c) in clean.items()}
            worst = 0.0
            for step in checks:
                est, cols = clean[step]
                row = values[step].copy()
                row[cols] += attacks[step]
                meas, _cols = telemetered(points, row)
                try:
                    attacked = estimator.estimate(operator, meas + pseudo)
                    worst = max(worst, max_normalised_residual(attacked, len(meas)))
                except EstimationError:
                    worst = np.inf
            if worst <= max(threshold, lnr_clean + 0.5):
                break
            delta /= 2
        modified: set[str] = set()
        for step, (_est, cols) in clean.items():
            a = attacks[step]
            touched = np.abs(a) > 1e-3 * sigma[cols]
            values[step, np.asarray(cols)[touched]] += a[touched]
            modified |= {str(points.index[c]) for c in np.asarray(cols)[touched]}
        # what a temporal check sees: the jump of each attacked point at the onset, in its σ
        onset = attacks[fault.start] / sigma[clean[fault.start][1]]
        fault.params.update(
            onset_jump_sigmas=round(float(np.max(np.abs(onset))) if len(onset) else 0.0, 2),
            delta_vm_pu=round(delta, 6),
            points=sorted(modified),
            max_lnr_clean=round(lnr_clean, 3),
            max_lnr_attacked=round(worst, 3),
            threshold=threshold,
        )

    @staticmethod
    def _direction(est: Estimate, n_telemetered: int, ctx: Any, bus: int) -> np.ndarray | None:
        """State change c (per unit of |V| change at `bus`) on the bus and its neighbours that least
        disturbs the measurements the attacker cannot change (pseudo and zero-injection rows)."""
        model, cm = est.model, est.compiled
        target = model.bus_index(bus)
        if target < 0:
            return None
        net = ctx.net
        near = {bus}
        for a, b in zip(net.line.from_bus, net.line.to_bus, strict=True):
            if int(a) == bus:
                near.add(int(b))
            elif int(b) == bus:
                near.add(int(a))
        internal = {model.bus_index(b) for b in near} - {-1} - set(model.slack.tolist())
        ns = len(model.non_slack)
        slot = {int(b): i for i, b in enumerate(model.non_slack)}
        cols = sorted([slot[b] for b in internal if b in slot] + [ns + b for b in internal])
        _h, jac = evaluate(model, cm, est.voltages)
        assert jac is not None
        fixed = (cm.source < 0) | (cm.source >= n_telemetered)
        h_u = jac[fixed][:, cols].toarray() / cm.sigma[fixed][:, None]
        gram = h_u.T @ h_u + 1e-9 * np.eye(len(cols))
        e = np.zeros(len(cols))
        e[cols.index(ns + target)] = 1.0
        solved = np.linalg.solve(gram, e)
        c = np.zeros(model.n_state)
        c[cols] = solved / solved[cols.index(ns + target)]
        return c

    @staticmethod
    def _attack(est: Estimate, n_telemetered: int, c: np.ndarray) -> np.ndarray:
        """a = h(x + c) − h(x) per telemetered measurement (caller's order), in its own unit."""
        model, cm = est.model, est.compiled
        x = state_of(model, est.voltages)
        h0, _ = evaluate(model, cm, voltages(model, x), jacobian=False)
        h1, _ = evaluate(model, cm, voltages(model, x + c), jacobian=False)
        a = np.zeros(n_telemetered)
        ok = (cm.source >= 0) & (cm.source < n_telemetered)
        a[cm.source[ok]] = ((h1 - h0) * cm.scale)[ok]
        return a
