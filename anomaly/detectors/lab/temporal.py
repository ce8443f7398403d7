"""Temporal detector: robust statistics of each point against its own recent past and daily profile.

X holds per-point feature rows from `anomaly.features.point_features` (one row per point and
sample; columns in `FEATURES` order, or any numeric matrix). `fit` learns each column's robust
centre (median) and spread (1.4826·MAD, floored at `min_scale`) on data that is mostly clean; a
row's score is minus its largest robust z over the columns, so a stuck run, a spike, a drift or
a dropout all push it down. Vectorised: scoring is a few numpy operations per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class TemporalDetector(OutlierMixin, BaseEstimator):
    """Robust z over feature columns. `contamination`: the share of training rows `predict` calls
    abnormal (as IsolationForest's), or "auto" to call abnormal any row whose z exceeds `threshold`."""

    def __init__(self, threshold: float = 6.0, min_scale: float = 1.0, contamination: float | str = 0.001) -> None:
        self.threshold = threshold
        self.min_scale = min_scale
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> TemporalDetector:
        X = validate_data(self, X, dtype=np.float64)
        self.center_ = np.median(X, axis=0)
        mad = 1.4826 * np.median(np.abs(X - self.center_), axis=0)
        self.scale_ = np.maximum(mad, self.min_scale)
        if self.contamination == "auto":
            self.offset_ = -float(self.threshold)
        else:
            worst = -(np.abs(X - self.center_) / self.scale_).max(axis=1)
            self.offset_ = float(np.quantile(worst, float(self.contamination)))
        return self

    def robust_z(self, X: Any) -> np.ndarray:
        """|x − centre| / scale per column."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.abs(X - self.center_) / self.scale_

    def score_samples(self, X: Any) -> np.ndarray:
        return -self.robust_z(X).max(axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        return np.where(self.decision_function(X) < 0, -1, 1)
