"""An equipment kind described as data: its parts (primitive, size, offset, colour role), the
colour of each asset state and the loading thresholds, and the `register` decorator."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gridverse.schema import LOADING_ALARM_PERCENT, LOADING_WARNING_PERCENT
from inspection.config import AssetConfig, AssetKind
from inspection.state import COLOURS, AssetState, Rgb

GREY: Rgb = (0.55, 0.57, 0.6)


class Primitive(StrEnum):
    BOX = "box"  # size (width x, depth y, height z); offset is the centre of its base
    CYLINDER = "cylinder"  # size (radius, height); offset is its centre
    SPHERE = "sphere"  # size (radius,); offset is its centre


class ColourRole(StrEnum):
    STATE = "state"  # drawn in the asset's state colour: the part a technician looks at
    STRUCTURE = "structure"  # drawn in the kind's structure colour (grey steel)


@dataclass(frozen=True)
class PartSpec:
    """One primitive of an asset, placed relative to the asset's position (x, y, ground level)."""

    name: str
    primitive: Primitive
    size: tuple[float, ...]
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    colour: ColourRole = ColourRole.STRUCTURE
    axis: str = "z"  # cylinders: "z" upright, "x" or "y" lying along that axis

    def __post_init__(self) -> None:
        need = {Primitive.BOX: 3, Primitive.CYLINDER: 2, Primitive.SPHERE: 1}[self.primitive]
        if len(self.size) != need or min(self.size) <= 0:
            raise ValueError(f"part {self.name!r}: a {self.primitive} needs {need} positive sizes, got {self.size}")
        if self.axis not in ("x", "y", "z"):
            raise ValueError(f"part {self.name!r}: axis must be 'x', 'y' or 'z', got {self.axis!r}")


@dataclass(frozen=True)
class EquipmentKind:
    """How one kind of equipment is drawn and when it counts as loaded.

    `parts` is a table, or a function of the asset for kinds whose shape follows its settings
    (a busbar's length)."""

    kind: AssetKind
    parts: Sequence[PartSpec] | Callable[[AssetConfig], Sequence[PartSpec]]
    colours: Mapping[AssetState, Rgb] = field(default_factory=lambda: dict(COLOURS))
    structure_colour: Rgb = GREY
    loading_warning_percent: float = LOADING_WARNING_PERCENT  # from here on the asset is drawn loaded
    loading_alarm_percent: float = LOADING_ALARM_PERCENT  # from here on it is drawn overloaded

    def parts_for(self, asset: AssetConfig) -> list[PartSpec]:
        return list(self.parts(asset) if callable(self.parts) else self.parts)

    def colour_of(self, state: AssetState) -> Rgb:
        return self.colours.get(state, COLOURS[state])

    def loading_state(self, percent: float | None) -> AssetState:
        """NORMAL, WARNING (loaded) or OVERLOADED for a branch loading in percent of rating."""
        if percent is None or percent != percent or percent < self.loading_warning_percent:
            return AssetState.NORMAL
        return AssetState.OVERLOADED if percent >= self.loading_alarm_percent else AssetState.WARNING


_REGISTRY: dict[AssetKind, EquipmentKind] = {}


def register(description: EquipmentKind) -> EquipmentKind:
    """Add an equipment kind to the registry (one description per `AssetKind`)."""
    known = _REGISTRY.get(description.kind)
    if known is not None and known != description:
        raise ValueError(f"equipment kind {description.kind.value!r} is described twice; keep one file for it")
    _REGISTRY[description.kind] = description
    return description
