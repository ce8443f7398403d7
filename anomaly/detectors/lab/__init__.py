"""The anomaly lab's detectors: scikit-learn outlier estimators (lower `score_samples` = more
abnormal, `predict` −1 for an anomaly), used offline by `anomaly.pipeline.LabPipeline`.

- `physics.PhysicsDetector`: the twin's WLS estimator and bad-data test on each time step;
- `temporal.TemporalDetector`: robust statistics of each point against its recent past and its
  daily profile (features from `anomaly.features`);
- `learned.LearnedDetector`: IsolationForest on the per-point physical features.

This sub-package registers no live rule (the registry imports it and finds nothing to register);
a live learned detector plugs in as the package docstring of `anomaly.detectors` says.
"""
