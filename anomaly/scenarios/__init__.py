"""Labelled anomaly scenarios from the simulator (`gridverse anomaly scenarios`).

`generate(ScenarioParams(grid=..., days=..., seed=...), out)` runs a time-series power flow,
derives the telemetry of a realistic metering plan with each meter's noise, injects the fault
kinds of `anomaly.scenarios.faults` with exact windows, and writes OUT/train, OUT/validation and
OUT/test in the interchange format of `anomaly.dataset`.
"""

from anomaly.scenarios.generator import GeneratedScenario, ScenarioError, ScenarioParams, generate

__all__ = ["GeneratedScenario", "ScenarioError", "ScenarioParams", "generate"]
