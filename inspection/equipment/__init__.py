"""Equipment kinds, one file each: a module here that calls `register(EquipmentKind(...))`
describes how one `AssetKind` is drawn (its parts), the colour of each state and its loading
thresholds. Adding a kind is adding its `AssetKind` value and one file here."""

from __future__ import annotations

from gridverse.plugins import import_plugins
from inspection.config import AssetKind
from inspection.equipment.base import ColourRole, EquipmentKind, PartSpec, Primitive, register

__all__ = ["ColourRole", "EquipmentKind", "PartSpec", "Primitive", "equipment_kind", "equipment_kinds", "register"]


def equipment_kinds() -> dict[AssetKind, EquipmentKind]:
    """Every registered kind, after importing each module of this package."""
    import_plugins(__name__, __path__)
    from inspection.equipment.base import _REGISTRY

    return dict(_REGISTRY)


def equipment_kind(kind: AssetKind) -> EquipmentKind:
    """The description of one kind; a kind without a file is an error naming the remedy."""
    kinds = equipment_kinds()
    if kind not in kinds:
        raise LookupError(
            f"no equipment description for asset kind {kind.value!r}: add inspection/equipment/{kind.value}.py "
            f"that registers an EquipmentKind (known: {', '.join(sorted(k.value for k in kinds))})"
        )
    return kinds[kind]
