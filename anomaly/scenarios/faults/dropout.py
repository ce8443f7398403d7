"""Dropout: the point delivers nothing (missing samples) or zeros (a gateway that zero-fills)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, MeasurementFault, register


@register
class Dropout(MeasurementFault):
    name = "dropout"
    hours = (1.0, 6.0)

    def parameters(self, ctx: Any, rng: np.random.Generator, point: str) -> dict[str, Any]:
        return {"fill": str(rng.choice(["missing", "zeros"]))}

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        column[fault.start : fault.end + 1] = np.nan if fault.params["fill"] == "missing" else 0.0
