"""Drift: the reading walks away linearly from the truth (ageing sensor, CT saturation creeping in)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, MeasurementFault, register


@register
class Drift(MeasurementFault):
    name = "drift"
    hours = (12.0, 48.0)

    def parameters(self, ctx: Any, rng: np.random.Generator, point: str) -> dict[str, Any]:
        return {"final_sigmas": float(rng.choice([-1, 1]) * rng.uniform(10.0, 30.0))}

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        n = fault.end - fault.start + 1
        column[fault.start : fault.end + 1] += np.linspace(1.0 / n, 1.0, n) * fault.params["final_sigmas"] * sigma
