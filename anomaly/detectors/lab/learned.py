"""Learned detector: an IsolationForest on per-point physical features (incl. physics residuals).

Why IsolationForest from scikit-learn rather than PyOD or river: it is already a dependency,
keeps scikit-learn's estimator contract natively (clone, get_params, joblib pickles), trains in
seconds on millions of rows with subsampling, scores vectorised, and needs no scaling or
distribution assumption — our features (robust z, run lengths, residuals in σ) are heavy-tailed.
PyOD would add a large dependency tree for the same forest (its IForest wraps scikit-learn's);
river's online half-space trees suit streams that change their distribution, which per-point
features normalised against each point's own history already absorb.

Rows are per point and sample, columns `anomaly.features.FEATURES`; nothing ties a model to one
grid's columns, so a forest fitted on one grid scores another's points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted, validate_data


class LearnedDetector(OutlierMixin, BaseEstimator):
    """IsolationForest wrapper; `contamination` sets the training-score quantile used as offset."""

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int = 512,
        contamination: float = 0.001,
        max_train_rows: int = 200_000,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.max_train_rows = max_train_rows
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> LearnedDetector:
        X = validate_data(self, X, dtype=np.float64)
        rng = np.random.default_rng(self.random_state)
        if len(X) > self.max_train_rows:
            X = X[rng.choice(len(X), self.max_train_rows, replace=False)]
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(X)),
            random_state=self.random_state,
        ).fit(X)
        scores = self.forest_.score_samples(X)
        self.offset_ = float(np.quantile(scores, self.contamination))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.forest_.score_samples(X)

    def decision_function(self, X: Any) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        return np.where(self.decision_function(X) < 0, -1, 1)
