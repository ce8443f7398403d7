"""Calibration bias: a constant offset after a bad recalibration or a wrong CT/VT ratio setting."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, MeasurementFault, register


@register
class Bias(MeasurementFault):
    name = "bias"
    hours = (6.0, 48.0)

    def parameters(self, ctx: Any, rng: np.random.Generator, point: str) -> dict[str, Any]:
        return {"sigmas": float(rng.choice([-1, 1]) * rng.uniform(8.0, 20.0))}

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        column[fault.start : fault.end + 1] += fault.params["sigmas"] * sigma
