"""The gain matrix G = HᵀWH of the WLS estimate, assembled and factorised as LDLᵀ in compiled code.

The structure of H depends only on which measurements there are (their kind and element), not on
their values or the state, so everything structural is done once per measurement structure and
topology (`GainStructure`, cached on the model):

- a fill-reducing ordering (SuperLU's minimum degree on AᵀA + A, taken from one factorisation);
- the pattern of the factor L from the elimination tree (`gridmodel.selinv`'s symbolic analysis,
  so the selected inversion reads the same arrays);
- for every pair of entries in a row of H, the position in L's storage where its product lands.

Each Gauss-Newton iteration then costs a scatter of w·hₚ·h_q into L's storage, a left-looking
numeric LDLᵀ on the known pattern and two triangular solves: a few milliseconds on a 10,000-bus
grid, where building HᵀWH with scipy and factorising it with SuperLU took tens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from gridmodel.selinv import SelectedInverse, _etree, _find, _symbolic, takahashi_positions

#: A pivot below this share of its diagonal entry means G is singular to working precision.
_PIVOT_SHARE = 1e-13


class SingularGainError(ValueError):
    """A pivot of the gain matrix vanished: some state variable is not determined by the measurements."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column  # in the original state ordering


@numba.njit(cache=True)
def _row_structure(n: int, colptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row view of the strictly lower pattern: for row i, the columns k < i with L[i, k] and its position."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for q in range(len(rows)):
        counts[rows[q] + 1] += 1
    rptr = np.cumsum(counts)
    rcol = np.empty(len(rows), dtype=np.int64)
    rpos = np.empty(len(rows), dtype=np.int64)
    fill = rptr[:-1].copy()
    for k in range(n):
        for q in range(colptr[k], colptr[k + 1]):
            i = rows[q]
            rcol[fill[i]] = k
            rpos[fill[i]] = q
            fill[i] += 1
    return rptr, rcol, rpos


@numba.njit(cache=True)
def _pair_positions(
    h_indptr: np.ndarray, h_indices: np.ndarray, perm: np.ndarray, colptr: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, int]:
    """Position in L's storage of every pair p < q of entries in each row of H (-1: same column)."""
    total = 0
    for r in range(len(h_indptr) - 1):
        c = h_indptr[r + 1] - h_indptr[r]
        total += c * (c - 1) // 2
    pos = np.empty(total, dtype=np.int64)
    missing = 0
    t = 0
    for r in range(len(h_indptr) - 1):
        for p in range(h_indptr[r], h_indptr[r + 1]):
            a = perm[h_indices[p]]
            for q in range(p + 1, h_indptr[r + 1]):
                b = perm[h_indices[q]]
                if a == b:
                    pos[t] = -1
                else:
                    lo, hi = (a, b) if a < b else (b, a)
                    pos[t] = _find(rows, colptr[lo], colptr[lo + 1], hi)
                    if pos[t] < 0:
                        missing += 1
                t += 1
    return pos, missing


@numba.njit(cache=True)
def _assemble(
    h_indptr: np.ndarray,
    h_indices: np.ndarray,
    h_data: np.ndarray,
    w: np.ndarray,
    perm: np.ndarray,
    pair_pos: np.ndarray,
    n: int,
    nnz: int,
) -> tuple[np.ndarray, np.ndarray]:
    """P·HᵀWH·Pᵀ as (strictly lower values on L's pattern, diagonal)."""
    lower = np.zeros(nnz)
    diag = np.zeros(n)
    t = 0
    for r in range(len(h_indptr) - 1):
        wr = w[r]
        for p in range(h_indptr[r], h_indptr[r + 1]):
            hp = wr * h_data[p]
            diag[perm[h_indices[p]]] += hp * h_data[p]
            for q in range(p + 1, h_indptr[r + 1]):
                where = pair_pos[t]
                if where >= 0:
                    lower[where] += hp * h_data[q]
                else:  # the same column twice in one row
                    diag[perm[h_indices[p]]] += 2.0 * hp * h_data[q]
                t += 1
    return lower, diag


@numba.njit(cache=True)
def _ldl(
    n: int,
    colptr: np.ndarray,
    rows: np.ndarray,
    rptr: np.ndarray,
    rcol: np.ndarray,
    rpos: np.ndarray,
    lower: np.ndarray,
    diag: np.ndarray,
    pivot_share: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Left-looking LDLᵀ on the symbolic pattern; `lower` holds A's strictly lower part and is
    overwritten with L. Returns (L values, D, first column with a vanishing pivot or -1)."""
    d = np.empty(n)
    work = np.zeros(n)
    for j in range(n):
        for q in range(colptr[j], colptr[j + 1]):
            work[rows[q]] = lower[q]
        dj = diag[j]
        for e in range(rptr[j], rptr[j + 1]):
            k = rcol[e]
            pos = rpos[e]
            ljk = lower[pos]
            t = ljk * d[k]
            dj -= ljk * t
            for q in range(pos + 1, colptr[k + 1]):
                work[rows[q]] -= lower[q] * t
        if not dj > pivot_share * diag[j]:
            return lower, d, j
        d[j] = dj
        for q in range(colptr[j], colptr[j + 1]):
            lower[q] = work[rows[q]] / dj
            work[rows[q]] = 0.0
    return lower, d, -1


@numba.njit(cache=True)
def _solve(
    colptr: np.ndarray, rows: np.ndarray, lvals: np.ndarray, d: np.ndarray, perm: np.ndarray, b: np.ndarray
) -> np.ndarray:
    n = len(d)
    y = np.empty(n)
    for i in range(n):
        y[perm[i]] = b[i]
    for j in range(n):
        yj = y[j]
        if yj != 0.0:
            for q in range(colptr[j], colptr[j + 1]):
                y[rows[q]] -= lvals[q] * yj
    for j in range(n):
        y[j] /= d[j]
    for j in range(n - 1, -1, -1):
        s = y[j]
        for q in range(colptr[j], colptr[j + 1]):
            s -= lvals[q] * y[rows[q]]
        y[j] = s
    out = np.empty(n)
    for i in range(n):
        out[i] = y[perm[i]]
    return out


@numba.njit(cache=True)
def _quadratic_forms(
    h_indptr: np.ndarray,
    h_indices: np.ndarray,
    h_data: np.ndarray,
    wanted: np.ndarray,
    perm: np.ndarray,
    pair_pos: np.ndarray,
    zlow: np.ndarray,
    zdiag: np.ndarray,
) -> np.ndarray:
    """h_iᵀ·Z·h_i for the wanted rows of H, Z symmetric on L's pattern, pairs at `pair_pos`."""
    m = len(h_indptr) - 1
    first = np.empty(m + 1, dtype=np.int64)  # each row's first pair in pair_pos
    first[0] = 0
    for r in range(m):
        c = h_indptr[r + 1] - h_indptr[r]
        first[r + 1] = first[r] + c * (c - 1) // 2
    out = np.empty(len(wanted))
    for t in range(len(wanted)):
        r = wanted[t]
        s = 0.0
        k = first[r]
        for p in range(h_indptr[r], h_indptr[r + 1]):
            hp = h_data[p]
            a = perm[h_indices[p]]
            s += hp * hp * zdiag[a]
            for q in range(p + 1, h_indptr[r + 1]):
                where = pair_pos[k]
                s += 2.0 * hp * h_data[q] * (zdiag[a] if where < 0 else zlow[where])
                k += 1
        out[t] = s
    return out


@numba.njit(cache=True)
def _weighted_gradient(
    h_indptr: np.ndarray, h_indices: np.ndarray, h_data: np.ndarray, wr: np.ndarray, n: int
) -> np.ndarray:
    """Hᵀ·(W·r)."""
    out = np.zeros(n)
    for r in range(len(h_indptr) - 1):
        v = wr[r]
        for p in range(h_indptr[r], h_indptr[r + 1]):
            out[h_indices[p]] += h_data[p] * v
    return out


def weighted_gradient(h_jac: sp.csr_matrix, wr: np.ndarray) -> np.ndarray:
    """Hᵀ·(W·r) for a CSR Jacobian."""
    return _weighted_gradient(
        h_jac.indptr.astype(np.int64, copy=False),
        h_jac.indices.astype(np.int64, copy=False),
        h_jac.data,
        np.ascontiguousarray(wr, dtype=np.float64),
        h_jac.shape[1],
    )


@dataclass(frozen=True)
class GainFactor:
    """P·G·Pᵀ = L·D·Lᵀ with L's strictly lower part on `structure`'s pattern."""

    structure: GainStructure
    lvals: np.ndarray
    d: np.ndarray

    def solve(self, b: np.ndarray) -> np.ndarray:
        s = self.structure
        return _solve(s.colptr, s.rows, self.lvals, self.d, s.perm, np.ascontiguousarray(b, dtype=np.float64))

    def explained_variance(self, h_jac: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """h_iᵀ·G⁻¹·h_i for the given rows of H (the H this factor's structure was analysed
        for), from a selected inversion of G on L's pattern (`gridmodel.selinv`)."""
        s = self.structure
        inverse = SelectedInverse.from_ldl(s.perm, s.colptr, s.rows, self.lvals, self.d, s.zpos)
        return _quadratic_forms(
            h_jac.indptr.astype(np.int64, copy=False),
            h_jac.indices.astype(np.int64, copy=False),
            h_jac.data,
            np.asarray(rows, dtype=np.int64),
            s.perm,
            s.pair_pos,
            inverse.zlow,
            inverse.zdiag,
        )


@dataclass(frozen=True)
class GainStructure:
    """Everything about G = HᵀWH that depends only on the structure of H (see the module docstring)."""

    n: int
    nnz_h: int
    perm: np.ndarray  # original state index → position in the factor
    colptr: np.ndarray  # strictly lower pattern of L, CSC, rows sorted
    rows: np.ndarray
    rptr: np.ndarray  # the same pattern by rows
    rcol: np.ndarray
    rpos: np.ndarray
    pair_pos: np.ndarray

    @functools.cached_property
    def zpos(self) -> np.ndarray:
        """Where the Takahashi sweep reads (`selinv.takahashi_positions`), computed on first use:
        only bad-data analysis needs it."""
        return takahashi_positions(self.n, self.colptr, self.rows)

    @classmethod
    def analyse(cls, h_jac: sp.csr_matrix, weights: np.ndarray) -> GainStructure:
        """Ordering and symbolic factorisation from one H. Raises RuntimeError (SuperLU's "exactly
        singular") when G has no ordering because it is singular."""
        n = h_jac.shape[1]
        gain = (h_jac.T @ sp.diags(weights) @ h_jac).tocsc()
        # SuperLU's minimum-degree ordering on the symmetric pattern; its numeric factor is dropped
        perm = np.asarray(
            splu(gain, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}).perm_c,
            dtype=np.int64,
        )
        ones = sp.csr_matrix((np.ones(h_jac.nnz), h_jac.indices, h_jac.indptr), shape=h_jac.shape)
        coo = (ones.T @ ones).tocoo()
        i, j = perm[coo.row], perm[coo.col]
        sym = sp.csc_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n))
        sym.sum_duplicates()
        sym.sort_indices()
        indptr, indices = sym.indptr.astype(np.int64), sym.indices.astype(np.int64)
        colptr, rows = _symbolic(n, indptr, indices, _etree(n, indptr, indices))
        rptr, rcol, rpos = _row_structure(n, colptr, rows)
        pair_pos, missing = _pair_positions(
            h_jac.indptr.astype(np.int64), h_jac.indices.astype(np.int64), perm, colptr, rows
        )
        if missing:  # cannot happen for a symbolic pattern built from the same H
            raise AssertionError(f"{missing} entries of HᵀWH outside the factor's pattern")
        return cls(n, h_jac.nnz, perm, colptr, rows, rptr, rcol, rpos, pair_pos)

    def factorise(self, h_jac: sp.csr_matrix, weights: np.ndarray) -> GainFactor:
        """Numeric LDLᵀ of HᵀWH for an H with this structure; SingularGainError on a vanishing pivot."""
        if h_jac.nnz != self.nnz_h or h_jac.shape[1] != self.n:
            raise ValueError(
                f"H has {h_jac.nnz} entries and {h_jac.shape[1]} columns, the structure {self.nnz_h} and "
                f"{self.n}: analyse the new structure first"
            )
        lower, diag = _assemble(
            h_jac.indptr.astype(np.int64, copy=False),
            h_jac.indices.astype(np.int64, copy=False),
            h_jac.data,
            np.ascontiguousarray(weights, dtype=np.float64),
            self.perm,
            self.pair_pos,
            self.n,
            len(self.rows),
        )
        lvals, d, bad = _ldl(self.n, self.colptr, self.rows, self.rptr, self.rcol, self.rpos, lower, diag, _PIVOT_SHARE)
        if bad >= 0:
            column = int(np.flatnonzero(self.perm == bad)[0])
            raise SingularGainError(f"the gain matrix is singular (pivot of state variable {column})", column)
        return GainFactor(self, lvals, d)


_CACHE_ATTR = "_gain_structures"
_CACHE_SIZE = 4  # the cycle's structure and the few that removing bad data produces


def gain_structure(model: object, key: tuple, h_jac: sp.csr_matrix, weights: np.ndarray) -> tuple[GainStructure, bool]:
    """The structure for `key` (measurement kinds and rows) on this model and whether it was
    analysed now; kept on the model object, so a new topology starts afresh."""
    cache: dict[tuple, GainStructure] = model.__dict__.setdefault(_CACHE_ATTR, {})
    hit = cache.get(key)
    if hit is not None and hit.nnz_h == h_jac.nnz and hit.n == h_jac.shape[1]:
        cache[key] = cache.pop(key)  # most recently used last
        return hit, False
    structure = GainStructure.analyse(h_jac, weights)
    cache[key] = structure
    while len(cache) > _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    return structure, True


__all__ = ["GainFactor", "GainStructure", "SingularGainError", "gain_structure", "weighted_gradient"]
