"""Selected inversion (gridmodel.selinv): the residual covariance diagonal it gives for every
measurement equals the one from a dense inverse of the gain matrix, on the golden cases and on a
meshed 1,354-bus grid, so the largest-normalised-residual test can cover every measurement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import scipy.sparse as sp

from gridmodel.baddata import normalised_residuals, residual_variance
from gridmodel.estimator import Estimate, EstimatorKind, make_estimator
from gridmodel.measurements import Measurement
from gridmodel.mfunc import evaluate
from gridmodel.selinv import SelectedInverse, SelectedInversionError, factorise_symmetric, gain_pattern

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str) -> tuple[pp.pandapowerNet, list[Measurement]]:
    case = json.loads((GOLDEN / name / "case.json").read_text())
    return pp.from_json(str(GOLDEN / name / "network.json")), [Measurement(**m) for m in case["measurements"]]


def _dense_shares(est: Estimate, *, qr: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Ω_ii/σ_i² two dense ways: 1 − w_i·h_iᵀ·G⁻¹·h_i with G inverted densely (the textbook
    formula), and 1 − ‖Q_i‖² from a thin QR of W^½·H (orthogonal, so it does not square the
    condition number: the accurate reference; skipped on the large grid, where it is slow)."""
    _, h_jac = evaluate(est.model, est.compiled, est.voltages)
    h = sp.csr_matrix(h_jac)
    w = est.compiled.weights
    gain = (h.T @ sp.diags(w) @ h).toarray()
    inverse = 1.0 - w * np.asarray(h.multiply(h @ np.linalg.inv(gain)).sum(axis=1)).ravel()
    if not qr:
        return inverse, inverse
    q, _ = np.linalg.qr(np.sqrt(w)[:, None] * h.toarray())
    return inverse, 1.0 - np.sum(q**2, axis=1)


def _condition(est: Estimate) -> float:
    _, h_jac = evaluate(est.model, est.compiled, est.voltages)
    h = sp.csr_matrix(h_jac)
    return float(np.linalg.cond((h.T @ sp.diags(est.compiled.weights) @ h).toarray()))


def _assert_equal_to_dense(est: Estimate, *, qr_reference: bool = True) -> None:
    sigma2 = est.compiled.sigma**2
    got = residual_variance(est)
    assert np.all(np.isfinite(got)), "every compiled row, pseudo and virtual ones included, gets Ω_ii"
    inverse, qr = _dense_shares(est, qr=qr_reference)
    share = got / sigma2
    # Within 1e-8 of the dense result (as a share of each meter's variance, what the normalised
    # residual depends on), or within κ(G)·ε where the gain matrix is so ill-conditioned
    # (ring_open_point: κ ≈ 2e9) that no method going through G = HᵀWH, the dense inverse
    # included, is more accurate than that (the QR value does not go through G).
    tolerance = max(1e-8, _condition(est) * np.finfo(float).eps) if qr_reference else 1e-8
    assert np.max(np.abs(share - qr)) <= tolerance
    assert np.max(np.abs(share - inverse)) <= 2 * tolerance  # and to the textbook dense inverse
    # the normalised residuals follow: relative difference ≤ ½·tolerance/share
    rn = normalised_residuals(est)
    ok = qr > 1e-6
    r = est.compiled.z - evaluate(est.model, est.compiled, est.voltages, jacobian=False)[0]
    dense_rn = r[ok] / np.sqrt(qr[ok] * sigma2[ok])
    assert np.all(np.abs(rn[ok] - dense_rn) <= tolerance / qr[ok] * np.abs(dense_rn) + 1e-12)
    assert np.isnan(rn[~ok]).all()  # critical: no normalised residual


@pytest.mark.parametrize("name", ["feeder_trafo", "ring_open_point", "feeder_bad_data"])
def test_residual_variance_equals_dense_inverse_on_golden_cases(name: str) -> None:
    net, measurements = _golden(name)
    est = make_estimator(EstimatorKind.SPARSE).estimate(net, measurements, warm=False)
    _assert_equal_to_dense(est)


def _metered_case1354() -> tuple[pp.pandapowerNet, list[Measurement]]:
    """PEGASE 1,354-bus meshed grid, metered from a power flow: V and P/Q injection at every bus
    (injections of buses without units act as pseudo-measurements, σ 10× larger) and P/Q at the
    from end of every third line, with seeded noise."""
    net = pn.case1354pegase()
    pp.runpp(net)
    rng = np.random.default_rng(11)
    out: list[Measurement] = []
    for b, row in net.res_bus.iterrows():
        out.append(Measurement("v", "bus", int(b), None, row.vm_pu + rng.normal(0, 0.004), 0.004, "rtu", f"v{b}"))
        for what, col in (("p", "p_mw"), ("q", "q_mvar")):
            sd = 0.5
            out.append(Measurement(what, "bus", int(b), None, row[col] + rng.normal(0, sd), sd, pseudo=True))
    for ln in net.line.index[::3]:
        for what, col in (("p", "p_from_mw"), ("q", "q_from_mvar")):
            value = net.res_line.at[ln, col] + rng.normal(0, 0.2)
            out.append(Measurement(what, "line", int(ln), "from", value, 0.2, "rtu", f"{what}{ln}"))
    return net, out


def test_residual_variance_equals_dense_inverse_on_a_1354_bus_meshed_grid() -> None:
    net, measurements = _metered_case1354()
    est = make_estimator(EstimatorKind.SPARSE).estimate(net, measurements, warm=False)
    assert est.model.n_bus >= 1000
    _assert_equal_to_dense(est, qr_reference=False)


def test_selected_entries_cover_every_pair_a_row_touches() -> None:
    """Every G⁻¹[j, k] that a row of H reads is on the factor's pattern and equals the dense one."""
    net, measurements = _golden("feeder_trafo")
    est = make_estimator(EstimatorKind.SPARSE).estimate(net, measurements, warm=False)
    _, h_jac = evaluate(est.model, est.compiled, est.voltages)
    h = sp.csr_matrix(h_jac)
    gain = (h.T @ sp.diags(est.compiled.weights) @ h).tocsc()
    sel = SelectedInverse(factorise_symmetric(gain), gain_pattern(h))
    dense = np.linalg.inv(gain.toarray())
    np.testing.assert_allclose(sel.diagonal(), np.diag(dense), rtol=1e-8)
    for i in range(h.shape[0]):
        cols = h.indices[h.indptr[i] : h.indptr[i + 1]]
        for a in cols:
            for b in cols:
                assert sel.entry(a, b) == pytest.approx(dense[a, b], rel=1e-8, abs=1e-12 * abs(dense).max())


def test_a_factor_that_pivoted_off_the_diagonal_is_refused_with_the_remedy() -> None:
    gain = sp.csc_matrix(np.array([[1e-3, 1.0], [1.0, 2e3]]))
    from scipy.sparse.linalg import splu

    factor = splu(gain, permc_spec="NATURAL", diag_pivot_thresh=1.0)
    assert not np.array_equal(factor.perm_r, factor.perm_c)
    with pytest.raises(SelectedInversionError, match="factorise_symmetric"):
        SelectedInverse(factor, gain)
