"""Stuck value: the meter repeats its last reading (frozen transducer or gateway cache)."""

from __future__ import annotations

import numpy as np

from anomaly.scenarios.faults.base import Fault, MeasurementFault, register


@register
class Stuck(MeasurementFault):
    name = "stuck"
    hours = (2.0, 12.0)

    def apply(self, fault: Fault, column: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
        held = column[fault.start - 1] if fault.start > 0 else column[fault.start]
        column[fault.start : fault.end + 1] = held
