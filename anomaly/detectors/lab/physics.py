"""Physics detector: the twin's state estimator and bad-data test run on every time step.

Each step's telemetered values (`points.csv` mapped to `gridmodel.measurements.Measurement`s)
plus pseudo-measurements from the network's nominal loads and generators (wide σ) and zero
injections go through `gridmodel.baddata.detect_and_identify` with the sparse WLS engine. Out
come, per step, the normalised residual of every testable measurement, the χ² objective against
its threshold, and the measurement identified as bad. A line outage the model does not know
shows the same way: near-zero metered flow on a line the model keeps closed, and voltages and
feeder flows that no state fits.

The estimator contract applies with one exception: the detector needs the network and the point
list (constructor parameters `network`, `points`), and X is a telemetry matrix whose columns are
those points, so scikit-learn's generic checks (random X of any shape) cannot run it; the tests
check what does apply (parameters, clone, fit returns self, score signs, predict ±1).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger(__name__)

_MEAS_TYPE = {"v_pu": "v", "p_mw": "p", "q_mvar": "q", "i_ka": "i"}
_ESTIMATED_ELEMENTS = ("bus", "line", "trafo")


def to_measurements(row: pd.Series, points: pd.DataFrame) -> list[Any]:
    """One time step's telemetered values as estimator measurements (missing values and points the
    bus-branch model has no measurement function for — oil temperature, sgen/load flows — left out)."""
    from gridmodel.measurements import Measurement

    out = []
    for name, value in row.items():
        if not np.isfinite(value):
            continue
        p = points.loc[name]
        meas_type = _MEAS_TYPE.get(p.quantity)
        if meas_type is None or p.element_type not in _ESTIMATED_ELEMENTS:
            continue
        side = p.side or None
        out.append(
            Measurement(
                meas_type, p.element_type, int(p.element), side, float(value), float(p.sigma), str(name), str(name)
            )
        )
    return out


class PhysicsDetector(OutlierMixin, BaseEstimator):
    """Per time step: normalised residuals, χ² and the identified bad measurement (see module doc).

    Parameters: `network` (pandapower net as the operator models it), `points` (points.csv frame
    indexed by point), `estimator` (twin engine kind), `pseudo_sigma_frac` (σ of a pseudo
    injection as a share of its nominal value: wide, since profiles are unknown), `threshold`
    (normalised residual above which a step is abnormal), `max_removals` (bad-data identification
    rounds per step), `confidence` (of the χ² test)."""

    def __init__(
        self,
        network: Any = None,
        points: pd.DataFrame | None = None,
        estimator: str = "sparse",
        pseudo_sigma_frac: float = 1.0,
        threshold: float = 4.0,
        max_removals: int = 1,
        confidence: float = 0.99,
    ) -> None:
        self.network = network
        self.points = points
        self.estimator = estimator
        self.pseudo_sigma_frac = pseudo_sigma_frac
        self.threshold = threshold
        self.max_removals = max_removals
        self.confidence = confidence

    def _check_context(self) -> None:
        if self.network is None or self.points is None:
            raise ValueError(
                "PhysicsDetector needs network= (a pandapower net) and points= (points.csv indexed by point); "
                "pass them to the constructor or set_params"
            )

    def fit(self, X: pd.DataFrame, y: Any = None) -> PhysicsDetector:
        """Nothing to learn from data (the physics is the network's); checks the context and X."""
        self._check_context()
        assert self.points is not None
        unknown = [c for c in X.columns if c not in self.points.index]
        if unknown:
            raise ValueError(f"telemetry columns {unknown[:5]} are not in points; add them to points.csv or drop them")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.offset_ = -float(self.threshold)
        return self

    def residual_frame(self, X: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(normalised residuals time × point, NaN where not testable; per-step frame with
        `chi2_ratio` = J / χ² threshold, `bad_point` identified, `failed` estimation)."""
        from gridmodel.baddata import detect_and_identify
        from gridmodel.config import TwinConfig
        from gridmodel.estimator import EstimationError, make_estimator
        from gridmodel.measurements import pseudo_measurements

        self._check_context()
        net = self.network
        engine = make_estimator(self.estimator)
        cfg = TwinConfig(pseudo_sigma_frac=self.pseudo_sigma_frac)
        pseudo = pseudo_measurements(net, set(), cfg)
        resid = np.full(X.shape, np.nan)
        col = {name: k for k, name in enumerate(X.columns)}
        chi2_ratio = np.full(len(X), np.nan)
        bad = np.full(len(X), "", dtype=object)
        failed = np.zeros(len(X), dtype=bool)
        failures = 0
        t0 = time.perf_counter()
        for t, (_, row) in enumerate(X.iterrows()):
            measured = to_measurements(row, self.points)
            if not measured:
                continue
            try:
                report = detect_and_identify(
                    engine,
                    net,
                    measured + pseudo,
                    threshold=self.threshold,
                    confidence=self.confidence,
                    max_removals=self.max_removals,
                    only_telemetered=True,
                )
            except (EstimationError, RuntimeError, ValueError) as exc:
                failed[t] = True
                if failures == 0:
                    log.warning(
                        "physics detector: estimate failed at step %d (%s); such steps get no residuals", t, exc
                    )
                failures += 1
                engine = make_estimator(self.estimator)
                continue
            est = report.estimate
            assert est.normalised is not None
            for m, r in zip(est.measurements, est.normalised, strict=True):
                if m.point in col and np.isfinite(r):
                    resid[t, col[m.point]] = r
            for s in report.suspects:
                if s.measurement.point in col and s.normalised is not None:
                    resid[t, col[s.measurement.point]] = s.normalised
            chi2_ratio[t] = report.objective / report.chi2_threshold
            if report.suspects:
                bad[t] = report.suspects[0].measurement.point
        if failures:
            log.warning("physics detector: %d of %d steps could not be estimated", failures, len(X))
        self.last_step_s_ = (time.perf_counter() - t0) / max(len(X), 1)
        steps = pd.DataFrame({"chi2_ratio": chi2_ratio, "bad_point": bad, "failed": failed}, index=X.index)
        return pd.DataFrame(resid, index=X.index, columns=X.columns), steps

    def score_samples(self, X: pd.DataFrame) -> np.ndarray:
        """Per time step: −max |normalised residual| (lower = more abnormal)."""
        check_is_fitted(self)
        resid, _ = self.residual_frame(X)
        worst = np.nanmax(np.abs(resid.to_numpy()), axis=1, initial=0.0)
        return -np.nan_to_num(worst)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.where(self.decision_function(X) < 0, -1, 1)
