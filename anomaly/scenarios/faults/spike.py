"""Spike: one sample far off (a transmission glitch or an unfiltered transient)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, MeasurementFault, register


@register
class Spike(MeasurementFault):
    name = "spike"
    hours = (0.0, 0.0)  # one sample

    def parameters(self, ctx: Any, rng: np.random.Generator, point: str) -> dict[str, Any]:
        return {"sigmas": float(rng.choice([-1, 1]) * rng.uniform(20.0, 60.0))}

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        column[fault.start : fault.end + 1] += fault.params["sigmas"] * sigma
