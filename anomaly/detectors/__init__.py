"""Detectors, one file each: every module in this package that defines a class decorated with
`@register` adds a detector; nothing else needs editing.

A detector is a class with a unique `name: ClassVar[str]` and `evaluate(snapshot, config) ->
list[Alarm]` (the `Detector` protocol in `base.py`). The rules shipped here are `limit`,
`residual`, `violation`, `comm_fail` and `stuck`.

A learned detector plugs in the same way: a module here whose class holds a fitted scikit-learn
estimator (loaded lazily from the model registry on the first `evaluate`, not in `__init__`),
turns the snapshot into a feature row per device, calls `score_samples` (lower = more abnormal)
and returns an `Alarm` with its own `name` as the rule for each row below its threshold.
"""

from __future__ import annotations

from functools import cache

from anomaly.config import AnomalyConfig
from anomaly.detectors.base import Detector, Residual, Snapshot, Violation, register, substation_of
from gridverse.plugins import import_plugins
from gridverse.schema import Alarm

__all__ = [
    "Detector",
    "DetectorError",
    "Residual",
    "Snapshot",
    "Violation",
    "all_detectors",
    "detector_classes",
    "register",
    "run_detectors",
    "substation_of",
]


class DetectorError(RuntimeError):
    """A detector raised: the message names it and its module."""


def detector_classes() -> dict[str, type[Detector]]:
    """Every registered detector class by name, after importing each module of this package."""
    import_plugins(__name__, __path__)
    from anomaly.detectors.base import _REGISTRY

    return dict(sorted(_REGISTRY.items()))


@cache
def all_detectors() -> tuple[Detector, ...]:
    """One instance of every registered detector, built once (a learned one keeps its model)."""
    return tuple(cls() for cls in detector_classes().values())


def run_detectors(
    snapshot: Snapshot, config: AnomalyConfig, detectors: tuple[Detector, ...] | None = None
) -> list[Alarm]:
    """The conditions every detector finds in the snapshot, in the registry's order."""
    out: list[Alarm] = []
    for detector in all_detectors() if detectors is None else detectors:
        try:
            out += detector.evaluate(snapshot, config)
        except Exception as exc:
            kind = type(detector)
            raise DetectorError(
                f"detector {detector.name!r} ({kind.__module__}.{kind.__qualname__}) failed: {exc!r}; "
                "fix or remove that module"
            ) from exc
    return out
