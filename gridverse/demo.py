"""The demo: the whole stack on one machine, plus what only the demo can do: check each state
estimate against the simulator's truth (the composition root knows nothing of it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gridmodel.twin import CycleResult, Twin
from gridverse.stack import Stack


class DemoStack(Stack):
    """Every part; each converged estimate made while every device answers is compared, bus by
    bus, with the voltages the simulator computed (`voltage_errors`: the worst bus per cycle)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.voltage_errors: list[float] = []

    def _before_twin_start(self, twin: Twin) -> None:
        if self.simulator is not None:
            twin.on_cycle = self._check_against_truth

    def _check_against_truth(self, result: CycleResult) -> None:
        sim = self.simulator.sim if self.simulator is not None else None
        if sim is None or result.estimate is None or not self._telemetry_complete():
            return
        truth = sim.truth.res_bus.vm_pu
        est = result.estimate.res_bus.vm_pu.reindex(truth.index)
        diff = np.abs(est - truth).dropna()
        if len(diff):
            self.voltage_errors.append(float(diff.max()))

    def _telemetry_complete(self) -> bool:
        """Every device answered its last poll (an estimate without them is not a fair test)."""
        return self.gateway is not None and all(p.status.up for p in self.gateway.pollers)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        errors = self.voltage_errors
        out.setdefault("state_estimation", {}).update(
            checked_against_truth=len(errors),
            max_voltage_error_pu=max(errors) if errors else None,
            median_cycle_max_error_pu=float(np.median(errors)) if errors else None,
        )
        return out
