"""Selected inversion of a sparse symmetric positive definite matrix (Takahashi equations).

Bad-data analysis needs diag(H·G⁻¹·Hᵀ) for every measurement, G = HᵀWH. One triangular solve
per measurement costs tens of seconds on a 10,000-bus grid; but h_iᵀ·G⁻¹·h_i only reads the
entries G⁻¹[j, k] for pairs (j, k) of columns that row i of H touches, and every such pair is
a nonzero of G, hence of the pattern of its Cholesky factor. The Takahashi equations give G⁻¹
on exactly that pattern from the factor P·G·Pᵀ = L·D·Lᵀ, column by column from the last,
in O(Σ_j |L_j|²) work:

    Z[i, j] = −Σ_{k ∈ L_j} L[k, j]·Z[i, k]         (i ∈ L_j, the rows below j in column j)
    Z[j, j] = 1/D[j] − Σ_{k ∈ L_j} L[k, j]·Z[k, j]

The estimator's own LDLᵀ (`gridmodel.gain`, on a symbolic pattern kept per measurement
structure) is used as it is (`SelectedInverse.from_ldl`); a SuperLU factor (scipy) with a
symmetric permutation and diagonal pivots can be used too. Either way the pattern is computed
symbolically (elimination tree) from the structure of H, so entries that happen to be
numerically zero in the factor cannot leave a needed entry of G⁻¹ out.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import SuperLU, splu


class SelectedInversionError(ValueError):
    """The factor cannot be used for a selected inversion; the message says why and what to do."""


def factorise_symmetric(gain: sp.spmatrix) -> SuperLU:
    """Sparse LDLᵀ-shaped LU of an SPD matrix: symmetric fill-reducing ordering, diagonal pivots
    (no row interchanges, which an SPD matrix does not need), so U = D·Lᵀ."""
    return splu(
        sp.csc_matrix(gain),
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )


@numba.njit(cache=True)
def _etree(n: int, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Elimination tree of a symmetric pattern (CSC, both triangles), with path compression."""
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        for p in range(indptr[k], indptr[k + 1]):
            i = indices[p]
            while i != -1 and i < k:
                nxt = ancestor[i]
                ancestor[i] = k
                if nxt == -1:
                    parent[i] = k
                i = nxt
    return parent


@numba.njit(cache=True)
def _symbolic(n: int, indptr: np.ndarray, indices: np.ndarray, parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pattern of the strictly lower Cholesky factor in CSC, rows sorted (row subtrees)."""
    mark = np.full(n, -1, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    # first pass: column counts
    for i in range(n):
        mark[i] = i
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            while k < i and mark[k] != i:
                counts[k] += 1
                mark[k] = i
                k = parent[k]
    colptr = np.zeros(n + 1, dtype=np.int64)
    for j in range(n):
        colptr[j + 1] = colptr[j] + counts[j]
    rows = np.empty(colptr[n], dtype=np.int64)
    fill = colptr[:-1].copy()
    mark[:] = -1
    for i in range(n):  # rows visited in increasing order: each column's rows come out sorted
        mark[i] = i
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            while k < i and mark[k] != i:
                rows[fill[k]] = i
                fill[k] += 1
                mark[k] = i
                k = parent[k]
    return colptr, rows


@numba.njit(cache=True)
def _find(rows: np.ndarray, lo: int, hi: int, target: int) -> int:
    """Position of target in the sorted rows[lo:hi], -1 when absent."""
    while lo < hi:
        mid = (lo + hi) // 2
        r = rows[mid]
        if r == target:
            return mid
        if r < target:
            lo = mid + 1
        else:
            hi = mid
    return -1


@numba.njit(cache=True)
def _scatter(
    n: int,
    colptr: np.ndarray,
    rows: np.ndarray,
    l_indptr: np.ndarray,
    l_indices: np.ndarray,
    l_data: np.ndarray,
) -> tuple[np.ndarray, int]:
    """The factor's strictly lower values on the symbolic pattern; returns (values, misplaced)."""
    values = np.zeros(len(rows))
    misplaced = 0
    for j in range(n):
        for p in range(l_indptr[j], l_indptr[j + 1]):
            i = l_indices[p]
            if i <= j:
                continue
            q = _find(rows, colptr[j], colptr[j + 1], i)
            if q < 0:
                if l_data[p] != 0.0:
                    misplaced += 1
            else:
                values[q] = l_data[p]
    return values, misplaced


@numba.njit(cache=True)
def _z_at(colptr: np.ndarray, rows: np.ndarray, zlow: np.ndarray, zdiag: np.ndarray, a: int, b: int) -> float:
    if a == b:
        return zdiag[a]
    if a < b:
        a, b = b, a
    q = _find(rows, colptr[b], colptr[b + 1], a)
    if q < 0:
        return np.nan  # outside the factor's pattern: not computed
    return zlow[q]


@numba.njit(cache=True)
def takahashi_positions(n: int, colptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each column j and each pair (a, b) of its entries, where Z[rows[a], rows[b]] is stored:
    a position in the lower values, or -(i + 1) for the diagonal entry Z[i, i]. Computed once per
    pattern, it takes the searches out of the Takahashi sweep (`_takahashi`)."""
    total = 0
    for j in range(n):
        c = colptr[j + 1] - colptr[j]
        total += c * c
    out = np.empty(total, dtype=np.int64)
    t = 0
    for j in range(n):
        lo, hi = colptr[j], colptr[j + 1]
        for a in range(lo, hi):
            for b in range(lo, hi):
                i, k = rows[a], rows[b]
                if i == k:
                    out[t] = -(i + 1)
                else:
                    if i < k:
                        i, k = k, i
                    out[t] = _find(rows, colptr[k], colptr[k + 1], i)
                t += 1
    return out


@numba.njit(cache=True)
def _takahashi(
    n: int, colptr: np.ndarray, rows: np.ndarray, lvals: np.ndarray, diag: np.ndarray, zpos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Z = G⁻¹ on L's pattern by the Takahashi equations (module doc), column by column from the
    last; `zpos` (from `takahashi_positions`) says where each entry it reads is stored."""
    zlow = np.zeros(len(rows))
    zdiag = np.zeros(n)
    start = np.empty(n + 1, dtype=np.int64)
    start[0] = 0
    for j in range(n):
        c = colptr[j + 1] - colptr[j]
        start[j + 1] = start[j] + c * c
    for j in range(n - 1, -1, -1):
        lo, hi = colptr[j], colptr[j + 1]
        t = start[j]
        for a in range(lo, hi):
            s = 0.0
            for b in range(lo, hi):
                where = zpos[t]
                s += lvals[b] * (zdiag[-where - 1] if where < 0 else zlow[where])
                t += 1
            zlow[a] = -s
        s = 0.0
        for b in range(lo, hi):
            s += lvals[b] * zlow[b]
        zdiag[j] = 1.0 / diag[j] - s
    return zlow, zdiag


@numba.njit(cache=True)
def _quadratic_forms(
    h_indptr: np.ndarray,
    h_indices: np.ndarray,
    h_data: np.ndarray,
    rows_wanted: np.ndarray,
    perm: np.ndarray,
    colptr: np.ndarray,
    rows: np.ndarray,
    zlow: np.ndarray,
    zdiag: np.ndarray,
) -> np.ndarray:
    out = np.empty(len(rows_wanted))
    for t in range(len(rows_wanted)):
        r = rows_wanted[t]
        s = 0.0
        for p in range(h_indptr[r], h_indptr[r + 1]):
            a = perm[h_indices[p]]
            s += h_data[p] * h_data[p] * zdiag[a]
            for q in range(p + 1, h_indptr[r + 1]):
                s += 2.0 * h_data[p] * h_data[q] * _z_at(colptr, rows, zlow, zdiag, a, perm[h_indices[q]])
        out[t] = s
    return out


class SelectedInverse:
    """G⁻¹ on the pattern of G's Cholesky factor, from a SuperLU factor of G.

    `pattern` is a sparse matrix whose structure is (at least) G's: pass |H|ᵀ|H| built from H's
    stored structure so pairs a measurement row touches are covered even where G's value
    happens to cancel to zero."""

    def __init__(self, factor: SuperLU, pattern: sp.spmatrix) -> None:
        n = factor.shape[0]
        perm_r, perm_c = np.asarray(factor.perm_r), np.asarray(factor.perm_c)
        if not np.array_equal(perm_r, perm_c):
            raise SelectedInversionError(
                "the LU factor pivoted off the diagonal (row and column permutations differ); "
                "factorise the gain matrix with gridmodel.selinv.factorise_symmetric"
            )
        self.perm = perm_c.astype(np.int64)  # original index → factor index
        structure = sp.csc_matrix(pattern, copy=True)
        structure.data = np.ones_like(structure.data)
        # B = P·pattern·Pᵀ with B[perm[i], perm[j]] = pattern[i, j]; symmetrised, sorted CSC
        coo = structure.tocoo()
        i, j = self.perm[coo.row], self.perm[coo.col]
        sym = sp.csc_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
        sym.sum_duplicates()
        sym.sort_indices()
        indptr, indices = sym.indptr.astype(np.int64), sym.indices.astype(np.int64)
        parent = _etree(n, indptr, indices)
        self.colptr, self.rows = _symbolic(n, indptr, indices, parent)
        lower = sp.csc_matrix(factor.L)
        lower.sort_indices()
        lvals, misplaced = _scatter(
            n,
            self.colptr,
            self.rows,
            lower.indptr.astype(np.int64),
            lower.indices.astype(np.int64),
            lower.data.astype(np.float64),
        )
        if misplaced:
            raise SelectedInversionError(
                f"{misplaced} factor entries lie outside the symbolic pattern; the pattern passed "
                "does not cover the factorised matrix (build it from the same H)"
            )
        diag = np.asarray(factor.U.diagonal(), dtype=np.float64)
        if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
            raise SelectedInversionError(
                "the gain matrix is not positive definite (a pivot ≤ 0); check for unobservable "
                "buses or σ values near zero"
            )
        zpos = takahashi_positions(n, self.colptr, self.rows)
        self.zlow, self.zdiag = _takahashi(n, self.colptr, self.rows, lvals, diag, zpos)
        self.n = n

    @classmethod
    def from_ldl(
        cls,
        perm: np.ndarray,
        colptr: np.ndarray,
        rows: np.ndarray,
        lvals: np.ndarray,
        d: np.ndarray,
        zpos: np.ndarray | None = None,
    ) -> SelectedInverse:
        """From an LDLᵀ factor already on a symbolic pattern (`gridmodel.gain.GainFactor`): no
        ordering, pattern or scatter to redo, only the Takahashi sweep (`zpos`, from
        `takahashi_positions` on the same pattern, is computed here unless given)."""
        if np.any(d <= 0) or not np.all(np.isfinite(d)):
            raise SelectedInversionError(
                "the gain matrix is not positive definite (a pivot ≤ 0); check for unobservable "
                "buses or σ values near zero"
            )
        self = cls.__new__(cls)
        self.perm, self.colptr, self.rows, self.n = perm, colptr, rows, len(d)
        if zpos is None:
            zpos = takahashi_positions(len(d), colptr, rows)
        self.zlow, self.zdiag = _takahashi(len(d), colptr, rows, lvals, d, zpos)
        return self

    def quadratic_forms(self, h: sp.spmatrix, rows: np.ndarray | None = None) -> np.ndarray:
        """h_iᵀ·G⁻¹·h_i for the given rows of h (all by default), from the selected entries."""
        h_csr = sp.csr_matrix(h)
        wanted = np.arange(h_csr.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        return _quadratic_forms(
            h_csr.indptr.astype(np.int64),
            h_csr.indices.astype(np.int64),
            h_csr.data.astype(np.float64),
            wanted,
            self.perm,
            self.colptr,
            self.rows,
            self.zlow,
            self.zdiag,
        )

    def diagonal(self) -> np.ndarray:
        """diag(G⁻¹) in the original ordering."""
        return self.zdiag[self.perm]

    def entry(self, a: int, b: int) -> float:
        """G⁻¹[a, b] (original ordering); NaN when the pair is outside the factor's pattern."""
        return float(_z_at(self.colptr, self.rows, self.zlow, self.zdiag, int(self.perm[a]), int(self.perm[b])))


def gain_pattern(h: sp.spmatrix) -> sp.csc_matrix:
    """|H|ᵀ|H| from H's stored structure: the structure of G = HᵀWH without numerical cancellation."""
    s = sp.csr_matrix(h, copy=True)
    s.data = np.ones_like(s.data)
    return (s.T @ s).tocsc()


__all__ = ["SelectedInverse", "SelectedInversionError", "factorise_symmetric", "gain_pattern", "takahashi_positions"]
