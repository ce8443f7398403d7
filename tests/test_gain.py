"""The gain matrix factorisation (gridmodel/gain.py): the compiled LDLᵀ on a symbolic pattern
solves G·x = b as a dense solve does, on the golden cases and a meshed 118-bus grid; a vanishing
pivot names the state variable; an H of another structure is refused with the remedy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import scipy.sparse as sp

from gridmodel.estimator import EstimatorKind, make_estimator
from gridmodel.gain import GainStructure, SingularGainError
from gridmodel.measurements import Measurement
from gridmodel.mfunc import evaluate

GOLDEN = Path(__file__).parent / "golden"


def _golden_jacobian(name: str) -> tuple[sp.csr_matrix, np.ndarray]:
    case = json.loads((GOLDEN / name / "case.json").read_text())
    net = pp.from_json(str(GOLDEN / name / "network.json"))
    est = make_estimator(EstimatorKind.SPARSE).estimate(net, [Measurement(**m) for m in case["measurements"]])
    _, h = evaluate(est.model, est.compiled, est.voltages)
    assert h is not None
    return h, est.compiled.weights


def _meshed_jacobian() -> tuple[sp.csr_matrix, np.ndarray]:
    """IEEE 118 (meshed): every bus's V, P and Q and every line's P and Q at the from end."""
    net = pn.case118()
    pp.runpp(net)
    ms = [Measurement("v", "bus", int(b), None, float(v), 0.01) for b, v in net.res_bus.vm_pu.items()]
    for b in net.bus.index:
        ms += [
            Measurement("p", "bus", int(b), None, float(net.res_bus.at[b, "p_mw"]), 0.5),
            Measurement("q", "bus", int(b), None, float(net.res_bus.at[b, "q_mvar"]), 0.5),
        ]
    for ln in net.line.index:
        ms += [
            Measurement("p", "line", int(ln), "from", float(net.res_line.at[ln, "p_from_mw"]), 0.2),
            Measurement("q", "line", int(ln), "from", float(net.res_line.at[ln, "q_from_mvar"]), 0.2),
        ]
    est = make_estimator(EstimatorKind.SPARSE).estimate(net, ms)
    _, h = evaluate(est.model, est.compiled, est.voltages)
    assert h is not None
    return h, est.compiled.weights


@pytest.mark.parametrize("name", ["feeder_trafo", "ring_open_point", "feeder_bad_data", "meshed_118"])
def test_ldl_solves_the_gain_system_as_a_dense_solve_does(name: str) -> None:
    h, w = _meshed_jacobian() if name == "meshed_118" else _golden_jacobian(name)
    structure = GainStructure.analyse(h, w)
    factor = structure.factorise(h, w)
    gain = (h.T @ sp.diags(w) @ h).toarray()
    b = np.random.default_rng(1).normal(size=h.shape[1])
    x = factor.solve(b)
    # backward error: as small as a stable solver's, whatever G's condition number
    assert np.linalg.norm(gain @ x - b) <= 1e-9 * np.linalg.norm(gain) * np.linalg.norm(x)
    x_dense = np.linalg.solve(gain, b)
    cond = np.linalg.cond(gain)
    assert np.max(np.abs(x - x_dense)) <= max(1e-10, 1e-15 * cond) * np.max(np.abs(x_dense))
    # numeric refactorisation on the kept structure with other weights
    w2 = w * np.random.default_rng(2).uniform(0.5, 2.0, len(w))
    x2 = structure.factorise(h, w2).solve(b)
    np.testing.assert_allclose(x2, np.linalg.solve((h.T @ sp.diags(w2) @ h).toarray(), b), rtol=1e-6, atol=1e-9)


def test_a_state_variable_no_measurement_reaches_is_named() -> None:
    h, w = _golden_jacobian("feeder_trafo")
    structure = GainStructure.analyse(h, w)
    column = h.shape[1] - 1
    cut = sp.csr_matrix(h.copy())  # same structure, explicit zeros: no information on the variable
    cut.data[cut.indices == column] = 0.0
    with pytest.raises(SingularGainError, match=f"state variable {column}") as info:
        structure.factorise(cut, w)
    assert info.value.column == column


def test_a_jacobian_of_another_structure_is_refused_with_the_remedy() -> None:
    h, w = _golden_jacobian("feeder_trafo")
    structure = GainStructure.analyse(h, w)
    with pytest.raises(ValueError, match="analyse the new structure first"):
        structure.factorise(sp.csr_matrix(h[:-1]), w[:-1])
