"""What every detector sees and promises: the `Snapshot` of one evaluation, the `Detector`
protocol, and the `register` decorator that puts a detector class in the registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol, TypeVar, runtime_checkable

from anomaly.config import AnomalyConfig
from gridverse.points import Point
from gridverse.schema import Alarm, placements

if TYPE_CHECKING:
    from gridverse.config import Settings, SiteConfig


class Residual(NamedTuple):
    """One telemetered reading in the twin's newest cycle."""

    device: str
    point: str
    normalised: float  # normalised residual (or residual in sigmas when the test did not run)
    measured: float
    suspect: bool  # identified as bad data by the largest-normalised-residual test


class Violation(NamedTuple):
    """One limit the twin's newest estimate breaks."""

    element: str
    kind: str  # voltage, loading
    value: float
    limit: float


@dataclass(frozen=True)
class Snapshot:
    """Everything one evaluation knows: the latest points, each analogue point's recent values,
    the twin's newest residuals and violations, and which substation each device belongs to."""

    points: Sequence[Point] = ()
    history: Mapping[tuple[str, str], Sequence[float]] = field(default_factory=dict)  # (device, point) → values
    residuals: Sequence[Residual | tuple[str, str, float, float, bool]] = ()
    violations: Sequence[Violation | tuple[str, str, float, float]] = ()
    substations: Mapping[str, str] = field(default_factory=dict)  # device or sensor → substation
    #: (device, point) → the reading's resolution in its SI unit (register scale, or its reporting
    #: deadband); absent or 0 for a continuous (floating-point) reading
    resolution: Mapping[tuple[str, str], float] = field(default_factory=dict)
    #: the alarms raised now, by (rule, device, point): a rule's hysteresis holds these
    active: frozenset[tuple[str, str, str]] = frozenset()

    @classmethod
    def of(
        cls,
        settings: Settings,
        points: Sequence[Point] = (),
        history: Mapping[tuple[str, str], Sequence[float]] | None = None,
        residuals: Sequence[Residual | tuple[str, str, float, float, bool]] = (),
        violations: Sequence[Violation | tuple[str, str, float, float]] = (),
        active: frozenset[tuple[str, str, str]] = frozenset(),
    ) -> Snapshot:
        """A snapshot for the configured site (its devices and sensors give the substations, their
        profiles each reading's resolution)."""
        return cls(
            points,
            history or {},
            residuals,
            violations,
            substation_of(settings.site),
            resolution_of(settings),
            frozenset(active),
        )

    def suppressed(self) -> dict[str, str]:
        """Devices whose alarms are suppressed by design now (device → why): a bay whose breaker
        reads open (its feeder is dead on purpose, its readings are expected to sit at zero)."""
        return {
            p.device: f"breaker {p.name} of {p.device} is open"
            for p in self.points
            if p.name.startswith("XCBR") and p.name.endswith(".Pos") and p.value is not None and p.value == 0
        }


_FLOAT_TYPES = {"f32", "f64"}


def resolution_of(settings: Settings) -> dict[tuple[str, str], float]:
    """(device, point) → the resolution of its reading in SI units: an integer register's scale
    (so a feeder current in 0.1 A steps has 0.1), or its reporting deadband when larger. Floating-
    point registers and scale-factor registers (SunSpec) have none listed."""
    out: dict[tuple[str, str], float] = {}
    profiles = getattr(settings, "profiles", {}) or {}
    for sub in settings.site.substations:
        for dev in sub.devices:
            profile = profiles.get(dev.profile)
            for pt in getattr(profile, "points", ()):
                step = 0.0
                if str(pt.type) not in _FLOAT_TYPES and pt.scale_register is None:
                    step = abs(pt.scale) * pt.si_factor
                if pt.deadband:
                    step = max(step, pt.deadband)
                if step > 0:
                    out[(dev.name, pt.name)] = step
    return out


def substation_of(site: SiteConfig) -> dict[str, str]:
    """Device or sensor name → its substation, for every device and sensor of the site."""
    return {name: at.substation for name, at in placements(site).items()}


@runtime_checkable
class Detector(Protocol):
    """A detector turns one snapshot into the conditions it finds, as alarms.

    It returns every condition present now, every time (the alarm book raises and clears), and
    keeps no logic in `__init__`: the registry builds it with no arguments."""

    name: ClassVar[str]

    def evaluate(self, snapshot: Snapshot, config: AnomalyConfig) -> list[Alarm]: ...


_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type)


def register(cls: D) -> D:
    """Class decorator: add a detector to the registry under its `name` (names are unique)."""
    name = getattr(cls, "name", None)
    name = str(name) if isinstance(name, str) else None  # an AlarmRule member becomes its plain value
    if not name:
        raise TypeError(f"detector {cls.__module__}.{cls.__qualname__} needs a class attribute `name: ClassVar[str]`")
    if not callable(getattr(cls, "evaluate", None)):
        raise TypeError(f"detector {name!r} ({cls.__module__}) needs a method evaluate(snapshot, config)")
    known = _REGISTRY.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            f"two detectors are named {name!r}: {known.__module__}.{known.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}; give one of them another name"
        )
    _REGISTRY[name] = cls
    return cls
