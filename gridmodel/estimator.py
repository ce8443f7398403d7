"""State estimators behind one typed interface, chosen by `EstimatorKind`.

- `pandapower`: pandapower's WLS (`pandapower.estimation.estimate`), the reference.
- `sparse`: gridverse's own sparse WLS (Gauss-Newton on the same bus-branch model). It keeps the
  model per topology and, per measurement structure, the ordering and symbolic factor of the gain
  matrix (`gridmodel.gain`), so each iteration is one compiled Jacobian, one numeric LDLᵀ and two
  triangular solves, and a warm estimate starts from the last cycle's state.

Both return an `Estimate` built the same way from the solved voltages, so results, residuals and
bad-data analysis do not depend on the engine.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandapower as pp
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import SuperLU, splu

from gridmodel.config import EstimatorKind
from gridmodel.gain import GainFactor, SingularGainError, gain_structure, weighted_gradient
from gridmodel.measurements import Measurement
from gridmodel.mfunc import CompiledMeasurements, compile_measurements, evaluate, initial_state, state_of, voltages
from gridmodel.ppcmodel import PpcModel, build_model, topology_key
from gridmodel.results import bus_table, line_table, trafo_table


class EstimationError(Exception):
    """The estimate failed; the message says why and what to do."""


class NotObservableError(EstimationError):
    """The measurements do not determine the state of some buses."""

    def __init__(self, message: str, unobservable_buses: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.unobservable_buses = list(unobservable_buses)


class NotConvergedError(EstimationError):
    """The iteration did not settle; usually gross bad data or a wrong topology."""


@dataclass(frozen=True)
class MeasurementResult:
    measurement: Measurement
    estimated: float  # in the measurement's unit
    residual: float  # measured − estimated
    weighted: float  # residual / σ
    normalised: float | None = None  # residual / sqrt(Ω_ii), set by the bad-data analysis


@dataclass
class Estimate:
    """The solved state and, per measurement used (in `measurements` order), its estimated value,
    residual and weighted residual as arrays; `results` gives them as objects on demand."""

    engine: EstimatorKind
    res_bus: pd.DataFrame  # vm_pu, va_degree, p_mw, q_mvar per pandapower bus
    res_line: pd.DataFrame
    res_trafo: pd.DataFrame
    measurements: list[Measurement]  # those used, in compiled order
    estimated: np.ndarray  # in each measurement's unit
    residual: np.ndarray  # measured − estimated
    weighted: np.ndarray  # residual / σ
    skipped: list[tuple[Measurement, str]]
    objective: float  # J(x) = Σ (r/σ)² over every compiled row
    iterations: int
    duration_s: float
    model: PpcModel
    compiled: CompiledMeasurements
    voltages: np.ndarray  # internal complex bus voltages (pu)
    normalised: np.ndarray | None = None  # set by the bad-data analysis (NaN: critical/untested)
    extra: dict = field(default_factory=dict)

    @property
    def degrees_of_freedom(self) -> int:
        return len(self.compiled.kind) - self.model.n_state

    @property
    def results(self) -> list[MeasurementResult]:
        norm = self.normalised
        return [
            MeasurementResult(
                m,
                float(self.estimated[k]),
                float(self.residual[k]),
                float(self.weighted[k]),
                None if norm is None or not np.isfinite(norm[k]) else float(norm[k]),
            )
            for k, m in enumerate(self.measurements)
        ]


class ModelCache:
    """The bus-branch model per topology (rebuilt only when switching changes it)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: PpcModel | None = None

    def get(self, net: pp.pandapowerNet) -> PpcModel:
        key = topology_key(net)
        if self._model is None or key != self._key:
            self._model = build_model(net)
            self._key = key
        return self._model


def _make_estimate(
    kind: EstimatorKind,
    net: pp.pandapowerNet,
    model: PpcModel,
    measurements: Sequence[Measurement],
    cm: CompiledMeasurements,
    v: np.ndarray,
    iterations: int,
    duration: float,
) -> Estimate:
    h, _ = evaluate(model, cm, v, jacobian=False)
    r = cm.z - h
    real = cm.source >= 0
    return Estimate(
        engine=kind,
        res_bus=bus_table(net, model, v),
        res_line=line_table(net, model, v),
        res_trafo=trafo_table(net, model, v),
        measurements=[measurements[k] for k in cm.source[real].tolist()],
        estimated=(h * cm.scale)[real],
        residual=(r * cm.scale)[real],
        weighted=(r / cm.sigma)[real],
        skipped=[(measurements[k], why) for k, why in cm.skipped],
        objective=float(np.sum((r / cm.sigma) ** 2)),
        iterations=iterations,
        duration_s=duration,
        model=model,
        compiled=cm,
        voltages=v,
    )


def factorise_gain(h_jac: sp.spmatrix, weights: np.ndarray) -> SuperLU:
    """Sparse LU of the gain matrix G = HᵀWH (symmetric ordering); RuntimeError when singular."""
    gain = (h_jac.T @ sp.diags(weights) @ h_jac).tocsc()
    # G is symmetric positive definite: diagonal pivots are stable and skip the pivot search
    return splu(gain, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})


def _check_redundancy(model: PpcModel, cm: CompiledMeasurements) -> None:
    if len(cm.kind) < model.n_state:
        raise NotObservableError(
            f"{len(cm.kind)} measurements cannot determine {model.n_state} state variables "
            f"({model.n_bus} buses); add pseudo-measurements for unmetered loads or more telemetry"
        )


class StateEstimator(ABC):
    kind: EstimatorKind

    def __init__(self, *, tolerance: float = 1e-6, max_iterations: int = 50) -> None:
        self.tolerance = tolerance
        self.max_iterations = max_iterations
        self.models = ModelCache()

    def _prepare(
        self, net: pp.pandapowerNet, measurements: Sequence[Measurement]
    ) -> tuple[PpcModel, CompiledMeasurements]:
        """The model for the network's topology and the measurements compiled against it."""
        model = self.models.get(net)
        cm = compile_measurements(model, measurements)
        _check_redundancy(model, cm)
        return model, cm

    @abstractmethod
    def estimate(self, net: pp.pandapowerNet, measurements: Sequence[Measurement], *, warm: bool = True) -> Estimate:
        """The weighted-least-squares state for these measurements on the network's topology.
        `warm` starts from the previous estimate when the topology is unchanged."""


class PandapowerWLS(StateEstimator):
    """pandapower.estimation.estimate with algorithm='wls', the reference engine."""

    kind = EstimatorKind.PANDAPOWER

    def __init__(self, *, tolerance: float = 1e-6, max_iterations: int = 50) -> None:
        super().__init__(tolerance=tolerance, max_iterations=max_iterations)
        self._warm_model: PpcModel | None = None  # the model of the last converged estimate

    def estimate(self, net: pp.pandapowerNet, measurements: Sequence[Measurement], *, warm: bool = True) -> Estimate:
        from pandapower.estimation.state_estimation import StateEstimation

        model, cm = self._prepare(net, measurements)
        used = set(cm.source.tolist())
        load_measurements(net, [m for k, m in enumerate(measurements) if k in used])
        start: dict[str, object] = {"v_start": None, "delta_start": None}  # flat
        if warm and self._warm_model is model and len(net.res_bus_est) == len(net.bus):
            start = {
                "v_start": net.res_bus_est.vm_pu.fillna(1.0).values.copy(),
                "delta_start": net.res_bus_est.va_degree.fillna(0.0).values.copy(),
            }
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                se = StateEstimation(net, self.tolerance, self.max_iterations, algorithm="wls")
                result = se.estimate(zero_injection="aux_bus", **start)
            except UserWarning as exc:  # pandapower's own observability check
                raise NotObservableError(f"pandapower WLS: {exc}") from exc
        init = "flat" if start["v_start"] is None else "previous estimate"
        duration = time.perf_counter() - t0
        success = result.get("success") if isinstance(result, dict) else bool(result)
        if not success:
            self._warm_model = None
            raise NotConvergedError(
                f"pandapower WLS did not converge in {self.max_iterations} iterations (init={init}) "
                f"with {len(cm.kind)} measurements; look for gross bad data or a wrong breaker state"
            )
        self._warm_model = model
        v = np.asarray(se.solver.eppci.V, dtype=complex).copy()  # internal order, aux buses too
        if len(v) != model.n_bus:
            raise EstimationError(
                f"pandapower's model has {len(v)} buses, gridverse's {model.n_bus}; "
                "the two conversions disagree (pandapower version?)"
            )
        iterations = int(result.get("num_iterations", 0)) if isinstance(result, dict) else 0
        return _make_estimate(self.kind, net, model, measurements, cm, v, iterations, duration)


def load_measurements(net: pp.pandapowerNet, measurements: Sequence[Measurement]) -> None:
    """Replace the network's measurement table (pandapower's estimator reads it from there).

    Written as one table with create_measurement's columns and dtypes: calling
    create_measurement 27,000 times takes about 110 s on its own."""
    sides = [
        None if m.element_type == "bus" else (m.side or ("from" if m.element_type == "line" else "hv"))
        for m in measurements
    ]
    table = pd.DataFrame(
        {
            "name": pd.Series([None] * len(measurements), dtype=object),
            "measurement_type": pd.Series([m.meas_type for m in measurements], dtype=object),
            "element_type": pd.Series([m.element_type for m in measurements], dtype=object),
            "element": pd.Series([m.element for m in measurements], dtype=np.uint32),
            "value": pd.Series([m.value for m in measurements], dtype=np.float64),
            "std_dev": pd.Series([m.std_dev for m in measurements], dtype=np.float64),
            "side": pd.Series(sides, dtype=object),
        }
    )
    extra = [c for c in net.measurement.columns if c not in table.columns]
    for column in extra:
        table[column] = pd.Series([None] * len(table), dtype=net.measurement[column].dtype)
    net.measurement = table[list(net.measurement.columns) or list(table.columns)]


class SparseWLS(StateEstimator):
    """Gauss-Newton WLS on the sparse gain matrix G = HᵀWH, factorised as LDLᵀ in compiled code.

    The ordering and the symbolic factorisation depend only on which measurements there are, so
    they are computed once per measurement structure and topology (`gridmodel.gain`); every
    iteration refactorises G numerically at the current state (a few milliseconds at 10,000
    buses), which keeps Gauss-Newton's fast convergence: a warm start from the last cycle's state
    settles in two or three iterations.
    """

    kind = EstimatorKind.SPARSE

    def __init__(self, *, tolerance: float = 1e-6, max_iterations: int = 50) -> None:
        super().__init__(tolerance=tolerance, max_iterations=max_iterations)
        self._state: np.ndarray | None = None
        self._state_model: PpcModel | None = None
        self.factorisations = 0  # numeric factorisations
        self.analyses = 0  # orderings and symbolic factorisations (new measurement structure or topology)

    def _factorise(self, h_jac: sp.csr_matrix, weights: np.ndarray, model: PpcModel, key: tuple) -> GainFactor:
        from gridmodel.observability import unobservable_buses_message

        try:
            structure, analysed = gain_structure(model, key, h_jac, weights)
            self.analyses += analysed
            factor = structure.factorise(h_jac, weights)
        except (RuntimeError, SingularGainError) as exc:  # SuperLU's "Factor is exactly singular", or a pivot
            gain = (h_jac.T @ sp.diags(weights) @ h_jac).tocsc()
            buses, hint = unobservable_buses_message(model, gain)
            raise NotObservableError(f"the gain matrix is singular ({exc}): {hint}", buses) from exc
        self.factorisations += 1
        return factor

    def estimate(self, net: pp.pandapowerNet, measurements: Sequence[Measurement], *, warm: bool = True) -> Estimate:
        model, cm = self._prepare(net, measurements)
        t0 = time.perf_counter()
        w = cm.weights
        same_model = self._state_model is model
        x = self._state.copy() if warm and same_model and self._state is not None else initial_state(model)
        key = cm.structure_key()
        last_step = np.inf
        converged = False
        it = 0
        while it < self.max_iterations:
            v = voltages(model, x)
            h, h_jac = evaluate(model, cm, v)
            assert h_jac is not None
            factor = self._factorise(h_jac, w, model, key)
            dx = factor.solve(weighted_gradient(h_jac, w * (cm.z - h)))
            if not np.all(np.isfinite(dx)):
                raise NotConvergedError(
                    "the sparse WLS step is not finite; the gain matrix is ill-conditioned, "
                    "check σ values near zero and measurements on isolated buses"
                )
            step = float(np.max(np.abs(dx))) if len(dx) else 0.0
            if step > 0.35:  # damping as pandapower does, against divergence from far starts
                dx *= 0.35 / step
            x += dx
            it += 1
            last_step = step
            if step <= self.tolerance:
                converged = True
                break
        duration = time.perf_counter() - t0
        if not converged:
            self._state = None
            raise NotConvergedError(
                f"sparse WLS did not converge in {self.max_iterations} iterations (last step {last_step:.2e}) "
                f"with {len(cm.kind)} measurements; look for gross bad data or a wrong breaker state"
            )
        self._state, self._state_model = x.copy(), model
        v = voltages(model, x)
        est = _make_estimate(self.kind, net, model, measurements, cm, v, it, duration)
        est.extra["factorisations"] = self.factorisations
        return est


def make_estimator(kind: EstimatorKind | str, *, tolerance: float = 1e-6, max_iterations: int = 50) -> StateEstimator:
    engine = PandapowerWLS if EstimatorKind(kind) is EstimatorKind.PANDAPOWER else SparseWLS
    return engine(tolerance=tolerance, max_iterations=max_iterations)


__all__ = [
    "EstimationError",
    "Estimate",
    "EstimatorKind",
    "MeasurementResult",
    "NotConvergedError",
    "NotObservableError",
    "StateEstimator",
    "make_estimator",
    "state_of",
]
